//! Sessions end to end: filters and keyset pages, tenancy, and replay links signed for a real S3
//! server that checks signatures (missing archive, tampering, expiry, the store down).

use std::time::Duration;

use crate::common::*;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

use uuid::Uuid;

#[derive(Debug, Clone)]
struct SeededSession {
    id: Uuid,
    org_id: Uuid,
    agent_id: Uuid,
    status: &'static str,
    created_at: DateTime<Utc>,
}

async fn seed(db: &TestDb, sessions: &[SeededSession]) {
    let mut admin = db.admin().await;
    sqlx::query(
        "INSERT INTO ibex_core.sessions (id, org_id, agent_id, status, model, provider, turn_count,
             total_input_tokens, total_output_tokens, total_latency_ms, created_at, updated_at)
         SELECT id, org_id, agent_id, status, 'gpt-4o-mini', 'openai', 3, 300, 120, 900, t, t
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[])
              AS s(id, org_id, agent_id, status, t)",
    )
    .bind(sessions.iter().map(|s| s.id).collect::<Vec<_>>())
    .bind(sessions.iter().map(|s| s.org_id).collect::<Vec<_>>())
    .bind(sessions.iter().map(|s| s.agent_id).collect::<Vec<_>>())
    .bind(
        sessions
            .iter()
            .map(|s| s.status.to_owned())
            .collect::<Vec<_>>(),
    )
    .bind(sessions.iter().map(|s| s.created_at).collect::<Vec<_>>())
    .execute(&mut admin)
    .await
    .unwrap();
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[tokio::test]
async fn filters_pages_and_tenancy() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let (agent, other_agent) = (
        app.db.add_agent(org_a()).await,
        app.db.add_agent(org_a()).await,
    );
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let agent_b = app.db.add_agent(org_b).await;
    const STATUSES: [&str; 4] = ["active", "completed", "abandoned", "error"];
    let mut sessions: Vec<SeededSession> = (0..40)
        .map(|n| SeededSession {
            id: Uuid::now_v7(),
            org_id: org_a(),
            agent_id: if n % 3 == 0 { other_agent } else { agent },
            status: STATUSES[n % 4],
            // Pairs share an instant, so ties on created_at are paged by id.
            created_at: Utc
                .timestamp_opt(1_790_000_000 + (n / 2) as i64 * 60, 0)
                .unwrap(),
        })
        .collect();
    let theirs: Vec<SeededSession> = (0..10)
        .map(|n| SeededSession {
            id: Uuid::now_v7(),
            org_id: org_b,
            agent_id: agent_b,
            status: STATUSES[n % 4],
            created_at: Utc.timestamp_opt(1_790_000_000 + n as i64 * 60, 0).unwrap(),
        })
        .collect();
    seed(&app.db, &sessions).await;
    seed(&app.db, &theirs).await;
    let token = auth.token_for(org_a(), SESSION_READ);

    let t1 = sessions[10].created_at;
    let t2 = sessions[30].created_at;
    type Check = Box<dyn Fn(&SeededSession) -> bool>;
    let filters: Vec<(String, Check)> = vec![
        (
            format!("agent_id={agent}"),
            Box::new(move |s: &SeededSession| s.agent_id == agent),
        ),
        (
            "status=completed".into(),
            Box::new(|s: &SeededSession| s.status == "completed"),
        ),
        (
            format!("started_after={}", rfc3339(t1)),
            Box::new(move |s: &SeededSession| s.created_at >= t1),
        ),
        (
            format!("started_before={}", rfc3339(t2)),
            Box::new(move |s: &SeededSession| s.created_at < t2),
        ),
    ];
    sessions.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
    let mut combinations: Vec<Vec<usize>> = vec![vec![]];
    for i in 0..filters.len() {
        combinations.push(vec![i]);
        for j in i + 1..filters.len() {
            combinations.push(vec![i, j]);
        }
    }
    for combination in combinations {
        let query: Vec<&str> = combination.iter().map(|&i| filters[i].0.as_str()).collect();
        let path = format!("/v1/sessions?{}", query.join("&"));
        let expected: Vec<Uuid> = sessions
            .iter()
            .filter(|s| combination.iter().all(|&i| (filters[i].1)(s)))
            .map(|s| s.id)
            .collect();
        assert_eq!(app.page_through(&token, &path, 3).await, expected, "{path}");
    }

    // A cursor belongs to its filters; bad filters name their parameter.
    let page = app
        .read("/v1/sessions?status=error&limit=2", &token)
        .await
        .json();
    let cursor = page["next_cursor"].as_str().unwrap();
    let reply = app
        .read(&format!("/v1/sessions?cursor={cursor}"), &token)
        .await;
    let body = reply.assert_error(400, "INVALID_CURSOR");
    assert_eq!(body["error"]["field_errors"][0]["field"], "cursor");
    for (query, field) in [
        ("agent_id=nope", "agent_id"),
        ("status=done", "status"),
        ("started_after=yesterday", "started_after"),
        (
            "started_after=2026-02-01T00:00:00Z&started_before=2026-01-01T00:00:00Z",
            "started_after",
        ),
    ] {
        let reply = app.read(&format!("/v1/sessions?{query}"), &token).await;
        let body = reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(body["error"]["field_errors"][0]["field"], field, "{query}");
    }

    // Another organization's session: 404 on get and replay, like a missing one; its agent as
    // a filter finds nothing.
    let one = &sessions[0];
    let got = app.read(&format!("/v1/sessions/{}", one.id), &token).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["agent_id"], one.agent_id.to_string());
    let missing = app
        .read(&format!("/v1/sessions/{}", Uuid::now_v7()), &token)
        .await;
    missing.assert_error(404, "NOT_FOUND");
    for path in [
        format!("/v1/sessions/{}", theirs[0].id),
        format!("/v1/sessions/{}/replay", theirs[0].id),
    ] {
        let reply = app.read(&path, &token).await;
        let body = reply.assert_error(404, "NOT_FOUND");
        assert_eq!(body["error"]["message"], missing.json()["error"]["message"]);
    }
    // Another organization's agent as a filter: refused like an unknown one (issue 27).
    app.read(&format!("/v1/sessions?agent_id={agent_b}"), &token)
        .await
        .assert_error(404, "AGENT_NOT_FOUND");
    // Without session:read: 403 whatever the id.
    let bitless = auth.token_for(org_a(), 1);
    for path in [
        "/v1/sessions".to_owned(),
        format!("/v1/sessions/{}", one.id),
        format!("/v1/sessions/{}/replay", Uuid::now_v7()),
    ] {
        app.read(&path, &bitless)
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }

    // The agent with sessions cannot be deleted.
    let writer = auth.token_for(org_a(), 1 << 35);
    app.delete(&format!("/v1/agents/{agent}"), &writer)
        .await
        .assert_error(409, "AGENT_HAS_SESSIONS");
}

#[tokio::test]
async fn replay_links_are_signed_refused_when_changed_or_expired() {
    let (auth, mut s3, app) = TestApp::with_s3(&[("IBEX_API_S3_PRESIGN_TTL_MS", "1000")]).await;
    let agent = app.db.add_agent(org_a()).await;
    let session = SeededSession {
        id: Uuid::now_v7(),
        org_id: org_a(),
        agent_id: agent,
        status: "completed",
        created_at: Utc::now(),
    };
    seed(&app.db, std::slice::from_ref(&session)).await;
    let token = auth.token_for(org_a(), SESSION_READ);
    let path = format!("/v1/sessions/{}/replay", session.id);

    // Not archived yet.
    app.read(&path, &token)
        .await
        .assert_error(409, "SESSION_NOT_ARCHIVED");
    // The archiver writes it.
    let dir = s3
        .root()
        .join(format!("ibex-archives/{ORG_ID}/{agent}/{}", session.id));
    std::fs::create_dir_all(&dir).unwrap();
    let archive = b"{\"turn_index\":0}\n{\"turn_index\":1}\n";
    std::fs::write(dir.join(format!("{}.ndjson", session.id)), archive).unwrap();

    let reply = app.read(&path, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let url = body["url"].as_str().unwrap().to_owned();
    let expires: DateTime<Utc> = body["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires > Utc::now() && expires < Utc::now() + chrono::Duration::seconds(5));
    let (status, downloaded) = plain_get(&url).await;
    assert_eq!(status, 200);
    assert_eq!(downloaded, archive);
    assert_eq!(plain_get(&with_forged_signature(&url)).await.0, 403);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(plain_get(&url).await.0, 403, "expired");

    // The store down: 503, fast; back: links again.
    s3.stop();
    app.read(&path, &token)
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    s3.restart().unwrap();
    assert_eq!(app.read(&path, &token).await.status, 200);
}
