//! Schema and parser never disagree: every property of every request body in the served
//! `/openapi.json` gets its boundary values (min−1, min, max, max+1 for lengths, numbers and item
//! counts; every member of an enum and one non-member), over real HTTP against the running app.
//! A value the schema allows must not be refused naming that property; a value it forbids must
//! be a 400 naming it. An unknown property is refused too (`additionalProperties: false`).

use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::*;

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// A text of exactly `chars` characters that the property's pattern accepts, if one exists.
fn text_of(schema: &Value, chars: usize) -> Option<String> {
    let pattern = schema["pattern"].as_str().unwrap_or("");
    if pattern.contains('@') {
        // An email address: local part of at most 64, a dotted domain.
        let local = chars.checked_sub(4)?.min(64);
        let domain = chars - local - 1;
        if local == 0 || domain < 3 {
            return None;
        }
        return Some(format!(
            "{}@{}.c",
            "a".repeat(local),
            "b".repeat(domain - 2)
        ));
    }
    (chars > 0 || !pattern.contains('+')).then(|| "a".repeat(chars))
}

/// A value the property's schema allows, for the properties a body requires.
fn valid(doc: &Value, schema: &Value, ids: &Ids) -> Value {
    let resolved = resolve(doc, schema);
    if let Some(values) = resolved["enum"].as_array() {
        return values[0].clone();
    }
    match (resolved["type"].as_str(), resolved["format"].as_str()) {
        (Some("string"), Some("uuid")) => json!(ids.agent),
        (Some("string"), Some("date-time")) => json!("2099-01-01T00:00:00Z"),
        (Some("string"), _) => {
            let min = resolved["minLength"].as_u64().unwrap_or(1).max(1) as usize;
            json!(text_of(resolved, min.max(5)).unwrap())
        }
        (Some("integer"), _) => resolved["minimum"].clone(),
        (Some("number"), _) => resolved["minimum"].clone(),
        (Some("array"), _) => json!([valid(doc, &resolved["items"], ids)]),
        (Some("object"), _) => {
            // A declared body: its required properties, each valid.
            let required = resolved["required"].as_array().cloned().unwrap_or_default();
            let mut object = serde_json::Map::new();
            for name in required {
                let name = name.as_str().unwrap();
                object.insert(
                    name.to_owned(),
                    valid(doc, &resolved["properties"][name], ids),
                );
            }
            Value::Object(object)
        }
        other => panic!("no valid value for {other:?}"),
    }
}

/// (value, allowed by the schema) pairs at the edges of one property's rules.
fn boundaries(doc: &Value, schema: &Value, ids: &Ids) -> Vec<(Value, bool)> {
    let resolved = resolve(doc, schema);
    let mut cases = Vec::new();
    if let Some(values) = resolved["enum"].as_array() {
        cases.extend(values.iter().map(|v| (v.clone(), true)));
        cases.push((json!("not-a-member"), false));
        return cases;
    }
    let mut edges = |min: Option<u64>, max: Option<u64>, make: &dyn Fn(u64) -> Option<Value>| {
        if let Some(min) = min {
            if min > 0 {
                cases.extend(make(min - 1).map(|v| (v, false)));
            }
            cases.extend(make(min).map(|v| (v, true)));
        }
        if let Some(max) = max {
            cases.extend(make(max).map(|v| (v, true)));
            cases.extend(make(max + 1).map(|v| (v, false)));
        }
    };
    match resolved["type"].as_str() {
        Some("string") if resolved["format"].is_null() => {
            let (min, max) = (
                resolved["minLength"].as_u64(),
                resolved["maxLength"].as_u64(),
            );
            edges(min, max, &|n| {
                text_of(resolved, n as usize).map(Value::from)
            });
            cases.push((json!("nul\u{0}inside"), false));
        }
        Some("string") => cases.push((json!("not-of-the-format"), false)),
        Some("integer") => {
            let (min, max) = (resolved["minimum"].as_i64(), resolved["maximum"].as_i64());
            for (edge, step) in [(min, -1), (max, 1)] {
                if let Some(edge) = edge {
                    cases.push((json!(edge), true));
                    cases.push((json!(edge + step), false));
                }
            }
            cases.push((json!(1.5), false));
        }
        Some("number") => {
            let (min, max) = (resolved["minimum"].as_f64(), resolved["maximum"].as_f64());
            for (edge, step) in [(min, -0.001), (max, 0.001)] {
                if let Some(edge) = edge {
                    cases.push((json!(edge), true));
                    cases.push((json!(edge + step), false));
                }
            }
        }
        Some("array") => {
            let item = valid(doc, &resolved["items"], ids);
            let max = resolved["maxItems"].as_u64();
            edges(Some(0), max, &|n| {
                Some(Value::Array(vec![item.clone(); n as usize]))
            });
            for (member, allowed) in boundaries(doc, &resolved["items"], ids) {
                cases.push((json!([member]), allowed));
            }
        }
        // A body of its own (declared properties only): its rules, across its fields too, are
        // tested where it is used; here, that it is one.
        Some("object") if resolved["additionalProperties"] == false => {
            let mut inner = valid(doc, schema, ids);
            cases.push((inner.clone(), true));
            inner["not_a_property"] = json!(1);
            cases.push((inner, false));
            if resolved["required"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                cases.push((json!({}), false));
            }
            cases.push((json!([1]), false));
        }
        Some("object") => {
            cases.push((json!({"k": "v"}), true));
            cases.push((json!({"k": "nul\u{0}"}), false));
            cases.push((json!([1]), false));
        }
        _ => {}
    }
    if resolved["type"].as_str() != Some("object") {
        cases.push((json!({"wrong": "type"}), false));
    }
    cases
}

struct Ids {
    agent: Uuid,
    user: Uuid,
}

/// Whether a 400 names `field` (or a field inside it, `field.inner`) among its field errors.
fn refuses(reply: &Reply, field: &str) -> bool {
    reply.status == 400
        && reply.json()["error"]["field_errors"]
            .as_array()
            .is_some_and(|errors| {
                errors.iter().any(|e| {
                    let named = e["field"].as_str().unwrap_or_default();
                    named == field || named.starts_with(&format!("{field}."))
                })
            })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_property_takes_exactly_what_the_document_says() {
    let auth = FakeAuth::start().await;
    // The longest texts (a directive's 32 KiB) must fit the body limit the tests otherwise keep low.
    let app = TestApp::start(auth.addr, &[("IBEX_API_MAX_BODY_BYTES", "1048576")]).await;
    let org: Uuid = ORG_ID.parse().unwrap();
    let owner = app.db.add_user(org, "owner").await;
    let ids = Ids {
        agent: app.db.add_agent(org).await,
        user: app.db.add_user(org, "member").await,
    };
    let token = auth.stored_token(org, Some(owner), ALL_PERMISSIONS);
    let doc = request(app.addr, "GET", "/openapi.json", &[], b"")
        .await
        .json();

    let mut bodies = 0;
    let mut sent = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if schema.get("$ref").is_none() {
                continue;
            }
            bodies += 1;
            let body_schema = resolve(&doc, schema);
            assert_eq!(
                body_schema["additionalProperties"], false,
                "{method} {path}: a body declares all its properties"
            );
            let target = path
                .replace("{agent_id}", &ids.agent.to_string())
                .replace("{user_id}", &ids.user.to_string())
                .replace("{org_id}", ORG_ID)
                // Bodies are read before the id is looked up: any id does.
                .replace("{request_id}", &Uuid::now_v7().to_string());
            let method = method.to_uppercase();
            let properties = body_schema["properties"].as_object().unwrap();
            let required: Vec<&str> = body_schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r.as_str().unwrap())
                .collect();
            let base: serde_json::Map<String, Value> = required
                .iter()
                .map(|name| ((*name).to_owned(), valid(&doc, &properties[*name], &ids)))
                .collect();

            let mut unknown = base.clone();
            unknown.insert("not_a_property".into(), json!(1));
            let reply = app
                .call(&method, &target, &token, Some(Value::Object(unknown)))
                .await;
            assert!(
                refuses(&reply, "not_a_property"),
                "{method} {path}: an unknown property is refused: {} {}",
                reply.status,
                reply.text()
            );
            for name in &required {
                let mut missing = base.clone();
                missing.remove(*name);
                let reply = app
                    .call(&method, &target, &token, Some(Value::Object(missing)))
                    .await;
                assert!(
                    refuses(&reply, name),
                    "{method} {path}: {name} is required: {} {}",
                    reply.status,
                    reply.text()
                );
            }
            for (name, property) in properties {
                for (value, allowed) in boundaries(&doc, property, &ids) {
                    let mut body = base.clone();
                    body.insert(name.clone(), value.clone());
                    let reply = app
                        .call(&method, &target, &token, Some(Value::Object(body)))
                        .await;
                    sent += 1;
                    let shown = value.to_string();
                    let shown = &shown[..shown.len().min(80)];
                    assert_eq!(
                        refuses(&reply, name),
                        !allowed,
                        "{method} {path}: {name} = {shown} ({} chars) is {} by the schema, but the API answered {} {}",
                        value.as_str().map_or(0, |s| s.chars().count()),
                        if allowed { "allowed" } else { "forbidden" },
                        reply.status,
                        &reply.text()[..reply.text().len().min(300)]
                    );
                }
            }
        }
    }
    assert!(
        bodies >= 10,
        "the document has its request bodies ({bodies})"
    );
    assert!(sent >= 150, "boundary values sent: {sent}");
    eprintln!("{bodies} bodies, {sent} boundary values");
}
