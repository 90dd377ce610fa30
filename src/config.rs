//! Configuration from `IBEX_API_*` environment variables and an optional TOML file.
//!
//! The `config` crate merges the sources (environment wins over the file); every value is then
//! parsed here by hand so that an error names the exact variable and what it expected, and the
//! process can refuse to start with one clear line. Unknown `IBEX_API_*` variables are errors too:
//! a typo must not silently leave a default in force.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderValue;
use uuid::Uuid;

/// Every setting: (environment variable, default, meaning). docs/configuration.md and `.env.example` mirror
/// this table, and a test keeps them in step.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "IBEX_API_CONFIG_FILE",
        "",
        "Optional TOML file with the same settings as lowercase keys without the prefix (port = 8010); environment variables override it.",
    ),
    ("IBEX_API_HOST", "0.0.0.0", "IP address to listen on."),
    ("IBEX_API_PORT", "8010", "TCP port to listen on."),
    (
        "IBEX_API_CORS_ALLOWED_ORIGINS",
        "",
        "Comma-separated browser origins allowed to call the API (https://dashboard.example.com). Empty allows none; `*` is refused.",
    ),
    (
        "IBEX_API_LOG_FORMAT",
        "json",
        "`json` (one JSON object per line, for production) or `text` (readable, for development). `--dev` defaults to `text`.",
    ),
    (
        "IBEX_API_LOG_LEVEL",
        "info",
        "Log filter: a level (`debug`) or tracing directives (`info,ibex_api=debug`).",
    ),
    (
        "IBEX_API_REQUEST_TIMEOUT_MS",
        "10000",
        "Deadline for a whole request, auth included; past it the answer is 504 REQUEST_TIMEOUT.",
    ),
    (
        "IBEX_API_MAX_BODY_BYTES",
        "1048576",
        "Largest accepted request body; larger is 413 PAYLOAD_TOO_LARGE.",
    ),
    (
        "IBEX_API_MAX_CONNECTIONS",
        "4096",
        "Open client connections at most; further ones wait in the kernel's accept queue.",
    ),
    (
        "IBEX_API_HEADER_READ_TIMEOUT_MS",
        "5000",
        "Time a client has to send a request's headers, and how long an idle keep-alive connection stays open; then the connection is closed.",
    ),
    (
        "IBEX_API_SHUTDOWN_GRACE_MS",
        "5000",
        "After SIGTERM/SIGINT: time /ready answers 503 while new connections are still accepted, so load balancers can stop routing here.",
    ),
    (
        "IBEX_API_SHUTDOWN_DRAIN_MS",
        "15000",
        "After the grace period: time in-flight requests get to finish before the process exits anyway.",
    ),
    (
        "IBEX_API_AUTH_GRPC_ADDR",
        "http://127.0.0.1:9091",
        "The platform auth service's gRPC endpoint (http:// or https://).",
    ),
    (
        "IBEX_API_AUTH_TIMEOUT_MS",
        "1000",
        "Deadline of one ValidateToken call; past it the request is refused with 503 AUTH_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.",
    ),
    (
        "IBEX_API_AUTH_CONNECT_TIMEOUT_MS",
        "500",
        "Deadline for opening the TCP connection to the auth service.",
    ),
    (
        "IBEX_API_AUTH_CACHE_TTL_MS",
        "0",
        "0 validates every request. Above 0, successful validations are cached for at most this long (and never past the token's expiry): a revoked token keeps working for up to this long.",
    ),
    (
        "IBEX_API_AUTH_CACHE_MAX_ENTRIES",
        "10000",
        "Most tokens the validation cache holds.",
    ),
    (
        "IBEX_API_DATABASE_URL",
        "postgres://ibex@127.0.0.1:5432/ibex",
        "PostgreSQL connection URL (postgres://user:password@host:port/db?sslmode=require for TLS). The password is never logged. The login role must be a member of `ibex_app`.",
    ),
    (
        "IBEX_API_DATABASE_MAX_CONNECTIONS",
        "10",
        "Most connections the request pool opens to PostgreSQL (the background jobs' pool adds 3).",
    ),
    (
        "IBEX_API_DATABASE_ACQUIRE_TIMEOUT_MS",
        "500",
        "Longest a request waits for a pooled connection (or a new one); past it the answer is 503 SERVICE_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.",
    ),
    (
        "IBEX_API_DATABASE_STATEMENT_TIMEOUT_MS",
        "5000",
        "PostgreSQL `statement_timeout` of the service's connections; a statement running longer is cancelled and answered 503 SERVICE_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.",
    ),
    (
        "IBEX_API_REDIS_URL",
        "redis://127.0.0.1:6379",
        "Redis the platform events are published to (redis://[:password@]host:port[/db], rediss:// for TLS). The password is never logged. Empty turns publishing off: events wait in the outbox until it is set.",
    ),
    (
        "IBEX_API_RATE_LIMIT_ENABLED",
        "true",
        "Request limits per organization and per token, kept in Redis (`IBEX_API_REDIS_URL`) and shared by every replica. `false`, or no Redis, turns them off. When Redis does not answer, requests go through (fail open).",
    ),
    (
        "IBEX_API_RATE_LIMIT_ORG_PER_SECOND",
        "100",
        "Requests a second an organization may make, sustained, across all its tokens and all replicas.",
    ),
    (
        "IBEX_API_RATE_LIMIT_ORG_BURST",
        "200",
        "Requests an organization may make at once before the sustained rate applies.",
    ),
    (
        "IBEX_API_RATE_LIMIT_TOKEN_PER_SECOND",
        "50",
        "Requests a second one token may make, sustained.",
    ),
    (
        "IBEX_API_RATE_LIMIT_TOKEN_BURST",
        "100",
        "Requests one token may make at once.",
    ),
    (
        "IBEX_API_RATE_LIMIT_ORG_OVERRIDES",
        "",
        "Organizations with limits of their own: `ORG_ID=PER_SECOND/BURST` separated by commas, e.g. `0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70=500/1000`.",
    ),
    (
        "IBEX_API_RATE_LIMIT_TIMEOUT_MS",
        "100",
        "How long a request waits for the limiter's Redis; past it the request goes through and Redis is left alone for a second.",
    ),
    (
        "IBEX_API_IDEMPOTENCY_TTL_MS",
        "86400000",
        "How long the answer to a POST with an Idempotency-Key is kept for its retries (24 hours); expired keys are swept every minute in batches of 1,000.",
    ),
    (
        "IBEX_API_CURSOR_KEYS",
        "",
        "Secrets that sign list cursors (HMAC-SHA256), separated by commas, each at least 32 characters: the first signs, every one verifies, so a rotation puts the new key first and keeps the old one for a while. Every replica needs the same keys. Empty: a random key per process, and a cursor works only on the replica that issued it. Never logged.",
    ),
    (
        "IBEX_API_OUTBOX_POLL_MS",
        "250",
        "How often the event publisher looks for events committed by other replicas (this replica's own are published at once).",
    ),
    (
        "IBEX_API_GDPR_BATCH_SIZE",
        "1000",
        "Rows the organization-deletion job removes per transaction.",
    ),
    (
        "IBEX_API_GDPR_BATCH_PAUSE_MS",
        "0",
        "Pause between two batches of the organization-deletion job, to spare the database on large organizations.",
    ),
    (
        "IBEX_API_MEMORY_SERVICE_URL",
        "http://127.0.0.1:8020",
        "Base URL of the platform's memory service (semantic search calls `POST {url}/internal/memories/search`). Empty turns search off: it answers 503 MEMORY_SERVICE_UNAVAILABLE.",
    ),
    (
        "IBEX_API_MEMORY_SERVICE_TIMEOUT_MS",
        "2000",
        "Deadline of one memory-service search call; past it the answer is 503 MEMORY_SERVICE_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.",
    ),
    (
        "IBEX_API_S3_ENDPOINT",
        "http://127.0.0.1:9000",
        "S3-compatible object store the service uploads exports to and reads archives from (MinIO: http://minio.svc:9000).",
    ),
    (
        "IBEX_API_S3_PUBLIC_ENDPOINT",
        "",
        "Endpoint that pre-signed download URLs are signed for, as browsers reach the store (https://files.example.com). Empty: IBEX_API_S3_ENDPOINT.",
    ),
    (
        "IBEX_API_S3_REGION",
        "us-east-1",
        "Region used in SigV4 signatures.",
    ),
    (
        "IBEX_API_S3_ACCESS_KEY_ID",
        "",
        "Access key of the object store. Empty turns the object store off: exports and replays answer 503.",
    ),
    (
        "IBEX_API_S3_SECRET_ACCESS_KEY",
        "",
        "Secret key of the object store. Never logged.",
    ),
    (
        "IBEX_API_EXPORT_BUCKET",
        "ibex-exports",
        "Bucket memory exports are written to, under `{org_id}/`.",
    ),
    (
        "IBEX_API_ARCHIVE_BUCKET",
        "ibex-archives",
        "Bucket the platform's archiver writes session archives to, under `{org_id}/`.",
    ),
    (
        "IBEX_API_S3_PRESIGN_TTL_MS",
        "900000",
        "Lifetime of a pre-signed download URL (export downloads, session replays): 15 minutes.",
    ),
    (
        "IBEX_API_EXPORT_LEASE_MS",
        "30000",
        "Lease of a running export job, renewed by its worker every third of it; a job whose worker died is taken up again once its lease ran out.",
    ),
    (
        "IBEX_API_EXPORT_RETRY_WINDOW_MS",
        "600000",
        "How long a memory export keeps retrying after the object store or the database failed it, from its first start (10 minutes: a store restart of a few minutes fails no export). Past it the job ends `failed`.",
    ),
    (
        "IBEX_API_EXPORT_RETRY_MAX_BACKOFF_MS",
        "30000",
        "Longest wait between two attempts of an export; waits start at 1 s and double, each with jitter (between half and all of it).",
    ),
    (
        "IBEX_API_CLICKHOUSE_URL",
        "http://127.0.0.1:8123",
        "HTTP endpoint of the ClickHouse trace store the analytics read (`ibex.llm_traces`). Empty turns analytics off: they answer 503 ANALYTICS_UNAVAILABLE.",
    ),
    (
        "IBEX_API_CLICKHOUSE_DATABASE",
        "ibex",
        "Database holding `llm_traces`.",
    ),
    ("IBEX_API_CLICKHOUSE_USER", "default", "ClickHouse user."),
    (
        "IBEX_API_CLICKHOUSE_PASSWORD",
        "",
        "ClickHouse password. Never logged.",
    ),
    (
        "IBEX_API_CLICKHOUSE_QUERY_TIMEOUT_MS",
        "5000",
        "Deadline of one analytics query (sent as `max_execution_time` and enforced by the client); past it the answer is 503 ANALYTICS_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.",
    ),
    (
        "IBEX_API_METRICS_ADDR",
        "0.0.0.0:9464",
        "Address of the Prometheus listener (`GET /metrics`), separate from the API port. Empty turns metrics off.",
    ),
    (
        "IBEX_API_READY_CHECK_TIMEOUT_MS",
        "500",
        "Deadline of each /ready check.",
    ),
    (
        "IBEX_API_READY_CACHE_MS",
        "1000",
        "How long a /ready result is served again before the checks re-run. /ready needs no token: this bounds the auth-service probes anyone can cause to one per period. 0 re-runs them every time.",
    ),
];

/// The configuration table of `docs/configuration.md`, made from [`SETTINGS`]
/// (`ibex-api config --markdown`; a test keeps the committed file in step).
pub fn markdown_table() -> String {
    let mut table = String::from("| Variable | Default | Meaning |\n|---|---|---|\n");
    for (name, default, meaning) in SETTINGS {
        let default = if default.is_empty() {
            "(empty)".to_owned()
        } else {
            format!("`{default}`")
        };
        table.push_str(&format!("| `{name}` | {default} | {meaning} |\n"));
    }
    table
}

/// `.env.example`, made from [`SETTINGS`] (`ibex-api config --env`; a test keeps the committed
/// file in step). A setting whose default is empty is shown commented out.
pub fn env_example() -> String {
    let mut text = String::from(
        "# IBEX management API configuration. Every variable is optional; the values shown are the defaults.\n\
         # Copy to .env and export it (set -a; . ./.env; set +a) or set the variables in your deployment.\n",
    );
    for (name, default, meaning) in SETTINGS {
        let comment = if default.is_empty() { "#" } else { "" };
        text.push_str(&format!("\n# {meaning}\n{comment}{name}={default}\n"));
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub cors_allowed_origins: Vec<HeaderValue>,
    /// `None` when the variable is unset, so a dev run can pick its own default.
    pub log_format: Option<LogFormat>,
    pub log_level: String,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    pub shutdown_drain: Duration,
    pub auth_grpc_addr: String,
    pub auth_timeout: Duration,
    pub auth_connect_timeout: Duration,
    pub auth_cache_ttl: Duration,
    pub auth_cache_max_entries: usize,
    pub ready_check_timeout: Duration,
    pub ready_cache: Duration,
    pub database_url: SecretUrl,
    pub database_max_connections: u32,
    pub database_acquire_timeout: Duration,
    pub database_statement_timeout: Duration,
    /// `None` turns publishing off: events wait in the outbox.
    pub redis_url: Option<SecretUrl>,
    pub outbox_poll: Duration,
    /// `None` turns the rate limits off (also when there is no Redis).
    pub rate_limits: Option<Limits>,
    pub rate_limit_timeout: Duration,
    pub idempotency_ttl: Duration,
    /// Cursor signing keys, the signing one first; empty: a random key of this process.
    pub cursor_keys: Vec<Secret>,
    pub gdpr_batch_size: u32,
    pub gdpr_batch_pause: Duration,
    /// `None`: no metrics listener and no recorder.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `None` turns search off (503).
    pub memory_service_url: Option<String>,
    pub memory_service_timeout: Duration,
    /// `None` when no access key is set: the object store is off.
    pub s3: Option<S3Config>,
    pub export_lease: Duration,
    pub export_retry_window: Duration,
    pub export_retry_max_backoff: Duration,
    /// `None` turns analytics off (503).
    pub clickhouse: Option<ClickHouseConfig>,
}

/// A rate-limit bucket's size: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u32,
}

/// The limits in force: defaults, and organizations with their own.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub org: Limit,
    pub token: Limit,
    pub org_overrides: HashMap<Uuid, Limit>,
}

/// The trace store's settings.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: Secret,
    pub query_timeout: Duration,
}

/// The object store's settings.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: String,
    /// What download URLs are signed for; the endpoint unless set.
    pub public_endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub export_bucket: String,
    pub archive_bucket: String,
    pub presign_ttl: Duration,
}

/// A credential whose `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A connection URL that may hold a password (database, Redis). Its `Debug` and `Display` hide
/// the password, so a config printed anywhere cannot leak it; only the clients read the full value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for the connection options only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match url_password_span(&self.0) {
            Some((start, end)) => format!("{}***{}", &self.0[..start], &self.0[end..]),
            None => self.0.clone(),
        }
    }
}

/// Byte range of the password in `scheme://user:password@host…`, if there is one.
fn url_password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let authority_len = url[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - authority_start);
    let authority = &url[authority_start..authority_start + authority_len];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some((authority_start + colon + 1, authority_start + at))
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

fn err(var: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.to_owned(),
        message: message.into(),
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::from_map(HashMap::new()).expect("defaults are valid")
    }
}

impl Config {
    /// Reads the process environment (and the file it names).
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(
            std::env::vars()
                .filter(|(k, _)| k.starts_with("IBEX_API_"))
                .collect(),
        )
    }

    /// Reads the given variables (and the file they name) instead of the process environment.
    pub fn load_from(env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = env.get("IBEX_API_CONFIG_FILE").filter(|p| !p.is_empty()) {
            builder = builder
                .add_source(config::File::new(path, config::FileFormat::Toml).required(true));
        }
        let merged = builder
            .add_source(
                config::Environment::with_prefix("IBEX_API")
                    .source(Some(env.into_iter().collect())),
            )
            .build()
            .and_then(|c| c.try_deserialize::<HashMap<String, String>>())
            .map_err(|e| err("IBEX_API_CONFIG_FILE", e.to_string()))?;
        let vars = merged
            .into_iter()
            .map(|(key, value)| (format!("IBEX_API_{}", key.to_ascii_uppercase()), value))
            .collect();
        Self::from_map(vars)
    }

    fn from_map(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        if let Some(unknown) = vars
            .keys()
            .find(|k| !SETTINGS.iter().any(|(name, _, _)| name == k))
        {
            return Err(err(unknown, "unknown setting (see docs/configuration.md)"));
        }
        let v = Values(vars);
        let config = Self {
            host: v.parse("IBEX_API_HOST", "an IP address such as 0.0.0.0")?,
            port: v.number("IBEX_API_PORT", 1, u16::MAX.into())? as u16,
            cors_allowed_origins: v.origins("IBEX_API_CORS_ALLOWED_ORIGINS")?,
            log_format: match v.raw("IBEX_API_LOG_FORMAT") {
                None => None,
                Some("json") => Some(LogFormat::Json),
                Some("text") => Some(LogFormat::Text),
                Some(_) => return Err(err("IBEX_API_LOG_FORMAT", "expected `json` or `text`")),
            },
            log_level: v.log_level("IBEX_API_LOG_LEVEL")?,
            request_timeout: v.millis("IBEX_API_REQUEST_TIMEOUT_MS", 1)?,
            max_body_bytes: v.number("IBEX_API_MAX_BODY_BYTES", 1, 1 << 30)? as usize,
            max_connections: v.number("IBEX_API_MAX_CONNECTIONS", 1, 1 << 20)? as usize,
            header_read_timeout: v.millis("IBEX_API_HEADER_READ_TIMEOUT_MS", 1)?,
            shutdown_grace: v.millis("IBEX_API_SHUTDOWN_GRACE_MS", 0)?,
            shutdown_drain: v.millis("IBEX_API_SHUTDOWN_DRAIN_MS", 0)?,
            auth_grpc_addr: v.grpc_addr("IBEX_API_AUTH_GRPC_ADDR")?,
            auth_timeout: v.millis("IBEX_API_AUTH_TIMEOUT_MS", 1)?,
            auth_connect_timeout: v.millis("IBEX_API_AUTH_CONNECT_TIMEOUT_MS", 1)?,
            auth_cache_ttl: v.millis("IBEX_API_AUTH_CACHE_TTL_MS", 0)?,
            auth_cache_max_entries: v.number("IBEX_API_AUTH_CACHE_MAX_ENTRIES", 1, 10_000_000)?
                as usize,
            ready_check_timeout: v.millis("IBEX_API_READY_CHECK_TIMEOUT_MS", 1)?,
            ready_cache: v.millis("IBEX_API_READY_CACHE_MS", 0)?,
            database_url: v.database_url("IBEX_API_DATABASE_URL")?,
            database_max_connections: v.number("IBEX_API_DATABASE_MAX_CONNECTIONS", 1, 10_000)?
                as u32,
            database_acquire_timeout: v.millis("IBEX_API_DATABASE_ACQUIRE_TIMEOUT_MS", 1)?,
            database_statement_timeout: v.millis("IBEX_API_DATABASE_STATEMENT_TIMEOUT_MS", 1)?,
            redis_url: v.redis_url("IBEX_API_REDIS_URL")?,
            outbox_poll: v.millis("IBEX_API_OUTBOX_POLL_MS", 10)?,
            rate_limits: v.rate_limits()?,
            rate_limit_timeout: v.millis("IBEX_API_RATE_LIMIT_TIMEOUT_MS", 1)?,
            idempotency_ttl: v.millis("IBEX_API_IDEMPOTENCY_TTL_MS", 1_000)?,
            cursor_keys: v.cursor_keys("IBEX_API_CURSOR_KEYS")?,
            gdpr_batch_size: v.number("IBEX_API_GDPR_BATCH_SIZE", 1, 100_000)? as u32,
            gdpr_batch_pause: v.millis("IBEX_API_GDPR_BATCH_PAUSE_MS", 0)?,
            metrics_addr: match v.get("IBEX_API_METRICS_ADDR") {
                "" => None,
                _ => Some(v.parse("IBEX_API_METRICS_ADDR", "IP:PORT such as 0.0.0.0:9464")?),
            },
            memory_service_url: match v.get("IBEX_API_MEMORY_SERVICE_URL") {
                "" => None,
                _ => Some(v.http_url("IBEX_API_MEMORY_SERVICE_URL")?),
            },
            memory_service_timeout: v.millis("IBEX_API_MEMORY_SERVICE_TIMEOUT_MS", 1)?,
            s3: v.s3()?,
            export_lease: v.millis("IBEX_API_EXPORT_LEASE_MS", 300)?,
            export_retry_window: v.millis("IBEX_API_EXPORT_RETRY_WINDOW_MS", 0)?,
            export_retry_max_backoff: v.millis("IBEX_API_EXPORT_RETRY_MAX_BACKOFF_MS", 100)?,
            clickhouse: match v.get("IBEX_API_CLICKHOUSE_URL") {
                "" => None,
                _ => Some(ClickHouseConfig {
                    url: v.http_url("IBEX_API_CLICKHOUSE_URL")?,
                    database: v.get("IBEX_API_CLICKHOUSE_DATABASE").to_owned(),
                    user: v.get("IBEX_API_CLICKHOUSE_USER").to_owned(),
                    password: Secret::new(v.get("IBEX_API_CLICKHOUSE_PASSWORD")),
                    query_timeout: v.millis("IBEX_API_CLICKHOUSE_QUERY_TIMEOUT_MS", 1)?,
                }),
            },
        };
        // A slow dependency must surface as its own 503, not as the request timeout.
        for (var, value) in [
            ("IBEX_API_AUTH_TIMEOUT_MS", config.auth_timeout),
            (
                "IBEX_API_DATABASE_ACQUIRE_TIMEOUT_MS",
                config.database_acquire_timeout,
            ),
            (
                "IBEX_API_DATABASE_STATEMENT_TIMEOUT_MS",
                config.database_statement_timeout,
            ),
            (
                "IBEX_API_CLICKHOUSE_QUERY_TIMEOUT_MS",
                config
                    .clickhouse
                    .as_ref()
                    .map_or(Duration::ZERO, |c| c.query_timeout),
            ),
            (
                "IBEX_API_MEMORY_SERVICE_TIMEOUT_MS",
                // Only a service that is called needs its deadline inside the request's.
                if config.memory_service_url.is_some() {
                    config.memory_service_timeout
                } else {
                    Duration::ZERO
                },
            ),
        ] {
            if value >= config.request_timeout {
                return Err(err(var, "must be below IBEX_API_REQUEST_TIMEOUT_MS"));
            }
        }
        Ok(config)
    }
}

/// Raw string values with the table's defaults behind them.
struct Values(HashMap<String, String>);

impl Values {
    fn raw(&self, var: &str) -> Option<&str> {
        self.0.get(var).map(|v| v.trim())
    }

    fn get(&self, var: &str) -> &str {
        self.raw(var).unwrap_or_else(|| {
            SETTINGS
                .iter()
                .find(|(name, _, _)| *name == var)
                .map(|(_, default, _)| *default)
                .expect("every setting has a row in SETTINGS")
        })
    }

    fn parse<T: FromStr>(&self, var: &str, expected: &str) -> Result<T, ConfigError> {
        self.get(var)
            .parse()
            .map_err(|_| err(var, format!("expected {expected}")))
    }

    fn number(&self, var: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        let expected = format!("an integer from {min} to {max}");
        let value: u64 = self.parse(var, &expected)?;
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(err(var, expected))
        }
    }

    fn millis(&self, var: &str, min: u64) -> Result<Duration, ConfigError> {
        // One day is far beyond any sensible timeout and keeps arithmetic on deadlines safe.
        self.number(var, min, 86_400_000).map(Duration::from_millis)
    }

    fn origins(&self, var: &str) -> Result<Vec<HeaderValue>, ConfigError> {
        self.get(var)
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|origin| {
                if origin.contains('*') {
                    return Err(err(
                        var,
                        "wildcards are refused: list the dashboard's origins",
                    ));
                }
                let rest = origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"))
                    .ok_or_else(|| {
                        err(
                            var,
                            format!("`{origin}` must start with http:// or https://"),
                        )
                    })?;
                if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
                    return Err(err(
                        var,
                        format!("`{origin}` must be scheme://host[:port] with no path"),
                    ));
                }
                HeaderValue::from_str(origin)
                    .map_err(|_| err(var, format!("`{origin}` is not a valid origin")))
            })
            .collect()
    }

    fn cursor_keys(&self, var: &str) -> Result<Vec<Secret>, ConfigError> {
        self.get(var)
            .split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(|key| {
                if key.len() < 32 {
                    return Err(err(var, "each key must be at least 32 characters"));
                }
                Ok(Secret::new(key))
            })
            .collect()
    }

    fn log_level(&self, var: &str) -> Result<String, ConfigError> {
        let level = self.get(var).to_owned();
        tracing_subscriber::EnvFilter::builder()
            .parse(&level)
            .map_err(|e| err(var, format!("not a log filter: {e}")))?;
        Ok(level)
    }

    /// Checked by the driver's own parser; the error message never repeats the URL, which may
    /// hold a password.
    fn database_url(&self, var: &str) -> Result<SecretUrl, ConfigError> {
        let url = self.get(var);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(err(var, "expected a postgres:// URL"));
        }
        sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|_| err(var, "not a valid PostgreSQL connection URL"))?;
        Ok(SecretUrl::new(url))
    }

    fn rate_limits(&self) -> Result<Option<Limits>, ConfigError> {
        let enabled = match self.get("IBEX_API_RATE_LIMIT_ENABLED") {
            "true" => true,
            "false" => false,
            _ => {
                return Err(err(
                    "IBEX_API_RATE_LIMIT_ENABLED",
                    "expected `true` or `false`",
                ));
            }
        };
        let limit = |rate: &str, burst: &str| -> Result<Limit, ConfigError> {
            Ok(Limit {
                per_second: self.number(rate, 1, 1_000_000)? as f64,
                burst: self.number(burst, 1, 1_000_000)? as u32,
            })
        };
        let org = limit(
            "IBEX_API_RATE_LIMIT_ORG_PER_SECOND",
            "IBEX_API_RATE_LIMIT_ORG_BURST",
        )?;
        let token = limit(
            "IBEX_API_RATE_LIMIT_TOKEN_PER_SECOND",
            "IBEX_API_RATE_LIMIT_TOKEN_BURST",
        )?;
        let var = "IBEX_API_RATE_LIMIT_ORG_OVERRIDES";
        let expected = "expected ORG_ID=PER_SECOND/BURST, comma separated, positive integers";
        let mut org_overrides = HashMap::new();
        for entry in self
            .get(var)
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (org_id, numbers) = entry.split_once('=').ok_or_else(|| err(var, expected))?;
            let (rate, burst) = numbers.split_once('/').ok_or_else(|| err(var, expected))?;
            let org_id = Uuid::try_parse(org_id.trim()).map_err(|_| err(var, expected))?;
            let (Ok(rate), Ok(burst)) = (rate.trim().parse::<u32>(), burst.trim().parse::<u32>())
            else {
                return Err(err(var, expected));
            };
            if rate == 0 || burst == 0 {
                return Err(err(var, expected));
            }
            org_overrides.insert(
                org_id,
                Limit {
                    per_second: f64::from(rate),
                    burst,
                },
            );
        }
        Ok(enabled.then_some(Limits {
            org,
            token,
            org_overrides,
        }))
    }

    fn redis_url(&self, var: &str) -> Result<Option<SecretUrl>, ConfigError> {
        let url = self.get(var);
        if url.is_empty() {
            return Ok(None);
        }
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(err(var, "expected a redis:// or rediss:// URL"));
        }
        redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|_| err(var, "not a valid Redis URL"))?;
        Ok(Some(SecretUrl::new(url)))
    }

    /// An http:// or https:// URL with a host; a trailing slash is dropped.
    fn http_url(&self, var: &str) -> Result<String, ConfigError> {
        let url = self.get(var).trim_end_matches('/');
        let uri: http::Uri = url
            .parse()
            .map_err(|_| err(var, "expected a URL such as http://memory:8020"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) if uri.query().is_none() => Ok(url.to_owned()),
            _ => Err(err(var, "expected an http:// or https:// URL with a host")),
        }
    }

    fn bucket(&self, var: &str) -> Result<String, ConfigError> {
        let name = self.get(var);
        let valid = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !name.starts_with(['-', '.'])
            && !name.ends_with(['-', '.']);
        if valid {
            Ok(name.to_owned())
        } else {
            Err(err(
                var,
                "expected an S3 bucket name (3-63 of a-z, 0-9, '-', '.')",
            ))
        }
    }

    fn s3(&self) -> Result<Option<S3Config>, ConfigError> {
        let access_key_id = self.get("IBEX_API_S3_ACCESS_KEY_ID");
        let secret = self.get("IBEX_API_S3_SECRET_ACCESS_KEY");
        let endpoint = self.http_url("IBEX_API_S3_ENDPOINT")?;
        let public_endpoint = match self.get("IBEX_API_S3_PUBLIC_ENDPOINT") {
            "" => endpoint.clone(),
            _ => self.http_url("IBEX_API_S3_PUBLIC_ENDPOINT")?,
        };
        let export_bucket = self.bucket("IBEX_API_EXPORT_BUCKET")?;
        let archive_bucket = self.bucket("IBEX_API_ARCHIVE_BUCKET")?;
        let presign_ttl = self.millis("IBEX_API_S3_PRESIGN_TTL_MS", 1000)?;
        // SigV4 pre-signed URLs live at most 7 days.
        if presign_ttl > Duration::from_secs(7 * 86_400) {
            return Err(err("IBEX_API_S3_PRESIGN_TTL_MS", "must be at most 7 days"));
        }
        if access_key_id.is_empty() {
            return Ok(None);
        }
        if secret.is_empty() {
            return Err(err(
                "IBEX_API_S3_SECRET_ACCESS_KEY",
                "is required when IBEX_API_S3_ACCESS_KEY_ID is set",
            ));
        }
        Ok(Some(S3Config {
            endpoint,
            public_endpoint,
            region: self.get("IBEX_API_S3_REGION").to_owned(),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: Secret::new(secret),
            export_bucket,
            archive_bucket,
            presign_ttl,
        }))
    }

    fn grpc_addr(&self, var: &str) -> Result<String, ConfigError> {
        let addr = self.get(var);
        let uri: http::Uri = addr
            .parse()
            .map_err(|_| err(var, "expected a URI such as http://auth:9091"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => Ok(addr.to_owned()),
            _ => Err(err(var, "expected an http:// or https:// URI with a host")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load_from(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let config = load(&[]).unwrap();
        assert_eq!(config.port, 8010);
        assert_eq!(config.host.to_string(), "0.0.0.0");
        assert_eq!(config.auth_grpc_addr, "http://127.0.0.1:9091");
        assert!(config.cors_allowed_origins.is_empty());
        assert_eq!(config.auth_cache_ttl, Duration::ZERO);
    }

    #[test]
    fn reads_prefixed_variables() {
        let config = load(&[
            ("IBEX_API_PORT", "9000"),
            (
                "IBEX_API_CORS_ALLOWED_ORIGINS",
                "https://a.example.com, http://localhost:3000",
            ),
            ("IBEX_API_LOG_FORMAT", "text"),
        ])
        .unwrap();
        assert_eq!(config.port, 9000);
        assert_eq!(config.cors_allowed_origins.len(), 2);
        assert_eq!(config.log_format, Some(LogFormat::Text));
    }

    #[test]
    fn errors_name_the_variable() {
        let cases = [
            ("IBEX_API_PORT", "abc"),
            ("IBEX_API_PORT", "0"),
            ("IBEX_API_PORT", "70000"),
            ("IBEX_API_CORS_ALLOWED_ORIGINS", "*"),
            (
                "IBEX_API_CORS_ALLOWED_ORIGINS",
                "https://a.example.com/path",
            ),
            ("IBEX_API_CORS_ALLOWED_ORIGINS", "a.example.com"),
            ("IBEX_API_LOG_FORMAT", "xml"),
            ("IBEX_API_LOG_LEVEL", "info,[=="),
            ("IBEX_API_REQUEST_TIMEOUT_MS", "-5"),
            ("IBEX_API_AUTH_GRPC_ADDR", "localhost:9091"),
            ("IBEX_API_HOST", "example.com"),
            ("IBEX_API_PROT", "8010"),
            ("IBEX_API_DATABASE_URL", "mysql://root@db/ibex"),
            ("IBEX_API_DATABASE_URL", "postgres://u:pw@db:notaport/ibex"),
            ("IBEX_API_DATABASE_MAX_CONNECTIONS", "0"),
            ("IBEX_API_DATABASE_ACQUIRE_TIMEOUT_MS", "10000"),
            ("IBEX_API_DATABASE_STATEMENT_TIMEOUT_MS", "60000"),
            ("IBEX_API_REDIS_URL", "http://cache:6379"),
            ("IBEX_API_REDIS_URL", "redis://:pw@cache:notaport"),
            ("IBEX_API_GDPR_BATCH_SIZE", "0"),
            ("IBEX_API_RATE_LIMIT_ENABLED", "yes"),
            ("IBEX_API_RATE_LIMIT_ORG_BURST", "0"),
            ("IBEX_API_RATE_LIMIT_ORG_OVERRIDES", "not-a-uuid=1/2"),
            (
                "IBEX_API_RATE_LIMIT_ORG_OVERRIDES",
                "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70=100",
            ),
            (
                "IBEX_API_RATE_LIMIT_ORG_OVERRIDES",
                "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70=0/10",
            ),
            ("IBEX_API_EXPORT_RETRY_MAX_BACKOFF_MS", "5"),
        ];
        for (var, value) in cases {
            let error = load(&[(var, value)]).expect_err(var);
            assert_eq!(error.var, var, "{value}: {error}");
        }
    }

    #[test]
    fn rate_limits_have_defaults_overrides_and_an_off_switch() {
        let limits = load(&[]).unwrap().rate_limits.expect("on by default");
        assert_eq!((limits.org.per_second, limits.org.burst), (100.0, 200));
        assert_eq!((limits.token.per_second, limits.token.burst), (50.0, 100));
        let org = Uuid::from_u128(7);
        let other = Uuid::from_u128(8);
        let overrides = format!(" {org}=500/1000 , {other}=1/1 ");
        let limits = load(&[("IBEX_API_RATE_LIMIT_ORG_OVERRIDES", &overrides)])
            .unwrap()
            .rate_limits
            .unwrap();
        assert_eq!(limits.org_overrides[&org].burst, 1000);
        assert_eq!(limits.org_overrides[&other].per_second, 1.0);
        assert!(
            load(&[("IBEX_API_RATE_LIMIT_ENABLED", "false")])
                .unwrap()
                .rate_limits
                .is_none()
        );
    }

    #[test]
    fn database_passwords_never_print() {
        let config = load(&[(
            "IBEX_API_DATABASE_URL",
            "postgres://ibex:s3cr%40t@db.internal:5432/ibex?sslmode=require",
        )])
        .unwrap();
        let printed = format!("{config:?} {}", config.database_url);
        assert!(!printed.contains("s3cr"), "{printed}");
        assert!(printed.contains("postgres://ibex:***@db.internal:5432/ibex?sslmode=require"));
        assert_eq!(
            SecretUrl::new("postgres://ibex@h/db").redacted(),
            "postgres://ibex@h/db"
        );
        let error = load(&[(
            "IBEX_API_DATABASE_URL",
            "postgres://u:hunter2@h:99999999/db",
        )])
        .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn auth_deadline_must_undercut_the_request_deadline() {
        let error = load(&[("IBEX_API_AUTH_TIMEOUT_MS", "10000")]).unwrap_err();
        assert_eq!(error.var, "IBEX_API_AUTH_TIMEOUT_MS");
    }

    #[test]
    fn a_file_is_read_and_the_environment_wins() {
        let path =
            std::env::temp_dir().join(format!("ibex-api-config-{}.toml", std::process::id()));
        std::fs::write(&path, "port = 9100\nrequest_timeout_ms = 20000\n").unwrap();
        let file = path.to_str().unwrap();
        let config = load(&[("IBEX_API_CONFIG_FILE", file), ("IBEX_API_PORT", "9200")]).unwrap();
        assert_eq!(config.port, 9200);
        assert_eq!(config.request_timeout, Duration::from_secs(20));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_object_store_needs_both_keys_and_never_prints_its_secret() {
        assert!(load(&[]).unwrap().s3.is_none(), "off by default");
        let e = load(&[("IBEX_API_S3_ACCESS_KEY_ID", "AK")]).unwrap_err();
        assert_eq!(e.var, "IBEX_API_S3_SECRET_ACCESS_KEY");
        let config = load(&[
            ("IBEX_API_S3_ACCESS_KEY_ID", "AK"),
            ("IBEX_API_S3_SECRET_ACCESS_KEY", "TOP-SECRET-KEY"),
            ("IBEX_API_S3_ENDPOINT", "http://minio.svc:9000/"),
        ])
        .unwrap();
        let s3 = config.s3.as_ref().unwrap();
        assert_eq!(s3.endpoint, "http://minio.svc:9000");
        assert_eq!(s3.public_endpoint, s3.endpoint, "defaults to the endpoint");
        assert_eq!(s3.presign_ttl, Duration::from_secs(900));
        assert!(!format!("{config:?}").contains("TOP-SECRET-KEY"));
        for (var, value) in [
            ("IBEX_API_EXPORT_BUCKET", "Bad_Bucket"),
            ("IBEX_API_S3_PUBLIC_ENDPOINT", "files.example.com"),
            ("IBEX_API_S3_PRESIGN_TTL_MS", "604800001"),
            ("IBEX_API_MEMORY_SERVICE_URL", "memory:8020"),
        ] {
            assert_eq!(load(&[(var, value)]).unwrap_err().var, var);
        }
        let e = load(&[("IBEX_API_MEMORY_SERVICE_TIMEOUT_MS", "20000")]).unwrap_err();
        assert_eq!(e.var, "IBEX_API_MEMORY_SERVICE_TIMEOUT_MS");
    }
}
