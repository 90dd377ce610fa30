//! What an organization is, and what clients may change about it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::body_schema;
use crate::error::ApiError;
use crate::wire::fields::{Body, EMAIL, Field, Kind, Text};

pub const NAME: Text = Text::chars(1, 255);
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;

/// The caller's organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    #[schema(pattern = "^[a-z0-9-]+$")]
    pub slug: String,
    #[schema(value_type = String, example = "pro")]
    /// `free`, `pro` or `enterprise`.
    pub tier: String,
    /// `active`, `suspended`, `cancelled` (deletion requested) or `trial`.
    #[schema(value_type = String, example = "active")]
    pub status: String,

    pub billing_email: Option<String>,
    #[schema(value_type = crate::wire::body::JsonObject)]
    pub settings: Value,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Present once a deletion is requested, until the organization's row itself is removed.
    pub deletion: Option<Deletion>,
    /// Bumped on every change; the `ETag` header carries it.
    #[serde(skip)]
    pub version: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deletion {
    /// `pending` or `running`.
    #[schema(value_type = String, example = "pending")]
    pub state: String,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub requested_at: DateTime<Utc>,
}

const READ_ONLY: &str = "cannot be changed through this API";

/// Body of `PATCH /v1/organizations/{org_id}`: only the fields present change.
pub static UPDATE: Body = Body {
    name: "UpdateOrganization",
    doc: "Only the fields present change.",
    fields: &[
        Field::new("name", Kind::Text(NAME)),
        Field::new("billing_email", Kind::NullableText(EMAIL)).doc("Null clears it."),
        Field::new(
            "settings",
            Kind::Object {
                max_bytes: MAX_SETTINGS_BYTES,
            },
        )
        .doc("Replaces the current settings."),
        Field::read_only("id", READ_ONLY),
        Field::read_only("slug", READ_ONLY),
        Field::read_only("tier", READ_ONLY),
        Field::read_only("status", READ_ONLY),
    ],
};

body_schema!(UpdateOrganizationBody = UPDATE);

#[derive(Debug)]
pub struct OrgChanges {
    /// The fields the body carried, for the audit trail (never their values).
    pub sent: Vec<&'static str>,
    pub name: Option<String>,
    /// `Some(None)` clears the billing email.
    pub billing_email: Option<Option<String>>,
    pub settings: Option<Map<String, Value>>,
}

impl OrgChanges {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = UPDATE.read(body)?;
        let name = fields.text("name");
        let billing_email = fields.nullable_text("billing_email");
        let settings = fields.object("settings");
        let sent = fields.finish()?;
        Ok(Self {
            sent,
            name,
            billing_email,
            settings,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.billing_email.is_none() && self.settings.is_none()
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrgPath {
    /// Organization id: the caller's own.
    pub org_id: Uuid,
}
