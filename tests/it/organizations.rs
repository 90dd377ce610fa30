//! Organizations end to end: permissions and roles, suspension events through a real Redis,
//! and the GDPR deletion job.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// Sets the harness organization's status, as the superuser.
async fn set_status(app: &TestApp, status: &str) {
    let sql = "UPDATE ibex_core.organizations SET status = $2 WHERE id = $1";
    run_sql!(&mut app.db.admin().await, sql, org_a(), status);
}

#[tokio::test]
async fn only_the_callers_own_org_and_only_owners_suspend_or_delete() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    let admin = app.db.add_user(org_a(), "admin").await;
    let owner_token = auth.token_for_user(org_a(), Some(owner), ORG_SETTINGS_WRITE);
    let admin_token = auth.token_for_user(org_a(), Some(admin), ORG_SETTINGS_WRITE);
    let agent_token = auth.token_for_user(org_a(), None, ORG_SETTINGS_WRITE);
    let no_bit = auth.token_for_user(org_a(), Some(owner), 1);
    let mine = format!("/v1/organizations/{ORG_ID}");
    let theirs = format!("/v1/organizations/{org_b}");

    let got = app.read(&mine, &no_bit).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let org = got.json();
    assert_eq!(org["id"], ORG_ID);
    assert_eq!(org["status"], "active");
    assert_eq!(org["deletion"], Value::Null);

    // Another organization's id: 403 on every operation, nothing changed.
    for (method, path) in [
        ("GET", theirs.clone()),
        ("PATCH", theirs.clone()),
        ("POST", format!("{theirs}/suspend")),
        ("DELETE", theirs.clone()),
    ] {
        let body = (method == "PATCH").then(|| json!({"name": "stolen"}));
        app.call(method, &path, &owner_token, body)
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }
    // Without the bit, whatever the role: 403; with it but not an owner (or no user): 403.
    for (token, method, path) in [
        (&no_bit, "PATCH", mine.clone()),
        (&no_bit, "POST", format!("{mine}/suspend")),
        (&no_bit, "DELETE", mine.clone()),
        (&admin_token, "POST", format!("{mine}/suspend")),
        (&admin_token, "DELETE", mine.clone()),
        (&agent_token, "POST", format!("{mine}/suspend")),
        (&agent_token, "DELETE", mine.clone()),
    ] {
        let body = (method == "PATCH").then(|| json!({"name": "x"}));
        app.call(method, &path, token, body)
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }
    let mut admin_conn = app.db.admin().await;
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM ibex_core.organizations ORDER BY id")
            .fetch_all(&mut admin_conn)
            .await
            .unwrap();
    assert!(statuses.iter().all(|s| s == "active"), "{statuses:?}");

    // An admin with the bit may change settings.
    let patched = app
        .patch(&mine, &admin_token, json!({"name": "Renamed", "billing_email": "Billing@Example.com", "settings": {"retention_days": 30}}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let patched = patched.json();
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(patched["billing_email"], "Billing@Example.com");
    assert_eq!(patched["settings"]["retention_days"], 30);
    let cleared = app
        .patch(&mine, &admin_token, json!({"billing_email": null}))
        .await
        .json();
    assert_eq!(cleared["billing_email"], Value::Null);
    assert_eq!(cleared["name"], "Renamed", "absent fields unchanged");
    for (body, field) in [
        (json!({"billing_email": "not-an-email"}), "billing_email"),
        (json!({"name": null}), "name"),
        (json!({"settings": [1]}), "settings"),
        (json!({"tier": "enterprise"}), "tier"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let error = app
            .call("PATCH", &mine, &admin_token, Some(body))
            .await
            .assert_error(400, "VALIDATION_ERROR");
        assert_eq!(error["error"]["field_errors"][0]["field"], field);
    }
}

/// Suspension reaches Redis within a second while it is up; while it is down the request still
/// succeeds and the event follows once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_is_published_and_survives_a_redis_outage() {
    let auth = FakeAuth::start().await;
    // A redis-server of its own: this test takes it away, and the shared one serves
    // every other test of the run.
    let mut own_redis = TempRedis::start().unwrap();
    let url = own_redis.url();
    let app = TestApp::start(auth.addr, &[("IBEX_API_REDIS_URL", &url)]).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    let token = auth.token_for_user(org_a(), Some(owner), ORG_SETTINGS_WRITE);
    let mine = format!("/v1/organizations/{ORG_ID}");
    let ready = app.get("/ready", &[]).await.json();
    assert_eq!(ready["checks"]["redis"]["status"], "ok", "{ready}");

    let mut events = subscribe_at(&url, "ibex:token:revocations").await;
    let started = Instant::now();
    let reply = app
        .call("POST", &format!("{mine}/suspend"), &token, None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "suspended");
    let event = next_message(&mut events, Duration::from_secs(5))
        .await
        .expect("the suspension event");
    let latency = started.elapsed();
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    eprintln!("suspension → event latency: {latency:?}");
    assert_eq!(event["v"], 1);
    assert_eq!(event["event_type"], "org_suspend");
    assert_eq!(event["org_id"], ORG_ID);
    let revoked_at = event["revoked_at"].as_str().unwrap();
    assert!(
        revoked_at.ends_with('Z') && revoked_at.len() == 24,
        "{revoked_at}"
    );
    // Suspending again is a no-op: no second event.
    assert_eq!(
        app.call("POST", &format!("{mine}/suspend"), &token, None)
            .await
            .status,
        200
    );
    assert!(
        next_message(&mut events, Duration::from_millis(500))
            .await
            .is_none()
    );
    drop(events);

    // Redis down: the request succeeds, the event waits.
    set_status(&app, "active").await;
    let mut admin = app.db.admin().await;
    tokio::task::block_in_place(|| own_redis.stop());
    let reply = app
        .call("POST", &format!("{mine}/suspend"), &token, None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = app.get("/ready", &[]).await;
    assert_eq!(report.status, 200, "Redis is not critical");
    let report = report.json();
    assert_eq!(report["status"], "degraded", "{report}");
    let message = report["checks"]["redis"]["message"].as_str().unwrap();
    assert!(
        message.contains("1 undelivered events, oldest"),
        "{message}"
    );

    // Hold the publisher off (its advisory lock) while Redis comes back and we subscribe, so
    // the event cannot slip out before anyone listens.
    let mut events =
        restart_and_subscribe(&mut own_redis, &mut admin, "ibex:token:revocations").await;
    let event = next_message(&mut events, Duration::from_secs(10))
        .await
        .expect("the event once Redis is back");
    assert_eq!(event["org_id"], ORG_ID);
    // Marked delivered right after Redis accepted it.
    let deadline = Deadline::after(Duration::from_secs(3)).every(Duration::from_millis(50));
    loop {
        let undelivered: i64 =
            sqlx::query_scalar("SELECT count(*) FROM ibex_core.outbox WHERE delivered_at IS NULL")
                .fetch_one(&mut admin)
                .await
                .unwrap();
        if undelivered == 0 {
            break;
        }
        deadline.tick("still undelivered").await;
    }
}

/// The API stops while Redis is down: the event is in the outbox, and the next process delivers
/// it.
#[tokio::test]
async fn an_api_restart_loses_no_event() {
    let auth = FakeAuth::start().await;
    let dead = format!("redis://{}", dead_addr().await);
    let first = TestApp::start(auth.addr, &[("IBEX_API_REDIS_URL", &dead)]).await;
    let owner = first.db.add_user(org_a(), "owner").await;
    let token = auth.token_for_user(org_a(), Some(owner), ORG_SETTINGS_WRITE);
    let reply = first
        .call(
            "POST",
            &format!("/v1/organizations/{ORG_ID}/suspend"),
            &token,
            None,
        )
        .await;
    assert_eq!(reply.status, 200);

    // A second process on the same database, with Redis reachable.
    let url = redis_url();
    let config = config(
        auth.addr,
        &[
            ("IBEX_API_DATABASE_URL", &first.db.url),
            ("IBEX_API_REDIS_URL", &url),
        ],
    );
    let mut events = subscribe("ibex:token:revocations").await;
    let _second = TestApp::start_with(config).await;
    let event = next_message(&mut events, Duration::from_secs(15))
        .await
        .expect("delivered by the second process");
    assert_eq!(event["org_id"], ORG_ID);
}

async fn count(app: &TestApp, sql: &str, org: Uuid) -> i64 {
    let mut admin = app.db.admin().await;
    admin.value(sql, org).await
}

#[tokio::test]
async fn gdpr_deletion_removes_the_org_and_nothing_else() {
    let (auth, app) = TestApp::with_auth(&[("IBEX_API_GDPR_BATCH_SIZE", "7")]).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    app.db.add_user(org_b, "owner").await;
    let mut admin = app.db.admin().await;
    for org in [org_a(), org_b] {
        admin.run("INSERT INTO ibex_core.agents (org_id, name, slug, created_by)
             SELECT $1, 'a' || n, 'a-' || n, (SELECT id FROM ibex_core.users WHERE org_id = $1 LIMIT 1)
             FROM generate_series(1, 50) n", org).await;
    }
    let token = auth.token_for_user(org_a(), Some(owner), ORG_SETTINGS_WRITE | 1 << 9);
    // Directives and their append-only versions go too.
    for org_token in [&token, &auth.token_for(org_b, 1 << 9)] {
        let agents = app.read("/v1/agents?limit=1", org_token).await.json();
        let agent = agents["items"][0]["id"].as_str().unwrap().to_owned();
        for content in ["one", "two"] {
            let set = app
                .post(
                    &format!("/v1/agents/{agent}/directive"),
                    org_token,
                    json!({"content": content}),
                )
                .await;
            assert!(set.status < 300, "{}", set.text());
        }
    }
    let mine = format!("/v1/organizations/{ORG_ID}");
    let reply = app.delete(&mine, &token).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let org = reply.json();
    assert_eq!(org["status"], "cancelled");
    assert!(["pending", "running"].contains(&org["deletion"]["state"].as_str().unwrap()));
    // Asking again is 202 again; changing it meanwhile is refused.
    let again = app.delete(&mine, &token).await;
    assert!(
        again.status == 202 || again.status == 404,
        "{}",
        again.text()
    );

    let deadline = Deadline::after(Duration::from_secs(20));
    while count(
        &app,
        "SELECT count(*) FROM ibex_core.organizations WHERE id = $1",
        org_a(),
    )
    .await
        > 0
    {
        deadline.tick("the deletion did not finish").await;
    }
    for table in [
        "directive_versions",
        "directives",
        "agents",
        "users",
        "outbox",
    ] {
        let sql = format!("SELECT count(*) FROM ibex_core.{table} WHERE org_id = $1");
        let delivered_events_stay = table == "outbox";
        let left = count(&app, &sql, org_a()).await;
        assert!(left == 0 || delivered_events_stay, "{table}: {left} left");
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM ibex_core.agents WHERE org_id = $1",
            org_b
        )
        .await,
        50
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM ibex_core.users WHERE org_id = $1",
            org_b
        )
        .await,
        1
    );
    let state = deletion_state(&mut admin).await;
    assert_eq!(state, "done");
    // The organization is gone for its old tokens too.
    app.read(&mine, &token).await.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn a_cancelled_org_is_read_only() {
    let auth = FakeAuth::start().await;
    // No deletion job progress: hold it behind a huge pause after the first batch is impossible,
    // so mark the organization cancelled directly, as a deletion in progress leaves it.
    let app = TestApp::start(auth.addr, &[]).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    let token = auth.token_for_user(org_a(), Some(owner), ORG_SETTINGS_WRITE);
    set_status(&app, "cancelled").await;
    let mine = format!("/v1/organizations/{ORG_ID}");
    app.patch(&mine, &token, json!({"name": "x"}))
        .await
        .assert_error(409, "ORG_STATUS_CONFLICT");
    app.call("POST", &format!("{mine}/suspend"), &token, None)
        .await
        .assert_error(409, "ORG_STATUS_CONFLICT");
}

/// The state of org A's deletion job.
async fn deletion_state(admin: &mut sqlx::PgConnection) -> String {
    admin
        .value(
            "SELECT state FROM ibex_core.org_deletions WHERE org_id = $1",
            org_a(),
        )
        .await
}

async fn rows_deleted(admin: &mut sqlx::PgConnection) -> i64 {
    let sql =
        "SELECT COALESCE((SELECT rows_deleted FROM ibex_core.org_deletions WHERE org_id = $1), 0)";
    admin.value(sql, org_a()).await
}

/// The real binary, killed (SIGKILL) in the middle of deleting 20 000 rows, then started again:
/// the deletion finishes and the other organization keeps every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_deletion_resumes_after_restart() {
    let auth = FakeAuth::start().await;
    let db = TestDb::create().await;
    let org_b = Uuid::now_v7();
    db.add_org(org_a()).await;
    db.add_org(org_b).await;
    let owner = db.add_user(org_a(), "owner").await;
    let mut admin = db.admin().await;
    for org in [org_a(), org_b] {
        admin
            .run(
                "INSERT INTO ibex_core.agents (org_id, name, slug)
             SELECT $1, 'a' || n, 'a-' || n FROM generate_series(1, 10000) n",
                org,
            )
            .await;
        admin
            .run(
                "INSERT INTO ibex_core.users (org_id, email, role)
             SELECT $1, 'u' || n || '@x.example', 'member' FROM generate_series(1, 10000) n",
                org,
            )
            .await;
    }
    let token = auth.token_for_user(org_a(), Some(owner), ORG_SETTINGS_WRITE);
    let start = |pause_ms: &str| {
        let (mut command, addr) = app_process(auth.addr, &db.url);
        command
            .env("IBEX_API_GDPR_BATCH_SIZE", "500")
            .env("IBEX_API_GDPR_BATCH_PAUSE_MS", pause_ms);
        (command.spawn().unwrap(), addr)
    };

    let (mut first, addr) = start("100");
    let deadline = Deadline::after(Duration::from_secs(10)).every(Duration::from_millis(50));
    let reply = loop {
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            drop(stream);
            let auth_header = format!("Bearer {token}");
            break request(
                addr,
                "DELETE",
                &format!("/v1/organizations/{ORG_ID}"),
                &[("Authorization", &auth_header)],
                b"",
            )
            .await;
        }
        deadline.tick("the binary did not come up").await;
    };
    assert_eq!(reply.status, 202, "{}", reply.text());
    // Kill it once some, but not all, rows are gone.
    let deadline = Deadline::after(Duration::from_secs(20)).every(Duration::from_millis(20));
    while rows_deleted(&mut admin).await < 1000 {
        deadline.tick("no progress").await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = rows_deleted(&mut admin).await;
    assert!(at_kill < 20_000, "killed in the middle: {at_kill}");
    let state = deletion_state(&mut admin).await;
    assert_eq!(state, "running");

    let (mut second, _) = start("0");
    let deadline = Deadline::after(Duration::from_secs(30));
    loop {
        let state = deletion_state(&mut admin).await;
        if state == "done" {
            break;
        }
        deadline.tick("the deletion did not resume").await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(
        rows_deleted(&mut admin).await,
        20_002,
        "every row once: 10 000 agents, 10 001 users, the deletion request's audit event"
    );
    for (table, expected_b) in [("agents", 10_000i64), ("users", 10_000)] {
        let sql = format!("SELECT count(*) FROM ibex_core.{table} WHERE org_id = $1");
        let left_a: i64 = sqlx::query_scalar(&sql)
            .bind(org_a())
            .fetch_one(&mut admin)
            .await
            .unwrap();
        let left_b: i64 = sqlx::query_scalar(&sql)
            .bind(org_b)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(left_a, 0, "{table}");
        assert_eq!(left_b, expected_b, "{table} of the other organization");
    }
}
