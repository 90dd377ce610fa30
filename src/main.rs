//! `ibex-api`: the IBEX management API server. A table of contents: what each command does is
//! in the module it names.

use std::process::ExitCode;

use ibex_api::cli::{self, Command, USAGE};
use ibex_api::config::{Config, LogFormat};
use ibex_api::devenv::stack::{self, DevStack};
use ibex_api::{application, config, db, healthcheck, server, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
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
        Command::Serve { dev_token } => serve(dev_token).await,
        Command::Healthcheck => match Config::load() {
            Ok(config) => healthcheck::run(&config).await,
            Err(e) => Err(e.to_string()),
        },
        Command::OpenApi => ibex_api::app::document()
            .to_pretty_json()
            .map(|document| println!("{document}"))
            .map_err(|e| format!("cannot render the OpenAPI document: {e}")),
        Command::ConfigTable(markdown) => {
            let table = match markdown {
                true => config::markdown_table(),
                false => config::env_example(),
            };
            print!("{table}");
            Ok(())
        }
        Command::Migrate => db::migrate::command().await,
        Command::DevDatabase => stack::run_database().await,
        Command::DevS3 => stack::run_s3().await,
        Command::DevClickHouse => stack::run_clickhouse().await,
        Command::DevAuthServer {
            listen,
            token,
            org_tokens,
        } => stack::run_auth_server(listen, token, org_tokens).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("ibex-api: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGTERM or Ctrl-C; with `--dev` (`dev_token` given), on the development stack,
/// which stops with it.
async fn serve(dev_token: Option<Option<String>>) -> Result<(), String> {
    let mut config = Config::load().map_err(|e| e.to_string())?;
    let default_format = match dev_token {
        Some(_) => LogFormat::Text,
        None => LogFormat::Json,
    };
    telemetry::init(
        config.observability.log_format.unwrap_or(default_format),
        &config.observability.log_level,
    );
    let dev = match dev_token {
        Some(token) => Some(DevStack::start(&mut config, token).await?),
        None => None,
    };
    let application = application::bind(&config).await?;
    if let Some(dev) = &dev {
        // Not println!: nobody may be reading stdout any more, and that must not kill us.
        use std::io::Write;
        let mut banner = dev.banner(&config);
        if let Some(metrics) = application.metrics_addr() {
            banner.push_str(&format!("  Metrics: curl http://{metrics}/metrics\n"));
        }
        let _ = writeln!(std::io::stdout(), "{banner}");
    }
    tracing::info!(auth = %config.auth.grpc_addr, "serving");
    application.run_until(server::shutdown_signal()).await;
    drop(dev);
    Ok(())
}
