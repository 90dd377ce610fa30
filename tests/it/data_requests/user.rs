//! An operator of the organization: what the service holds on them, and their erasure.

use serde_json::json;
use uuid::Uuid;

use super::*;

/// `POST /v1/agents` of agent `slug` with `token`, from the browser `headers` describe.
async fn create_agent(world: &World, token: &str, headers: &[(&str, &str)], slug: &str) -> Reply {
    let body = json!({"name": slug, "slug": slug});
    world
        .app
        .call_with("POST", "/v1/agents", token, headers, Some(body))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_access_and_erasure() {
    let world = World::start().await;
    // Each works through the API with their own token, from their own browser.
    let (operator, their_token) = world.operator("admin").await;
    let (colleague, colleague_token) = world.operator("member").await;
    let browser = [
        ("User-Agent", "Firefox/140 operator-browser"),
        ("X-Forwarded-For", "203.0.113.9"),
    ];
    let agent = create_agent(&world, &their_token, &browser, "theirs").await;
    assert_eq!(agent.status, 201, "{}", agent.text());
    let agent_id = agent.json()["id"].as_str().unwrap().to_owned();
    // The colleague does something too.
    let browser = [
        ("User-Agent", "colleague-browser"),
        ("X-Forwarded-For", "198.51.100.7"),
    ];
    let other = create_agent(&world, &colleague_token, &browser, "other").await;
    assert_eq!(other.status, 201);

    // Access: their row, their events with address and browser, what they authored.
    let access = world
        .file(json!({"type": "access", "subject": {"kind": "user", "user_id": operator}}))
        .await;
    let access = world
        .wait_for(access["id"].as_str().unwrap(), "succeeded")
        .await;
    let files = unzip(&world.archive(access["id"].as_str().unwrap()).await);
    let users = lines(&files["postgresql/users.ndjson"]);
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], operator.to_string());
    let events = lines(&files["postgresql/audit_events.ndjson"]);
    assert!(
        events
            .iter()
            .all(|e| e["actor_user_id"] == operator.to_string())
    );
    assert!(events.iter().any(|e| e["client_ip"] == "203.0.113.9"));
    let authored = lines(&files["authored.ndjson"]);
    assert!(authored.contains(&json!({"kind": "agent", "id": agent_id})));
    let everything: String = files
        .values()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert!(!everything.contains("colleague-browser"));
    assert!(!everything.contains(&colleague.to_string()));
    assert!(!everything.contains(&their_token), "never a token");

    // Erasure: confirmed, their token revoked, their row a tombstone, their traces in the audit
    // trail without address or browser; the events themselves stay.
    let erasure = world
        .file(json!({"type": "erasure", "subject": {"kind": "user", "user_id": operator}}))
        .await;
    let id = erasure["id"].as_str().unwrap().to_owned();
    let planned = world.wait_for(&id, "awaiting_confirmation").await;
    assert!(
        planned["plan"]["tokens"].as_i64().unwrap() >= 1,
        "{planned:#}"
    );
    assert_eq!(
        world.app.read("/v1/agents", &their_token).await.status,
        200,
        "nothing is touched before confirmation"
    );
    world.confirm(&id).await;
    world
        .app
        .read("/v1/agents", &their_token)
        .await
        .assert_error(401, "INVALID_TOKEN");
    let done = world.wait_for(&id, "succeeded").await;
    assert_eq!(done["subject"], redacted("user"));
    let mut admin = world.admin().await;
    let (name, email, deleted): (String, String, bool) = sqlx::query_as(
        "SELECT name, email, deleted_at IS NOT NULL FROM ibex_core.users WHERE id = $1",
    )
    .bind(operator)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(name, "");
    assert_eq!(email, format!("erased-{operator}@erased.invalid"));
    assert!(deleted);
    let (events, located): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE client_ip IS NOT NULL OR user_agent IS NOT NULL)
         FROM ibex_core.audit_events WHERE actor_user_id = $1",
    )
    .bind(operator)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(events >= 1);
    assert_eq!(located, 0);
    // The colleague's row and trail are untouched.
    let (colleague_email, colleague_located): (String, i64) = sqlx::query_as(
        "SELECT u.email, (SELECT count(*) FROM ibex_core.audit_events
                          WHERE actor_user_id = u.id AND client_ip = '198.51.100.7')
         FROM ibex_core.users u WHERE u.id = $1",
    )
    .bind(colleague)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(colleague_email.ends_with("@seed.example"));
    assert_eq!(colleague_located, 1);
    let receipt = world.verified_receipt(&id).await;
    assert_eq!(receipt["stores"]["users"]["remaining"], 0);
    assert_eq!(receipt["stores"]["tokens"]["remaining"], 0);
    assert!(!receipt.to_string().contains(&operator.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_owner_cannot_be_erased() {
    let world = World::start().await;
    let filed = world
        .file(json!({"type": "erasure", "subject": {"kind": "user", "user_id": world.owner}}))
        .await;
    let rejected = world
        .wait_for(filed["id"].as_str().unwrap(), "rejected")
        .await;
    assert_eq!(rejected["rejection_code"], "LAST_OWNER_PROTECTED");
    let mut admin = world.admin().await;
    let name: String = admin
        .value(
            "SELECT name FROM ibex_core.users WHERE id = $1",
            world.owner,
        )
        .await;
    assert_eq!(name, "Seeded");
    let _ = Uuid::nil();
}
