//! Conditional requests (RFC 9110 §13) for the resources operators edit concurrently: a strong
//! `ETag` from the row's version (bumped by the database on every change, migration 0007),
//! `If-Match` on writes, checked in the write's own statement so two writers holding the same
//! version cannot both win, and `If-None-Match` on reads (304 when unchanged).

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::header::{ETAG, IF_MATCH, IF_NONE_MATCH};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use utoipa::IntoParams;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{Content, Object, Ref, RefOr, Required, ResponseBuilder, Type};

use crate::error::ApiError;

/// The strong entity tag of a resource at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// One side of a precondition header: `*`, or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    Any,
    /// `(weak, opaque-tag)` pairs, the opaque tag with its quotes.
    Tags(Vec<(bool, String)>),
}

impl Condition {
    fn parse(headers: &HeaderMap, name: http::HeaderName) -> Option<Self> {
        let mut tags = Vec::new();
        let mut any_header = false;
        for value in headers.get_all(name) {
            any_header = true;
            // A value that is not text names no tag of ours: it can never match.
            let Ok(text) = value.to_str() else { continue };
            for item in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if item == "*" {
                    return Some(Self::Any);
                }
                match item.strip_prefix("W/") {
                    Some(tag) => tags.push((true, tag.to_owned())),
                    None => tags.push((false, item.to_owned())),
                }
            }
        }
        any_header.then_some(Self::Tags(tags))
    }
}

/// The caller's `If-Match` and `If-None-Match`, read before the handler touches the database.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    if_match: Option<Condition>,
    if_none_match: Option<Condition>,
}

impl<S: Send + Sync> FromRequestParts<S> for Preconditions {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self {
            if_match: Condition::parse(&parts.headers, IF_MATCH),
            if_none_match: Condition::parse(&parts.headers, IF_NONE_MATCH),
        })
    }
}

impl Preconditions {
    /// The versions a write may apply to, for its WHERE clause: `None` when any version will
    /// do (no `If-Match`, or `*`, which only asks that the resource exist). Strong comparison:
    /// a weak tag or one that is not ours matches nothing, so the list can be empty.
    pub fn if_match_versions(&self) -> Option<Vec<i64>> {
        match &self.if_match {
            None | Some(Condition::Any) => None,
            Some(Condition::Tags(tags)) => Some(
                tags.iter()
                    .filter(|(weak, _)| !weak)
                    .filter_map(|(_, tag)| tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok())
                    .collect(),
            ),
        }
    }

    /// Whether a read of the resource at `version` is answered 304 (weak comparison).
    pub fn not_modified(&self, version: i64) -> bool {
        match &self.if_none_match {
            None => false,
            Some(Condition::Any) => true,
            Some(Condition::Tags(tags)) => tags.iter().any(|(_, tag)| *tag == etag(version)),
        }
    }

    /// A read's answer: 304 with the tag when the caller's copy is current, else `body` with
    /// it.
    pub fn read<T: IntoResponse>(&self, version: i64, body: T) -> Response {
        if self.not_modified(version) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response.headers_mut().insert(ETAG, header(version));
            return response;
        }
        Tagged(version, body).into_response()
    }
}

fn header(version: i64) -> HeaderValue {
    HeaderValue::from_str(&etag(version)).expect("digits and quotes are a valid header value")
}

/// A response carrying the resource's `ETag`.
#[derive(Debug)]
pub struct Tagged<T>(pub i64, pub T);

impl<T: IntoResponse> IntoResponse for Tagged<T> {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        response.headers_mut().insert(ETAG, header(self.0));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: http::HeaderName, value: &str) -> Preconditions {
        let mut headers = HeaderMap::new();
        headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        Preconditions {
            if_match: Condition::parse(&headers, IF_MATCH),
            if_none_match: Condition::parse(&headers, IF_NONE_MATCH),
        }
    }

    #[test]
    fn if_match_is_a_strong_comparison() {
        assert_eq!(Preconditions::default().if_match_versions(), None);
        assert_eq!(with(IF_MATCH, "*").if_match_versions(), None);
        assert_eq!(with(IF_MATCH, "\"3\"").if_match_versions(), Some(vec![3]));
        assert_eq!(
            with(IF_MATCH, "\"3\", \"5\"").if_match_versions(),
            Some(vec![3, 5])
        );
        assert_eq!(with(IF_MATCH, "W/\"3\"").if_match_versions(), Some(vec![]));
        assert_eq!(with(IF_MATCH, "\"x\"").if_match_versions(), Some(vec![]));
        assert_eq!(with(IF_MATCH, "3").if_match_versions(), Some(vec![]));
    }

    #[test]
    fn if_none_match_is_a_weak_comparison() {
        assert!(with(IF_NONE_MATCH, "\"3\"").not_modified(3));
        assert!(with(IF_NONE_MATCH, "W/\"3\"").not_modified(3));
        assert!(with(IF_NONE_MATCH, "\"1\", \"3\"").not_modified(3));
        assert!(with(IF_NONE_MATCH, "*").not_modified(3));
        assert!(!with(IF_NONE_MATCH, "\"4\"").not_modified(3));
        assert!(!Preconditions::default().not_modified(3));
    }
}

/// The `If-Match` parameter, for an operation's `params(...)`: `Preconditions` reads the header,
/// and [`document`] gives every operation that declares it its 412 answer.
#[derive(Debug)]
pub struct IfMatch;

/// The `If-None-Match` parameter; operations that declare it get their 304 answer.
#[derive(Debug)]
pub struct IfNoneMatch;

fn header_parameter(name: &str, description: &str) -> Vec<Parameter> {
    vec![
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(Object::with_type(Type::String)))
            .example(Some("\"3\"".into()))
            .build(),
    ]
}

impl IntoParams for IfMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        header_parameter(
            "If-Match",
            "The `ETag` the change was based on: the write applies only if the resource still has it (else 412 PRECONDITION_FAILED, nothing changed). `*` asks only that it exist.",
        )
    }
}

impl IntoParams for IfNoneMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        header_parameter(
            "If-None-Match",
            "The `ETag` of the caller's copy: 304 Not Modified, with no body, while it is current.",
        )
    }
}

/// Adds the answers the conditional headers imply to an operation that declares them: the `ETag`
/// header on its 200/201, 412 for `If-Match`, 304 (with the current `ETag`) for `If-None-Match`. Stated here once, so no
/// operation writes them by hand.
pub fn document(operation: &mut Operation) {
    let declares = |name: &str| {
        operation.parameters.iter().flatten().any(
            |p| matches!(p, RefOr::T(p) if p.name == name && p.parameter_in == ParameterIn::Header),
        )
    };
    let (if_match, if_none_match) = (declares("If-Match"), declares("If-None-Match"));
    let responses = &mut operation.responses.responses;
    if if_match || if_none_match {
        // Whatever answers with the resource carries its version.
        for status in ["200", "201"] {
            if let Some(RefOr::T(response)) = responses.get_mut(status) {
                response
                    .headers
                    .entry("ETag".to_owned())
                    .or_insert_with(|| {
                        HeaderBuilder::new()
                            .schema(Some(Object::with_type(Type::String)))
                            .description(Some(
                                "The resource's version, for If-Match and If-None-Match.",
                            ))
                            .build()
                            .into()
                    });
            }
        }
    }
    if if_match {
        responses.entry("412".to_owned()).or_insert_with(|| {
            ResponseBuilder::new()
                .description("PRECONDITION_FAILED: the resource changed since the If-Match version; nothing changed.")
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorResponse"))),
                )
                .build()
                .into()
        });
    }
    if if_none_match {
        responses.entry("304".to_owned()).or_insert_with(|| {
            ResponseBuilder::new()
                .description("Not modified: the If-None-Match tag is current; no body.")
                .header(
                    "ETag",
                    HeaderBuilder::new()
                        .schema(Some(Object::with_type(Type::String)))
                        .description(Some("The resource's current version."))
                        .build(),
                )
                .build()
                .into()
        });
    }
}
