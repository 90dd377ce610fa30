//! Faults: a store down while a request runs, two replicas confirming at once, a replica killed
//! (SIGKILL) in the middle of an erasure and of an archive.

use std::process::Child;

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_makes_the_erasure_wait_never_succeed_early() {
    let mut world = World::start().await;
    let people = world.seed_people().await;
    let filed = world
        .file(
            json!({"type": "erasure", "subject": {"kind": "end_user", "external_ids": [PERSON_1]}}),
        )
        .await;
    let id = filed["id"].as_str().unwrap().to_owned();
    world.wait_for(&id, "awaiting_confirmation").await;
    world.s3.stop();
    world.confirm(&id).await;
    // It waits on the store, saying so; it does not succeed while the store is away.
    let deadline = Deadline::after(Duration::from_secs(30));
    let waiting = loop {
        let request = world.get(&id).await;
        assert_eq!(request["status"], "running", "{request:#}");
        let waiting = request["progress"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, p)| p["status"] == "waiting")
            .map(|(store, p)| (store.clone(), p.clone()));
        if let Some(waiting) = waiting {
            break waiting;
        }
        deadline
            .tick(format!("no store shown waiting: {request:#}"))
            .await;
    };
    assert!(
        ["memory_exports", "session_archives"].contains(&waiting.0.as_str()),
        "{waiting:?}"
    );
    assert!(waiting.1["last_error"].is_string());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.get(&id).await["status"], "running");
    // The store comes back: the erasure finishes, everything of person-1 gone.
    world.s3.restart().unwrap();
    let done = world
        .wait_for_within(&id, "succeeded", Duration::from_secs(60))
        .await;
    for (store, progress) in done["progress"].as_object().unwrap() {
        assert_eq!(progress["remaining"], 0, "{store}");
        assert!(progress["last_error"].is_null(), "{store}");
    }
    let key = format!(
        "{}/{}/{}/{}.ndjson",
        world.org, people.agent_a, people.sessions_1[0], people.sessions_1[0]
    );
    assert!(!world.object_exists("ibex-archives", &key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_makes_the_erasure_wait() {
    let mut clickhouse = TempClickHouse::start().unwrap();
    create_table(&clickhouse.url()).await;
    let url = clickhouse.url();
    let world = World::start_with(&[("IBEX_API_CLICKHOUSE_URL", &url)]).await;
    let agent = world.app.db.add_agent(world.org).await;
    let session = Uuid::now_v7();
    let mut admin = world.admin().await;
    let sql = "INSERT INTO ibex_core.sessions (id, org_id, agent_id, external_id)
               VALUES ($1, $2, $3, 'p')";
    run_sql!(&mut admin, sql, session, world.org, agent);
    insert_json(
        &url,
        &[json!({"request_id": "r1", "org_id": world.org.to_string(), "agent_id": agent.to_string(),
            "session_id": session.to_string(), "model": "m", "provider": "p", "input_tokens": 1,
            "output_tokens": 1, "total_tokens": 2, "proxy_overhead_ms": 1.0, "ttfb_ms": 1.0,
            "total_latency_ms": 1.0, "status_code": 200, "error_code": "",
            "requested_at": chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()})],
    )
    .await;
    let filed = world
        .file(json!({"type": "erasure", "subject": {"kind": "end_user", "external_ids": ["p"]}}))
        .await;
    let id = filed["id"].as_str().unwrap().to_owned();
    let planned = world.wait_for(&id, "awaiting_confirmation").await;
    assert_eq!(planned["plan"]["llm_traces"], 1);
    clickhouse.stop();
    world.confirm(&id).await;
    let deadline = Deadline::after(Duration::from_secs(30));
    loop {
        let request = world.get(&id).await;
        assert_eq!(request["status"], "running", "{request:#}");
        if request["progress"]["llm_traces"]["status"] == "waiting" {
            break;
        }
        deadline
            .tick(format!("ClickHouse not shown waiting: {request:#}"))
            .await;
    }
    clickhouse.restart().unwrap();
    world
        .wait_for_within(&id, "succeeded", Duration::from_secs(60))
        .await;
    let client = clickhouse::Client::default()
        .with_url(&url)
        .with_validation(false);
    let left: u64 = client
        .query("SELECT count() FROM ibex.llm_traces WHERE org_id = ?")
        .bind(world.org.to_string())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// A replica's process, killed when dropped (a failing test leaves none behind).
struct Replica(Child);

impl Replica {
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }

    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary as a replica of the world's service: same database, stores and auth.
fn replica(world: &World) -> (Replica, std::net::SocketAddr) {
    let (mut command, addr) = app_process(world.auth.addr, &world.app.db.url);
    for (name, value) in s3_settings(&world.s3) {
        command.env(name, value);
    }
    command
        .env("IBEX_API_CLICKHOUSE_URL", clickhouse().url())
        .env("IBEX_API_REDIS_URL", redis_url())
        .env("IBEX_API_DATA_REQUEST_LEASE_MS", "3000")
        .env("IBEX_API_DATA_REQUEST_RETRY_MAX_MS", "500")
        .env("IBEX_API_GDPR_BATCH_SIZE", "3");
    (Replica(command.spawn().unwrap()), addr)
}

async fn up(addr: std::net::SocketAddr) {
    let deadline = Deadline::after(Duration::from_secs(15)).every(Duration::from_millis(50));
    while tokio::net::TcpStream::connect(addr).await.is_err()
        || request(addr, "GET", "/health", &[], b"").await.status != 200
    {
        deadline.tick("the replica did not come up").await;
    }
}

/// `n` sessions of one person (by id), each with two checkpoints and a memory.
async fn many_sessions(world: &World, n: usize) -> Vec<Uuid> {
    let agent = world.app.db.add_agent(world.org).await;
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let mut admin = world.admin().await;
    let sql = "INSERT INTO ibex_core.sessions (id, org_id, agent_id) SELECT id, $2, $3
               FROM unnest($1::uuid[]) id";
    run_sql!(&mut admin, sql, &ids, world.org, agent);
    let sql = "INSERT INTO ibex_core.checkpoints (id, org_id, session_id, turn_index)
         SELECT gen_random_uuid(), $2, id, t FROM unnest($1::uuid[]) id, generate_series(0, 1) t";
    run_sql!(&mut admin, sql, &ids, world.org);
    let sql = "INSERT INTO ibex_core.memories (id, org_id, agent_id, session_id, content,
               content_hash, category)
         SELECT gen_random_uuid(), $2, $3, id, 'fact', repeat('b', 64), 'factual' FROM unnest($1::uuid[]) id";
    run_sql!(&mut admin, sql, &ids, world.org, agent);
    ids
}

async fn progress(admin: &mut sqlx::PgConnection, id: Uuid) -> Value {
    admin
        .value(
            "SELECT progress FROM ibex_core.data_requests WHERE id = $1",
            id,
        )
        .await
}

/// Erasure events per erased memory in the outbox (one each when nothing ran twice).
async fn erasure_events_per_memory(world: &World) -> Vec<i64> {
    let mut admin = world.admin().await;
    sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.outbox o, unnest(o.zrem_members) m
         WHERE o.org_id = $1 AND o.payload::jsonb ->> 'reason' = 'erasure' GROUP BY m",
    )
    .bind(world.org)
    .fetch_all(&mut admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_confirming_at_once_run_the_erasure_once() {
    let world = World::start().await;
    let sessions = many_sessions(&world, 200).await;
    let (mut other, other_addr) = replica(&world);
    up(other_addr).await;
    let filed = world
        .file(json!({"type": "erasure", "subject": {"kind": "end_user", "session_ids": sessions}}))
        .await;
    let id = filed["id"].as_str().unwrap().to_owned();
    world.wait_for(&id, "awaiting_confirmation").await;
    // Both replicas are asked to confirm at the same moment: one wins, the other is told.
    let path = format!("{REQUESTS}/{id}/confirm");
    let auth_header = format!("Bearer {}", world.token);
    let headers = [
        ("Authorization", auth_header.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (a, b) = tokio::join!(
        request(world.app.addr, "POST", &path, &headers, b"{}"),
        request(other_addr, "POST", &path, &headers, b"{}"),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text(), b.text());
    let done = world
        .wait_for_within(&id, "succeeded", Duration::from_secs(120))
        .await;
    assert_eq!(done["progress"]["sessions"]["items_done"], 200);
    let events = erasure_events_per_memory(&world).await;
    assert_eq!(events.len(), 200, "every memory's erasure announced");
    assert!(
        events.iter().all(|n| *n == 1),
        "announced twice: nothing may run twice"
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM ibex_core.checkpoints WHERE org_id = $1")
            .await,
        0
    );
    other.kill().unwrap();
    other.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_erasure_and_mid_archive_resumes_to_the_same_result() {
    // Only replicas in child processes work here: the world's own replica runs no worker.
    let world = World::start_with(&[("IBEX_API_DATA_REQUEST_WORKER", "0")]).await;
    let sessions = many_sessions(&world, 600).await;
    let mut admin = world.admin().await;
    let (mut first, addr) = replica(&world);
    up(addr).await;
    let filed = world
        .file(json!({"type": "erasure", "subject": {"kind": "end_user", "session_ids": sessions}}))
        .await;
    let id: Uuid = filed["id"].as_str().unwrap().parse().unwrap();
    world
        .wait_for(&id.to_string(), "awaiting_confirmation")
        .await;
    let auth_header = format!("Bearer {}", world.token);
    let confirmed = request(
        addr,
        "POST",
        &format!("{REQUESTS}/{id}/confirm"),
        &[
            ("Authorization", &auth_header),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    // Kill it once some, not all, of the work is done.
    let deadline = Deadline::after(Duration::from_secs(60)).every(Duration::from_millis(10));
    loop {
        let p = progress(&mut admin, id).await;
        let done: i64 = p
            .as_object()
            .unwrap()
            .values()
            .map(|s| s["items_done"].as_i64().unwrap_or(0))
            .sum();
        if done > 50 {
            break;
        }
        deadline.tick(format!("no progress: {p:#}")).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let status: String = admin
        .value(
            "SELECT status FROM ibex_core.data_requests WHERE id = $1",
            id,
        )
        .await;
    assert_eq!(status, "running", "killed in the middle");
    // Its lease runs out; the next replica takes over and finishes.
    admin
        .run(
            "UPDATE ibex_core.data_requests SET lease_until = now() WHERE id = $1",
            id,
        )
        .await;
    let (mut second, addr) = replica(&world);
    up(addr).await;
    let deadline = Deadline::after(Duration::from_secs(120));
    loop {
        let status: String = admin
            .value(
                "SELECT status FROM ibex_core.data_requests WHERE id = $1",
                id,
            )
            .await;
        if status == "succeeded" {
            break;
        }
        deadline.tick("the erasure did not resume").await;
    }
    let p = progress(&mut admin, id).await;
    for (store, progress) in p.as_object().unwrap() {
        assert_eq!(progress["remaining"], 0, "{store}");
        assert_eq!(progress["items_done"], progress["items_total"], "{store}");
    }
    assert_eq!(p["sessions"]["items_total"], 600);
    let events = erasure_events_per_memory(&world).await;
    assert_eq!(events.len(), 600);
    assert!(events.iter().all(|n| *n == 1), "nothing announced twice");
    for table in ["sessions", "checkpoints", "memories"] {
        assert_eq!(
            world
                .count(&format!(
                    "SELECT count(*) FROM ibex_core.{table} WHERE org_id = $1"
                ))
                .await,
            0,
            "{table}"
        );
    }

    // An organization's access archive, killed while being written, is written whole by the next.
    let access = request(
        addr,
        "POST",
        REQUESTS,
        &[
            ("Authorization", &auth_header),
            ("Content-Type", "application/json"),
        ],
        br#"{"type":"access","subject":{"kind":"organization"}}"#,
    )
    .await;
    assert_eq!(access.status, 202, "{}", access.text());
    let access_id: Uuid = access.json()["id"].as_str().unwrap().parse().unwrap();
    // Killed as soon as it runs.
    let deadline = Deadline::after(Duration::from_secs(30)).every(Duration::from_millis(5));
    loop {
        let status: String = admin
            .value(
                "SELECT status FROM ibex_core.data_requests WHERE id = $1",
                access_id,
            )
            .await;
        if status == "running" || status == "succeeded" {
            break;
        }
        deadline.tick("the access request did not start").await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let sql = "UPDATE ibex_core.data_requests SET lease_until = now()
               WHERE id = $1 AND status = 'running'";
    admin.run(sql, access_id).await;
    let (mut third, _) = replica(&world);
    let done = world
        .wait_for_within(&access_id.to_string(), "succeeded", Duration::from_secs(60))
        .await;
    let zip = world.archive(&access_id.to_string()).await;
    assert_eq!(done["archive"]["sha256"], sha256_hex(&zip));
    let files = unzip(&zip);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        assert_eq!(
            file["sha256"],
            sha256_hex(&files[file["path"].as_str().unwrap()]),
            "{file}"
        );
    }
    third.kill().unwrap();
    third.wait().unwrap();
}
