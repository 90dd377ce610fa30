//! PostgreSQL: the platform state.

use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;
use super::secret::SecretUrl;
use super::setting::{Setting, Values};

settings! {
    /// PostgreSQL's settings.
    pub struct DatabaseConfig {
        /// PostgreSQL connection URL (postgres://user:password@host:port/db?sslmode=require for
        /// TLS). The password is never logged. The login role must be a member of `ibex_app`.
        URL = text("IBEX_API_DATABASE_URL", "postgres://ibex@127.0.0.1:5432/ibex")
            => url: SecretUrl, by postgres_url;
        /// Most connections the request pool opens to PostgreSQL (the background jobs' pool adds
        /// 3).
        MAX_CONNECTIONS = number("IBEX_API_DATABASE_MAX_CONNECTIONS", "10", 1, 10_000)
            => max_connections: u32;
        /// Longest a request waits for a pooled connection (or a new one); past it the answer is
        /// 503 SERVICE_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.
        ACQUIRE_TIMEOUT = millis("IBEX_API_DATABASE_ACQUIRE_TIMEOUT_MS", "500", 1)
            => acquire_timeout: Duration;
        /// PostgreSQL `statement_timeout` of the service's connections; a statement running longer
        /// is cancelled and answered 503 SERVICE_UNAVAILABLE. Must be below
        /// IBEX_API_REQUEST_TIMEOUT_MS.
        STATEMENT_TIMEOUT = millis("IBEX_API_DATABASE_STATEMENT_TIMEOUT_MS", "5000", 1)
            => statement_timeout: Duration;
    }
}

/// Checked by the driver's own parser; the error never repeats the URL, which may hold a
/// password.
fn postgres_url(v: &Values, setting: &Setting) -> Result<SecretUrl, ConfigError> {
    let url = v.get(setting);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(setting.error("expected a postgres:// URL"));
    }
    sqlx::postgres::PgConnectOptions::from_str(url)
        .map_err(|_| setting.error("not a valid PostgreSQL connection URL"))?;
    Ok(SecretUrl::new(url))
}
