//! What a user is, what clients may send about one, and the role rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::fields::{EMAIL, Fields, Text};

pub const NAME: Text = Text::chars(0, 255);
pub const ROLES: &[&str] = &["owner", "admin", "member", "viewer"];

/// A user of the caller's organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub org_id: Uuid,

    pub email: String,
    pub name: String,
    /// `owner`, `admin`, `member` or `viewer`.
    #[schema(value_type = Role, example = "member")]
    pub role: String,
    /// `active`, `invited`, `suspended` or `deactivated`.
    #[schema(example = "invited")]
    pub status: String,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Bumped on every change; the `ETag` header carries it.
    #[serde(skip)]
    pub version: i64,
}

impl crate::db::FromRow for User {
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, crate::db::DbError> {
        Ok(Self {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            role: row.try_get("role")?,
            status: row.try_get("status")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            version: row.try_get("version")?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

/// Body of `POST /v1/users`: the user is invited (status `invited`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateUser)]
#[allow(dead_code)] // Documents the body; `NewUser::parse` reads it field by field.
pub struct CreateUserBody {
    /// Unique among the organization's live users, compared case-insensitively.
    #[schema(
        min_length = 3,
        max_length = 320,
        pattern = "^[^@\\s\\u0000-\\u001f\\u007f-\\u009f]{1,64}@[^@\\s.\\u0000-\\u001f\\u007f-\\u009f][^@\\s\\u0000-\\u001f\\u007f-\\u009f]*\\.[^@\\s.\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    email: String,
    #[schema(max_length = 255, pattern = "^[^\\u0000]*$", nullable = false)]
    name: Option<String>,
    /// Default `member`; only an owner may make an owner.
    #[schema(nullable = false)]
    role: Option<Role>,
}

/// Body of `PATCH /v1/users/{user_id}`: only the fields present change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateUser)]
#[allow(dead_code)] // Documents the body; `UserChanges::parse` reads it field by field.
pub struct UpdateUserBody {
    #[schema(max_length = 255, pattern = "^[^\\u0000]*$", nullable = false)]
    name: Option<String>,
    /// Only an owner may grant or remove the owner role; the last owner keeps it.
    #[schema(nullable = false)]
    role: Option<Role>,
}

#[derive(Debug)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: &'static str,
}

impl NewUser {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body)?;
        let email = fields.required("email", |f| f.text("email", EMAIL));
        let name = fields.text("name", NAME);
        let role = fields.choice("role", ROLES);
        fields.forbid("status", "is `invited` for a new user");
        fields.finish()?;
        Ok(Self {
            email: email.expect("checked by finish"),
            name: name.unwrap_or_default(),
            role: role.unwrap_or("member"),
        })
    }
}

#[derive(Debug)]
pub struct UserChanges {
    pub name: Option<String>,
    pub role: Option<&'static str>,
}

impl UserChanges {
    /// The names of the fields this change sets, for the audit trail (never their values).
    pub fn field_names(&self) -> Vec<&'static str> {
        [("name", self.name.is_some()), ("role", self.role.is_some())]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect()
    }

    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body)?;
        let name = fields.text("name", NAME);
        let role = fields.choice("role", ROLES);
        fields.forbid("email", "cannot be changed; invite the new address instead");
        fields.forbid(
            "status",
            "changes through the user's own sign-in and DELETE",
        );
        fields.finish()?;
        Ok(Self { name, role })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// User id.
    pub user_id: Uuid,
}
