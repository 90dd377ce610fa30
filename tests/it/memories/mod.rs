//! Memories end to end over real connections: PostgreSQL (row-level security on), Redis (the
//! proxy's cache eviction and the deletion events), an embedded S3 server that checks SigV4
//! signatures (exports, pre-signed downloads), and a scriptable memory service on loopback.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::*;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

const ALL: u64 = MEMORY_READ | MEMORY_DELETE | MEMORY_BULK_EXPORT;

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
    let sql = "INSERT INTO ibex_core.memory_tags (memory_id, org_id, tag)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[])";
    run_sql!(
        &mut admin,
        sql,
        pairs.iter().map(|p| p.0).collect::<Vec<_>>(),
        pairs.iter().map(|p| p.1).collect::<Vec<_>>(),
        pairs.iter().map(|p| p.2.clone()).collect::<Vec<_>>()
    );
}

async fn scalar(db: &TestDb, sql: &str, id: Uuid) -> i64 {
    let mut admin = db.admin().await;
    admin.value(sql, id).await
}

/// Asks for an export of `agent`'s memories in `format` (the answer: 202 and the job's Location).
async fn start_export(app: &TestApp, token: &str, agent: Uuid, format: &str) -> Reply {
    let path = format!("/v1/agents/{agent}/memories/export");
    app.post(&path, token, json!({ "format": format })).await
}

/// Waits for the export job to leave pending/running.
async fn finished_job(app: &TestApp, token: &str, location: &str) -> Value {
    let deadline = Deadline::after(Duration::from_secs(60));
    loop {
        let job = app.read(location, token).await.json();
        if job["status"] == "succeeded" || job["status"] == "failed" {
            return job;
        }
        deadline
            .tick(format!("the export did not finish: {job}"))
            .await;
    }
}

/// Marks a memory deleted, as the superuser.
async fn soft_delete(db: &TestDb, id: Uuid) {
    let sql = "UPDATE ibex_core.memories SET deleted_at = now() WHERE id = $1";
    db.admin().await.run(sql, id).await;
}

/// The ids of the active memories among `memories`.
fn active_ids(memories: &[Seed]) -> BTreeSet<String> {
    memories
        .iter()
        .filter(|m| m.status == "active")
        .map(|m| m.id.to_string())
        .collect()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Files below `dir`, at any depth (objects in the S3 server's folder).
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

mod deletion;
mod exports;
mod lists;
mod search;
mod tenancy;
