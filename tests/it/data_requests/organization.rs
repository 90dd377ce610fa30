//! The whole organization: everything it owns, returned; then everything, erased, with a
//! receipt that outlives it.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organizations_archive_holds_everything_it_owns() {
    let world = World::start().await;
    let people = world.seed_people().await;
    let filed = world
        .file(json!({"type": "access", "subject": {"kind": "organization"}}))
        .await;
    let done = world
        .wait_for(filed["id"].as_str().unwrap(), "succeeded")
        .await;
    assert_eq!(done["plan"]["sessions"], 4, "{done:#}");
    assert_eq!(done["plan"]["archives_bucket"], 4);
    assert_eq!(done["plan"]["exports_bucket"], 2);
    assert_eq!(done["plan"]["llm_traces"], 8);
    let files = unzip(&world.archive(done["id"].as_str().unwrap()).await);
    assert_eq!(lines(&files["postgresql/organizations.ndjson"]).len(), 1);
    assert_eq!(lines(&files["postgresql/sessions.ndjson"]).len(), 4);
    assert_eq!(lines(&files["postgresql/memories.ndjson"]).len(), 4);
    assert_eq!(lines(&files["clickhouse/llm_traces.ndjson"]).len(), 8);
    let objects = files.keys().filter(|f| f.starts_with("objects/")).count();
    assert_eq!(objects, 6, "four archives, two export files");
    assert!(!files.contains_key("postgresql/idempotency_keys.ndjson"));
    let everything: String = files
        .values()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert!(!everything.contains(&people.other_org.to_string()));
    assert!(!everything.contains(&people.other_session.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_organization_is_its_erasure_with_a_receipt_that_outlives_it() {
    let world = World::start().await;
    let people = world.seed_people().await;
    // An earlier request of the organization: its receipt is the chain's first link.
    let earlier = world
        .file(
            json!({"type": "access", "subject": {"kind": "end_user", "external_ids": [PERSON_1]}}),
        )
        .await;
    world
        .wait_for(earlier["id"].as_str().unwrap(), "succeeded")
        .await;

    let deleted = world
        .app
        .delete(&format!("/v1/organizations/{}", world.org), &world.token)
        .await;
    assert_eq!(deleted.status, 202, "{}", deleted.text());
    // The deletion filed a confirmed erasure of the organization.
    let list = world
        .app
        .read(&format!("{REQUESTS}?type=erasure"), &world.token)
        .await;
    let request = if list.status == 200 {
        list.json()["items"][0].clone()
    } else {
        Value::Null
    };
    let id: Uuid = request["id"]
        .as_str()
        .expect("the erasure request is listed")
        .parse()
        .unwrap();
    assert_eq!(request["subject"], redacted("organization"));
    assert_eq!(
        request["subject_commitment"],
        commitment(
            request["subject_salt"].as_str().unwrap(),
            &request["subject"]
        ),
        "the database makes the commitment the service makes"
    );

    // It ends with the organization gone; its receipt stays, public.
    let mut admin = world.admin().await;
    let deadline = Deadline::after(Duration::from_secs(60)).every(Duration::from_millis(200));
    let receipt_id: Uuid = loop {
        let found: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM ibex_core.data_request_receipts WHERE request_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
        if let Some(found) = found {
            break found;
        }
        deadline
            .tick("no receipt for the organization's erasure")
            .await;
    };
    let public = world
        .app
        .get(&format!("/v1/data-request-receipts/{receipt_id}"), &[])
        .await;
    assert_eq!(public.status, 200, "{}", public.text());
    let body = public.json();
    let claims = world.verify(body["jws"].as_str().unwrap()).await;
    assert_eq!(claims["type"], "erasure");
    assert_eq!(claims["subject_kind"], "organization");
    assert_eq!(claims["sequence"], 2);
    assert!(claims["previous_receipt_sha256"].is_string());
    for (store, counts) in claims["stores"].as_object().unwrap() {
        assert_eq!(counts["remaining"], 0, "{store}");
    }
    assert!(claims["stores"]["sessions"]["selected"].as_i64().unwrap() >= 4);

    // A direct look: nothing of the organization anywhere, everything of the other one.
    for table in [
        "organizations",
        "users",
        "agents",
        "sessions",
        "checkpoints",
        "memories",
        "memory_tags",
        "memory_versions",
        "memory_relationships",
        "memory_exports",
        "audit_events",
        "data_requests",
        "data_request_items",
    ] {
        let column = if table == "organizations" {
            "id"
        } else {
            "org_id"
        };
        let left: i64 = admin
            .value(
                &format!("SELECT count(*) FROM ibex_core.{table} WHERE {column} = $1"),
                world.org,
            )
            .await;
        assert_eq!(left, 0, "{table} keeps rows of the erased organization");
    }
    let receipts: i64 = admin
        .value(
            "SELECT count(*) FROM ibex_core.data_request_receipts WHERE org_id = $1",
            world.org,
        )
        .await;
    assert_eq!(receipts, 2, "the receipts stay");
    let all_sessions: Vec<Uuid> = people
        .sessions_1
        .iter()
        .copied()
        .chain([people.session_2])
        .collect();
    assert_eq!(world.traces_of(world.org, &all_sessions).await, 0);
    assert_eq!(
        world
            .traces_of(people.other_org, &[people.other_session])
            .await,
        2
    );
    for bucket in ["ibex-archives", "ibex-exports"] {
        let left = files_under(&world.s3.root().join(bucket).join(world.org.to_string()));
        assert_eq!(left, 0, "{bucket} keeps objects of the erased organization");
    }
    assert_eq!(
        files_under(
            &world
                .s3
                .root()
                .join("ibex-archives")
                .join(people.other_org.to_string())
        ),
        1
    );
    let other_sessions: i64 = admin
        .value(
            "SELECT count(*) FROM ibex_core.sessions WHERE org_id = $1",
            people.other_org,
        )
        .await;
    assert_eq!(other_sessions, 1);
}

/// Files anywhere under `dir` (the S3 server leaves emptied folders behind).
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}
