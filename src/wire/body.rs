//! One declaration per request body: a [`Body`] lists its fields once, with each field's rule
//! ([`Kind`]), and from that one list come both the parser ([`Body::read`], then the typed
//! getters of [`Fields`]) and the body's OpenAPI schema ([`Body::schema`], served through
//! [`body_schema!`](crate::body_schema)). A limit is a named constant that the declaration uses,
//! so schema and parser cannot disagree; `tests/it/boundaries.rs` sends every property of the
//! served document its boundary values to prove it.
//!
//! Why a rule table and not serde's derive: the API answers every problem of a body at once,
//! each naming its field with a stable code (unknown field, `null` where a value is required,
//! length, pattern, NUL characters, size as JSON), and tells absent from `null` as PATCH needs;
//! serde stops at the first problem and says it in its own words.

use std::borrow::Cow;

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// A predicate on a whole text value, what it wants in words, and the same as a JSON Schema
/// pattern for the document.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub check: fn(&str) -> bool,
    pub description: &'static str,
    pub pattern: &'static str,
}

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

    pub const fn shaped(mut self, shape: Shape) -> Self {
        self.shape = Some(shape);
        self
    }
}

/// Largest magnitude a number in a free-form object may have. PostgreSQL keeps jsonb numbers
/// exactly and prints them without an exponent: near f64's limit (1.8e308) that is a 309-digit
/// integer JSON parsers refuse as out of range, so such a value could be stored but never read
/// back. 1e300 leaves a wide margin.
pub const MAX_JSON_NUMBER: f64 = 1e300;

/// A component schema: its name and its schema (what `ToSchema` gives for a type).
pub type Component = fn() -> (Cow<'static, str>, RefOr<Schema>);

/// The component of a type that derives `ToSchema`, for a [`Kind::Choice`] to refer to.
pub fn component<T: utoipa::ToSchema>() -> (Cow<'static, str>, RefOr<Schema>) {
    (T::name(), T::schema())
}

/// What a field holds: how it is read and how the document states it.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Text(Text),
    /// Text, or `null` to clear the value.
    NullableText(Text),
    /// One of `values`; the document refers to the enum's own schema.
    Choice {
        values: &'static [&'static str],
        schema: Component,
    },
    /// A JSON object of at most `max_bytes` serialized.
    Object {
        max_bytes: usize,
    },
    /// A whole number (`3` or `3.0`, as JSON Schema's integers).
    Integer {
        min: i64,
        max: i64,
    },
    Number {
        min: f64,
        max: f64,
    },
    /// An array of texts.
    TextList {
        item: Text,
        max_items: usize,
    },
    /// An array of values from `values` (a repeat counts once).
    ChoiceList {
        values: &'static [&'static str],
        schema: Component,
    },
    Uuid,
    /// An array of UUIDs (a repeat counts once).
    UuidList {
        max_items: usize,
    },
    /// An object declared by a body of its own (its problems are named `field.inner`).
    Nested(&'static Body),
    /// RFC 3339.
    Timestamp,
    /// A field of the resource that this body may not carry: a 400 `READ_ONLY` with this
    /// message; absent from the document.
    ReadOnly(&'static str),
}

impl Kind {
    /// One of the names of `T`, documented by `T`'s own schema.
    pub const fn choice<T: crate::wire::names::Named>() -> Self {
        Self::Choice {
            values: T::NAMES,
            schema: component::<T>,
        }
    }
}

/// One field of a body.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// What the document says of it (the rules themselves are stated by the schema).
    pub doc: &'static str,
}

impl Field {
    pub const fn new(name: &'static str, kind: Kind) -> Self {
        Self {
            name,
            kind,
            required: false,
            doc: "",
        }
    }

    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub const fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }

    pub const fn read_only(name: &'static str, message: &'static str) -> Self {
        Self::new(name, Kind::ReadOnly(message))
    }

    /// The property's schema, or `None` for a field the body may not carry.
    fn schema(&self) -> Option<Value> {
        let mut schema = match self.kind {
            Kind::Text(rule) => text_schema(rule, false),
            Kind::NullableText(rule) => text_schema(rule, true),
            Kind::Choice { schema, .. } => json!({"$ref": reference(schema)}),
            Kind::Object { max_bytes } => json!({
                "$ref": reference(component::<FreeFormObject>),
                "description": format!("A JSON object of at most {max_bytes} bytes serialized."),
            }),
            Kind::Integer { min, max } => json!({
                "type": "integer",
                "format": if max <= i64::from(i32::MAX) { "int32" } else { "int64" },
                "minimum": min,
                "maximum": max,
            }),
            Kind::Number { min, max } => json!({
                "type": "number",
                "format": "double",
                "minimum": min,
                "maximum": max,
            }),
            Kind::TextList { item, max_items } => json!({
                "type": "array",
                "items": text_schema(item, false),
                "maxItems": max_items,
            }),
            Kind::ChoiceList { schema, .. } => json!({
                "type": "array",
                "items": {"$ref": reference(schema)},
            }),
            Kind::Uuid => json!({"type": "string", "format": "uuid"}),
            Kind::UuidList { max_items } => json!({
                "type": "array",
                "items": {"type": "string", "format": "uuid"},
                "maxItems": max_items,
            }),
            Kind::Nested(body) => json!({"$ref": format!("#/components/schemas/{}", body.name)}),
            Kind::Timestamp => json!({"type": "string", "format": "date-time"}),
            Kind::ReadOnly(_) => return None,
        };
        if !self.doc.is_empty() {
            let described = match schema.get("description").and_then(Value::as_str) {
                Some(rules) => format!("{} {rules}", self.doc),
                None => self.doc.to_owned(),
            };
            schema["description"] = Value::String(described);
        }
        Some(schema)
    }
}

fn reference(schema: Component) -> String {
    format!("#/components/schemas/{}", schema().0)
}

/// A text rule as JSON Schema: lengths in characters, the shape's pattern (or "no NUL").
fn text_schema(rule: Text, nullable: bool) -> Value {
    let no_nul = if rule.min_chars == 0 {
        "^[^\\u0000]*$"
    } else {
        "^[^\\u0000]+$"
    };
    let mut schema = json!({
        "type": if nullable { json!(["string", "null"]) } else { json!("string") },
        "minLength": rule.min_chars,
        "maxLength": rule.max_chars,
        "pattern": rule.shape.map_or(no_nul, |shape| shape.pattern),
    });
    if let Some(max_bytes) = rule.max_bytes {
        schema["description"] = format!("At most {max_bytes} bytes of UTF-8.").into();
        schema["x-ibex-max-bytes"] = max_bytes.into();
    }
    schema
}

/// A request body: its component name, what it is, its fields.
#[derive(Debug)]
pub struct Body {
    /// The schema's name in the document (`CreateAgent`).
    pub name: &'static str,
    pub doc: &'static str,
    pub fields: &'static [Field],
}

impl Body {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The body's JSON Schema: declared properties only, `additionalProperties: false`.
    pub fn schema(&self) -> RefOr<Schema> {
        let mut properties = serde_json::Map::new();
        let mut required = Vec::new();
        for field in self.fields {
            if let Some(schema) = field.schema() {
                properties.insert(field.name.to_owned(), schema);
                if field.required {
                    required.push(field.name);
                }
            }
        }
        let mut schema = json!({
            "type": "object",
            "description": self.doc,
            "properties": properties,
            "additionalProperties": false,
        });
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
        serde_json::from_value(schema).expect("a body declaration makes a valid schema")
    }

    /// The components the body's fields refer to, for `ToSchema::schemas`.
    pub fn components(&self, out: &mut Vec<(String, RefOr<Schema>)>) {
        for field in self.fields {
            let schema = match field.kind {
                Kind::Choice { schema, .. } | Kind::ChoiceList { schema, .. } => schema,
                Kind::Object { .. } => component::<FreeFormObject>,
                Kind::Nested(body) => {
                    out.push((body.name.to_owned(), body.schema()));
                    body.components(out);
                    continue;
                }
                _ => continue,
            };
            let (name, schema) = schema();
            out.push((name.into_owned(), schema));
        }
    }
}

/// Declares `$type` as the OpenAPI face of the [`Body`] `$body`, for `request_body = $type`.
#[macro_export]
macro_rules! body_schema {
    ($(#[$meta:meta])* $type:ident = $body:expr) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $type;

        impl utoipa::PartialSchema for $type {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $body.schema()
            }
        }

        impl utoipa::ToSchema for $type {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($body.name)
            }

            fn schemas(
                out: &mut Vec<(
                    String,
                    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
                )>,
            ) {
                $body.components(out);
            }
        }
    };
}

/// How the OpenAPI document describes a free-form object field such as an agent's `config`.
///
/// The shape is the plain `{"type": "object", "additionalProperties": true}` every client
/// generator understands (a recursive `anyOf` spelling the rules out made
/// openapi-python-client drop the operations that use it). The rules [`Fields::object`](super::fields::Fields::object)
/// enforces are stated in the description and, machine-readable, in `x-ibex-rules`; a value
/// breaking them is a 400 naming the field.
#[derive(Debug)]
pub struct FreeFormObject;

impl utoipa::PartialSchema for FreeFormObject {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        any_object(serde_json::json!({
            "description": "Any JSON object. Refused with 400: a NUL character (U+0000) in any key or string at any depth (PostgreSQL cannot store it), a number beyond ±1e300, more than the field's size limit when serialized.",
            "x-ibex-rules": {
                "no_nul_characters": true,
                "max_abs_number": MAX_JSON_NUMBER,
            },
        }))
    }
}

/// `{"type": "object", "additionalProperties": true}` with `more` (its description, …).
fn any_object(more: Value) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let mut schema = serde_json::json!({"type": "object", "additionalProperties": true});
    if let (Some(schema), Value::Object(more)) = (schema.as_object_mut(), more) {
        schema.extend(more);
    }
    serde_json::from_value(schema).expect("a valid schema literal")
}

impl utoipa::ToSchema for FreeFormObject {}

/// A free-form object in a response (what was stored as a [`FreeFormObject`]): declared with
/// `additionalProperties: true`, since a bare `{"type": "object"}` reads as an empty object
/// type to openapi-typescript.
#[derive(Debug)]
pub struct JsonObject;

impl utoipa::PartialSchema for JsonObject {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        any_object(serde_json::json!({"description": "Any JSON object."}))
    }
}

impl utoipa::ToSchema for JsonObject {}
