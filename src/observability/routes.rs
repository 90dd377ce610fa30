//! Route templates as metric and span labels: a request is named by the template it matched,
//! never by its raw path, so labels stay bounded.

/// The API's route templates, to name a request that was refused before routing (by auth, a
/// body limit) when its path matches one; unmatched paths stay `-`.
#[derive(Debug, Default)]
pub struct RouteTemplates(matchit::Router<String>);

impl RouteTemplates {
    pub fn new<'a>(templates: impl IntoIterator<Item = &'a str>) -> Self {
        let mut router = matchit::Router::new();
        for template in templates {
            let _ = router.insert(template, template.to_owned());
        }
        Self(router)
    }

    pub fn find(&self, path: &str) -> Option<&str> {
        self.0.at(path).ok().map(|m| m.value.as_str())
    }
}
