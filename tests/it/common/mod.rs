//! Test harness: a real tonic auth server with scriptable answers, the real app on an ephemeral
//! loopback port, and a raw HTTP/1.1 client (raw so tests can send what well-behaved clients
//! cannot: duplicate headers, odd bytes, lying Content-Length).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::routing::{get, post};
use axum::{Json, Router};
use ibex_api::app::App;
use ibex_api::auth::dev::DevAuthService;
use ibex_api::auth::proto::auth_service_server::{AuthService, AuthServiceServer};
use ibex_api::auth::proto::{
    CreateTokenRequest, CreateTokenResponse, ListTokensRequest, ListTokensResponse,
    RevokeTokenRequest, RevokeTokenResponse, ValidateTokenRequest, ValidateTokenResponse,
};
use ibex_api::auth::{Caller, Permissions};
use ibex_api::config::Config;
use ibex_api::devenv::postgres::TempPostgres;
pub use ibex_api::devenv::redis::TempRedis;
use ibex_api::error::ApiError;
use ibex_api::readiness::Readiness;
use ibex_api::request_id::RequestId;
use ibex_api::wire::extract::ApiJson;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

pub const TOKEN: &str =
    "ibex_pat_0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70_q7Yx3kP0vN2mR8sT4wZ6bC1dF5gH9jK0lM2nQ4rS6tU";
pub const ORG_ID: &str = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70";

/// Every permission bit the API checks.
pub const ALL_PERMISSIONS: u64 = (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 17)
    | (1 << 24)
    | (1 << 32)
    | (1 << 35)
    | (1 << 36)
    | (1 << 37);
pub const USER_ID: &str = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f71";
pub const ALLOWED_ORIGIN: &str = "https://dashboard.example.com";
pub const PERMISSION_READ: u64 = 0b01;
pub const PERMISSION_ADMIN: u64 = 0b10;

pub fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

// ---------------------------------------------------------------------------------------------
// The fake auth service: a real gRPC server whose answers the test scripts.

#[derive(Clone, Debug)]
pub struct Behavior {
    pub delay: Duration,
    pub outcome: Result<ValidateTokenResponse, Code>,
}

impl Behavior {
    pub fn accept() -> Self {
        Self::answer(ValidateTokenResponse {
            org_id: ORG_ID.into(),
            permissions: PERMISSION_READ as i64,
            agent_id: None,
            user_id: Some(USER_ID.into()),
            token_id: None,
            expires_at: Some((SystemTime::now() + Duration::from_secs(3600)).into()),
        })
    }

    pub fn answer(response: ValidateTokenResponse) -> Self {
        Self {
            delay: Duration::ZERO,
            outcome: Ok(response),
        }
    }

    pub fn fail(code: Code) -> Self {
        Self {
            delay: Duration::ZERO,
            outcome: Err(code),
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug)]
struct FakeState {
    behavior: Mutex<Behavior>,
    /// Tokens with their own answer (another organization, other bits); the rest get `behavior`.
    tokens: Mutex<HashMap<String, ValidateTokenResponse>>,
    /// The token RPCs (Create/Revoke/List) run against a real in-memory store...
    store: DevAuthService,
    /// ...unless a test scripts a failure (`Err(code)`) or silence (a delay) for them.
    token_rpcs: Mutex<Behavior>,
    /// Metadata the token RPCs arrived with: (authorization, x-request-id).
    token_rpc_metadata: Mutex<Vec<(Option<String>, Option<String>)>>,
    calls: AtomicUsize,
    probes: AtomicUsize,
    request_ids: Mutex<Vec<String>>,
    /// `traceparent` metadata of ValidateToken calls (empty string when absent).
    traceparents: Mutex<Vec<String>>,
}

#[derive(Debug, Clone)]
struct FakeService(Arc<FakeState>);

#[tonic::async_trait]
impl AuthService for FakeService {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.token_rpc(request, async |r| self.0.store.create_token(r).await)
            .await
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        self.token_rpc(request, async |r| self.0.store.revoke_token(r).await)
            .await
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        self.token_rpc(request, async |r| self.0.store.list_tokens(r).await)
            .await
    }

    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        let behavior = self.0.behavior.lock().unwrap().clone();
        let probe = request.get_ref().access_token == "ibex_health_probe_invalid";
        if probe {
            self.0.probes.fetch_add(1, Ordering::SeqCst);
        } else {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            let id = request
                .metadata()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned());
            self.0
                .request_ids
                .lock()
                .unwrap()
                .push(id.unwrap_or_default());
            let traceparent = request
                .metadata()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            self.0.traceparents.lock().unwrap().push(traceparent);
        }
        tokio::time::sleep(behavior.delay).await;
        let known = self
            .0
            .tokens
            .lock()
            .unwrap()
            .get(&request.get_ref().access_token)
            .cloned();
        if let (Some(answer), Ok(_)) = (known, &behavior.outcome) {
            return Ok(Response::new(answer));
        }
        let token = request.get_ref().access_token.clone();
        if behavior.outcome.is_ok() && self.0.store.knows(&token) {
            // Minted, revoked or expired there: the store decides.
            return self
                .0
                .store
                .validate_token(Request::new(ValidateTokenRequest {
                    access_token: token,
                }))
                .await;
        }
        match behavior.outcome {
            Ok(_) if probe => Err(Status::unauthenticated("invalid token")),
            Ok(answer) => Ok(Response::new(answer)),
            Err(code) => Err(Status::new(code, "scripted failure")),
        }
    }
}

impl FakeService {
    /// Records the metadata, then answers as scripted or as the in-memory store does.
    async fn token_rpc<T, R>(
        &self,
        request: Request<T>,
        store: impl AsyncFnOnce(Request<T>) -> Result<Response<R>, Status>,
    ) -> Result<Response<R>, Status> {
        let read = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let seen = (read("authorization"), read("x-request-id"));
        self.0.token_rpc_metadata.lock().unwrap().push(seen);
        let behavior = self.0.token_rpcs.lock().unwrap().clone();
        tokio::time::sleep(behavior.delay).await;
        match behavior.outcome {
            Err(code) => Err(Status::new(code, "scripted failure quoting SECRET-INPUT")),
            Ok(_) => store(request).await,
        }
    }
}

pub struct FakeAuth {
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeAuth {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), Behavior::accept()).await
    }

    pub async fn start_on(addr: SocketAddr, behavior: Behavior) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind fake auth");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(FakeState {
            behavior: Mutex::new(behavior),
            tokens: Mutex::new(HashMap::new()),
            store: DevAuthService::new(ibex_api::auth::dev::generate_token()),
            token_rpcs: Mutex::new(Behavior::accept()),
            token_rpc_metadata: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            probes: AtomicUsize::new(0),
            request_ids: Mutex::new(Vec::new()),
            traceparents: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = oneshot::channel();
        let service = AuthServiceServer::new(FakeService(Arc::clone(&state)));
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A fresh token that the service accepts for `org_id` with `permissions` (a user the
    /// database does not know).
    pub fn token_for(&self, org_id: Uuid, permissions: u64) -> String {
        self.token_for_user(org_id, Some(Uuid::now_v7()), permissions)
    }

    /// A fresh token of `user_id` (`None`: an agent's token, no user).
    pub fn token_for_user(&self, org_id: Uuid, user_id: Option<Uuid>, permissions: u64) -> String {
        let token = ibex_api::auth::dev::generate_token();
        let answer = ValidateTokenResponse {
            org_id: org_id.to_string(),
            permissions: permissions as i64,
            agent_id: user_id.is_none().then(|| Uuid::now_v7().to_string()),
            user_id: user_id.map(|id| id.to_string()),
            token_id: Some(Uuid::now_v7().to_string()),
            expires_at: Some((SystemTime::now() + Duration::from_secs(3600)).into()),
        };
        self.state
            .tokens
            .lock()
            .unwrap()
            .insert(token.clone(), answer);
        token
    }

    /// A token known to the in-memory store (so the token RPCs accept it as a caller).
    pub fn stored_token(&self, org_id: Uuid, user_id: Option<Uuid>, permissions: u64) -> String {
        self.state.store.add_token(org_id, user_id, permissions)
    }

    /// Scripts the token RPCs: `Behavior::fail(code)`, or a delay.
    pub fn set_token_rpcs(&self, behavior: Behavior) {
        *self.state.token_rpcs.lock().unwrap() = behavior;
    }

    /// (authorization, x-request-id) of every token RPC so far.
    pub fn token_rpc_metadata(&self) -> Vec<(Option<String>, Option<String>)> {
        self.state.token_rpc_metadata.lock().unwrap().clone()
    }

    pub fn set(&self, behavior: Behavior) {
        *self.state.behavior.lock().unwrap() = behavior;
    }

    /// ValidateToken calls, the health probe excluded.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    pub fn probes(&self) -> usize {
        self.state.probes.load(Ordering::SeqCst)
    }

    pub fn traceparents(&self) -> Vec<String> {
        self.state.traceparents.lock().unwrap().clone()
    }

    pub fn request_ids(&self) -> Vec<String> {
        self.state.request_ids.lock().unwrap().clone()
    }

    /// Stops serving and closes its connections; returns the address for a restart.
    pub async fn stop(mut self) -> SocketAddr {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        if tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .is_err()
        {
            panic!("fake auth did not stop");
        }
        self.addr
    }
}

/// An address where nothing listens (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The app under test.

pub fn config(auth: SocketAddr, overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("IBEX_API_AUTH_GRPC_ADDR".into(), format!("http://{auth}")),
        (
            "IBEX_API_CORS_ALLOWED_ORIGINS".into(),
            ALLOWED_ORIGIN.into(),
        ),
        ("IBEX_API_REQUEST_TIMEOUT_MS".into(), "2000".into()),
        ("IBEX_API_AUTH_TIMEOUT_MS".into(), "300".into()),
        (
            "IBEX_API_DATABASE_STATEMENT_TIMEOUT_MS".into(),
            "1500".into(),
        ),
        ("IBEX_API_MAX_BODY_BYTES".into(), "1024".into()),
        ("IBEX_API_SHUTDOWN_GRACE_MS".into(), "0".into()),
        // Every /ready call runs its checks, unless a test turns reuse on.
        ("IBEX_API_READY_CACHE_MS".into(), "0".into()),
        // Publishing is off unless a test starts Redis and names it.
        ("IBEX_API_REDIS_URL".into(), String::new()),
        ("IBEX_API_OUTBOX_POLL_MS".into(), "50".into()),
        // Metrics are off unless a test asks (a fixed port would collide across tests).
        ("IBEX_API_METRICS_ADDR".into(), String::new()),
        // Search is off (503) and there is no object store unless a test starts them.
        ("IBEX_API_MEMORY_SERVICE_URL".into(), String::new()),
        ("IBEX_API_MEMORY_SERVICE_TIMEOUT_MS".into(), "1000".into()),
        // Analytics are off (503) unless a test starts ClickHouse.
        ("IBEX_API_CLICKHOUSE_URL".into(), String::new()),
        ("IBEX_API_CLICKHOUSE_QUERY_TIMEOUT_MS".into(), "1500".into()),
    ]);
    for (k, v) in overrides {
        vars.insert((*k).into(), (*v).into());
    }
    Config::load_from(vars).expect("test config is valid")
}

/// Handlers that exercise failure paths through the production stack.
pub fn test_routes() -> Router<App> {
    async fn panics() -> &'static str {
        panic!("handler exploded with secret-ish details")
    }
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "too late"
    }
    async fn admin_only(caller: Caller) -> Result<&'static str, ApiError> {
        caller.require(Permissions(PERMISSION_ADMIN))?;
        Ok("admin")
    }
    async fn whoami(caller: Caller, request_id: RequestId) -> Json<Value> {
        Json(json!({
            "request_id": request_id.to_string(),
            "org_id": caller.org_id,
            "user_id": caller.user_id,
            "agent_id": caller.agent_id,
            "permissions": caller.permissions.0,
        }))
    }
    #[derive(serde::Deserialize)]
    struct Echo {
        #[allow(dead_code)]
        name: String,
    }
    async fn json_body(ApiJson(_): ApiJson<Echo>) -> &'static str {
        "ok"
    }
    async fn sleep_ms(axum::extract::Path(ms): axum::extract::Path<u64>) -> &'static str {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        "done"
    }
    async fn unimplemented(_caller: Caller) -> ApiError {
        ApiError::NotImplemented
    }
    Router::new()
        .route("/test/unimplemented", get(unimplemented))
        .route("/test/panic", get(panics))
        .route("/test/slow", get(slow))
        .route("/test/admin", get(admin_only))
        .route("/test/whoami", get(whoami))
        .route("/test/json", post(json_body))
        .route("/test/sleep/{ms}", get(sleep_ms))
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/metrics` listens, when the test turned it on.
    pub metrics_addr: Option<SocketAddr>,
    pub readiness: Arc<Readiness>,
    pub db: TestDb,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestApp {
    /// The app on a fresh, migrated database holding the test organization ([`ORG_ID`]).
    pub async fn start(auth: SocketAddr, overrides: &[(&str, &str)]) -> Self {
        let db = TestDb::create().await;
        db.add_org(ORG_ID.parse().unwrap()).await;
        let mut with_db = vec![("IBEX_API_DATABASE_URL", db.url.as_str())];
        with_db.extend_from_slice(overrides);
        Self::start_on(config(auth, &with_db), db).await
    }

    /// The app with this configuration, its own database settings included.
    pub async fn start_with(config: Config) -> Self {
        let db = TestDb::create().await;
        Self::start_on(config, db).await
    }

    pub async fn start_on(config: Config, db: TestDb) -> Self {
        // The production start-up, on an ephemeral loopback port, with the test routes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let application = ibex_api::application::build(&config, listener, test_routes())
            .await
            .unwrap();
        let (addr, metrics_addr, readiness) = (
            application.local_addr(),
            application.metrics_addr(),
            application.readiness(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(application.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics_addr,
            readiness,
            db,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Sends the shutdown signal; the returned handle finishes when the server has drained.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap()
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.addr, "GET", path, headers, b"").await
    }

    pub async fn get_authed(&self, path: &str) -> Reply {
        let (name, value) = bearer();
        self.get(path, &[(name, &value)]).await
    }

    /// A request with `token` and, when there is a body, `Content-Type: application/json`.
    pub async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
        self.call_with(method, path, token, &[], body).await
    }

    /// [`TestApp::call`] with more headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: &str,
        extra: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        if !bytes.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        request(self.addr, method, path, &headers, &bytes).await
    }
}

// ---------------------------------------------------------------------------------------------
// Redis: one throwaway server per test binary that needs one.

pub fn redis() -> &'static Mutex<TempRedis> {
    static REDIS: OnceLock<Mutex<TempRedis>> = OnceLock::new();
    REDIS.get_or_init(|| Mutex::new(TempRedis::start().expect("start redis-server for the tests")))
}

pub fn redis_url() -> String {
    redis().lock().unwrap().url()
}

/// A subscription to `channel` on the shared redis-server, ready when this returns.
pub async fn subscribe(channel: &str) -> redis::aio::PubSub {
    subscribe_at(&redis_url(), channel).await
}

/// A subscription to `channel` on the redis-server at `url`, ready when this returns.
pub async fn subscribe_at(url: &str, channel: &str) -> redis::aio::PubSub {
    let client = redis::Client::open(url).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(channel).await.unwrap();
    pubsub
}

/// The next message on `pubsub`, within `limit`.
pub async fn next_message(pubsub: &mut redis::aio::PubSub, limit: Duration) -> Option<Value> {
    use futures_util::StreamExt;
    let message = tokio::time::timeout(limit, pubsub.on_message().next())
        .await
        .ok()??;
    let payload: String = message.get_payload().unwrap();
    Some(serde_json::from_str(&payload).unwrap())
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: one throwaway cluster per test binary, a migrated template, a database per test.

const TEMPLATE: &str = "ibex_template";

struct Cluster {
    postgres: TempPostgres,
    /// CREATE DATABASE … TEMPLATE fails while another copy of the template is being made.
    create_lock: tokio::sync::Mutex<()>,
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        // Its own thread and runtime: this may run inside a test's runtime.
        std::thread::spawn(|| {
            let postgres = TempPostgres::start().expect("start PostgreSQL for the tests");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&postgres.url("postgres"))
                    .await
                    .unwrap();
                sqlx::query(&format!("CREATE DATABASE {TEMPLATE}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                ibex_api::db::migrate::run(&postgres.url(TEMPLATE))
                    .await
                    .expect("migrate the template");
            });
            Cluster {
                postgres,
                create_lock: tokio::sync::Mutex::new(()),
            }
        })
        .join()
        .expect("cluster start-up")
    })
}

/// A fresh database of the tests' cluster, migrated (a copy of the template) unless asked not to.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn create() -> Self {
        Self::create_from(Some(TEMPLATE)).await
    }

    /// An empty database: no schema at all.
    pub async fn create_unmigrated() -> Self {
        Self::create_from(None).await
    }

    async fn create_from(template: Option<&str>) -> Self {
        let cluster = cluster();
        let name = format!("test_{}", Uuid::new_v4().simple());
        let _one_at_a_time = cluster.create_lock.lock().await;
        let mut admin = PgConnection::connect(&cluster.postgres.url("postgres"))
            .await
            .unwrap();
        let template = template
            .map(|t| format!(" TEMPLATE {t}"))
            .unwrap_or_default();
        sqlx::query(&format!("CREATE DATABASE {name}{template}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        Self {
            url: cluster.postgres.url(&name),
            name,
        }
    }

    /// A superuser connection: bypasses row-level security, to set up and inspect.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    /// An active user of `org_id` with `role`; returns its id.
    pub async fn add_user(&self, org_id: Uuid, role: &str) -> Uuid {
        let id = Uuid::now_v7();
        let mut admin = self.admin().await;
        sqlx::query(
            "INSERT INTO ibex_core.users (id, org_id, email, name, role, status)
             VALUES ($1, $2, $3, 'Seeded', $4, 'active')",
        )
        .bind(id)
        .bind(org_id)
        .bind(format!("{}@seed.example", id.simple()))
        .bind(role)
        .execute(&mut admin)
        .await
        .unwrap();
        id
    }

    /// A live agent of `org_id`; returns its id.
    pub async fn add_agent(&self, org_id: Uuid) -> Uuid {
        let id = Uuid::now_v7();
        let mut admin = self.admin().await;
        sqlx::query(
            "INSERT INTO ibex_core.agents (id, org_id, name, slug) VALUES ($1, $2, 'a', $3)",
        )
        .bind(id)
        .bind(org_id)
        .bind(format!("a-{}", id.simple()))
        .execute(&mut admin)
        .await
        .unwrap();
        id
    }

    pub async fn add_org(&self, id: Uuid) {
        let mut admin = self.admin().await;
        sqlx::query(
            "INSERT INTO ibex_core.organizations (id, name, slug) VALUES ($1, 'Org', $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(format!("org-{}", id.simple()))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client.

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The single X-Request-ID header.
    pub fn request_id(&self) -> &str {
        let ids = self.headers_named("x-request-id");
        assert_eq!(ids.len(), 1, "exactly one X-Request-ID: {:?}", self.headers);
        ids[0]
    }

    /// Asserts the platform envelope with this status and code, its id equal to the header.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "status; body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        let top: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        assert_eq!(top, ["error"], "only the envelope: {body}");
        let error = &body["error"];
        assert_eq!(error["code"], code, "{body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(
            error["request_id"],
            self.request_id(),
            "body id equals header id"
        );
        for key in error.as_object().unwrap().keys() {
            assert!(
                ["code", "message", "request_id", "field_errors"].contains(&key.as_str()),
                "{body}"
            );
        }
        body
    }
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(addr, &bytes).await
}

/// Sends bytes as they are and reads the whole response (the request should ask to close).
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut buf = Vec::new();
        // A server may close after answering without reading the whole request; what matters
        // is the response read so far.
        let _ = stream.read_to_end(&mut buf).await;
        buf
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("response within 10 s");
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> Reply {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let raw_body = &buf[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------------
// The object store: an embedded S3 server that checks signatures, one per test (it is cheap).

pub use ibex_api::devenv::s3::TempS3;

/// Settings pointing the app at `s3` (owned strings, for [`TestApp::start`]'s overrides).
pub fn s3_settings(s3: &TempS3) -> Vec<(&'static str, String)> {
    s3.settings()
}

/// `overrides` as the `&[(&str, &str)]` [`TestApp::start`] takes.
pub fn as_refs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A plain HTTP GET of an absolute `http://host:port/path?query` URL, no credentials, as a
/// browser or curl would send it: (status, body).
pub async fn plain_get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = host.parse().expect("an IP:port host");
    let reply = request(addr, "GET", path, &[], b"").await;
    (reply.status, reply.body)
}

// ---------------------------------------------------------------------------------------------
// A scriptable memory service (the platform's own service, so a stand-in is allowed): a real
// HTTP server on loopback whose answer each test sets.

#[derive(Clone, Debug)]
pub enum MemoryAnswer {
    /// 200 with this JSON.
    Json(Value),
    /// This status and body text.
    Raw(u16, &'static str),
    /// Sleep this long, then answer `{"results": []}`.
    Slow(Duration),
}

#[derive(Debug)]
struct MemoryServiceState {
    answer: Mutex<MemoryAnswer>,
    /// (x-request-id header, body) of every call.
    calls: Mutex<Vec<(Option<String>, Value)>>,
}

pub struct FakeMemoryService {
    pub addr: SocketAddr,
    state: Arc<MemoryServiceState>,
}

impl FakeMemoryService {
    pub async fn start(answer: MemoryAnswer) -> Self {
        use axum::extract::State;
        use axum::response::IntoResponse;
        async fn search(
            State(state): State<Arc<MemoryServiceState>>,
            headers: http::HeaderMap,
            Json(body): Json<Value>,
        ) -> axum::response::Response {
            let id = headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            state.calls.lock().unwrap().push((id, body));
            let answer = state.answer.lock().unwrap().clone();
            match answer {
                MemoryAnswer::Json(value) => Json(value).into_response(),
                MemoryAnswer::Raw(status, text) => {
                    (http::StatusCode::from_u16(status).unwrap(), text.to_owned()).into_response()
                }
                MemoryAnswer::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    Json(json!({"results": []})).into_response()
                }
            }
        }
        let state = Arc::new(MemoryServiceState {
            answer: Mutex::new(answer),
            calls: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/internal/memories/search", post(search))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, answer: MemoryAnswer) {
        *self.state.answer.lock().unwrap() = answer;
    }

    pub fn calls(&self) -> Vec<(Option<String>, Value)> {
        self.state.calls.lock().unwrap().clone()
    }
}

/// A PostgreSQL server of the test's own (for tests that stop or restart it), migrated, with the
/// organization `ORG_ID`; and its URL.
pub async fn own_postgres_with_org() -> (TempPostgres, String) {
    let postgres = tokio::task::spawn_blocking(TempPostgres::start)
        .await
        .unwrap()
        .unwrap();
    let url = postgres.url("postgres");
    ibex_api::db::migrate::run(&url).await.unwrap();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("INSERT INTO ibex_core.organizations (id, name, slug) VALUES ($1, 'A', 'a')")
        .bind(Uuid::parse_str(ORG_ID).unwrap())
        .execute(&mut admin)
        .await
        .unwrap();
    (postgres, url)
}
