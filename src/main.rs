//! `ibex-api`: the IBEX management API server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use uuid::Uuid;

use axum::Router;
use ibex_api::auth::{dev, token};
use ibex_api::config::{Config, LogFormat, SecretUrl};
use ibex_api::devenv::clickhouse::TempClickHouse;
use ibex_api::devenv::postgres::TempPostgres;
use ibex_api::devenv::redis::TempRedis;
use ibex_api::devenv::s3::TempS3;
use ibex_api::{app, db, devenv, healthcheck, server, telemetry};

const USAGE: &str = "\
usage:
  ibex-api                          serve, configured by IBEX_API_* variables (see docs/configuration.md)
  ibex-api --dev [--dev-token TOKEN]
                                    serve on loopback with an embedded development auth service
                                    (its token printed at start-up; tokens minted through
                                    /v1/tokens work too) and a throwaway
                                    PostgreSQL (unless IBEX_API_DATABASE_URL is set), migrated
                                    and seeded; removed again on exit
  ibex-api migrate                  apply pending schema migrations to IBEX_API_DATABASE_URL
  ibex-api dev-database             run only a throwaway PostgreSQL (migrated, seeded) and print
                                    its URL; removed on exit
  ibex-api dev-clickhouse           run only a throwaway clickhouse-server with the trace table
                                    (empty) and print its URL; removed on exit
  ibex-api dev-s3                   run only the development S3 server (signature-checking, both
                                    buckets) and print its IBEX_API_S3_* settings; removed on exit
  ibex-api dev-auth-server [--listen 127.0.0.1:9091] [--token TOKEN] [--org-token ORG[/USER]=TOKEN ...]
                                    run only the development auth service (loopback only)
  ibex-api openapi                  print the OpenAPI document (what /openapi.json serves)
  ibex-api config --markdown|--env  print the settings as docs/configuration.md's table or as
                                    .env.example
  ibex-api healthcheck              exit 0 when the local server's /health answers 200";

/// What the command line asked for.
enum Command {
    Serve {
        dev_token: Option<Option<String>>,
    },
    DevAuthServer {
        listen: SocketAddr,
        token: Option<String>,
        /// More tokens, of other organizations: (org, user, plaintext).
        org_tokens: Vec<(Uuid, Option<Uuid>, String)>,
    },
    Healthcheck,
    OpenApi,
    /// The settings table: `true` as Markdown, `false` as `.env.example`.
    ConfigTable(bool),
    Migrate,
    DevDatabase,
    DevS3,
    DevClickHouse,
    Help,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let flag_value = |i: usize| {
        args.get(i + 1)
            .cloned()
            .ok_or_else(|| format!("{} needs a value", args[i]))
    };
    match args.first().map(String::as_str) {
        None => Ok(Command::Serve { dev_token: None }),
        Some("-h" | "--help" | "help") => Ok(Command::Help),
        Some("healthcheck") if args.len() == 1 => Ok(Command::Healthcheck),
        Some("migrate") if args.len() == 1 => Ok(Command::Migrate),
        Some("openapi") if args.len() == 1 => Ok(Command::OpenApi),
        Some("config") if args.len() == 2 && args[1] == "--markdown" => {
            Ok(Command::ConfigTable(true))
        }
        Some("config") if args.len() == 2 && args[1] == "--env" => Ok(Command::ConfigTable(false)),
        Some("dev-database") if args.len() == 1 => Ok(Command::DevDatabase),
        Some("dev-s3") if args.len() == 1 => Ok(Command::DevS3),
        Some("dev-clickhouse") if args.len() == 1 => Ok(Command::DevClickHouse),
        Some("--dev") => match &args[1..] {
            [] => Ok(Command::Serve {
                dev_token: Some(None),
            }),
            [flag, _] if flag == "--dev-token" => Ok(Command::Serve {
                dev_token: Some(Some(flag_value(1)?)),
            }),
            _ => Err("unexpected arguments after --dev".into()),
        },
        Some("dev-auth-server") => {
            let mut listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9091);
            let mut token = None;
            let mut org_tokens = Vec::new();
            let mut i = 1;
            while i < args.len() {
                match args[i].as_str() {
                    "--org-token" => org_tokens.push(parse_org_token(&flag_value(i)?)?),
                    "--listen" => {
                        listen = flag_value(i)?
                            .parse()
                            .map_err(|_| "--listen needs IP:PORT")?
                    }
                    "--token" => token = Some(flag_value(i)?),
                    other => return Err(format!("unknown argument `{other}`")),
                }
                i += 2;
            }
            Ok(Command::DevAuthServer {
                listen,
                token,
                org_tokens,
            })
        }
        Some(other) => Err(format!("unknown argument `{other}`")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(command) => command,
        Err(problem) => {
            eprintln!("ibex-api: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Command::Healthcheck => match Config::load() {
            Ok(config) => healthcheck::run(&config).await,
            Err(e) => Err(e.to_string()),
        },
        Command::OpenApi => print_openapi(),
        Command::ConfigTable(markdown) => {
            let text = if markdown {
                ibex_api::config::markdown_table()
            } else {
                ibex_api::config::env_example()
            };
            print!("{text}");
            Ok(())
        }
        Command::Migrate => run_migrate().await,
        Command::DevDatabase => run_dev_database().await,
        Command::DevS3 => run_dev_s3().await,
        Command::DevClickHouse => run_dev_clickhouse().await,
        Command::DevAuthServer {
            listen,
            token,
            org_tokens,
        } => run_dev_auth_server(listen, token, org_tokens).await,
        Command::Serve { dev_token } => run_server(dev_token).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("ibex-api: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn dev_token(given: Option<String>) -> Result<String, String> {
    match given {
        Some(t) if token::is_well_formed_pat(&t) => Ok(t),
        Some(_) => Err("the dev token must look like ibex_pat_<uuid>_<secret>".into()),
        None => Ok(dev::generate_token()),
    }
}

/// Prints the document the server serves, so SDKs can be generated without running it.
fn print_openapi() -> Result<(), String> {
    let document = ibex_api::app::document()
        .to_pretty_json()
        .map_err(|e| format!("cannot render the OpenAPI document: {e}"))?;
    println!("{document}");
    Ok(())
}

async fn run_migrate() -> Result<(), String> {
    let config = Config::load().map_err(|e| e.to_string())?;
    let applied = db::migrate::run(config.database_url.expose())
        .await
        .map_err(|e| format!("{}: {e}", config.database_url))?;
    println!(
        "schema at version {} ({applied} migration(s) applied)",
        db::migrate::expected_version()
    );
    Ok(())
}

async fn run_dev_database() -> Result<(), String> {
    telemetry::init(LogFormat::Text, "info");
    let mut config = Config::load().map_err(|e| e.to_string())?;
    let cluster = dev_database(&mut config).await?;
    println!("IBEX_API_DATABASE_URL={}", config.database_url.expose());
    server::shutdown_signal().await;
    drop(cluster);
    Ok(())
}

async fn run_dev_clickhouse() -> Result<(), String> {
    telemetry::init(LogFormat::Text, "info");
    let server = tokio::task::spawn_blocking(TempClickHouse::start)
        .await
        .map_err(|e| e.to_string())??;
    let client = clickhouse::Client::default()
        .with_url(server.url())
        .with_validation(false);
    ibex_api::devenv::clickhouse::create_schema(&client).await?;
    println!("IBEX_API_CLICKHOUSE_URL={}", server.url());
    server::shutdown_signal().await;
    drop(server);
    Ok(())
}

async fn run_dev_s3() -> Result<(), String> {
    telemetry::init(LogFormat::Text, "info");
    let server = TempS3::start()?;
    for (name, value) in server.settings() {
        println!("{name}={value}");
    }
    server::shutdown_signal().await;
    drop(server);
    Ok(())
}

/// The Redis `--dev` publishes to: IBEX_API_REDIS_URL when set, else a throwaway
/// `redis-server` when the binary exists, else none (events wait in the outbox; said once).
async fn dev_redis(config: &mut Config) -> Option<TempRedis> {
    if std::env::var_os("IBEX_API_REDIS_URL").is_some() {
        return None;
    }
    let started = tokio::task::spawn_blocking(TempRedis::start)
        .await
        .map_err(|e| e.to_string())
        .and_then(|started| started);
    match started {
        Ok(server) => {
            config.redis_url = Some(SecretUrl::new(server.url()));
            Some(server)
        }
        Err(problem) => {
            // The publisher says once that events stay in the outbox.
            tracing::debug!(%problem, "no throwaway Redis");
            config.redis_url = None;
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
        config.database_url = SecretUrl::new(cluster.url("postgres"));
        Some(cluster)
    };
    let url = config.database_url.expose().to_owned();
    db::migrate::run(&url)
        .await
        .map_err(|e| format!("{}: {e}", config.database_url))?;
    devenv::seed(&url).await?;
    Ok(cluster)
}

/// The object store `--dev` exports to: the configured one when IBEX_API_S3_ACCESS_KEY_ID is
/// set, else an embedded S3 server (checking signatures like MinIO) with both buckets.
fn dev_object_store(config: &mut Config) -> Result<Option<TempS3>, String> {
    if config.s3.is_some() {
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
    config.s3 = Config::load_from(vars).map_err(|e| e.to_string())?.s3;
    Ok(Some(server))
}

/// The trace store `--dev` reads analytics from: IBEX_API_CLICKHOUSE_URL when set, else a
/// throwaway `clickhouse-server` when the binary exists (its table created and 30 days of traffic
/// seeded for the dev agents), else none (analytics answer 503; said once).
async fn dev_clickhouse(config: &mut Config) -> Option<TempClickHouse> {
    if std::env::var_os("IBEX_API_CLICKHOUSE_URL").is_some() {
        return None;
    }
    let started = tokio::task::spawn_blocking(TempClickHouse::start)
        .await
        .map_err(|e| e.to_string())
        .and_then(|started| started);
    let server = match started {
        Ok(server) => server,
        Err(problem) => {
            tracing::warn!(%problem, "no throwaway ClickHouse (Debian: apt-get install clickhouse-server): analytics answer 503");
            config.clickhouse = None;
            return None;
        }
    };
    let client = clickhouse::Client::default()
        .with_url(server.url())
        .with_validation(false);
    let agents = ibex_api::devenv::dev_agent_ids().map(|id| id.to_string());
    let now = chrono::Utc::now().timestamp() as u32;
    let seeded = async {
        ibex_api::devenv::clickhouse::create_schema(&client).await?;
        ibex_api::devenv::clickhouse::seed_traffic(
            &client,
            &ibex_api::auth::dev::DEV_ORG_ID.to_string(),
            &agents,
            now,
            30,
            60_000,
        )
        .await
    };
    if let Err(problem) = seeded.await {
        tracing::warn!(%problem, "the throwaway ClickHouse could not be seeded: analytics answer 503");
        config.clickhouse = None;
        return Some(server);
    }
    let mut vars: std::collections::HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("IBEX_API_"))
        .collect();
    vars.insert("IBEX_API_CLICKHOUSE_URL".into(), server.url());
    config.clickhouse = Config::load_from(vars).ok().and_then(|c| c.clickhouse);
    Some(server)
}

/// The memory service `--dev` searches with: IBEX_API_MEMORY_SERVICE_URL when set, else the
/// development stand-in (PostgreSQL full-text search) on a free loopback port.
async fn dev_memory_service(config: &mut Config) -> Result<(), String> {
    if std::env::var_os("IBEX_API_MEMORY_SERVICE_URL").is_some() {
        return Ok(());
    }
    let db = db::Database::connect_lazy(config)?;
    let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let addr = ibex_api::domains::memories::dev_service::spawn(loopback, db)
        .await
        .map_err(|e| format!("dev memory service: {e}"))?;
    config.memory_service_url = Some(format!("http://{addr}"));
    Ok(())
}

async fn run_server(dev_auth: Option<Option<String>>) -> Result<(), String> {
    let mut config = Config::load().map_err(|e| e.to_string())?;
    let dev_mode = dev_auth.is_some();
    let default_format = if dev_auth.is_some() {
        LogFormat::Text
    } else {
        LogFormat::Json
    };
    telemetry::init(
        config.log_format.unwrap_or(default_format),
        &config.log_level,
    );

    // Dropped (the servers stopped, the cluster removed) when serving ends.
    let mut _dev_cluster = None;
    let mut _dev_redis = None;
    let mut _dev_s3 = None;
    let mut _dev_clickhouse = None;
    if let Some(given) = dev_auth {
        let token = dev_token(given)?;
        _dev_cluster = dev_database(&mut config).await?;
        _dev_redis = dev_redis(&mut config).await;
        _dev_s3 = dev_object_store(&mut config)?;
        if let Some(storage) = ibex_api::storage::Storage::from_config(&config)? {
            devenv::seed_archives(&storage).await?;
        }
        dev_memory_service(&mut config).await?;
        _dev_clickhouse = dev_clickhouse(&mut config).await;
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let auth_addr = dev::spawn(loopback, token.clone())
            .await
            .map_err(|e| e.to_string())?;
        config.auth_grpc_addr = format!("http://{auth_addr}");
        // A known token must not be usable from the network.
        config.host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Metrics on loopback too, on a free port unless one was asked for.
        if std::env::var_os("IBEX_API_METRICS_ADDR").is_none() {
            config.metrics_addr = Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
        }
        tracing::warn!(
            auth = %auth_addr,
            "DEVELOPMENT AUTH SERVICE ENABLED: the printed token and the tokens minted with it are accepted; never use this outside a laptop"
        );
        let base = format!("http://127.0.0.1:{}", config.port);
        let auth = format!("-H 'Authorization: Bearer {token}'");
        let agent = ibex_api::devenv::DEV_AGENT_ID;
        let session = ibex_api::devenv::dev_session_id(0, 1);
        let hour = chrono::Utc::now().format("%Y-%m-%dT%H:00:00Z");
        let now = format!("{hour}");
        let ago = |days: i64| {
            (chrono::Utc::now() - chrono::Duration::days(days))
                .format("%Y-%m-%dT%H:00:00Z")
                .to_string()
        };
        let (month_ago, week_ago) = (ago(30), ago(7));
        println!(
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
            config.database_url,
            config
                .redis_url
                .as_ref()
                .map_or("off: events stay in the outbox".to_owned(), |u| u
                    .to_string()),
            config
                .s3
                .as_ref()
                .map_or("off".to_owned(), |s| s.endpoint.clone()),
            config.memory_service_url.as_deref().unwrap_or("off"),
            config
                .clickhouse
                .as_ref()
                .map_or("off: analytics answer 503", |c| c.url.as_str()),
        );
    }

    let (app, readiness, db) = app::from_config(&config, Router::new())?;
    if let Some(metrics) =
        ibex_api::observability::metrics::start(&config, app::metric_samplers(&db)).await?
    {
        tracing::info!(addr = %metrics, "metrics listening");
        if dev_mode {
            // Not println!: nobody may be reading stdout any more, and that must not kill us.
            use std::io::Write;
            let _ = writeln!(
                std::io::stdout(),
                "  Metrics: curl http://{metrics}/metrics\n"
            );
        }
    }
    let addr = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, auth = %config.auth_grpc_addr, "ibex-api listening");
    server::serve(
        listener,
        app,
        readiness,
        (&config).into(),
        server::shutdown_signal(),
    )
    .await;
    ibex_api::observability::traces::flush();
    Ok(())
}

/// `ORG_ID[/USER_ID]=PLAINTEXT`: a token of another organization, with every permission (the
/// soak's tenants).
fn parse_org_token(value: &str) -> Result<(Uuid, Option<Uuid>, String), String> {
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

async fn run_dev_auth_server(
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
