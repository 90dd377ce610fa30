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
    let code = code.as_deref().unwrap_or("");
    let constraint = db.constraint().unwrap_or("");
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

/// The name of the constraint a statement violated, for a domain to map to its own code.
pub fn violated_constraint(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}
