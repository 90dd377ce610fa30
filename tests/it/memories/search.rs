//! Semantic search through the memory service (and its stand-in).

use super::*;

#[tokio::test]
async fn search_keeps_the_service_order_and_drops_what_is_not_this_agents() {
    let auth = FakeAuth::start().await;
    let service = FakeMemoryService::start(MemoryAnswer::Json(json!({"results": []}))).await;
    let url = service.url();
    let app = TestApp::start(
        auth.addr,
        &[
            ("IBEX_API_MEMORY_SERVICE_URL", url.as_str()),
            ("IBEX_API_MEMORY_SERVICE_TIMEOUT_MS", "300"),
            ("IBEX_API_MAX_BODY_BYTES", "65536"),
        ],
    )
    .await;
    let agent = app.db.add_agent(org_a()).await;
    let sibling = app.db.add_agent(org_a()).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let agent_b = app.db.add_agent(org_b).await;
    let mine: Vec<Seed> = (0..3).map(|n| Seed::new(org_a(), agent, n * 3)).collect();
    let theirs = Seed::new(org_b, agent_b, 0);
    let siblings = Seed::new(org_a(), sibling, 0);
    let mut all = mine.clone();
    all.extend([theirs.clone(), siblings.clone()]);
    seed(&app.db, &all).await;
    soft_delete(&app.db, mine[2].id).await;
    service.set(MemoryAnswer::Json(json!({"results": [
        {"memory_id": mine[1].id, "score": 0.9},
        {"memory_id": theirs.id, "score": 0.8},
        {"memory_id": Uuid::now_v7(), "score": 0.7},
        {"memory_id": mine[0].id, "score": 0.5},
        {"memory_id": mine[1].id, "score": 0.4},
        {"memory_id": mine[2].id, "score": 0.3},
        {"memory_id": siblings.id, "score": 0.2},
    ]})));
    let token = auth.token_for(org_a(), MEMORY_READ);
    let path = format!("/v1/agents/{agent}/memories/search");
    let body = json!({"query": "what does the customer prefer?", "limit": 7, "category": "factual",
                      "tags": ["vip"], "min_confidence": 0.5});
    let reply = app.post(&path, &token, body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let items = reply.json()["items"].as_array().unwrap().clone();
    let got: Vec<(String, f64)> = items
        .iter()
        .map(|i| {
            (
                i["memory"]["id"].as_str().unwrap().to_owned(),
                i["score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(mine[1].id.to_string(), 0.9), (mine[0].id.to_string(), 0.5)]
    );
    let calls = service.calls();
    let (request_id, sent) = calls.last().unwrap();
    assert_eq!(request_id.as_deref(), Some(reply.request_id()));
    assert_eq!(
        sent,
        &json!({"org_id": ORG_ID, "agent_id": agent, "query": "what does the customer prefer?",
                "limit": 7, "filters": {"category": "factual", "tags": ["vip"], "min_confidence": 0.5}})
    );

    // Bad bodies never reach the service.
    let before = service.calls().len();
    for (body, field) in [
        (json!({}), "query"),
        (json!({"query": ""}), "query"),
        (json!({"query": "x".repeat(2001)}), "query"),
        (json!({"query": "a\u{0}b"}), "query"),
        (json!({"query": "x", "limit": 0}), "limit"),
        (json!({"query": "x", "limit": 51}), "limit"),
        (json!({"query": "x", "limit": "5"}), "limit"),
        (json!({"query": "x", "category": "facts"}), "category"),
        (json!({"query": "x", "tags": "vip"}), "tags"),
        (json!({"query": "x", "tags": [""]}), "tags"),
        (
            json!({"query": "x", "min_confidence": 1.5}),
            "min_confidence",
        ),
        (json!({"query": "x", "filters": {}}), "filters"),
    ] {
        let reply = app.post(&path, &token, body.clone()).await;
        let error = reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(error["error"]["field_errors"][0]["field"], field, "{body}");
    }
    assert_eq!(service.calls().len(), before);

    // Whatever goes wrong at the service: 503 with Retry-After, its words never echoed.
    let query = Some(json!({"query": "x"}));
    for answer in [
        MemoryAnswer::Raw(500, "SECRET-SERVICE-TEXT internal error"),
        MemoryAnswer::Raw(200, "SECRET-SERVICE-TEXT not json"),
        MemoryAnswer::Json(json!({"items": [], "note": "SECRET-SERVICE-TEXT"})),
        MemoryAnswer::Json(json!({"results": [{"memory_id": "SECRET-SERVICE-TEXT", "score": 1}]})),
        MemoryAnswer::Json(json!({"results": [{"memory_id": mine[0].id}]})),
        MemoryAnswer::Slow(Duration::from_secs(5)),
    ] {
        service.set(answer.clone());
        let started = Instant::now();
        let reply = app.call("POST", &path, &token, query.clone()).await;
        reply.assert_error(503, "MEMORY_SERVICE_UNAVAILABLE");
        assert_eq!(reply.header("retry-after"), Some("2"));
        assert!(
            !reply.text().contains("SECRET"),
            "{answer:?}: {}",
            reply.text()
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{answer:?}: no hang"
        );
    }
}

#[tokio::test]
async fn search_with_the_service_down_and_with_the_dev_stand_in() {
    let auth = FakeAuth::start().await;
    let down = format!("http://{}", dead_addr().await);
    let app = TestApp::start(auth.addr, &[("IBEX_API_MEMORY_SERVICE_URL", down.as_str())]).await;
    let agent = app.db.add_agent(org_a()).await;
    let mut memories: Vec<Seed> = (0..4).map(|n| Seed::new(org_a(), agent, n * 3)).collect();
    memories[1].content = "The customer asked for a refund of the March invoice".into();
    memories[2].content = "Refunds are processed within five days".into();
    seed(&app.db, &memories).await;
    let token = auth.token_for(org_a(), MEMORY_READ);
    let path = format!("/v1/agents/{agent}/memories/search");
    let started = Instant::now();
    app.post(&path, &token, json!({"query": "refund"}))
        .await
        .assert_error(503, "MEMORY_SERVICE_UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_secs(2));

    // The development stand-in ranks by full-text search, within the org it is asked about.
    let config = config(auth.addr, &[("IBEX_API_DATABASE_URL", app.db.url.as_str())]);
    let db = ibex_api::db::Database::connect_lazy(&config.database).unwrap();
    let stand_in =
        ibex_api::domains::memories::dev_service::spawn("127.0.0.1:0".parse().unwrap(), db)
            .await
            .unwrap();
    let url = format!("http://{stand_in}");
    let app2 = TestApp::start_with(crate::common::config(
        auth.addr,
        &[
            ("IBEX_API_DATABASE_URL", app.db.url.as_str()),
            ("IBEX_API_MEMORY_SERVICE_URL", url.as_str()),
        ],
    ))
    .await;
    let reply = app2.post(&path, &token, json!({"query": "refund"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ids: BTreeSet<String> = reply.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["memory"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, active_ids(&memories[1..3]));
}
