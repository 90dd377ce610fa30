//! Schema migrations, embedded from `migrations/` at build time. Only `ibex-api migrate` (a
//! deploy step), `--dev` and the tests apply them; serving never changes the schema.

use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The newest migration this binary knows: the schema version it expects.
pub fn expected_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Applies every pending migration; a current schema is a no-op. Returns how many were applied.
pub async fn run(url: &str) -> Result<usize, String> {
    let options =
        PgConnectOptions::from_str(url).map_err(|_| "not a valid PostgreSQL URL".to_owned())?;
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(|e| format!("cannot connect: {}", super::error::describe_unavailable(&e)))?;
    let before = applied_version(&mut conn).await.ok().flatten().unwrap_or(0);
    MIGRATOR
        .run(&mut conn)
        .await
        .map_err(|e| format!("migration failed: {e}"))?;
    let applied = MIGRATOR.iter().filter(|m| m.version > before).count();
    let _ = conn.close().await;
    Ok(applied)
}

/// The newest successfully applied migration, `None` when none ever ran.
async fn applied_version(conn: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(&mut *conn)
        .await?;
    if table.is_none() {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *conn)
        .await
}

/// `Ok` when the schema is exactly the binary's; `Err` says what is wrong, for `/ready`.
pub async fn check_current(conn: &mut PgConnection) -> Result<String, String> {
    let expected = expected_version();
    let applied = applied_version(conn)
        .await
        .map_err(|e| super::error::describe_unavailable(&e))?;
    match applied {
        Some(v) if v == expected => Ok(format!("reachable, schema version {v}")),
        Some(v) if v > expected => Ok(format!(
            "reachable, schema version {v} is newer than this binary's {expected}"
        )),
        Some(v) => Err(format!(
            "schema version {v} is older than this binary's {expected}: run `ibex-api migrate`"
        )),
        None => Err(format!(
            "schema not migrated (expected version {expected}): run `ibex-api migrate`"
        )),
    }
}

/// `ibex-api migrate`: applies pending migrations to IBEX_API_DATABASE_URL and says where the
/// schema stands.
pub async fn command() -> Result<(), String> {
    let config = crate::config::Config::load().map_err(|e| e.to_string())?;
    let applied = run(config.database.url.expose())
        .await
        .map_err(|e| format!("{}: {e}", config.database.url))?;
    println!(
        "schema at version {} ({applied} migration(s) applied)",
        expected_version()
    );
    Ok(())
}
