//! The inventory of every store the service keeps: declared here once, served by
//! `GET /v1/data-map`, and held against the database catalog and the object store's buckets by
//! `tests/it/data_map.rs`, so a new table or bucket cannot escape it.
//!
//! What covers each store is derived, not written: from the stores each subject kind's access
//! and erasure plan over (`plan`; an organization's are the deletion's cascade, its row, both
//! buckets and its traces).

use super::model::{DataMap, DataStore, StoreKind, SubjectKind};
use super::plan::{self, Location, Store};
use crate::storage::Storage;

use StoreKind::{Clickhouse, ObjectStore, Postgresql, Redis};
use SubjectKind::{EndUser, Organization, User};

/// One store as declared.
struct Entry {
    store: StoreKind,
    name: &'static str,
    holds: &'static str,
    personal_data: &'static [&'static str],
    subjects: &'static [SubjectKind],
    retention: &'static str,
}

const WHILE_THE_ORG_EXISTS: &str = "Until the organization is deleted.";
const SOFT_DELETED: &str = "Until the organization is deleted; a row deleted through the API is marked (invisible to every read) and removed for good IBEX_API_DELETED_RETENTION_DAYS (30) days later.";
const WITH_ITS_MEMORY: &str = "As its memory: removed for good with it.";

const ENTRIES: &[Entry] = &[
    Entry {
        store: Postgresql,
        name: "ibex_core.organizations",
        holds: "The organization: name, slug, tier, status, billing address, settings.",
        personal_data: &["billing_email", "settings"],
        subjects: &[Organization],
        retention: WHILE_THE_ORG_EXISTS,
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.users",
        holds: "The organization's operators and their roles.",
        personal_data: &["email", "name"],
        subjects: &[Organization, User],
        retention: SOFT_DELETED,
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.agents",
        holds: "AI agents, their configuration and counters.",
        personal_data: &["created_by", "config"],
        subjects: &[Organization, User],
        retention: SOFT_DELETED,
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.directives",
        holds: "Each agent's directive and its active version.",
        personal_data: &[],
        subjects: &[Organization],
        retention: "As its agent: removed for good with it.",
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.directive_versions",
        holds: "Every version of every directive, with who wrote it.",
        personal_data: &["content", "created_by"],
        subjects: &[Organization, User],
        retention: "As its agent: removed for good with it.",
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.memories",
        holds: "What agents remember about the people they talk to, by session.",
        personal_data: &["content", "metadata", "session_id"],
        subjects: &[Organization, EndUser],
        retention: SOFT_DELETED,
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.memory_tags",
        holds: "The tags of each memory.",
        personal_data: &["tag"],
        subjects: &[Organization, EndUser],
        retention: WITH_ITS_MEMORY,
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.memory_versions",
        holds: "The history of each memory: what happened and who did it.",
        personal_data: &["actor"],
        subjects: &[Organization, User, EndUser],
        retention: WITH_ITS_MEMORY,
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.memory_relationships",
        holds: "Links between memories.",
        personal_data: &[],
        subjects: &[Organization, EndUser],
        retention: WITH_ITS_MEMORY,
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.memory_exports",
        holds: "Memory export jobs: filters, status, the object written, who asked.",
        personal_data: &["filters", "created_by"],
        subjects: &[Organization, User],
        retention: WHILE_THE_ORG_EXISTS,
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.sessions",
        holds: "Recorded conversations between agents and the people they talk to.",
        personal_data: &["external_id"],
        subjects: &[Organization, EndUser],
        retention: SOFT_DELETED,
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.checkpoints",
        holds: "Each turn of a session: model, tokens, latency.",
        personal_data: &[],
        subjects: &[Organization, EndUser],
        retention: "As its session: removed for good with it.",
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.audit_events",
        holds: "Who changed what through the API, from where.",
        personal_data: &["actor_user_id", "client_ip", "user_agent"],
        subjects: &[Organization, User],
        retention: WHILE_THE_ORG_EXISTS,
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.idempotency_keys",
        holds: "Answers to POSTs with an Idempotency-Key, for their retries.",
        personal_data: &["body"],
        subjects: &[Organization, User],
        retention: "IBEX_API_IDEMPOTENCY_TTL_MS (24 hours), swept every minute.",
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.outbox",
        holds: "Platform events waiting for Redis, and delivered ones for inspection.",
        personal_data: &[],
        subjects: &[Organization],
        retention: "Until delivered, then one day.",
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.org_deletions",
        holds: "Requested organization deletions and their progress.",
        personal_data: &[],
        subjects: &[Organization],
        retention: "Kept after the deletion, as its record (it names no person).",
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.data_requests",
        holds: "Data-protection requests: type, subject, deadline, plan and progress.",
        personal_data: &["subject", "reference", "created_by"],
        subjects: &[Organization, User, EndUser],
        retention: "Until the organization is erased; an erasure's subject is replaced by its commitment when it succeeds.",
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.data_request_items",
        holds: "The items a data request froze when planned: row ids and object keys, nothing else.",
        personal_data: &[],
        subjects: &[Organization, User, EndUser],
        retention: "Until the request ends (its receipt keeps their digest).",
    },
    Entry {
        store: Postgresql,
        name: "ibex_core.data_request_receipts",
        holds: "Signed receipts of succeeded data requests: ids, counts, digests, times.",
        personal_data: &[],
        subjects: &[Organization],
        retention: "Kept after the organization is gone, as the proof of its requests (they name no person).",
    },
    Entry {
        store: Clickhouse,
        name: "ibex.llm_traces",
        holds: "One row per proxied LLM request (the analytics read them; the proxy writes them).",
        personal_data: &["session_id", "agent_id"],
        subjects: &[Organization, EndUser],
        retention: WHILE_THE_ORG_EXISTS,
    },
    Entry {
        store: ObjectStore,
        name: EXPORTS,
        holds: "Memory export files, under `{org_id}/`.",
        personal_data: &["memory contents"],
        subjects: &[Organization, EndUser],
        retention: WHILE_THE_ORG_EXISTS,
    },
    Entry {
        store: ObjectStore,
        name: ARCHIVES,
        holds: "Session archives the platform's archiver writes, under `{org_id}/`.",
        personal_data: &["conversation transcripts"],
        subjects: &[Organization, EndUser],
        retention: WHILE_THE_ORG_EXISTS,
    },
    Entry {
        store: Redis,
        name: "ibex:ratelimit:{org|token}:{id}",
        holds: "Rate-limit buckets of organizations and tokens.",
        personal_data: &[],
        subjects: &[Organization],
        retention: "Expire by themselves once full again (seconds).",
    },
    Entry {
        store: Redis,
        name: "{org_id}:hot_memories:{agent_id}",
        holds: "The proxy's hot cache of each agent's memory ids (written by the proxy; this service removes deleted ones).",
        personal_data: &[],
        subjects: &[Organization, EndUser],
        retention: "As the memories: a deleted memory's id is removed from it.",
    },
    Entry {
        store: Redis,
        name: "ibex:memory:deletions, ibex:token:revocations, ibex:directive:updates:{agent_id}, ibex:data-requests",
        holds: "Pub/sub channels of platform events (nothing kept at rest).",
        personal_data: &[],
        subjects: &[Organization],
        retention: "Not stored: delivered to the subscribers present.",
    },
];

/// Stand-ins for the buckets' configured names.
const EXPORTS: &str = "{exports bucket}";
const ARCHIVES: &str = "{archives bucket}";

/// The map with the buckets under their configured names (`IBEX_API_EXPORT_BUCKET`,
/// `IBEX_API_ARCHIVE_BUCKET`; their defaults while the object store is off).
pub fn data_map(storage: Option<&Storage>) -> DataMap {
    let bucket = |role: &str| -> String {
        let configured = storage.map(|s| match role {
            EXPORTS => s.exports.name.clone(),
            _ => s.archives.name.clone(),
        });
        configured.unwrap_or_else(|| {
            let setting = match role {
                EXPORTS => &crate::config::object_store::EXPORT_BUCKET,
                _ => &crate::config::object_store::ARCHIVE_BUCKET,
            };
            setting.default.to_owned()
        })
    };
    let stores = ENTRIES
        .iter()
        .map(|entry| DataStore {
            store: entry.store,
            name: match entry.name {
                EXPORTS | ARCHIVES => bucket(entry.name),
                name => name.to_owned(),
            },
            holds: entry.holds,
            personal_data: entry.personal_data.to_vec(),
            subjects: entry.subjects.to_vec(),
            access: covered(entry, false),
            erasure: covered(entry, true),
            retention: entry.retention,
        })
        .collect();
    DataMap { stores }
}

/// The subject kinds whose request (of the kind `stores` lists) covers the entry: derived from
/// the stores each subject kind plans over (`plan`). The organization's erasure also removes its
/// delivered events and, once its receipt is written, its data requests.
fn covered(entry: &Entry, erasure: bool) -> Vec<SubjectKind> {
    let stores = if erasure {
        plan::erasure_stores
    } else {
        plan::access_stores
    };
    [Organization, User, EndUser]
        .into_iter()
        .filter(|kind| {
            stores(*kind).iter().any(|store| reaches(store, entry))
                || (erasure
                    && *kind == Organization
                    && [
                        "ibex_core.outbox",
                        "ibex_core.data_requests",
                        "ibex_core.data_request_items",
                    ]
                    .contains(&entry.name))
        })
        .collect()
}

/// Whether a planned store is (part of) the entry.
fn reaches(store: &Store, entry: &Entry) -> bool {
    match (store.location, entry.store) {
        // An operator's access lists the ids of what they created.
        (Location::Table, Postgresql) if store.name == "authored" => [
            "ibex_core.agents",
            "ibex_core.directive_versions",
            "ibex_core.memory_exports",
            "ibex_core.memory_versions",
            "ibex_core.data_requests",
        ]
        .contains(&entry.name),
        (Location::Table, Postgresql) => entry.name.strip_prefix("ibex_core.") == Some(store.name),
        (Location::Archives, ObjectStore) => entry.name == ARCHIVES,
        (Location::Exports, ObjectStore) => entry.name == EXPORTS,
        // An export's erasure also marks its job `purged`.
        (Location::Exports, Postgresql) => {
            store.name == "memory_exports" && entry.name == "ibex_core.memory_exports"
        }
        (Location::Traces, Clickhouse) => true,
        (Location::HotCache, Redis) => entry.name.contains(":hot_memories:"),
        _ => false,
    }
}
