//! Planning: the exact set of items (row ids, object keys, trace ids) a request covers, found
//! and frozen before anything is touched, so an erasure executes exactly the plan it showed and a
//! restart repeats nothing and misses nothing.
//!
//! Each subject kind names the stores it plans over here, once; the data map derives from these
//! lists which stores an access or an erasure covers.

use std::collections::BTreeMap;

use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{DataRequestType, Subject, SubjectKind};
use crate::domains::analytics::store::TraceStore;
use crate::domains::organizations::deletion::{CASCADE, in_org};
use crate::domains::sessions::repo::archive_key;
use crate::storage::Storage;

/// Where a store's items live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// `ibex_core.{name}`.
    Table,
    /// The archive bucket (session archives).
    Archives,
    /// The export bucket (memory export files).
    Exports,
    /// ClickHouse's `llm_traces`.
    Traces,
    /// The proxy's hot cache in Redis (cleared through the outbox with the memories).
    HotCache,
    /// The auth service (tokens, revoked at confirmation).
    Auth,
}

/// One store of a plan.
#[derive(Debug, Clone, Copy)]
pub struct Store {
    pub name: &'static str,
    pub location: Location,
}

const fn table(name: &'static str) -> Store {
    Store {
        name,
        location: Location::Table,
    }
}

/// An end user's stores, in the order an erasure works through them (children before parents).
pub const END_USER: &[Store] = &[
    Store {
        name: "memory_exports",
        location: Location::Exports,
    },
    Store {
        name: "session_archives",
        location: Location::Archives,
    },
    Store {
        name: "llm_traces",
        location: Location::Traces,
    },
    Store {
        name: "hot_cache",
        location: Location::HotCache,
    },
    table("memory_relationships"),
    table("memory_tags"),
    table("memory_versions"),
    table("memories"),
    table("checkpoints"),
    table("sessions"),
];

/// An operator's stores. `authored` (access only) lists the ids of what they created.
pub const USER: &[Store] = &[
    Store {
        name: "tokens",
        location: Location::Auth,
    },
    table("audit_events"),
    table("users"),
    table("authored"),
];

/// Stores an access request of a subject kind covers (what its archive holds).
pub fn access_stores(kind: SubjectKind) -> Vec<Store> {
    match kind {
        SubjectKind::EndUser => END_USER
            .iter()
            .copied()
            .filter(|s| !matches!(s.name, "memory_exports" | "hot_cache"))
            .collect(),
        SubjectKind::User => USER
            .iter()
            .copied()
            .filter(|s| s.name != "tokens")
            .collect(),
        // Everything it owns but the idempotency records (replays of answers whose content is
        // in the other tables), and its own data requests and receipts.
        SubjectKind::Organization => organization_stores()
            .into_iter()
            .filter(|s| s.name != "idempotency_keys")
            .chain([table("data_requests"), table("data_request_receipts")])
            .collect(),
    }
}

/// Stores an erasure of a subject kind covers.
pub fn erasure_stores(kind: SubjectKind) -> Vec<Store> {
    match kind {
        SubjectKind::EndUser => END_USER.to_vec(),
        SubjectKind::User => USER
            .iter()
            .copied()
            .filter(|s| s.name != "authored")
            .collect(),
        SubjectKind::Organization => organization_stores(),
    }
}

/// Every table the organization owns (the deletion's cascade and its own row), both buckets, its
/// traces.
pub fn organization_stores() -> Vec<Store> {
    let mut stores: Vec<Store> = CASCADE
        .iter()
        .map(|t| table(t.trim_start_matches("ibex_core.")))
        .collect();
    stores.push(table("organizations"));
    stores.extend([
        Store {
            name: "exports_bucket",
            location: Location::Exports,
        },
        Store {
            name: "archives_bucket",
            location: Location::Archives,
        },
        Store {
            name: "llm_traces",
            location: Location::Traces,
        },
    ]);
    stores
}

/// A frozen item: its store, its id or key, and what the archive needs of it.
#[derive(Debug, Clone)]
pub struct Item {
    pub store: &'static str,
    pub item: String,
    pub detail: Option<serde_json::Value>,
}

/// What planning found.
#[derive(Debug, Default)]
pub struct Plan {
    pub items: Vec<Item>,
    /// Per store, how many items (an organization's plan counts rows and objects).
    pub counts: BTreeMap<String, i64>,
    /// Why the request cannot be carried out (a code), when it cannot.
    pub rejection: Option<&'static str>,
}

impl Plan {
    fn add(&mut self, store: &'static str, ids: impl IntoIterator<Item = String>) {
        let before = self.items.len();
        self.items.extend(ids.into_iter().map(|item| Item {
            store,
            item,
            detail: None,
        }));
        *self.counts.entry(store.to_owned()).or_default() += (self.items.len() - before) as i64;
    }
}

/// Why planning must wait: a store could not be read.
#[derive(Debug, Clone)]
pub struct Unreachable {
    pub store: &'static str,
    pub kind: String,
}

fn db_down(e: String) -> Unreachable {
    Unreachable {
        store: "postgresql",
        kind: e,
    }
}

/// What a plan is made for: the request, and the stores beyond PostgreSQL it may reach.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub org_id: Uuid,
    pub kind: DataRequestType,
    pub subject: &'a Subject,
    pub storage: Option<&'a Storage>,
    pub traces: Option<&'a TraceStore>,
}

/// Everything the scope's subject covers for a request of its type in its organization.
pub async fn plan(conn: &mut PgConnection, scope: Scope<'_>) -> Result<Plan, Unreachable> {
    match scope.subject.kind {
        SubjectKind::EndUser => end_user(conn, scope).await,
        SubjectKind::User => user(conn, scope.org_id, scope.kind, scope.subject).await,
        SubjectKind::Organization => {
            // A store unreachable now is counted once it is reached (an organization's erasure
            // must not wait on a count: its deletion removes everything anyway).
            let (storage, traces) = (scope.storage, scope.traces);
            Ok(Plan {
                counts: count_organization(conn, scope.org_id, storage, traces, true, false)
                    .await?,
                ..Plan::default()
            })
        }
    }
}

async fn ids(
    conn: &mut PgConnection,
    org_id: Uuid,
    sql: &'static str,
    args: Vec<Vec<Uuid>>,
) -> Result<Vec<String>, Unreachable> {
    in_org(conn, org_id, async move |tx| {
        let mut query = sqlx::query_scalar::<_, String>(sql).bind(org_id);
        for arg in args {
            query = query.bind(arg);
        }
        query.fetch_all(&mut *tx).await
    })
    .await
    .map_err(db_down)
}

fn uuids(items: &[String]) -> Vec<Uuid> {
    items.iter().filter_map(|i| i.parse().ok()).collect()
}

async fn end_user(conn: &mut PgConnection, scope: Scope<'_>) -> Result<Plan, Unreachable> {
    let Scope {
        org_id,
        kind,
        subject,
        storage,
        traces,
    } = scope;
    let mut plan = Plan::default();
    // The person's sessions, soft-deleted ones too: (id, agent_id) pairs as "id/agent_id".
    let external_ids = subject.external_ids.clone();
    let session_ids = subject.session_ids.clone();
    let agent_ids = subject.agent_ids.clone();
    let sessions: Vec<(Uuid, Uuid)> = in_org(conn, org_id, async move |tx| {
        sqlx::query_as::<_, (Uuid, Uuid)>(
            "SELECT id, agent_id FROM ibex_core.sessions
             WHERE org_id = $1 AND (external_id = ANY($2) OR id = ANY($3))
               AND (cardinality($4::uuid[]) = 0 OR agent_id = ANY($4))
             ORDER BY id",
        )
        .bind(org_id)
        .bind(external_ids)
        .bind(session_ids)
        .bind(agent_ids)
        .fetch_all(&mut *tx)
        .await
    })
    .await
    .map_err(db_down)?;
    let session_list: Vec<Uuid> = sessions.iter().map(|(id, _)| *id).collect();
    let memories = ids(
        conn,
        org_id,
        "SELECT id::text FROM ibex_core.memories WHERE org_id = $1 AND session_id = ANY($2) ORDER BY id",
        vec![session_list.clone()],
    )
    .await?;
    let memory_list = uuids(&memories);
    let erasure = kind == DataRequestType::Erasure;
    if erasure {
        // Export files of those agents finished after the earliest erased memory of the agent
        // was written may hold it: they go (an export cannot hold a memory younger than itself).
        let exports = ids(
            conn,
            org_id,
            "SELECT e.id::text FROM ibex_core.memory_exports e
             JOIN (SELECT agent_id, min(created_at) AS oldest FROM ibex_core.memories
                   WHERE org_id = $1 AND id = ANY($2) GROUP BY agent_id) m
               ON m.agent_id = e.agent_id
             WHERE e.org_id = $1 AND e.status = 'succeeded' AND e.object_key IS NOT NULL
               AND e.finished_at >= m.oldest
             ORDER BY e.id",
            vec![memory_list.clone()],
        )
        .await?;
        plan.add("memory_exports", exports);
    }
    if let Some(storage) = storage {
        let mut keys = Vec::new();
        for (session, agent) in &sessions {
            let key = archive_key(org_id, *agent, *session);
            match storage.archives.exists(&key).await {
                Ok(true) => keys.push(key),
                Ok(false) => {}
                Err(e) => {
                    return Err(Unreachable {
                        store: "session_archives",
                        kind: e.to_string(),
                    });
                }
            }
        }
        plan.add("session_archives", keys);
    }
    if let Some(traces) = traces {
        let found = traces
            .request_ids_of_sessions(org_id, &session_list)
            .await
            .map_err(|kind| Unreachable {
                store: "llm_traces",
                kind,
            })?;
        plan.add("llm_traces", found);
    }
    if erasure {
        // Each memory's id leaves the proxy's hot cache with it.
        plan.add("hot_cache", memories.clone());
    }
    let relationships = ids(
        conn,
        org_id,
        "SELECT id::text FROM ibex_core.memory_relationships
         WHERE org_id = $1 AND (source_memory_id = ANY($2) OR target_memory_id = ANY($2)) ORDER BY id",
        vec![memory_list.clone()],
    )
    .await?;
    plan.add("memory_relationships", relationships);
    let tags = ids(
        conn,
        org_id,
        "SELECT memory_id::text || '/' || tag FROM ibex_core.memory_tags
         WHERE org_id = $1 AND memory_id = ANY($2) ORDER BY 1",
        vec![memory_list.clone()],
    )
    .await?;
    plan.add("memory_tags", tags);
    let versions = ids(
        conn,
        org_id,
        "SELECT id::text FROM ibex_core.memory_versions
         WHERE org_id = $1 AND memory_id = ANY($2) ORDER BY id",
        vec![memory_list],
    )
    .await?;
    plan.add("memory_versions", versions);
    plan.add("memories", memories);
    let checkpoints = ids(
        conn,
        org_id,
        "SELECT id::text FROM ibex_core.checkpoints WHERE org_id = $1 AND session_id = ANY($2) ORDER BY id",
        vec![session_list.clone()],
    )
    .await?;
    plan.add("checkpoints", checkpoints);
    plan.add("sessions", session_list.iter().map(Uuid::to_string));
    Ok(plan)
}

async fn user(
    conn: &mut PgConnection,
    org_id: Uuid,
    kind: DataRequestType,
    subject: &Subject,
) -> Result<Plan, Unreachable> {
    let mut plan = Plan::default();
    let user_id = subject.user_id.expect("a user subject names its user");
    let found = ids(
        conn,
        org_id,
        "SELECT id::text FROM ibex_core.users WHERE org_id = $1 AND id = ANY($2)",
        vec![vec![user_id]],
    )
    .await?;
    if found.is_empty() {
        plan.rejection = Some("USER_NOT_FOUND");
        return Ok(plan);
    }
    if kind == DataRequestType::Erasure {
        let last_owner = ids(
            conn,
            org_id,
            "SELECT u.id::text FROM ibex_core.users u
             WHERE u.org_id = $1 AND u.id = ANY($2) AND u.role = 'owner' AND u.deleted_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM ibex_core.users o
                   WHERE o.org_id = $1 AND o.role = 'owner' AND o.deleted_at IS NULL
                     AND o.status = 'active' AND o.id <> u.id)",
            vec![vec![user_id]],
        )
        .await?;
        if !last_owner.is_empty() {
            plan.rejection = Some("LAST_OWNER_PROTECTED");
            return Ok(plan);
        }
        // The tokens the trail shows they created or used: the auth service does not say whose a
        // token is. Revoked at confirmation, on the confirming owner's behalf.
        let tokens = ids(
            conn,
            org_id,
            "SELECT DISTINCT t FROM (
                 SELECT actor_token_id::text AS t FROM ibex_core.audit_events
                 WHERE org_id = $1 AND actor_user_id = ANY($2) AND actor_token_id IS NOT NULL
                 UNION
                 SELECT target_id FROM ibex_core.audit_events
                 WHERE org_id = $1 AND actor_user_id = ANY($2) AND action = 'token.create') x
             ORDER BY t",
            vec![vec![user_id]],
        )
        .await?;
        plan.add("tokens", tokens);
        let events = ids(
            conn,
            org_id,
            "SELECT id::text FROM ibex_core.audit_events
             WHERE org_id = $1 AND actor_user_id = ANY($2)
               AND (client_ip IS NOT NULL OR user_agent IS NOT NULL) ORDER BY id",
            vec![vec![user_id]],
        )
        .await?;
        plan.add("audit_events", events);
    } else {
        let events = ids(
            conn,
            org_id,
            "SELECT id::text FROM ibex_core.audit_events
             WHERE org_id = $1 AND actor_user_id = ANY($2) ORDER BY id",
            vec![vec![user_id]],
        )
        .await?;
        plan.add("audit_events", events);
        let authored = ids(
            conn,
            org_id,
            "SELECT kind || '/' || id FROM (
                 SELECT 'agent' AS kind, id::text AS id FROM ibex_core.agents
                 WHERE org_id = $1 AND created_by = ANY($2)
                 UNION ALL SELECT 'directive_version', id::text FROM ibex_core.directive_versions
                 WHERE org_id = $1 AND created_by = ANY($2)
                 UNION ALL SELECT 'memory_export', id::text FROM ibex_core.memory_exports
                 WHERE org_id = $1 AND created_by = ANY($2)
                 UNION ALL SELECT 'memory_version', id::text FROM ibex_core.memory_versions
                 WHERE org_id = $1 AND actor = ANY($2)
                 UNION ALL SELECT 'data_request', id::text FROM ibex_core.data_requests
                 WHERE org_id = $1 AND created_by = ANY($2)) a
             ORDER BY 1",
            vec![vec![user_id]],
        )
        .await?;
        plan.add("authored", authored);
    }
    plan.add("users", found);
    Ok(plan)
}

/// Per store of the organization, how many rows, objects and traces it holds now. The buckets
/// are counted only with `objects` (they are listed, which is slower); without `strict` a store
/// that cannot be reached is left out instead of failing the count.
pub async fn count_organization(
    conn: &mut PgConnection,
    org_id: Uuid,
    storage: Option<&Storage>,
    traces: Option<&TraceStore>,
    objects: bool,
    strict: bool,
) -> Result<BTreeMap<String, i64>, Unreachable> {
    let mut counts = BTreeMap::new();
    for store in organization_stores() {
        match store.location {
            Location::Table => {
                let name = store.name;
                let column = if name == "organizations" {
                    "id"
                } else {
                    "org_id"
                };
                let n: i64 = in_org(conn, org_id, async move |tx| {
                    sqlx::query_scalar(&format!(
                        "SELECT count(*) FROM ibex_core.{name} WHERE {column} = $1"
                    ))
                    .bind(org_id)
                    .fetch_one(&mut *tx)
                    .await
                })
                .await
                .map_err(db_down)?;
                counts.insert(name.to_owned(), n);
            }
            Location::Exports | Location::Archives if objects => {
                if let Some(storage) = storage {
                    let bucket = if store.location == Location::Exports {
                        &storage.exports
                    } else {
                        &storage.archives
                    };
                    match bucket
                        .count_prefix(&org_id.to_string(), Some(&data_request_prefix(org_id)))
                        .await
                    {
                        Ok(n) => {
                            counts.insert(store.name.to_owned(), n as i64);
                        }
                        Err(e) if strict => {
                            return Err(Unreachable {
                                store: store.name,
                                kind: e.to_string(),
                            });
                        }
                        Err(_) => {}
                    }
                }
            }
            Location::Traces => {
                if let Some(traces) = traces {
                    match traces.count_org(org_id).await {
                        Ok(n) => {
                            counts.insert(store.name.to_owned(), n as i64);
                        }
                        Err(kind) if strict => {
                            return Err(Unreachable {
                                store: store.name,
                                kind,
                            });
                        }
                        Err(_) => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(counts)
}

/// Where access archives are written, in the export bucket: never part of an archive themselves.
pub fn data_request_prefix(org_id: Uuid) -> String {
    format!("{org_id}/data-requests")
}

pub fn archive_object_key(org_id: Uuid, request_id: Uuid) -> String {
    format!("{}/{request_id}.zip", data_request_prefix(org_id))
}
