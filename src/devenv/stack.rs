//! The development stack `--dev` runs against, as one value: a throwaway PostgreSQL (migrated
//! and seeded), redis-server, S3 server (with the session archives), the memory-service and
//! auth-service stand-ins and a clickhouse-server (seeded with 30 days of traffic), each unless
//! the configuration names a real one. Everything it started stops when it is dropped. Also the
//! commands that run one of them alone (`ibex-api dev-database`, …).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use uuid::Uuid;

use super::clickhouse::TempClickHouse;
use super::postgres::TempPostgres;
use super::redis::TempRedis;
use super::s3::TempS3;
use crate::auth::{dev, token};
use crate::config::{Config, LogFormat, SecretUrl};
use crate::{db, server, telemetry};

/// What `--dev` started; dropping it stops the servers and removes the cluster.
#[derive(Debug)]
pub struct DevStack {
    /// The token the development auth service accepts.
    pub token: String,
    auth_addr: SocketAddr,
    _postgres: Option<TempPostgres>,
    _redis: Option<TempRedis>,
    _s3: Option<TempS3>,
    _clickhouse: Option<TempClickHouse>,
}

impl DevStack {
    /// Starts what `config` does not name, points `config` at it, and keeps the service on
    /// loopback (a known token must not be usable from the network). `token`: the one the
    /// development auth service accepts; a fresh one when `None`.
    pub async fn start(config: &mut Config, token: Option<String>) -> Result<Self, String> {
        let token = dev_token(token)?;
        let postgres = dev_database(config).await?;
        let redis = dev_redis(config).await;
        let s3 = dev_object_store(config)?;
        if let Some(storage) = crate::storage::Storage::from_config(config.object_store.as_ref())? {
            super::seed_archives(&storage).await?;
        }
        dev_memory_service(config).await?;
        let clickhouse = dev_clickhouse(config).await;
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let auth_addr = dev::spawn(loopback, token.clone())
            .await
            .map_err(|e| e.to_string())?;
        config.auth.grpc_addr = format!("http://{auth_addr}");
        config.server.host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Metrics on loopback too, on a free port unless one was asked for.
        if std::env::var_os("IBEX_API_METRICS_ADDR").is_none() {
            config.observability.metrics_addr =
                Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
        }
        tracing::warn!(
            auth = %auth_addr,
            "DEVELOPMENT AUTH SERVICE ENABLED: the printed token and the tokens minted with it are accepted; never use this outside a laptop"
        );
        Ok(Self {
            token,
            auth_addr,
            _postgres: postgres,
            _redis: redis,
            _s3: s3,
            _clickhouse: clickhouse,
        })
    }

    /// Where the development auth service listens.
    pub fn auth_addr(&self) -> SocketAddr {
        self.auth_addr
    }

    /// What `--dev` prints: where everything is, and curls that work against the seed.
    pub fn banner(&self, config: &Config) -> String {
        let token = &self.token;
        let base = format!("http://127.0.0.1:{}", config.server.port);
        let auth = format!("-H 'Authorization: Bearer {token}'");
        let agent = super::DEV_AGENT_ID;
        let session = super::dev_session_id(0, 1);
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:00:00Z").to_string();
        let ago = |days: i64| {
            (chrono::Utc::now() - chrono::Duration::days(days))
                .format("%Y-%m-%dT%H:00:00Z")
                .to_string()
        };
        let (month_ago, week_ago) = (ago(30), ago(7));
        format!(
            "\n  IBEX dev mode is ON (loopback only; database {}; redis {}; object store {}; memory service {}; clickhouse {}). Try:\n\
             \n  curl {auth} {base}/v1/agents\
             \n  curl {auth} {base}/v1/agents/{agent}/memories\
             \n  curl {auth} -H 'Content-Type: application/json' -d '{{\"query\": \"refund\"}}' {base}/v1/agents/{agent}/memories/search\
             \n  curl {auth} -H 'Content-Type: application/json' -d '{{\"format\": \"csv\"}}' {base}/v1/agents/{agent}/memories/export\
             \n      then GET the job at the printed Location; its download_url downloads with a plain curl\
             \n  curl {auth} {base}/v1/sessions\
             \n  curl {auth} {base}/v1/sessions/{session}/replay   (its url downloads the archive)\
             \n  curl {auth} '{base}/v1/analytics/usage?start={month_ago}&end={now}'\
             \n  curl {auth} '{base}/v1/analytics/latency?start={week_ago}&end={now}&granularity=hour&percentile=99'\n\
             \n  IBEX_DEV_TOKEN={token}\n",
            config.database.url,
            config
                .redis
                .url
                .as_ref()
                .map_or("off: events stay in the outbox".to_owned(), |u| u
                    .to_string()),
            config
                .object_store
                .as_ref()
                .map_or("off".to_owned(), |s| s.endpoint.clone()),
            config.memory_service.url.as_deref().unwrap_or("off"),
            config
                .analytics
                .as_ref()
                .map_or("off: analytics answer 503", |c| c.url.as_str()),
        )
    }
}

pub fn dev_token(given: Option<String>) -> Result<String, String> {
    match given {
        Some(t) if token::is_well_formed_pat(&t) => Ok(t),
        Some(_) => Err("the dev token must look like ibex_pat_<uuid>_<secret>".into()),
        None => Ok(dev::generate_token()),
    }
}

/// A throwaway server from `start` (run off the async threads: it waits for the server), unless
/// `var` names a real one (`None`).
async fn throwaway<T: Send + 'static>(
    var: &str,
    start: fn() -> Result<T, String>,
) -> Option<Result<T, String>> {
    if std::env::var_os(var).is_some() {
        return None;
    }
    let started = tokio::task::spawn_blocking(start).await;
    Some(
        started
            .map_err(|e| e.to_string())
            .and_then(|started| started),
    )
}

/// The Redis `--dev` publishes to: IBEX_API_REDIS_URL when set, else a throwaway
/// `redis-server` when the binary exists, else none (events wait in the outbox; said once).
async fn dev_redis(config: &mut Config) -> Option<TempRedis> {
    match throwaway("IBEX_API_REDIS_URL", TempRedis::start).await? {
        Ok(server) => {
            config.redis.url = Some(SecretUrl::new(server.url()));
            Some(server)
        }
        Err(problem) => {
            // The publisher says once that events stay in the outbox.
            tracing::debug!(%problem, "no throwaway Redis");
            config.redis.url = None;
            None
        }
    }
}

/// The database `--dev` runs against: IBEX_API_DATABASE_URL when it is set, else a throwaway
/// cluster that lives as long as the returned handle. Either way migrated and seeded.
async fn dev_database(config: &mut Config) -> Result<Option<TempPostgres>, String> {
    let cluster = if std::env::var_os("IBEX_API_DATABASE_URL").is_some() {
        None
    } else {
        let cluster = tokio::task::spawn_blocking(TempPostgres::start)
            .await
            .map_err(|e| e.to_string())??;
        config.database.url = SecretUrl::new(cluster.url("postgres"));
        Some(cluster)
    };
    let url = config.database.url.expose().to_owned();
    db::migrate::run(&url)
        .await
        .map_err(|e| format!("{}: {e}", config.database.url))?;
    super::seed(&url).await?;
    Ok(cluster)
}

/// The object store `--dev` exports to: the configured one when IBEX_API_S3_ACCESS_KEY_ID is
/// set, else an embedded S3 server (checking signatures like MinIO) with both buckets.
fn dev_object_store(config: &mut Config) -> Result<Option<TempS3>, String> {
    if config.object_store.is_some() {
        return Ok(None);
    }
    let server = TempS3::start()?;
    // The process's own settings (the URL lifetime, say) with the server's on top.
    let mut vars: std::collections::HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("IBEX_API_"))
        .collect();
    vars.extend(
        server
            .settings()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
    );
    config.object_store = Config::load_from(vars)
        .map_err(|e| e.to_string())?
        .object_store;
    Ok(Some(server))
}

/// The trace store `--dev` reads analytics from: IBEX_API_CLICKHOUSE_URL when set, else a
/// throwaway `clickhouse-server` when the binary exists (its table created and 30 days of traffic
/// seeded for the dev agents), else none (analytics answer 503; said once).
async fn dev_clickhouse(config: &mut Config) -> Option<TempClickHouse> {
    let server = match throwaway("IBEX_API_CLICKHOUSE_URL", TempClickHouse::start).await? {
        Ok(server) => server,
        Err(problem) => {
            tracing::warn!(%problem, "no throwaway ClickHouse (Debian: apt-get install clickhouse-server): analytics answer 503");
            config.analytics = None;
            return None;
        }
    };
    let client = clickhouse::Client::default()
        .with_url(server.url())
        .with_validation(false);
    let agents = super::dev_agent_ids().map(|id| id.to_string());
    let now = chrono::Utc::now().timestamp() as u32;
    let seeded = async {
        super::clickhouse::create_schema(&client).await?;
        super::clickhouse::seed_traffic(
            &client,
            &crate::auth::dev::DEV_ORG_ID.to_string(),
            &agents,
            now,
            30,
            60_000,
        )
        .await
    };
    if let Err(problem) = seeded.await {
        tracing::warn!(%problem, "the throwaway ClickHouse could not be seeded: analytics answer 503");
        config.analytics = None;
        return Some(server);
    }
    let mut vars: std::collections::HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("IBEX_API_"))
        .collect();
    vars.insert("IBEX_API_CLICKHOUSE_URL".into(), server.url());
    config.analytics = Config::load_from(vars).ok().and_then(|c| c.analytics);
    Some(server)
}

/// The memory service `--dev` searches with: IBEX_API_MEMORY_SERVICE_URL when set, else the
/// development stand-in (PostgreSQL full-text search) on a free loopback port.
async fn dev_memory_service(config: &mut Config) -> Result<(), String> {
    if std::env::var_os("IBEX_API_MEMORY_SERVICE_URL").is_some() {
        return Ok(());
    }
    let db = db::Database::connect_lazy(&config.database)?;
    let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let addr = crate::domains::memories::dev_service::spawn(loopback, db)
        .await
        .map_err(|e| format!("dev memory service: {e}"))?;
    config.memory_service.url = Some(format!("http://{addr}"));
    Ok(())
}

/// `ibex-api dev-database`: a throwaway PostgreSQL, migrated and seeded, until a shutdown signal.
pub async fn run_database() -> Result<(), String> {
    telemetry::init(LogFormat::Text, "info");
    let mut config = Config::load().map_err(|e| e.to_string())?;
    let cluster = dev_database(&mut config).await?;
    println!("IBEX_API_DATABASE_URL={}", config.database.url.expose());
    server::shutdown_signal().await;
    drop(cluster);
    Ok(())
}

pub async fn run_clickhouse() -> Result<(), String> {
    telemetry::init(LogFormat::Text, "info");
    let server = tokio::task::spawn_blocking(TempClickHouse::start)
        .await
        .map_err(|e| e.to_string())??;
    let client = clickhouse::Client::default()
        .with_url(server.url())
        .with_validation(false);
    super::clickhouse::create_schema(&client).await?;
    println!("IBEX_API_CLICKHOUSE_URL={}", server.url());
    server::shutdown_signal().await;
    drop(server);
    Ok(())
}

pub async fn run_s3() -> Result<(), String> {
    telemetry::init(LogFormat::Text, "info");
    let server = TempS3::start()?;
    for (name, value) in server.settings() {
        println!("{name}={value}");
    }
    server::shutdown_signal().await;
    drop(server);
    Ok(())
}

/// `ORG_ID[/USER_ID]=PLAINTEXT`: a token of another organization, with every permission (the
/// soak's tenants).
pub fn parse_org_token(value: &str) -> Result<(Uuid, Option<Uuid>, String), String> {
    let expected = "--org-token needs ORG_ID[/USER_ID]=ibex_pat_...";
    let (ids, plaintext) = value.split_once('=').ok_or(expected)?;
    let (org, user) = match ids.split_once('/') {
        Some((org, user)) => (org, Some(user)),
        None => (ids, None),
    };
    let org = Uuid::try_parse(org).map_err(|_| expected)?;
    let user = user
        .map(|u| Uuid::try_parse(u).map_err(|_| expected))
        .transpose()?;
    if !token::is_well_formed_pat(plaintext) {
        return Err(expected.into());
    }
    Ok((org, user, plaintext.to_owned()))
}

/// `ibex-api dev-auth-server`: the development auth service alone, until a shutdown signal.
pub async fn run_auth_server(
    listen: SocketAddr,
    token: Option<String>,
    org_tokens: Vec<(Uuid, Option<Uuid>, String)>,
) -> Result<(), String> {
    telemetry::init(LogFormat::Text, "info");
    let token = dev_token(token)?;
    let addr = dev::spawn_with(listen, token.clone(), org_tokens)
        .await
        .map_err(|e| e.to_string())?;
    tracing::warn!(%addr, "development auth service: accepts its token and the tokens minted with it");
    println!("IBEX_DEV_AUTH_ADDR=http://{addr}\nIBEX_DEV_TOKEN={token}");
    server::shutdown_signal().await;
    Ok(())
}
