//! The resource's rules: bad input, who may do what, transitions, deadlines, idempotent retries,
//! the list, and an archive's end.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::*;

fn field_errors(reply: &Reply) -> Vec<(String, String)> {
    reply.json()["error"]["field_errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// An access request's body for `subject`.
fn access(subject: Value) -> Value {
    json!({"type": "access", "subject": subject})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_its_field() {
    let world = World::start().await;
    let too_many: Vec<String> = (0..1001).map(|i| format!("p{i}")).collect();
    let split: Vec<String> = (0..600).map(|i| format!("p{i}")).collect();
    let split_ids: Vec<Uuid> = (0..401).map(|_| Uuid::now_v7()).collect();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    for (body, field, code) in [
        (json!({"type": "access"}), "subject", "REQUIRED"),
        (
            json!({"type": "copy", "subject": {"kind": "organization"}}),
            "type",
            "INVALID_VALUE",
        ),
        (
            access(json!({"kind": "robot"})),
            "subject.kind",
            "INVALID_VALUE",
        ),
        (
            access(json!({"kind": "organization", "x": 1})),
            "subject.x",
            "UNKNOWN_FIELD",
        ),
        (
            json!({"type": "access", "subject": {"kind": "organization"}, "x": 1}),
            "x",
            "UNKNOWN_FIELD",
        ),
        (
            json!({"type": "access", "subject": "organization"}),
            "subject",
            "INVALID_TYPE",
        ),
        (
            access(json!({"kind": "user"})),
            "subject.user_id",
            "REQUIRED",
        ),
        (access(json!({"kind": "end_user"})), "subject", "REQUIRED"),
        (
            access(json!({"kind": "end_user", "agent_ids": [Uuid::now_v7()]})),
            "subject",
            "REQUIRED",
        ),
        (
            access(json!({"kind": "end_user", "external_ids": too_many})),
            "subject.external_ids",
            "TOO_MANY",
        ),
        (
            access(json!({"kind": "end_user", "external_ids": split, "session_ids": split_ids})),
            "subject",
            "TOO_MANY",
        ),
        (
            access(json!({"kind": "end_user", "session_ids": ["nope"]})),
            "subject.session_ids",
            "INVALID_UUID",
        ),
        (
            access(json!({"kind": "end_user", "external_ids": ["nul\u{0}"]})),
            "subject.external_ids",
            "INVALID_CHARACTER",
        ),
        (
            access(json!({"kind": "organization", "user_id": Uuid::now_v7()})),
            "subject",
            "FIELD_NOT_FOR_KIND",
        ),
        (
            access(json!({"kind": "user", "user_id": Uuid::now_v7(), "external_ids": ["a"]})),
            "subject",
            "FIELD_NOT_FOR_KIND",
        ),
        (
            json!({"type": "access", "subject": {"kind": "organization"}, "received_at": tomorrow}),
            "received_at",
            "IN_THE_FUTURE",
        ),
        (
            json!({"type": "access", "subject": {"kind": "organization"}, "reference": ""}),
            "reference",
            "INVALID_LENGTH",
        ),
    ] {
        let reply = world.app.post(REQUESTS, &world.token, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let errors = field_errors(&reply);
        assert!(
            errors.iter().any(|(f, c)| f == field && c == code),
            "{body}: expected {field} {code}, got {errors:?}"
        );
    }
    // Nothing was filed.
    assert_eq!(
        world
            .count("SELECT count(*) FROM ibex_core.data_requests WHERE org_id = $1")
            .await,
        0
    );
    // A user of another organization, or of none: 404, alike.
    let other_org = Uuid::now_v7();
    world.app.db.add_org(other_org).await;
    let foreign = world.app.db.add_user(other_org, "member").await;
    for user in [foreign, Uuid::now_v7()] {
        world
            .app
            .post(
                REQUESTS,
                &world.token,
                access(json!({"kind": "user", "user_id": user})),
            )
            .await
            .assert_error(404, "USER_NOT_FOUND");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_owners_and_admins_file_and_only_owners_erase_the_organization_or_an_owner() {
    let world = World::start().await;
    let (_, admin_token) = world.operator("admin").await;
    let (member, member_token) = world.operator("member").await;
    let other_owner = world.app.db.add_user(world.org, "owner").await;
    let agent_token = world.auth.token_for_user(world.org, None, ALL_PERMISSIONS);
    let access = json!({"type": "access", "subject": {"kind": "user", "user_id": member}});
    for token in [&member_token, &agent_token] {
        world
            .app
            .post(REQUESTS, token, access.clone())
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
        world
            .app
            .read(REQUESTS, token)
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }
    let reply = world.app.post(REQUESTS, &admin_token, access).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    for subject in [
        json!({"kind": "organization"}),
        json!({"kind": "user", "user_id": other_owner}),
    ] {
        let body = json!({"type": "erasure", "subject": subject});
        world
            .app
            .post(REQUESTS, &admin_token, body)
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }
    // An admin may erase a member, an owner an owner.
    let body = json!({"type": "erasure", "subject": {"kind": "user", "user_id": member}});
    let reply = world.app.post(REQUESTS, &admin_token, body).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let erase_owner = world
        .file(json!({"type": "erasure", "subject": {"kind": "user", "user_id": other_owner}}))
        .await;
    let id = erase_owner["id"].as_str().unwrap();
    world.wait_for(id, "awaiting_confirmation").await;
    // ...and only an owner confirms an owner's erasure.
    world
        .app
        .post(&format!("{REQUESTS}/{id}/confirm"), &admin_token, json!({}))
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSIONS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_deadlines_and_idempotent_retries() {
    let world = World::start().await;
    let people = world.seed_people().await;
    let received = "2026-01-31T10:00:00Z";
    let subject = json!({"kind": "end_user", "session_ids": [people.session_2]});
    // A retry with the same Idempotency-Key files once.
    let body = json!({"type": "erasure", "subject": subject, "received_at": received});
    let key = [("Idempotency-Key", "dr-1")];
    let file = || {
        world
            .app
            .call_with("POST", REQUESTS, &world.token, &key, Some(body.clone()))
    };
    let first = file().await;
    assert_eq!(first.status, 202, "{}", first.text());
    let again = file().await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(
        world
            .count("SELECT count(*) FROM ibex_core.data_requests WHERE org_id = $1")
            .await,
        1
    );
    let request = first.json();
    let id = request["id"].as_str().unwrap().to_owned();
    // One calendar month after receipt (the last day of February), long overdue by now.
    assert_eq!(request["due_at"], "2026-02-28T10:00:00.000Z");
    assert_eq!(request["sla_state"], "overdue");

    world.wait_for(&id, "awaiting_confirmation").await;
    // The one extension, with its reason; a second is refused.
    let extend = format!("{REQUESTS}/{id}/extend");
    world
        .app
        .post(&extend, &world.token, json!({"months": 3, "reason": "x"}))
        .await
        .assert_error(400, "VALIDATION_ERROR");
    let body = json!({"reason": "The request is complex.", "months": 2});
    let extended = world.app.post(&extend, &world.token, body).await;
    assert_eq!(extended.status, 200, "{}", extended.text());
    assert_eq!(extended.json()["due_at"], "2026-04-28T10:00:00.000Z");
    assert_eq!(
        extended.json()["extension_reason"],
        "The request is complex."
    );
    world
        .app
        .post(&extend, &world.token, json!({"reason": "again"}))
        .await
        .assert_error(409, "DATA_REQUEST_INVALID_TRANSITION");
    // The archive and the receipt exist only for what has them.
    world
        .app
        .read(&format!("{REQUESTS}/{id}/archive"), &world.token)
        .await
        .assert_error(409, "DATA_REQUEST_NO_ARCHIVE");
    world
        .app
        .read(&format!("{REQUESTS}/{id}/receipt"), &world.token)
        .await
        .assert_error(409, "DATA_REQUEST_NOT_COMPLETED");
    // Canceled before anything was touched: nothing was.
    let canceled = world.act(&id, "cancel").await;
    assert_eq!(canceled.status, 200, "{}", canceled.text());
    assert_eq!(canceled.json()["status"], "canceled");
    assert_eq!(world.traces_of(world.org, &[people.session_2]).await, 2);
    assert_eq!(
        world
            .count("SELECT count(*) FROM ibex_core.sessions WHERE org_id = $1")
            .await,
        4
    );
    for step in ["confirm", "cancel"] {
        let reply = world
            .app
            .post(&format!("{REQUESTS}/{id}/{step}"), &world.token, json!({}))
            .await;
        let code = if step == "confirm" {
            "DATA_REQUEST_INVALID_TRANSITION"
        } else {
            "DATA_REQUEST_NOT_CANCELABLE"
        };
        reply.assert_error(409, code);
    }
    world
        .app
        .read(&format!("{REQUESTS}/{}", Uuid::now_v7()), &world.token)
        .await
        .assert_error(404, "NOT_FOUND");

    // A running request cannot be canceled.
    let running = world
        .file(
            json!({"type": "access", "subject": {"kind": "end_user", "external_ids": [PERSON_1]}}),
        )
        .await;
    let running_id = running["id"].as_str().unwrap();
    let done = world.wait_for(running_id, "succeeded").await;
    assert_eq!(done["sla_state"], "on_time");
    let reply = world.act(running_id, "cancel").await;
    reply.assert_error(409, "DATA_REQUEST_NOT_CANCELABLE");
    // Only an erasure awaiting confirmation is confirmed.
    let reply = world.act(running_id, "confirm").await;
    reply.assert_error(409, "DATA_REQUEST_INVALID_TRANSITION");

    // The list: newest first, filtered, paged.
    let all = world.app.page_through(&world.token, REQUESTS, 1).await;
    assert_eq!(
        all,
        vec![running_id.parse::<Uuid>().unwrap(), id.parse().unwrap()]
    );
    let erasures = world
        .app
        .read(
            &format!("{REQUESTS}?type=erasure&status=canceled"),
            &world.token,
        )
        .await
        .json();
    assert_eq!(erasures["items"].as_array().unwrap().len(), 1);
    world
        .app
        .read(&format!("{REQUESTS}?status=lost"), &world.token)
        .await
        .assert_error(400, "VALIDATION_ERROR");

    // The archive's end: deleted, audited, then 410.
    let mut admin = world.admin().await;
    admin
        .run(
            "UPDATE ibex_core.data_requests SET archive_expires_at = now() WHERE id = $1",
            running_id.parse::<Uuid>().unwrap(),
        )
        .await;
    let key = format!("{}/data-requests/{running_id}.zip", world.org);
    assert!(world.object_exists("ibex-exports", &key));
    let deadline = Deadline::after(Duration::from_secs(15)).every(Duration::from_millis(200));
    while world.object_exists("ibex-exports", &key) {
        deadline.tick("the archive was not purged").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    world
        .app
        .read(&format!("{REQUESTS}/{running_id}/archive"), &world.token)
        .await
        .assert_error(410, "DATA_REQUEST_ARCHIVE_EXPIRED");
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM ibex_core.audit_events WHERE org_id = $1 AND target_id = $2 ORDER BY occurred_at",
    )
    .bind(world.org)
    .bind(running_id)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        actions,
        ["data_request.create", "data_request.archive_purged"],
        "every step is audited"
    );
    let _: Value = world.get(running_id).await;
}
