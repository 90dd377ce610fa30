//! JSON object bodies read field by field, so that every problem is a 400 naming its field:
//! unknown fields (a typo in a PATCH must not silently do nothing), `null` where a value is
//! required, wrong types, lengths, patterns, and NUL characters (PostgreSQL refuses them in text
//! and jsonb). Absent and `null` are told apart, as PATCH needs. Errors never quote a value.

use serde_json::{Map, Value};

use crate::error::{ApiError, FieldError};

/// Longest field name quoted back in an error: names come from the client.
const MAX_QUOTED_NAME: usize = 64;

/// A predicate on a whole text value, and how to describe what it wants.
pub type Shape = (fn(&str) -> bool, &'static str);

/// Bounds and shape of a text field; lengths count characters, as JSON Schema does.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub min_chars: usize,
    pub max_chars: usize,
    /// A bound on the UTF-8 size as well, where storage counts bytes.
    pub max_bytes: Option<usize>,
    pub shape: Option<Shape>,
}

impl Text {
    pub const fn chars(min_chars: usize, max_chars: usize) -> Self {
        Self {
            min_chars,
            max_chars,
            max_bytes: None,
            shape: None,
        }
    }

    pub const fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    pub const fn shaped(mut self, check: fn(&str) -> bool, description: &'static str) -> Self {
        self.shape = Some((check, description));
        self
    }
}

#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    pub fn new(body: Value) -> Result<Self, ApiError> {
        match body {
            Value::Object(map) => Ok(Self {
                map,
                errors: Vec::new(),
            }),
            _ => Err(ApiError::validation(
                "The request body must be a JSON object.",
            )),
        }
    }

    /// Takes a field as it was sent, for a domain's own checks (reported with [`Fields::reject`]).
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name)
    }

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

    /// A field that must be present and not null.
    pub fn required<T>(
        &mut self,
        name: &str,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<T> {
        if !self.map.contains_key(name) {
            self.error(name, "REQUIRED", "is required");
            return None;
        }
        read(self)
    }

    /// A text field: `None` when absent or invalid (the error is recorded).
    pub fn text(&mut self, name: &str, rule: Text) -> Option<String> {
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
        if let Some((check, description)) = rule.shape {
            if !check(&text) {
                self.error(name, "INVALID_FORMAT", format!("must be {description}"));
                return None;
            }
        }
        Some(text)
    }

    /// A text field that may be `null` (to clear it): `Some(None)` for null.
    pub fn nullable_text(&mut self, name: &str, rule: Text) -> Option<Option<String>> {
        match self.map.get(name) {
            None => None,
            Some(Value::Null) => {
                self.map.remove(name);
                Some(None)
            }
            Some(_) => self.text(name, rule).map(Some),
        }
    }

    /// A text field whose value must be one of `allowed`.
    pub fn choice(&mut self, name: &str, allowed: &[&'static str]) -> Option<&'static str> {
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
    pub fn object(&mut self, name: &str, max_bytes: usize) -> Option<Map<String, Value>> {
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
    pub fn number(&mut self, name: &str, min: f64, max: f64) -> Option<f64> {
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
    pub fn integer(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
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

    /// An array of at most `max_items` texts, each following `rule`.
    pub fn text_list(&mut self, name: &str, rule: Text, max_items: usize) -> Option<Vec<String>> {
        let value = self.map.remove(name)?;
        let Value::Array(items) = value else {
            self.wrong_type(name, &value, "an array of strings");
            return None;
        };
        if items.len() > max_items {
            self.error(
                name,
                "TOO_MANY",
                format!("must have at most {max_items} items"),
            );
            return None;
        }
        let mut texts = Vec::with_capacity(items.len());
        for item in items {
            // Each item is checked like a field of its own, under the array's name.
            let mut one = Fields {
                map: Map::from_iter([(name.to_owned(), item)]),
                errors: Vec::new(),
            };
            let text = one.text(name, rule);
            if let Some(error) = one.errors.pop() {
                self.errors.push(error);
                return None;
            }
            texts.extend(text);
        }
        Some(texts)
    }

    /// A field that exists in the resource but may not be sent here.
    pub fn forbid(&mut self, name: &str, message: &'static str) {
        if self.map.remove(name).is_some() {
            self.error(name, "READ_ONLY", message);
        }
    }

    fn wrong_type(&mut self, name: &str, value: &Value, expected: &str) {
        if value.is_null() {
            self.error(name, "NOT_NULLABLE", "must not be null");
        } else {
            self.error(name, "INVALID_TYPE", format!("must be {expected}"));
        }
    }

    /// Ends reading: every field not taken is unknown. `Ok` only when nothing was wrong.
    pub fn finish(mut self) -> Result<(), ApiError> {
        let unknown: Vec<String> = self.map.keys().map(|k| quotable(k)).collect();
        for name in unknown {
            self.error(&name, "UNKNOWN_FIELD", "is not a field of this body");
        }
        if self.errors.is_empty() {
            Ok(())
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

/// Largest magnitude a number in a free-form object may have. PostgreSQL keeps jsonb numbers
/// exactly and prints them without an exponent: near f64's limit (1.8e308) that is a 309-digit
/// integer JSON parsers refuse as out of range, so such a value could be stored but never read
/// back. 1e300 leaves a wide margin.
pub const MAX_JSON_NUMBER: f64 = 1e300;

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(result: Result<(), ApiError>) -> Vec<(String, &'static str)> {
        match result {
            Err(ApiError::Validation { field_errors, .. }) => field_errors
                .into_iter()
                .map(|e| (e.field, e.code))
                .collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn every_problem_names_its_field() {
        let mut fields = Fields::new(json!({
            "name": "",
            "slug": 7,
            "config": {"nested": ["ok", "bad\u{0}"]},
            "nmae": "typo",
            "locked": true,
        }))
        .unwrap();
        assert!(fields.text("name", Text::chars(1, 10)).is_none());
        assert!(fields.text("slug", Text::chars(1, 10)).is_none());
        assert!(fields.object("config", 100).is_none());
        fields.forbid("locked", "cannot be changed");
        assert!(
            fields
                .required("missing", |f| f.text("missing", Text::chars(0, 1)))
                .is_none()
        );
        let got = codes(fields.finish());
        assert_eq!(
            got,
            [
                ("name".into(), "INVALID_LENGTH"),
                ("slug".into(), "INVALID_TYPE"),
                ("config".into(), "INVALID_CHARACTER"),
                ("locked".into(), "READ_ONLY"),
                ("missing".into(), "REQUIRED"),
                ("nmae".into(), "UNKNOWN_FIELD"),
            ]
        );
    }

    #[test]
    fn numbers_that_could_not_be_read_back_are_refused() {
        let mut fields = Fields::new(json!({
            "ok": {"big": 1e300, "small": -1e300, "tiny": 5e-324, "deep": [[1.5]]},
            "huge": {"n": [-1.7976931348623157e308]},
        }))
        .unwrap();
        assert!(fields.object("ok", 1000).is_some());
        assert!(fields.object("huge", 1000).is_none());
        assert_eq!(codes(fields.finish()), [("huge".into(), "OUT_OF_RANGE")]);
    }

    #[test]
    fn lengths_count_characters_and_null_is_not_absent() {
        let mut fields = Fields::new(json!({"name": "ééé", "config": null})).unwrap();
        assert_eq!(
            fields.text("name", Text::chars(3, 3)).as_deref(),
            Some("ééé")
        );
        assert!(fields.object("config", 10).is_none());
        assert_eq!(codes(fields.finish()), [("config".into(), "NOT_NULLABLE")]);
        assert!(Fields::new(json!([1])).is_err());
    }
}

/// How the OpenAPI document describes a free-form object field such as an agent's `config`.
///
/// The shape is the plain `{"type": "object", "additionalProperties": true}` every client
/// generator understands (a recursive `anyOf` spelling the rules out made
/// openapi-python-client drop the operations that use it). The rules [`Fields::object`]
/// enforces are stated in the description and, machine-readable, in `x-ibex-rules`; a value
/// breaking them is a 400 naming the field.
#[derive(Debug)]
pub struct FreeFormObject;

impl utoipa::PartialSchema for FreeFormObject {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        serde_json::from_value(serde_json::json!({
            "type": "object",
            "additionalProperties": true,
            "description": "Any JSON object. Refused with 400: a NUL character (U+0000) in any key or string at any depth (PostgreSQL cannot store it), a number beyond ±1e300, more than the field's size limit when serialized.",
            "x-ibex-rules": {
                "no_nul_characters": true,
                "max_abs_number": MAX_JSON_NUMBER,
            },
        }))
        .expect("a valid schema literal")
    }
}

impl utoipa::ToSchema for FreeFormObject {}

/// A free-form object in a response (what was stored as a [`FreeFormObject`]): declared with
/// `additionalProperties: true`, since a bare `{"type": "object"}` reads as an empty object
/// type to openapi-typescript.
#[derive(Debug)]
pub struct JsonObject;

impl utoipa::PartialSchema for JsonObject {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        serde_json::from_value(serde_json::json!({
            "type": "object",
            "additionalProperties": true,
            "description": "Any JSON object.",
        }))
        .expect("a valid schema literal")
    }
}

impl utoipa::ToSchema for JsonObject {}

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

pub const EMAIL: Text = Text::chars(3, 320).shaped(is_email, "an email address");
