//! Storage limitation from outside: rows deleted through the API longer ago than the retention
//! period are removed for good by the background sweep, with their dependents; everything else,
//! deleted recently or never, stays exactly as it was.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::common::*;

/// A memory (with a tag and a history row) of `$3` in `$2`, id `$1`, deleted `$4` days ago.
const MEMORY: &str = "WITH m AS (
        INSERT INTO ibex_core.memories
            (id, org_id, agent_id, content, content_hash, category, deleted_at)
        VALUES ($1, $2, $3, 'likes tea', repeat('a', 64), 'preference',
                now() - make_interval(days => $4))
        RETURNING id, org_id),
    t AS (INSERT INTO ibex_core.memory_tags (memory_id, org_id, tag)
          SELECT id, org_id, 'drinks' FROM m)
    INSERT INTO ibex_core.memory_versions (id, memory_id, org_id, operation)
    SELECT gen_random_uuid(), id, org_id, 'create' FROM m";

/// A session (with one checkpoint) of `$3` in `$2`, id `$1`, deleted `$4` days ago.
const SESSION: &str = "WITH s AS (
        INSERT INTO ibex_core.sessions (id, org_id, agent_id, external_id, deleted_at)
        VALUES ($1, $2, $3, $1::text, now() - make_interval(days => $4))
        RETURNING id, org_id)
    INSERT INTO ibex_core.checkpoints (id, org_id, session_id, turn_index)
    SELECT gen_random_uuid(), org_id, id, 0 FROM s";

/// A new row of `agent` made by `sql` (deleted `days_ago`, or live); its id.
async fn seed(
    db: &mut PgConnection,
    sql: &str,
    org: Uuid,
    agent: Uuid,
    days_ago: Option<i32>,
) -> Uuid {
    let id = Uuid::now_v7();
    run_sql!(db, sql, id, org, agent, days_ago);
    id
}

async fn mark_deleted(db: &mut PgConnection, table: &str, id: Uuid, days_ago: i32) {
    let sql = &format!(
        "UPDATE ibex_core.{table} SET deleted_at = now() - make_interval(days => $2) WHERE id = $1"
    );
    run_sql!(db, sql, id, days_ago);
}

async fn exists(db: &mut PgConnection, table: &str, column: &str, id: Uuid) -> bool {
    db.value(
        &format!("SELECT EXISTS (SELECT 1 FROM ibex_core.{table} WHERE {column} = $1)"),
        id,
    )
    .await
}

#[tokio::test]
async fn rows_deleted_past_the_retention_period_are_removed_for_good_and_nothing_else() {
    let auth = FakeAuth::start().await;
    let settings = [
        ("IBEX_API_DELETED_RETENTION_DAYS", "30"),
        ("IBEX_API_RETENTION_SWEEP_MS", "100"),
    ];
    // Seeded before the app starts, so the first sweep already sees everything.
    let db = TestDb::create().await;
    let org: Uuid = ORG_ID.parse().unwrap();
    db.add_org(org).await;
    let mut admin = db.admin().await;
    let creator = db.add_user(org, "admin").await;
    let live_agent = db.add_agent(org).await;
    let sql = "UPDATE ibex_core.agents SET created_by = $2 WHERE id = $1";
    run_sql!(&mut admin, sql, live_agent, creator);
    mark_deleted(&mut admin, "users", creator, 31).await;
    let recent_user = db.add_user(org, "member").await;
    mark_deleted(&mut admin, "users", recent_user, 29).await;
    let live_user = db.add_user(org, "member").await;

    let old_memory = seed(&mut admin, MEMORY, org, live_agent, Some(31)).await;
    let recent_memory = seed(&mut admin, MEMORY, org, live_agent, Some(29)).await;
    let live_memory = seed(&mut admin, MEMORY, org, live_agent, None).await;
    // A live memory related to a doomed one keeps itself, not the link.
    let sql = "INSERT INTO ibex_core.memory_relationships (id, org_id, source_memory_id,
               target_memory_id, relation)
         VALUES (gen_random_uuid(), $1, $2, $3, 'supports')";
    run_sql!(&mut admin, sql, org, live_memory, old_memory);
    let old_session = seed(&mut admin, SESSION, org, live_agent, Some(31)).await;
    let live_session = seed(&mut admin, SESSION, org, live_agent, None).await;

    // An agent deleted long ago, with a memory that was never deleted itself and a directive:
    // all of it goes.
    let old_agent = db.add_agent(org).await;
    let orphan_memory = seed(&mut admin, MEMORY, org, old_agent, None).await;
    let (directive, version) = (Uuid::now_v7(), Uuid::now_v7());
    for statement in [
        "INSERT INTO ibex_core.directives (id, org_id, agent_id, last_version_num)
         VALUES ($1, $3, $4, 1)",
        "INSERT INTO ibex_core.directive_versions (id, directive_id, org_id, version_num, content, content_hash)
         VALUES ($2, $1, $3, 1, 'be kind', repeat('b', 64))",
        "UPDATE ibex_core.directives SET active_version_id = $2 WHERE id = $1 AND org_id = $3 AND agent_id = $4",
    ] {
        let sql = statement;
        run_sql!(&mut admin, sql, directive, version, org, old_agent);
    }
    mark_deleted(&mut admin, "agents", old_agent, 40).await;
    // One deleted recently stays.
    let recent_agent = db.add_agent(org).await;
    mark_deleted(&mut admin, "agents", recent_agent, 5).await;

    let mut with_db = vec![("IBEX_API_DATABASE_URL", db.url.as_str())];
    with_db.extend_from_slice(&settings);
    let _app = TestApp::start_on(config(auth.addr, &with_db), db).await;

    let deadline = Deadline::after(Duration::from_secs(20));
    while exists(&mut admin, "agents", "id", old_agent).await {
        deadline
            .tick("the sweep removed the old agent in time")
            .await;
    }

    for (table, column, id, kept) in [
        ("memories", "id", old_memory, false),
        ("memory_tags", "memory_id", old_memory, false),
        ("memory_versions", "memory_id", old_memory, false),
        (
            "memory_relationships",
            "target_memory_id",
            old_memory,
            false,
        ),
        ("memories", "id", orphan_memory, false),
        ("memories", "id", recent_memory, true),
        ("memories", "id", live_memory, true),
        ("memory_tags", "memory_id", live_memory, true),
        ("sessions", "id", old_session, false),
        ("checkpoints", "session_id", old_session, false),
        ("sessions", "id", live_session, true),
        ("checkpoints", "session_id", live_session, true),
        ("agents", "id", old_agent, false),
        ("directives", "agent_id", old_agent, false),
        ("agents", "id", recent_agent, true),
        ("agents", "id", live_agent, true),
        ("users", "id", creator, false),
        ("users", "id", recent_user, true),
        ("users", "id", live_user, true),
    ] {
        assert_eq!(
            exists(&mut admin, table, column, id).await,
            kept,
            "{table}.{column} = {id} should be {}",
            if kept { "kept" } else { "gone" }
        );
    }
    let created_by: Option<Uuid> = admin
        .value(
            "SELECT created_by FROM ibex_core.agents WHERE id = $1",
            live_agent,
        )
        .await;
    assert_eq!(created_by, None, "the removed creator is no longer named");
    let versions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.directive_versions v
         WHERE NOT EXISTS (SELECT 1 FROM ibex_core.directives d WHERE d.id = v.directive_id)",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(versions, 0, "no directive version outlives its directive");
}
