//! The app under test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Json, Router};
use ibex_api::app::App;
use ibex_api::auth::{Caller, Permissions};
use ibex_api::config::Config;
use ibex_api::error::ApiError;
use ibex_api::readiness::Readiness;
use ibex_api::request_id::RequestId;
use ibex_api::wire::extract::ApiJson;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::*;

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

/// The real binary with an empty environment (but `PATH`): nothing of the developer's leaks in.
pub fn binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ibex-api"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

/// The real binary, ready to spawn as a child process: on a free loopback port, against `auth`
/// and the database at `database_url`, with Redis, ClickHouse and metrics off and warnings only;
/// each test adds its own settings. And the address it will listen on.
pub fn app_process(auth: SocketAddr, database_url: &str) -> (std::process::Command, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = binary();
    command
        .env("IBEX_API_HOST", "127.0.0.1")
        .env("IBEX_API_PORT", port.to_string())
        .env("IBEX_API_AUTH_GRPC_ADDR", format!("http://{auth}"))
        .env("IBEX_API_DATABASE_URL", database_url)
        .env("IBEX_API_REDIS_URL", "")
        // No trace store: an organization deletion would (rightly) wait for an unreachable one.
        .env("IBEX_API_CLICKHOUSE_URL", "")
        .env("IBEX_API_METRICS_ADDR", "")
        .env("IBEX_API_LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null());
    (command, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The app with an object store and the memory-service stand-in (answering no results), for
/// tests that touch every operation; keep the two alive as long as the app.
pub async fn app_with_every_service(auth: SocketAddr) -> (TestApp, TempS3, FakeMemoryService) {
    let memory_service = FakeMemoryService::start(MemoryAnswer::Json(json!({"results": []}))).await;
    let s3 = TempS3::start().unwrap();
    let mut settings = s3_settings(&s3);
    settings.push(("IBEX_API_MEMORY_SERVICE_URL", memory_service.url()));
    let app = TestApp::start(auth, &as_refs(&settings)).await;
    (app, s3, memory_service)
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

    /// [`TestApp::start`] with a development auth service of its own, which must live as long.
    pub async fn with_auth(overrides: &[(&str, &str)]) -> (FakeAuth, Self) {
        let auth = FakeAuth::start().await;
        let app = Self::start(auth.addr, overrides).await;
        (auth, app)
    }

    /// [`TestApp::with_auth`] with an S3 server of its own as its object store, and `overrides`.
    pub async fn with_s3(overrides: &[(&str, &str)]) -> (FakeAuth, TempS3, Self) {
        let s3 = TempS3::start().unwrap();
        let owned = s3_settings(&s3);
        let mut settings = as_refs(&owned);
        settings.extend_from_slice(overrides);
        let (auth, app) = Self::with_auth(&settings).await;
        (auth, s3, app)
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

    /// `DELETE` with `token`.
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call("DELETE", path, token, None).await
    }

    /// `POST` of a JSON body with `token`.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("POST", path, token, Some(body)).await
    }

    /// `PATCH` of a JSON body with `token`.
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("PATCH", path, token, Some(body)).await
    }

    /// A write sent with `If-Match: tag`.
    pub async fn if_match(
        &self,
        method: &str,
        path: &str,
        token: &str,
        tag: &str,
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, path, token, &[("If-Match", tag)], body)
            .await
    }

    /// A read sent with `If-None-Match: tag`.
    pub async fn if_none_match(&self, path: &str, token: &str, tag: &str) -> Reply {
        self.call_with("GET", path, token, &[("If-None-Match", tag)], None)
            .await
    }

    /// Creates an agent with this slug (and name) through the API; its id.
    /// `POST /v1/agents` of agent `slug` (its name too).
    pub async fn post_agent(&self, token: &str, slug: &str) -> Reply {
        let body = json!({"name": slug, "slug": slug});
        self.post("/v1/agents", token, body).await
    }

    pub async fn create_agent(&self, token: &str, slug: &str) -> String {
        let created = self.post_agent(token, slug).await;
        assert_eq!(created.status, 201, "{}", created.text());
        created.json()["id"].as_str().unwrap().to_owned()
    }

    /// `GET` with `token`.
    pub async fn read(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, token, None).await
    }

    /// `GET path` until it answers 200 (a dependency came back), within `limit`; that answer.
    pub async fn read_until_ok(&self, path: &str, token: &str, limit: Duration) -> Reply {
        let deadline = super::Deadline::after(limit);
        loop {
            let reply = self.read(path, token).await;
            if reply.status == 200 {
                return reply;
            }
            let late = format!("no recovery: {}", reply.text());
            deadline.tick(late).await;
        }
    }

    /// Follows `next_cursor` from `path` to the end, `limit` a page; the ids in order.
    pub async fn page_through(&self, token: &str, path: &str, limit: u32) -> Vec<Uuid> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let mut url = format!("{path}{sep}limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let reply = self.read(&url, token).await;
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
    }
}
