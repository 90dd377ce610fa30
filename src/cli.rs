//! The command line: what `ibex-api` can be asked to do, parsed from its arguments.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use uuid::Uuid;

use crate::devenv::stack::parse_org_token;

pub const USAGE: &str = "\
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
pub enum Command {
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

pub fn parse(args: &[String]) -> Result<Command, String> {
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
