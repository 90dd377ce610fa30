//! JSON object bodies read field by field against their declaration ([`Body`]), so that every
//! problem is a 400 naming its field: unknown fields (a typo in a PATCH must not silently do
//! nothing), `null` where a value is required, wrong types, lengths, patterns, and NUL
//! characters (PostgreSQL refuses them in text and jsonb). Absent and `null` are told apart, as
//! PATCH needs. Errors never quote a value.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::body::MAX_JSON_NUMBER;
pub use super::body::{Body, Field, Kind, Shape, Text};
use crate::error::{ApiError, FieldError};

/// Longest field name quoted back in an error: names come from the client.
const MAX_QUOTED_NAME: usize = 64;

/// A body being read against its [`Body`] declaration: the typed getters take a field's name
/// and apply its declared rule; problems are collected, and [`Fields::finish`] reports them all.
#[derive(Debug)]
pub struct Fields {
    body: &'static Body,
    map: Map<String, Value>,
    errors: Vec<FieldError>,
    /// The declared fields the body carries, in declaration order (for the audit trail).
    sent: Vec<&'static str>,
}

impl Body {
    /// Starts reading `body`: it must be an object; required fields missing and read-only
    /// fields present are recorded now, the rest as each getter runs.
    pub fn read(&'static self, body: Value) -> Result<Fields, ApiError> {
        let Value::Object(map) = body else {
            return Err(ApiError::validation(
                "The request body must be a JSON object.",
            ));
        };
        let mut fields = Fields {
            body: self,
            map,
            errors: Vec::new(),
            sent: Vec::new(),
        };
        for field in self.fields {
            let present = fields.map.contains_key(field.name);
            if present && !matches!(field.kind, Kind::ReadOnly(_)) {
                fields.sent.push(field.name);
            }
            if let Kind::ReadOnly(message) = field.kind {
                if present {
                    fields.map.remove(field.name);
                    fields.error(field.name, "READ_ONLY", message);
                }
            } else if field.required && !present {
                fields.error(field.name, "REQUIRED", "is required");
            }
        }
        Ok(fields)
    }
}

impl Fields {
    /// The declared rule of `name`; a name the declaration lacks is a bug, caught by any test
    /// that reads the body.
    fn kind(&self, name: &str) -> Kind {
        self.body
            .field(name)
            .unwrap_or_else(|| panic!("{} declares no field {name}", self.body.name))
            .kind
    }

    /// A field for a rule the schema cannot state (a time in the future), after its declared
    /// rule passed: report with [`Fields::reject`].
    pub fn reject(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.error(field, code, message);
    }

    fn error(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            code,
            message: message.into(),
        });
    }

    pub fn text(&mut self, name: &str) -> Option<String> {
        match self.kind(name) {
            Kind::Text(rule) => self.read_text(name, rule),
            other => panic!("{name} is {other:?}, not text"),
        }
    }

    /// `Some(None)` for `null` (clear the value).
    pub fn nullable_text(&mut self, name: &str) -> Option<Option<String>> {
        let Kind::NullableText(rule) = self.kind(name) else {
            panic!("{name} is not nullable text");
        };
        match self.map.get(name) {
            None => None,
            Some(Value::Null) => {
                self.map.remove(name);
                Some(None)
            }
            Some(_) => self.read_text(name, rule).map(Some),
        }
    }

    pub fn choice(&mut self, name: &str) -> Option<&'static str> {
        let Kind::Choice { values, .. } = self.kind(name) else {
            panic!("{name} is not a choice");
        };
        self.read_choice(name, values)
    }

    pub fn object(&mut self, name: &str) -> Option<Map<String, Value>> {
        let Kind::Object { max_bytes } = self.kind(name) else {
            panic!("{name} is not an object");
        };
        self.read_object(name, max_bytes)
    }

    pub fn integer(&mut self, name: &str) -> Option<i64> {
        let Kind::Integer { min, max } = self.kind(name) else {
            panic!("{name} is not an integer");
        };
        self.read_integer(name, min, max)
    }

    pub fn number(&mut self, name: &str) -> Option<f64> {
        let Kind::Number { min, max } = self.kind(name) else {
            panic!("{name} is not a number");
        };
        self.read_number(name, min, max)
    }

    pub fn text_list(&mut self, name: &str) -> Option<Vec<String>> {
        let Kind::TextList { item, max_items } = self.kind(name) else {
            panic!("{name} is not a text list");
        };
        self.read_text_list(name, item, max_items)
    }

    /// The chosen values, each once, in the order first sent.
    pub fn choice_list(&mut self, name: &str) -> Option<Vec<&'static str>> {
        let Kind::ChoiceList { values, .. } = self.kind(name) else {
            panic!("{name} is not a choice list");
        };
        let value = self.map.remove(name)?;
        let Value::Array(items) = value else {
            self.wrong_type(name, &value, "an array");
            return None;
        };
        let mut chosen: Vec<&'static str> = Vec::with_capacity(items.len());
        for item in items {
            let Some(one) = item
                .as_str()
                .and_then(|text| values.iter().find(|v| **v == text))
            else {
                self.error(
                    name,
                    "INVALID_VALUE",
                    format!("items must be one of {}", values.join(", ")),
                );
                return None;
            };
            if !chosen.contains(one) {
                chosen.push(one);
            }
        }
        Some(chosen)
    }

    pub fn uuid(&mut self, name: &str) -> Option<Uuid> {
        assert!(
            matches!(self.kind(name), Kind::Uuid),
            "{name} is not a UUID"
        );
        let value = self.map.remove(name)?;
        let id = value.as_str().and_then(|text| Uuid::try_parse(text).ok());
        if id.is_none() {
            if value.is_null() {
                self.error(name, "NOT_NULLABLE", "must not be null");
            } else {
                self.error(name, "INVALID_UUID", "must be a UUID");
            }
        }
        id
    }

    /// The ids, each once, in the order first sent.
    pub fn uuid_list(&mut self, name: &str) -> Option<Vec<Uuid>> {
        let Kind::UuidList { max_items } = self.kind(name) else {
            panic!("{name} is not a UUID list");
        };
        let items = self.take_array(name, max_items, "an array")?;
        let mut ids: Vec<Uuid> = Vec::with_capacity(items.len());
        for item in items {
            let Some(id) = item.as_str().and_then(|text| Uuid::try_parse(text).ok()) else {
                self.error(name, "INVALID_UUID", "items must be UUIDs");
                return None;
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Some(ids)
    }

    /// Reads the object `name` by its own declaration with `read`; its problems join this
    /// body's, named `name.field`.
    pub fn nested<T>(&mut self, name: &str, read: impl FnOnce(&mut Fields) -> T) -> Option<T> {
        let Kind::Nested(body) = self.kind(name) else {
            panic!("{name} is not a nested body");
        };
        let value = self.map.remove(name)?;
        if !value.is_object() {
            self.wrong_type(name, &value, "an object");
            return None;
        }
        let mut inner = body.read(value).expect("an object");
        let value = read(&mut inner);
        let errors = match inner.finish() {
            Ok(_) => return Some(value),
            Err(ApiError::Validation { field_errors, .. }) => field_errors,
            Err(_) => Vec::new(),
        };
        for e in errors {
            self.error(&format!("{name}.{}", e.field), e.code, e.message);
        }
        None
    }

    pub fn timestamp(&mut self, name: &str) -> Option<DateTime<Utc>> {
        assert!(
            matches!(self.kind(name), Kind::Timestamp),
            "{name} is not a timestamp"
        );
        let value = self.map.remove(name)?;
        let at = value
            .as_str()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|at| at.with_timezone(&Utc));
        if at.is_none() {
            if value.is_null() {
                self.error(name, "NOT_NULLABLE", "must not be null");
            } else {
                self.error(name, "INVALID_FORMAT", "must be an RFC 3339 timestamp");
            }
        }
        at
    }

    /// A text field: `None` when absent or invalid (the error is recorded).
    fn read_text(&mut self, name: &str, rule: Text) -> Option<String> {
        let value = self.map.remove(name)?;
        let Value::String(text) = value else {
            self.wrong_type(name, &value, "a string");
            return None;
        };
        if text.contains('\0') {
            self.error(name, "INVALID_CHARACTER", "must not contain NUL characters");
            return None;
        }
        let chars = text.chars().count();
        if chars < rule.min_chars || chars > rule.max_chars {
            self.error(
                name,
                "INVALID_LENGTH",
                format!(
                    "must be {} to {} characters long",
                    rule.min_chars, rule.max_chars
                ),
            );
            return None;
        }
        if let Some(max_bytes) = rule.max_bytes.filter(|max| text.len() > *max) {
            self.error(
                name,
                "TOO_LARGE",
                format!("must be at most {max_bytes} bytes of UTF-8"),
            );
            return None;
        }
        if let Some(shape) = rule.shape {
            if !(shape.check)(&text) {
                let description = shape.description;
                self.error(name, "INVALID_FORMAT", format!("must be {description}"));
                return None;
            }
        }
        Some(text)
    }

    /// A text field whose value must be one of `allowed`.
    fn read_choice(&mut self, name: &str, allowed: &[&'static str]) -> Option<&'static str> {
        let value = self.map.remove(name)?;
        let chosen = value
            .as_str()
            .and_then(|text| allowed.iter().find(|a| **a == text).copied());
        if chosen.is_none() {
            if value.is_null() {
                self.error(name, "NOT_NULLABLE", "must not be null");
            } else {
                self.error(
                    name,
                    "INVALID_VALUE",
                    format!("must be one of {}", allowed.join(", ")),
                );
            }
        }
        chosen
    }

    /// A JSON object field of at most `max_bytes` serialized, with no NUL anywhere in it.
    fn read_object(&mut self, name: &str, max_bytes: usize) -> Option<Map<String, Value>> {
        let value = self.map.remove(name)?;
        let Value::Object(object) = value else {
            self.wrong_type(name, &value, "an object");
            return None;
        };
        let value = Value::Object(object);
        if contains_nul(&value) {
            self.error(name, "INVALID_CHARACTER", "must not contain NUL characters");
            return None;
        }
        if !numbers_in_range(&value) {
            self.error(
                name,
                "OUT_OF_RANGE",
                format!("numbers must lie within ±{MAX_JSON_NUMBER:e}"),
            );
            return None;
        }
        let size = serde_json::to_vec(&value)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > max_bytes {
            self.error(
                name,
                "TOO_LARGE",
                format!("must be at most {max_bytes} bytes as JSON"),
            );
            return None;
        }
        match value {
            Value::Object(object) => Some(object),
            _ => unreachable!("checked above"),
        }
    }

    /// A number field within `min..=max`.
    fn read_number(&mut self, name: &str, min: f64, max: f64) -> Option<f64> {
        let value = self.map.remove(name)?;
        let Some(number) = value.as_f64() else {
            self.wrong_type(name, &value, "a number");
            return None;
        };
        if !(min..=max).contains(&number) {
            self.error(name, "OUT_OF_RANGE", format!("must be from {min} to {max}"));
            return None;
        }
        Some(number)
    }

    /// A whole number within `min..=max` (written `3` or `3.0`, as JSON Schema's integers).
    fn read_integer(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        let value = self.map.remove(name)?;
        let whole = value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        });
        match whole {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.error(name, "OUT_OF_RANGE", format!("must be from {min} to {max}"));
                None
            }
            None => {
                self.wrong_type(name, &value, "an integer");
                None
            }
        }
    }

    /// The array sent as `name`, if it is one of at most `max_items` items (`expected` names
    /// what it should have been).
    fn take_array(&mut self, name: &str, max_items: usize, expected: &str) -> Option<Vec<Value>> {
        let value = self.map.remove(name)?;
        let Value::Array(items) = value else {
            self.wrong_type(name, &value, expected);
            return None;
        };
        if items.len() > max_items {
            let message = format!("must have at most {max_items} items");
            self.error(name, "TOO_MANY", message);
            return None;
        }
        Some(items)
    }

    /// An array of at most `max_items` texts, each following `rule`.
    fn read_text_list(&mut self, name: &str, rule: Text, max_items: usize) -> Option<Vec<String>> {
        let items = self.take_array(name, max_items, "an array of strings")?;
        let mut texts = Vec::with_capacity(items.len());
        for item in items {
            // Each item is checked like a field of its own, under the array's name.
            let mut one = Fields {
                body: self.body,
                map: Map::from_iter([(name.to_owned(), item)]),
                errors: Vec::new(),
                sent: Vec::new(),
            };
            let text = one.read_text(name, rule);
            if let Some(error) = one.errors.pop() {
                self.errors.push(error);
                return None;
            }
            texts.extend(text);
        }
        Some(texts)
    }

    fn wrong_type(&mut self, name: &str, value: &Value, expected: &str) {
        if value.is_null() {
            self.error(name, "NOT_NULLABLE", "must not be null");
        } else {
            self.error(name, "INVALID_TYPE", format!("must be {expected}"));
        }
    }

    /// Ends reading: every field not taken is unknown. `Ok` only when nothing was wrong, with
    /// the names of the declared fields the body carried (what a change changes; never values).
    pub fn finish(mut self) -> Result<Vec<&'static str>, ApiError> {
        let unknown: Vec<String> = self.map.keys().map(|k| quotable(k)).collect();
        debug_assert!(
            unknown.iter().all(|k| self.body.field(k).is_none()),
            "{} declares a field its parser never reads: {unknown:?}",
            self.body.name
        );
        for name in unknown {
            self.error(&name, "UNKNOWN_FIELD", "is not a field of this body");
        }
        if self.errors.is_empty() {
            Ok(self.sent)
        } else {
            Err(ApiError::fields(self.errors))
        }
    }
}

/// A client-supplied field name made safe to quote: bounded, control characters replaced.
fn quotable(name: &str) -> String {
    name.chars()
        .take(MAX_QUOTED_NAME)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn numbers_in_range(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() <= MAX_JSON_NUMBER),
        Value::Array(items) => items.iter().all(numbers_in_range),
        Value::Object(map) => map.values().all(numbers_in_range),
        _ => true,
    }
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// An email address as operators type them: one `@`, a non-empty local part of at most 64
/// characters, a dotted domain, no spaces or control characters. Deliverability is the invite
/// mail's problem, not the API's.
pub fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.chars().count() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub const EMAIL: Text = Text::chars(3, 320).shaped(Shape {
    check: is_email,
    description: "an email address",
    pattern: r"^[^@\s\u0000-\u001f\u007f-\u009f]{1,64}@[^@\s.\u0000-\u001f\u007f-\u009f][^@\s\u0000-\u001f\u007f-\u009f]*\.[^@\s.\u0000-\u001f\u007f-\u009f]+$",
});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes<T: std::fmt::Debug>(result: Result<T, ApiError>) -> Vec<(String, &'static str)> {
        match result {
            Err(ApiError::Validation { field_errors, .. }) => field_errors
                .into_iter()
                .map(|e| (e.field, e.code))
                .collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    static TEST_BODY: Body = Body {
        name: "Test",
        doc: "",
        fields: &[
            Field::new("name", Kind::Text(Text::chars(1, 10))),
            Field::new("slug", Kind::Text(Text::chars(1, 10))),
            Field::new("config", Kind::Object { max_bytes: 100 }),
            Field::new("huge", Kind::Object { max_bytes: 1000 }),
            Field::read_only("locked", "cannot be changed"),
            Field::new("missing", Kind::Text(Text::chars(0, 1))).required(),
        ],
    };

    #[test]
    fn every_problem_names_its_field() {
        let mut fields = TEST_BODY
            .read(json!({
                "name": "",
                "slug": 7,
                "config": {"nested": ["ok", "bad\u{0}"]},
                "nmae": "typo",
                "locked": true,
            }))
            .unwrap();
        assert!(fields.text("name").is_none());
        assert!(fields.text("slug").is_none());
        assert!(fields.object("config").is_none());
        assert!(fields.text("missing").is_none());
        let got = codes(fields.finish());
        assert_eq!(
            got,
            [
                ("locked".into(), "READ_ONLY"),
                ("missing".into(), "REQUIRED"),
                ("name".into(), "INVALID_LENGTH"),
                ("slug".into(), "INVALID_TYPE"),
                ("config".into(), "INVALID_CHARACTER"),
                ("nmae".into(), "UNKNOWN_FIELD"),
            ]
        );
    }

    #[test]
    fn numbers_that_could_not_be_read_back_are_refused() {
        let mut fields = TEST_BODY
            .read(json!({
                "config": {"big": 1e300, "small": -1e300, "tiny": 5e-324, "deep": [[1.5]]},
                "huge": {"n": [-1.7976931348623157e308]},
                "missing": "",
            }))
            .unwrap();
        assert!(fields.object("config").is_some());
        assert!(fields.object("huge").is_none());
        assert_eq!(fields.text("missing").as_deref(), Some(""));
        assert_eq!(codes(fields.finish()), [("huge".into(), "OUT_OF_RANGE")]);
    }

    #[test]
    fn lengths_count_characters_and_null_is_not_absent() {
        static THREE: Body = Body {
            name: "Three",
            doc: "",
            fields: &[
                Field::new("name", Kind::Text(Text::chars(3, 3))),
                Field::new("config", Kind::Object { max_bytes: 10 }),
            ],
        };
        let mut fields = THREE.read(json!({"name": "ééé", "config": null})).unwrap();
        assert_eq!(fields.text("name").as_deref(), Some("ééé"));
        assert!(fields.object("config").is_none());
        assert_eq!(codes(fields.finish()), [("config".into(), "NOT_NULLABLE")]);
        assert!(THREE.read(json!([1])).is_err());
    }
}
