//! What a session is, and the list's filters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::wire::names::named;
use crate::wire::pagination::ListScope;
use crate::wire::time::{check_range, parse_param};

named! {
    pub enum SessionStatus {
        Active = "active",
        Completed = "completed",
        Abandoned = "abandoned",
        Error = "error",
    }
}

/// A conversation an agent had through the proxy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Session {
    pub id: Uuid,
    pub agent_id: Uuid,
    /// The caller's own id for the conversation, unique per agent when set.
    pub external_id: Option<String>,
    #[schema(value_type = SessionStatus)]
    pub status: String,
    pub model: String,
    pub provider: String,
    pub directive_version_id: Option<Uuid>,
    #[schema(minimum = 0)]
    pub turn_count: i32,
    #[schema(minimum = 0)]
    pub total_input_tokens: i64,
    #[schema(minimum = 0)]
    pub total_output_tokens: i64,
    #[schema(minimum = 0)]
    pub total_latency_ms: i64,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339_opt")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// A pre-signed link to the session's archive.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replay {
    /// A pre-signed GET URL of the archive (NDJSON, one turn a line), no credentials needed.
    pub url: String,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionFilterParams {
    /// Only sessions of this agent.
    #[param(value_type = Option<Uuid>)]
    pub agent_id: Option<String>,
    /// Only sessions with this status.
    #[param(value_type = Option<SessionStatus>)]
    pub status: Option<String>,
    /// Only sessions started at or after this instant (RFC 3339); before `started_before`.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub started_after: Option<String>,
    /// Only sessions started before this instant (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub started_before: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionFilters {
    pub agent_id: Option<Uuid>,
    pub status: Option<&'static str>,
    pub started_after: Option<DateTime<Utc>>,
    pub started_before: Option<DateTime<Utc>>,
}

impl SessionFilters {
    pub fn parse(params: &SessionFilterParams) -> Result<Self, ApiError> {
        let agent_id = params
            .agent_id
            .as_deref()
            .map(|text| {
                text.parse::<Uuid>()
                    .map_err(|_| ApiError::field("agent_id", "INVALID_UUID", "must be a UUID"))
            })
            .transpose()?;
        let status = params
            .status
            .as_deref()
            .map(|text| {
                SessionStatus::NAMES
                    .iter()
                    .find(|s| **s == text)
                    .copied()
                    .ok_or_else(|| {
                        ApiError::field(
                            "status",
                            "INVALID_VALUE",
                            format!("must be one of {}", SessionStatus::NAMES.join(", ")),
                        )
                    })
            })
            .transpose()?;
        let filters = Self {
            agent_id,
            status,
            started_after: parse_param("started_after", params.started_after.as_deref())?,
            started_before: parse_param("started_before", params.started_before.as_deref())?,
        };
        check_range(
            "started_after",
            "started_before",
            filters.started_after,
            filters.started_before,
        )?;
        Ok(filters)
    }

    /// A cursor is valid only with the filters that produced it.
    pub fn scope(&self) -> ListScope {
        let time = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros().to_string());
        ListScope::new("sessions")
            .filter("agent_id", self.agent_id.map(|a| a.to_string()).as_deref())
            .filter("status", self.status)
            .filter("started_after", time(self.started_after).as_deref())
            .filter("started_before", time(self.started_before).as_deref())
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionPath {
    /// Session id.
    pub session_id: Uuid,
}
