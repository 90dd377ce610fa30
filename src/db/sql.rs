//! A statement built from optional filters, with its parameters numbered as they are added.

use tokio_postgres::types::ToSql;

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
