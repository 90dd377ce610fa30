//! The chaos soak: three `ibex-api` replicas on one throwaway PostgreSQL, Redis, ClickHouse and
//! S3 server, with the auth stand-in, under an open-loop request mix of several organizations,
//! while replicas are killed and rolled and the servers behind them restart. At the end it checks
//! the service's promises against the databases, the object store and the event stream, writes a
//! report (`results.md`), a per-second timeline (`timeline.csv`), every request (`requests.csv`)
//! and a plot (`soak.png`), and exits non-zero when any promise was broken.
//!
//! `scripts/soak --minutes 10` runs it (building the release binaries first); CI runs the short
//! form (`--seconds 60 --faults short`).
//!
//! `soak [--seconds N | --minutes N] [--rate R] [--faults all|short] [--out DIR] [--binary PATH]`

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ibex_api::auth::dev::token_with_id;
use ibex_api::devenv::clickhouse::{self as ch, TempClickHouse};
use ibex_api::devenv::postgres::TempPostgres;
use ibex_api::devenv::redis::TempRedis;
use ibex_api::devenv::s3::TempS3;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

const REPLICAS: usize = 3;
/// The development organization (sessions with archives: replays) first, then seeded tenants;
/// the last one is deleted during the run.
const ORGS: usize = 4;
const AGENTS_PER_ORG: usize = 6;
const MEMORIES_PER_AGENT: usize = 300;
/// People each seeded tenant's agents talk to (a session, two checkpoints and a memory each):
/// the subjects of the mix's data requests.
const PERSONS: usize = 30;
/// The pool of each replica (and the 3 platform connections each adds).
const POOL: usize = 8;
/// The memory service stand-in's pool (it runs in this process, on the same PostgreSQL).
const STAND_IN_POOL: usize = 2;
/// Codes a 503 may carry (README's error table).
const UNAVAILABLE_CODES: &[&str] = &[
    "AUTH_UNAVAILABLE",
    "SERVICE_UNAVAILABLE",
    "ANALYTICS_UNAVAILABLE",
    "MEMORY_SERVICE_UNAVAILABLE",
];

// ---------------------------------------------------------------------------------------------
// Command line

struct Args {
    seconds: u64,
    rate: f64,
    short: bool,
    out: PathBuf,
    binary: PathBuf,
}

fn args() -> Args {
    let mut args = Args {
        seconds: 600,
        rate: 300.0,
        short: false,
        out: PathBuf::from("soak-results"),
        binary: PathBuf::from("target/release/ibex-api"),
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < raw.len() {
        let value = raw.get(i + 1).cloned().unwrap_or_default();
        match raw[i].as_str() {
            "--seconds" => args.seconds = value.parse().expect("--seconds N"),
            "--minutes" => args.seconds = value.parse::<u64>().expect("--minutes N") * 60,
            "--rate" => args.rate = value.parse().expect("--rate R"),
            "--faults" => args.short = value == "short",
            "--out" => args.out = PathBuf::from(value),
            "--binary" => args.binary = PathBuf::from(value),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    args
}

// ---------------------------------------------------------------------------------------------
// What the load knows and records

struct Org {
    id: Uuid,
    /// Archived sessions (replayable); only the development organization has them.
    sessions: Vec<Uuid>,
    owner: Uuid,
    token: String,
    agents: Vec<Uuid>,
    /// Its GDPR deletion was requested: no more load.
    deleted: AtomicBool,
}

#[derive(Clone)]
struct Record {
    /// Seconds from the start of the load at which the request was due.
    due: f64,
    latency_ms: f64,
    /// 0: no answer (connection refused or reset).
    status: u16,
    op: &'static str,
    org: usize,
    /// Which replica answered (or failed to).
    replica: usize,
}

struct Shared {
    out: PathBuf,
    orgs: Vec<Org>,
    ports: Vec<u16>,
    /// Which replicas the "load balancer" sends to (a killed or draining one is taken out, as
    /// Kubernetes takes an unready pod out of its Service).
    routable: Vec<AtomicBool>,
    next: AtomicUsize,
    start: Instant,
    client: reqwest::Client,
    records: Mutex<Vec<Record>>,
    violations: Mutex<Vec<String>>,
    created_agents: Mutex<Vec<(usize, Uuid)>>,
    exports: Mutex<Vec<(usize, Uuid, Uuid)>>,
    /// Data requests filed (answered 202): (organization, request id, erasure?, person).
    data_requests: Mutex<Vec<(usize, Uuid, bool, String)>>,
    /// Requests in flight on each replica when it was sent SIGTERM must all be answered.
    in_flight: Vec<AtomicUsize>,
    /// (due, ms late) of every request the generator started: the harness's own health (a
    /// stalled generator fires its overdue requests in one burst), not the service's.
    lags: Mutex<Vec<(f64, f64)>>,
    /// (organization, agent id) for every agent id an answer carried.
    seen_agents: Mutex<HashSet<(usize, String)>>,
}

impl Shared {
    fn violation(&self, what: String) {
        let mut v = self.violations.lock().unwrap();
        if v.len() < 200 {
            v.push(what);
        }
    }

    fn pick_replica(&self) -> usize {
        for _ in 0..REPLICAS * 2 {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % REPLICAS;
            if self.routable[i].load(Ordering::Relaxed) {
                return i;
            }
        }
        0
    }

    /// One request through the "load balancer", every answer checked against the envelope,
    /// request-id and tenancy rules; the body when it was JSON.
    async fn call(
        &self,
        org: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        op: &'static str,
        due: f64,
    ) -> Option<(u16, Value)> {
        let replica = self.pick_replica();
        let url = format!("http://127.0.0.1:{}{path}", self.ports[replica]);
        let mut request = self
            .client
            .request(method, &url)
            .bearer_auth(&self.orgs[org].token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.in_flight[replica].fetch_add(1, Ordering::Relaxed);
        let answer = request.send().await;
        let (status, headers, bytes) = match answer {
            Ok(reply) => {
                let status = reply.status().as_u16();
                let headers = reply.headers().clone();
                match reply.bytes().await {
                    Ok(bytes) => (status, headers, bytes),
                    Err(_) => (0, headers, Default::default()),
                }
            }
            Err(_) => (0, Default::default(), Default::default()),
        };
        self.in_flight[replica].fetch_sub(1, Ordering::Relaxed);
        let latency_ms = (self.start.elapsed().as_secs_f64() - due) * 1000.0;
        self.records.lock().unwrap().push(Record {
            due,
            latency_ms,
            status,
            op,
            org,
            replica,
        });
        if status == 0 {
            return None;
        }
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if request_id.is_empty() {
            self.violation(format!("{op}: {status} without X-Request-ID"));
        }
        if status == 500 {
            self.violation(format!("{op}: 500 ({request_id})"));
        }
        if status >= 400 {
            let error = &value["error"];
            let code = error["code"].as_str().unwrap_or("");
            if code.is_empty()
                || !code.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                || error["message"].as_str().is_none()
                || error["request_id"].as_str() != Some(request_id)
            {
                self.violation(format!("{op}: {status} without the envelope: {value}"));
            }
            if status == 503
                && (headers.get("retry-after").is_none() || !UNAVAILABLE_CODES.contains(&code))
            {
                self.violation(format!(
                    "{op}: 503 {code} without Retry-After or unknown code"
                ));
            }
        }
        let own = self.orgs[org].id.to_string();
        let mut foreign = Vec::new();
        strings_named(&value, "org_id", &mut foreign);
        if let Some(other) = foreign.iter().find(|id| **id != own) {
            self.violation(format!("{op}: org {own} saw a row of org {other}"));
        }
        // Rows without an org_id (memories, sessions, directives, exports) name their agent;
        // whose agent it is, PostgreSQL tells at the end. Analytics answers are left out: they
        // are traces, whose agent ids need not be agents of the database.
        if !op.starts_with("analytics") {
            let mut agents = Vec::new();
            strings_named(&value, "agent_id", &mut agents);
            if !agents.is_empty() {
                let mut seen = self.seen_agents.lock().unwrap();
                seen.extend(agents.into_iter().map(|agent| (org, agent)));
            }
        }
        Some((status, value))
    }
}

/// Every string under `name` anywhere in an answer.
fn strings_named(value: &Value, name: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == name {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_owned());
                    }
                } else {
                    strings_named(v, name, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_named(v, name, out)),
        _ => {}
    }
}

/// One request of the mix: ~70% reads across every domain, the rest writes.
async fn one_request(sh: Arc<Shared>, due: f64) {
    use reqwest::Method as M;
    let lag_ms = (sh.start.elapsed().as_secs_f64() - due) * 1000.0;
    sh.lags.lock().unwrap().push((due, lag_ms));
    let live: Vec<usize> = (0..ORGS)
        .filter(|&o| !sh.orgs[o].deleted.load(Ordering::Relaxed))
        .collect();
    let org = live[fastrand::usize(..live.len())];
    let o = &sh.orgs[org];
    let agent = o.agents[fastrand::usize(..o.agents.len())];
    let roll = fastrand::u32(..100);
    let s = &sh;
    // The plain reads: one GET each, by weight.
    let day = |days_ago: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days_ago))
            .format("%Y-%m-%dT00:00:00Z")
            .to_string()
    };
    let read: Option<(&'static str, String)> = match roll {
        0..=8 => Some(("list agents", "/v1/agents?limit=20".into())),
        10..20 => Some(("get agent", format!("/v1/agents/{agent}"))),
        20..26 => Some((
            "list memories",
            format!("/v1/agents/{agent}/memories?limit=20"),
        )),
        30..35 => Some(("get directive", format!("/v1/agents/{agent}/directive"))),
        35..40 => Some(("list users", "/v1/users".into())),
        40..45 => Some(("get organization", format!("/v1/organizations/{}", o.id))),
        45..50 => Some(("list sessions", "/v1/sessions".into())),
        50..55 => Some(("list audit events", "/v1/audit-events".into())),
        55..60 => Some((
            "analytics usage",
            format!(
                "/v1/analytics/usage?start={}&end={}&granularity=day",
                day(30),
                day(0)
            ),
        )),
        60..62 => Some(("list tokens", "/v1/tokens".into())),
        67..70 => Some((
            "list directive versions",
            format!("/v1/agents/{agent}/directive/versions"),
        )),
        98.. => Some((
            "analytics latency",
            format!(
                "/v1/analytics/latency?start={}&end={}&granularity=day&percentile=99",
                day(7),
                day(0)
            ),
        )),
        _ => None,
    };
    if let Some((op, path)) = read {
        s.call(org, M::GET, &path, None, op, due).await;
        return;
    }
    match roll {
        26..28 => {
            let path = format!("/v1/agents/{agent}/memories/search");
            let body = json!({"query": "memory", "limit": 5});
            s.call(org, M::POST, &path, Some(body), "search memories", due)
                .await;
        }
        28..30 => {
            // A replay link, then the archive itself from the object store.
            let Some(&session) =
                (!o.sessions.is_empty()).then(|| &o.sessions[fastrand::usize(..o.sessions.len())])
            else {
                return;
            };
            let path = format!("/v1/sessions/{session}/replay");
            if let Some((200, body)) = s
                .call(org, M::GET, &path, None, "replay session", due)
                .await
                && let Some(url) = body["url"].as_str()
            {
                let _ = s.client.get(url).send().await;
            }
        }
        63..67 => {
            let job = {
                let exports = s.exports.lock().unwrap();
                let mine: Vec<_> = exports.iter().filter(|(o, ..)| *o == org).collect();
                (!mine.is_empty()).then(|| *mine[fastrand::usize(..mine.len())])
            };
            if let Some((_, agent, job)) = job {
                let path = format!("/v1/agents/{agent}/memories/export/{job}");
                if let Some((200, body)) = s.call(org, M::GET, &path, None, "get export", due).await
                    && let Some(url) = body["download_url"].as_str()
                {
                    // The download itself goes to the object store, not the API.
                    let _ = s.client.get(url).send().await;
                }
            }
        }
        70..74 => {
            let slug = format!("soak-{}", Uuid::now_v7().simple());
            let body = json!({"name": "soak agent", "slug": slug});
            if let Some((201, created)) = s
                .call(org, M::POST, "/v1/agents", Some(body), "create agent", due)
                .await
                && let Some(id) = created["id"].as_str().and_then(|i| i.parse().ok())
            {
                s.created_agents.lock().unwrap().push((org, id));
            }
        }
        74..78 => {
            let body = json!({"name": format!("renamed {}", fastrand::u32(..))});
            s.call(
                org,
                M::PATCH,
                &format!("/v1/agents/{agent}"),
                Some(body),
                "update agent",
                due,
            )
            .await;
        }
        78..81 => {
            let verb = if fastrand::bool() {
                "pause"
            } else {
                "activate"
            };
            s.call(
                org,
                M::POST,
                &format!("/v1/agents/{agent}/{verb}"),
                None,
                "agent transition",
                due,
            )
            .await;
        }
        81..85 => {
            let body = json!({"content": format!("Be helpful ({}).", fastrand::u32(..))});
            s.call(
                org,
                M::POST,
                &format!("/v1/agents/{agent}/directive"),
                Some(body),
                "set directive",
                due,
            )
            .await;
        }
        85..87 => {
            s.call(
                org,
                M::POST,
                &format!("/v1/agents/{agent}/directive/rollback"),
                Some(json!({"version_num": 1})),
                "rollback directive",
                due,
            )
            .await;
        }
        87..89 => {
            let email = format!("{}@soak.example", Uuid::now_v7().simple());
            let body = json!({"email": email, "name": "Soak", "role": "member"});
            if let Some((201, user)) = s
                .call(org, M::POST, "/v1/users", Some(body), "create user", due)
                .await
                && let Some(id) = user["id"].as_str()
            {
                s.call(
                    org,
                    M::PATCH,
                    &format!("/v1/users/{id}"),
                    Some(json!({"name": "Soak renamed"})),
                    "update user",
                    due,
                )
                .await;
            }
        }
        89..91 => {
            let body = json!({"name": "soak", "permissions": ["memory:read"]});
            if let Some((201, token)) = s
                .call(org, M::POST, "/v1/tokens", Some(body), "create token", due)
                .await
                && let Some(id) = token["id"].as_str()
            {
                s.call(
                    org,
                    M::DELETE,
                    &format!("/v1/tokens/{id}"),
                    None,
                    "revoke token",
                    due,
                )
                .await;
            }
        }
        91..95 => {
            let path = format!("/v1/agents/{agent}/memories?limit=5");
            if let Some((200, page)) = s.call(org, M::GET, &path, None, "list memories", due).await
                && let Some(id) = page["items"]
                    .as_array()
                    .and_then(|items| items.last())
                    .and_then(|m| m["id"].as_str())
            {
                s.call(
                    org,
                    M::DELETE,
                    &format!("/v1/agents/{agent}/memories/{id}"),
                    None,
                    "delete memory",
                    due,
                )
                .await;
            }
        }
        95 => {
            let path = format!("/v1/agents/{agent}/memories?confirm=true&category=episodic");
            s.call(org, M::DELETE, &path, None, "bulk delete memories", due)
                .await;
        }
        62 if org > 0 => {
            // A person asks for their data, or its erasure.
            let erasure = fastrand::bool();
            let person = format!("person-{}", fastrand::usize(..PERSONS));
            let body = json!({
                "type": if erasure { "erasure" } else { "access" },
                "subject": {"kind": "end_user", "external_ids": [person]},
            });
            if let Some((202, filed)) = s
                .call(
                    org,
                    M::POST,
                    "/v1/data-requests",
                    Some(body),
                    "file data request",
                    due,
                )
                .await
                && let Some(id) = filed["id"].as_str().and_then(|i| i.parse().ok())
            {
                s.data_requests
                    .lock()
                    .unwrap()
                    .push((org, id, erasure, person));
            }
        }
        9 => {
            // The controller confirms one of its erasures (409 while it is still planning, or
            // once confirmed).
            let filed = {
                let filed = s.data_requests.lock().unwrap();
                let mine: Vec<Uuid> = filed
                    .iter()
                    .filter(|(o, _, erasure, _)| *o == org && *erasure)
                    .map(|(_, id, ..)| *id)
                    .collect();
                (!mine.is_empty()).then(|| mine[fastrand::usize(..mine.len())])
            };
            if let Some(id) = filed {
                let path = format!("/v1/data-requests/{id}/confirm");
                s.call(org, M::POST, &path, None, "confirm data request", due)
                    .await;
            }
        }
        96..98 => {
            let path = format!("/v1/agents/{agent}/memories/export");
            if let Some((202, job)) = s
                .call(
                    org,
                    M::POST,
                    &path,
                    Some(json!({"format": "json"})),
                    "start export",
                    due,
                )
                .await
                && let Some(id) = job["job_id"].as_str().and_then(|i| i.parse().ok())
            {
                s.exports.lock().unwrap().push((org, agent, id));
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The processes

struct Replica {
    child: Option<Child>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// When this process started (seconds into the load), and its resident memory samples.
    started: f64,
    rss: Vec<(f64, u64)>,
    fds: Vec<(f64, usize)>,
    lives: Vec<(f64, f64, u64, u64)>,
}

impl Replica {
    fn spawn(&mut self, binary: &Path, at: f64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start a replica");
        self.child = Some(child);
        self.started = at;
        self.rss.clear();
        self.fds.clear();
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: a signal to a child this value started.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    /// Waits for the process to exit; the status it ended with.
    fn wait(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut().and_then(|c| c.wait().ok());
        self.child = None;
        status
    }

    /// Closes the record of one process's life: (from, to, RSS after warm-up, RSS at the end).
    fn close_life(&mut self, at: f64) {
        let warm = self.started + (at - self.started) / 3.0;
        let after = self.rss.iter().find(|(t, _)| *t >= warm).map(|(_, r)| *r);
        let last = self.rss.last().map(|(_, r)| *r);
        if let (Some(after), Some(last)) = (after, last) {
            self.lives.push((self.started, at, after, last));
        }
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_healthy(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(reply) = client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            && reply.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica on {port} did not come up");
}

fn proc_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn proc_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

struct AuthProcess {
    child: Option<Child>,
    args: Vec<String>,
    binary: PathBuf,
}

impl AuthProcess {
    fn start(&mut self) {
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the auth stand-in");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Faults

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    KillReplica,
    RollReplica,
    PostgresFast,
    PostgresImmediate,
    Redis,
    ClickHouse,
    ObjectStore,
    Auth,
    OrgDeletion,
}

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Self::KillReplica => "replica SIGKILL + restart",
            Self::RollReplica => "replica SIGTERM (rolling restart)",
            Self::PostgresFast => "PostgreSQL restart (fast)",
            Self::PostgresImmediate => "PostgreSQL restart (immediate)",
            Self::Redis => "Redis stopped 10 s",
            Self::ClickHouse => "ClickHouse stopped 10 s",
            Self::ObjectStore => "S3 stopped 10 s",
            Self::Auth => "auth service stopped 5 s",
            Self::OrgDeletion => "org deletion during its exports",
        }
    }

    /// Which requests a fault may fail: (op prefixes; empty = all).
    fn affects(self, op: &str) -> bool {
        match self {
            Self::ClickHouse => op.starts_with("analytics"),
            Self::ObjectStore => op.contains("export"),
            Self::Redis => false,
            _ => true,
        }
    }
}

struct FaultRun {
    fault: Fault,
    start: f64,
    back: f64,
}

struct Infra {
    pg: TempPostgres,
    redis: TempRedis,
    clickhouse: TempClickHouse,
    s3: TempS3,
    auth: AuthProcess,
    replicas: Vec<Replica>,
    binary: PathBuf,
}

async fn inject(
    fault: Fault,
    infra: &Arc<Mutex<Infra>>,
    sh: &Arc<Shared>,
    now: impl Fn() -> f64,
) -> FaultRun {
    let start = now();
    let blocking = |f: Box<dyn FnOnce(&mut Infra) + Send>| {
        let infra = Arc::clone(infra);
        tokio::task::spawn_blocking(move || f(&mut infra.lock().unwrap()))
    };
    match fault {
        Fault::KillReplica => {
            sh.routable[0].store(false, Ordering::Relaxed);
            let at = now();
            blocking(Box::new(move |i| {
                i.replicas[0].signal(libc::SIGKILL);
                i.replicas[0].wait();
                i.replicas[0].close_life(at);
            }))
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let at = now();
            blocking(Box::new(move |i| {
                let binary = i.binary.clone();
                i.replicas[0].spawn(&binary, at);
            }))
            .await
            .unwrap();
            wait_healthy(&sh.client, sh.ports[0]).await;
            sh.routable[0].store(true, Ordering::Relaxed);
        }
        Fault::RollReplica => {
            // As Kubernetes does: out of the Service, then SIGTERM; in-flight requests finish.
            sh.routable[1].store(false, Ordering::Relaxed);
            let at = now();
            let status = blocking(Box::new(move |i| {
                i.replicas[1].signal(libc::SIGTERM);
                let status = i.replicas[1].wait();
                i.replicas[1].close_life(at);
                if !status.is_some_and(|s| s.success()) {
                    eprintln!("replica 1 did not exit cleanly on SIGTERM: {status:?}");
                }
            }))
            .await;
            status.unwrap();
            let at = now();
            blocking(Box::new(move |i| {
                let binary = i.binary.clone();
                i.replicas[1].spawn(&binary, at);
            }))
            .await
            .unwrap();
            wait_healthy(&sh.client, sh.ports[1]).await;
            sh.routable[1].store(true, Ordering::Relaxed);
        }
        Fault::PostgresFast | Fault::PostgresImmediate => {
            let immediate = fault == Fault::PostgresImmediate;
            blocking(Box::new(move |i| {
                i.pg.halt(immediate);
                std::thread::sleep(Duration::from_secs(2));
                i.pg.restart().expect("PostgreSQL restarts");
            }))
            .await
            .unwrap();
        }
        Fault::Redis => {
            blocking(Box::new(|i| i.redis.stop())).await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            blocking(Box::new(|i| i.redis.restart().expect("Redis restarts")))
                .await
                .unwrap();
        }
        Fault::ClickHouse => {
            blocking(Box::new(|i| i.clickhouse.stop())).await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            blocking(Box::new(|i| {
                i.clickhouse.restart().expect("ClickHouse restarts")
            }))
            .await
            .unwrap();
        }
        Fault::ObjectStore => {
            blocking(Box::new(|i| i.s3.stop())).await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            blocking(Box::new(|i| i.s3.restart().expect("S3 restarts")))
                .await
                .unwrap();
        }
        Fault::Auth => {
            blocking(Box::new(|i| i.auth.stop())).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            blocking(Box::new(|i| i.auth.start())).await.unwrap();
        }
        Fault::OrgDeletion => {
            // The last organization: exports of all its agents, then its deletion at once.
            let org = ORGS - 1;
            let due = now();
            for &agent in &sh.orgs[org].agents {
                let path = format!("/v1/agents/{agent}/memories/export");
                if let Some((202, job)) = sh
                    .call(
                        org,
                        reqwest::Method::POST,
                        &path,
                        Some(json!({"format": "csv"})),
                        "start export",
                        due,
                    )
                    .await
                    && let Some(id) = job["job_id"].as_str().and_then(|i| i.parse().ok())
                {
                    sh.exports.lock().unwrap().push((org, agent, id));
                }
            }
            sh.orgs[org].deleted.store(true, Ordering::Relaxed);
            let path = format!("/v1/organizations/{}", sh.orgs[org].id);
            let reply = sh
                .call(
                    org,
                    reqwest::Method::DELETE,
                    &path,
                    Some(json!({"confirm": true})),
                    "delete organization",
                    now(),
                )
                .await;
            if !matches!(reply, Some((202, _))) {
                sh.violation(format!(
                    "the organization deletion was not accepted: {reply:?}"
                ));
            }
        }
    }
    FaultRun {
        fault,
        start,
        back: now(),
    }
}

// ---------------------------------------------------------------------------------------------
// Setup

async fn seed(url: &str, orgs: &[Org]) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    for org in orgs {
        sqlx::query(
            "INSERT INTO ibex_core.organizations (id, name, slug, tier, billing_email)
             VALUES ($1, 'Soak org', $2, 'pro', 'billing@soak.example')",
        )
        .bind(org.id)
        .bind(format!("soak-{}", org.id.simple()))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO ibex_core.users (id, org_id, email, name, role, status)
             VALUES ($1, $2, 'owner@soak.example', 'Owner', 'owner', 'active')",
        )
        .bind(org.owner)
        .bind(org.id)
        .execute(&mut conn)
        .await
        .unwrap();
        for (n, agent) in org.agents.iter().enumerate() {
            sqlx::query(
                "INSERT INTO ibex_core.agents (id, org_id, created_by, name, slug, status, config)
                 VALUES ($1, $2, $3, 'Agent', $4, 'active', '{}')",
            )
            .bind(agent)
            .bind(org.id)
            .bind(org.owner)
            .bind(format!("agent-{n}"))
            .execute(&mut conn)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO ibex_core.memories
                     (id, org_id, agent_id, content, content_hash, category, source, confidence,
                      retrieval_count, metadata, created_at, updated_at)
                 SELECT ibex_core.uuid_v7(), $1, $2, 'memory ' || i || ' of ' || $2::text,
                        encode(sha256(convert_to('memory ' || i || ' of ' || $2::text, 'UTF8')), 'hex'),
                        (ARRAY['preference','factual','episodic'])[1 + i % 3], 'extracted', 0.9,
                        0, '{}', now() - make_interval(mins => i), now() - make_interval(mins => i)
                 FROM generate_series(1, $3) AS i",
            )
            .bind(org.id)
            .bind(agent)
            .bind(MEMORIES_PER_AGENT as i32)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        // The people its agents talk to: a session each, with checkpoints and a memory.
        sqlx::query(
            "WITH s AS (
                 INSERT INTO ibex_core.sessions (id, org_id, agent_id, external_id, status, turn_count)
                 SELECT gen_random_uuid(), $1, ($2::uuid[])[1 + i % cardinality($2::uuid[])],
                        'person-' || i, 'completed', 2
                 FROM generate_series(0, $3 - 1) AS i
                 RETURNING id, agent_id, external_id),
             c AS (
                 INSERT INTO ibex_core.checkpoints (id, org_id, session_id, turn_index)
                 SELECT gen_random_uuid(), $1, s.id, t FROM s, generate_series(0, 1) AS t)
             INSERT INTO ibex_core.memories (id, org_id, agent_id, session_id, content, content_hash, category)
             SELECT ibex_core.uuid_v7(), $1, agent_id, id, external_id || ' likes tea',
                    encode(sha256(convert_to(external_id || ' likes tea', 'UTF8')), 'hex'), 'preference'
             FROM s",
        )
        .bind(org.id)
        .bind(&org.agents)
        .bind(PERSONS as i32)
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The run

#[tokio::main]
async fn main() {
    let args = args();
    std::fs::create_dir_all(&args.out).unwrap();
    let binary = std::fs::canonicalize(&args.binary).expect("the ibex-api binary (build it)");
    eprintln!("soak: starting PostgreSQL, Redis, ClickHouse, S3");
    let pg = TempPostgres::start().unwrap();
    let db_url = pg.url("postgres");
    let migrated = Command::new(&binary)
        .arg("migrate")
        .env("IBEX_API_DATABASE_URL", &db_url)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(migrated.success(), "migrations");
    let redis = TempRedis::start().unwrap();
    let clickhouse = TempClickHouse::start().unwrap();
    let s3 = TempS3::start().unwrap();

    let dev_token = ibex_api::auth::dev::generate_token();
    let mut orgs: Vec<Org> = vec![Org {
        id: ibex_api::auth::dev::DEV_ORG_ID,
        sessions: (0..3)
            .flat_map(|agent| (1..6).map(move |n| ibex_api::devenv::dev_session_id(agent, n)))
            .collect(),
        owner: ibex_api::auth::dev::DEV_USER_ID,
        token: dev_token.clone(),
        agents: ibex_api::devenv::dev_agent_ids().to_vec(),
        deleted: AtomicBool::new(false),
    }];
    orgs.extend((1..ORGS).map(|_| Org {
        id: Uuid::now_v7(),
        sessions: Vec::new(),
        owner: Uuid::now_v7(),
        token: token_with_id(Uuid::now_v7()),
        agents: (0..AGENTS_PER_ORG).map(|_| Uuid::now_v7()).collect(),
        deleted: AtomicBool::new(false),
    }));
    ibex_api::devenv::seed(&db_url).await.unwrap();
    seed(&db_url, &orgs[1..]).await;
    // The platform's memory service stand-in (search), in this process, and the session
    // archives the replays read.
    let platform = {
        let mut vars: HashMap<String, String> = s3
            .settings()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        vars.insert("IBEX_API_DATABASE_URL".into(), db_url.clone());
        vars.insert(
            "IBEX_API_DATABASE_MAX_CONNECTIONS".into(),
            STAND_IN_POOL.to_string(),
        );
        ibex_api::config::Config::load_from(vars).expect("a configuration for the stand-ins")
    };
    let storage = ibex_api::storage::Storage::from_config(platform.object_store.as_ref())
        .unwrap()
        .expect("the object store");
    ibex_api::devenv::seed_archives(&storage).await.unwrap();
    let memory_service = ibex_api::domains::memories::dev_service::spawn(
        "127.0.0.1:0".parse().unwrap(),
        ibex_api::db::Database::connect_lazy(&platform.database).unwrap(),
    )
    .await
    .unwrap();
    let ch_client = clickhouse::Client::default().with_url(clickhouse.url());
    ch::create_schema(&ch_client).await.unwrap();
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    for org in &orgs {
        let agents = [0, 1, 2].map(|i| org.agents[i].to_string());
        ch::seed_traffic(
            &ch_client,
            &org.id.to_string(),
            &agents,
            now_unix,
            30,
            5_000,
        )
        .await
        .unwrap();
    }

    let auth_port = free_port();
    let mut auth_args = vec![
        "dev-auth-server".to_owned(),
        "--listen".into(),
        format!("127.0.0.1:{auth_port}"),
        "--token".into(),
        dev_token,
    ];
    for org in &orgs[1..] {
        auth_args.push("--org-token".into());
        auth_args.push(format!("{}/{}={}", org.id, org.owner, org.token));
    }
    let mut auth = AuthProcess {
        child: None,
        args: auth_args,
        binary: binary.clone(),
    };
    auth.start();

    let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let mut replicas = Vec::new();
    for (n, port) in ports.iter().enumerate() {
        let mut env: Vec<(String, String)> = vec![
            ("IBEX_API_PORT".into(), port.to_string()),
            ("IBEX_API_HOST".into(), "127.0.0.1".into()),
            ("IBEX_API_DATABASE_URL".into(), db_url.clone()),
            ("IBEX_API_DATABASE_MAX_CONNECTIONS".into(), POOL.to_string()),
            ("IBEX_API_REDIS_URL".into(), redis.url()),
            ("IBEX_API_CLICKHOUSE_URL".into(), clickhouse.url()),
            (
                "IBEX_API_AUTH_GRPC_ADDR".into(),
                format!("http://127.0.0.1:{auth_port}"),
            ),
            (
                "IBEX_API_MEMORY_SERVICE_URL".into(),
                format!("http://{memory_service}"),
            ),
            ("IBEX_API_METRICS_ADDR".into(), String::new()),
            ("IBEX_API_LOG_FORMAT".into(), "json".into()),
            ("IBEX_API_LOG_LEVEL".into(), "warn".into()),
            ("IBEX_API_SHUTDOWN_DRAIN_MS".into(), "0".into()),
            // Limits well above the soak's rate: they are counted, never the bottleneck here.
            ("IBEX_API_RATE_LIMIT_ORG_PER_SECOND".into(), "5000".into()),
            ("IBEX_API_RATE_LIMIT_ORG_BURST".into(), "5000".into()),
            ("IBEX_API_RATE_LIMIT_TOKEN_PER_SECOND".into(), "5000".into()),
            ("IBEX_API_RATE_LIMIT_TOKEN_BURST".into(), "5000".into()),
            ("IBEX_API_EXPORT_RETRY_MAX_BACKOFF_MS".into(), "3000".into()),
            // A killed replica's data request is taken up again within seconds.
            ("IBEX_API_DATA_REQUEST_LEASE_MS".into(), "3000".into()),
            ("IBEX_API_DATA_REQUEST_RETRY_MAX_MS".into(), "2000".into()),
        ];
        env.extend(s3.settings().into_iter().map(|(k, v)| (k.to_owned(), v)));
        let mut replica = Replica {
            child: None,
            env,
            log: args.out.join(format!("replica-{n}.log")),
            started: 0.0,
            rss: Vec::new(),
            fds: Vec::new(),
            lives: Vec::new(),
        };
        let _ = std::fs::remove_file(&replica.log);
        replica.spawn(&binary, 0.0);
        replicas.push(replica);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    for port in &ports {
        wait_healthy(&client, *port).await;
    }

    // Every event published during the run, in arrival order.
    let events: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let subscriber_gaps: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let subscriber = tokio::spawn(subscribe(
        redis.url(),
        Arc::clone(&events),
        Arc::clone(&subscriber_gaps),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let shared = Arc::new(Shared {
        out: args.out.clone(),
        orgs,
        ports: ports.clone(),
        routable: (0..REPLICAS).map(|_| AtomicBool::new(true)).collect(),
        next: AtomicUsize::new(0),
        start: Instant::now(),
        client: client.clone(),
        records: Mutex::new(Vec::new()),
        violations: Mutex::new(Vec::new()),
        created_agents: Mutex::new(Vec::new()),
        exports: Mutex::new(Vec::new()),
        data_requests: Mutex::new(Vec::new()),
        in_flight: (0..REPLICAS).map(|_| AtomicUsize::new(0)).collect(),
        lags: Mutex::default(),
        seen_agents: Mutex::default(),
    });
    let infra = Arc::new(Mutex::new(Infra {
        pg,
        redis,
        clickhouse,
        s3,
        auth,
        replicas,
        binary: binary.clone(),
    }));
    let start = shared.start;
    let now = move || start.elapsed().as_secs_f64();
    let duration = args.seconds as f64;

    // Samples of each replica's memory and descriptors, and PostgreSQL's connections.
    let pg_connections: Arc<Mutex<Vec<(f64, i64)>>> = Arc::default();
    let sampler = {
        let (infra, pg_connections, db_url) = (
            Arc::clone(&infra),
            Arc::clone(&pg_connections),
            db_url.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let t = now();
                // Never wait for the lock in this async task: a fault holds it across a blocking
                // wait (a draining replica's exit), which would stall a worker of this runtime.
                if let Ok(mut infra) = infra.try_lock() {
                    for replica in &mut infra.replicas {
                        if let Some(pid) = replica.pid() {
                            if let Some(rss) = proc_rss_kb(pid) {
                                replica.rss.push((t, rss));
                            }
                            if let Some(fds) = proc_fds(pid) {
                                replica.fds.push((t, fds));
                            }
                        }
                    }
                }
                if let Ok(mut conn) = PgConnection::connect(&db_url).await {
                    if let Ok(n) = sqlx::query_scalar::<_, i64>(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    )
                    .fetch_one(&mut conn)
                    .await
                    {
                        pg_connections.lock().unwrap().push((t, n));
                    }
                    let _ = conn.close().await;
                }
            }
        })
    };

    // The open-loop load: request i is due at start + i / rate, sent then whatever the answers.
    let load = {
        let shared = Arc::clone(&shared);
        let rate = args.rate;
        tokio::spawn(async move {
            let total = (duration * rate) as u64;
            for i in 0..total {
                let due = i as f64 / rate;
                tokio::time::sleep_until(tokio::time::Instant::from_std(
                    start + Duration::from_secs_f64(due),
                ))
                .await;
                tokio::spawn(one_request(Arc::clone(&shared), due));
            }
        })
    };

    let plan: Vec<(f64, Fault)> = if args.short {
        vec![
            (0.15, Fault::KillReplica),
            (0.40, Fault::PostgresImmediate),
            (0.65, Fault::Redis),
        ]
    } else {
        vec![
            (0.08, Fault::KillReplica),
            (0.17, Fault::RollReplica),
            (0.26, Fault::PostgresFast),
            (0.35, Fault::PostgresImmediate),
            (0.44, Fault::Redis),
            (0.53, Fault::ClickHouse),
            (0.62, Fault::ObjectStore),
            (0.71, Fault::Auth),
            (0.80, Fault::OrgDeletion),
        ]
    };
    let mut faults = Vec::new();
    for (at, fault) in plan {
        let when = start + Duration::from_secs_f64(at * duration);
        tokio::time::sleep_until(tokio::time::Instant::from_std(when)).await;
        eprintln!("soak: {:>6.1} s  {}", now(), fault.label());
        faults.push(inject(fault, &infra, &shared, now).await);
    }
    load.await.unwrap();
    eprintln!("soak: load done at {:.1} s; settling", now());
    // Requests still out get their answers (or their timeout).
    tokio::time::sleep(Duration::from_secs(16)).await;
    let ended = now();
    sampler.abort();
    {
        let mut infra = infra.lock().unwrap();
        for replica in &mut infra.replicas {
            replica.close_life(ended);
        }
    }

    let checks = settle_and_check(&shared, &infra, &db_url, &events, &subscriber_gaps).await;
    subscriber.abort();
    let records = shared.records.lock().unwrap().clone();
    let lags = shared.lags.lock().unwrap().clone();
    let report = Report {
        args: &args,
        records: &records,
        lags: &lags,
        faults: &faults,
        checks,
        violations: shared.violations.lock().unwrap().clone(),
        infra: &infra,
        pg_connections: &pg_connections.lock().unwrap(),
    };
    let ok = report.write();
    {
        let mut infra = infra.lock().unwrap();
        for replica in &mut infra.replicas {
            replica.signal(libc::SIGTERM);
            replica.wait();
        }
        infra.auth.stop();
    }
    std::process::exit(if ok { 0 } else { 1 });
}

/// Subscribes to every channel for the whole run, resubscribing after Redis restarts; records
/// when it was not listening.
async fn subscribe(
    url: String,
    events: Arc<Mutex<Vec<(String, String)>>>,
    gaps: Arc<Mutex<Vec<(Instant, Instant)>>>,
) {
    use futures_util::StreamExt;
    let client = redis::Client::open(url).unwrap();
    let mut down_since: Option<Instant> = None;
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.psubscribe("*").await.is_ok()
        {
            if let Some(since) = down_since.take() {
                gaps.lock().unwrap().push((since, Instant::now()));
            }
            let mut stream = pubsub.on_message();
            while let Some(message) = stream.next().await {
                let payload: String = message.get_payload().unwrap_or_default();
                events
                    .lock()
                    .unwrap()
                    .push((message.get_channel_name().to_owned(), payload));
            }
        }
        down_since.get_or_insert_with(Instant::now);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Invariants

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

async fn settle_and_check(
    sh: &Arc<Shared>,
    infra: &Arc<Mutex<Infra>>,
    db_url: &str,
    events: &Arc<Mutex<Vec<(String, String)>>>,
    gaps: &Arc<Mutex<Vec<(Instant, Instant)>>>,
) -> Vec<Check> {
    let mut conn = PgConnection::connect(db_url).await.unwrap();
    // Exports, the deletion and the outbox settle within the export retry bound.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let busy: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM ibex_core.memory_exports WHERE status IN ('pending','running'))
                  + (SELECT count(*) FROM ibex_core.org_deletions WHERE state <> 'done')
                  + (SELECT count(*) FROM ibex_core.outbox WHERE delivered_at IS NULL)
                  + (SELECT count(*) FROM ibex_core.data_requests
                     WHERE status IN ('received', 'planning', 'running'))",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if busy == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut checks = Vec::new();
    let violations = sh.violations.lock().unwrap().len();
    checks.push(Check {
        name: "every answer: no 500, envelope + request id on non-2xx, 503 with Retry-After and a documented code, no row of another org",
        ok: violations == 0,
        detail: format!("{violations} violations (listed below)"),
    });

    // Every agent id an organization was shown is one of its own agents. An id PostgreSQL no
    // longer has can only have been the deleted organization's, shown to that organization.
    let seen: Vec<(usize, String)> = sh.seen_agents.lock().unwrap().iter().cloned().collect();
    let ids: Vec<Uuid> = seen
        .iter()
        .filter_map(|(_, id)| Uuid::parse_str(id).ok())
        .collect();
    let owners: HashMap<Uuid, Uuid> = sqlx::query_as::<_, (Uuid, Uuid)>(
        "SELECT id, org_id FROM ibex_core.agents WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let mut foreign = Vec::new();
    for (org, id) in &seen {
        let o = &sh.orgs[*org];
        let owner = Uuid::parse_str(id)
            .ok()
            .and_then(|id| owners.get(&id).copied());
        let own = match owner {
            Some(owner) => owner == o.id,
            None => o.deleted.load(Ordering::Relaxed),
        };
        if !own {
            foreign.push(format!("org {} saw agent {id} (owner {owner:?})", o.id));
        }
    }
    checks.push(Check {
        name: "no answer without an org_id showed another organization's agent (every agent_id checked against its owner in PostgreSQL)",
        ok: foreign.is_empty(),
        detail: format!(
            "{} distinct (organization, agent) pairs seen, {} foreign {:?}",
            seen.len(),
            foreign.len(),
            &foreign[..foreign.len().min(5)]
        ),
    });

    // Every change answered 2xx has its audit event (more events than answers is fine: a write
    // whose answer was lost with a killed replica may have committed).
    let audited: &[(&str, &[&str])] = &[
        ("create agent", &["agent.create"]),
        ("update agent", &["agent.update"]),
        ("agent transition", &["agent.pause", "agent.activate"]),
        ("set directive", &["directive.set"]),
        ("rollback directive", &["directive.rollback"]),
        ("create user", &["user.create"]),
        ("update user", &["user.update"]),
        ("create token", &["token.create"]),
        ("revoke token", &["token.revoke"]),
        ("delete memory", &["memory.delete"]),
        ("bulk delete memories", &["memory.bulk_delete"]),
        ("start export", &["memory_export.create"]),
        ("file data request", &["data_request.create"]),
        ("confirm data request", &["data_request.confirm"]),
    ];
    let records = sh.records.lock().unwrap().clone();
    let mut missing_events = Vec::new();
    for org in 0..ORGS - 1 {
        for (op, actions) in audited {
            let answered = records
                .iter()
                .filter(|r| r.org == org && r.op == *op && (200..300).contains(&r.status))
                .count() as i64;
            let actions: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
            let events: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM ibex_core.audit_events WHERE org_id = $1 AND action = ANY($2)",
            )
            .bind(sh.orgs[org].id)
            .bind(&actions)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(-1);
            if events < answered {
                missing_events.push(format!("{op}: {answered} answered 2xx, {events} events"));
            }
        }
    }
    checks.push(Check {
        name: "every change answered 2xx has its audit event",
        ok: missing_events.is_empty(),
        detail: if missing_events.is_empty() {
            "every operation of the mix, every live organization".into()
        } else {
            missing_events.join("; ")
        },
    });

    let deleted_org = sh.orgs[ORGS - 1].id;
    let deletion_requested = sh.orgs[ORGS - 1].deleted.load(Ordering::Relaxed);
    let created = sh.created_agents.lock().unwrap().clone();
    let mut missing = 0;
    for (org, id) in &created {
        if sh.orgs[*org].id == deleted_org && deletion_requested {
            continue;
        }
        let found: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.agents WHERE id = $1")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if found != 1 {
            missing += 1;
        }
    }
    checks.push(Check {
        name: "every agent created with a 2xx is in PostgreSQL",
        ok: missing == 0,
        detail: format!("{} created, {missing} missing", created.len()),
    });

    // A directive version without its event would be a half-applied write.
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.directive_versions v
         JOIN ibex_core.directives d ON d.id = v.directive_id
         WHERE NOT EXISTS (SELECT 1 FROM ibex_core.outbox o
                           WHERE o.org_id = v.org_id
                             AND o.channel = 'ibex:directive:updates:' || d.agent_id
                             AND (o.payload::jsonb ->> 'version_num')::int = v.version_num)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap_or(-1);
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.directive_versions")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
    checks.push(Check {
        name: "no half-applied write: every directive version has its outbox event",
        ok: orphans == 0,
        detail: format!("{versions} versions, {orphans} without an event"),
    });

    // Published at least once, in commit order per channel; nothing published that was not
    // committed. Events delivered while the subscriber itself was reconnecting are not counted.
    let rows = sqlx::query(
        "SELECT id, channel, payload, delivered_at IS NOT NULL AS delivered
         FROM ibex_core.outbox WHERE channel IS NOT NULL ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let received = events.lock().unwrap().clone();
    let _ = std::fs::write(
        sh_out(sh).join("events.ndjson"),
        received
            .iter()
            .map(|(c, p)| json!({"channel": c, "payload": p}).to_string() + "\n")
            .collect::<String>(),
    );
    let gaps = gaps.lock().unwrap().len();
    let committed: HashSet<(String, String)> = rows
        .iter()
        .map(|r| (r.get("channel"), r.get("payload")))
        .collect();
    let undelivered = rows
        .iter()
        .filter(|r| !r.get::<bool, _>("delivered"))
        .count();
    let got: HashSet<&(String, String)> = received.iter().collect();
    let deleted_prefix = deleted_org.to_string();
    let unreceived = rows
        .iter()
        .filter(|r| {
            let key: (String, String) = (r.get("channel"), r.get("payload"));
            !got.contains(&key)
        })
        .count();
    // The deleted organization's delivered rows went with it: its events are not phantoms.
    let mut deleted_ids: Vec<String> = vec![deleted_prefix.clone()];
    deleted_ids.extend(sh.orgs[ORGS - 1].agents.iter().map(Uuid::to_string));
    deleted_ids.extend(
        created
            .iter()
            .filter(|(o, _)| *o == ORGS - 1)
            .map(|(_, a)| a.to_string()),
    );
    let phantom = received
        .iter()
        .filter(|e| {
            !committed.contains(*e)
                && !deleted_ids
                    .iter()
                    .any(|id| e.0.contains(id) || e.1.contains(id))
        })
        .count();
    // An aggregate is an agent's directive (its own channel); the other channels carry events of
    // many aggregates, one each (a memory deletion, a token revocation), with no order promised.
    // Per directive: the committed events, in outbox order, must appear in the received stream
    // in that order (repeats allowed: delivery is at least once). A rollback repeats an earlier
    // payload, so events are matched by sequence, not by value.
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rows {
        let channel: String = r.get("channel");
        if channel.starts_with("ibex:directive:updates:") {
            expected.entry(channel).or_default().push(r.get("payload"));
        }
    }
    let mut order_breaks = 0;
    for (channel, wanted) in &expected {
        let mut next = 0;
        for (c, payload) in &received {
            if c == channel && next < wanted.len() && *payload == wanted[next] {
                next += 1;
            }
        }
        let seen_all = wanted
            .iter()
            .all(|p| got.contains(&(channel.clone(), p.clone())));
        // Unverifiable when the subscriber missed some of the channel's events (reconnecting).
        if next < wanted.len() && seen_all {
            order_breaks += 1;
        }
    }
    checks.push(Check {
        name: "outbox: every event published, in commit order per channel, none uncommitted",
        ok: undelivered == 0 && phantom == 0 && order_breaks == 0 && (unreceived == 0 || gaps > 0),
        detail: format!(
            "{} committed, {undelivered} undelivered, {} received, {unreceived} never seen by the subscriber ({gaps} subscriber reconnects), {phantom} uncommitted, {order_breaks} out of order",
            rows.len(),
            received.len()
        ),
    });

    let jobs = sqlx::query("SELECT id, org_id, status, object_key FROM ibex_core.memory_exports")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let root = infra.lock().unwrap().s3.root().join("ibex-exports");
    let files = list_files(&root);
    let mut bad_jobs = Vec::new();
    let mut keys = HashSet::new();
    for job in &jobs {
        let status: String = job.get("status");
        let key: Option<String> = job.get("object_key");
        // A job whose file may have held an erased person's memory was purged with it.
        if status == "purged" && key.is_none() {
            continue;
        }
        if status != "succeeded" {
            bad_jobs.push(format!("{} {status}", job.get::<Uuid, _>("id")));
        } else if let Some(key) = key {
            if !files.contains(&key) {
                bad_jobs.push(format!(
                    "{} succeeded without its object",
                    job.get::<Uuid, _>("id")
                ));
            }
            keys.insert(key);
        }
    }
    // Access archives of data requests live beside the exports (checked below).
    let strays: Vec<&String> = files
        .iter()
        .filter(|f| !keys.contains(*f) && !f.contains("/data-requests/"))
        .collect();
    let started = sh.exports.lock().unwrap().len();
    checks.push(Check {
        name: "exports: every job succeeded with exactly one object, none left running, no object without a job",
        ok: bad_jobs.is_empty() && strays.is_empty(),
        detail: format!(
            "{started} started through the API, {} jobs left, {} objects; not succeeded: {:?}; objects without a job: {:?}",
            jobs.len(),
            files.len(),
            bad_jobs.iter().take(5).collect::<Vec<_>>(),
            strays.iter().take(5).collect::<Vec<_>>()
        ),
    });

    // Data requests filed during the faults: each ended or waits for its confirmation (none is
    // stuck), every succeeded one has its receipt with nothing remaining, no erasure succeeded
    // with anything of its person left, and no memory outlived its erased session.
    let filed = sh.data_requests.lock().unwrap().clone();
    let (mut succeeded, mut erased, mut waiting) = (0, 0, 0);
    let mut wrong = Vec::new();
    for (org, id, erasure, person) in &filed {
        if sh.orgs[*org].id == deleted_org && deletion_requested {
            continue; // removed with its organization, after its receipt
        }
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT d.status, r.receipt FROM ibex_core.data_requests d
             LEFT JOIN ibex_core.data_request_receipts r ON r.request_id = d.id
             WHERE d.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut conn)
        .await
        .unwrap();
        let Some((status, receipt)) = row else {
            wrong.push(format!("{id}: gone"));
            continue;
        };
        match status.as_str() {
            "awaiting_confirmation" => waiting += 1,
            "succeeded" => {
                succeeded += 1;
                let remaining: Option<i64> = receipt
                    .and_then(|r| serde_json::from_str::<Value>(&r).ok())
                    .map(|r| {
                        r["stores"]
                            .as_object()
                            .map(|s| {
                                s.values()
                                    .map(|c| c["remaining"].as_i64().unwrap_or(1))
                                    .sum()
                            })
                            .unwrap_or(1)
                    });
                if remaining != Some(0) {
                    wrong.push(format!("{id}: succeeded, receipt remaining {remaining:?}"));
                }
                if *erasure {
                    erased += 1;
                    let left: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM ibex_core.sessions WHERE org_id = $1 AND external_id = $2",
                    )
                    .bind(sh.orgs[*org].id)
                    .bind(person)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                    if left != 0 {
                        wrong.push(format!("{id}: erased {person}, {left} sessions left"));
                    }
                }
            }
            other => wrong.push(format!("{id}: {other}")),
        }
    }
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.memories m WHERE m.session_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM ibex_core.sessions s WHERE s.id = m.session_id)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    checks.push(Check {
        name: "data requests: none stuck, none succeeded early, every success proven (receipt, nothing remaining)",
        ok: wrong.is_empty() && orphans == 0,
        detail: format!(
            "{} filed, {succeeded} succeeded ({erased} erasures), {waiting} awaiting confirmation; {orphans} memories outlived their erased session; wrong: {:?}",
            filed.len(),
            wrong.iter().take(5).collect::<Vec<_>>()
        ),
    });

    if deletion_requested {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM ibex_core.org_deletions WHERE org_id = $1")
                .bind(deleted_org)
                .fetch_optional(&mut conn)
                .await
                .unwrap();
        let mut left = Vec::new();
        for table in ibex_api::domains::organizations::deletion::CASCADE
            .iter()
            .chain(&["ibex_core.organizations", "ibex_core.outbox"])
        {
            let column = if *table == "ibex_core.organizations" {
                "id"
            } else {
                "org_id"
            };
            let n: i64 =
                sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {column} = $1"))
                    .bind(deleted_org)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or(-1);
            if n != 0 {
                left.push(format!("{table}: {n}"));
            }
        }
        if files.iter().any(|f| f.starts_with(&deleted_prefix)) {
            left.push("export objects".into());
        }
        let ch_url = infra.lock().unwrap().clickhouse.url();
        // Plain HTTP: the Debian ClickHouse (18.16) predates the client's typed row format.
        let query =
            format!("SELECT count() FROM ibex.llm_traces WHERE org_id = '{deleted_prefix}'");
        let traces: u64 = match sh.client.post(&ch_url).body(query).send().await {
            Ok(reply) => reply.text().await.ok().and_then(|t| t.trim().parse().ok()),
            Err(_) => None,
        }
        .unwrap_or(u64::MAX);
        if traces != 0 {
            left.push(format!("ClickHouse traces: {traces}"));
        }
        let mut intact = true;
        for org in &sh.orgs[..ORGS - 1] {
            let agents: i64 =
                sqlx::query_scalar("SELECT count(*) FROM ibex_core.agents WHERE org_id = $1")
                    .bind(org.id)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            intact &= agents >= org.agents.len() as i64;
        }
        // Its erasure request's receipt outlives it.
        let receipts: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ibex_core.data_request_receipts
             WHERE org_id = $1 AND receipt::jsonb ->> 'subject_kind' = 'organization'",
        )
        .bind(deleted_org)
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
        checks.push(Check {
            name: "GDPR deletion: done, nothing of the org left anywhere, the other orgs intact, its erasure receipt kept",
            ok: state.as_deref() == Some("done") && left.is_empty() && intact && receipts == 1,
            detail: format!(
                "state {state:?}; left: {left:?}; other orgs intact: {intact}; erasure receipts: {receipts}"
            ),
        });
    }
    checks
}

fn sh_out(sh: &Shared) -> &Path {
    &sh.out
}

fn list_files(root: &Path) -> HashSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                let name = rel.to_string_lossy().into_owned();
                // The store's own bookkeeping (multipart parts in progress) is not an object.
                if !name.starts_with('.') && !name.contains("/.") {
                    out.insert(name);
                }
            }
        }
    }
    let mut out = HashSet::new();
    walk(root, root, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Report

struct Report<'a> {
    args: &'a Args,
    records: &'a [Record],
    lags: &'a [(f64, f64)],
    faults: &'a [FaultRun],
    checks: Vec<Check>,
    violations: Vec<String>,
    infra: &'a Arc<Mutex<Infra>>,
    pg_connections: &'a [(f64, i64)],
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A "Requests by ..." table: per key, how many answers of each status.
fn statuses_by(what: &str, answers: impl Iterator<Item = (String, u16)>) -> String {
    let mut counts: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();
    for (key, status) in answers {
        *counts.entry(key).or_default().entry(status).or_default() += 1;
    }
    let mut md = format!(
        "## Requests by {}\n\n| {what} | Answers (status: count; 0 = no answer) |\n|---|---|\n",
        what.to_lowercase()
    );
    for (key, statuses) in &counts {
        let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        md.push_str(&format!("| {key} | {} |\n", statuses.join(", ")));
    }
    md
}

fn failed(r: &Record) -> bool {
    r.status == 0 || r.status >= 500
}

impl Report<'_> {
    /// Writes results.md, timeline.csv and soak.png; whether every invariant held.
    fn write(mut self) -> bool {
        let out = &self.args.out;
        // Per second: sent, ok, failed, p50, p99.
        let seconds = self.args.seconds as usize + 1;
        let mut buckets: Vec<Vec<&Record>> = vec![Vec::new(); seconds];
        for r in self.records {
            let s = (r.due as usize).min(seconds - 1);
            buckets[s].push(r);
        }
        let mut generator_lag = vec![0.0f64; seconds];
        for (due, lag) in self.lags {
            let s = (*due as usize).min(seconds - 1);
            generator_lag[s] = generator_lag[s].max(*lag);
        }
        let mut timeline = Vec::new();
        let mut csv =
            String::from("second,requests,succeeded,failed,p50_ms,p99_ms,generator_lag_max_ms\n");
        for (s, bucket) in buckets.iter().enumerate() {
            let mut ok: Vec<f64> = bucket
                .iter()
                .filter(|r| !failed(r))
                .map(|r| r.latency_ms)
                .collect();
            ok.sort_by(f64::total_cmp);
            let errors = bucket.iter().filter(|r| failed(r)).count();
            let row = (
                s as f64,
                bucket.len() as f64,
                ok.len() as f64,
                errors as f64,
                percentile(&ok, 0.5),
                percentile(&ok, 0.99),
            );
            csv.push_str(&format!(
                "{},{},{},{},{:.2},{:.2},{:.2}\n",
                s, row.1, row.2, row.3, row.4, row.5, generator_lag[s]
            ));
            timeline.push(row);
        }
        std::fs::write(out.join("timeline.csv"), csv).unwrap();
        // Every request, for looking into a tail or a failure the tables only count.
        let mut requests = String::from("due_s,operation,org,replica,status,latency_ms\n");
        for r in self.records {
            requests.push_str(&format!(
                "{:.3},{},{},{},{},{:.2}\n",
                r.due, r.op, r.org, r.replica, r.status, r.latency_ms
            ));
        }
        std::fs::write(out.join("requests.csv"), requests).unwrap();

        // Recovery per fault: the last failed request it caused after the dependency was back.
        let mut fault_rows = String::new();
        let mut recovered_in_time = true;
        for (n, f) in self.faults.iter().enumerate() {
            let until = self
                .faults
                .get(n + 1)
                .map_or(f64::MAX, |next| next.start - 0.5)
                .min(f.back + 30.0);
            let window: Vec<&Record> = self
                .records
                .iter()
                .filter(|r| r.due >= f.start - 0.5 && r.due < until && f.fault.affects(r.op))
                .collect();
            let failures = window.iter().filter(|r| failed(r)).count();
            let unavailable = window.iter().filter(|r| r.status == 503).count();
            let refused = window.iter().filter(|r| r.status == 0).count();
            let last_failure_after_back = window
                .iter()
                .filter(|r| failed(r) && r.due >= f.back)
                .map(|r| r.due)
                .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))));
            let recovery = last_failure_after_back.map_or(0.0, |t| t - f.back);
            let ok = recovery < 5.0;
            recovered_in_time &= ok;
            fault_rows.push_str(&format!(
                "| {} | {:.1} | {:.1} | {} | {} | {} | {:.1} {} |\n",
                f.fault.label(),
                f.start,
                f.back - f.start,
                failures,
                unavailable,
                refused,
                recovery,
                if ok { "" } else { "**> 5 s**" }
            ));
        }
        let lost_in_roll: usize = self
            .faults
            .iter()
            .filter(|f| f.fault == Fault::RollReplica)
            .map(|f| {
                self.records
                    .iter()
                    .filter(|r| r.status == 0 && r.due >= f.start - 15.0 && r.due <= f.back)
                    .count()
            })
            .sum();
        if self.faults.iter().any(|f| f.fault == Fault::RollReplica) {
            self.checks.push(Check {
                name: "rolling restart (SIGTERM): every request in flight on the draining replica is answered",
                ok: lost_in_roll == 0,
                detail: format!("{lost_in_roll} requests without an answer"),
            });
        }
        self.checks.push(Check {
            name: "after each fault, requests succeed again within 5 s of the dependency being back",
            ok: recovered_in_time,
            detail: "see the fault table".into(),
        });

        let infra = self.infra.lock().unwrap();
        let mut memory = String::new();
        let mut memory_ok = true;
        for (n, replica) in infra.replicas.iter().enumerate() {
            for (from, to, after, last) in &replica.lives {
                let growth = (*last as f64 - *after as f64) / *after as f64;
                // Lives too short to have a warm-up are reported, not judged.
                let judged = to - from >= 60.0;
                if judged && growth >= 0.10 {
                    memory_ok = false;
                }
                memory.push_str(&format!(
                    "| replica {n} | {from:.0}–{to:.0} s | {} MiB | {} MiB | {:+.1}% {}|\n",
                    after / 1024,
                    last / 1024,
                    growth * 100.0,
                    if judged {
                        ""
                    } else {
                        "(short life, not judged) "
                    }
                ));
            }
        }
        self.checks.push(Check {
            name: "resident memory of each replica grows < 10% after warm-up",
            ok: memory_ok,
            detail: "see the memory table".into(),
        });
        let max_pg = self
            .pg_connections
            .iter()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        let bound = (REPLICAS * (POOL + 3) + STAND_IN_POOL + 3) as i64;
        self.checks.push(Check {
            name: "PostgreSQL connections never above (pool + 3) x replicas (+ the memory stand-in's)",
            ok: max_pg <= bound,
            detail: format!("max {max_pg} seen, bound {bound}"),
        });
        let max_fds = infra
            .replicas
            .iter()
            .flat_map(|r| r.fds.iter().map(|(_, n)| *n))
            .max()
            .unwrap_or(0);
        self.checks.push(Check {
            name: "file descriptors of each replica bounded (< 1024)",
            ok: max_fds < 1024,
            detail: format!("max {max_fds}"),
        });
        drop(infra);

        let total = self.records.len();
        let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
        for r in self.records {
            *by_status.entry(r.status).or_default() += 1;
        }
        let achieved = total as f64 / self.args.seconds as f64;
        let mut md = format!(
            "# Soak results\n\n{} s at {} requests/s offered (open loop), {} requests ({:.0}/s), 3 replicas, {} organizations.\n\nStatuses: {}\n\n",
            self.args.seconds,
            self.args.rate,
            total,
            achieved,
            ORGS,
            by_status
                .iter()
                .map(|(s, n)| format!(
                    "{}: {n}",
                    if *s == 0 {
                        "no answer".into()
                    } else {
                        s.to_string()
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        md.push_str(&statuses_by(
            "Operation",
            self.records.iter().map(|r| (r.op.to_owned(), r.status)),
        ));
        md.push('\n');
        md.push_str(&statuses_by(
            "Replica",
            self.records
                .iter()
                .map(|r| (r.replica.to_string(), r.status)),
        ));
        let mut lags: Vec<f64> = self.lags.iter().map(|(_, lag)| *lag).collect();
        lags.sort_by(f64::total_cmp);
        let late_seconds = generator_lag.iter().filter(|lag| **lag > 100.0).count();
        md.push_str(&format!(
            "\nThe load generator's own lag (how late it started a request; a stalled generator sends \
             its overdue requests in one burst): p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms; {late_seconds} \
             seconds with a request started more than 100 ms late (per second in timeline.csv).\n",
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            lags.last().copied().unwrap_or(0.0),
        ));
        // Not a promise of the service but of the measurement: a generator that fell behind sent
        // its backlog as a burst no real client mix sends, and the run says nothing then.
        let max_lag = lags.last().copied().unwrap_or(0.0);
        self.checks.push(Check {
            name: "the load was offered on schedule (no request started 1 s late or more)",
            ok: max_lag < 1000.0,
            detail: format!("latest start {max_lag:.0} ms after its due time"),
        });
        md.push_str("\n## Faults\n\n| Fault | At (s) | Lasted (s) | Failed requests | of which 503 | no answer | Recovery after back (s) |\n|---|---|---|---|---|---|---|\n");
        md.push_str(&fault_rows);
        md.push_str("\nA request counts against a fault when it was due between the fault's start and the next fault (at most 30 s after the dependency was back) and touches what failed (analytics for ClickHouse, exports for S3; Redis failures fail nothing). \"No answer\": the connection was refused or reset (requests in flight on a killed replica).\n\n## Invariants\n\n| Invariant | Holds | Detail |\n|---|---|---|\n");
        let mut ok = true;
        for check in &self.checks {
            ok &= check.ok;
            md.push_str(&format!(
                "| {} | {} | {} |\n",
                check.name,
                if check.ok { "yes" } else { "**NO**" },
                check.detail.replace('|', "/")
            ));
        }
        md.push_str("\n## Memory\n\n| Process | Life | RSS after warm-up | RSS at end | Growth |\n|---|---|---|---|---|\n");
        md.push_str(&memory);
        if !self.violations.is_empty() {
            md.push_str("\n## Violations\n\n");
            for v in &self.violations {
                md.push_str(&format!("- {v}\n"));
            }
        }
        std::fs::write(out.join("results.md"), &md).unwrap();
        if let Err(e) = plot(&out.join("soak.png"), &timeline, self.faults) {
            eprintln!("soak: no plot: {e}");
        }
        println!("{md}");
        ok
    }
}

type Row6 = (f64, f64, f64, f64, f64, f64);

/// Throughput and errors (top), p50/p99 latency (bottom), the faults marked.
fn plot(path: &Path, timeline: &[Row6], faults: &[FaultRun]) -> Result<(), String> {
    use plotters::prelude::*;
    let font = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no DejaVuSans.ttf (Debian: fonts-dejavu-core)")?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| "font")?;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (top, bottom) = root.split_vertically(450);
    let seconds = timeline.len() as f64;
    let max_rate = timeline.iter().map(|r| r.1).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "requests per second (green: succeeded, red: failed)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..seconds, 0f64..max_rate)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("s")
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(timeline.iter().map(|r| (r.0, r.2)), &GREEN))
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(timeline.iter().map(|r| (r.0, r.3)), &RED))
        .map_err(|x| e(&x))?;
    for f in faults {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(f.start, 0.0), (f.back.max(f.start + 0.5), max_rate)],
                BLUE.mix(0.15).filled(),
            )))
            .map_err(|x| e(&x))?;
        chart
            .draw_series(std::iter::once(Text::new(
                f.fault.label().to_owned(),
                (f.start, max_rate * 0.97),
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )))
            .map_err(|x| e(&x))?;
    }
    let max_latency = timeline.iter().map(|r| r.5).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "latency ms (black: p50, orange: p99), from each request's due time",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..seconds, (0.1f64..max_latency).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("s")
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(
            timeline.iter().filter(|r| r.4 > 0.0).map(|r| (r.0, r.4)),
            &BLACK,
        ))
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(
            timeline.iter().filter(|r| r.5 > 0.0).map(|r| (r.0, r.5)),
            &RGBColor(230, 120, 0),
        ))
        .map_err(|x| e(&x))?;
    for f in faults {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(f.start, 0.1), (f.back.max(f.start + 0.5), max_latency)],
                BLUE.mix(0.15).filled(),
            )))
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
