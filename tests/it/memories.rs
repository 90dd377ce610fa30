//! Memories end to end over real connections: PostgreSQL (row-level security on), Redis (the
//! proxy's cache eviction and the deletion events), an embedded S3 server that checks SigV4
//! signatures (exports, pre-signed downloads), and a scriptable memory service on loopback.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::*;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

const MEMORY_READ: u64 = 1 << 0;
const MEMORY_DELETE: u64 = 1 << 2;
const MEMORY_EXPORT: u64 = 1 << 3;
const ORG_SETTINGS_WRITE: u64 = 1 << 35;
const ALL: u64 = MEMORY_READ | MEMORY_DELETE | MEMORY_EXPORT;

fn org_a() -> Uuid {
    ORG_ID.parse().unwrap()
}

/// One memory to seed.
#[derive(Debug, Clone)]
struct Seed {
    id: Uuid,
    agent_id: Uuid,
    org_id: Uuid,
    content: String,
    category: &'static str,
    source: &'static str,
    status: &'static str,
    confidence: f32,
    retrieval_count: i32,
    created_at: DateTime<Utc>,
    tags: Vec<String>,
}

impl Seed {
    fn new(org_id: Uuid, agent_id: Uuid, n: usize) -> Self {
        const CATEGORIES: [&str; 5] = [
            "factual",
            "preference",
            "behavioral",
            "episodic",
            "procedural",
        ];
        const SOURCES: [&str; 4] = ["extracted", "user_provided", "imported", "inferred"];
        const STATUSES: [&str; 3] = ["active", "archived", "superseded"];
        let mut tags = vec![format!("t{}", n % 4)];
        if n % 3 == 0 {
            tags.push("vip".into());
        }
        Self {
            id: Uuid::now_v7(),
            agent_id,
            org_id,
            content: format!("memory number {n}"),
            category: CATEGORIES[n % 5],
            source: SOURCES[n % 4],
            status: STATUSES[n % 3],
            confidence: (n % 10) as f32 / 10.0,
            retrieval_count: n as i32,
            // Ties on created_at on purpose: every fourth pair shares its instant.
            created_at: Utc
                .timestamp_opt(1_790_000_000 + (n / 2) as i64 * 3600, 0)
                .unwrap(),
            tags,
        }
    }
}

/// Inserts memories (with their tags and a `create` history row) in three statements.
async fn seed(db: &TestDb, memories: &[Seed]) {
    let mut admin = db.admin().await;
    let col = |f: fn(&Seed) -> String| memories.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO ibex_core.memories (id, org_id, agent_id, content, content_hash, category,
             source, status, confidence, retrieval_count, metadata, created_at, updated_at)
         SELECT id, org_id, agent_id, content, encode(sha256(convert_to(content, 'UTF8')), 'hex'),
                category, source, status, confidence, retrieval_count,
                jsonb_build_object('note', 'SECRET-METADATA'), created_at, created_at
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::real[], $9::int[], $10::timestamptz[])
              AS s(id, org_id, agent_id, content, category, source, status, confidence,
                   retrieval_count, created_at)",
    )
    .bind(memories.iter().map(|m| m.id).collect::<Vec<_>>())
    .bind(memories.iter().map(|m| m.org_id).collect::<Vec<_>>())
    .bind(memories.iter().map(|m| m.agent_id).collect::<Vec<_>>())
    .bind(col(|m| m.content.clone()))
    .bind(col(|m| m.category.to_owned()))
    .bind(col(|m| m.source.to_owned()))
    .bind(col(|m| m.status.to_owned()))
    .bind(memories.iter().map(|m| m.confidence).collect::<Vec<_>>())
    .bind(
        memories
            .iter()
            .map(|m| m.retrieval_count)
            .collect::<Vec<_>>(),
    )
    .bind(memories.iter().map(|m| m.created_at).collect::<Vec<_>>())
    .execute(&mut admin)
    .await
    .unwrap();
    let pairs: Vec<(Uuid, Uuid, String)> = memories
        .iter()
        .flat_map(|m| m.tags.iter().map(move |t| (m.id, m.org_id, t.clone())))
        .collect();
    sqlx::query(
        "INSERT INTO ibex_core.memory_tags (memory_id, org_id, tag)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[])",
    )
    .bind(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
    .bind(pairs.iter().map(|p| p.1).collect::<Vec<_>>())
    .bind(pairs.iter().map(|p| p.2.clone()).collect::<Vec<_>>())
    .execute(&mut admin)
    .await
    .unwrap();
}

async fn scalar(db: &TestDb, sql: &str, id: Uuid) -> i64 {
    let mut admin = db.admin().await;
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

/// Follows `next_cursor` to the end; returns the ids in order.
async fn page_through(app: &TestApp, token: &str, path: &str, limit: u32) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let reply = app.call("GET", &url, token, None).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text());
        let body = reply.json();
        for item in body["items"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().parse().unwrap());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
    panic!("paging did not end")
}

/// Waits for the export job to leave pending/running.
async fn finished_job(app: &TestApp, token: &str, location: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = app.call("GET", location, token, None).await.json();
        if job["status"] == "succeeded" || job["status"] == "failed" {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "the export did not finish: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[tokio::test]
async fn every_filter_and_pair_of_filters_pages_each_match_exactly_once() {
    let auth = FakeAuth::start().await;
    let app = TestApp::start(auth.addr, &[]).await;
    let agent = app.db.add_agent(org_a()).await;
    let other_agent = app.db.add_agent(org_a()).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let agent_b = app.db.add_agent(org_b).await;
    let mine: Vec<Seed> = (0..90).map(|n| Seed::new(org_a(), agent, n)).collect();
    let mut all = mine.clone();
    all.extend((0..20).map(|n| Seed::new(org_a(), other_agent, n)));
    all.extend((0..20).map(|n| Seed::new(org_b, agent_b, n)));
    seed(&app.db, &all).await;
    // One deleted memory that would match everything.
    let mut admin = app.db.admin().await;
    sqlx::query("UPDATE ibex_core.memories SET deleted_at = now() WHERE id = $1")
        .bind(mine[0].id)
        .execute(&mut admin)
        .await
        .unwrap();
    let token = auth.token_for(org_a(), MEMORY_READ);

    let t1 = mine[20].created_at;
    let t2 = mine[70].created_at;
    type Check = Box<dyn Fn(&Seed) -> bool>;
    let filters: Vec<(String, Check)> = vec![
        (
            "category=factual".into(),
            Box::new(|m: &Seed| m.category == "factual"),
        ),
        (
            "status=archived".into(),
            Box::new(|m: &Seed| m.status == "archived"),
        ),
        (
            "source=imported".into(),
            Box::new(|m: &Seed| m.source == "imported"),
        ),
        (
            "tag=vip".into(),
            Box::new(|m: &Seed| m.tags.iter().any(|t| t == "vip")),
        ),
        (
            format!("created_after={}", rfc3339(t1)),
            Box::new(move |m: &Seed| m.created_at >= t1),
        ),
        (
            format!("created_before={}", rfc3339(t2)),
            Box::new(move |m: &Seed| m.created_at < t2),
        ),
    ];
    let mut combinations: Vec<Vec<usize>> = vec![vec![]];
    for i in 0..filters.len() {
        combinations.push(vec![i]);
        for j in i + 1..filters.len() {
            combinations.push(vec![i, j]);
        }
    }
    assert_eq!(combinations.len(), 22);
    let base = format!("/v1/agents/{agent}/memories");
    for combination in combinations {
        let query: Vec<String> = combination
            .iter()
            .map(|&i| filters[i].0.replace('+', "%2B"))
            .collect();
        let has_status = combination
            .iter()
            .any(|&i| filters[i].0.starts_with("status"));
        let mut expected: Vec<&Seed> = mine[1..]
            .iter()
            .filter(|m| has_status || m.status == "active")
            .filter(|m| combination.iter().all(|&i| (filters[i].1)(m)))
            .collect();
        expected.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.id)));
        let expected: Vec<Uuid> = expected.iter().map(|m| m.id).collect();
        let path = if query.is_empty() {
            base.clone()
        } else {
            format!("{base}?{}", query.join("&"))
        };
        let seen = page_through(&app, &token, &path, 4).await;
        assert_eq!(seen, expected, "{path}");
    }

    // A memory carries its tags; a cursor is bound to its filters.
    let page = app
        .call("GET", &format!("{base}?tag=vip&limit=2"), &token, None)
        .await
        .json();
    assert!(
        page["items"][0]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("vip"))
    );
    assert_eq!(page["items"][0]["metadata"]["note"], "SECRET-METADATA");
    let cursor = page["next_cursor"].as_str().unwrap();
    for other in [
        format!("{base}?cursor={cursor}"),
        format!("{base}?tag=t1&cursor={cursor}"),
        format!("/v1/agents/{other_agent}/memories?tag=vip&cursor={cursor}"),
    ] {
        let reply = app.call("GET", &other, &token, None).await;
        let body = reply.assert_error(400, "INVALID_CURSOR");
        assert_eq!(
            body["error"]["field_errors"][0]["field"], "cursor",
            "{other}"
        );
    }
    // Bad filters name their parameter.
    for (query, field) in [
        ("category=facts", "category"),
        ("status=deleted", "status"),
        ("source=guess", "source"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-13-01T00:00:00Z", "created_before"),
        (
            "created_after=2026-02-01T00:00:00Z&created_before=2026-01-01T00:00:00Z",
            "created_after",
        ),
        (
            "created_after=2026-01-01T00:00:00Z&created_before=2026-01-01T00:00:00Z",
            "created_after",
        ),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
    ] {
        let reply = app
            .call("GET", &format!("{base}?{query}"), &token, None)
            .await;
        let body = reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(body["error"]["field_errors"][0]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn another_org_sees_nothing_and_changes_nothing_on_every_operation() {
    let auth = FakeAuth::start().await;
    let memory_service = FakeMemoryService::start(MemoryAnswer::Json(json!({"results": []}))).await;
    let s3 = TempS3::start().unwrap();
    let mut settings = s3_settings(&s3);
    settings.push(("IBEX_API_MEMORY_SERVICE_URL", memory_service.url()));
    let app = TestApp::start(auth.addr, &as_refs(&settings)).await;
    let agent = app.db.add_agent(org_a()).await;
    let memories: Vec<Seed> = (0..3).map(|n| Seed::new(org_a(), agent, n * 3)).collect();
    seed(&app.db, &memories).await;
    let memory = memories[0].id;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let outsider = auth.token_for(org_b, ALL);
    let insider = auth.token_for(org_a(), ALL);
    // A job of org A, to probe with org B's token.
    let job = app
        .post(
            &format!("/v1/agents/{agent}/memories/export"),
            &insider,
            json!({"format": "csv"}),
        )
        .await;
    assert_eq!(job.status, 202, "{}", job.text());
    let job_path = job.header("location").unwrap().to_owned();
    let jobs_before = scalar(
        &app.db,
        "SELECT count(*) FROM ibex_core.memory_exports WHERE org_id = $1",
        org_a(),
    )
    .await;

    let base = format!("/v1/agents/{agent}/memories");
    let operations: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", base.clone(), None),
        ("GET", format!("{base}/{memory}"), None),
        ("DELETE", format!("{base}/{memory}"), None),
        ("DELETE", format!("{base}?confirm=true"), None),
        (
            "POST",
            format!("{base}/search"),
            Some(json!({"query": "memory"})),
        ),
        (
            "POST",
            format!("{base}/export"),
            Some(json!({"format": "json"})),
        ),
        ("GET", job_path.clone(), None),
    ];
    let missing = app
        .call(
            "GET",
            &format!("/v1/agents/{}/memories", Uuid::now_v7()),
            &insider,
            None,
        )
        .await;
    missing.assert_error(404, "NOT_FOUND");
    for (method, path, body) in &operations {
        let reply = app.call(method, path, &outsider, body.clone()).await;
        let error = reply.assert_error(404, "NOT_FOUND");
        assert_eq!(
            error["error"]["message"],
            missing.json()["error"]["message"],
            "{method} {path}: a foreign agent answers like a missing one"
        );
        // Without the operation's bit: 403 whatever the id.
        let bitless = auth.token_for(org_a(), ORG_SETTINGS_WRITE);
        app.call(method, path, &bitless, body.clone())
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }
    // A memory of another agent of the same org is not this agent's.
    let sibling = app.db.add_agent(org_a()).await;
    app.call(
        "GET",
        &format!("/v1/agents/{sibling}/memories/{memory}"),
        &insider,
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    app.call(
        "DELETE",
        &format!("/v1/agents/{sibling}/memories/{memory}"),
        &insider,
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");

    assert_eq!(
        scalar(
            &app.db,
            "SELECT count(*) FROM ibex_core.memories WHERE org_id = $1 AND deleted_at IS NULL",
            org_a(),
        )
        .await,
        3,
        "nothing deleted"
    );
    assert_eq!(
        scalar(
            &app.db,
            "SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1",
            org_a()
        )
        .await,
        0,
        "nothing announced"
    );
    assert_eq!(
        scalar(
            &app.db,
            "SELECT count(*) FROM ibex_core.memory_exports WHERE $1::uuid IS NOT NULL",
            org_a(),
        )
        .await,
        jobs_before,
        "no job created"
    );
    assert!(
        memory_service.calls().is_empty(),
        "the memory service was never asked"
    );
}

#[tokio::test]
async fn deletes_cascade_and_reach_the_proxy_even_through_a_redis_outage() {
    use redis::AsyncCommands;
    let auth = FakeAuth::start().await;
    // A redis-server of its own: this test takes it away, and the shared one serves
    // every other test of the run.
    let mut own_redis = TempRedis::start().unwrap();
    let redis_url = own_redis.url();
    let app = TestApp::start(auth.addr, &[("IBEX_API_REDIS_URL", redis_url.as_str())]).await;
    let agent = app.db.add_agent(org_a()).await;
    let memories: Vec<Seed> = (0..10).map(|n| Seed::new(org_a(), agent, n * 3)).collect();
    seed(&app.db, &memories).await;
    let (one, two) = (memories[0].id, memories[1].id);
    let mut admin = app.db.admin().await;
    sqlx::query(
        "INSERT INTO ibex_core.memory_relationships (id, org_id, source_memory_id, target_memory_id, relation)
         VALUES (gen_random_uuid(), $1, $2, $3, 'related_to'), (gen_random_uuid(), $1, $3, $2, 'supports')",
    )
    .bind(org_a())
    .bind(one)
    .bind(two)
    .execute(&mut admin)
    .await
    .unwrap();
    let hot_key = format!("{ORG_ID}:hot_memories:{agent}");
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (i, m) in memories.iter().enumerate() {
        let _: () = conn.zadd(&hot_key, m.id.to_string(), i).await.unwrap();
    }
    let mut events = subscribe_at(&redis_url, "ibex:memory:deletions").await;
    let token = auth.token_for(org_a(), ALL);
    let path = format!("/v1/agents/{agent}/memories/{one}");

    let reply = app.call("DELETE", &path, &token, None).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert!(reply.body.is_empty());
    let event = next_message(&mut events, Duration::from_secs(5))
        .await
        .expect("a deletion event");
    assert_eq!(
        event,
        json!({"v": 1, "org_id": ORG_ID, "agent_id": agent, "memory_ids": [one]})
    );
    let score: Option<f64> = conn.zscore(&hot_key, one.to_string()).await.unwrap();
    assert_eq!(score, None, "the hot cache forgot it");
    let left: usize = conn.zcard(&hot_key).await.unwrap();
    assert_eq!(left, 9);
    assert_eq!(
        scalar(&app.db, "SELECT count(*) FROM ibex_core.memory_versions WHERE memory_id = $1 AND operation = 'delete'", one).await,
        1
    );
    assert_eq!(
        scalar(&app.db, "SELECT count(*) FROM ibex_core.memory_relationships WHERE source_memory_id = $1 OR target_memory_id = $1", one).await,
        0,
        "both relationships gone"
    );
    assert_eq!(
        scalar(
            &app.db,
            "SELECT count(*) FROM ibex_core.memories WHERE id = $1 AND deleted_at IS NOT NULL",
            one
        )
        .await,
        1,
        "soft-deleted, not removed"
    );
    app.call("GET", &path, &token, None)
        .await
        .assert_error(404, "NOT_FOUND");
    app.call("DELETE", &path, &token, None)
        .await
        .assert_error(404, "NOT_FOUND");

    // Redis down: the bulk delete commits, its events wait and arrive once Redis is back.
    own_redis.stop();
    let reply = app
        .call(
            "DELETE",
            &format!("/v1/agents/{agent}/memories?confirm=true"),
            &token,
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let active_left = memories[1..]
        .iter()
        .filter(|m| m.status == "active")
        .count();
    assert_eq!(
        reply.header("ibex-deleted-count"),
        Some(active_left.to_string().as_str())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    own_redis.restart().unwrap();
    // The subscription died with the server: subscribe again, then wait for the backlog.
    let mut events = subscribe_at(&redis_url, "ibex:memory:deletions").await;
    let event = next_message(&mut events, Duration::from_secs(10))
        .await
        .expect("the queued deletion event");
    let ids: BTreeSet<String> = event["memory_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = memories[1..]
        .iter()
        .filter(|m| m.status == "active")
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn bulk_delete_needs_confirmation_and_is_atomic() {
    let auth = FakeAuth::start().await;
    let app = TestApp::start(auth.addr, &[]).await;
    let agent = app.db.add_agent(org_a()).await;
    // 2 500 memories: more than two deletion events' worth of ids.
    let memories: Vec<Seed> = (0..2500).map(|n| Seed::new(org_a(), agent, n)).collect();
    seed(&app.db, &memories).await;
    let token = auth.token_for(org_a(), ALL);
    let live = "SELECT count(*) FROM ibex_core.memories WHERE agent_id = $1 AND deleted_at IS NULL";
    let base = format!("/v1/agents/{agent}/memories");
    for query in [
        "",
        "?confirm=yes",
        "?confirm=TRUE",
        "?confirm=1&category=factual",
    ] {
        let reply = app
            .call("DELETE", &format!("{base}{query}"), &token, None)
            .await;
        let body = reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(
            body["error"]["field_errors"][0]["field"], "confirm",
            "{query}"
        );
    }
    app.call(
        "DELETE",
        &format!("{base}?confirm=true&status=gone"),
        &token,
        None,
    )
    .await
    .assert_error(400, "VALIDATION_ERROR");
    assert_eq!(scalar(&app.db, live, agent).await, 2500, "nothing deleted");

    let reply = app
        .call(
            "DELETE",
            &format!("{base}?confirm=true&status=archived&tag=vip"),
            &token,
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let expected = memories
        .iter()
        .filter(|m| m.status == "archived" && m.tags.iter().any(|t| t == "vip"))
        .count();
    assert_eq!(
        reply.header("ibex-deleted-count"),
        Some(expected.to_string().as_str())
    );
    assert_eq!(scalar(&app.db, live, agent).await, (2500 - expected) as i64);
    // The whole cascade, chunked into events of at most 1 000 ids.
    assert_eq!(
        scalar(&app.db, "SELECT count(*) FROM ibex_core.memory_versions v JOIN ibex_core.memories m ON m.id = v.memory_id WHERE m.agent_id = $1 AND v.operation = 'delete'", agent).await,
        expected as i64
    );
    let ids_queued = scalar(
        &app.db,
        "SELECT COALESCE(sum(cardinality(zrem_members)), 0)::bigint FROM ibex_core.outbox WHERE org_id = $1",
        org_a(),
    )
    .await;
    assert_eq!(ids_queued, expected as i64);

    // Everything active: 2 500 / 3 ≈ 834 in one transaction.
    let reply = app
        .call("DELETE", &format!("{base}?confirm=true"), &token, None)
        .await;
    let active = memories.iter().filter(|m| m.status == "active").count();
    assert_eq!(
        reply.header("ibex-deleted-count"),
        Some(active.to_string().as_str())
    );
    // Nothing left to match: 0, still 204.
    let reply = app
        .call("DELETE", &format!("{base}?confirm=true"), &token, None)
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("ibex-deleted-count"), Some("0"));
    assert_eq!(
        scalar(
            &app.db,
            "SELECT total_memories::bigint FROM ibex_core.agents WHERE id = $1",
            agent
        )
        .await,
        0
    );
}

#[tokio::test]
async fn search_keeps_the_service_order_and_drops_what_is_not_this_agents() {
    let auth = FakeAuth::start().await;
    let service = FakeMemoryService::start(MemoryAnswer::Json(json!({"results": []}))).await;
    let url = service.url();
    let app = TestApp::start(
        auth.addr,
        &[
            ("IBEX_API_MEMORY_SERVICE_URL", url.as_str()),
            ("IBEX_API_MEMORY_SERVICE_TIMEOUT_MS", "300"),
            ("IBEX_API_MAX_BODY_BYTES", "65536"),
        ],
    )
    .await;
    let agent = app.db.add_agent(org_a()).await;
    let sibling = app.db.add_agent(org_a()).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let agent_b = app.db.add_agent(org_b).await;
    let mine: Vec<Seed> = (0..3).map(|n| Seed::new(org_a(), agent, n * 3)).collect();
    let theirs = Seed::new(org_b, agent_b, 0);
    let siblings = Seed::new(org_a(), sibling, 0);
    let mut all = mine.clone();
    all.extend([theirs.clone(), siblings.clone()]);
    seed(&app.db, &all).await;
    let mut admin = app.db.admin().await;
    sqlx::query("UPDATE ibex_core.memories SET deleted_at = now() WHERE id = $1")
        .bind(mine[2].id)
        .execute(&mut admin)
        .await
        .unwrap();
    service.set(MemoryAnswer::Json(json!({"results": [
        {"memory_id": mine[1].id, "score": 0.9},
        {"memory_id": theirs.id, "score": 0.8},
        {"memory_id": Uuid::now_v7(), "score": 0.7},
        {"memory_id": mine[0].id, "score": 0.5},
        {"memory_id": mine[1].id, "score": 0.4},
        {"memory_id": mine[2].id, "score": 0.3},
        {"memory_id": siblings.id, "score": 0.2},
    ]})));
    let token = auth.token_for(org_a(), MEMORY_READ);
    let path = format!("/v1/agents/{agent}/memories/search");
    let body = json!({"query": "what does the customer prefer?", "limit": 7, "category": "factual",
                      "tags": ["vip"], "min_confidence": 0.5});
    let reply = app.call("POST", &path, &token, Some(body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let items = reply.json()["items"].as_array().unwrap().clone();
    let got: Vec<(String, f64)> = items
        .iter()
        .map(|i| {
            (
                i["memory"]["id"].as_str().unwrap().to_owned(),
                i["score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(mine[1].id.to_string(), 0.9), (mine[0].id.to_string(), 0.5)]
    );
    let calls = service.calls();
    let (request_id, sent) = calls.last().unwrap();
    assert_eq!(request_id.as_deref(), Some(reply.request_id()));
    assert_eq!(
        sent,
        &json!({"org_id": ORG_ID, "agent_id": agent, "query": "what does the customer prefer?",
                "limit": 7, "filters": {"category": "factual", "tags": ["vip"], "min_confidence": 0.5}})
    );

    // Bad bodies never reach the service.
    let before = service.calls().len();
    for (body, field) in [
        (json!({}), "query"),
        (json!({"query": ""}), "query"),
        (json!({"query": "x".repeat(2001)}), "query"),
        (json!({"query": "a\u{0}b"}), "query"),
        (json!({"query": "x", "limit": 0}), "limit"),
        (json!({"query": "x", "limit": 51}), "limit"),
        (json!({"query": "x", "limit": "5"}), "limit"),
        (json!({"query": "x", "category": "facts"}), "category"),
        (json!({"query": "x", "tags": "vip"}), "tags"),
        (json!({"query": "x", "tags": [""]}), "tags"),
        (
            json!({"query": "x", "min_confidence": 1.5}),
            "min_confidence",
        ),
        (json!({"query": "x", "filters": {}}), "filters"),
    ] {
        let reply = app.call("POST", &path, &token, Some(body.clone())).await;
        let error = reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(error["error"]["field_errors"][0]["field"], field, "{body}");
    }
    assert_eq!(service.calls().len(), before);

    // Whatever goes wrong at the service: 503 with Retry-After, its words never echoed.
    let query = Some(json!({"query": "x"}));
    for answer in [
        MemoryAnswer::Raw(500, "SECRET-SERVICE-TEXT internal error"),
        MemoryAnswer::Raw(200, "SECRET-SERVICE-TEXT not json"),
        MemoryAnswer::Json(json!({"items": [], "note": "SECRET-SERVICE-TEXT"})),
        MemoryAnswer::Json(json!({"results": [{"memory_id": "SECRET-SERVICE-TEXT", "score": 1}]})),
        MemoryAnswer::Json(json!({"results": [{"memory_id": mine[0].id}]})),
        MemoryAnswer::Slow(Duration::from_secs(5)),
    ] {
        service.set(answer.clone());
        let started = Instant::now();
        let reply = app.call("POST", &path, &token, query.clone()).await;
        reply.assert_error(503, "MEMORY_SERVICE_UNAVAILABLE");
        assert_eq!(reply.header("retry-after"), Some("2"));
        assert!(
            !reply.text().contains("SECRET"),
            "{answer:?}: {}",
            reply.text()
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{answer:?}: no hang"
        );
    }
}

#[tokio::test]
async fn search_with_the_service_down_and_with_the_dev_stand_in() {
    let auth = FakeAuth::start().await;
    let down = format!("http://{}", dead_addr().await);
    let app = TestApp::start(auth.addr, &[("IBEX_API_MEMORY_SERVICE_URL", down.as_str())]).await;
    let agent = app.db.add_agent(org_a()).await;
    let mut memories: Vec<Seed> = (0..4).map(|n| Seed::new(org_a(), agent, n * 3)).collect();
    memories[1].content = "The customer asked for a refund of the March invoice".into();
    memories[2].content = "Refunds are processed within five days".into();
    seed(&app.db, &memories).await;
    let token = auth.token_for(org_a(), MEMORY_READ);
    let path = format!("/v1/agents/{agent}/memories/search");
    let started = Instant::now();
    app.post(&path, &token, json!({"query": "refund"}))
        .await
        .assert_error(503, "MEMORY_SERVICE_UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_secs(2));

    // The development stand-in ranks by full-text search, within the org it is asked about.
    let config = config(auth.addr, &[("IBEX_API_DATABASE_URL", app.db.url.as_str())]);
    let db = ibex_api::db::Database::connect_lazy(&config.database).unwrap();
    let stand_in =
        ibex_api::domains::memories::dev_service::spawn("127.0.0.1:0".parse().unwrap(), db)
            .await
            .unwrap();
    let url = format!("http://{stand_in}");
    let app2 = TestApp::start_with(crate::common::config(
        auth.addr,
        &[
            ("IBEX_API_DATABASE_URL", app.db.url.as_str()),
            ("IBEX_API_MEMORY_SERVICE_URL", url.as_str()),
        ],
    ))
    .await;
    let reply = app2.post(&path, &token, json!({"query": "refund"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ids: BTreeSet<String> = reply.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["memory"]["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = memories[1..3]
        .iter()
        .filter(|m| m.status == "active")
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(ids, expected);
}

/// Content that tries every CSV and spreadsheet trap, and multi-byte text.
fn tricky(n: usize) -> String {
    match n % 8 {
        0 => format!("=HYPERLINK(\"http://evil.example\",\"{n}\")"),
        1 => format!("plain, with a comma {n}"),
        2 => format!("she said \"hi\" {n}"),
        3 => format!("two\nlines\r\n{n}"),
        4 => format!("ünïcödé — 日本語 🦀 {n}"),
        5 => format!("+{n} -{n} @{n}"),
        6 => format!("-{n}"),
        _ => format!("@SUM(A1:A{n})"),
    }
}

#[tokio::test]
async fn a_10000_memory_csv_export_parses_back_and_its_url_is_signed() {
    let auth = FakeAuth::start().await;
    let s3 = TempS3::start().unwrap();
    let app = TestApp::start(auth.addr, &as_refs(&s3_settings(&s3))).await;
    let agent = app.db.add_agent(org_a()).await;
    let mut memories: Vec<Seed> = (0..10_000)
        .map(|n| {
            let mut m = Seed::new(org_a(), agent, n);
            m.status = "active";
            m.content = tricky(n);
            m
        })
        .collect();
    seed(&app.db, &memories).await;
    let token = auth.token_for(org_a(), MEMORY_EXPORT);

    // Bad bodies: 400 naming the field, no job.
    let export = format!("/v1/agents/{agent}/memories/export");
    for (body, field) in [
        (json!({}), "format"),
        (json!({"format": "xlsx"}), "format"),
        (json!({"format": "csv", "category": "x"}), "category"),
        (
            json!({"format": "csv", "created_after": "soon"}),
            "created_after",
        ),
        (json!({"format": "csv", "colour": "red"}), "colour"),
    ] {
        let reply = app.call("POST", &export, &token, Some(body.clone())).await;
        let error = reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(error["error"]["field_errors"][0]["field"], field, "{body}");
    }

    let started = Instant::now();
    let reply = app.post(&export, &token, json!({"format": "csv"})).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let location = reply.header("location").unwrap().to_owned();
    assert_eq!(reply.json()["status"], "pending");
    let job = finished_job(&app, &token, &location).await;
    let took = started.elapsed();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["row_count"], 10_000);
    eprintln!(
        "export of 10 000 memories: {took:?}, {} bytes",
        job["size_bytes"]
    );
    assert!(took < Duration::from_secs(60));

    let url = job["download_url"].as_str().unwrap().to_owned();
    let (status, body) = plain_get(&url).await;
    assert_eq!(status, 200);
    assert_eq!(body.len() as i64, job["size_bytes"].as_i64().unwrap());
    let mut reader = csv::ReaderBuilder::new().from_reader(body.as_slice());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "id",
            "category",
            "content",
            "confidence",
            "source",
            "created_at",
            "retrieval_count"
        ]
    );
    memories.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.id)));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 10_000);
    for (row, m) in rows.iter().zip(&memories) {
        let guarded = if m.content.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{}", m.content)
        } else {
            m.content.clone()
        };
        let expected = [
            m.id.to_string(),
            m.category.to_owned(),
            guarded,
            m.confidence.to_string(),
            m.source.to_owned(),
            rfc3339(m.created_at),
            m.retrieval_count.to_string(),
        ];
        assert_eq!(
            row.iter().collect::<Vec<_>>(),
            expected.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }

    // One changed character anywhere in the URL: the server refuses it.
    let signature_at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered_signature = url.clone().into_bytes();
    tampered_signature[signature_at] = if tampered_signature[signature_at] == b'a' {
        b'b'
    } else {
        b'a'
    };
    let tampered_expiry = url.replace("X-Amz-Expires=900", "X-Amz-Expires=901");
    let key_at = url.find(".csv").unwrap() - 1;
    let mut tampered_key = url.clone().into_bytes();
    tampered_key[key_at] = if tampered_key[key_at] == b'0' {
        b'1'
    } else {
        b'0'
    };
    for tampered in [
        String::from_utf8(tampered_signature).unwrap(),
        tampered_expiry,
        String::from_utf8(tampered_key).unwrap(),
        url.split('?').next().unwrap().to_owned(),
    ] {
        let (status, _) = plain_get(&tampered).await;
        assert_eq!(status, 403, "{tampered}");
    }
    // Each read signs anew.
    let again = app.call("GET", &location, &token, None).await.json();
    assert_eq!(again["status"], "succeeded");
    assert!(
        again["download_url"]
            .as_str()
            .unwrap()
            .contains("X-Amz-Signature=")
    );

    // NDJSON: one memory a line, without metadata.
    let reply = app
        .post(
            &export,
            &token,
            json!({"format": "json", "category": "factual"}),
        )
        .await;
    let job = finished_job(&app, &token, reply.header("location").unwrap()).await;
    assert_eq!(job["status"], "succeeded");
    let (status, body) = plain_get(job["download_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let factual: Vec<&Seed> = memories
        .iter()
        .filter(|m| m.category == "factual")
        .collect();
    assert_eq!(lines.len(), factual.len());
    for (line, m) in lines.iter().zip(factual) {
        assert_eq!(line["id"], m.id.to_string());
        assert_eq!(line["content"], m.content);
        assert!(line.get("metadata").is_none());
        assert!(line["tags"].is_array());
    }
}

#[tokio::test]
async fn an_expired_download_url_is_refused() {
    let auth = FakeAuth::start().await;
    let s3 = TempS3::start().unwrap();
    let mut settings = s3_settings(&s3);
    settings.push(("IBEX_API_S3_PRESIGN_TTL_MS", "1000".into()));
    let app = TestApp::start(auth.addr, &as_refs(&settings)).await;
    let agent = app.db.add_agent(org_a()).await;
    seed(&app.db, &[Seed::new(org_a(), agent, 0)]).await;
    let token = auth.token_for(org_a(), MEMORY_EXPORT);
    let reply = app
        .post(
            &format!("/v1/agents/{agent}/memories/export"),
            &token,
            json!({"format": "csv"}),
        )
        .await;
    let job = finished_job(&app, &token, reply.header("location").unwrap()).await;
    let url = job["download_url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Expires=1&"), "{url}");
    assert_eq!(plain_get(url).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(plain_get(url).await.0, 403, "expired");
}

#[tokio::test]
async fn a_job_whose_worker_died_is_taken_up_and_a_held_one_is_not() {
    let auth = FakeAuth::start().await;
    let s3 = TempS3::start().unwrap();
    let mut settings = s3_settings(&s3);
    settings.push(("IBEX_API_EXPORT_LEASE_MS", "600".into()));
    let db = TestDb::create().await;
    db.add_org(org_a()).await;
    let agent = db.add_agent(org_a()).await;
    seed(
        &db,
        &(0..50)
            .map(|n| Seed::new(org_a(), agent, n * 3))
            .collect::<Vec<_>>(),
    )
    .await;
    // Two jobs as a previous process left them: one whose worker died (lease run out), one
    // still held by a live worker of another replica.
    let (dead, held) = (Uuid::now_v7(), Uuid::now_v7());
    let mut admin = db.admin().await;
    sqlx::query(
        "INSERT INTO ibex_core.memory_exports (id, org_id, agent_id, format, filters, status, attempts, lease_until, started_at)
         VALUES ($1, $3, $4, 'csv', '{\"status\": \"active\"}', 'running', 1, now() - interval '1 second', now()),
                ($2, $3, $4, 'csv', '{\"status\": \"active\"}', 'running', 1, now() + interval '1 hour', now())",
    )
    .bind(dead)
    .bind(held)
    .bind(org_a())
    .bind(agent)
    .execute(&mut admin)
    .await
    .unwrap();
    settings.push(("IBEX_API_DATABASE_URL", db.url.clone()));
    let app = TestApp::start_with(config(auth.addr, &as_refs(&settings))).await;
    let token = auth.token_for(org_a(), MEMORY_EXPORT);
    let job = finished_job(
        &app,
        &token,
        &format!("/v1/agents/{agent}/memories/export/{dead}"),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["row_count"], 50);
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM ibex_core.memory_exports WHERE id = $1")
            .bind(dead)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(attempts, 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held_job = app
        .call(
            "GET",
            &format!("/v1/agents/{agent}/memories/export/{held}"),
            &token,
            None,
        )
        .await
        .json();
    assert_eq!(
        held_job["status"], "running",
        "another worker's job is left alone"
    );
}

/// An app on an object store that is then stopped, and an export requested of it: (auth, the
/// store, the app, the token, the agent, the job's Location, the job id).
async fn export_with_the_store_down(
    extra: &[(&'static str, &'static str)],
) -> (FakeAuth, TempS3, TestApp, String, Uuid, String, Uuid) {
    let auth = FakeAuth::start().await;
    let mut s3 = TempS3::start().unwrap();
    let owned = s3_settings(&s3);
    let mut settings = as_refs(&owned);
    settings.extend_from_slice(extra);
    let app = TestApp::start(auth.addr, &settings).await;
    let agent = app.db.add_agent(org_a()).await;
    seed(&app.db, &[Seed::new(org_a(), agent, 0)]).await;
    let token = auth.token_for(org_a(), MEMORY_EXPORT);
    s3.stop();
    let reply = app
        .post(
            &format!("/v1/agents/{agent}/memories/export"),
            &token,
            json!({"format": "csv"}),
        )
        .await;
    assert_eq!(reply.status, 202);
    let location = reply.header("location").unwrap().to_owned();
    let job_id = reply.json()["job_id"].as_str().unwrap().parse().unwrap();
    (auth, s3, app, token, agent, location, job_id)
}

#[tokio::test]
async fn with_the_object_store_down_an_export_fails_with_a_code_never_succeeds() {
    // A retry window of 3 s instead of 10 minutes: the job gives up within the test.
    let (_auth, mut s3, app, token, agent, location, _) = export_with_the_store_down(&[
        ("IBEX_API_EXPORT_RETRY_WINDOW_MS", "3000"),
        ("IBEX_API_EXPORT_RETRY_MAX_BACKOFF_MS", "500"),
    ])
    .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut saw_retry = false;
    let job = loop {
        let job = app.call("GET", &location, &token, None).await.json();
        assert_ne!(job["status"], "succeeded");
        assert!(job["download_url"].is_null());
        if job["status"] == "pending" && job["error"] == "OBJECT_STORE_UNAVAILABLE" {
            saw_retry = true;
        }
        if job["status"] == "failed" {
            break job;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(saw_retry, "retried before failing");
    assert_eq!(job["error"], "OBJECT_STORE_UNAVAILABLE");
    assert!(job["finished_at"].is_string());
    let ready = app.get("/ready", &[]).await.json();
    assert_eq!(
        ready["checks"]["object_store"]["status"], "failed",
        "{ready}"
    );

    s3.restart().unwrap();
    let reply = app
        .post(
            &format!("/v1/agents/{agent}/memories/export"),
            &token,
            json!({"format": "csv"}),
        )
        .await;
    let job = finished_job(&app, &token, reply.header("location").unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

/// Regression (issue 17): an export used to give up for good after three attempts, about 7 s of
/// object-store outage, so a routine restart of the store failed every export in flight. It now
/// retries, backing off, for the configured window and succeeds once the store is back, with
/// exactly one object.
#[tokio::test]
async fn an_export_outlasts_an_object_store_outage_and_leaves_one_object() {
    // The default window (10 minutes) with waits capped at 1 s, so the test is short.
    let (_auth, mut s3, app, token, _, location, job_id) =
        export_with_the_store_down(&[("IBEX_API_EXPORT_RETRY_MAX_BACKOFF_MS", "1000")]).await;
    // Longer than the old give-up (three attempts, ~7 s), and more attempts than it allowed.
    let outage = Instant::now();
    loop {
        let job = app.call("GET", &location, &token, None).await.json();
        assert_ne!(job["status"], "failed", "gave up during the outage: {job}");
        assert_ne!(job["status"], "succeeded", "{job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if outage.elapsed() > Duration::from_secs(9) {
            break;
        }
    }
    let mut admin = app.db.admin().await;
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM ibex_core.memory_exports WHERE id = $1")
            .bind(job_id)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(attempts > 3, "kept retrying: {attempts} attempts");
    s3.restart().unwrap();
    let job = finished_job(&app, &token, &location).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        count_files(&s3.root().join("ibex-exports")),
        1,
        "exactly one object"
    );
}

#[tokio::test]
async fn gdpr_deletion_takes_memories_exports_and_objects_and_waits_for_the_store() {
    let auth = FakeAuth::start().await;
    let mut s3 = TempS3::start().unwrap();
    let app = TestApp::start(auth.addr, &as_refs(&s3_settings(&s3))).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    let mut agents = Vec::new();
    for org in [org_a(), org_b] {
        let agent = app.db.add_agent(org).await;
        let memories: Vec<Seed> = (0..30).map(|n| Seed::new(org, agent, n * 3)).collect();
        seed(&app.db, &memories).await;
        let token = auth.token_for(org, MEMORY_EXPORT | MEMORY_DELETE);
        // A delete (history rows, an outbox event) and an export (a job, an object).
        let reply = app
            .call(
                "DELETE",
                &format!("/v1/agents/{agent}/memories/{}", memories[0].id),
                &token,
                None,
            )
            .await;
        assert_eq!(reply.status, 204);
        let reply = app
            .post(
                &format!("/v1/agents/{agent}/memories/export"),
                &token,
                json!({"format": "json"}),
            )
            .await;
        let job = finished_job(&app, &token, reply.header("location").unwrap()).await;
        assert_eq!(job["status"], "succeeded");
        // A session with a checkpoint, and its archive as the platform's archiver writes it.
        let mut admin = app.db.admin().await;
        sqlx::query(
            "WITH s AS (INSERT INTO ibex_core.sessions (id, org_id, agent_id) VALUES (gen_random_uuid(), $1, $2) RETURNING id)
             INSERT INTO ibex_core.checkpoints (id, org_id, session_id, turn_index) SELECT gen_random_uuid(), $1, id, 0 FROM s",
        )
        .bind(org)
        .bind(agent)
        .execute(&mut admin)
        .await
        .unwrap();
        let archive = s3
            .root()
            .join(format!("ibex-archives/{org}/{agent}/{}", Uuid::now_v7()));
        std::fs::create_dir_all(&archive).unwrap();
        std::fs::write(archive.join("session.ndjson"), b"{}\n").unwrap();
        agents.push(agent);
    }
    let root = s3.root().to_owned();
    let objects = |org: Uuid| {
        ["ibex-exports", "ibex-archives"]
            .iter()
            .map(|bucket| count_files(&root.join(bucket).join(org.to_string())))
            .sum::<usize>()
    };
    assert_eq!(objects(org_a()), 2);
    assert_eq!(objects(org_b), 2);

    s3.stop();
    let token = auth.token_for_user(org_a(), Some(owner), ORG_SETTINGS_WRITE);
    let mine = format!("/v1/organizations/{ORG_ID}");
    assert_eq!(app.call("DELETE", &mine, &token, None).await.status, 202);
    // The rows go; the deletion stays running while the store is away.
    let deadline = Instant::now() + Duration::from_secs(20);
    while scalar(
        &app.db,
        "SELECT count(*) FROM ibex_core.memories WHERE org_id = $1",
        org_a(),
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "the rows were not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let org = app.call("GET", &mine, &token, None).await.json();
    assert_eq!(org["deletion"]["state"], "running", "{org}");
    assert_eq!(objects(org_a()), 2);

    s3.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(
        &app.db,
        "SELECT count(*) FROM ibex_core.organizations WHERE id = $1",
        org_a(),
    )
    .await
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "the deletion did not finish after the store came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(objects(org_a()), 0);
    for table in [
        "memories",
        "memory_tags",
        "memory_versions",
        "memory_relationships",
        "memory_exports",
        "sessions",
        "checkpoints",
    ] {
        let sql = format!("SELECT count(*) FROM ibex_core.{table} WHERE org_id = $1");
        assert_eq!(scalar(&app.db, &sql, org_a()).await, 0, "{table}");
        assert!(
            scalar(&app.db, &sql, org_b).await > 0 || table == "memory_relationships",
            "{table} of org B"
        );
    }
    assert_eq!(
        objects(org_b),
        2,
        "the other organization keeps its objects"
    );
}

fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

/// The real binary killed (SIGKILL) while its export is uploading: a second process takes the
/// job over once the lease runs out and finishes it. The first process uploads to a black hole
/// (a listener that accepts and never answers), so it is surely mid-export when killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_interrupted_by_a_killed_process_finishes_after_a_restart() {
    let auth = FakeAuth::start().await;
    let s3 = TempS3::start().unwrap();
    let db = TestDb::create().await;
    db.add_org(org_a()).await;
    let agent = db.add_agent(org_a()).await;
    seed(
        &db,
        &(0..3000)
            .map(|n| {
                let mut m = Seed::new(org_a(), agent, n);
                m.status = "active";
                m
            })
            .collect::<Vec<_>>(),
    )
    .await;
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole = format!("http://{}", black_hole.local_addr().unwrap());
    let token = auth.token_for(org_a(), MEMORY_EXPORT);
    let start = |s3_endpoint: &str| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ibex-api"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("IBEX_API_HOST", "127.0.0.1")
            .env("IBEX_API_PORT", port.to_string())
            .env("IBEX_API_AUTH_GRPC_ADDR", format!("http://{}", auth.addr))
            .env("IBEX_API_DATABASE_URL", &db.url)
            .env("IBEX_API_REDIS_URL", "")
            .env("IBEX_API_CLICKHOUSE_URL", "")
            .env("IBEX_API_METRICS_ADDR", "")
            .env("IBEX_API_EXPORT_LEASE_MS", "1500")
            .env("IBEX_API_LOG_LEVEL", "warn");
        for (name, value) in s3.settings() {
            command.env(name, value);
        }
        command.env("IBEX_API_S3_ENDPOINT", s3_endpoint);
        let child = command.stdout(std::process::Stdio::null()).spawn().unwrap();
        (child, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    };
    let status = |job: Uuid| {
        let url = db.url.clone();
        async move {
            let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query_as::<_, (String, i32)>(
                "SELECT status, attempts FROM ibex_core.memory_exports WHERE id = $1",
            )
            .bind(job)
            .fetch_one(&mut admin)
            .await
            .unwrap()
        }
    };

    let (mut first, addr) = start(&hole);
    let auth_header = format!("Bearer {token}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let reply = loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break request(
                addr,
                "POST",
                &format!("/v1/agents/{agent}/memories/export"),
                &[
                    ("Authorization", &auth_header),
                    ("Content-Type", "application/json"),
                ],
                br#"{"format": "csv"}"#,
            )
            .await;
        }
        assert!(Instant::now() < deadline, "the binary did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply.status, 202, "{}", reply.text());
    let job: Uuid = reply.json()["job_id"].as_str().unwrap().parse().unwrap();
    // Running (its upload hangs in the black hole), then killed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(job).await.0 != "running" {
        assert!(Instant::now() < deadline, "the export never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(
        status(job).await,
        ("running".to_owned(), 1),
        "left as a dead worker leaves it"
    );

    let (mut second, _) = start(&s3.endpoint());
    let deadline = Instant::now() + Duration::from_secs(30);
    let finished = loop {
        let now = status(job).await;
        if now.0 == "succeeded" || now.0 == "failed" {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the job was not taken up: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(finished, ("succeeded".to_owned(), 2));
    let files = count_files(&s3.root().join("ibex-exports"));
    assert_eq!(files, 1, "one file, written by the second process");
    drop(black_hole);
}
