//! The audit events' SQL, in an [`OrgTx`].

use uuid::Uuid;

use super::context::AuditContext;
use super::model::{AuditEvent, AuditFilters};
use crate::auth::Caller;
use crate::db::{FromRow, OrgTx, Sql, from_row};
use crate::error::ApiError;
use crate::tenancy::Tenant;
use crate::wire::pagination::{CursorPage, PageRequest, Position};

const INSERT: &str = "INSERT INTO ibex_core.audit_events
     (id, org_id, actor_user_id, actor_token_id, action, target_type, target_id, request_id,
      client_ip, user_agent, changed_fields)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const COLUMNS: &str = "id, occurred_at, actor_user_id, actor_token_id, action, target_type, \
                       target_id, request_id, client_ip, user_agent, changed_fields";

/// Records that the tenant's caller did `action` (`<target_type>.<verb>`) to the target, in its
/// transaction: the event goes out with COMMIT (no round trip of its own) and commits or rolls
/// back with the change. `changed_fields` are names only, never values.
pub fn record<const NEED: u64>(
    t: &mut Tenant<NEED>,
    context: &AuditContext,
    action: &'static str,
    target_id: impl ToString,
    changed_fields: &[&str],
) {
    record_in(
        &mut t.tx,
        &t.caller,
        context,
        action,
        target_id,
        changed_fields,
    );
}

/// [`record`] in any transaction of the caller's organization (a token change, whose
/// transaction is opened apart).
pub fn record_in(
    tx: &mut OrgTx,
    caller: &Caller,
    context: &AuditContext,
    action: &'static str,
    target_id: impl ToString,
    changed_fields: &[&str],
) {
    let target_type = action.split('.').next().unwrap_or(action);
    let mut params = Sql::default();
    params
        .arg(Uuid::now_v7())
        .arg(tx.org_id())
        .arg(caller.user_id)
        .arg(caller.token_id)
        .arg(action)
        .arg(target_type.to_owned())
        .arg(target_id.to_string())
        .arg(context.request_id.clone())
        .arg(context.client_ip.clone())
        .arg(context.user_agent.clone())
        .arg(
            changed_fields
                .iter()
                .map(|f| (*f).to_owned())
                .collect::<Vec<_>>(),
        );
    tx.execute_at_commit(INSERT, params);
}

from_row! {
    AuditEvent {
        id, occurred_at, actor_user_id, actor_token_id, action, target_type, target_id, request_id,
        client_ip, user_agent, changed_fields,
    }
}

/// The statement of one page: `limit` rows after `after`. Public for the plan benchmark
/// (`examples/list_plans.rs`), which runs exactly what the API runs.
pub fn list_statement(
    org_id: Uuid,
    filters: &AuditFilters,
    after: Option<Position>,
    limit: i64,
) -> Sql {
    let mut qb = Sql::new(format!(
        "SELECT {COLUMNS} FROM ibex_core.audit_events WHERE org_id = "
    ));
    qb.push_bind(org_id);
    if let Some(actor) = filters.actor_id {
        qb.push(" AND actor_user_id = ").push_bind(actor);
    }
    if let Some(action) = &filters.action {
        qb.push(" AND action = ").push_bind(action.clone());
    }
    if let Some(target_type) = &filters.target_type {
        qb.push(" AND target_type = ")
            .push_bind(target_type.clone());
    }
    if let Some(target_id) = &filters.target_id {
        qb.push(" AND target_id = ").push_bind(target_id.clone());
    }
    if let Some(since) = filters.since {
        qb.push(" AND occurred_at >= ").push_bind(since);
    }
    if let Some(until) = filters.until {
        qb.push(" AND occurred_at < ").push_bind(until);
    }
    if let Some(after) = after {
        qb.push(" AND (occurred_at, id) < (")
            .push_bind(after.created_at)
            .push(", ")
            .push_bind(after.id)
            .push(")");
    }
    qb.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    qb
}

/// One page of the organization's events, newest first, if `user` is an active owner or admin
/// of it (the role check travels in the same flight as the page); 403 otherwise.
pub async fn list(
    tx: &mut OrgTx,
    user: Uuid,
    filters: &AuditFilters,
    page: &PageRequest,
) -> Result<CursorPage<AuditEvent>, ApiError> {
    let org_id = tx.org_id();
    // Each filter has its own index; with two or more, the best depends on their values.
    let filtered = [
        filters.actor_id.is_some(),
        filters.action.is_some(),
        filters.target_type.is_some(),
        filters.target_id.is_some(),
    ];
    if filtered.iter().filter(|on| **on).count() >= 2 {
        tx.plan_for_values();
    }
    let qb = list_statement(org_id, filters, page.after, page.fetch_limit());
    let params = qb.params();
    // The caller's role and, for an `actor_id` filter, whether it names a user of the
    // organization (deleted ones too: the trail is history), in the same flight as the page.
    let mut results = tx
        .query_pipelined(&[
            (
                "SELECT $3::uuid IS NULL OR EXISTS (
                     SELECT 1 FROM ibex_core.users a WHERE a.org_id = $1 AND a.id = $3)
                 FROM ibex_core.users
                 WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL AND status = 'active'
                   AND role IN ('owner', 'admin')",
                &[&org_id, &user, &filters.actor_id],
            ),
            (qb.text(), &params),
        ])
        .await?;
    let rows = results.pop().unwrap_or_default();
    let Some(check) = results.pop().unwrap_or_default().into_iter().next() else {
        return Err(ApiError::InsufficientPermissions);
    };
    if !check
        .try_get::<_, bool>(0)
        .map_err(crate::db::DbError::from)?
    {
        return Err(ApiError::UserNotFound);
    }
    let events = rows
        .iter()
        .map(AuditEvent::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(events, |e| Position::new(e.occurred_at, e.id)))
}
