//! The database as a dependency: outages, slow statements, an old schema, migrations.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

/// PostgreSQL stopped: fast 503s with Retry-After, /health still 200, /ready 503 naming the
/// database; once it is back the API serves again without a restart of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_a_fast_503_and_the_api_recovers() {
    let (mut postgres, url) = own_postgres_with_org().await;

    let auth = FakeAuth::start().await;
    let token = auth.token_for(ORG_ID.parse().unwrap(), 1 << 35);
    let app = TestApp::start(auth.addr, &[("IBEX_API_DATABASE_URL", &url)]).await;
    let created = app
        .post("/v1/agents", &token, json!({"name": "n", "slug": "before"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(app.get("/ready", &[]).await.status, 200);

    tokio::task::block_in_place(|| postgres.kill());
    for (method, path) in [("GET", "/v1/agents"), ("POST", "/v1/agents")] {
        let started = Instant::now();
        let body = (method == "POST").then(|| json!({"name": "n", "slug": "during"}));
        let reply = app.call(method, path, &token, body).await;
        let took = started.elapsed();
        reply.assert_error(503, "SERVICE_UNAVAILABLE");
        assert_eq!(reply.header("retry-after"), Some("2"));
        assert!(took < Duration::from_secs(1), "{method} took {took:?}");
    }
    assert_eq!(app.get("/health", &[]).await.status, 200);
    let ready = app.get("/ready", &[]).await;
    assert_eq!(ready.status, 503);
    let report = ready.json();
    assert_eq!(report["checks"]["database"]["status"], "failed", "{report}");
    assert_eq!(report["checks"]["auth"]["status"], "ok", "{report}");

    tokio::task::block_in_place(|| postgres.restart()).unwrap();
    let reply = app
        .read_until_ok("/v1/agents", &token, Duration::from_secs(10))
        .await;
    assert_eq!(reply.json()["items"][0]["slug"], "before");
    assert_eq!(app.get("/ready", &[]).await.status, 200);
}

/// A statement past the statement timeout is a 503, and the connection it ran on goes back to
/// the pool healthy (a pool of one proves it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_its_timeout_is_a_503_and_the_connection_survives() {
    let auth = FakeAuth::start().await;
    let token = auth.token_for(ORG_ID.parse().unwrap(), 1 << 35);
    let app = TestApp::start(
        auth.addr,
        &[
            ("IBEX_API_DATABASE_STATEMENT_TIMEOUT_MS", "300"),
            ("IBEX_API_DATABASE_MAX_CONNECTIONS", "1"),
        ],
    )
    .await;
    let created = app
        .post("/v1/agents", &token, json!({"name": "n", "slug": "locked"}))
        .await
        .json();
    let id = created["id"].as_str().unwrap().to_owned();

    // Another session holds the row: the PATCH waits on the lock until the timeout cancels it.
    let mut holder = app.db.admin().await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    holder
        .run(
            "SELECT 1 FROM ibex_core.agents WHERE id = $1::uuid FOR UPDATE",
            &id,
        )
        .await;
    let started = Instant::now();
    app.patch(&format!("/v1/agents/{id}"), &token, json!({"name": "x"}))
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_secs(2));
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    let patched = app
        .patch(
            &format!("/v1/agents/{id}"),
            &token,
            json!({"name": "after"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["name"], "after");
}

#[tokio::test]
async fn ready_says_when_the_schema_is_older_than_the_binary() {
    let auth = FakeAuth::start().await;
    let empty = TestDb::create_unmigrated().await;
    let app = TestApp::start(auth.addr, &[("IBEX_API_DATABASE_URL", &empty.url)]).await;
    let ready = app.get("/ready", &[]).await;
    assert_eq!(ready.status, 503);
    let message = ready.json()["checks"]["database"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("ibex-api migrate"), "{message}");

    // Missing the binary's newest migration: still refused, still saying what to run.
    let behind = TestDb::create().await;
    let mut admin = behind.admin().await;
    let expected = ibex_api::db::migrate::expected_version();
    admin
        .run("DELETE FROM _sqlx_migrations WHERE version = $1", expected)
        .await;
    let app = TestApp::start(auth.addr, &[("IBEX_API_DATABASE_URL", &behind.url)]).await;
    let report = app.get("/ready", &[]).await.json();
    let message = report["checks"]["database"]["message"].as_str().unwrap();
    assert_eq!(report["status"], "unhealthy");
    assert!(message.contains("ibex-api migrate"), "{message}");
}

/// `ibex-api migrate` brings an empty database to the binary's version and is a no-op after.
#[tokio::test]
async fn migrate_twice_succeeds_twice() {
    let empty = TestDb::create_unmigrated().await;
    for (run, expect) in [(1, "applied"), (2, "(0 migration(s) applied)")] {
        let output = binary()
            .arg("migrate")
            .env("IBEX_API_DATABASE_URL", &empty.url)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "run {run}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(expect), "run {run}: {stdout}");
    }
    // A database that cannot be reached: non-zero, one line, no password.
    let dead = dead_addr().await;
    let output = binary()
        .arg("migrate")
        .env(
            "IBEX_API_DATABASE_URL",
            format!("postgres://ibex:hunter2@{dead}/ibex"),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// Regression (found by the chaos soak): a token change used to happen in the auth service even
/// while PostgreSQL was away, leaving it without its audit event. Now the database is proven
/// reachable first: the change is refused (503) and nothing is minted or revoked; once the
/// database is back the change goes through with its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_change_waits_for_its_audit_trail() {
    const TOKEN_CREATE: u64 = 1 << 36;
    const TOKEN_REVOKE: u64 = 1 << 37;
    let (mut postgres, url) = own_postgres_with_org().await;
    let (auth, app) = TestApp::with_auth(&[("IBEX_API_DATABASE_URL", &url)]).await;
    let creator = auth.stored_token(
        ORG_ID.parse().unwrap(),
        None,
        TOKEN_CREATE | TOKEN_REVOKE | 1,
    );
    let body = json!({"name": "ci", "permissions": ["memory:read"]});
    let minted = app.post("/v1/tokens", &creator, body.clone()).await;
    assert_eq!(minted.status, 201, "{}", minted.text());
    let revoke = format!("/v1/tokens/{}", minted.json()["id"].as_str().unwrap());
    let rpcs = auth.token_rpc_metadata().len();

    tokio::task::block_in_place(|| postgres.kill());
    app.post("/v1/tokens", &creator, body.clone())
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    app.delete(&revoke, &creator)
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(
        auth.token_rpc_metadata().len(),
        rpcs,
        "the auth service was not asked while the audit trail was away"
    );

    tokio::task::block_in_place(|| postgres.restart()).unwrap();
    let deadline = Deadline::after(Duration::from_secs(10));
    while app.delete(&revoke, &creator).await.status != 204 {
        deadline.tick("the revoke never went through").await;
    }
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM ibex_core.audit_events WHERE target_type = 'token' ORDER BY occurred_at",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(events, ["token.create", "token.revoke"]);
}

/// A handler draws its connection at its first statement, not when it starts: with a pool of
/// one, a write whose body is still arriving holds no connection, so a read meanwhile is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_still_arriving_holds_no_pooled_connection() {
    use tokio::io::AsyncWriteExt;

    let auth = FakeAuth::start().await;
    let token = auth.token_for(org_a(), ORG_SETTINGS_WRITE);
    let app = TestApp::start(
        auth.addr,
        &[
            ("IBEX_API_DATABASE_MAX_CONNECTIONS", "1"),
            ("IBEX_API_DATABASE_ACQUIRE_TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let body = json!({"name": "slow", "slug": "slow"}).to_string();
    let (first, rest) = body.split_at(10);
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    // The write is in its handler now, waiting for the rest of its body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let read = app.read("/v1/agents", &token).await;
        assert_eq!(
            read.status,
            200,
            "the pool's one connection is held: {}",
            read.text()
        );
    }
    slow.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut slow, &mut answer)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}
