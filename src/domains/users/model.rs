//! What a user is, what clients may send about one, and the role rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::body_schema;
use crate::db::from_row;
use crate::error::ApiError;
use crate::wire::fields::{Body, EMAIL, Field, Kind, Text};
use crate::wire::names::named;

pub const NAME: Text = Text::chars(0, 255);

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
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Bumped on every change; the `ETag` header carries it.
    #[serde(skip)]
    pub version: i64,
}

from_row! {
    User {
        id, org_id, email, name, role, status, created_at, updated_at, version,
    }
}

named! {
    pub enum Role {
        Owner = "owner",
        Admin = "admin",
        Member = "member",
        Viewer = "viewer",
    }
}

const ROLE: Kind = Kind::choice::<Role>();

/// Body of `POST /v1/users`: the user is invited (status `invited`).
pub static CREATE: Body = Body {
    name: "CreateUser",
    doc: "An invitation; the user starts `invited`.",
    fields: &[
        Field::new("email", Kind::Text(EMAIL))
            .required()
            .doc("Unique among the organization's live users, compared case-insensitively."),
        Field::new("name", Kind::Text(NAME)),
        Field::new("role", ROLE).doc("Default `member`; only roles below the caller's own."),
        Field::read_only("status", "is `invited` for a new user"),
    ],
};

/// Body of `PATCH /v1/users/{user_id}`: only the fields present change.
pub static UPDATE: Body = Body {
    name: "UpdateUser",
    doc: "Only the fields present change.",
    fields: &[
        Field::new("name", Kind::Text(NAME)),
        Field::new("role", ROLE).doc(
            "Only roles below the caller's own; only an owner grants or removes `owner`; the last owner keeps it.",
        ),
        Field::read_only("email", "cannot be changed; invite the new address instead"),
        Field::read_only("status", "changes through the user's own sign-in and DELETE"),
    ],
};

body_schema!(CreateUserBody = CREATE);
body_schema!(UpdateUserBody = UPDATE);

#[derive(Debug)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: &'static str,
}

impl NewUser {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = CREATE.read(body)?;
        let email = fields.text("email");
        let name = fields.text("name");
        let role = fields.choice("role");
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
    /// The fields the body carried, for the audit trail (never their values).
    pub sent: Vec<&'static str>,
    pub name: Option<String>,
    pub role: Option<&'static str>,
}

impl UserChanges {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = UPDATE.read(body)?;
        let name = fields.text("name");
        let role = fields.choice("role");
        let sent = fields.finish()?;
        Ok(Self { sent, name, role })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// User id.
    pub user_id: Uuid,
}
