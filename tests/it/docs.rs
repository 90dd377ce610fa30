//! The published OpenAPI document and Swagger UI, fetched from the running app.

use std::collections::HashSet;

use crate::common::*;
use serde_json::Value;

const DOMAINS: [&str; 10] = [
    "organizations",
    "users",
    "agents",
    "tokens",
    "directives",
    "memories",
    "sessions",
    "analytics",
    "audit",
    "data-requests",
];

fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn walk_refs(doc: &Value, node: &Value, problems: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                if resolve(doc, r).is_none() {
                    problems.push(format!("dangling $ref {r}"));
                }
            }
            map.values().for_each(|v| walk_refs(doc, v, problems));
        }
        Value::Array(items) => items.iter().for_each(|v| walk_refs(doc, v, problems)),
        _ => {}
    }
}

/// The structural rules of OpenAPI 3.1 that generators get wrong; CI also runs the reference
/// validator (openapi-spec-validator) on the same document.
fn structural_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let allowed_root = [
        "openapi",
        "info",
        "jsonSchemaDialect",
        "servers",
        "paths",
        "webhooks",
        "components",
        "security",
        "tags",
        "externalDocs",
    ];
    for key in doc.as_object().unwrap().keys() {
        if !allowed_root.contains(&key.as_str()) && !key.starts_with("x-") {
            problems.push(format!("unknown root key {key}"));
        }
    }
    let version = doc["openapi"].as_str().unwrap_or_default();
    if !(version.starts_with("3.1.") && version[4..].parse::<u32>().is_ok()) {
        problems.push(format!("openapi version {version}"));
    }
    if !doc["info"]["title"].is_string() || !doc["info"]["version"].is_string() {
        problems.push("info.title and info.version are required".into());
    }
    walk_refs(doc, doc, &mut problems);
    let schemes = &doc["components"]["securitySchemes"];
    let declared_tags: HashSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut operation_ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with('/') {
            problems.push(format!("path {path} must start with /"));
        }
        let templated: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            if ![
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
            {
                problems.push(format!("{at}: not an operation"));
                continue;
            }
            if !operation_ids.insert(op["operationId"].as_str().unwrap_or_default().to_owned()) {
                problems.push(format!("{at}: duplicate or missing operationId"));
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in &params {
                if !["query", "header", "path", "cookie"]
                    .contains(&p["in"].as_str().unwrap_or_default())
                    || !p["name"].is_string()
                {
                    problems.push(format!("{at}: bad parameter {p}"));
                }
                if p["in"] == "path" && p["required"] != true {
                    problems.push(format!("{at}: path parameter not required"));
                }
            }
            for name in &templated {
                if !params
                    .iter()
                    .any(|p| p["in"] == "path" && p["name"] == *name)
                {
                    problems.push(format!("{at}: {{{name}}} has no path parameter"));
                }
            }
            let responses = op["responses"].as_object();
            if responses.is_none_or(|r| r.is_empty()) {
                problems.push(format!("{at}: no responses"));
            }
            for (status, response) in responses.into_iter().flatten() {
                let response = match response["$ref"].as_str() {
                    Some(r) => resolve(doc, r).unwrap_or(&Value::Null),
                    None => response,
                };
                if response["description"].as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{at} {status}: response without description"));
                }
            }
            for requirement in op["security"].as_array().into_iter().flatten() {
                for name in requirement.as_object().unwrap().keys() {
                    if schemes.get(name).is_none() {
                        problems.push(format!("{at}: unknown security scheme {name}"));
                    }
                }
            }
            for tag in op["tags"].as_array().into_iter().flatten() {
                if !declared_tags.contains(tag.as_str().unwrap()) {
                    problems.push(format!("{at}: undeclared tag {tag}"));
                }
            }
        }
    }
    problems
}

/// What client generators need beyond validity: every property of a response schema is in
/// `required` (the server always sends it, as a value or null), nested objects are `$ref`s to
/// one named schema (no inline copies a generator names `CursorPageAgentItemsItem`), and no
/// recursive or `anyOf` shapes that generators drop operations over.
fn generator_problems(doc: &Value) -> Vec<String> {
    // Sent only when there is something to say (per-field validation errors).
    const OPTIONAL_IN_RESPONSES: [(&str, &str); 1] = [("ErrorDetail", "field_errors")];
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut problems = Vec::new();
    let mut in_responses: Vec<String> = Vec::new();
    let collect = |node: &Value, acc: &mut Vec<String>| {
        fn refs(node: &Value, acc: &mut Vec<String>) {
            match node {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        if let Some(name) = r.strip_prefix("#/components/schemas/") {
                            acc.push(name.to_owned());
                        }
                    }
                    map.values().for_each(|v| refs(v, acc));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, acc)),
                _ => {}
            }
        }
        refs(node, acc)
    };
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            collect(&op["responses"], &mut in_responses);
        }
    }
    let mut seen = HashSet::new();
    while let Some(name) = in_responses.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let schema = &schemas[&name];
        collect(schema, &mut in_responses);
        let required: HashSet<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for property in schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|p| p.0)
        {
            if !required.contains(property.as_str())
                && !OPTIONAL_IN_RESPONSES.contains(&(name.as_str(), property.as_str()))
            {
                problems.push(format!("{name}.{property} is sent but not required"));
            }
        }
    }
    for (name, schema) in schemas {
        for (property, value) in schema["properties"].as_object().into_iter().flatten() {
            let inner = if value["items"].is_object() {
                &value["items"]
            } else {
                value
            };
            if inner["properties"].is_object() {
                problems.push(format!(
                    "{name}.{property} copies an object inline instead of a $ref"
                ));
            }
        }
        if schema
            .to_string()
            .contains(&format!("\"#/components/schemas/{name}\""))
        {
            problems.push(format!("{name} is recursive"));
        }
    }
    problems
}

#[test]
fn the_document_is_one_client_generators_take_whole() {
    let doc = serde_json::to_value(ibex_api::app::document()).unwrap();
    let problems = generator_problems(&doc);
    assert!(problems.is_empty(), "{problems:#?}");
    // And the check sees what it looks for.
    let bad = serde_json::json!({
        "paths": {"/a": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}}}}},
        "components": {"schemas": {
            "A": {"type": "object", "properties": {"x": {"type": ["string", "null"]}, "b": {"$ref": "#/components/schemas/B"}, "e": {"type": "object"}}, "required": ["b", "e"]},
            "B": {"type": "object", "properties": {"c": {"type": "array", "items": {"type": "object", "properties": {"d": {}}}}}, "required": ["c"]},
            "R": {"anyOf": [{"type": "null"}, {"$ref": "#/components/schemas/R"}]},
        }},
    });
    let found = generator_problems(&bad);
    for expected in [
        "A.x is sent but not required",
        "B.c copies an object inline",
        "R is recursive",
    ] {
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{expected}: {found:#?}"
        );
    }
}

/// Each analytics operation documents exactly the parameters its handler reads.
#[test]
fn analytics_operations_document_their_own_parameters() {
    let doc = serde_json::to_value(ibex_api::app::document()).unwrap();
    for (op, expected) in [
        ("usage", vec!["start", "end", "agent_id", "granularity"]),
        (
            "latency",
            vec!["start", "end", "agent_id", "granularity", "percentile"],
        ),
        ("models", vec!["start", "end", "agent_id"]),
        (
            "errors",
            vec!["start", "end", "agent_id", "granularity", "error_code"],
        ),
    ] {
        let params = doc["paths"][format!("/v1/analytics/{op}")]["get"]["parameters"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, expected, "{op}");
        if let Some(p) = params.iter().find(|p| p["name"] == "percentile") {
            let reference = p["schema"]["$ref"].as_str().unwrap();
            let schema = resolve(&doc, reference).unwrap();
            assert_eq!(schema["enum"], serde_json::json!([50, 95, 99]));
        }
    }
}

#[tokio::test]
async fn openapi_json_is_valid_3_1_and_describes_every_route() {
    let (_auth, app) = TestApp::with_auth(&[]).await;
    let reply = app.get("/openapi.json", &[]).await;
    assert_eq!(reply.status, 200);
    let content_type = reply.header("content-type").unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc = reply.json();

    assert!(
        doc["info"].get("license").is_none(),
        "no license is claimed: {}",
        doc["info"]
    );
    let problems = structural_problems(&doc);
    assert!(problems.is_empty(), "{problems:#?}");

    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["type"],
        "http"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for schema in [
        "ErrorResponse",
        "ErrorDetail",
        "FieldError",
        "CursorPage_Agent",
        "HealthReport",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let page = &doc["components"]["schemas"]["CursorPage_Agent"];
    assert_eq!(
        page["required"],
        serde_json::json!(["items", "next_cursor", "total"])
    );
    assert_eq!(
        page["properties"]["next_cursor"]["type"],
        serde_json::json!(["string", "null"])
    );

    let mut operations = 0;
    let mut tags_seen = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = &op["responses"];
            assert!(responses["500"].is_object(), "{method} {path}");
            if ibex_api::auth::layer::is_public(path) {
                assert!(op.get("security").is_none(), "{path} is public");
                continue;
            }
            assert!(
                path.starts_with("/v1/"),
                "{path}: every operation needing a token is under /v1"
            );
            operations += 1;
            tags_seen.insert(op["tags"][0].as_str().unwrap().to_owned());
            assert_eq!(
                op["security"],
                serde_json::json!([{"bearer": []}]),
                "{method} {path}"
            );
            for status in ["401", "403", "503", "504"] {
                assert!(
                    responses[status].is_object(),
                    "{method} {path} documents {status}"
                );
            }
            let answers = responses.as_object().unwrap();
            assert!(
                answers.keys().any(|s| s.starts_with('2') || s == "501"),
                "{method} {path} documents its success (or 501 while a stub)"
            );
            for (status, response) in answers {
                assert!(
                    response.get("$ref").is_some()
                        || response["description"]
                            .as_str()
                            .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has a description"
                );
            }
            if path.contains('{') || op["parameters"].is_array() {
                assert!(
                    responses["400"].is_object(),
                    "{method} {path} documents 400"
                );
            }
        }
    }
    assert_eq!(operations, 51);
    assert_eq!(tags_seen.len(), DOMAINS.len());
    for domain in DOMAINS {
        assert!(tags_seen.contains(domain), "{domain}");
    }
    let unauthorized = resolve(&doc, "#/components/responses/Unauthorized").unwrap();
    assert_eq!(
        unauthorized["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorResponse"
    );
}

#[test]
fn the_structural_check_catches_what_it_claims_to() {
    let bad = serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "x"},
        "paths": {"/a/{id}": {"get": {"operationId": "a", "responses": {"200": {}}, "tags": ["nope"],
            "security": [{"missing": []}], "parameters": [{"name": "q", "in": "body"}]}}},
        "tags": [],
        "components": {"schemas": {"A": {"$ref": "#/components/schemas/B"}}},
        "swagger": "2.0"
    });
    let problems = structural_problems(&bad);
    for expected in [
        "unknown root key",
        "openapi version",
        "info.title",
        "dangling $ref",
        "has no path parameter",
        "without description",
        "unknown security scheme",
        "undeclared tag",
        "bad parameter",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:#?}"
        );
    }
}

#[tokio::test]
async fn docs_serve_swagger_ui_from_the_binary() {
    let (auth, app) = TestApp::with_auth(&[]).await;

    let redirect = app.get("/docs", &[]).await;
    assert!(redirect.status == 303 || redirect.status == 301 || redirect.status == 308);
    assert_eq!(redirect.header("location"), Some("/docs/"));

    let page = app.get("/docs/", &[]).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"),
        "no external URL: {html}"
    );

    // Every asset the page loads is served from the binary, not a CDN.
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css") || s.ends_with(".png"))
        .collect();
    assert!(assets.len() >= 4, "{assets:?}");
    for asset in assets {
        let path = format!("/docs/{}", asset.trim_start_matches("./"));
        let reply = app.get(&path, &[]).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(reply.body.len() > 100, "{path}");
    }
    let init = app.get("/docs/swagger-initializer.js", &[]).await.text();
    assert!(init.contains("\"/openapi.json\""), "{init}");
    assert!(
        init.contains("\"validatorUrl\": \"none\""),
        "no call to validator.swagger.io: {init}"
    );
    assert_eq!(auth.calls(), 0, "docs need no token");
}

#[test]
fn the_docs_and_env_example_document_every_setting_and_code() {
    let root = env!("CARGO_MANIFEST_DIR");
    let configuration = std::fs::read_to_string(format!("{root}/docs/configuration.md")).unwrap();
    let errors = std::fs::read_to_string(format!("{root}/docs/errors.md")).unwrap();
    let env_example = std::fs::read_to_string(format!("{root}/.env.example")).unwrap();
    // Both are generated from the settings `src/config/` declares: regenerate with `ibex-api config --env >
    // .env.example` and `ibex-api config --markdown` (the table of docs/configuration.md).
    assert_eq!(
        env_example,
        ibex_api::config::env_example(),
        ".env.example differs from `ibex-api config --env`"
    );
    assert!(
        configuration.contains(&ibex_api::config::markdown_table()),
        "docs/configuration.md's table differs from `ibex-api config --markdown`"
    );
    use ibex_api::error::ApiError;
    let every_code = [
        ApiError::MissingToken,
        ApiError::InvalidToken,
        ApiError::InsufficientPermissions,
        ApiError::PermissionElevationDenied,
        ApiError::NotFound("x".into()),
        ApiError::AgentNotFound,
        ApiError::UserNotFound,
        ApiError::RoleNotGrantable,
        ApiError::InvalidCursor,
        ApiError::HeadersTooLarge,
        ApiError::UriTooLong,
        ApiError::MethodNotAllowed,
        ApiError::PayloadTooLarge,
        ApiError::UnsupportedMediaType,
        ApiError::validation("x"),
        ApiError::RequestTimeout,
        ApiError::NotImplemented,
        ApiError::AuthUnavailable,
        ApiError::ServiceUnavailable,
        ApiError::MemoryServiceUnavailable,
        ApiError::AnalyticsUnavailable,
        ApiError::Internal,
    ]
    .into_iter()
    .chain(ibex_api::error::Conflict::ALL.map(ApiError::Conflict));
    for error in every_code {
        let row = format!("| `{}` | {} |", error.code(), error.status().as_u16());
        assert!(errors.contains(&row), "docs/errors.md lacks {row}");
    }
}
