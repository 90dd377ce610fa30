//! Data requests at scale (issue 29): an organization with 100 000 memories and 10 000 sessions.
//! Its whole access archive, with the resident memory of the serving process sampled throughout,
//! and the erasure of one end user named by 1 000 sessions; beside a baseline run in the same
//! session on the same data: the memory export of one agent (10 000 memories), the service's
//! existing streamed job. A benchmark, never a test.
//!
//! ```sh
//! cargo build --release && cargo run --release --example data_requests_bench
//! cargo run --release --example data_requests_bench -- 20000 2000 200   # a quicker look
//! ```
//!
//! Everything real on loopback: a throwaway PostgreSQL, the S3 server (signatures checked),
//! ClickHouse, Redis, the development auth service, and the release binary as its own process (its RSS
//! is read from /proc, as a kubelet would see it). Prints a Markdown table for BENCHMARKS.md.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ibex_api::auth::dev::DEV_ORG_ID;
use ibex_api::devenv::clickhouse::TempClickHouse;
use ibex_api::devenv::postgres::TempPostgres;
use ibex_api::devenv::redis::TempRedis;
use ibex_api::devenv::s3::TempS3;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const AGENTS: usize = 10;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seeds the development organization with `sessions` sessions (external id `person-{i}`, two
/// checkpoints each), `memories` memories spread over them (a tag each, one version each), an
/// archive object for each of the first `archived` sessions, and two traces a session.
async fn seed(
    url: &str,
    s3: &TempS3,
    clickhouse: &str,
    memories: usize,
    sessions: usize,
    archived: usize,
) -> Vec<Uuid> {
    ibex_api::devenv::seed(url).await.unwrap();
    let mut conn = PgConnection::connect(url).await.unwrap();
    let agents: Vec<Uuid> = (0..AGENTS).map(|_| Uuid::now_v7()).collect();
    for (n, agent) in agents.iter().enumerate() {
        sqlx::query(
            "INSERT INTO ibex_core.agents (id, org_id, name, slug) VALUES ($1, $2, 'bench', $3)",
        )
        .bind(agent)
        .bind(DEV_ORG_ID)
        .bind(format!("bench-{n}"))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let session_ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO ibex_core.sessions (id, org_id, agent_id, external_id, status, turn_count, model, provider)
         SELECT gen_random_uuid(), $1, ($2::uuid[])[1 + i % cardinality($2::uuid[])], 'person-' || i,
                'completed', 2, 'gpt-4o-mini', 'openai'
         FROM generate_series(0, $3 - 1) AS i
         RETURNING id",
    )
    .bind(DEV_ORG_ID)
    .bind(&agents)
    .bind(sessions as i32)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ibex_core.checkpoints (id, org_id, session_id, turn_index, model, provider, input_tokens, output_tokens)
         SELECT gen_random_uuid(), $1, s.id, t, 'gpt-4o-mini', 'openai', 420, 180
         FROM ibex_core.sessions s, generate_series(0, 1) AS t WHERE s.org_id = $1 AND s.external_id LIKE 'person-%'",
    )
    .bind(DEV_ORG_ID)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "WITH s AS (SELECT id, agent_id, row_number() OVER (ORDER BY id) - 1 AS n
                    FROM ibex_core.sessions WHERE org_id = $1 AND external_id LIKE 'person-%'),
              m AS (
                 INSERT INTO ibex_core.memories (id, org_id, agent_id, session_id, content, content_hash, category, created_at)
                 SELECT ibex_core.uuid_v7(), $1, s.agent_id, s.id,
                        'The person said something worth remembering, number ' || i || '.',
                        md5(i::text) || md5(i::text), 'preference', now() - make_interval(secs => i)
                 FROM generate_series(0, $2 - 1) AS i JOIN s ON s.n = i % $3
                 RETURNING id),
              t AS (INSERT INTO ibex_core.memory_tags (memory_id, org_id, tag) SELECT id, $1, 'customer' FROM m)
         INSERT INTO ibex_core.memory_versions (id, memory_id, org_id, operation)
         SELECT ibex_core.uuid_v7(), id, $1, 'create' FROM m",
    )
    .bind(DEV_ORG_ID)
    .bind(memories as i32)
    .bind(sessions as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE ibex_core.agents a SET total_memories = (SELECT count(*) FROM ibex_core.memories m WHERE m.agent_id = a.id)
         WHERE a.org_id = $1",
    )
    .bind(DEV_ORG_ID)
    .execute(&mut conn)
    .await
    .unwrap();
    let archived_sessions: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, agent_id FROM ibex_core.sessions WHERE org_id = $1 AND external_id LIKE 'person-%' ORDER BY id LIMIT $2",
    )
    .bind(DEV_ORG_ID)
    .bind(archived as i64)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for (session, agent) in &archived_sessions {
        let key = ibex_api::domains::sessions::repo::archive_key(DEV_ORG_ID, *agent, *session);
        let path = s3.root().join("ibex-archives").join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let turns: String = (0..2)
            .map(|t| format!("{{\"turn_index\":{t},\"request\":\"Hello, I need help with my order.\",\"response\":\"Of course, which order?\"}}\n"))
            .collect();
        std::fs::write(path, turns).unwrap();
    }
    // Two traces a session, inserted by ClickHouse itself from the sessions' ids.
    let ids: Vec<String> = session_ids.iter().map(Uuid::to_string).collect();
    let client = reqwest::Client::new();
    for chunk in ids.chunks(2000) {
        let mut body = String::new();
        for id in chunk {
            for turn in 0..2 {
                body.push_str(
                    &json!({"request_id": format!("{id}-{turn}"), "org_id": DEV_ORG_ID.to_string(),
                        "agent_id": agents[0].to_string(), "session_id": id, "model": "gpt-4o-mini",
                        "provider": "openai", "input_tokens": 420, "output_tokens": 180,
                        "total_tokens": 600, "proxy_overhead_ms": 1.5, "ttfb_ms": 200.0,
                        "total_latency_ms": 900.0, "status_code": 200, "error_code": "",
                        "requested_at": chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()})
                    .to_string(),
                );
                body.push('\n');
            }
        }
        let url = format!(
            "{clickhouse}/?query={}",
            urlencode("INSERT INTO ibex.llm_traces FORMAT JSONEachRow")
        );
        let answer = client.post(url).body(body).send().await.unwrap();
        assert!(
            answer.status().is_success(),
            "{}",
            answer.text().await.unwrap()
        );
    }
    let _ = conn.close().await;
    agents
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Samples the process's RSS every 50 ms into `peak` until `stop`.
fn sampler(pid: u32, peak: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// Polls `path` until `field` is one of `values`; the last body.
    async fn until(&self, path: &str, field: &str, values: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (_, body) = self.call(reqwest::Method::GET, path, None).await;
            if values.iter().any(|v| body[field] == *v) {
                return body;
            }
            assert!(
                body[field] != "rejected" && body[field] != "failed",
                "{body}"
            );
            assert!(
                Instant::now() < deadline,
                "{path} not {values:?} in 10 minutes: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let memories = args.first().copied().unwrap_or(100_000);
    let sessions = args.get(1).copied().unwrap_or(10_000);
    let erased = args.get(2).copied().unwrap_or(1_000);
    let binary =
        std::fs::canonicalize("target/release/ibex-api").expect("cargo build --release first");

    eprintln!("bench: starting PostgreSQL, ClickHouse, the S3 server, the auth service");
    let pg = TempPostgres::start().unwrap();
    let db_url = pg.url("postgres");
    assert!(
        Command::new(&binary)
            .arg("migrate")
            .env("IBEX_API_DATABASE_URL", &db_url)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let clickhouse = TempClickHouse::start().unwrap();
    let ch = reqwest::Client::new();
    for ddl in ibex_api::devenv::clickhouse::TRACES_DDL {
        ch.post(clickhouse.url()).body(*ddl).send().await.unwrap();
    }
    let s3 = TempS3::start().unwrap();
    // The erasure clears the proxy's hot cache through the outbox: it ends once Redis has it.
    let redis = TempRedis::start().unwrap();
    let token = ibex_api::auth::dev::generate_token();
    let auth_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let auth_addr: std::net::SocketAddr = format!("127.0.0.1:{auth_port}").parse().unwrap();
    ibex_api::auth::dev::spawn(auth_addr, token.clone())
        .await
        .unwrap();

    eprintln!("bench: seeding {memories} memories over {sessions} sessions");
    let seeded = Instant::now();
    let agents = seed(&db_url, &s3, &clickhouse.url(), memories, sessions, erased).await;
    eprintln!("bench: seeded in {:.1} s", seeded.elapsed().as_secs_f64());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(&binary);
    command
        .env_clear()
        .env("IBEX_API_HOST", "127.0.0.1")
        .env("IBEX_API_PORT", port.to_string())
        .env("IBEX_API_AUTH_GRPC_ADDR", format!("http://{auth_addr}"))
        .env("IBEX_API_DATABASE_URL", &db_url)
        .env("IBEX_API_REDIS_URL", redis.url())
        .env("IBEX_API_CLICKHOUSE_URL", clickhouse.url())
        .env("IBEX_API_METRICS_ADDR", "")
        .env("IBEX_API_LOG_LEVEL", "warn")
        .env("IBEX_API_MAX_BODY_BYTES", "1048576")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create("target/data_requests_bench.log").unwrap());
    for (name, value) in s3.settings() {
        command.env(name, value);
    }
    let server = Server(command.spawn().unwrap());
    let pid = server.0.id();
    let api = Api {
        client: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
        token,
    };
    while api
        .client
        .get(format!("{}/ready", api.base))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
        != Some(200)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("bench: the service is ready");
    // Warm up: the seeded data request, a few reads.
    api.until(
        "/v1/data-requests/0192f0c4-5d7e-7c3a-9f1e-da7a00000001",
        "status",
        &["succeeded"],
    )
    .await;
    for _ in 0..20 {
        api.call(reqwest::Method::GET, "/v1/data-requests", None)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid);

    // Baseline: the memory export of one agent (its memories, streamed to the object store).
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watch = sampler(pid, Arc::clone(&peak), Arc::clone(&stop));
    let started = Instant::now();
    let (_, job) = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/agents/{}/memories/export", agents[0]),
            Some(json!({"format": "json"})),
        )
        .await;
    let job_path = format!(
        "/v1/agents/{}/memories/export/{}",
        agents[0],
        job["job_id"].as_str().unwrap()
    );
    let job = api.until(&job_path, "status", &["succeeded"]).await;
    let export_secs = started.elapsed().as_secs_f64();
    let export_rows = job["row_count"].as_i64().unwrap();
    stop.store(true, Ordering::Relaxed);
    watch.join().unwrap();
    let export_peak = peak.load(Ordering::Relaxed);

    // The organization's access archive.
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watch = sampler(pid, Arc::clone(&peak), Arc::clone(&stop));
    let started = Instant::now();
    let (status, filed) = api
        .call(
            reqwest::Method::POST,
            "/v1/data-requests",
            Some(json!({"type": "access", "subject": {"kind": "organization"}})),
        )
        .await;
    assert_eq!(status, 202, "{filed}");
    let path = format!("/v1/data-requests/{}", filed["id"].as_str().unwrap());
    let done = api.until(&path, "status", &["succeeded"]).await;
    let archive_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    watch.join().unwrap();
    let archive_peak = peak.load(Ordering::Relaxed);
    let archive_bytes = done["archive"]["bytes"].as_i64().unwrap();
    let rows: i64 = done["plan"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_i64)
        .sum();

    // One person named by `erased` sessions: planned, then erased.
    let mut conn = PgConnection::connect(&db_url).await.unwrap();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ibex_core.sessions WHERE org_id = $1 AND external_id LIKE 'person-%' ORDER BY id LIMIT $2",
    )
    .bind(DEV_ORG_ID)
    .bind(erased as i64)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let started = Instant::now();
    let (status, filed) = api
        .call(
            reqwest::Method::POST,
            "/v1/data-requests",
            Some(json!({"type": "erasure", "subject": {"kind": "end_user", "session_ids": ids}})),
        )
        .await;
    assert_eq!(status, 202, "{filed}");
    let path = format!("/v1/data-requests/{}", filed["id"].as_str().unwrap());
    let planned = api.until(&path, "status", &["awaiting_confirmation"]).await;
    let plan_secs = started.elapsed().as_secs_f64();
    let confirmed = Instant::now();
    let (status, _) = api
        .call(reqwest::Method::POST, &format!("{path}/confirm"), None)
        .await;
    assert_eq!(status, 200);
    let erasure = api.until(&path, "status", &["succeeded"]).await;
    let erase_secs = confirmed.elapsed().as_secs_f64();
    let items: i64 = planned["plan"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_i64)
        .sum();
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ibex_core.sessions WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(left, 0);

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("| Measure | Value | Ratio to the baseline |");
    println!("|---|---|---|");
    println!(
        "| Data | {memories} memories, {sessions} sessions ({} checkpoints), {erased} archive objects, {} traces | |",
        sessions * 2,
        sessions * 2
    );
    println!(
        "| Baseline: memory export of one agent | {export_rows} rows in {export_secs:.2} s ({:.0} rows/s), peak RSS {:.1} MiB (+{:.1} MiB) | 1 |",
        export_rows as f64 / export_secs,
        mib(export_peak),
        mib(export_peak.saturating_sub(idle))
    );
    println!(
        "| Organization access archive | {rows} rows and objects in {archive_secs:.2} s ({:.0}/s), ZIP {:.1} MiB | {:.2}x the export's rows per second |",
        rows as f64 / archive_secs,
        archive_bytes as f64 / 1048576.0,
        (rows as f64 / archive_secs) / (export_rows as f64 / export_secs)
    );
    println!(
        "| RSS while writing it | idle {:.1} MiB, peak {:.1} MiB: growth {:.1} MiB (target < 64) | {:.2}x the export's growth |",
        mib(idle),
        mib(archive_peak),
        mib(archive_peak.saturating_sub(idle)),
        mib(archive_peak.saturating_sub(idle)) / mib(export_peak.saturating_sub(idle)).max(0.1)
    );
    println!(
        "| End-user erasure: planning | {} sessions, {items} items frozen in {plan_secs:.2} s | |",
        ids.len()
    );
    println!(
        "| End-user erasure: confirm to succeeded | {erase_secs:.2} s ({:.0} items/s), every store 0 remaining | {:.2}x the export's rows per second |",
        items as f64 / erase_secs,
        (items as f64 / erase_secs) / (export_rows as f64 / export_secs)
    );
    let stores: Vec<String> = erasure["progress"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(s, p)| format!("{s} {}", p["items_done"]))
        .collect();
    println!("\nerased per store: {}", stores.join(", "));
    drop(server);
    drop(pg);
}
