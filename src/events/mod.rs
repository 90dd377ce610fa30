//! Platform events that are never lost: an event is written to the outbox table in the same
//! transaction as the change it announces ([`enqueue`]), so it exists exactly when the change
//! does; the [`publisher`] delivers it to Redis afterwards, in commit order, at least once.
//! An outbox row may also carry a ZREM (memory deletions write those rows in bulk, in SQL: see
//! `domains::memories::repo::delete`).

pub mod publisher;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::db::OrgTx;
use crate::error::ApiError;

/// The channel the proxy's auth cache listens to for revocations and suspensions.
pub const REVOCATIONS_CHANNEL: &str = "ibex:token:revocations";

/// What to tell Redis: a message to publish, a key to delete, or both (in that order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub publish: Option<(String, String)>,
    pub delete_key: Option<String>,
}

impl Event {
    /// The organization's traffic must stop platform-wide (suspension, GDPR deletion).
    pub fn org_suspended(org_id: Uuid, revoked_at: DateTime<Utc>) -> Self {
        let payload = serde_json::json!({
            "v": 1,
            "event_type": "org_suspend",
            "org_id": org_id,
            "revoked_at": revoked_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        Self {
            publish: Some((REVOCATIONS_CHANNEL.to_owned(), payload.to_string())),
            delete_key: None,
        }
    }
}

impl Event {
    /// The proxy must stop injecting the directive it cached for `agent_id`: publish the change
    /// on the agent's channel and delete the cache key (which otherwise lives 60 s).
    /// `version_num` is the now active version, `None` once the directive is deactivated.
    pub fn directive_changed(agent_id: Uuid, version_num: Option<i32>) -> Self {
        let payload = serde_json::json!({"agent_id": agent_id, "version_num": version_num});
        Self {
            publish: Some((
                format!("ibex:directive:updates:{agent_id}"),
                payload.to_string(),
            )),
            delete_key: Some(format!("directive:{agent_id}")),
        }
    }
}

/// Where data requests' status changes are published (status only, never the subject).
pub const DATA_REQUESTS_CHANNEL: &str = "ibex:data-requests";

impl Event {
    /// A data request moved to `status`.
    pub fn data_request_status(org_id: Uuid, request_id: Uuid, status: &str) -> Self {
        let payload = serde_json::json!({
            "v": 1, "org_id": org_id, "request_id": request_id, "status": status,
        });
        Self {
            publish: Some((DATA_REQUESTS_CHANNEL.to_owned(), payload.to_string())),
            delete_key: None,
        }
    }
}

/// Adds `event` to the transaction; it is published after the transaction commits, and never if
/// it rolls back.
pub async fn enqueue(tx: &mut OrgTx, event: Event) -> Result<(), ApiError> {
    let org_id = tx.org_id();
    let (channel, payload) = event.publish.unzip();
    // Nothing in the transaction reads the event back: it goes out with COMMIT, one round
    // trip fewer; if it fails, the whole transaction rolls back with it.
    let mut params = crate::db::Sql::default();
    params
        .arg(org_id)
        .arg(channel)
        .arg(payload)
        .arg(event.delete_key);
    tx.execute_at_commit(
        "INSERT INTO ibex_core.outbox (org_id, channel, payload, delete_key) VALUES ($1, $2, $3, $4)",
        params,
    );
    tx.wake_publisher_on_commit();
    Ok(())
}
