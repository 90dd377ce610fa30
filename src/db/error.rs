//! What a database failure means to a client. No PostgreSQL message reaches a client or a log line:
//! messages and details can quote row data ("Key (slug)=(…) already exists"); only SQLSTATE codes
//! and constraint names are logged.

use sqlx::error::DatabaseError;

use crate::error::{ApiError, Conflict};

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) => from_database(db.as_ref()),
            sqlx::Error::RowNotFound => ApiError::not_found("No resource matches this path."),
            e if is_unavailable(e) => {
                if matches!(e, sqlx::Error::PoolTimedOut) {
                    crate::observability::metrics::record_acquire_timeout();
                }
                tracing::warn!(reason = %describe_unavailable(e), "database unavailable: request refused");
                ApiError::ServiceUnavailable
            }
            other => {
                tracing::error!(kind = error_kind(other), "database error");
                ApiError::Internal
            }
        }
    }
}

/// The request may be retried: PostgreSQL is down, saturated, restarting, or cancelled a
/// statement that ran past `statement_timeout`.
fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// The connection was dead before the statement reached a live server: closed by a restart
/// (EOF, a reset, or the server's own `admin_shutdown`/`crash_shutdown` notice read first).
pub fn is_dead_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57P01" | "57P02")),
        _ => false,
    }
}

/// A short cause for logs and `/ready`, with no URL and no password in it.
pub fn describe_unavailable(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::PoolTimedOut => "no connection within the acquire timeout".into(),
        sqlx::Error::PoolClosed => "the pool is closed".into(),
        sqlx::Error::Io(io) => format!("connection failed: {}", io.kind()),
        sqlx::Error::Tls(_) => "TLS handshake failed".into(),
        sqlx::Error::Database(db) => format!(
            "database error {}",
            db.code().as_deref().unwrap_or("unknown")
        ),
        other => error_kind(other).into(),
    }
}

fn error_kind(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Configuration(_) => "configuration",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "decode",
        sqlx::Error::ColumnNotFound(_) | sqlx::Error::ColumnIndexOutOfBounds { .. } => "column",
        sqlx::Error::TypeNotFound { .. } => "type not found",
        sqlx::Error::Migrate(_) => "migration",
        _ => "other",
    }
}

fn from_database(db: &dyn DatabaseError) -> ApiError {
    let code = db.code();
    from_sqlstate(code.as_deref().unwrap_or(""), db.constraint().unwrap_or(""))
}

/// One mapping from SQLSTATE to the envelope, for both drivers.
fn from_sqlstate(code: &str, constraint: &str) -> ApiError {
    match code {
        // query_canceled (statement_timeout), admin shutdown, cannot connect now, too many
        // connections, serialization failure, deadlock: all worth a retry.
        "57014" | "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" => {
            tracing::warn!(
                sqlstate = code,
                "database refused or cancelled the statement"
            );
            ApiError::ServiceUnavailable
        }
        c if c.starts_with("08") => {
            tracing::warn!(sqlstate = code, "database connection failed");
            ApiError::ServiceUnavailable
        }
        // A constraint no domain rule mapped: still never a 500.
        "23505" => {
            tracing::info!(sqlstate = code, constraint, "unmapped unique violation");
            ApiError::Conflict(Conflict::Generic)
        }
        "23503" => {
            tracing::info!(sqlstate = code, constraint, "foreign key violation");
            ApiError::not_found("A resource this request refers to does not exist.")
        }
        // Check violations and data exceptions (bad encoding, NUL, value too long): bad input
        // that slipped past validation.
        c if c == "23514" || c == "23502" || c.starts_with("22") => {
            tracing::info!(sqlstate = code, constraint, "database refused a value");
            ApiError::validation("The request contains a value the service cannot store.")
        }
        // Row-level security refused a write: a tenancy bug in the caller's code, never a pass.
        "42501" => {
            tracing::error!(sqlstate = code, "permission denied by the database");
            ApiError::Internal
        }
        _ => {
            tracing::error!(sqlstate = code, constraint, "database error");
            ApiError::Internal
        }
    }
}

/// A failure of the request path's driver (tokio-postgres behind deadpool): drawing a
/// connection, or a statement.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A statement that must return a row returned none.
    #[error("no row")]
    NoRow,
    /// A column held a value this binary does not know (an enum's text, say).
    #[error("cannot decode {0}")]
    Decode(&'static str),
}

impl DbError {
    /// The name of the constraint a statement violated, for a domain to map to its own code.
    pub fn violated_constraint(&self) -> Option<&str> {
        match self {
            DbError::Postgres(e) => e.as_db_error().and_then(|db| db.constraint()),
            _ => None,
        }
    }

    /// An insert into one of the organization's tables refused: `unique` (the table's live-key
    /// constraint) is `conflict`; its organization gone (the `_org_id_fkey` constraint) is a 404.
    pub fn on_insert(self, unique: &str, conflict: crate::error::Conflict) -> ApiError {
        match self.violated_constraint() {
            Some(name) if name == unique => ApiError::Conflict(conflict),
            Some(name) if name.ends_with("_org_id_fkey") => {
                ApiError::not_found("The caller's organization does not exist.")
            }
            _ => self.into(),
        }
    }

    /// The connection was dead before the statement reached a live server (closed by a
    /// restart): nothing of the request ran, so it may be retried on another connection.
    pub fn is_dead_connection(&self) -> bool {
        match self {
            DbError::Postgres(e) => postgres_connection_lost(e),
            DbError::Pool(deadpool_postgres::PoolError::Backend(e)) => postgres_connection_lost(e),
            _ => false,
        }
    }

    /// A short cause for logs and `/ready`, with no URL, password or row data in it.
    pub fn describe(&self) -> String {
        use deadpool_postgres::PoolError;
        match self {
            DbError::Pool(PoolError::Timeout(_)) => {
                "no connection within the acquire timeout".into()
            }
            DbError::Pool(PoolError::Closed) => "the pool is closed".into(),
            DbError::Pool(PoolError::Backend(e)) | DbError::Postgres(e) => describe_postgres(e),
            DbError::Pool(_) => "pool failure".into(),
            DbError::NoRow => "no row".into(),
            DbError::Decode(what) => format!("cannot decode {what}"),
        }
    }
}

/// A connection attempt the server refused or could not take yet: worth another try.
pub(super) fn refused_connect(error: &tokio_postgres::Error) -> bool {
    io_source(error).is_some() || matches!(error.code().map(|c| c.code()), Some("57P03" | "53300"))
}

fn postgres_connection_lost(error: &tokio_postgres::Error) -> bool {
    error.is_closed()
        || io_source(error).is_some()
        || matches!(error.code().map(|c| c.code()), Some("57P01" | "57P02"))
}

fn io_source(error: &tokio_postgres::Error) -> Option<&std::io::Error> {
    std::error::Error::source(error).and_then(|s| s.downcast_ref::<std::io::Error>())
}

fn describe_postgres(error: &tokio_postgres::Error) -> String {
    if let Some(code) = error.code() {
        format!("database error {}", code.code())
    } else if let Some(io) = io_source(error) {
        format!("connection failed: {}", io.kind())
    } else if error.is_closed() {
        "connection closed".into()
    } else {
        "driver error".into()
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        use deadpool_postgres::PoolError;
        match &error {
            DbError::NoRow => ApiError::not_found("No resource matches this path."),
            DbError::Postgres(e) if e.as_db_error().is_some() => {
                let db = e.as_db_error().expect("checked");
                from_sqlstate(db.code().code(), db.constraint().unwrap_or(""))
            }
            DbError::Pool(PoolError::Timeout(_)) => {
                crate::observability::metrics::record_acquire_timeout();
                tracing::warn!(reason = %error.describe(), "database unavailable: request refused");
                ApiError::ServiceUnavailable
            }
            DbError::Pool(PoolError::Backend(_) | PoolError::Closed) => {
                tracing::warn!(reason = %error.describe(), "database unavailable: request refused");
                ApiError::ServiceUnavailable
            }
            DbError::Postgres(e) if postgres_connection_lost(e) => {
                tracing::warn!(reason = %error.describe(), "database unavailable: request refused");
                ApiError::ServiceUnavailable
            }
            other => {
                // Decoding a column into the wrong Rust type, a parameter of the wrong type: a
                // bug of ours, never the client's.
                tracing::error!(reason = %other.describe(), "database error");
                ApiError::Internal
            }
        }
    }
}
