//! The holes a hostile tester found (issue 27), each tried from outside over real HTTP against a
//! real PostgreSQL and a real tonic auth server: ids of other organizations in bodies and query
//! strings, self-promotion, duplicate JSON keys, forged and foreign cursors, answers made before
//! the router, non-preflight OPTIONS, and the headers every answer must carry.

use std::collections::BTreeSet;

use crate::common::*;
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

/// Every id a body or a query string can carry, as the served document declares it: (method,
/// path, where, name). A new operation taking an id fails this test until it is listed in
/// [`id_cases`] with a request that proves the rule for it.
fn declared_ids(doc: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut found = BTreeSet::new();
    let is_id = |schema: &Value| {
        schema["format"] == "uuid"
            || schema["type"]
                .as_array()
                .is_some_and(|_| schema["format"] == "uuid")
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for param in op["parameters"].as_array().into_iter().flatten() {
                let param = resolve(doc, param);
                if param["in"] == "query" && is_id(&param["schema"]) {
                    found.insert((
                        method.to_uppercase(),
                        path.clone(),
                        "query".to_owned(),
                        param["name"].as_str().unwrap().to_owned(),
                    ));
                }
            }
            let body = &op["requestBody"]["content"]["application/json"]["schema"];
            if body.is_null() {
                continue;
            }
            let body = resolve(doc, body);
            for (name, schema) in body["properties"].as_object().into_iter().flatten() {
                if is_id(&resolve(doc, schema)) {
                    found.insert((
                        method.to_uppercase(),
                        path.clone(),
                        "body".to_owned(),
                        name.clone(),
                    ));
                }
            }
        }
    }
    found
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            doc.pointer(pointer).cloned().unwrap_or(Value::Null)
        }
        None => value.clone(),
    }
}

/// One request per declared id, with `{id}` where the id goes, the permissions it needs, and the
/// code a foreign or unknown id must get.
fn id_cases() -> Vec<(&'static str, String, Option<Value>, u64, &'static str)> {
    vec![
        (
            "POST",
            "/v1/tokens".into(),
            Some(json!({"name": "t", "permissions": ["memory:read"], "agent_id": "{id}"})),
            TOKEN_CREATE | MEMORY_READ,
            "AGENT_NOT_FOUND",
        ),
        (
            "GET",
            "/v1/sessions?agent_id={id}".into(),
            None,
            SESSION_READ,
            "AGENT_NOT_FOUND",
        ),
        (
            "GET",
            "/v1/audit-events?actor_id={id}".into(),
            None,
            0,
            "USER_NOT_FOUND",
        ),
        (
            "GET",
            "/v1/analytics/usage?agent_id={id}&start=2025-01-01T00:00:00Z&end=2025-01-08T00:00:00Z".into(),
            None,
            TRACE_READ,
            "AGENT_NOT_FOUND",
        ),
        (
            "GET",
            "/v1/analytics/latency?agent_id={id}&start=2025-01-01T00:00:00Z&end=2025-01-08T00:00:00Z".into(),
            None,
            TRACE_READ,
            "AGENT_NOT_FOUND",
        ),
        (
            "GET",
            "/v1/analytics/errors?agent_id={id}&start=2025-01-01T00:00:00Z&end=2025-01-08T00:00:00Z".into(),
            None,
            TRACE_READ,
            "AGENT_NOT_FOUND",
        ),
        (
            "GET",
            "/v1/analytics/models?agent_id={id}&start=2025-01-01T00:00:00Z&end=2025-01-08T00:00:00Z".into(),
            None,
            TRACE_READ,
            "AGENT_NOT_FOUND",
        ),
    ]
}

/// Sends an operation of the table below with `id` wherever its path or body says `{id}`.
async fn call_with_id(
    app: &TestApp,
    token: &str,
    (method, path, body): (&str, &str, &Option<Value>),
    id: Uuid,
) -> Reply {
    let fill = |text: &str| text.replace("{id}", &id.to_string());
    let body = body
        .as_ref()
        .map(|b| serde_json::from_str(&fill(&b.to_string())).unwrap());
    app.call(method, &fill(path), token, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_in_a_body_or_query_must_be_the_callers_organizations() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    let own_agent = app.db.add_agent(org_a()).await;
    let foreign_agent = app.db.add_agent(org_b).await;
    let foreign_user = app.db.add_user(org_b, "owner").await;

    let doc = request(app.addr, "GET", "/openapi.json", &[], b"")
        .await
        .json();
    let declared = declared_ids(&doc);
    let cases = id_cases();
    let covered: BTreeSet<_> = cases
        .iter()
        .map(|(method, path, body, _, _)| {
            let (route, query) = path.split_once('?').unwrap_or((path, ""));
            match (query.split_once('='), body) {
                (Some((name, _)), _) => (
                    method.to_string(),
                    route.to_owned(),
                    "query".to_owned(),
                    name.to_owned(),
                ),
                (None, Some(body)) => (
                    method.to_string(),
                    route.to_owned(),
                    "body".to_owned(),
                    body.as_object()
                        .unwrap()
                        .iter()
                        .find(|(_, v)| *v == "{id}")
                        .unwrap()
                        .0
                        .clone(),
                ),
                (None, None) => unreachable!(),
            }
        })
        .collect();
    assert_eq!(
        declared, covered,
        "every id a body or query string carries has a case here"
    );

    let rpcs_before = auth.token_rpc_metadata().len();
    for (method, path, body, permissions, code) in &cases {
        let token = auth.stored_token(org_a(), Some(owner), *permissions);
        for (what, id) in [
            ("foreign agent", foreign_agent),
            ("foreign user", foreign_user),
            ("unknown", Uuid::now_v7()),
        ] {
            let reply = call_with_id(&app, &token, (method, path, body), id).await;
            assert_eq!(
                reply.status,
                404,
                "{method} {path} with a {what} id: {}",
                reply.text()
            );
            reply.assert_error(404, code);
        }
        // The caller's own objects pass the check.
        let own = match *code {
            "USER_NOT_FOUND" => owner,
            _ => own_agent,
        };
        let reply = call_with_id(&app, &token, (method, path, body), own).await;
        assert!(
            reply.status == 200 || reply.status == 201 || reply.status == 503,
            "{method} {path} with its own id: {} {}",
            reply.status,
            reply.text()
        );
    }
    // Only the one successful creation reached the auth service's token RPCs.
    assert_eq!(auth.token_rpc_metadata().len(), rpcs_before + 1);
    let minted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.audit_events WHERE action = 'token.create'",
    )
    .fetch_one(&mut app.db.admin().await)
    .await
    .unwrap();
    assert_eq!(minted, 1, "no token minted for a foreign or unknown agent");
}

/// A deleted agent is no longer a live object: a token cannot be bound to it.
#[tokio::test]
async fn a_token_cannot_be_bound_to_a_deleted_agent() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let agent = app.db.add_agent(org_a()).await;
    app.db
        .admin()
        .await
        .run(
            "UPDATE ibex_core.agents SET deleted_at = now() WHERE id = $1",
            agent,
        )
        .await;
    let token = auth.stored_token(org_a(), None, TOKEN_CREATE | MEMORY_READ);
    let reply = app
        .post(
            "/v1/tokens",
            &token,
            json!({"name": "t", "permissions": ["memory:read"], "agent_id": agent}),
        )
        .await;
    reply.assert_error(404, "AGENT_NOT_FOUND");
}

async fn role_of(app: &TestApp, user: Uuid) -> String {
    app.db
        .admin()
        .await
        .value("SELECT role FROM ibex_core.users WHERE id = $1", user)
        .await
}

async fn audited(app: &TestApp, action: &str, target: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.audit_events WHERE action = $1 AND target_id = $2",
    )
    .bind(action)
    .bind(target.to_string())
    .fetch_one(&mut app.db.admin().await)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_move_only_below_the_callers_own() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    let admin = app.db.add_user(org_a(), "admin").await;
    let other_admin = app.db.add_user(org_a(), "admin").await;
    let member = app.db.add_user(org_a(), "member").await;
    let viewer = app.db.add_user(org_a(), "viewer").await;
    let token = |user: Uuid| auth.token_for_user(org_a(), Some(user), USER_MANAGE);
    let patch = |user: Uuid, role: &str| (format!("/v1/users/{user}"), json!({ "role": role }));

    // Refused: (caller, target, new role). Nothing changes, nothing is audited.
    let refused = [
        (
            member,
            member,
            "admin",
            "a member promotes itself (the hostile tester's case)",
        ),
        (member, member, "owner", "a member makes itself owner"),
        (admin, admin, "owner", "an admin makes itself owner"),
        (admin, viewer, "admin", "an admin grants its own role"),
        (admin, other_admin, "member", "an admin demotes its peer"),
        (admin, owner, "admin", "an admin demotes an owner"),
        (member, viewer, "member", "a member grants its own role"),
        (viewer, viewer, "member", "a viewer promotes itself"),
    ];
    for (caller, target, role, why) in refused {
        let before = role_of(&app, target).await;
        let (path, body) = patch(target, role);
        let reply = app.call("PATCH", &path, &token(caller), Some(body)).await;
        assert_eq!(reply.status, 403, "{why}: {}", reply.text());
        reply.assert_error(403, "ROLE_NOT_GRANTABLE");
        assert_eq!(role_of(&app, target).await, before, "{why}: unchanged");
        assert_eq!(
            audited(&app, "user.update", target).await,
            0,
            "{why}: not audited"
        );
    }
    // ...and the audit log stays closed to the member who tried.
    let member_reader = auth.token_for_user(org_a(), Some(member), USER_MANAGE);
    app.read("/v1/audit-events", &member_reader)
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSIONS");

    // Removing and inviting follow the same order.
    let reply = app
        .delete(&format!("/v1/users/{other_admin}"), &token(admin))
        .await;
    reply.assert_error(403, "ROLE_NOT_GRANTABLE");
    for role in ["admin", "owner"] {
        let reply = app
            .post(
                "/v1/users",
                &token(admin),
                json!({"email": format!("{role}@x.example"), "role": role}),
            )
            .await;
        reply.assert_error(403, "ROLE_NOT_GRANTABLE");
    }
    // An agent's token (no user) changes no role.
    let agent_token = auth.token_for_user(org_a(), None, USER_MANAGE);
    let (path, body) = patch(viewer, "member");
    app.call("PATCH", &path, &agent_token, Some(body))
        .await
        .assert_error(403, "ROLE_NOT_GRANTABLE");

    // Allowed: below the caller's own, self-demotion, and anything for an owner.
    let allowed = [
        (admin, viewer, "member"),
        (admin, viewer, "viewer"),
        (member, viewer, "viewer"),
        (other_admin, other_admin, "member"),
        (owner, member, "admin"),
        (owner, member, "owner"),
        (owner, member, "viewer"),
    ];
    for (caller, target, role) in allowed {
        let (path, body) = patch(target, role);
        let reply = app.call("PATCH", &path, &token(caller), Some(body)).await;
        assert_eq!(
            reply.status,
            200,
            "{caller} sets {target} to {role}: {}",
            reply.text()
        );
        assert_eq!(role_of(&app, target).await, role);
    }
    // A rename is not a role change.
    let reply = app
        .patch(
            &format!("/v1/users/{owner}"),
            &token(admin),
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = app
        .post(
            "/v1/users",
            &token(admin),
            json!({"email": "m@x.example", "role": "member"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = app
        .delete(&format!("/v1/users/{viewer}"), &token(admin))
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
}

#[tokio::test]
async fn a_repeated_json_key_is_refused_at_any_depth() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    let member = app.db.add_user(org_a(), "member").await;
    let token = auth.token_for_user(org_a(), Some(owner), USER_MANAGE | (1 << 35));
    let bearer = format!("Bearer {token}");
    let send = |path: String, method: &'static str, body: &'static str| {
        let bearer = bearer.clone();
        let addr = app.addr;
        async move {
            request(
                addr,
                method,
                &path,
                &[
                    ("Authorization", bearer.as_str()),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            )
            .await
        }
    };
    for (method, path, body, field) in [
        (
            "PATCH",
            format!("/v1/users/{member}"),
            r#"{"role":"admin","role":"owner"}"#,
            "role",
        ),
        (
            "PATCH",
            format!("/v1/users/{member}"),
            r#"{"role":"viewer","name":"a","role":"viewer"}"#,
            "role",
        ),
        (
            "POST",
            "/v1/agents".to_owned(),
            r#"{"name":"n","slug":"s","config":{"a":[{"b":1,"b":2}]}}"#,
            "config.a[0].b",
        ),
    ] {
        let reply = send(path, method, body).await;
        let envelope = reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(
            envelope["error"]["field_errors"][0]["field"], field,
            "{body}"
        );
        assert_eq!(
            envelope["error"]["field_errors"][0]["code"],
            "DUPLICATE_KEY"
        );
    }
    assert_eq!(role_of(&app, member).await, "member", "nothing stored");
    let agents: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.agents")
        .fetch_one(&mut app.db.admin().await)
        .await
        .unwrap();
    assert_eq!(agents, 0);
    // The same key in two different objects is fine.
    let reply = send(
        "/v1/agents".to_owned(),
        "POST",
        r#"{"name":"n","slug":"s","config":{"x":{"k":1},"y":{"k":1}}}"#,
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
}

/// A cursor is bound to its organization and list and cannot be altered; a rotation keeps the
/// old key's cursors valid on every replica that has both keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_are_signed_and_bound_to_their_organization() {
    const OLD: &str = "the-old-cursor-key-with-at-least-32-characters";
    const NEW: &str = "the-new-cursor-key-with-at-least-32-characters";
    let (auth, app) = TestApp::with_auth(&[("IBEX_API_CURSOR_KEYS", OLD)]).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    for org in [org_a(), org_b] {
        for _ in 0..3 {
            app.db.add_agent(org).await;
        }
    }
    let token_a = auth.token_for(org_a(), 1);
    let token_b = auth.token_for(org_b, 1);
    let page = app.read("/v1/agents?limit=1", &token_a).await.json();
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(
        app.read(&format!("/v1/agents?limit=1&cursor={cursor}"), &token_a)
            .await
            .status,
        200
    );

    // Another organization's cursor: refused, though it would show only the caller's rows.
    let reply = app
        .read(&format!("/v1/agents?limit=1&cursor={cursor}"), &token_b)
        .await;
    let envelope = reply.assert_error(400, "INVALID_CURSOR");
    assert_eq!(envelope["error"]["field_errors"][0]["field"], "cursor");

    // Any changed character: refused.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for at in [0, 5, 20, cursor.len() - 1] {
        let mut flipped = cursor.clone().into_bytes();
        let now = flipped[at] as char;
        flipped[at] = alphabet.chars().find(|c| *c != now).unwrap() as u8;
        let flipped = String::from_utf8(flipped).unwrap();
        app.read(&format!("/v1/agents?limit=1&cursor={flipped}"), &token_a)
            .await
            .assert_error(400, "INVALID_CURSOR");
    }

    // A replica with the new key first and the old one kept accepts the old cursor; a replica
    // that dropped the old key does not.
    let rotated = TestApp::start_on(
        config(
            auth.addr,
            &[
                ("IBEX_API_DATABASE_URL", app.db.url.as_str()),
                ("IBEX_API_CURSOR_KEYS", &format!("{NEW},{OLD}")),
            ],
        ),
        TestDb {
            url: app.db.url.clone(),
            name: app.db.name.clone(),
        },
    )
    .await;
    let reply = rotated
        .read(&format!("/v1/agents?limit=1&cursor={cursor}"), &token_a)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let dropped = TestApp::start_on(
        config(
            auth.addr,
            &[
                ("IBEX_API_DATABASE_URL", app.db.url.as_str()),
                ("IBEX_API_CURSOR_KEYS", NEW),
            ],
        ),
        TestDb {
            url: app.db.url.clone(),
            name: app.db.name.clone(),
        },
    )
    .await;
    dropped
        .read(&format!("/v1/agents?limit=1&cursor={cursor}"), &token_a)
        .await
        .assert_error(400, "INVALID_CURSOR");
}

/// What used to be answered by the HTTP server with an empty body now gets the envelope.
#[tokio::test]
async fn oversized_heads_get_the_envelope_with_a_request_id() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let (name, value) = bearer();

    let many: Vec<(String, String)> = (0..101)
        .map(|i| (format!("X-Filler-{i}"), "x".to_owned()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let big = "y".repeat(40 * 1024);
    let long_path = format!("/v1/agents?x={}", "z".repeat(9 * 1024));
    for (what, path, headers, status, code) in [
        (
            "101 headers",
            "/v1/agents".to_owned(),
            many.clone(),
            431,
            "HEADERS_TOO_LARGE",
        ),
        (
            "a 40 KiB header",
            "/v1/agents".to_owned(),
            vec![("X-Big", big.as_str())],
            431,
            "HEADERS_TOO_LARGE",
        ),
        ("a 9 KiB target", long_path, vec![], 414, "URI_TOO_LONG"),
    ] {
        let mut headers = headers;
        headers.push((name, value.as_str()));
        let reply = request(app.addr, "GET", &path, &headers, b"").await;
        assert_eq!(reply.status, status, "{what}");
        let envelope = reply.assert_error(status, code);
        assert_eq!(
            envelope["error"]["request_id"],
            reply.header("x-request-id").unwrap(),
            "{what}"
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(auth.calls(), 0, "refused before auth");
    // Just under the limits: served.
    let hundred: Vec<(&str, &str)> = many[..90].to_vec();
    let mut headers = hundred;
    headers.push((name, value.as_str()));
    let reply = request(app.addr, "GET", "/v1/agents", &headers, b"").await;
    assert_ne!(reply.status, 431);
    // Beyond what the server reads at all: hyper's own bare answer (docs/errors.md says so).
    let huge = "y".repeat(200 * 1024);
    let reply = request(app.addr, "GET", "/v1/agents", &[("X-Huge", &huge)], b"").await;
    assert_eq!(reply.status, 431);
}

#[tokio::test]
async fn options_that_is_not_a_preflight_needs_a_token() {
    let (_auth, app) = TestApp::with_auth(&[]).await;
    for headers in [
        vec![],
        vec![("Origin", ALLOWED_ORIGIN)],
        vec![("Access-Control-Request-Method", "GET")],
    ] {
        let reply = request(app.addr, "OPTIONS", "/v1/agents", &headers, b"").await;
        reply.assert_error(401, "MISSING_TOKEN");
    }
    let (name, value) = bearer();
    let reply = request(
        app.addr,
        "OPTIONS",
        "/v1/agents",
        &[(name, value.as_str())],
        b"",
    )
    .await;
    reply.assert_error(405, "METHOD_NOT_ALLOWED");
    // A real preflight is still answered before auth.
    let reply = request(
        app.addr,
        "OPTIONS",
        "/v1/agents",
        &[
            ("Origin", ALLOWED_ORIGIN),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
}

#[tokio::test]
async fn every_answer_is_nosniff_and_authenticated_ones_are_no_store() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let token = auth.token_for(org_a(), 1 | (1 << 35));
    let agent = app.db.add_agent(org_a()).await;
    let path = format!("/v1/agents/{agent}");
    let got = app.read(&path, &token).await;
    assert_eq!(got.status, 200);
    let etag = got.header("etag").unwrap().to_owned();
    for (what, reply, authenticated) in [
        (
            "health",
            request(app.addr, "GET", "/health", &[], b"").await,
            false,
        ),
        (
            "openapi",
            request(app.addr, "GET", "/openapi.json", &[], b"").await,
            false,
        ),
        (
            "401",
            request(app.addr, "GET", "/v1/agents", &[], b"").await,
            false,
        ),
        ("200", app.read(&path, &token).await, true),
        ("list", app.read("/v1/agents", &token).await, true),
        ("304", app.if_none_match(&path, &token, &etag).await, true),
        ("404", app.read("/v1/nope", &token).await, true),
    ] {
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        if authenticated || reply.status >= 400 {
            assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
        }
    }
    let not_modified = app.if_none_match(&path, &token, &etag).await;
    assert_eq!(not_modified.status, 304, "ETags keep working");
    // And every audit-event row names its request even when a key moved the work elsewhere.
    let key = Uuid::new_v4().to_string();
    let reply = app
        .call_with(
            "POST",
            &format!("{path}/pause"),
            &token,
            &[("Idempotency-Key", &key)],
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let row =
        sqlx::query("SELECT request_id FROM ibex_core.audit_events WHERE action = 'agent.pause'")
            .fetch_one(&mut app.db.admin().await)
            .await
            .unwrap();
    assert_eq!(row.get::<String, _>(0), reply.request_id());
}

/// Lists whose filters' indexes compete are planned for their values; the rest keep the
/// connection's cached plan (issue 27, part 4).
#[tokio::test]
async fn competing_filters_plan_for_their_values() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let config = config(auth.addr, &[("IBEX_API_DATABASE_URL", app.db.url.as_str())]);
    let db = ibex_api::db::Database::connect_lazy(&config.database).unwrap();
    let caller = ibex_api::auth::Caller {
        org_id: org_a(),
        user_id: None,
        agent_id: None,
        token_id: None,
        permissions: ibex_api::auth::Permissions(0),
        expires_at: None,
    };
    for (for_values, expected) in [(false, "auto"), (true, "force_custom_plan")] {
        let mut tx = db.begin_for(&caller).await.unwrap();
        if for_values {
            tx.plan_for_values();
        }
        let rows = tx.query("SHOW plan_cache_mode", &[]).await.unwrap();
        assert_eq!(rows[0].get::<_, String>(0), expected);
        tx.finish_read();
    }
}
