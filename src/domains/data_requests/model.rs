//! The data map as clients read it.

use serde::Serialize;
use utoipa::ToSchema;

/// Where data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Postgresql,
    Clickhouse,
    ObjectStore,
    Redis,
}

named! {
    /// Whose data a request is about: the whole organization, one of its operators, or one of the
    /// people its agents talk to.
    pub enum SubjectKind {
        Organization = "organization",
        User = "user",
        EndUser = "end_user",
    }
}

/// One store: a table, a bucket or a Redis key space or channel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DataStore {
    pub store: StoreKind,
    /// `schema.table` in PostgreSQL and ClickHouse; the bucket's configured name; a Redis key
    /// pattern or channel.
    pub name: String,
    /// What it holds.
    pub holds: &'static str,
    /// Its personal data, by field (empty: none).
    pub personal_data: Vec<&'static str>,
    /// The kinds of data subject whose data reaches it.
    pub subjects: Vec<SubjectKind>,
    /// The subject kinds whose access request covers it today.
    pub access: Vec<SubjectKind>,
    /// The subject kinds whose erasure covers it today (`organization`: the organization's
    /// deletion, `DELETE /v1/organizations/{org_id}`).
    pub erasure: Vec<SubjectKind>,
    /// How long what it holds is kept.
    pub retention: &'static str,
}

/// Every store the service keeps.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataMap {
    pub stores: Vec<DataStore>,
}

// ---------------------------------------------------------------------------------------------
// Data requests.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::body_schema;
use crate::error::ApiError;
use crate::wire::body::{Body, Field, Kind};
use crate::wire::fields::Text;
use crate::wire::names::named;
use crate::wire::pagination::ListScope;

/// Most identifiers an end user may be named by, all lists together.
pub const MAX_SUBJECT_VALUES: usize = 1000;
/// An extension adds at most this many months (Art. 12(3)).
pub const MAX_EXTENSION_MONTHS: i64 = 2;
/// `at_risk` this close to `due_at`.
pub const AT_RISK_DAYS: i64 = 7;

named! {
    /// What the person asked for: a copy of their data (Art. 15 and 20) or its erasure (Art. 17).
    pub enum DataRequestType {
        Access = "access",
        Erasure = "erasure",
    }
}

named! {
    /// `received` → `planning` → `awaiting_confirmation` (erasure only) → `running` → `succeeded`;
    /// or `canceled` (before anything was touched) or `rejected` (with `rejection_code`).
    pub enum DataRequestStatus {
        Received = "received",
        Planning = "planning",
        AwaitingConfirmation = "awaiting_confirmation",
        Running = "running",
        Succeeded = "succeeded",
        Canceled = "canceled",
        Rejected = "rejected",
    }
}

/// Against `due_at`: `at_risk` within 7 days of it, `overdue` past it (a finished request: whether
/// it finished in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlaState {
    OnTime,
    AtRisk,
    Overdue,
}

impl SlaState {
    pub fn of(
        due_at: DateTime<Utc>,
        completed_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        match completed_at {
            Some(done) if done <= due_at => Self::OnTime,
            Some(_) => Self::Overdue,
            None if now > due_at => Self::Overdue,
            None if due_at - now <= chrono::Duration::days(AT_RISK_DAYS) => Self::AtRisk,
            None => Self::OnTime,
        }
    }
}

/// Whom a request is about; fields a kind does not take are null or empty. After an erasure
/// succeeded only `kind` is left (the identifiers are replaced by `subject_commitment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subject {
    pub kind: SubjectKind,
    /// `user`: the operator.
    #[serde(default)]
    pub user_id: Option<Uuid>,
    /// `end_user`: sessions whose `external_id` is exactly one of these.
    #[serde(default)]
    pub external_ids: Vec<String>,
    /// `end_user`: sessions with these ids.
    #[serde(default)]
    pub session_ids: Vec<Uuid>,
    /// `end_user`: only sessions of these agents (empty: every agent of the organization).
    #[serde(default)]
    pub agent_ids: Vec<Uuid>,
}

impl Subject {
    /// Only the kind: what an erased request keeps.
    pub fn redacted(&self) -> Self {
        Self {
            kind: self.kind,
            user_id: None,
            external_ids: Vec::new(),
            session_ids: Vec::new(),
            agent_ids: Vec::new(),
        }
    }

    /// `SHA-256(salt ":" subject)` in hex, the subject as the request shows it (compact JSON,
    /// fields in declaration order, lists sorted): what a receipt names instead of the
    /// person, which the controller can recompute with the salt to prove whom it was about.
    pub fn commitment(&self, salt: &str) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_string(self).expect("a subject serializes");
        hex(&Sha256::digest(format!("{salt}:{json}").as_bytes()))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A store's part of the work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreProgress {
    /// `pending`, `running`, `waiting` (the store is unreachable; retried) or `done`.
    pub status: String,
    pub items_total: i64,
    pub items_done: i64,
    /// Counted again in the store after the work (an erasure succeeds only with 0 everywhere).
    pub remaining: Option<i64>,
    /// The store's last error while it is unreachable (a short kind, never a message of it);
    /// null once it answers.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The access archive of a succeeded access request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArchiveInfo {
    /// SHA-256 of the ZIP file, hex.
    pub sha256: String,
    pub bytes: i64,
    /// When the archive is deleted (then `GET …/archive` answers 410).
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
    /// Whether it was deleted already.
    pub purged: bool,
}

/// A data-protection request.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataRequest {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: DataRequestType,
    pub status: DataRequestStatus,
    /// Why it was rejected (`LAST_OWNER_PROTECTED`, `USER_NOT_FOUND`, …), when `rejected`.
    pub rejection_code: Option<String>,
    pub subject: Subject,
    /// The salt of `subject_commitment`: keep it with your own record of the subject to prove
    /// later whom a receipt was about.
    pub subject_salt: String,
    /// `SHA-256(subject_salt ":" subject)` in hex (see docs/domains/data-requests.md).
    pub subject_commitment: String,
    /// The controller's ticket id.
    pub reference: Option<String>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub received_at: DateTime<Utc>,
    /// One calendar month after `received_at`, later once extended.
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub due_at: DateTime<Utc>,
    pub sla_state: SlaState,
    pub extension_reason: Option<String>,
    /// Per store, how many items the plan froze; null until planned.
    pub plan: Option<BTreeMap<String, i64>>,
    pub progress: BTreeMap<String, StoreProgress>,
    /// An access request's archive, once succeeded.
    pub archive: Option<ArchiveInfo>,
    /// The receipt's id, once succeeded: `GET /v1/data-request-receipts/{receipt_id}` (no token).
    pub receipt_id: Option<Uuid>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339_opt")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// A pre-signed link to the access archive.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArchiveLink {
    /// A pre-signed GET URL of the ZIP file, no credentials needed.
    pub url: String,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
}

/// A signed receipt: `receipt` is the JWS payload, decoded.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedReceipt {
    /// What was done, without personal data (see docs/domains/data-requests.md).
    #[schema(value_type = Object)]
    pub receipt: Value,
    /// The receipt as a compact JWS (EdDSA), verifiable with `/.well-known/jwks.json`.
    pub jws: String,
}

// ---------------------------------------------------------------------------------------------
// Bodies.

const REFERENCE: Text = Text::chars(1, 255);
const EXTERNAL_ID: Text = Text::chars(1, 255);
const REASON: Text = Text::chars(1, 1000);

/// The subject of `POST /v1/data-requests`.
pub static SUBJECT: Body = Body {
    name: "DataRequestSubject",
    doc: "Whom the request is about. `organization`: the caller's organization (no other field). `user`: an operator of it (`user_id`). `end_user`: one person, named by the sessions that are theirs: those whose `external_id` is exactly one of `external_ids` or whose id is in `session_ids`, of every agent of the organization or only of `agent_ids`; at least one external or session id, at most 1,000 values in all.",
    fields: &[
        Field::new("kind", Kind::choice::<SubjectKind>()).required(),
        Field::new("user_id", Kind::Uuid).doc("`user` only."),
        Field::new(
            "external_ids",
            Kind::TextList {
                item: EXTERNAL_ID,
                max_items: MAX_SUBJECT_VALUES,
            },
        )
        .doc("`end_user` only."),
        Field::new(
            "session_ids",
            Kind::UuidList {
                max_items: MAX_SUBJECT_VALUES,
            },
        )
        .doc("`end_user` only."),
        Field::new(
            "agent_ids",
            Kind::UuidList {
                max_items: MAX_SUBJECT_VALUES,
            },
        )
        .doc("`end_user` only."),
    ],
};

/// Body of `POST /v1/data-requests`.
pub static CREATE: Body = Body {
    name: "CreateDataRequest",
    doc: "A data-protection request received by the controller.",
    fields: &[
        Field::new("type", Kind::choice::<DataRequestType>()).required(),
        Field::new("subject", Kind::Nested(&SUBJECT)).required(),
        Field::new("received_at", Kind::Timestamp)
            .doc("When the controller received the request (not in the future; default now)."),
        Field::new("reference", Kind::Text(REFERENCE)).doc("The controller's ticket id."),
    ],
};
body_schema!(CreateDataRequestBody = CREATE);

/// Body of `POST /v1/data-requests/{request_id}/extend`.
pub static EXTEND: Body = Body {
    name: "ExtendDataRequest",
    doc: "The one extension of the deadline Art. 12(3) allows, with its reason.",
    fields: &[
        Field::new("reason", Kind::Text(REASON))
            .required()
            .doc("Why (told to the person)."),
        Field::new(
            "months",
            Kind::Integer {
                min: 1,
                max: MAX_EXTENSION_MONTHS,
            },
        )
        .doc("Months added to `due_at` (default 2)."),
    ],
};
body_schema!(ExtendDataRequestBody = EXTEND);

/// A parsed `POST /v1/data-requests`.
#[derive(Debug)]
pub struct NewDataRequest {
    pub kind: DataRequestType,
    pub subject: Subject,
    pub received_at: DateTime<Utc>,
    pub reference: Option<String>,
}

impl NewDataRequest {
    pub fn parse(body: Value, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let mut fields = CREATE.read(body)?;
        let kind = fields.choice("type");
        let subject = fields.nested("subject", read_subject);
        let received_at = fields.timestamp("received_at");
        if received_at.is_some_and(|at| at > now) {
            fields.reject("received_at", "IN_THE_FUTURE", "must not be in the future");
        }
        let reference = fields.text("reference");
        let subject = match subject {
            Some(Ok(subject)) => Some(subject),
            Some(Err((field, code, message))) => {
                fields.reject(field, code, message);
                None
            }
            None => None,
        };
        fields.finish()?;
        Ok(Self {
            kind: match kind.expect("checked by finish") {
                "access" => DataRequestType::Access,
                _ => DataRequestType::Erasure,
            },
            subject: subject.expect("checked by finish"),
            received_at: received_at.unwrap_or(now),
            reference,
        })
    }
}

type SubjectProblem = (&'static str, &'static str, &'static str);

/// The subject's fields, and the rules across them (which kind takes which field).
fn read_subject(fields: &mut crate::wire::fields::Fields) -> Result<Subject, SubjectProblem> {
    let kind = fields.choice("kind");
    let user_id = fields.uuid("user_id");
    let mut external_ids = fields.text_list("external_ids").unwrap_or_default();
    let mut session_ids = fields.uuid_list("session_ids").unwrap_or_default();
    let mut agent_ids = fields.uuid_list("agent_ids").unwrap_or_default();
    external_ids.sort();
    external_ids.dedup();
    session_ids.sort();
    agent_ids.sort();
    let end_user_fields =
        !external_ids.is_empty() || !session_ids.is_empty() || !agent_ids.is_empty();
    let kind = match kind {
        Some("organization") => SubjectKind::Organization,
        Some("user") => SubjectKind::User,
        Some(_) => SubjectKind::EndUser,
        // Reported by the nested body.
        None => SubjectKind::Organization,
    };
    let misplaced = match kind {
        SubjectKind::Organization => user_id.is_some() || end_user_fields,
        SubjectKind::User => end_user_fields,
        SubjectKind::EndUser => user_id.is_some(),
    };
    if misplaced {
        return Err((
            "subject",
            "FIELD_NOT_FOR_KIND",
            "carries a field its kind does not take (organization: none; user: user_id; end_user: external_ids, session_ids, agent_ids)",
        ));
    }
    if kind == SubjectKind::User && user_id.is_none() {
        return Err(("subject.user_id", "REQUIRED", "is required for a user"));
    }
    if kind == SubjectKind::EndUser {
        if external_ids.is_empty() && session_ids.is_empty() {
            return Err((
                "subject",
                "REQUIRED",
                "an end user needs at least one external_ids or session_ids value",
            ));
        }
        if external_ids.len() + session_ids.len() + agent_ids.len() > MAX_SUBJECT_VALUES {
            return Err(("subject", "TOO_MANY", "at most 1000 values in all"));
        }
    }
    Ok(Subject {
        kind,
        user_id,
        external_ids,
        session_ids,
        agent_ids,
    })
}

/// A parsed extension.
#[derive(Debug)]
pub struct Extension {
    pub reason: String,
    pub months: u32,
}

impl Extension {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = EXTEND.read(body)?;
        let reason = fields.text("reason");
        let months = fields.integer("months");
        fields.finish()?;
        Ok(Self {
            reason: reason.expect("checked by finish"),
            months: months.unwrap_or(MAX_EXTENSION_MONTHS) as u32,
        })
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DataRequestFilterParams {
    /// Only requests of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<DataRequestType>)]
    pub kind: Option<String>,
    /// Only requests in this status.
    #[param(value_type = Option<DataRequestStatus>)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataRequestFilters {
    pub kind: Option<&'static str>,
    pub status: Option<&'static str>,
}

impl DataRequestFilters {
    pub fn parse(params: &DataRequestFilterParams) -> Result<Self, ApiError> {
        let one_of = |field: &str, value: Option<&str>, values: &'static [&'static str]| {
            value
                .map(|v| {
                    values
                        .iter()
                        .copied()
                        .find(|known| *known == v)
                        .ok_or_else(|| {
                            ApiError::field(
                                field,
                                "INVALID_VALUE",
                                format!("must be one of {}", values.join(", ")),
                            )
                        })
                })
                .transpose()
        };
        Ok(Self {
            kind: one_of("type", params.kind.as_deref(), DataRequestType::NAMES)?,
            status: one_of("status", params.status.as_deref(), DataRequestStatus::NAMES)?,
        })
    }

    pub fn scope(&self) -> ListScope {
        ListScope::new("data_requests")
            .filter("type", self.kind)
            .filter("status", self.status)
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DataRequestPath {
    /// Data request id.
    pub request_id: Uuid,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReceiptPath {
    /// Receipt id (from the request's `receipt_id`).
    pub receipt_id: Uuid,
}
