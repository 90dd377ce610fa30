//! One person the organization's agents talked to: their access archive, then their erasure.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::*;

fn ids_in(rows: &[Value], field: &str) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .iter()
        .map(|r| r[field].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[Uuid]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_users_archive_holds_their_data_and_nobody_elses() {
    let world = World::start().await;
    let people = world.seed_people().await;
    let subject = json!({
        "kind": "end_user",
        "external_ids": [PERSON_1],
        "session_ids": [people.sessions_1[2], people.other_session],
    });
    let filed = world
        .file(json!({"type": "access", "subject": subject, "reference": "TICKET-7"}))
        .await;
    assert_eq!(filed["status"], "received");
    assert_eq!(filed["sla_state"], "on_time");
    assert_eq!(filed["reference"], "TICKET-7");
    let id = filed["id"].as_str().unwrap();
    // The commitment is reproducible from the salt and the subject as shown.
    assert_eq!(
        filed["subject_commitment"],
        commitment(filed["subject_salt"].as_str().unwrap(), &filed["subject"])
    );

    let done = world.wait_for(id, "succeeded").await;
    // The plan: person-1's three sessions (the soft-deleted one too, not the other
    // organization's), their two memories, four checkpoints... and two traces per live session
    // with a trace.
    let plan = &done["plan"];
    assert_eq!(plan["sessions"], 3, "{done:#}");
    assert_eq!(plan["memories"], 2);
    assert_eq!(plan["checkpoints"], 6);
    assert_eq!(plan["memory_tags"], 4);
    assert_eq!(plan["memory_versions"], 2);
    assert_eq!(plan["memory_relationships"], 1);
    assert_eq!(plan["session_archives"], 3);
    assert_eq!(plan["llm_traces"], 4);
    for (store, progress) in done["progress"].as_object().unwrap() {
        assert_eq!(progress["status"], "done", "{store}");
        assert_eq!(progress["remaining"], 0, "{store}");
        assert_eq!(progress["items_done"], progress["items_total"], "{store}");
    }

    // The archive, through its pre-signed link.
    let zip = world.archive(id).await;
    assert_eq!(done["archive"]["sha256"], sha256_hex(&zip));
    assert_eq!(done["archive"]["bytes"], zip.len());
    let files = unzip(&zip);
    assert!(files.contains_key("README.txt"));
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    // manifest.jws is the manifest, signed.
    let signed = world
        .verify(std::str::from_utf8(&files["manifest.jws"]).unwrap())
        .await;
    assert_eq!(signed, manifest);
    assert_eq!(manifest["request"]["id"], id);
    assert_eq!(manifest["subject"], done["subject"]);
    for file in manifest["files"].as_array().unwrap() {
        let content = &files[file["path"].as_str().unwrap()];
        assert_eq!(file["sha256"], sha256_hex(content), "{file}");
        assert_eq!(file["bytes"], content.len(), "{file}");
    }
    assert!(
        manifest["excluded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["what"] == "idempotency records")
    );
    let sessions = lines(&files["postgresql/sessions.ndjson"]);
    assert_eq!(ids_in(&sessions, "id"), sorted(&people.sessions_1));
    let memories = lines(&files["postgresql/memories.ndjson"]);
    assert_eq!(ids_in(&memories, "id"), sorted(&people.memories_1));
    assert!(
        memories
            .iter()
            .any(|m| m["content"] == "person-1 likes tea")
    );
    let checkpoints = lines(&files["postgresql/checkpoints.ndjson"]);
    assert_eq!(checkpoints.len(), 6);
    let traces = lines(&files["clickhouse/llm_traces.ndjson"]);
    assert_eq!(traces.len(), 4);
    assert!(traces.iter().all(|t| {
        [people.sessions_1[0], people.sessions_1[2]]
            .iter()
            .any(|s| t["session_id"] == s.to_string())
    }));
    let objects: Vec<&String> = files.keys().filter(|f| f.starts_with("objects/")).collect();
    assert_eq!(objects.len(), 3, "{objects:?}");
    // Nothing of person-2, of the agent's own memory or of the other organization in the data
    // (the manifest repeats the subject as filed, which named a foreign session id on purpose).
    let data: std::collections::BTreeMap<&String, &Vec<u8>> = files
        .iter()
        .filter(|(name, _)| !name.starts_with("manifest."))
        .collect();
    let everything: String = data
        .values()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    for foreign in [
        people.session_2,
        people.memory_2,
        people.agent_memory,
        people.other_session,
        people.other_org,
    ] {
        let leaks: Vec<&&String> = data
            .iter()
            .filter(|(_, f)| String::from_utf8_lossy(f).contains(&foreign.to_string()))
            .map(|(name, _)| name)
            .collect();
        assert!(
            !everything.contains(&foreign.to_string()),
            "{foreign} leaked into the archive: {leaks:?}"
        );
    }
    assert!(!everything.contains("person-2 likes coffee"));

    // The receipt names no one, proves the archive, starts the organization's chain.
    let receipt = world.verified_receipt(id).await;
    assert_eq!(receipt["request_id"], id);
    assert_eq!(receipt["type"], "access");
    assert_eq!(receipt["subject_kind"], "end_user");
    assert_eq!(receipt["subject_commitment"], done["subject_commitment"]);
    assert_eq!(receipt["archive_sha256"], sha256_hex(&zip));
    assert_eq!(receipt["sequence"], 1);
    assert_eq!(receipt["previous_receipt_sha256"], Value::Null);
    assert!(!receipt.to_string().contains(PERSON_1));
    // Public, without a token, by its id.
    let public = world
        .public_receipt(done["receipt_id"].as_str().unwrap())
        .await;
    assert_eq!(public.status, 200, "{}", public.text());
    assert_eq!(public.json()["receipt"], receipt);
    let unknown = world.public_receipt(&Uuid::new_v4().to_string()).await;
    unknown.assert_error(404, "NOT_FOUND");
    // Another organization sees nothing of it.
    let stranger = world.auth.token_for(people.other_org, ALL_PERMISSIONS);
    world
        .app
        .read(&format!("{REQUESTS}/{id}"), &stranger)
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSIONS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_users_erasure_removes_exactly_their_data_everywhere() {
    let world = World::start().await;
    let people = world.seed_people().await;
    let mut deletions = subscribe("ibex:memory:deletions").await;
    let mut statuses = subscribe("ibex:data-requests").await;
    // An earlier access request: the erasure's receipt chains to its receipt.
    let access = world
        .file(
            json!({"type": "access", "subject": {"kind": "end_user", "external_ids": [PERSON_1]}}),
        )
        .await;
    let access = world
        .wait_for(access["id"].as_str().unwrap(), "succeeded")
        .await;

    let filed = world
        .file(json!({"type": "erasure", "subject": {
            "kind": "end_user",
            "external_ids": [PERSON_1],
            "session_ids": [people.sessions_1[2], people.other_session],
        }}))
        .await;
    let id = filed["id"].as_str().unwrap().to_owned();
    // It plans, then waits with its plan; nothing is touched yet.
    let planned = world.wait_for(&id, "awaiting_confirmation").await;
    assert_eq!(planned["plan"]["sessions"], 3, "{planned:#}");
    assert_eq!(planned["plan"]["memory_exports"], 1);
    assert_eq!(planned["plan"]["hot_cache"], 2);
    assert_eq!(
        world
            .count("SELECT count(*) FROM ibex_core.sessions WHERE org_id = $1")
            .await,
        4
    );

    world.confirm(&id).await;
    let done = world
        .wait_for_within(&id, "succeeded", Duration::from_secs(60))
        .await;
    for (store, progress) in done["progress"].as_object().unwrap() {
        assert_eq!(progress["remaining"], 0, "{store}: {done:#}");
        assert_eq!(progress["items_done"], progress["items_total"], "{store}");
    }
    // The request forgot whom it was about; the commitment stays.
    assert_eq!(done["subject"], redacted("end_user"));
    assert_eq!(done["subject_commitment"], filed["subject_commitment"]);

    // PostgreSQL: nothing of person-1, everything of person-2, the agent, the other organization.
    let person_1: Vec<Uuid> = people.sessions_1.to_vec();
    let mut admin = world.admin().await;
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM ibex_core.sessions WHERE id = ANY($1))
              + (SELECT count(*) FROM ibex_core.checkpoints WHERE session_id = ANY($1))
              + (SELECT count(*) FROM ibex_core.memories WHERE session_id = ANY($1))
              + (SELECT count(*) FROM ibex_core.memory_tags WHERE memory_id = ANY($2))
              + (SELECT count(*) FROM ibex_core.memory_versions WHERE memory_id = ANY($2))
              + (SELECT count(*) FROM ibex_core.memory_relationships
                 WHERE source_memory_id = ANY($2) OR target_memory_id = ANY($2))",
    )
    .bind(&person_1)
    .bind(people.memories_1.to_vec())
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(left, 0, "nothing of person-1 is left in PostgreSQL");
    let kept: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM ibex_core.sessions WHERE id = ANY($1)),
                (SELECT count(*) FROM ibex_core.checkpoints WHERE session_id = ANY($1)),
                (SELECT count(*) FROM ibex_core.memories WHERE id = ANY($2)),
                (SELECT count(*) FROM ibex_core.memory_tags WHERE memory_id = ANY($2)),
                (SELECT count(*) FROM ibex_core.memory_relationships WHERE source_memory_id = ANY($2))",
    )
    .bind(vec![people.session_2, people.other_session])
    .bind(vec![people.memory_2, people.agent_memory])
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(kept, (2, 4, 2, 4, 1), "everyone else's rows stay");
    // ClickHouse: person-1's traces gone, the others' there.
    assert_eq!(world.traces_of(world.org, &person_1).await, 0);
    assert_eq!(world.traces_of(world.org, &[people.session_2]).await, 2);
    assert_eq!(
        world
            .traces_of(people.other_org, &[people.other_session])
            .await,
        2
    );
    // The object store: person-1's archives gone, person-2's there; the export that may hold an
    // erased memory purged, the older one kept.
    for (session, agent, kept) in [
        (people.sessions_1[0], people.agent_a, false),
        (people.sessions_1[1], people.agent_b, false),
        (people.sessions_1[2], people.agent_b, false),
        (people.session_2, people.agent_a, true),
    ] {
        let key = format!("{}/{agent}/{session}/{session}.ndjson", world.org);
        assert_eq!(world.object_exists("ibex-archives", &key), kept, "{key}");
    }
    let exports = format!("{}/memories/{}", world.org, people.agent_a);
    assert!(!world.object_exists(
        "ibex-exports",
        &format!("{exports}/{}.ndjson", people.export_after)
    ));
    assert!(world.object_exists(
        "ibex-exports",
        &format!("{exports}/{}.ndjson", people.export_before)
    ));
    let job = world
        .app
        .read(
            &format!(
                "/v1/agents/{}/memories/export/{}",
                people.agent_a, people.export_after
            ),
            &world.token,
        )
        .await;
    assert_eq!(job.status, 200, "{}", job.text());
    assert_eq!(job.json()["status"], "purged");
    assert_eq!(job.json()["download_url"], Value::Null);
    // Redis: the hot cache forgot person-1's memory, kept person-2's; downstream heard of the
    // erasure as such.
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{}:hot_memories:{}", world.org, people.agent_a);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(members, vec![people.memory_2.to_string()]);
    let mut erased = Vec::new();
    while let Some(message) = next_message(&mut deletions, Duration::from_secs(3)).await {
        if message["org_id"] == world.org.to_string() {
            assert_eq!(message["reason"], "erasure", "{message}");
            erased.extend(
                message["memory_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_owned()),
            );
        }
        if erased.len() >= 2 {
            break;
        }
    }
    erased.sort();
    assert_eq!(erased, sorted(&people.memories_1));
    // The transitions, status only.
    let mut seen = Vec::new();
    while let Some(message) = next_message(&mut statuses, Duration::from_secs(2)).await {
        if message["request_id"] == id.as_str() {
            assert_eq!(
                message.as_object().unwrap().keys().collect::<Vec<_>>(),
                ["org_id", "request_id", "status", "v"]
            );
            seen.push(message["status"].as_str().unwrap().to_owned());
        }
        if seen.last().map(String::as_str) == Some("succeeded") {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "received",
            "planning",
            "awaiting_confirmation",
            "running",
            "succeeded"
        ]
    );

    // The receipt: counts with nothing remaining, chained to the access request's receipt.
    let receipt = world.verified_receipt(&id).await;
    assert_eq!(receipt["sequence"], 2);
    assert_eq!(receipt["completed_at"], done["completed_at"]);
    assert_eq!(receipt["received_at"], done["received_at"]);
    let access_receipt = world
        .public_receipt(access["receipt_id"].as_str().unwrap())
        .await
        .json();
    let previous_payload = access_receipt["jws"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    use base64::Engine;
    let previous_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(previous_payload)
        .unwrap();
    assert_eq!(
        receipt["previous_receipt_sha256"],
        sha256_hex(&previous_bytes)
    );
    for (store, counts) in receipt["stores"].as_object().unwrap() {
        assert_eq!(counts["remaining"], 0, "{store}");
        assert_eq!(counts["selected"], counts["done"], "{store}");
    }
    assert!(!receipt.to_string().contains(PERSON_1));
    // The audit trail of the request names no one either.
    let trail: Vec<String> = sqlx::query_scalar(
        "SELECT action || ' ' || target_id || ' ' || array_to_string(changed_fields, ',')
         FROM ibex_core.audit_events WHERE org_id = $1 AND target_type = 'data_request'",
    )
    .bind(world.org)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        trail.iter().any(|t| t.starts_with("data_request.confirm")),
        "{trail:?}"
    );
    assert!(trail.iter().all(|t| !t.contains(PERSON_1)));
}
