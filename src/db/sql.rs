//! A statement built from optional filters, with its parameters numbered as they are added.

use tokio_postgres::types::ToSql;

use crate::wire::pagination::Position;

/// SQL text and the values of its `$n` placeholders, in order.
#[derive(Default)]
pub struct Sql {
    text: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            params: Vec::new(),
        }
    }

    /// Appends SQL text (never a value: values go through [`Sql::push_bind`]).
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends the placeholder of a new parameter.
    pub fn push_bind<T: ToSql + Sync + Send + 'static>(&mut self, value: T) -> &mut Self {
        self.params.push(Box::new(value));
        self.text.push('$');
        self.text.push_str(&self.params.len().to_string());
        self
    }

    /// Adds a parameter without a placeholder: for a fixed statement whose `$n` are written
    /// out, the parameters in order.
    pub fn arg<T: ToSql + Sync + Send + 'static>(&mut self, value: T) -> &mut Self {
        self.params.push(Box::new(value));
        self
    }

    /// Ends a newest-first list query: the rows after `after` (creation time, then id), at most
    /// `limit` of them. One order for every such list, so each walks its `(org_id, created_at
    /// DESC, id DESC)` index from the cursor.
    pub fn newest_first(&mut self, after: Option<&Position>, limit: i64) -> &mut Self {
        if let Some(after) = after {
            self.push(" AND (created_at, id) < (")
                .push_bind(after.created_at)
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        self.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(limit)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parameters, as [`crate::db::OrgTx`] takes them.
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}
