//! What a token is to the API's clients, and how a create body is read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Permissions;
use crate::auth::proto::TokenMetadata;
use crate::body_schema;
use crate::error::ApiError;
use crate::wire::fields::{Body, Field, Kind, Text};

pub const NAME: Text = Text::chars(1, 255);
pub const DESCRIPTION: Text = Text::chars(0, 1000);

/// A personal access token's metadata; never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    /// As given at creation; the auth service's list does not return it, so it is null there.
    pub description: Option<String>,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    /// Permission names (`memory:read`, …).
    pub permissions: Vec<&'static str>,
    #[serde(serialize_with = "crate::wire::time::rfc3339_opt")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339_opt")]
    pub revoked_at: Option<DateTime<Utc>>,
    pub is_revoked: bool,
}

/// A token just created: its metadata and, this once, its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: Token,
    /// The token itself. Shown in this response only; store it now.
    pub plaintext: String,
}

/// Body of `POST /v1/tokens`.
pub static CREATE: Body = Body {
    name: "CreateToken",
    doc: "A new personal access token; its secret is in the answer, once.",
    fields: &[
        Field::new("name", Kind::Text(NAME)).required(),
        Field::new("description", Kind::Text(DESCRIPTION)),
        Field::new(
            "permissions",
            Kind::ChoiceList {
                values: PERMISSION_NAMES,
                schema: crate::wire::body::component::<PermissionName>,
            },
        )
        .required()
        .doc("Each must be one the caller's own token holds (a repeated name counts once)."),
        Field::new("expires_at", Kind::Timestamp).doc("In the future."),
        Field::new("agent_id", Kind::Uuid)
            .doc("The agent the token acts for: a live agent of the organization."),
    ],
};

body_schema!(CreateTokenBody = CREATE);

/// The JSON names of the permission bits, in bit order (docs/api.md, "Permissions").
pub const PERMISSION_NAMES: &[&str] = &crate::auth::permissions::NAMES;

/// The permission names as the document's `PermissionName` enum, from the one table of them.
#[derive(Debug)]
pub struct PermissionName;

impl utoipa::PartialSchema for PermissionName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        serde_json::from_value(serde_json::json!({
            "type": "string",
            "enum": PERMISSION_NAMES,
        }))
        .expect("a valid schema literal")
    }
}

impl ToSchema for PermissionName {}

#[derive(Debug)]
pub struct NewToken {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Permissions,
    pub expires_at: Option<DateTime<Utc>>,
    pub agent_id: Option<Uuid>,
}

impl NewToken {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = CREATE.read(body)?;
        let name = fields.text("name");
        let description = fields.text("description");
        let permissions = fields.choice_list("permissions").map(|names| {
            Permissions(
                names
                    .into_iter()
                    .filter_map(Permissions::from_name)
                    .fold(0, |bits, bit| bits | bit.0),
            )
        });
        let expires_at = fields.timestamp("expires_at");
        if expires_at.is_some_and(|at| at <= Utc::now()) {
            fields.reject("expires_at", "OUT_OF_RANGE", "must be in the future");
        }
        let agent_id = fields.uuid("agent_id");
        fields.finish()?;
        Ok(Self {
            name: name.expect("checked by finish"),
            description,
            permissions: permissions.expect("checked by finish"),
            expires_at,
            agent_id,
        })
    }
}

fn timestamp(at: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    at.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
}

impl Token {
    /// The API's view of the auth service's metadata; `None` when the answer is unusable.
    pub fn from_metadata(metadata: TokenMetadata) -> Option<Self> {
        Some(Self {
            id: Uuid::try_parse(&metadata.token_id).ok()?,
            name: metadata.name,
            description: None,
            prefix: metadata.prefix,
            permissions: Permissions(metadata.permissions as u64).names(),
            expires_at: timestamp(metadata.expires_at),
            created_at: timestamp(metadata.created_at)?,
            revoked_at: timestamp(metadata.revoked_at),
            is_revoked: metadata.is_revoked,
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    /// Token id (never the token itself).
    pub token_id: Uuid,
}

/// The auth service's own list cursor: `"<unix_nanos>|<uuid>"`. Anything else would come back as
/// INTERNAL, so it is refused before it is sent.
pub fn is_auth_cursor(cursor: &str) -> bool {
    cursor.split_once('|').is_some_and(|(nanos, id)| {
        !nanos.is_empty()
            && nanos.len() <= 20
            && nanos.bytes().all(|b| b.is_ascii_digit())
            && Uuid::try_parse(id).is_ok()
    })
}
