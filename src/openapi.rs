//! The OpenAPI 3.1 document served at `/openapi.json` and rendered by Swagger UI at `/docs`.
//!
//! Operations describe their own success and 501 responses; [`CommonResponses`] adds, in one
//! place, the bearer requirement and every error response the layers can produce, so the
//! document cannot drift from what the middleware actually does.

use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::auth::layer::is_public;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "IBEX Management API",
        description = "Manage organizations, users, agents, tokens, directives, memories, sessions and analytics of the IBEX platform. Every `/v1` operation needs `Authorization: Bearer <IBEX personal access token>`. Every error is `{\"error\": {\"code\", \"message\", \"request_id\"}}`.",
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
    )
)]
pub struct ApiDoc;

/// The whole document from the routes' own descriptions (each domain declares a route and its
/// documentation once, with utoipa-axum's `routes!`): the base above, their paths and schemas,
/// then the shared responses, which must see every operation.
pub fn complete(routes: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(routes);
    CommonResponses.modify(&mut doc);
    doc
}

pub const BEARER_SCHEME: &str = "bearer";

/// (status, component name, description) of every shared error response.
const ERROR_RESPONSES: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "VALIDATION_ERROR: malformed path, query or body.",
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
pub struct CommonResponses;

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
        for (_, name, description) in ERROR_RESPONSES {
            let content = Content::new(Some(Ref::from_schema_name("ErrorResponse")));
            components.responses.insert(
                (*name).to_owned(),
                ResponseBuilder::new()
                    .description(*description)
                    .content("application/json", content)
                    .build()
                    .into(),
            );
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
                    add_common(operation, public, method != HttpMethod::Get);
                }
            }
        }
    }
}

fn add_common(operation: &mut Operation, public: bool, takes_body: bool) {
    let mut statuses = vec!["500"];
    if !public {
        operation.security = Some(vec![SecurityRequirement::new(
            BEARER_SCHEME,
            Vec::<String>::new(),
        )]);
        statuses.extend(["401", "403", "503", "504"]);
        if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
            statuses.push("400");
        }
        if takes_body {
            statuses.extend(["400", "413", "415"]);
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
