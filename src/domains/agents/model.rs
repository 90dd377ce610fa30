//! What an agent is, what clients may send about one, and the lifecycle rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::body_schema;
use crate::db::from_row;
use crate::error::ApiError;
use crate::wire::fields::{Body, Field, Kind, Shape, Text};
use crate::wire::names::named;

pub const NAME: Text = Text::chars(1, 255);
pub const SLUG: Text = Text::chars(1, 100).shaped(Shape {
    check: is_slug,
    description: "lowercase letters, digits and hyphens",
    pattern: "^[a-z0-9-]+$",
});
/// Largest `config`, serialized (**Decision**, docs/domains/agents.md).
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

fn is_slug(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

named! {
    pub enum AgentStatus {
        Active = "active",
        Paused = "paused",
        /// Set by the platform (abuse, billing), never through this API.
        Suspended = "suspended",
        /// Terminal.
        Archived = "archived",
    }
}

impl AgentStatus {
    /// The statuses from which this API may move an agent to `self`: active ↔ paused; active,
    /// paused or suspended → archived. Archived is terminal, suspended is the platform's.
    pub fn reachable_from(self) -> &'static [&'static str] {
        match self {
            Self::Active => &["paused"],
            Self::Paused => &["active"],
            Self::Archived => &["active", "paused", "suspended"],
            Self::Suspended => &[],
        }
    }
}

impl TryFrom<String> for AgentStatus {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| "unknown agent status in the database".to_owned())
    }
}

/// An AI agent of the caller's organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct Agent {
    pub id: Uuid,
    pub org_id: Uuid,
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// Unique among the organization's live agents; immutable.
    #[schema(min_length = 1, max_length = 100, pattern = "^[a-z0-9-]+$")]
    pub slug: String,
    pub status: AgentStatus,
    /// Free-form configuration object.
    #[schema(value_type = crate::wire::body::JsonObject)]
    pub config: Value,
    #[schema(minimum = 0)]
    pub total_sessions: i32,
    #[schema(minimum = 0)]
    pub total_memories: i32,
    #[serde(serialize_with = "crate::wire::time::rfc3339_opt")]
    pub last_active_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Bumped on every change; the `ETag` header carries it.
    #[serde(skip)]
    pub version: i64,
}

from_row! {
    Agent {
        id, org_id, name, slug, config, total_sessions, total_memories, last_active_at,
        created_at, updated_at, version,
    }
    status: |row| AgentStatus::parse(&row.try_get::<_, String>("status")?)
        .ok_or(crate::db::DbError::Decode("agent status"))?,
}

/// Body of `POST /v1/agents`.
pub static CREATE: Body = Body {
    name: "CreateAgent",
    doc: "A new agent; it starts `active`.",
    fields: &[
        Field::new("name", Kind::Text(NAME)).required(),
        Field::new("slug", Kind::Text(SLUG))
            .required()
            .doc("Unique among the organization's live agents; immutable."),
        Field::new(
            "config",
            Kind::Object {
                max_bytes: MAX_CONFIG_BYTES,
            },
        )
        .doc("Default `{}`."),
    ],
};

/// Body of `PATCH /v1/agents/{agent_id}`: only the fields present change.
pub static UPDATE: Body = Body {
    name: "UpdateAgent",
    doc: "Only the fields present change.",
    fields: &[
        Field::new("name", Kind::Text(NAME)),
        Field::new(
            "config",
            Kind::Object {
                max_bytes: MAX_CONFIG_BYTES,
            },
        ),
        Field::read_only("slug", "is immutable"),
        Field::read_only("status", "changes through /activate, /pause and /archive"),
    ],
};

body_schema!(CreateAgentBody = CREATE);
body_schema!(UpdateAgentBody = UPDATE);

#[derive(Debug)]
pub struct NewAgent {
    pub name: String,
    pub slug: String,
    pub config: Map<String, Value>,
}

impl NewAgent {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = CREATE.read(body)?;
        let name = fields.text("name");
        let slug = fields.text("slug");
        let config = fields.object("config");
        fields.finish()?;
        Ok(Self {
            name: name.expect("checked by finish"),
            slug: slug.expect("checked by finish"),
            config: config.unwrap_or_default(),
        })
    }
}

#[derive(Debug)]
pub struct AgentChanges {
    /// The fields the body carried, for the audit trail (never their values).
    pub sent: Vec<&'static str>,
    pub name: Option<String>,
    pub config: Option<Map<String, Value>>,
}

impl AgentChanges {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = UPDATE.read(body)?;
        let name = fields.text("name");
        let config = fields.object("config");
        let sent = fields.finish()?;
        Ok(Self { sent, name, config })
    }
}

/// Query of `GET /v1/agents`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentFilter {
    /// Only agents with this status.
    #[param(value_type = Option<AgentStatus>)]
    pub status: Option<String>,
}

impl AgentFilter {
    pub fn status(&self) -> Result<Option<AgentStatus>, ApiError> {
        self.status
            .as_deref()
            .map(|text| {
                AgentStatus::parse(text).ok_or_else(|| {
                    ApiError::field(
                        "status",
                        "INVALID_VALUE",
                        "must be one of active, paused, suspended, archived",
                    )
                })
            })
            .transpose()
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgentPath {
    /// Agent id.
    pub agent_id: Uuid,
}
