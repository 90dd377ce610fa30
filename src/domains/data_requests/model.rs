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

/// Whose data a request is about: the whole organization, one of its operators, or one of the
/// people its agents talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Organization,
    User,
    EndUser,
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
