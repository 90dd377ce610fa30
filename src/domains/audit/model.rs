//! What an audit event is, and the list's filters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::wire::pagination::ListScope;
use crate::wire::time::{check_range, parse_param};

/// One change made through the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: Uuid,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// The user who made the change; null for a token without a user (an agent's).
    pub actor_user_id: Option<Uuid>,
    /// The token the change was made with, when the auth service named it.
    pub actor_token_id: Option<Uuid>,
    /// `<target>.<verb>`, e.g. `agent.update`, `token.revoke`, `memory.bulk_delete`.
    #[schema(example = "agent.update")]
    pub action: String,
    /// `agent`, `organization`, `user`, `token`, `directive`, `memory`, `memory_export`.
    #[schema(example = "agent")]
    pub target_type: String,
    /// The target's id (for a bulk delete, the agent's).
    pub target_id: String,
    /// The request's id (its `X-Request-ID`).
    pub request_id: String,
    /// The client's address: the last `X-Forwarded-For` entry, else the connection's peer.
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// For updates, the names of the fields the request changed; never their values.
    pub changed_fields: Vec<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilterParams {
    /// Only events of this user.
    #[param(value_type = Option<Uuid>)]
    pub actor_id: Option<String>,
    /// Only events with this action (e.g. `agent.update`).
    #[param(max_length = 100)]
    pub action: Option<String>,
    /// Only events about this kind of target.
    #[param(max_length = 100)]
    pub target_type: Option<String>,
    /// Only events about this target (any type, or the one `target_type` names).
    #[param(max_length = 100)]
    pub target_id: Option<String>,
    /// Only events at or after this instant (RFC 3339); before `until`.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<String>,
    /// Only events before this instant (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub until: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditFilters {
    pub actor_id: Option<Uuid>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A short text filter: at most 100 characters, no NUL (PostgreSQL refuses it in text).
fn text(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() || v.chars().count() > 100 || v.contains('\0') => {
            Err(ApiError::field(
                field,
                "INVALID_VALUE",
                "must be 1 to 100 characters, no NUL",
            ))
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

impl AuditFilters {
    pub fn parse(params: &AuditFilterParams) -> Result<Self, ApiError> {
        let actor_id = params
            .actor_id
            .as_deref()
            .map(|text| {
                text.parse::<Uuid>()
                    .map_err(|_| ApiError::field("actor_id", "INVALID_UUID", "must be a UUID"))
            })
            .transpose()?;
        let filters = Self {
            actor_id,
            action: text("action", params.action.as_deref())?,
            target_type: text("target_type", params.target_type.as_deref())?,
            target_id: text("target_id", params.target_id.as_deref())?,
            since: parse_param("since", params.since.as_deref())?,
            until: parse_param("until", params.until.as_deref())?,
        };
        check_range("since", "until", filters.since, filters.until)?;
        Ok(filters)
    }

    /// A cursor is valid only with the filters that produced it.
    pub fn scope(&self) -> ListScope {
        let time = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros().to_string());
        ListScope::new("audit_events")
            .filter("actor_id", self.actor_id.map(|a| a.to_string()).as_deref())
            .filter("action", self.action.as_deref())
            .filter("target_type", self.target_type.as_deref())
            .filter("target_id", self.target_id.as_deref())
            .filter("since", time(self.since).as_deref())
            .filter("until", time(self.until).as_deref())
    }
}
