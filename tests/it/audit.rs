//! The audit trail from outside: every mutating operation of the OpenAPI document writes an
//! event (the test walks the document, so a new operation without one fails it), with the
//! request's id, the actor, the client's address and user agent, and field names but never
//! values; the list is for owners and admins, filters and pages, and sees only its own
//! organization; the table refuses UPDATE and DELETE; the GDPR deletion removes the events.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

const ALL: u64 = ALL_PERMISSIONS;

/// POSTs that change nothing (a search is a read with a body).
const READS_BY_POST: &[&str] = &["search_memories"];

fn org() -> Uuid {
    ORG_ID.parse().unwrap()
}

/// The mutating operations the document declares: (operation id, method, path).
fn mutating_operations() -> Vec<(String, String, String)> {
    let document = serde_json::to_value(ibex_api::app::document()).unwrap();
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if !["post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let id = operation["operationId"].as_str().unwrap().to_owned();
            if !READS_BY_POST.contains(&id.as_str()) {
                found.push((id, method.clone(), path.clone()));
            }
        }
    }
    found
}

async fn seed_memories(db: &TestDb, agent: Uuid, count: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let sql =
        "INSERT INTO ibex_core.memories (id, org_id, agent_id, content, content_hash, category)
         SELECT id, $2, $3, 'remembered', encode(sha256('remembered'), 'hex'), 'factual'
         FROM UNNEST($1::uuid[]) AS s(id)";
    run_sql!(&mut db.admin().await, sql, &ids, org(), agent);
    ids
}

/// The organization's events as the database has them (bypassing the API), by request id.
async fn events_by_request(
    db: &TestDb,
) -> BTreeMap<String, (String, String, Option<Uuid>, Vec<String>)> {
    sqlx::query(
        "SELECT request_id, action, target_id, actor_user_id, changed_fields
         FROM ibex_core.audit_events WHERE org_id = $1",
    )
    .bind(org())
    .fetch_all(&mut db.admin().await)
    .await
    .unwrap()
    .into_iter()
    .map(|row| {
        (
            row.get::<String, _>(0),
            (row.get(1), row.get(2), row.get(3), row.get(4)),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_operation_in_the_document_writes_an_audit_event() {
    walk_mutating_operations(false).await;
}

/// With an `Idempotency-Key` on every POST the handler runs in a task of its own: its audit
/// events and outbox rows must still name the request (issue 27: 7 of 19 had none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_operation_with_an_idempotency_key_names_its_request() {
    walk_mutating_operations(true).await;
}

async fn walk_mutating_operations(with_key: bool) {
    let auth = FakeAuth::start().await;
    let (app, _s3, _memory_service) = app_with_every_service(auth.addr).await;
    let owner = app.db.add_user(org(), "owner").await;
    // A token the auth stand-in stores, so that it also mints and revokes through it.
    let token = auth.stored_token(org(), Some(owner), ALL);
    let agent = app.db.add_agent(org()).await;
    let memories = seed_memories(&app.db, agent, 2).await;
    let user = app.db.add_user(org(), "member").await;

    // One way to make each operation succeed; the order keeps each one's preconditions.
    let agent_path = format!("/v1/agents/{agent}");
    let directive = format!("{agent_path}/directive");
    let org_path = format!("/v1/organizations/{ORG_ID}");
    let mut made: BTreeMap<String, (String, String)> = BTreeMap::new();
    let operations = mutating_operations();
    let erasure = json!({"type": "erasure", "subject": {"kind": "end_user", "external_ids": ["SECRET-PERSON"]}});
    let recipes: Vec<(&str, &str, String, Option<Value>, &str)> = vec![
        (
            "create_agent",
            "POST",
            "/v1/agents".into(),
            Some(json!({"name": "n", "slug": "made"})),
            "agent.create",
        ),
        (
            "update_agent",
            "PATCH",
            agent_path.clone(),
            Some(json!({"name": "SECRET-NAME", "config": {"api_key": "SECRET-CONFIG"}})),
            "agent.update",
        ),
        (
            "pause_agent",
            "POST",
            format!("{agent_path}/pause"),
            None,
            "agent.pause",
        ),
        (
            "activate_agent",
            "POST",
            format!("{agent_path}/activate"),
            None,
            "agent.activate",
        ),
        (
            "set_directive",
            "POST",
            directive.clone(),
            Some(json!({"content": "SECRET-CONTENT one"})),
            "directive.set",
        ),
        (
            "rollback_directive",
            "POST",
            format!("{directive}/rollback"),
            Some(json!({"version_num": 1})),
            "directive.rollback",
        ),
        (
            "delete_directive",
            "DELETE",
            directive.clone(),
            None,
            "directive.deactivate",
        ),
        (
            "delete_memory",
            "DELETE",
            format!("{agent_path}/memories/{}", memories[0]),
            None,
            "memory.delete",
        ),
        (
            "delete_memories",
            "DELETE",
            format!("{agent_path}/memories?confirm=true"),
            None,
            "memory.bulk_delete",
        ),
        (
            "export_memories",
            "POST",
            format!("{agent_path}/memories/export"),
            Some(json!({"format": "csv"})),
            "memory_export.create",
        ),
        (
            "create_user",
            "POST",
            "/v1/users".into(),
            Some(json!({"email": "new@x.example", "name": "N"})),
            "user.create",
        ),
        (
            "update_user",
            "PATCH",
            format!("/v1/users/{user}"),
            Some(json!({"role": "admin"})),
            "user.update",
        ),
        (
            "delete_user",
            "DELETE",
            format!("/v1/users/{user}"),
            None,
            "user.delete",
        ),
        (
            "create_token",
            "POST",
            "/v1/tokens".into(),
            Some(json!({"name": "t", "permissions": ["memory:read"]})),
            "token.create",
        ),
        (
            "delete_token",
            "DELETE",
            "/v1/tokens/{created}".into(),
            None,
            "token.revoke",
        ),
        (
            "archive_agent",
            "POST",
            format!("{agent_path}/archive"),
            None,
            "agent.archive",
        ),
        (
            "delete_agent",
            "DELETE",
            "/v1/agents/{made}".into(),
            None,
            "agent.delete",
        ),
        (
            "update_organization",
            "PATCH",
            org_path.clone(),
            Some(json!({"name": "Renamed", "settings": {"k": "SECRET-SETTING"}})),
            "organization.update",
        ),
        (
            "suspend_organization",
            "POST",
            format!("{org_path}/suspend"),
            None,
            "organization.suspend",
        ),
        (
            "create_data_request",
            "POST",
            "/v1/data-requests".into(),
            Some(erasure.clone()),
            "data_request.create",
        ),
        (
            "extend_data_request",
            "POST",
            "/v1/data-requests/{request}/extend".into(),
            Some(json!({"reason": "SECRET-REASON"})),
            "data_request.extend",
        ),
        (
            "cancel_data_request",
            "POST",
            "/v1/data-requests/{request}/cancel".into(),
            None,
            "data_request.cancel",
        ),
        (
            "create_data_request",
            "POST",
            "/v1/data-requests".into(),
            Some(erasure),
            "data_request.create",
        ),
        (
            "confirm_data_request",
            "POST",
            "/v1/data-requests/{request}/confirm".into(),
            None,
            "data_request.confirm",
        ),
        (
            "delete_organization",
            "DELETE",
            org_path.clone(),
            None,
            "organization.delete_request",
        ),
    ];
    let missing: Vec<_> = operations
        .iter()
        .filter(|(id, ..)| !recipes.iter().any(|r| r.0 == id))
        .collect();
    assert!(
        missing.is_empty(),
        "mutating operations with no audit check here: {missing:?}"
    );

    // Hold the deletion job off this organization (it takes the same advisory lock) so the
    // last event can be seen before the GDPR deletion removes everything.
    let lock_key = i64::from_be_bytes(org().as_bytes()[..8].try_into().unwrap());
    let mut holder = app.db.admin().await;
    holder.run("SELECT pg_advisory_lock($1)", lock_key).await;

    let (mut created_token, mut made_agent, mut filed) =
        (String::new(), String::new(), String::new());
    for (id, method, path, body, action) in &recipes {
        let path = path
            .replace("{created}", &created_token)
            .replace("{made}", &made_agent)
            .replace("{request}", &filed);
        if *id == "confirm_data_request" {
            // Its plan is shown first.
            let deadline = Deadline::after(std::time::Duration::from_secs(30))
                .every(Duration::from_millis(50));
            while app
                .read(&format!("/v1/data-requests/{filed}"), &token)
                .await
                .json()["status"]
                != "awaiting_confirmation"
            {
                deadline.tick("not planned").await;
            }
        }
        let key = Uuid::new_v4().to_string();
        let mut headers = vec![("User-Agent", "audit-test/1.0")];
        if with_key && *method == "POST" {
            headers.push(("Idempotency-Key", key.as_str()));
        }
        let reply = app
            .call_with(method, &path, &token, &headers, body.clone())
            .await;
        assert!(
            (200..300).contains(&reply.status),
            "{id}: {} {}",
            reply.status,
            reply.text()
        );
        match *id {
            "create_token" => created_token = reply.json()["id"].as_str().unwrap().to_owned(),
            "create_agent" => made_agent = reply.json()["id"].as_str().unwrap().to_owned(),
            "create_data_request" => filed = reply.json()["id"].as_str().unwrap().to_owned(),
            _ => {}
        }
        made.insert(
            reply.request_id().to_owned(),
            ((*action).to_owned(), (*id).to_owned()),
        );
    }

    let events = events_by_request(&app.db).await;
    for (request_id, (action, operation)) in &made {
        let event = events
            .get(request_id)
            .unwrap_or_else(|| panic!("{operation}: no audit event for request {request_id}"));
        assert_eq!(&event.0, action, "{operation}");
        assert_eq!(event.2, Some(owner), "{operation}: the actor");
    }
    assert_eq!(events.len(), made.len(), "one event per change");
    // Every outbox row names the request that wrote it.
    let outbox: Vec<Option<Uuid>> =
        sqlx::query_scalar("SELECT request_id FROM ibex_core.outbox WHERE org_id = $1")
            .bind(org())
            .fetch_all(&mut app.db.admin().await)
            .await
            .unwrap();
    assert!(
        outbox.len() >= 5,
        "directives, memories and the organization publish: {outbox:?}"
    );
    for request_id in &outbox {
        let request_id = request_id
            .expect("an outbox row without its request id")
            .to_string();
        assert!(
            made.contains_key(&request_id),
            "outbox row of {request_id}: not a request made here"
        );
    }
    let update = events.values().find(|e| e.0 == "agent.update").unwrap();
    assert_eq!(update.1, agent.to_string());
    assert_eq!(update.3, ["name", "config"]);
    let org_update = events
        .values()
        .find(|e| e.0 == "organization.update")
        .unwrap();
    assert_eq!(org_update.3, ["name", "settings"]);
    // Names, never values: no secret of a body anywhere in the table.
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.audit_events e WHERE e::text LIKE '%SECRET%'",
    )
    .fetch_one(&mut app.db.admin().await)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
    // Where from: the peer's address and the user agent.
    let origin = sqlx::query(
        "SELECT client_ip, user_agent, actor_token_id FROM ibex_core.audit_events
         WHERE org_id = $1 LIMIT 1",
    )
    .bind(org())
    .fetch_one(&mut app.db.admin().await)
    .await
    .unwrap();
    assert_eq!(
        origin.get::<Option<String>, _>(0).as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        origin.get::<Option<String>, _>(1).as_deref(),
        Some("audit-test/1.0")
    );

    // The GDPR deletion takes the trail with the rest of the organization.
    holder.run("SELECT pg_advisory_unlock($1)", lock_key).await;
    let deadline =
        Deadline::after(std::time::Duration::from_secs(30)).every(Duration::from_millis(200));
    loop {
        let left: i64 = app
            .db
            .admin()
            .await
            .value(
                "SELECT count(*) FROM ibex_core.audit_events WHERE org_id = $1",
                org(),
            )
            .await;
        if left == 0 {
            break;
        }
        let late = format!("{left} audit events outlived the deletion");
        deadline.tick(late).await;
    }
}

/// A transaction in the harness' organization, as `role` (the superuser when empty).
async fn in_org_as<'c>(
    admin: &'c mut sqlx::PgConnection,
    role: &str,
) -> sqlx::Transaction<'c, sqlx::Postgres> {
    let mut tx = sqlx::Connection::begin(admin).await.unwrap();
    let sql = "SELECT set_config('app.current_org_id', $1, true)";
    run_sql!(&mut *tx, sql, ORG_ID);
    if !role.is_empty() {
        run_sql!(&mut *tx, &format!("SET LOCAL ROLE {role}"));
    }
    tx
}

#[tokio::test]
async fn the_list_is_for_owners_and_admins_filters_pages_and_stays_in_its_organization() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let owner = app.db.add_user(org(), "owner").await;
    let admin = app.db.add_user(org(), "admin").await;
    let member = app.db.add_user(org(), "member").await;
    let as_owner = auth.token_for_user(org(), Some(owner), ALL);
    let as_admin = auth.token_for_user(org(), Some(admin), ALL);
    // A member with every permission bit and an agent's token: still refused.
    let as_member = auth.token_for_user(org(), Some(member), ALL);
    let as_agent = auth.token_for_user(org(), None, ALL);

    let mut agents = Vec::new();
    for i in 0..5 {
        let token = if i % 2 == 0 { &as_owner } else { &as_admin };
        let reply = app
            .post(
                "/v1/agents",
                token,
                json!({"name": "a", "slug": format!("s{i}")}),
            )
            .await;
        agents.push(reply.json()["id"].as_str().unwrap().to_owned());
    }
    app.patch(
        &format!("/v1/agents/{}", agents[0]),
        &as_owner,
        json!({"name": "b"}),
    )
    .await;

    for refused in [&as_member, &as_agent] {
        app.read("/v1/audit-events", refused)
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }
    let all = app.read("/v1/audit-events", &as_admin).await;
    assert_eq!(all.status, 200);
    let items = all.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 6);
    // Newest first: the update came last.
    assert_eq!(items[0]["action"], "agent.update");
    assert_eq!(items[0]["changed_fields"], json!(["name"]));
    assert_eq!(items[0]["target_type"], "agent");

    let ids = |reply: &Reply| -> Vec<String> {
        reply.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_owner = app
        .read(&format!("/v1/audit-events?actor_id={owner}"), &as_owner)
        .await;
    assert_eq!(ids(&by_owner).len(), 4);
    let updates = app
        .read("/v1/audit-events?action=agent.update", &as_owner)
        .await;
    assert_eq!(ids(&updates).len(), 1);
    let about = app
        .read(
            &format!("/v1/audit-events?target_type=agent&target_id={}", agents[0]),
            &as_owner,
        )
        .await;
    assert_eq!(ids(&about).len(), 2);
    let future = app
        .read("/v1/audit-events?since=2999-01-01T00:00:00Z", &as_owner)
        .await;
    assert!(ids(&future).is_empty());
    let past = app
        .read("/v1/audit-events?until=2000-01-01T00:00:00Z", &as_owner)
        .await;
    assert!(ids(&past).is_empty());
    app.read("/v1/audit-events?actor_id=nope", &as_owner)
        .await
        .assert_error(400, "VALIDATION_ERROR");

    // Pages of 4 then 2, nothing twice, nothing lost.
    let first = app.read("/v1/audit-events?limit=4", &as_owner).await;
    let cursor = first.json()["next_cursor"].as_str().unwrap().to_owned();
    let second = app
        .read(
            &format!("/v1/audit-events?limit=4&cursor={cursor}"),
            &as_owner,
        )
        .await;
    let mut paged = ids(&first);
    paged.extend(ids(&second));
    assert_eq!(paged, ids(&all));

    // Another organization's owner sees none of it.
    let other = Uuid::now_v7();
    app.db.add_org(other).await;
    let their_owner = app.db.add_user(other, "owner").await;
    let theirs = auth.token_for_user(other, Some(their_owner), ALL);
    let seen = app.read("/v1/audit-events", &theirs).await;
    assert_eq!(seen.status, 200);
    assert!(ids(&seen).is_empty());
}

/// Append-only in the database: the app's role has no UPDATE or DELETE, and a trigger refuses
/// both even to the table's owner; only the GDPR role may delete.
#[tokio::test]
async fn the_trail_cannot_be_rewritten() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let owner = app.db.add_user(org(), "owner").await;
    let token = auth.token_for_user(org(), Some(owner), ALL);
    app.post_agent(&token, "a").await;
    let mut admin = app.db.admin().await;
    for (role, statement) in [
        (
            "ibex_app",
            "UPDATE ibex_core.audit_events SET action = 'agent.nothing'",
        ),
        ("ibex_app", "DELETE FROM ibex_core.audit_events"),
        (
            "",
            "UPDATE ibex_core.audit_events SET action = 'agent.nothing'",
        ),
        ("", "DELETE FROM ibex_core.audit_events"),
    ] {
        let mut tx = in_org_as(&mut admin, role).await;
        let refused = sqlx::query(statement).execute(&mut *tx).await.unwrap_err();
        let code = refused.as_database_error().and_then(|e| e.code()).unwrap();
        assert_eq!(code, "42501", "{role} {statement}");
        tx.rollback().await.unwrap();
    }
    let mut tx = in_org_as(&mut admin, "ibex_gdpr").await;
    let removed = sqlx::query("DELETE FROM ibex_core.audit_events")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(removed, 1);
    tx.rollback().await.unwrap();
}
