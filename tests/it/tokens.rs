//! Tokens end to end through a real tonic auth server (its token RPCs backed by the in-memory
//! store of the development service, or scripted to fail).

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tonic::Code;
use uuid::Uuid;

/// `DELETE /v1/tokens/{id}` of `token` itself (the id a PAT carries: `ibex_pat_{id}_{secret}`);
/// the status.
async fn revoke_own(app: &TestApp, token: &str) -> u16 {
    let id = &token.strip_prefix("ibex_pat_").unwrap()[..36];
    app.delete(&format!("/v1/tokens/{id}"), token).await.status
}

#[tokio::test]
async fn mint_use_list_and_revoke() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let manager = auth.stored_token(
        org_a(),
        None,
        TOKEN_CREATE | TOKEN_REVOKE | MEMORY_READ | ORG_SETTINGS_WRITE,
    );

    let created = app
        .post(
            "/v1/tokens",
            &manager,
            json!({"name": "ci reader", "description": "for CI", "permissions": ["memory:read"],
                        "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/tokens/{id}").as_str())
    );
    assert_eq!(body["permissions"], json!(["memory:read"]));
    assert_eq!(body["description"], "for CI");
    assert_eq!(body["expires_at"], "2099-01-01T00:00:00.000Z");
    assert_eq!(body["is_revoked"], false);
    let plaintext = body["plaintext"].as_str().unwrap().to_owned();
    assert!(
        plaintext.starts_with(&format!("ibex_pat_{id}_")),
        "{plaintext}"
    );
    assert!(plaintext.starts_with(body["prefix"].as_str().unwrap()));

    // The new token works, with exactly its bits: a read passes, a write is refused.
    assert_eq!(app.read("/v1/agents", &plaintext).await.status, 200);
    app.post_agent(&plaintext, "n")
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    // ...and cannot manage tokens.
    app.read("/v1/tokens", &plaintext)
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSIONS");

    let listed = app.read("/v1/tokens", &manager).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(
        !listed.text().contains(&plaintext),
        "a list never shows a secret"
    );
    let listed = listed.json();
    assert_eq!(listed["items"][0]["id"], id.as_str(), "newest first");
    assert_eq!(listed["total"], Value::Null);
    let got = app.read(&format!("/v1/tokens/{id}"), &manager).await.json();
    assert_eq!(got["name"], "ci reader");
    assert!(got.get("plaintext").is_none());
    app.read(&format!("/v1/tokens/{}", Uuid::now_v7()), &manager)
        .await
        .assert_error(404, "NOT_FOUND");

    for _ in 0..2 {
        let revoked = app.delete(&format!("/v1/tokens/{id}"), &manager).await;
        assert_eq!(revoked.status, 204, "{}", revoked.text());
    }
    app.read("/v1/agents", &plaintext)
        .await
        .assert_error(401, "INVALID_TOKEN");
    let got = app.read(&format!("/v1/tokens/{id}"), &manager).await.json();
    assert_eq!(got["is_revoked"], true);
    assert!(got["revoked_at"].is_string());
    app.delete(&format!("/v1/tokens/{}", Uuid::now_v7()), &manager)
        .await
        .assert_error(404, "NOT_FOUND");

    // Every call carried the caller's own PAT and the request's id.
    let metadata = auth.token_rpc_metadata();
    assert!(!metadata.is_empty());
    for (authorization, request_id) in metadata {
        assert_eq!(authorization, Some(format!("Bearer {manager}")));
        assert!(request_id.is_some_and(|id| Uuid::try_parse(&id).is_ok()));
    }
}

#[tokio::test]
async fn checks_made_before_the_auth_service_is_asked() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let creator = auth.stored_token(org_a(), None, TOKEN_CREATE | MEMORY_READ);
    let reader = auth.stored_token(org_a(), None, MEMORY_READ);

    app.post(
        "/v1/tokens",
        &creator,
        json!({"name": "x", "permissions": ["memory:read", "user:manage"]}),
    )
    .await
    .assert_error(403, "PERMISSION_ELEVATION_DENIED");
    for (body, field) in [
        (
            json!({"name": "x", "permissions": ["memory:admin"]}),
            "permissions",
        ),
        (
            json!({"name": "x", "permissions": "memory:read"}),
            "permissions",
        ),
        (json!({"name": "x"}), "permissions"),
        (json!({"permissions": []}), "name"),
        (
            json!({"name": "x", "permissions": [], "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "permissions": [], "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "permissions": [], "agent_id": "agent-7"}),
            "agent_id",
        ),
        (
            json!({"name": "x", "permissions": [], "secret": "x"}),
            "secret",
        ),
    ] {
        let error = app
            .post("/v1/tokens", &creator, body.clone())
            .await
            .assert_error(400, "VALIDATION_ERROR");
        assert_eq!(error["error"]["field_errors"][0]["field"], field, "{body}");
    }
    for (method, path) in [
        ("GET", "/v1/tokens".to_owned()),
        ("GET", format!("/v1/tokens/{}", Uuid::now_v7())),
        ("DELETE", format!("/v1/tokens/{}", Uuid::now_v7())),
    ] {
        app.call(method, &path, &reader, None)
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }
    app.post(
        "/v1/tokens",
        &reader,
        json!({"name": "x", "permissions": []}),
    )
    .await
    .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    // Cursors that are not this list's never reach the auth service.
    let agents_cursor = {
        let mut admin = app.db.admin().await;
        let sql = "INSERT INTO ibex_core.agents (org_id, name, slug) SELECT $1, 'a', 'a-' || n
                   FROM generate_series(1, 2) n";
        admin.run(sql, org_a()).await;
        let list_reader = auth.stored_token(org_a(), None, TOKEN_CREATE);
        let page = app.read("/v1/agents?limit=1", &list_reader).await.json();
        page["next_cursor"].as_str().unwrap().to_owned()
    };
    for cursor in [agents_cursor.as_str(), "AnotherCursor", "Ag"] {
        let error = app
            .read(&format!("/v1/tokens?cursor={cursor}"), &creator)
            .await
            .assert_error(400, "INVALID_CURSOR");
        assert_eq!(error["error"]["field_errors"][0]["field"], "cursor");
    }
    assert!(
        auth.token_rpc_metadata().is_empty(),
        "nothing was sent to the auth service"
    );
    // One's own token may be revoked without the bit.
    assert_eq!(revoke_own(&app, &reader).await, 204);
}

#[tokio::test]
async fn the_auth_services_own_cursor_is_wrapped() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let creator = auth.stored_token(org_a(), None, TOKEN_CREATE | MEMORY_READ);
    for i in 0..4 {
        let reply = app
            .post(
                "/v1/tokens",
                &creator,
                json!({"name": format!("t{i}"), "permissions": []}),
            )
            .await;
        assert_eq!(reply.status, 201);
    }
    let mut seen = Vec::new();
    let mut path = "/v1/tokens?limit=2".to_owned();
    loop {
        let page = app.read(&path, &creator).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert!(
                    !cursor.contains('|'),
                    "the auth service's cursor is not shown"
                );
                path = format!("/v1/tokens?limit=2&cursor={cursor}");
            }
            None => break,
        }
    }
    // Four minted, the creator's own and the store's development token.
    assert_eq!(seen.len(), 6);
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 6);
}

/// The auth service's answers map as docs/domains/tokens.md says, and its message is never passed on.
#[tokio::test]
async fn auth_service_answers_map_to_the_envelope() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let manager = auth.stored_token(org_a(), None, TOKEN_CREATE | TOKEN_REVOKE | MEMORY_READ);
    let id = Uuid::now_v7();
    let operations: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/tokens".into(), None),
        (
            "POST",
            "/v1/tokens".into(),
            Some(json!({"name": "x", "permissions": ["memory:read"]})),
        ),
        ("GET", format!("/v1/tokens/{id}"), None),
        ("DELETE", format!("/v1/tokens/{id}"), None),
    ];
    let cases = [
        (
            Behavior::fail(Code::PermissionDenied),
            403,
            "INSUFFICIENT_PERMISSIONS",
        ),
        (
            Behavior::fail(Code::InvalidArgument),
            400,
            "VALIDATION_ERROR",
        ),
        (Behavior::fail(Code::NotFound), 404, "NOT_FOUND"),
        (Behavior::fail(Code::Unauthenticated), 401, "INVALID_TOKEN"),
        (Behavior::fail(Code::Unavailable), 503, "AUTH_UNAVAILABLE"),
        (Behavior::fail(Code::Internal), 503, "AUTH_UNAVAILABLE"),
        (
            Behavior::accept().delayed(Duration::from_secs(2)),
            503,
            "AUTH_UNAVAILABLE",
        ),
    ];
    for (behavior, status, code) in cases {
        auth.set_token_rpcs(behavior);
        for (method, path, body) in &operations {
            let reply = app.call(method, path, &manager, body.clone()).await;
            reply.assert_error(status, code);
            assert!(!reply.text().contains("SECRET-INPUT"), "{}", reply.text());
        }
    }
}

/// With the validation cache on, a token this replica revokes stops working at once.
#[tokio::test]
async fn revoking_drops_the_cached_validation() {
    let (auth, app) = TestApp::with_auth(&[("IBEX_API_AUTH_CACHE_TTL_MS", "600000")]).await;
    let token = auth.stored_token(org_a(), None, MEMORY_READ);
    assert_eq!(app.read("/v1/agents", &token).await.status, 200);
    assert_eq!(app.read("/v1/agents", &token).await.status, 200, "cached");
    assert_eq!(revoke_own(&app, &token).await, 204);
    app.read("/v1/agents", &token)
        .await
        .assert_error(401, "INVALID_TOKEN");
}
