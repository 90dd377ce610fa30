//! What a token is to the API's clients, and how a create body is read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Permissions;
use crate::auth::proto::TokenMetadata;
use crate::error::ApiError;
use crate::fields::{Fields, Text};

pub const NAME: Text = Text::chars(1, 255);
pub const DESCRIPTION: Text = Text::chars(0, 1000);

/// A personal access token's metadata; never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    /// As given at creation; the auth service's list does not return it, so it is null there.
    #[schema(required = true)]
    pub description: Option<String>,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    /// Permission names (`memory:read`, …).
    pub permissions: Vec<&'static str>,
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    #[schema(required = true)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateToken)]
#[allow(dead_code)] // Documents the body; `NewToken::parse` reads it field by field.
pub struct CreateTokenBody {
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\u0000]+$")]
    name: String,
    #[schema(max_length = 1000, pattern = "^[^\\u0000]*$", nullable = false)]
    description: Option<String>,
    /// Permission names; each must be one the caller's own token holds (a repeated name counts
    /// once).
    #[schema(value_type = Vec<PermissionNameDoc>)]
    permissions: Vec<String>,
    /// RFC 3339, in the future.
    #[schema(value_type = String, format = DateTime, nullable = false, required = false)]
    expires_at: Option<String>,
    /// The agent the token acts for.
    #[schema(nullable = false)]
    agent_id: Option<Uuid>,
}

/// The JSON names of the permission bits (docs/api.md, "Permissions").
#[derive(Debug, ToSchema)]
#[schema(as = PermissionName)]
#[allow(dead_code)]
pub enum PermissionNameDoc {
    #[schema(rename = "memory:read")]
    MemoryRead,
    #[schema(rename = "memory:write")]
    MemoryWrite,
    #[schema(rename = "memory:delete")]
    MemoryDelete,
    #[schema(rename = "memory:bulk_export")]
    MemoryBulkExport,
    #[schema(rename = "directive:read")]
    DirectiveRead,
    #[schema(rename = "directive:write")]
    DirectiveWrite,
    #[schema(rename = "directive:promote")]
    DirectivePromote,
    #[schema(rename = "directive:revoke")]
    DirectiveRevoke,
    #[schema(rename = "session:create")]
    SessionCreate,
    #[schema(rename = "session:read")]
    SessionRead,
    #[schema(rename = "session:terminate")]
    SessionTerminate,
    #[schema(rename = "trace:read")]
    TraceRead,
    #[schema(rename = "trace:export")]
    TraceExport,
    #[schema(rename = "user:manage")]
    UserManage,
    #[schema(rename = "billing:read")]
    BillingRead,
    #[schema(rename = "billing:manage")]
    BillingManage,
    #[schema(rename = "org_settings:write")]
    OrgSettingsWrite,
    #[schema(rename = "token:create")]
    TokenCreate,
    #[schema(rename = "token:revoke")]
    TokenRevoke,
    #[schema(rename = "marketplace:publish")]
    MarketplacePublish,
    #[schema(rename = "marketplace:install")]
    MarketplaceInstall,
    #[schema(rename = "federation:share")]
    FederationShare,
}

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
        let mut fields = Fields::new(body)?;
        let name = fields.required("name", |f| f.text("name", NAME));
        let description = fields.text("description", DESCRIPTION);
        let permissions = match fields.take("permissions") {
            None => {
                fields.reject("permissions", "REQUIRED", "is required");
                None
            }
            Some(value) => permission_bits(&value)
                .map_err(|problem| fields.reject("permissions", "INVALID_VALUE", problem))
                .ok(),
        };
        let expires_at = fields.take("expires_at").and_then(|value| {
            let parsed = value
                .as_str()
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .map(|at| at.with_timezone(&Utc));
            match parsed {
                Some(at) if at > Utc::now() => Some(at),
                Some(_) => {
                    fields.reject("expires_at", "OUT_OF_RANGE", "must be in the future");
                    None
                }
                None => {
                    fields.reject(
                        "expires_at",
                        "INVALID_FORMAT",
                        "must be an RFC 3339 timestamp",
                    );
                    None
                }
            }
        });
        let agent_id = fields.take("agent_id").and_then(|value| {
            let id = value.as_str().and_then(|text| Uuid::try_parse(text).ok());
            if id.is_none() {
                fields.reject("agent_id", "INVALID_UUID", "must be a UUID");
            }
            id
        });
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

/// The bitmap of a list of permission names; a problem description never quotes the input.
fn permission_bits(value: &Value) -> Result<Permissions, String> {
    let names = value
        .as_array()
        .ok_or("must be an array of permission names")?;
    let mut bits = 0u64;
    for name in names {
        let bit = name
            .as_str()
            .and_then(Permissions::from_name)
            .ok_or("contains an unknown permission name")?;
        bits |= bit.0;
    }
    Ok(Permissions(bits))
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
