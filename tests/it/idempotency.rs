//! Idempotency keys from outside: a POST retried with the same `Idempotency-Key` gets the first
//! answer again (`Idempotent-Replayed: true`) and does nothing else; the same key for another
//! request is 409, a key still running is 409 with Retry-After, a 5xx is not kept, a token's
//! secret is never kept, keys are the caller's and the organization's own, and expired keys
//! are swept.

use std::sync::Arc;

use crate::common::*;
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut admin = app.db.admin().await;
    sqlx::query(sql)
        .fetch_one(&mut admin)
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// `POST /v1/agents` of agent `slug`, with these headers (the key).
async fn create(app: &TestApp, token: &str, headers: &[(&str, &str)], slug: &str) -> Reply {
    let body = json!({"name": slug, "slug": slug});
    app.call_with("POST", "/v1/agents", token, headers, Some(body))
        .await
}

#[tokio::test]
async fn a_retried_create_gets_the_first_answer_and_does_nothing_else() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let token = auth.token_for(ORG_ID.parse().unwrap(), ORG_SETTINGS_WRITE);
    let key = [("Idempotency-Key", "create-agent-1")];

    let first = create(&app, &token, &key, "a").await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert!(first.header("idempotent-replayed").is_none());
    let again = create(&app, &token, &key, "a").await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json(), "the same agent, byte for byte");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(
        again.header("content-type"),
        Some("application/json"),
        "a replay keeps the content type"
    );
    assert_ne!(
        again.header("x-request-id"),
        first.header("x-request-id"),
        "a replay is a request of its own"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM ibex_core.agents").await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM ibex_core.audit_events WHERE action = 'agent.create'"
        )
        .await,
        1
    );

    // The same key for another body, path or method: refused, nothing done.
    let other_body = create(&app, &token, &key, "b").await;
    other_body.assert_error(409, "IDEMPOTENCY_KEY_REUSED");
    let id = first.json()["id"].as_str().unwrap().to_owned();
    app.call_with(
        "POST",
        &format!("/v1/agents/{id}/pause"),
        &token,
        &key,
        None,
    )
    .await
    .assert_error(409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        count(&app, "SELECT count(*) FROM ibex_core.agents").await,
        1
    );

    // Another caller's key of the same name is its own.
    let colleague = auth.token_for(ORG_ID.parse().unwrap(), ORG_SETTINGS_WRITE);
    let theirs = create(&app, &colleague, &key, "c").await;
    assert_eq!(theirs.status, 201, "{}", theirs.text());
    assert!(theirs.header("idempotent-replayed").is_none());

    // A transition retried: one pause, one audit event.
    let pause_key = [("Idempotency-Key", "pause-1")];
    let path = format!("/v1/agents/{id}/pause");
    let paused = app.call_with("POST", &path, &token, &pause_key, None).await;
    assert_eq!(paused.status, 200, "{}", paused.text());
    let replayed = app.call_with("POST", &path, &token, &pause_key, None).await;
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.json(), paused.json());
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM ibex_core.audit_events WHERE action = 'agent.pause'"
        )
        .await,
        1
    );
    // Without a key the same request runs (and, paused already, says so).
    let unkeyed = app.call("POST", &path, &token, None).await;
    assert!(unkeyed.header("idempotent-replayed").is_none());
}

/// An export retried with its key: one job, the same job in both answers.
#[tokio::test]
async fn a_retried_export_is_one_job() {
    let (auth, _s3, app) = TestApp::with_s3(&[]).await;
    let token = auth.token_for(
        ORG_ID.parse().unwrap(),
        ORG_SETTINGS_WRITE | MEMORY_BULK_EXPORT,
    );
    let agent = app.post_agent(&token, "e").await;
    assert_eq!(agent.status, 201, "{}", agent.text());
    let path = format!(
        "/v1/agents/{}/memories/export",
        agent.json()["id"].as_str().unwrap()
    );
    let key = [("Idempotency-Key", "export-1")];
    let body = json!({"format": "csv"});
    let started = app
        .call_with("POST", &path, &token, &key, Some(body.clone()))
        .await;
    assert_eq!(started.status, 202, "{}", started.text());
    let again = app.call_with("POST", &path, &token, &key, Some(body)).await;
    assert_eq!(again.status, 202, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), started.header("location"));
    assert_eq!(again.json()["id"], started.json()["id"]);
    assert_eq!(
        count(&app, "SELECT count(*) FROM ibex_core.memory_exports").await,
        1,
        "one export job"
    );
}

#[tokio::test]
async fn a_malformed_key_is_a_400_naming_the_header() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let token = auth.token_for(ORG_ID.parse().unwrap(), ORG_SETTINGS_WRITE);
    let long = "k".repeat(256);
    for bad in ["", "has space", long.as_str(), "tab\there"] {
        let reply = create(&app, &token, &[("Idempotency-Key", bad)], "a").await;
        reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(
            reply.json()["error"]["field_errors"][0]["field"],
            "Idempotency-Key",
            "{bad:?}"
        );
    }
    let longest = "k".repeat(255);
    let ok = create(&app, &token, &[("Idempotency-Key", &longest)], "a").await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(
        count(&app, "SELECT count(*) FROM ibex_core.agents").await,
        1
    );
}

#[tokio::test]
async fn a_retry_storm_of_fifty_has_one_effect() {
    let auth = FakeAuth::start().await;
    let app = Arc::new(TestApp::start(auth.addr, &[]).await);
    let token = auth.token_for(ORG_ID.parse().unwrap(), ORG_SETTINGS_WRITE);
    let mut storm = Vec::new();
    for _ in 0..50 {
        let (app, token) = (Arc::clone(&app), token.clone());
        storm.push(tokio::spawn(async move {
            create(&app, &token, &[("Idempotency-Key", "storm")], "storm").await
        }));
    }
    let mut first = Vec::new();
    let mut replayed = 0;
    let mut in_use = 0;
    for reply in storm {
        let reply = reply.await.unwrap();
        match (reply.status, reply.header("idempotent-replayed")) {
            (201, None) => first.push(reply.json()),
            (201, Some("true")) => replayed += 1,
            (409, None) => {
                reply.assert_error(409, "IDEMPOTENCY_KEY_IN_USE");
                assert_eq!(reply.header("retry-after"), Some("1"));
                in_use += 1;
            }
            other => panic!("unexpected answer {other:?}: {}", reply.text()),
        }
    }
    assert_eq!(first.len(), 1, "exactly one request ran");
    assert_eq!(replayed + in_use, 49);
    assert_eq!(
        count(&app, "SELECT count(*) FROM ibex_core.agents").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM ibex_core.audit_events").await,
        1,
        "one audit event"
    );
    // Once settled, every retry is the stored answer.
    let late = create(&app, &token, &[("Idempotency-Key", "storm")], "storm").await;
    assert_eq!(late.header("idempotent-replayed"), Some("true"));
    assert_eq!(late.json(), first[0]);
}

#[tokio::test]
async fn an_error_answer_is_replayed_with_the_new_request_id_and_a_5xx_is_not_kept() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let token = auth.token_for(ORG_ID.parse().unwrap(), ORG_SETTINGS_WRITE);
    let body = json!({"name": "a", "slug": "taken"});
    assert_eq!(
        app.post("/v1/agents", &token, body.clone()).await.status,
        201
    );
    let key = [("Idempotency-Key", "conflict")];
    let refused = app
        .call_with("POST", "/v1/agents", &token, &key, Some(body.clone()))
        .await;
    refused.assert_error(409, "AGENT_SLUG_CONFLICT");
    let again = app
        .call_with("POST", "/v1/agents", &token, &key, Some(body))
        .await;
    again.assert_error(409, "AGENT_SLUG_CONFLICT");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.json()["error"]["request_id"].as_str(),
        again.header("x-request-id"),
        "the envelope carries this request's id"
    );

    // A token creation the auth service failed (503) is not kept: the retry runs again.
    let creator = auth.stored_token(ORG_ID.parse().unwrap(), None, TOKEN_CREATE | MEMORY_READ);
    let key = [("Idempotency-Key", "mint")];
    let token_body = json!({"name": "ci", "permissions": ["memory:read"]});
    let mint = || {
        app.call_with(
            "POST",
            "/v1/tokens",
            &creator,
            &key,
            Some(token_body.clone()),
        )
    };
    auth.set_token_rpcs(Behavior::fail(tonic::Code::Unavailable));
    let failed = mint().await;
    failed.assert_error(503, "AUTH_UNAVAILABLE");
    auth.set_token_rpcs(Behavior::accept());
    let minted = mint().await;
    assert_eq!(minted.status, 201, "{}", minted.text());
    assert!(minted.header("idempotent-replayed").is_none());
    let plaintext = minted.json()["plaintext"].as_str().unwrap().to_owned();
    let rpcs = auth.token_rpc_metadata().len();

    // A token's secret is never kept, so a retry is refused and mints nothing.
    let retry = app
        .call_with("POST", "/v1/tokens", &creator, &key, Some(token_body))
        .await;
    retry.assert_error(409, "IDEMPOTENCY_REPLAY_WITHHELD");
    assert_eq!(retry.header("location"), minted.header("location"));
    assert!(!retry.text().contains(&plaintext));
    assert_eq!(auth.token_rpc_metadata().len(), rpcs, "nothing minted");
    let mut admin = app.db.admin().await;
    let stored: Vec<u8> = sqlx::query_scalar(
        "SELECT coalesce(body, ''::bytea) FROM ibex_core.idempotency_keys WHERE key = 'mint'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains(&plaintext),
        "the secret is stored nowhere"
    );
}

#[tokio::test]
async fn keys_are_the_organizations_own_and_expire() {
    let (auth, app) = TestApp::with_auth(&[("IBEX_API_IDEMPOTENCY_TTL_MS", "1000")]).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let token_a = auth.token_for_user(
        ORG_ID.parse().unwrap(),
        Some(Uuid::nil()),
        ORG_SETTINGS_WRITE,
    );
    // Another organization, the same user id and key: never org A's answer.
    let token_b = auth.token_for_user(org_b, Some(Uuid::nil()), ORG_SETTINGS_WRITE);
    let key = [("Idempotency-Key", "shared")];
    let body = json!({"name": "a", "slug": "a"});
    let a = app
        .call_with("POST", "/v1/agents", &token_a, &key, Some(body.clone()))
        .await;
    let b = app
        .call_with("POST", "/v1/agents", &token_b, &key, Some(body.clone()))
        .await;
    assert_eq!((a.status, b.status), (201, 201), "{}", b.text());
    assert!(b.header("idempotent-replayed").is_none());
    assert_ne!(a.json()["id"], b.json()["id"]);
    // Under row-level security the app role sees only its organization's keys.
    let mut admin = app.db.admin().await;
    let mut tx = sqlx::Connection::begin(&mut admin).await.unwrap();
    sqlx::query("SET LOCAL ROLE ibex_app")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.run(
        "SELECT set_config('app.current_org_id', $1, true)",
        org_b.to_string(),
    )
    .await;
    let seen: Vec<Uuid> = sqlx::query_scalar("SELECT org_id FROM ibex_core.idempotency_keys")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, vec![org_b]);
    tx.rollback().await.unwrap();

    // Past its lifetime a key is free again (a new body is no reuse), and the sweep removes it.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let fresh = create(&app, &token_a, &key, "z").await;
    assert_eq!(fresh.status, 201, "{}", fresh.text());
    assert!(fresh.header("idempotent-replayed").is_none());
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let config = config(auth.addr, &[("IBEX_API_DATABASE_URL", app.db.url.as_str())]);
    let db = ibex_api::db::Database::connect_lazy(&config.database).unwrap();
    let swept = ibex_api::middleware::idempotency::sweep(&db).await.unwrap();
    assert_eq!(swept, 2);
    assert_eq!(
        count(&app, "SELECT count(*) FROM ibex_core.idempotency_keys").await,
        0
    );
}

/// The document states the window the service is configured with, not a number written by hand.
#[tokio::test]
async fn the_document_states_the_configured_window() {
    let (_auth, app) = TestApp::with_auth(&[("IBEX_API_IDEMPOTENCY_TTL_MS", "3600000")]).await;
    let document = request(app.addr, "GET", "/openapi.json", &[], b"")
        .await
        .text();
    assert!(document.contains("is kept for 1 hour for this organization"));
    assert!(!document.contains("24 hours"));
    let defaults = serde_json::to_string(&ibex_api::app::document()).unwrap();
    assert!(defaults.contains("is kept for 24 hours for this organization"));
}
