//! Extractors whose rejections are `ApiError`s: the platform's 400 VALIDATION_ERROR (never 422),
//! 413 and 415, with messages that name the parameter but never echo what the caller sent.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Path parameters; a malformed id is a 400 naming the parameter.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(path_error)
    }
}

fn path_error(rejection: PathRejection) -> ApiError {
    let PathRejection::FailedToDeserializePathParams(error) = rejection else {
        tracing::error!("path parameters missing from the router");
        return ApiError::Internal;
    };
    match error.into_kind() {
        // By convention every `*_id` path parameter of this API is a UUID.
        ErrorKind::ParseErrorAtKey { key, .. } | ErrorKind::DeserializeError { key, .. }
            if key.ends_with("_id") =>
        {
            ApiError::field(&key, "INVALID_UUID", "must be a UUID")
        }
        ErrorKind::ParseErrorAtKey { key, .. } | ErrorKind::DeserializeError { key, .. } => {
            ApiError::field(&key, "INVALID_VALUE", "has an invalid value")
        }
        _ => ApiError::validation("The path parameters are invalid."),
    }
}

/// Query string parameters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|_: QueryRejection| {
                ApiError::validation("The query parameters are invalid or of the wrong type.")
            })
    }
}

/// A JSON request body. A key repeated in any object, at any depth, is a 400 naming it: parsers
/// disagree on which copy wins (serde_json takes the last, many gateways the first), and a
/// request that means two things to two readers is refused rather than guessed at.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::validation("The request body could not be read.")
                }
            })?;
        let value = unique_keys::parse(&bytes)?;
        serde_json::from_value(value).map(Self).map_err(|_| {
            ApiError::validation("The request body does not match the expected schema.")
        })
    }
}

/// `application/json` or any `application/*+json`, parameters (charset) aside, as axum's `Json`.
fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A JSON value parser that refuses repeated object keys and says where.
mod unique_keys {
    use std::cell::RefCell;
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    use crate::error::ApiError;

    pub fn parse(bytes: &[u8]) -> Result<Value, ApiError> {
        let duplicate = RefCell::new(None);
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let parsed = Unique {
            path: String::new(),
            duplicate: &duplicate,
        }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
        match (parsed, duplicate.into_inner()) {
            (Ok(value), _) => Ok(value),
            (Err(_), Some(path)) => Err(ApiError::field(
                &path,
                "DUPLICATE_KEY",
                "appears more than once in its object",
            )),
            (Err(_), None) => Err(ApiError::validation("The request body is not valid JSON.")),
        }
    }

    /// One value at `path` (dotted keys, `[i]` for array items).
    struct Unique<'a> {
        path: String,
        duplicate: &'a RefCell<Option<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Unique<'_> {
        type Value = Value;

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Unique<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
            serde_json::Number::from_f64(v)
                .map(Value::Number)
                .ok_or_else(|| E::custom("not a finite number"))
        }

        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }

        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }

        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Unique {
                path: format!("{}[{}]", self.path, items.len()),
                duplicate: self.duplicate,
            })? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut object = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if object.contains_key(&key) {
                    *self.duplicate.borrow_mut() = Some(path);
                    return Err(A::Error::custom("duplicate key"));
                }
                let value = map.next_value_seed(Unique {
                    path,
                    duplicate: self.duplicate,
                })?;
                object.insert(key, value);
            }
            Ok(Value::Object(object))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::parse;

        fn duplicate_at(body: &str) -> Option<String> {
            match parse(body.as_bytes()) {
                Err(ApiError::Validation { field_errors, .. }) => {
                    field_errors.first().map(|e| e.field.clone())
                }
                _ => None,
            }
        }

        use crate::error::ApiError;

        #[test]
        fn repeated_keys_are_named_at_any_depth() {
            assert_eq!(
                duplicate_at(r#"{"role":"admin","role":"owner"}"#).as_deref(),
                Some("role")
            );
            assert_eq!(
                duplicate_at(r#"{"a":{"b":[{"c":1},{"c":1,"c":2}]}}"#).as_deref(),
                Some("a.b[1].c")
            );
            assert!(parse(br#"{"a":{"c":1},"b":{"c":1}}"#).is_ok());
            assert_eq!(
                parse(br#"{"n":1.5,"big":18446744073709551615,"x":[null,true,"s"]}"#).unwrap(),
                serde_json::json!({"n":1.5,"big":18446744073709551615u64,"x":[null,true,"s"]})
            );
            assert!(parse(b"{\"a\":1} x").is_err());
        }
    }
}
