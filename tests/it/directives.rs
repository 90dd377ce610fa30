//! Directives end to end: versions, rollback, deactivation, races, limits, tenancy, and the
//! announcements the proxy relies on, through a real PostgreSQL and a real Redis.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};
use uuid::Uuid;

const ALL: u64 =
    DIRECTIVE_READ | DIRECTIVE_WRITE | DIRECTIVE_PROMOTE | DIRECTIVE_REVOKE | ORG_SETTINGS_WRITE;

struct Setup {
    auth: FakeAuth,
    app: TestApp,
    token: String,
    agent: String,
}

async fn setup(overrides: &[(&str, &str)]) -> Setup {
    let auth = FakeAuth::start().await;
    let mut with_body_room = vec![("IBEX_API_MAX_BODY_BYTES", "262144")];
    with_body_room.extend_from_slice(overrides);
    let app = TestApp::start(auth.addr, &with_body_room).await;
    let token = auth.token_for(org_a(), ALL);
    let agent = app.create_agent(&token, "a").await;
    Setup {
        auth,
        app,
        token,
        agent,
    }
}

impl Setup {
    fn path(&self, suffix: &str) -> String {
        format!("/v1/agents/{}/directive{suffix}", self.agent)
    }

    async fn set(&self, body: Value) -> Reply {
        self.app.post(&self.path(""), &self.token, body).await
    }

    async fn version_count(&self) -> i64 {
        let mut admin = self.app.db.admin().await;
        sqlx::query_scalar("SELECT count(*) FROM ibex_core.directive_versions")
            .fetch_one(&mut admin)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn versions_rollback_and_deactivation() {
    let s = setup(&[]).await;
    s.app
        .read(&s.path(""), &s.token)
        .await
        .assert_error(404, "NOT_FOUND");

    let created = s.set(json!({"content": "Be concise."})).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let first = created.json();
    assert_eq!(first["version_num"], 1);
    assert_eq!(first["content"], "Be concise.");
    assert_eq!(first["injection_mode"], "system_first");
    assert_eq!(first["is_active"], true);
    assert_eq!(first["agent_id"], s.agent.as_str());

    // Same content: no version; same content with another mode: the mode changes, no version.
    let same = s.set(json!({"content": "Be concise."})).await;
    assert_eq!(same.status, 200);
    assert_eq!(same.json()["version_num"], 1);
    let mode = s
        .set(json!({"content": "Be concise.", "injection_mode": "user_prepend"}))
        .await
        .json();
    assert_eq!(mode["injection_mode"], "user_prepend");
    assert_eq!(mode["version_num"], 1);
    assert_eq!(s.version_count().await, 1);

    let second = s.set(json!({"content": "Be kind."})).await;
    assert_eq!(second.status, 200);
    let second = second.json();
    assert_eq!(second["version_num"], 2);
    assert_eq!(
        second["injection_mode"], "user_prepend",
        "unchanged when absent"
    );

    let page = s
        .app
        .read(&s.path("/versions?limit=1"), &s.token)
        .await
        .json();
    assert_eq!(page["items"][0]["version_num"], 2, "newest first");
    assert_eq!(page["items"][0]["is_active"], true);
    assert!(
        page["items"][0].get("content").is_none(),
        "summaries carry no content"
    );
    let hash = page["items"][0]["content_hash"].as_str().unwrap();
    assert_eq!(
        hash,
        ibex_api::domains::directives::repo::content_hash("Be kind.")
    );
    assert_eq!(hash.len(), 64);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = s
        .app
        .read(
            &s.path(&format!("/versions?limit=1&cursor={cursor}")),
            &s.token,
        )
        .await
        .json();
    assert_eq!(rest["items"][0]["version_num"], 1);
    assert_eq!(rest["next_cursor"], Value::Null);
    let v1 = s.app.read(&s.path("/versions/1"), &s.token).await.json();
    assert_eq!(v1["content"], "Be concise.");
    assert_eq!(v1["is_active"], false);
    s.app
        .read(&s.path("/versions/3"), &s.token)
        .await
        .assert_error(404, "NOT_FOUND");

    let rolled = s
        .app
        .post(&s.path("/rollback"), &s.token, json!({"version_num": 1}))
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text());
    assert_eq!(rolled.json()["version_num"], 1);
    assert_eq!(rolled.json()["content"], "Be concise.");
    assert_eq!(s.version_count().await, 2, "a rollback creates nothing");
    let again = s
        .app
        .post(&s.path("/rollback"), &s.token, json!({"version_num": 1}))
        .await;
    assert_eq!(again.status, 200);
    s.app
        .post(&s.path("/rollback"), &s.token, json!({"version_num": 99}))
        .await
        .assert_error(404, "NOT_FOUND");

    for _ in 0..2 {
        let deleted = s.app.delete(&s.path(""), &s.token).await;
        assert_eq!(deleted.status, 204);
    }
    let inactive = s.app.read(&s.path(""), &s.token).await.json();
    assert_eq!(inactive["is_active"], false);
    assert_eq!(inactive["content"], Value::Null);
    assert_eq!(inactive["version_num"], Value::Null);
    s.app
        .post(&s.path("/rollback"), &s.token, json!({"version_num": 1}))
        .await
        .assert_error(404, "NOT_FOUND");
    let history = s.app.read(&s.path("/versions"), &s.token).await.json();
    assert_eq!(
        history["items"].as_array().unwrap().len(),
        2,
        "the history stays"
    );

    // A POST after DELETE reactivates with a new version, even with old content.
    let back = s.set(json!({"content": "Be concise."})).await;
    assert_eq!(back.status, 200);
    assert_eq!(back.json()["version_num"], 3);
    assert_eq!(back.json()["is_active"], true);
}

#[tokio::test]
async fn each_operation_needs_its_bit_and_a_live_agent_of_the_org() {
    let s = setup(&[]).await;
    s.set(json!({"content": "x"})).await;
    let org_b = Uuid::now_v7();
    s.app.db.add_org(org_b).await;
    let other = s.auth.token_for(org_b, ALL);
    let ops: Vec<(&str, String, Option<Value>, u64)> = vec![
        ("GET", s.path(""), None, DIRECTIVE_READ),
        (
            "POST",
            s.path(""),
            Some(json!({"content": "stolen"})),
            DIRECTIVE_WRITE,
        ),
        ("DELETE", s.path(""), None, DIRECTIVE_REVOKE),
        ("GET", s.path("/versions"), None, DIRECTIVE_READ),
        ("GET", s.path("/versions/1"), None, DIRECTIVE_READ),
        (
            "POST",
            s.path("/rollback"),
            Some(json!({"version_num": 1})),
            DIRECTIVE_PROMOTE,
        ),
    ];
    for (method, path, body, bit) in &ops {
        let without = s.auth.token_for(org_a(), ALL & !bit);
        s.app
            .call(method, path, &without, body.clone())
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
        s.app
            .call(method, path, &other, body.clone())
            .await
            .assert_error(404, "NOT_FOUND");
        let missing = path.replace(&s.agent, &Uuid::now_v7().to_string());
        s.app
            .call(method, &missing, &s.token, body.clone())
            .await
            .assert_error(404, "NOT_FOUND");
    }
    let mut admin = s.app.db.admin().await;
    let (versions, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM ibex_core.directive_versions),
                (SELECT count(*) FROM ibex_core.outbox)",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        (versions, events),
        (1, 1),
        "nothing written or announced but the first set"
    );

    // An archived agent's directive is read-only, still readable.
    s.app
        .call(
            "POST",
            &format!("/v1/agents/{}/archive", s.agent),
            &s.token,
            None,
        )
        .await;
    for (method, path, body, _) in &ops {
        let reply = s.app.call(method, path, &s.token, body.clone()).await;
        if *method == "GET" {
            assert_eq!(reply.status, 200, "{method} {path}");
        } else {
            reply.assert_error(409, "AGENT_STATUS_CONFLICT");
        }
    }
}

#[tokio::test]
async fn twenty_racing_updates_number_without_gaps() {
    let s = setup(&[]).await;
    let bodies: Vec<Value> = (0..20)
        .map(|i| json!({"content": format!("version {i}")}))
        .collect();
    let replies = futures_util::future::join_all(bodies.into_iter().map(|b| s.set(b))).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "exactly one request created the directive");
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 201));
    let mut admin = s.app.db.admin().await;
    let nums: Vec<i32> = sqlx::query_scalar(
        "SELECT version_num FROM ibex_core.directive_versions ORDER BY version_num",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(nums, (1..=20).collect::<Vec<_>>());
    // The active version is the last one committed: the highest number.
    let active = s.app.read(&s.path(""), &s.token).await.json();
    assert_eq!(active["version_num"], 20);
    let last: String = sqlx::query_scalar(
        "SELECT content FROM ibex_core.directive_versions WHERE version_num = 20",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(active["content"], last);
}

#[tokio::test]
async fn content_is_bounded_in_bytes_and_refuses_nul() {
    let s = setup(&[]).await;
    // 16 384 two-byte characters: exactly 32 768 bytes.
    let at_limit = "é".repeat(16_384);
    let reply = s.set(json!({"content": at_limit})).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    for (body, field) in [
        (json!({"content": format!("{at_limit}a")}), "content"),
        (json!({"content": "a".repeat(32_769)}), "content"),
        (json!({"content": ""}), "content"),
        (json!({"content": "nul \u{0} inside"}), "content"),
        (json!({"content": null}), "content"),
        (json!({}), "content"),
        (
            json!({"content": "x", "injection_mode": "shout"}),
            "injection_mode",
        ),
        (json!({"content": "x", "version": 3}), "version"),
    ] {
        let error = s
            .set(body.clone())
            .await
            .assert_error(400, "VALIDATION_ERROR");
        assert_eq!(error["error"]["field_errors"][0]["field"], field, "{body}");
    }
    for body in [
        json!({}),
        json!({"version_num": 0}),
        json!({"version_num": "1"}),
        json!({"version_num": 1.5}),
    ] {
        let error = s
            .app
            .post(&s.path("/rollback"), &s.token, body)
            .await
            .assert_error(400, "VALIDATION_ERROR");
        assert_eq!(error["error"]["field_errors"][0]["field"], "version_num");
    }
    assert_eq!(s.version_count().await, 1);
    // A whole number written as 1.0 is still 1.
    let rolled = s
        .app
        .post(&s.path("/rollback"), &s.token, json!({"version_num": 1.0}))
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text());
}

#[tokio::test]
async fn versions_are_append_only_in_the_database() {
    let s = setup(&[]).await;
    s.set(json!({"content": "original"})).await;
    let mut conn = s.app.db.admin().await;
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    conn.run(
        "SELECT set_config('role', 'ibex_app', true), set_config('app.current_org_id', $1, true)",
        ORG_ID,
    )
    .await;
    for statement in [
        "UPDATE ibex_core.directive_versions SET content = 'tampered'",
        "DELETE FROM ibex_core.directive_versions",
    ] {
        let refused = sqlx::query(statement).execute(&mut conn).await.unwrap_err();
        assert_eq!(
            refused.as_database_error().and_then(|e| e.code()).unwrap(),
            "42501",
            "{statement}"
        );
        sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        let sql = "SELECT set_config('role', 'ibex_app', true),
                          set_config('app.current_org_id', $1, true)";
        conn.run(sql, ORG_ID).await;
    }
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
    // Not even the superuser can rewrite history.
    let refused = sqlx::query("UPDATE ibex_core.directive_versions SET content = 'tampered'")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
}

/// Every change reaches Redis (published on the agent's channel, cache key deleted) within a
/// second; while Redis is down, three changes queue and arrive in order once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_announced_in_order() {
    // A redis-server of its own: this test takes it away, and the shared one serves
    // every other test of the run.
    let mut own_redis = TempRedis::start().unwrap();
    let url = own_redis.url();
    let s = setup(&[("IBEX_API_REDIS_URL", &url)]).await;
    let channel = format!("ibex:directive:updates:{}", s.agent);
    let key = format!("directive:{}", s.agent);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut redis_conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut events = subscribe_at(&url, &channel).await;

    let mut latencies = Vec::new();
    let steps: Vec<(&str, String, Option<Value>, Value)> = vec![
        (
            "POST",
            s.path(""),
            Some(json!({"content": "one"})),
            json!(1),
        ),
        (
            "POST",
            s.path(""),
            Some(json!({"content": "two"})),
            json!(2),
        ),
        (
            "POST",
            s.path("/rollback"),
            Some(json!({"version_num": 1})),
            json!(1),
        ),
        (
            "POST",
            s.path(""),
            Some(json!({"content": "one", "injection_mode": "system_append"})),
            json!(1),
        ),
        ("DELETE", s.path(""), None, Value::Null),
    ];
    for (method, path, body, version) in steps {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("cached")
            .query_async(&mut redis_conn)
            .await
            .unwrap();
        let started = Instant::now();
        let reply = s.app.call(method, &path, &s.token, body).await;
        assert!(reply.status < 300, "{}", reply.text());
        let event = next_message(&mut events, Duration::from_secs(5))
            .await
            .expect("announced");
        latencies.push(started.elapsed());
        assert_eq!(event, json!({"agent_id": s.agent, "version_num": version}));
        // The key is deleted in the same delivery as the publish.
        let deadline = Deadline::after(Duration::from_secs(1)).every(Duration::from_millis(10));
        loop {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut redis_conn)
                .await
                .unwrap();
            if !exists {
                break;
            }
            deadline.tick("cache key still there").await;
        }
    }
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(1)),
        "{latencies:?}"
    );
    // Shown with --nocapture: request sent → event received, for the closing notes.
    eprintln!("directive change → event latencies: {latencies:?}");
    // No-ops announce nothing.
    s.app.delete(&s.path(""), &s.token).await;
    assert!(
        next_message(&mut events, Duration::from_millis(300))
            .await
            .is_none()
    );
    drop(events);

    // Redis down while three changes commit.
    tokio::task::block_in_place(|| own_redis.stop());
    for content in ["a", "b", "c"] {
        let reply = s.set(json!({"content": content})).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let mut admin = s.app.db.admin().await;
    let mut events = restart_and_subscribe(&mut own_redis, &mut admin, &channel).await;
    let mut delivered = Vec::new();
    for _ in 0..3 {
        let event = next_message(&mut events, Duration::from_secs(10))
            .await
            .expect("delivered");
        delivered.push(event["version_num"].clone());
    }
    assert_eq!(
        delivered,
        vec![json!(3), json!(4), json!(5)],
        "all three, in order"
    );
}
