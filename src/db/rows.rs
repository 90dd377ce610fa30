//! Decoding rows into the domains' types: each type says once which columns it reads.

use tokio_postgres::Row;

/// A type read from one row of a statement's result, by column name.
pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self, super::DbError>;
}

/// [`FromRow`] for a struct whose fields are columns of the same names:
/// `from_row! { Session { id, agent_id, ... } }`. A field that is not one column follows the
/// braces as `field: |row| expression` (the expression may use `?` on the row's `try_get`).
macro_rules! from_row {
    ($type:ident { $($column:ident),* $(,)? } $($field:ident: |$row:ident| $value:expr),* $(,)?) => {
        impl $crate::db::FromRow for $type {
            fn from_row(row: &tokio_postgres::Row) -> Result<Self, $crate::db::DbError> {
                Ok(Self {
                    $($column: row.try_get(stringify!($column))?,)*
                    $($field: {
                        let $row = row;
                        $value
                    },)*
                })
            }
        }
    };
}
pub(crate) use from_row;
