//! The OpenAPI 3.1 document served at `/openapi.json` and rendered by Swagger UI at `/docs`.
//!
//! Operations describe their own success and 501 responses; [`CommonResponses`] adds, in one
//! place, the bearer requirement and every error response the layers can produce, so the
//! document cannot drift from what the middleware actually does.

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa::openapi::{Object, RefOr, Type};
use utoipa::{Modify, OpenApi};

use crate::auth::layer::is_public;
use crate::middleware::idempotency;
use crate::wire::conditional;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "IBEX Management API",
        description = "Manage organizations, users, agents, tokens, directives, memories, sessions and analytics of the IBEX platform. Every `/v1` operation needs `Authorization: Bearer <IBEX personal access token>`. Every error is `{\"error\": {\"code\", \"message\", \"request_id\"}}`.\n\nRules every operation follows: an id in a body or query string must name a live object of the caller's organization (404 `AGENT_NOT_FOUND` / `USER_NOT_FOUND`, the same for another organization's id and an unknown one); user roles follow the order owner > admin > member > viewer (a caller grants and takes away only roles below its own, only an owner moves `owner`, no one raises their own role: 403 `ROLE_NOT_GRANTABLE`); a JSON key repeated in any object is 400 `VALIDATION_ERROR` (`DUPLICATE_KEY`); list cursors are signed and bound to the organization, list and filters (anything else 400 `INVALID_CURSOR`). Every answer carries `X-Content-Type-Options: nosniff`, every authenticated answer `Cache-Control: no-store`.",
    ),
    components(schemas(crate::error::ErrorResponse, crate::error::ErrorDetail, crate::error::FieldError)),
    tags(
        (name = "health", description = "Liveness and readiness probes (no token)."),
        (name = "organizations", description = "The caller's organization."),
        (name = "users", description = "Users of the organization."),
        (name = "agents", description = "AI agents and their lifecycle."),
        (name = "tokens", description = "Personal access tokens."),
        (name = "directives", description = "Versioned agent directives."),
        (name = "memories", description = "Agent memories, search, export and deletion."),
        (name = "sessions", description = "Recorded sessions and replay."),
        (name = "analytics", description = "Usage, latency, model and error analytics."),
        (name = "audit", description = "Who changed what, through the API."),
        (name = "data-requests", description = "Data protection: the map of every store and its personal data."),
    )
)]
pub struct ApiDoc;

/// The whole document from the routes' own descriptions (each domain declares a route and its
/// documentation once, with utoipa-axum's `routes!`): the base above, their paths and schemas,
/// then the shared responses, which must see every operation.
pub fn complete(
    routes: utoipa::openapi::OpenApi,
    idempotency_window: std::time::Duration,
) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(routes);
    CommonResponses { idempotency_window }.modify(&mut doc);
    require_answer_fields(&mut doc);
    doc
}

/// A success answer carries every field of its type, null where it has no value (no answer
/// skips a field when serialized), so every property of a schema an answer reaches is required:
/// stated here once instead of on each optional field. Error bodies are not answers of this
/// kind (`field_errors` is left out when empty) and request bodies are declared by their own
/// rules (`wire::body`).
fn require_answer_fields(doc: &mut utoipa::openapi::OpenApi) {
    fn refs(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value.as_str()) {
                        ("$ref", Some(target)) => {
                            found.extend(target.rsplit('/').next().map(str::to_owned));
                        }
                        _ => refs(value, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }
    let json = serde_json::to_value(&*doc).expect("the document serializes");
    let mut todo = Vec::new();
    for item in json["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for operation in item.as_object().into_iter().flat_map(|i| i.values()) {
            for (status, answer) in operation["responses"].as_object().into_iter().flatten() {
                if status.starts_with(['2', '3']) {
                    refs(answer, &mut todo);
                }
            }
        }
    }
    let mut reached = std::collections::BTreeSet::new();
    while let Some(name) = todo.pop() {
        if reached.insert(name.clone()) {
            refs(&json["components"]["schemas"][&name], &mut todo);
        }
    }
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for name in reached {
        if let Some(RefOr::T(utoipa::openapi::Schema::Object(object))) =
            components.schemas.get_mut(&name)
        {
            object.required = object.properties.keys().cloned().collect();
        }
    }
}

pub const BEARER_SCHEME: &str = "bearer";

/// (status, component name, description) of every shared error response.
const ERROR_RESPONSES: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "VALIDATION_ERROR: malformed path, query or body (a repeated JSON key included), or INVALID_CURSOR: a list cursor this list did not issue to this organization with these filters, or an altered one.",
    ),
    (
        "414",
        "UriTooLong",
        "URI_TOO_LONG: the path and query exceed 8 KiB.",
    ),
    (
        "431",
        "HeadersTooLarge",
        "HEADERS_TOO_LARGE: more than 100 headers, or a request line and header section over 32 KiB.",
    ),
    ("401", "Unauthorized", "MISSING_TOKEN or INVALID_TOKEN."),
    ("403", "Forbidden", "INSUFFICIENT_PERMISSIONS."),
    (
        "413",
        "PayloadTooLarge",
        "PAYLOAD_TOO_LARGE: the body exceeds IBEX_API_MAX_BODY_BYTES.",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "UNSUPPORTED_MEDIA_TYPE: the body is not application/json.",
    ),
    (
        "409",
        idempotency::openapi::CONFLICT_RESPONSE,
        "With an Idempotency-Key: IDEMPOTENCY_KEY_IN_USE (a request with this key is still running; retry after Retry-After seconds), IDEMPOTENCY_KEY_REUSED (the key was used with a different method, path or body) or IDEMPOTENCY_REPLAY_WITHHELD (the key created a token, whose secret is never replayed; Location names it).",
    ),
    (
        "429",
        "RateLimited",
        "RATE_LIMITED: the organization's or the token's request rate is spent; retry after Retry-After seconds.",
    ),
    ("500", "InternalError", "INTERNAL_ERROR."),
    (
        "503",
        "Unavailable",
        "AUTH_UNAVAILABLE (the auth service did not answer usably) or SERVICE_UNAVAILABLE.",
    ),
    (
        "504",
        "Timeout",
        "REQUEST_TIMEOUT: the request ran past IBEX_API_REQUEST_TIMEOUT_MS.",
    ),
];

/// Adds the bearer scheme and the layer-produced error responses to every operation.
pub struct CommonResponses {
    /// How long an idempotent answer is kept (`IBEX_API_IDEMPOTENCY_TTL_MS`), for the header's
    /// own description.
    pub idempotency_window: std::time::Duration,
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // utoipa fills the license from Cargo.toml, which names none: an empty license object
        // would claim a license that does not exist.
        if openapi
            .info
            .license
            .as_ref()
            .is_some_and(|l| l.name.is_empty())
        {
            openapi.info.license = None;
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("IBEX personal access token (ibex_pat_…)")
                    .description(Some(
                        "Validated by the platform's auth service on every request.",
                    ))
                    .build(),
            ),
        );
        for (status, name, description) in ERROR_RESPONSES {
            let content = Content::new(Some(Ref::from_schema_name("ErrorResponse")));
            let mut response = ResponseBuilder::new()
                .description(*description)
                .content("application/json", content);
            if matches!(*status, "409" | "429" | "503") {
                response = response.header("Retry-After", integer_header(RETRY_AFTER));
            }
            let mut response = response.build();
            if *status != "500" {
                add_rate_limit_headers(&mut response);
            }
            components
                .responses
                .insert((*name).to_owned(), response.into());
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = is_public(path);
            for method in [
                HttpMethod::Get,
                HttpMethod::Post,
                HttpMethod::Put,
                HttpMethod::Patch,
                HttpMethod::Delete,
            ] {
                let slot = match method {
                    HttpMethod::Get => &mut item.get,
                    HttpMethod::Post => &mut item.post,
                    HttpMethod::Put => &mut item.put,
                    HttpMethod::Patch => &mut item.patch,
                    _ => &mut item.delete,
                };
                if let Some(operation) = slot {
                    conditional::document(operation);
                    add_common(operation, public, method != HttpMethod::Get);
                    if !public && method == HttpMethod::Post {
                        idempotency::openapi::document(operation, self.idempotency_window);
                    }
                }
            }
        }
    }
}

const RETRY_AFTER: &str = "Seconds to wait before retrying.";

fn integer_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(Type::Integer)))
        .description(Some(description))
        .build()
}

/// The rate-limit headers every authenticated answer carries (`middleware::rate_limit`).
fn add_rate_limit_headers(response: &mut Response) {
    for (name, description) in [
        (
            "RateLimit-Limit",
            "Requests the tighter bucket (organization or token) holds when full.",
        ),
        (
            "RateLimit-Remaining",
            "Requests that may be made right now.",
        ),
        ("RateLimit-Reset", "Seconds until the bucket is full again."),
    ] {
        response
            .headers
            .insert(name.to_owned(), integer_header(description).into());
    }
}

fn add_common(operation: &mut Operation, public: bool, takes_body: bool) {
    // The request limits apply to every request, public or not.
    let mut statuses = vec!["414", "431", "500"];
    // A path or query parameter that does not parse is a 400, public or not.
    if public && operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        statuses.push("400");
    }
    if !public {
        operation.security = Some(vec![SecurityRequirement::new(
            BEARER_SCHEME,
            Vec::<String>::new(),
        )]);
        statuses.extend(["401", "403", "429", "503", "504"]);
        if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
            statuses.push("400");
        }
        if takes_body {
            statuses.extend(["400", "413", "415"]);
        }
    }
    if !public {
        document_not_found(operation);
        for (status, response) in operation.responses.responses.iter_mut() {
            if let (true, RefOr::T(response)) = (status.starts_with(['2', '3']), response) {
                add_rate_limit_headers(response);
            }
        }
    }
    for status in statuses {
        let (_, name, _) = ERROR_RESPONSES
            .iter()
            .find(|(s, _, _)| *s == status)
            .expect("known status");
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| Ref::from_response_name(*name).into());
    }
}

/// An operation on an id in its path answers 404 for an id it cannot see; the row is derived
/// from the path's ids unless the operation says more itself.
fn document_not_found(operation: &mut Operation) {
    let things: Vec<String> = operation
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) if p.parameter_in == ParameterIn::Path => p.name.strip_suffix("_id"),
            _ => None,
        })
        .map(|thing| thing.replace('_', " "))
        .collect();
    if things.is_empty() || operation.responses.responses.contains_key("404") {
        return;
    }
    let description = format!(
        "NOT_FOUND: no such {} in the organization (an unknown id and another organization's answer alike).",
        things.join(" or ")
    );
    let content = Content::new(Some(Ref::from_schema_name("ErrorResponse")));
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build();
    operation
        .responses
        .responses
        .insert("404".to_owned(), response.into());
}
