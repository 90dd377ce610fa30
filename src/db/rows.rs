//! Decoding rows into the domains' types: each type says once which columns it reads.

use tokio_postgres::Row;

/// A type read from one row of a statement's result, by column name.
pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self, super::DbError>;
}
