//! What a directive and its versions are, and what clients may send.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::fields::{Fields, Text};

/// Largest content, in bytes of UTF-8 (not characters).
pub const MAX_CONTENT_BYTES: usize = 32_768;
pub const CONTENT: Text = Text::chars(1, MAX_CONTENT_BYTES).max_bytes(MAX_CONTENT_BYTES);
pub const INJECTION_MODES: &[&str] = &["system_first", "system_append", "user_prepend"];

/// An agent's directive, with its active version's number and content (null when inactive).
#[derive(Debug, Serialize, ToSchema)]
pub struct Directive {
    pub id: Uuid,
    pub agent_id: Uuid,
    /// `system_first`, `system_append` or `user_prepend`.
    #[schema(value_type = InjectionMode, example = "system_first")]
    pub injection_mode: String,
    pub is_active: bool,
    #[schema(required = true)]
    pub version_num: Option<i32>,
    #[schema(required = true)]
    pub content: Option<String>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Bumped on every change; the `ETag` header carries it.
    #[serde(skip)]
    pub version: i64,
}

/// A version in the history list (no content).
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectiveVersionSummary {
    #[schema(minimum = 1)]
    pub version_num: i32,
    /// SHA-256 of the content, lowercase hex.
    pub content_hash: String,
    #[schema(required = true)]
    pub created_by: Option<Uuid>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Whether this is the directive's active version.
    pub is_active: bool,
}

/// One version with its content.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectiveVersion {
    #[schema(minimum = 1)]
    pub version_num: i32,
    pub content: String,
    pub content_hash: String,
    #[schema(required = true)]
    pub created_by: Option<Uuid>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    pub is_active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InjectionMode {
    SystemFirst,
    SystemAppend,
    UserPrepend,
}

/// Body of `POST /v1/agents/{agent_id}/directive`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SetDirective)]
#[allow(dead_code)] // Documents the body; `DirectiveChange::parse` reads it field by field.
pub struct SetDirectiveBody {
    /// 1 to 32 768 bytes of UTF-8, no NUL. Never logged.
    #[schema(min_length = 1, max_length = 32768, pattern = "^[^\\u0000]+$")]
    content: String,
    /// Default `system_first` on create, unchanged on update.
    #[schema(nullable = false)]
    injection_mode: Option<InjectionMode>,
}

/// Body of `POST /v1/agents/{agent_id}/directive/rollback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RollbackDirective)]
#[allow(dead_code)] // Documents the body; `RollbackTo::parse` reads it.
pub struct RollbackBody {
    #[schema(minimum = 1, maximum = 2147483647)]
    version_num: i32,
}

#[derive(Debug)]
pub struct DirectiveChange {
    pub content: String,
    pub injection_mode: Option<&'static str>,
}

impl DirectiveChange {
    /// The names of the fields this change sets, for the audit trail (never their values: the
    /// content is the customer's).
    pub fn field_names(&self) -> Vec<&'static str> {
        let mut names = vec!["content"];
        if self.injection_mode.is_some() {
            names.push("injection_mode");
        }
        names
    }

    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body)?;
        let content = fields.required("content", |f| f.text("content", CONTENT));
        let injection_mode = fields.choice("injection_mode", INJECTION_MODES);
        fields.finish()?;
        Ok(Self {
            content: content.expect("checked by finish"),
            injection_mode,
        })
    }
}

#[derive(Debug)]
pub struct RollbackTo(pub i32);

impl RollbackTo {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body)?;
        let version = match fields.take("version_num") {
            None => {
                fields.reject("version_num", "REQUIRED", "is required");
                None
            }
            Some(value) => {
                // JSON Schema's integers include 3.0: accept a whole number however written.
                let n = value
                    .as_i64()
                    .or_else(|| {
                        value
                            .as_f64()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                            .map(|f| f as i64)
                    })
                    .filter(|n| (1..=i64::from(i32::MAX)).contains(n));
                if n.is_none() {
                    fields.reject("version_num", "OUT_OF_RANGE", "must be an integer from 1");
                }
                n
            }
        };
        fields.finish()?;
        Ok(Self(version.expect("checked by finish") as i32))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DirectiveVersionPath {
    /// Agent id.
    pub agent_id: Uuid,
    /// Version number, starting at 1.
    #[param(minimum = 1, maximum = 2147483647)]
    pub version_num: u32,
}
