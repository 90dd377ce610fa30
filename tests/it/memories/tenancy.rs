//! Another organization sees nothing and changes nothing, on every memory operation.

use super::*;

#[tokio::test]
async fn another_org_sees_nothing_and_changes_nothing_on_every_operation() {
    let auth = FakeAuth::start().await;
    let (app, _s3, memory_service) = app_with_every_service(auth.addr).await;
    let agent = app.db.add_agent(org_a()).await;
    let memories: Vec<Seed> = (0..3).map(|n| Seed::new(org_a(), agent, n * 3)).collect();
    seed(&app.db, &memories).await;
    let memory = memories[0].id;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let outsider = auth.token_for(org_b, ALL);
    let insider = auth.token_for(org_a(), ALL);
    // A job of org A, to probe with org B's token.
    let job = start_export(&app, &insider, agent, "csv").await;
    assert_eq!(job.status, 202, "{}", job.text());
    let job_path = job.header("location").unwrap().to_owned();
    let jobs_before = scalar(
        &app.db,
        "SELECT count(*) FROM ibex_core.memory_exports WHERE org_id = $1",
        org_a(),
    )
    .await;

    let base = format!("/v1/agents/{agent}/memories");
    let operations: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", base.clone(), None),
        ("GET", format!("{base}/{memory}"), None),
        ("DELETE", format!("{base}/{memory}"), None),
        ("DELETE", format!("{base}?confirm=true"), None),
        (
            "POST",
            format!("{base}/search"),
            Some(json!({"query": "memory"})),
        ),
        (
            "POST",
            format!("{base}/export"),
            Some(json!({"format": "json"})),
        ),
        ("GET", job_path.clone(), None),
    ];
    let missing = app
        .read(&format!("/v1/agents/{}/memories", Uuid::now_v7()), &insider)
        .await;
    missing.assert_error(404, "NOT_FOUND");
    for (method, path, body) in &operations {
        let reply = app.call(method, path, &outsider, body.clone()).await;
        let error = reply.assert_error(404, "NOT_FOUND");
        assert_eq!(
            error["error"]["message"],
            missing.json()["error"]["message"],
            "{method} {path}: a foreign agent answers like a missing one"
        );
        // Without the operation's bit: 403 whatever the id.
        let bitless = auth.token_for(org_a(), ORG_SETTINGS_WRITE);
        app.call(method, path, &bitless, body.clone())
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }
    // A memory of another agent of the same org is not this agent's.
    let sibling = app.db.add_agent(org_a()).await;
    app.read(&format!("/v1/agents/{sibling}/memories/{memory}"), &insider)
        .await
        .assert_error(404, "NOT_FOUND");
    app.delete(&format!("/v1/agents/{sibling}/memories/{memory}"), &insider)
        .await
        .assert_error(404, "NOT_FOUND");

    assert_eq!(
        scalar(
            &app.db,
            "SELECT count(*) FROM ibex_core.memories WHERE org_id = $1 AND deleted_at IS NULL",
            org_a(),
        )
        .await,
        3,
        "nothing deleted"
    );
    assert_eq!(
        scalar(
            &app.db,
            "SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1",
            org_a()
        )
        .await,
        0,
        "nothing announced"
    );
    assert_eq!(
        scalar(
            &app.db,
            "SELECT count(*) FROM ibex_core.memory_exports WHERE $1::uuid IS NOT NULL",
            org_a(),
        )
        .await,
        jobs_before,
        "no job created"
    );
    assert!(
        memory_service.calls().is_empty(),
        "the memory service was never asked"
    );
}
