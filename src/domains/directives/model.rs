//! What a directive and its versions are, and what clients may send.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::body_schema;
use crate::error::ApiError;
use crate::wire::fields::{Body, Field, Kind, Text};
use crate::wire::names::named;

/// Largest content, in bytes of UTF-8 (not characters).
pub const MAX_CONTENT_BYTES: usize = 32_768;
pub const CONTENT: Text = Text::chars(1, MAX_CONTENT_BYTES).max_bytes(MAX_CONTENT_BYTES);

/// An agent's directive, with its active version's number and content (null when inactive).
#[derive(Debug, Serialize, ToSchema)]
pub struct Directive {
    pub id: Uuid,
    pub agent_id: Uuid,
    /// `system_first`, `system_append` or `user_prepend`.
    #[schema(value_type = InjectionMode, example = "system_first")]
    pub injection_mode: String,
    pub is_active: bool,
    pub version_num: Option<i32>,
    pub content: Option<String>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
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
    pub created_by: Option<Uuid>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
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
    pub created_by: Option<Uuid>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    pub is_active: bool,
}

named! {
    pub enum InjectionMode {
        SystemFirst = "system_first",
        SystemAppend = "system_append",
        UserPrepend = "user_prepend",
    }
}

/// Body of `POST /v1/agents/{agent_id}/directive`.
pub static SET: Body = Body {
    name: "SetDirective",
    doc: "The directive's next version.",
    fields: &[
        Field::new("content", Kind::Text(CONTENT))
            .required()
            .doc("Never logged."),
        Field::new("injection_mode", Kind::choice::<InjectionMode>())
            .doc("Default `system_first` on create, unchanged on update."),
    ],
};

/// Body of `POST /v1/agents/{agent_id}/directive/rollback`.
pub static ROLLBACK: Body = Body {
    name: "RollbackDirective",
    doc: "The version to make active again.",
    fields: &[Field::new(
        "version_num",
        Kind::Integer {
            min: 1,
            max: i32::MAX as i64,
        },
    )
    .required()],
};

body_schema!(SetDirectiveBody = SET);
body_schema!(RollbackBody = ROLLBACK);

#[derive(Debug)]
pub struct DirectiveChange {
    /// The fields the body carried, for the audit trail (never their values).
    pub sent: Vec<&'static str>,
    pub content: String,
    pub injection_mode: Option<&'static str>,
}

impl DirectiveChange {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = SET.read(body)?;
        let content = fields.text("content");
        let injection_mode = fields.choice("injection_mode");
        let sent = fields.finish()?;
        Ok(Self {
            sent,
            content: content.expect("checked by finish"),
            injection_mode,
        })
    }
}

#[derive(Debug)]
pub struct RollbackTo(pub i32);

impl RollbackTo {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = ROLLBACK.read(body)?;
        let version = fields.integer("version_num");
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
