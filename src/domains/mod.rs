//! The platform's domains, one folder each: its routes, its queries and its types.
//!
//! Every domain router is mounted from the start; until its issue lands each operation is a stub
//! that authenticates the caller, validates its parameters and answers 501 NOT_IMPLEMENTED.

pub mod agents;
pub mod analytics;
pub mod directives;
pub mod memories;
pub mod organizations;
pub mod sessions;
pub mod tokens;
pub mod users;

use axum::Router;

use crate::app::AppState;

/// Declares a stub operation and its OpenAPI description: the caller and every extractor listed
/// must succeed (so auth and parameter validation are real), then the answer is 501
/// NOT_IMPLEMENTED. `=> Type` documents the 200 body the finished operation will return.
macro_rules! stub {
    ($name:ident: $method:ident $path:literal, $tag:literal, $summary:literal,
     params($($params:path),*), extract($($extractor:ty),*) $(=> $ok:ty)?) => {
        #[utoipa::path($method, path = $path, tag = $tag, summary = $summary,
            params($($params),*),
            responses(
                $((status = 200, description = "Success.", body = $ok),)?
                (status = 501, description = "Not implemented yet.", body = $crate::error::ErrorResponse)
            ))]
        pub async fn $name(
            _caller: $crate::auth::Caller,
            $(_: $extractor),*
        ) -> $crate::error::ApiError {
            $crate::error::ApiError::NotImplemented
        }
    };
}
pub(crate) use stub;

/// Every route of the service (probes and domains), before any layer.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(crate::probes::router())
        .merge(organizations::router())
        .merge(users::router())
        .merge(agents::router())
        .merge(tokens::router())
        .merge(directives::router())
        .merge(memories::router())
        .merge(sessions::router())
        .merge(analytics::router())
}
