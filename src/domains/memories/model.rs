//! What a memory and an export job are, and what clients may send: the list filters (shared by
//! the list, the bulk delete and exports), the search body and the export body.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::body_schema;
use crate::error::ApiError;
use crate::wire::fields::{Body, Field, Fields, Kind, Text};
use crate::wire::names::named;
use crate::wire::pagination::ListScope;
use crate::wire::time::{check_range, parse_param};

pub const TAG: Text = Text::chars(1, 100);
pub const QUERY: Text = Text::chars(1, 2000);

named! {
    pub enum MemoryCategory {
        Factual = "factual",
        Preference = "preference",
        Behavioral = "behavioral",
        Episodic = "episodic",
        Procedural = "procedural",
    }
}

named! {
    pub enum MemorySource {
        Extracted = "extracted",
        UserProvided = "user_provided",
        Imported = "imported",
        Inferred = "inferred",
    }
}

named! {
    pub enum MemoryStatus {
        Active = "active",
        Superseded = "superseded",
        Merged = "merged",
        Archived = "archived",
        PendingReview = "pending_review",
    }
}

named! {
    pub enum ExportFormat {
        Csv = "csv",
        Json = "json",
    }
}

/// Something an agent remembers, as the memory engine extracted it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Memory {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub session_id: Option<Uuid>,
    #[schema(min_length = 1, max_length = 8192)]
    pub content: String,
    #[schema(value_type = MemoryCategory)]
    pub category: String,
    #[schema(value_type = MemorySource)]
    pub source: String,
    #[schema(value_type = MemoryStatus)]
    pub status: String,
    #[schema(minimum = 0, maximum = 1)]
    pub confidence: f32,
    #[schema(minimum = 0)]
    pub retrieval_count: i32,
    #[serde(serialize_with = "crate::wire::time::rfc3339_opt")]
    pub last_retrieved_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    #[schema(value_type = crate::wire::body::JsonObject)]
    pub metadata: Value,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// The list filters as the query string carries them (the list and the bulk delete).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Only memories of this category.
    #[param(value_type = Option<MemoryCategory>)]
    pub category: Option<String>,
    /// Only memories with this status (default `active`).
    #[param(value_type = Option<MemoryStatus>)]
    pub status: Option<String>,
    /// Only memories from this source.
    #[param(value_type = Option<MemorySource>)]
    pub source: Option<String>,
    /// Only memories carrying this tag.
    #[param(min_length = 1, max_length = 100, pattern = "^[^\\u0000]+$")]
    pub tag: Option<String>,
    /// Only memories created at or after this instant (RFC 3339); before `created_before`.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub created_after: Option<String>,
    /// Only memories created before this instant (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub created_before: Option<String>,
}

/// `confirm=true`, which a bulk delete needs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfirmParam {
    /// Must be `true`: a bulk delete is irreversible for the API's callers.
    #[param(required = true, value_type = String, pattern = "^true$")]
    pub confirm: Option<String>,
}

/// Validated filters. Each is an exact match; all given apply together.
#[derive(Debug, Clone, PartialEq)]
pub struct Filters {
    pub category: Option<&'static str>,
    pub status: &'static str,
    pub source: Option<&'static str>,
    pub tag: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

fn one_of(
    field: &str,
    value: Option<&str>,
    allowed: &[&'static str],
) -> Result<Option<&'static str>, ApiError> {
    value
        .map(|text| {
            allowed
                .iter()
                .find(|a| **a == text)
                .copied()
                .ok_or_else(|| {
                    ApiError::field(
                        field,
                        "INVALID_VALUE",
                        format!("must be one of {}", allowed.join(", ")),
                    )
                })
        })
        .transpose()
}

impl Filters {
    pub fn parse(params: &FilterParams) -> Result<Self, ApiError> {
        let tag = match params.tag.as_deref() {
            None => None,
            Some(tag) => {
                let chars = tag.chars().count();
                if !(1..=100).contains(&chars) || tag.contains('\0') {
                    return Err(ApiError::field(
                        "tag",
                        "INVALID_LENGTH",
                        "must be 1 to 100 characters, without NUL",
                    ));
                }
                Some(tag.to_owned())
            }
        };
        let filters = Self {
            category: one_of(
                "category",
                params.category.as_deref(),
                MemoryCategory::NAMES,
            )?,
            status: one_of("status", params.status.as_deref(), MemoryStatus::NAMES)?
                .unwrap_or("active"),
            source: one_of("source", params.source.as_deref(), MemorySource::NAMES)?,
            tag,
            created_after: parse_param("created_after", params.created_after.as_deref())?,
            created_before: parse_param("created_before", params.created_before.as_deref())?,
        };
        check_range(
            "created_after",
            "created_before",
            filters.created_after,
            filters.created_before,
        )?;
        Ok(filters)
    }

    /// A cursor is valid only with the filters that produced it.
    pub fn scope(&self, agent_id: Uuid) -> ListScope {
        let time = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros().to_string());
        ListScope::new("memories")
            .filter("agent_id", Some(&agent_id.to_string()))
            .filter("category", self.category)
            .filter("status", Some(self.status))
            .filter("source", self.source)
            .filter("tag", self.tag.as_deref())
            .filter("created_after", time(self.created_after).as_deref())
            .filter("created_before", time(self.created_before).as_deref())
    }

    /// As an export job stores them (the same names as the query string).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        let mut put = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                map.insert(name.to_owned(), Value::String(value));
            }
        };
        let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339());
        put("category", self.category.map(str::to_owned));
        put("status", Some(self.status.to_owned()));
        put("source", self.source.map(str::to_owned));
        put("tag", self.tag.clone());
        put("created_after", time(self.created_after));
        put("created_before", time(self.created_before));
        Value::Object(map)
    }

    /// Reads what [`Filters::to_json`] stored.
    pub fn from_json(value: &Value) -> Result<Self, ApiError> {
        let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        Self::parse(&FilterParams {
            category: text("category"),
            status: text("status"),
            source: text("source"),
            tag: text("tag"),
            created_after: text("created_after"),
            created_before: text("created_before"),
        })
    }

    /// Reads the filters from a JSON body ([`EXPORT`]), each under its query-string name.
    fn take_from(fields: &mut Fields) -> Option<Self> {
        let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339());
        let parsed = Self::parse(&FilterParams {
            category: fields.choice("category").map(str::to_owned),
            status: fields.choice("status").map(str::to_owned),
            source: fields.choice("source").map(str::to_owned),
            tag: fields.text("tag"),
            created_after: time(fields.timestamp("created_after")),
            created_before: time(fields.timestamp("created_before")),
        });
        match parsed {
            Ok(filters) => Some(filters),
            Err(ApiError::Validation { field_errors, .. }) => {
                for e in field_errors {
                    fields.reject(&e.field, e.code, e.message);
                }
                None
            }
            Err(_) => None,
        }
    }
}

const CATEGORY: Kind = Kind::choice::<MemoryCategory>();

/// Body of `POST /v1/agents/{agent_id}/memories/search`.
pub static SEARCH: Body = Body {
    name: "SearchMemories",
    doc: "A semantic search of the agent's memories.",
    fields: &[
        Field::new("query", Kind::Text(QUERY))
            .required()
            .doc("What to look for."),
        Field::new("limit", Kind::Integer { min: 1, max: 50 }).doc("Most results (default 10)."),
        Field::new("category", CATEGORY),
        Field::new(
            "tags",
            Kind::TextList {
                item: TAG,
                max_items: MAX_SEARCH_TAGS,
            },
        )
        .doc("Only memories carrying every one of these tags."),
        Field::new("min_confidence", Kind::Number { min: 0.0, max: 1.0 }),
    ],
};

/// Most tags a search may require.
pub const MAX_SEARCH_TAGS: usize = 20;

/// Body of `POST /v1/agents/{agent_id}/memories/export`: a format and the list's filters.
pub static EXPORT: Body = Body {
    name: "ExportMemories",
    doc: "An export of the agent's memories that match the filters (those of the list).",
    fields: &[
        Field::new("format", Kind::choice::<ExportFormat>()).required(),
        Field::new("category", CATEGORY),
        Field::new("status", Kind::choice::<MemoryStatus>()).doc("Default `active`."),
        Field::new("source", Kind::choice::<MemorySource>()),
        Field::new("tag", Kind::Text(TAG)),
        Field::new("created_after", Kind::Timestamp),
        Field::new("created_before", Kind::Timestamp),
    ],
};

body_schema!(SearchBody = SEARCH);
body_schema!(ExportBody = EXPORT);

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub limit: u32,
    pub category: Option<&'static str>,
    pub tags: Vec<String>,
    pub min_confidence: Option<f64>,
}

impl SearchRequest {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = SEARCH.read(body)?;
        let query = fields.text("query");
        let limit = fields.integer("limit");
        let category = fields.choice("category");
        let tags = fields.text_list("tags");
        let min_confidence = fields.number("min_confidence");
        fields.finish()?;
        Ok(Self {
            query: query.expect("checked by finish"),
            limit: limit.unwrap_or(10) as u32,
            category,
            tags: tags.unwrap_or_default(),
            min_confidence,
        })
    }
}

/// One search result: the memory and the memory service's score.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoredMemory {
    pub memory: Memory,
    /// Relevance as the memory service ranks it; higher is better.
    pub score: f64,
}

/// Search results, best first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub items: Vec<ScoredMemory>,
}

#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub format: &'static str,
    pub filters: Filters,
}

impl ExportRequest {
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut fields = EXPORT.read(body)?;
        let format = fields.choice("format");
        let filters = Filters::take_from(&mut fields);
        fields.finish()?;
        Ok(Self {
            format: format.expect("checked by finish"),
            filters: filters.expect("checked by finish"),
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Its file held a memory that a data-protection erasure removed, and went with it: no URL.
    Purged,
}

/// An export job; once it succeeded, a fresh download link at every read.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportJob {
    pub job_id: Uuid,
    pub agent_id: Uuid,
    #[schema(value_type = ExportFormat)]
    pub format: String,
    #[schema(value_type = ExportStatus)]
    pub status: String,
    /// Memories written, once succeeded.
    pub row_count: Option<i64>,
    /// Size of the file in bytes, once succeeded.
    pub size_bytes: Option<i64>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, as a code (`OBJECT_STORE_UNAVAILABLE`, `EXPORT_FAILED`); never a stack.
    pub error: Option<String>,
    /// A pre-signed GET URL of the file (no credentials needed), made at this read, valid 15
    /// minutes; null until succeeded.
    pub download_url: Option<String>,
    #[serde(serialize_with = "crate::wire::time::rfc3339_opt")]
    pub download_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemoryPath {
    /// Agent id.
    pub agent_id: Uuid,
    /// Memory id.
    pub memory_id: Uuid,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ExportJobPath {
    /// Agent id.
    pub agent_id: Uuid,
    /// Export job id.
    pub job_id: Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_survive_the_job_row() {
        let filters = Filters::parse(&FilterParams {
            category: Some("factual".into()),
            tag: Some("vip".into()),
            created_after: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(filters.status, "active");
        assert_eq!(Filters::from_json(&filters.to_json()).unwrap(), filters);
    }

    #[test]
    fn bad_filters_name_their_parameter() {
        let field = |params: FilterParams| match Filters::parse(&params) {
            Err(ApiError::Validation { field_errors, .. }) => field_errors[0].field.clone(),
            other => panic!("{other:?}"),
        };
        let p = |f: fn(&mut FilterParams)| {
            let mut params = FilterParams::default();
            f(&mut params);
            params
        };
        assert_eq!(field(p(|p| p.category = Some("x".into()))), "category");
        assert_eq!(field(p(|p| p.status = Some("deleted".into()))), "status");
        assert_eq!(
            field(p(|p| p.created_before = Some("yesterday".into()))),
            "created_before"
        );
        assert_eq!(
            field(p(|p| {
                p.created_after = Some("2026-02-01T00:00:00Z".into());
                p.created_before = Some("2026-01-01T00:00:00Z".into());
            })),
            "created_after"
        );
    }
}
