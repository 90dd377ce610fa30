//! The memories' SQL, in an [`OrgTx`]. The filters become one statement text per combination,
//! each walking an index ordered like the list from the cursor (the agent's list, by category,
//! by source, or the tag's rows: migration 0006); a delete, one or a hundred thousand,
//! is a single statement that also writes the history, drops the relationships and queues the
//! proxy's cache eviction and the deletion event in the outbox, so all of it commits or none.

use uuid::Uuid;

use super::model::{ExportJob, Filters, Memory};
use crate::db::{DbError, FromRow, OrgTx, Sql, from_row};
use crate::domains::agents::repo::read_below_agent;
use crate::error::ApiError;
use crate::wire::pagination::{CursorPage, PageRequest, Position};

/// Channel the platform's archiver listens to for deleted memories.
pub const DELETIONS_CHANNEL: &str = "ibex:memory:deletions";
/// Memory ids per deletion event (and per ZREM): a bulk delete of 100 000 becomes 100 bounded
/// messages instead of one of 4 MB.
const IDS_PER_EVENT: i64 = 1000;

/// The proxy's hot cache of an agent's memory ids (a sorted set).
pub fn hot_cache_key(org_id: Uuid, agent_id: Uuid) -> String {
    format!("{org_id}:hot_memories:{agent_id}")
}

/// What a memory answer carries (its tags included); public for the plan benchmark.
pub const COLUMNS: &str = "m.id, m.agent_id, m.session_id, m.content, m.category, m.source, m.status, \
     m.confidence, m.retrieval_count, m.last_retrieved_at, m.metadata, m.created_at, m.updated_at, \
     ARRAY(SELECT t.tag FROM ibex_core.memory_tags t WHERE t.memory_id = m.id ORDER BY t.tag) AS tags";

fn not_found() -> ApiError {
    ApiError::not_found("No memory with this id.")
}

/// The index a statement walks, newest first: the agent's memories, or, for a list with a tag,
/// the tag's rows (`memory_tags_list_idx`, carrying the memory's agent and creation time), each
/// joined to its memory by key, so a rare tag costs a page what any page costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    Agent,
    Tag,
}

impl Walk {
    fn from(self) -> &'static str {
        match self {
            Self::Agent => "FROM ibex_core.memories m",
            Self::Tag => {
                "FROM ibex_core.memory_tags tg JOIN ibex_core.memories m ON m.id = tg.memory_id"
            }
        }
    }

    /// The walked index's `(created_at, id)` columns: the range filters, cursor and order.
    fn position(self) -> (&'static str, &'static str) {
        match self {
            Self::Agent => ("m.created_at", "m.id"),
            Self::Tag => ("tg.created_at", "tg.memory_id"),
        }
    }
}

/// `WHERE` for the live memories of one agent matching `filters`, on the index `walk` takes.
/// The tag rows carry their memory's status, category, source and liveness (migration 0011),
/// so a tag walk tests every filter on the index it walks, never on the joined memory.
fn push_filters(qb: &mut Sql, org_id: Uuid, agent_id: Uuid, filters: &Filters, walk: Walk) {
    let row = match (walk, &filters.tag) {
        (Walk::Tag, Some(tag)) => {
            qb.push(" WHERE tg.org_id = ")
                .push_bind(org_id)
                .push(" AND tg.agent_id = ")
                .push_bind(agent_id)
                .push(" AND tg.tag = ")
                .push_bind(tag.clone())
                .push(" AND tg.live AND m.org_id = ")
                .push_bind(org_id);
            "tg"
        }
        _ => {
            qb.push(" WHERE m.org_id = ")
                .push_bind(org_id)
                .push(" AND m.agent_id = ")
                .push_bind(agent_id)
                .push(" AND m.deleted_at IS NULL");
            "m"
        }
    };
    qb.push(&format!(" AND {row}.status = "))
        .push_bind(filters.status);
    if let Some(category) = filters.category {
        qb.push(&format!(" AND {row}.category = "))
            .push_bind(category);
    }
    if let Some(source) = filters.source {
        qb.push(&format!(" AND {row}.source = ")).push_bind(source);
    }
    if let (Walk::Agent, Some(tag)) = (walk, &filters.tag) {
        qb.push(
            " AND EXISTS (SELECT 1 FROM ibex_core.memory_tags t \
             WHERE t.memory_id = m.id AND t.org_id = m.org_id AND t.tag = ",
        )
        .push_bind(tag.clone())
        .push(")");
    }
    let (created_at, _) = walk.position();
    if let Some(after) = filters.created_after {
        qb.push(&format!(" AND {created_at} >= ")).push_bind(after);
    }
    if let Some(before) = filters.created_before {
        qb.push(&format!(" AND {created_at} < ")).push_bind(before);
    }
}

/// The statement of one page: `limit` rows after `after`. Public for the plan benchmark
/// (`examples/list_plans.rs`), which runs exactly what the API runs.
pub fn list_statement(
    org_id: Uuid,
    agent_id: Uuid,
    filters: &Filters,
    after: Option<Position>,
    limit: i64,
) -> Sql {
    let walk = if filters.tag.is_some() {
        Walk::Tag
    } else {
        Walk::Agent
    };
    let (created_at, id) = walk.position();
    let mut qb = Sql::new(format!("SELECT {COLUMNS} {}", walk.from()));
    push_filters(&mut qb, org_id, agent_id, filters, walk);
    if let Some(after) = after {
        qb.push(&format!(" AND ({created_at}, {id}) < ("))
            .push_bind(after.created_at)
            .push(", ")
            .push_bind(after.id)
            .push(")");
    }
    qb.push(&format!(" ORDER BY {created_at} DESC, {id} DESC LIMIT "))
        .push_bind(limit);
    qb
}

pub async fn list(
    tx: &mut OrgTx,
    agent_id: Uuid,
    filters: &Filters,
    page: &PageRequest,
) -> Result<CursorPage<Memory>, ApiError> {
    // Category and source together: their indexes compete, and which is better depends on
    // the values. Any other combination has exactly one index that tests every filter.
    if filters.category.is_some() && filters.source.is_some() {
        tx.plan_for_values();
    }
    let qb = list_statement(
        tx.org_id(),
        agent_id,
        filters,
        page.after,
        page.fetch_limit(),
    );
    let rows = read_below_agent(tx, agent_id, qb.text(), &qb.params())
        .await?
        .iter()
        .map(Memory::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(rows, |m| Position::new(m.created_at, m.id)))
}

/// The statement an export streams: every matching memory, newest first, read row by row with
/// [`OrgTx::stream`] (an export of 100 000 memories never holds them all).
pub fn export_query(org_id: Uuid, agent_id: Uuid, filters: &Filters) -> Sql {
    let mut qb = Sql::new(format!("SELECT {COLUMNS} {}", Walk::Agent.from()));
    push_filters(&mut qb, org_id, agent_id, filters, Walk::Agent);
    qb.push(" ORDER BY m.created_at DESC, m.id DESC");
    qb
}

pub async fn get(tx: &mut OrgTx, agent_id: Uuid, id: Uuid) -> Result<Memory, ApiError> {
    let org_id = tx.org_id();
    let sql = format!(
        "SELECT {COLUMNS} FROM ibex_core.memories m
         WHERE m.org_id = $1 AND m.agent_id = $2 AND m.id = $3 AND m.deleted_at IS NULL"
    );
    let rows = read_below_agent(tx, agent_id, &sql, &[&org_id, &agent_id, &id]).await?;
    Ok(Memory::from_row(rows.first().ok_or_else(not_found)?)?)
}

/// The live memories of `agent_id` among `ids`, in the order of `ids` (search results keep the
/// memory service's ranking; an id that is not such a memory is dropped).
pub async fn get_many(
    tx: &mut OrgTx,
    agent_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Memory>, ApiError> {
    let org_id = tx.org_id();
    let mut rows = tx
        .fetch_all::<Memory>(
            &format!(
                "SELECT {COLUMNS} FROM ibex_core.memories m
                 WHERE m.org_id = $1 AND m.agent_id = $2 AND m.id = ANY($3)
                   AND m.deleted_at IS NULL"
            ),
            &[&org_id, &agent_id, &ids],
        )
        .await?;
    rows.sort_by_key(|m| ids.iter().position(|id| *id == m.id));
    Ok(rows)
}

/// Which memories a delete takes.
#[derive(Debug)]
pub enum Selection<'a> {
    One(Uuid),
    Matching(&'a Filters),
}

/// Memories one delete statement takes at most: a bulk delete of 100 000 is ten statements in one
/// transaction, each well inside the statement timeout, all committed or none.
const DELETE_CHUNK: i64 = 10_000;

/// Soft-deletes the selected live memories of `agent_id` with their cascade: `deleted_at`, a
/// `delete` history row each, their relationships removed, the agent's counter, and in the
/// outbox, per 1 000 ids, a ZREM from the proxy's hot cache and a publish on
/// `ibex:memory:deletions`. Returns how many were deleted.
pub async fn delete(
    tx: &mut OrgTx,
    agent_id: Uuid,
    selection: Selection<'_>,
    actor: Option<Uuid>,
) -> Result<u64, ApiError> {
    let mut total = 0;
    loop {
        let deleted = delete_chunk(tx, agent_id, &selection, actor).await?;
        total += deleted;
        if deleted < DELETE_CHUNK as u64 || matches!(selection, Selection::One(_)) {
            break;
        }
    }
    if total > 0 {
        tx.wake_publisher_on_commit();
    }
    Ok(total)
}

/// One statement of [`delete`]: up to [`DELETE_CHUNK`] memories with their whole cascade.
async fn delete_chunk(
    tx: &mut OrgTx,
    agent_id: Uuid,
    selection: &Selection<'_>,
    actor: Option<Uuid>,
) -> Result<u64, ApiError> {
    let org_id = tx.org_id();
    let mut qb = Sql::new("WITH target AS (SELECT m.id FROM ibex_core.memories m");
    match selection {
        Selection::One(id) => {
            qb.push(" WHERE m.org_id = ")
                .push_bind(org_id)
                .push(" AND m.agent_id = ")
                .push_bind(agent_id)
                .push(" AND m.id = ")
                .push_bind(*id)
                .push(" AND m.deleted_at IS NULL");
        }
        Selection::Matching(filters) => {
            push_filters(&mut qb, org_id, agent_id, filters, Walk::Agent)
        }
    }
    qb.push(" LIMIT ").push_bind(DELETE_CHUNK).push(
        " FOR UPDATE),
         deleted AS (
             UPDATE ibex_core.memories m SET deleted_at = now(), updated_at = now()
             FROM target WHERE m.id = target.id AND m.org_id = ",
    )
    .push_bind(org_id)
    .push(
        " RETURNING m.id),
         history AS (
             INSERT INTO ibex_core.memory_versions (id, memory_id, org_id, operation, actor)
             SELECT ibex_core.uuid_v7(), id, ",
    )
    .push_bind(org_id)
    .push("::uuid, 'delete', ")
    .push_bind(actor)
    .push("::uuid")
    .push(
        " FROM deleted),
         unlinked AS (
             DELETE FROM ibex_core.memory_relationships r
             WHERE r.org_id = ",
    )
    .push_bind(org_id)
    .push(
        " AND (r.source_memory_id IN (SELECT id FROM deleted)
                    OR r.target_memory_id IN (SELECT id FROM deleted))),
         events AS (
             INSERT INTO ibex_core.outbox (org_id, channel, payload, zrem_key, zrem_members)
             SELECT ",
    )
    .push_bind(org_id)
    .push("::uuid, ")
    .push_bind(DELETIONS_CHANNEL)
    .push("::text, json_build_object('v', 1, 'org_id', ")
    .push_bind(org_id)
    .push("::uuid, 'agent_id', ")
    .push_bind(agent_id)
    .push("::uuid, 'memory_ids', array_agg(id ORDER BY id))::text, ")
    .push_bind(hot_cache_key(org_id, agent_id))
    .push("::text, array_agg(id::text ORDER BY id) FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / ")
    .push_bind(IDS_PER_EVENT)
    .push(
        " AS chunk FROM deleted) c GROUP BY chunk),
         counted AS (
             UPDATE ibex_core.agents
             SET total_memories = greatest(total_memories - (SELECT count(*) FROM deleted), 0)
             WHERE org_id = ",
    )
    .push_bind(org_id)
    .push(" AND id = ")
    .push_bind(agent_id)
    .push(" AND EXISTS (SELECT 1 FROM deleted))
         SELECT count(*) FROM deleted");
    let row = tx.query_one(qb.text(), &qb.params()).await?;
    let deleted: i64 = row.try_get(0).map_err(DbError::from)?;
    Ok(deleted as u64)
}

// ---------------------------------------------------------------------------------------------
// Export jobs.

const JOB_COLUMNS: &str = "id AS job_id, agent_id, format, status, row_count, size_bytes, \
                           created_at, finished_at, error, NULL::text AS download_url, \
                           NULL::timestamptz AS download_expires_at";

from_row! {
    Memory {
        id, agent_id, session_id, content, category, source, status, confidence, retrieval_count,
        last_retrieved_at, tags, metadata, created_at, updated_at,
    }
}

from_row! {
    ExportJob {
        job_id, agent_id, format, status, row_count, size_bytes, created_at, finished_at, error,
        download_url, download_expires_at,
    }
}

pub async fn insert_export(
    tx: &mut OrgTx,
    agent_id: Uuid,
    format: &str,
    filters: &Filters,
    created_by: Option<Uuid>,
) -> Result<ExportJob, ApiError> {
    let org_id = tx.org_id();
    Ok(tx
        .fetch_one::<ExportJob>(
            &format!(
                "INSERT INTO ibex_core.memory_exports
                     (id, org_id, agent_id, format, filters, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 RETURNING {JOB_COLUMNS}"
            ),
            &[
                &Uuid::now_v7(),
                &org_id,
                &agent_id,
                &format,
                &filters.to_json(),
                &created_by,
            ],
        )
        .await?)
}

/// The job and, once it succeeded, the key of its file.
pub async fn get_export(
    tx: &mut OrgTx,
    agent_id: Uuid,
    job_id: Uuid,
) -> Result<(ExportJob, Option<String>), ApiError> {
    let org_id = tx.org_id();
    let row = tx
        .query_opt(
            &format!(
                "SELECT {JOB_COLUMNS}, object_key FROM ibex_core.memory_exports
                 WHERE org_id = $1 AND agent_id = $2 AND id = $3"
            ),
            &[&org_id, &agent_id, &job_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("No export job with this id."))?;
    let job = ExportJob::from_row(&row)?;
    Ok((job, row.try_get("object_key").map_err(DbError::from)?))
}
