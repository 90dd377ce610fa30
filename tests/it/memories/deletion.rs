//! Deletion: single and bulk, the events and the proxy's cache, and the organization deletion.

use super::*;

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
    let sql = "INSERT INTO ibex_core.memory_relationships (id, org_id, source_memory_id,
               target_memory_id, relation)
         VALUES (gen_random_uuid(), $1, $2, $3, 'related_to'), (gen_random_uuid(), $1, $3, $2, 'supports')";
    run_sql!(&mut admin, sql, org_a(), one, two);
    let hot_key = format!("{ORG_ID}:hot_memories:{agent}");
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (i, m) in memories.iter().enumerate() {
        let _: () = conn.zadd(&hot_key, m.id.to_string(), i).await.unwrap();
    }
    let mut events = subscribe_at(&redis_url, "ibex:memory:deletions").await;
    let token = auth.token_for(org_a(), ALL);
    let path = format!("/v1/agents/{agent}/memories/{one}");

    let reply = app.delete(&path, &token).await;
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
    app.read(&path, &token).await.assert_error(404, "NOT_FOUND");
    app.delete(&path, &token)
        .await
        .assert_error(404, "NOT_FOUND");

    // Redis down: the bulk delete commits, its events wait and arrive once Redis is back.
    own_redis.stop();
    let reply = app
        .delete(&format!("/v1/agents/{agent}/memories?confirm=true"), &token)
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
    assert_eq!(ids, active_ids(&memories[1..]));
}

#[tokio::test]
async fn bulk_delete_needs_confirmation_and_is_atomic() {
    let (auth, app) = TestApp::with_auth(&[]).await;
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
        let reply = app.delete(&format!("{base}{query}"), &token).await;
        let body = reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(
            body["error"]["field_errors"][0]["field"], "confirm",
            "{query}"
        );
    }
    app.delete(&format!("{base}?confirm=true&status=gone"), &token)
        .await
        .assert_error(400, "VALIDATION_ERROR");
    assert_eq!(scalar(&app.db, live, agent).await, 2500, "nothing deleted");

    let reply = app
        .delete(
            &format!("{base}?confirm=true&status=archived&tag=vip"),
            &token,
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
    let reply = app.delete(&format!("{base}?confirm=true"), &token).await;
    let active = memories.iter().filter(|m| m.status == "active").count();
    assert_eq!(
        reply.header("ibex-deleted-count"),
        Some(active.to_string().as_str())
    );
    // Nothing left to match: 0, still 204.
    let reply = app.delete(&format!("{base}?confirm=true"), &token).await;
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
async fn gdpr_deletion_takes_memories_exports_and_objects_and_waits_for_the_store() {
    let (auth, mut s3, app) = TestApp::with_s3(&[]).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    let mut agents = Vec::new();
    for org in [org_a(), org_b] {
        let agent = app.db.add_agent(org).await;
        let memories: Vec<Seed> = (0..30).map(|n| Seed::new(org, agent, n * 3)).collect();
        seed(&app.db, &memories).await;
        let token = auth.token_for(org, MEMORY_BULK_EXPORT | MEMORY_DELETE);
        // A delete (history rows, an outbox event) and an export (a job, an object).
        let reply = app
            .delete(
                &format!("/v1/agents/{agent}/memories/{}", memories[0].id),
                &token,
            )
            .await;
        assert_eq!(reply.status, 204);
        let reply = start_export(&app, &token, agent, "json").await;
        let job = finished_job(&app, &token, reply.header("location").unwrap()).await;
        assert_eq!(job["status"], "succeeded");
        // A session with a checkpoint, and its archive as the platform's archiver writes it.
        let mut admin = app.db.admin().await;
        let sql = "WITH s AS (INSERT INTO ibex_core.sessions (id, org_id, agent_id)
                   VALUES (gen_random_uuid(), $1, $2) RETURNING id)
             INSERT INTO ibex_core.checkpoints (id, org_id, session_id, turn_index) SELECT gen_random_uuid(), $1, id, 0 FROM s";
        run_sql!(&mut admin, sql, org, agent);
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
    assert_eq!(app.delete(&mine, &token).await.status, 202);
    // The rows go; the deletion stays running while the store is away.
    let deadline = Deadline::after(Duration::from_secs(20));
    while scalar(
        &app.db,
        "SELECT count(*) FROM ibex_core.memories WHERE org_id = $1",
        org_a(),
    )
    .await
        > 0
    {
        deadline.tick("the rows were not deleted").await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let org = app.read(&mine, &token).await.json();
    assert_eq!(org["deletion"]["state"], "running", "{org}");
    assert_eq!(objects(org_a()), 2);

    s3.restart().unwrap();
    let deadline = Deadline::after(Duration::from_secs(30)).every(Duration::from_millis(200));
    while scalar(
        &app.db,
        "SELECT count(*) FROM ibex_core.organizations WHERE id = $1",
        org_a(),
    )
    .await
        > 0
    {
        deadline
            .tick("the deletion did not finish after the store came back")
            .await;
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
