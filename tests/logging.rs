//! No token, Authorization header, body or query value ever reaches a log line, at any level,
//! from this crate or from the HTTP and gRPC libraries under it.

#[path = "it/common/mod.rs"]
mod common;

use common::*;
use ibex_api::config::LogFormat;
use serde_json::json;

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let capture = Capture::default();
    // The production JSON format, every crate, every level.
    ibex_api::telemetry::init_with_writer(LogFormat::Json, "trace", capture.clone());
    // Keep the default panic hook, so that a failing assertion here is printed, not captured.
    drop(std::panic::take_hook());

    let (auth, app) = TestApp::with_auth(&[]).await;
    let (name, value) = bearer();
    let headers = [(name, value.as_str()), ("Content-Type", "application/json")];

    let reply = app.get_authed("/v1/agents?limit=5&note=SECRET-QUERY").await;
    assert_eq!(reply.status, 200);
    let ok_id = reply.request_id().to_owned();
    request(
        app.addr,
        "POST",
        "/test/json",
        &headers,
        br#"{"name": "SECRET-BODY"}"#,
    )
    .await;
    request(
        app.addr,
        "POST",
        "/test/json",
        &headers,
        br#"{"name": SECRET-BODY"#,
    )
    .await;
    auth.set(Behavior::fail(tonic::Code::Unauthenticated));
    let refused = app.get_authed("/v1/agents").await;
    refused.assert_error(401, "INVALID_TOKEN");
    let refused_id = refused.request_id().to_owned();
    auth.set(Behavior::fail(tonic::Code::Internal));
    app.get_authed("/v1/agents")
        .await
        .assert_error(503, "AUTH_UNAVAILABLE");
    auth.set(Behavior::accept());
    app.get_authed("/test/panic")
        .await
        .assert_error(500, "INTERNAL_ERROR");
    let wrong_scheme = format!("Basic {TOKEN}");
    app.get("/v1/agents", &[("Authorization", &wrong_scheme)])
        .await;

    // The data layer: an agent's config and name, a database password, on success and failure.
    let writer = auth.token_for(ORG_ID.parse().unwrap(), 1 << 35);
    let with_password = app
        .db
        .url
        .replacen("postgres@", "postgres:SECRET-DB-PASSWORD@", 1);
    let db_app = TestApp::start(auth.addr, &[("IBEX_API_DATABASE_URL", &with_password)]).await;
    let agent = json!({
        "name": "SECRET-NAME", "slug": "logged", "config": {"api_key": "SECRET-CONFIG"}
    });
    let created = db_app.post("/v1/agents", &writer, agent.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text());
    db_app
        .post("/v1/agents", &writer, agent)
        .await
        .assert_error(409, "AGENT_SLUG_CONFLICT");
    let admin = app.db.add_user(ORG_ID.parse().unwrap(), "admin").await;
    let manager = auth.token_for_user(ORG_ID.parse().unwrap(), Some(admin), 1 << 32);
    let invitation = json!({"email": "secret-email@example.com"});
    let invited = db_app.post("/v1/users", &manager, invitation).await;
    assert_eq!(invited.status, 201, "{}", invited.text());
    let same_email = json!({"email": "SECRET-EMAIL@example.com"});
    db_app
        .post("/v1/users", &manager, same_email)
        .await
        .assert_error(409, "USER_EMAIL_CONFLICT");
    let agent = created.json()["id"].as_str().unwrap().to_owned();
    let director = auth.token_for(ORG_ID.parse().unwrap(), 1 << 8 | 1 << 9);
    let path = format!("/v1/agents/{agent}/directive");
    let content = json!({"content": "SECRET-DIRECTIVE text"});
    let directive = db_app.post(&path, &director, content).await;
    assert_eq!(directive.status, 201, "{}", directive.text());
    db_app
        .read(
            &format!("/v1/agents/{agent}/directive/versions/1"),
            &director,
        )
        .await;
    let minter = auth.stored_token(ORG_ID.parse().unwrap(), None, 1 << 36 | 1);
    let minted = db_app
        .post(
            "/v1/tokens",
            &minter,
            json!({"name": "logged", "permissions": ["memory:read"]}),
        )
        .await;
    assert_eq!(minted.status, 201, "{}", minted.text());
    let plaintext = minted.json()["plaintext"].as_str().unwrap().to_owned();
    // `ibex_pat_<uuid>_<secret>`: the secret is everything after the id (it may hold `_`
    // itself, so the last `_`-separated piece can be a single letter).
    let minted_secret = plaintext.splitn(4, '_').nth(3).unwrap().to_owned();
    db_app.read("/v1/agents", &plaintext).await;
    // Memories: content, tags and metadata, through list, search, delete and export.
    let memories_app = memories_round(&auth, &db_app).await;
    drop(memories_app);

    let dead = dead_addr().await;
    let dead_url = format!("postgres://ibex:SECRET-DB-PASSWORD@{dead}/ibex");
    let down = TestApp::start(auth.addr, &[("IBEX_API_DATABASE_URL", &dead_url)]).await;
    down.read("/v1/agents", &writer)
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(down.get("/ready", &[]).await.status, 503);

    let logs = capture.text();
    let secret = TOKEN.rsplit('_').next().unwrap();
    assert!(
        logs.len() > 1000,
        "the capture saw the libraries' trace output too"
    );
    for forbidden in [
        TOKEN,
        secret,
        "Bearer ",
        "SECRET-QUERY",
        "SECRET-BODY",
        "SECRET-NAME",
        "SECRET-CONFIG",
        "SECRET-DB-PASSWORD",
        "secret-email",
        "SECRET-EMAIL",
        "SECRET-DIRECTIVE",
        "SECRET-MEMORY",
        "SECRET-TAG",
        "SECRET-METADATA",
        "SECRET-SEARCH",
        ibex_api::devenv::s3::SECRET_KEY,
        minter.as_str(),
        plaintext.as_str(),
        minted_secret.as_str(),
    ] {
        assert!(
            !logs.contains(forbidden),
            "`{forbidden}` leaked into the logs"
        );
    }
    assert!(
        logs.contains("database unavailable") && logs.contains("INSERT INTO ibex_core.agents"),
        "the database's failure and statement lines were captured, so their absence of secrets means something"
    );
    assert!(
        !logs.to_ascii_lowercase().contains("\"authorization\""),
        "no header dump"
    );

    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}"))
        })
        .collect();
    // The access line of the authenticated request: route template, status, ids.
    let access = lines
        .iter()
        .find(|l| l["target"] == "access" && l["request_id"] == ok_id.as_str())
        .expect("an access line for the request");
    assert_eq!(access["route"], "/v1/agents");
    assert_eq!(access["status"], 200);
    assert_eq!(access["method"], "GET");
    assert_eq!(access["org_id"], ORG_ID);
    assert_eq!(access["user_id"], USER_ID);
    assert!(access["latency_ms"].is_f64());
    assert_eq!(access["level"], "INFO");
    // Other lines of a request carry its id too.
    assert!(
        lines
            .iter()
            .any(|l| l["target"] == "ibex_api::auth::layer"
                && l["request_id"] == refused_id.as_str()),
        "the auth layer's line for the refused request carries its id"
    );
}

/// Every memory operation on memories whose content, tag and metadata are marked; returns the
/// app (with its S3 server) so it lives until the capture is read.
async fn memories_round(auth: &FakeAuth, db_app: &TestApp) -> (TestApp, TempS3, FakeMemoryService) {
    let org: uuid::Uuid = ORG_ID.parse().unwrap();
    let agent = uuid::Uuid::now_v7();
    let ids = [uuid::Uuid::now_v7(), uuid::Uuid::now_v7()];
    let mut admin = db_app.db.admin().await;
    let sql =
        "INSERT INTO ibex_core.agents (id, org_id, name, slug) VALUES ($1, $2, 'm', 'memories')";
    run_sql!(&mut admin, sql, agent, org);
    for id in ids {
        let sql = "INSERT INTO ibex_core.memories (id, org_id, agent_id, content, content_hash,
                   category, metadata)
             VALUES ($1, $2, $3, $4, repeat('a', 64), 'factual', $5)";
        run_sql!(
            &mut admin,
            sql,
            id,
            org,
            agent,
            "SECRET-MEMORY content",
            json!({"k": "SECRET-METADATA"})
        );
        let sql = "INSERT INTO ibex_core.memory_tags (memory_id, org_id, tag) VALUES ($1, $2, $3)";
        run_sql!(&mut admin, sql, id, org, "SECRET-TAG");
    }
    let s3 = TempS3::start().unwrap();
    let service = FakeMemoryService::start(MemoryAnswer::Json(json!({
        "results": [{"memory_id": ids[0], "score": 1.0}]
    })))
    .await;
    let mut settings = s3_settings(&s3);
    settings.push(("IBEX_API_DATABASE_URL", db_app.db.url.clone()));
    settings.push(("IBEX_API_MEMORY_SERVICE_URL", service.url()));
    let app = TestApp::start_with(config(auth.addr, &as_refs(&settings))).await;
    let token = auth.token_for(org, 0b1111);
    let base = format!("/v1/agents/{agent}/memories");
    let list = app.read(&format!("{base}?tag=SECRET-TAG"), &token).await;
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 2);
    let found = app
        .post(
            &format!("{base}/search"),
            &token,
            json!({"query": "SECRET-SEARCH", "tags": ["SECRET-TAG"]}),
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.text());
    let export = app
        .post(
            &format!("{base}/export"),
            &token,
            json!({"format": "json", "tag": "SECRET-TAG"}),
        )
        .await;
    let location = export.header("location").unwrap().to_owned();
    let deadline = Deadline::after(std::time::Duration::from_secs(20))
        .every(std::time::Duration::from_millis(50));
    loop {
        let job = app.read(&location, &token).await.json();
        if job["status"] == "succeeded" {
            let (status, body) = plain_get(job["download_url"].as_str().unwrap()).await;
            assert_eq!(status, 200);
            assert!(String::from_utf8_lossy(&body).contains("SECRET-MEMORY"));
            break;
        }
        deadline.tick(format!("{job}")).await;
    }
    let one = app.delete(&format!("{base}/{}", ids[0]), &token).await;
    assert_eq!(one.status, 204);
    let bulk = app
        .delete(&format!("{base}?confirm=true&tag=SECRET-TAG"), &token)
        .await;
    assert_eq!(bulk.header("ibex-deleted-count"), Some("1"));
    (app, s3, service)
}
