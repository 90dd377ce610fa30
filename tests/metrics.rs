//! Prometheus metrics: on their own listener only, bounded labels, the documented series.

#[path = "it/common/mod.rs"]
mod common;

use common::*;

async fn scrape(app: &TestApp) -> String {
    let addr = app.metrics_addr.expect("metrics are on");
    let reply = request(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(reply.status, 200);
    let content_type = reply.header("content-type").unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    reply.text()
}

fn series(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(name, _)| name.to_owned()))
        .collect()
}

#[tokio::test]
async fn metrics_are_served_apart_with_bounded_labels() {
    let (auth, app) = TestApp::with_auth(&[
        ("IBEX_API_METRICS_ADDR", "127.0.0.1:0"),
        ("IBEX_API_AUTH_CACHE_TTL_MS", "60000"),
    ])
    .await;
    let writer = auth.token_for(ORG_ID.parse().unwrap(), 1 << 35);
    let created = app.post_agent(&writer, "m").await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    app.read(&format!("/v1/agents/{id}"), &writer).await;
    app.get("/health", &[]).await;
    app.get("/ready", &[]).await;

    let text = scrape(&app).await;
    for expected in [
        // Counters with fixed labels exist from the start, at zero, so rules find them.
        "ibex_db_pool_acquire_timeouts_total 0",
        "ibex_trace_spans_dropped_total 0",
        "ibex_retention_rows_removed_total 0",
        "ibex_analytics_cache_lookups_total{result=\"hit\"} 0",
        "ibex_analytics_cache_lookups_total{result=\"miss\"} 0",
        "ibex_auth_calls_total{outcome=\"unavailable\"} 0",
        "ibex_db_transaction_duration_seconds_count{outcome=\"commit\"}",
        "ibex_export_jobs_queued{status=\"pending\"} 0",
        "ibex_export_jobs_queued{status=\"running\"} 0",
        "ibex_export_oldest_queued_age_seconds 0",
        "ibex_ready 1",
        "ibex_dependency_up{dependency=\"database\"} 1",
        "ibex_http_requests_total{method=\"POST\",route=\"/v1/agents\",status=\"201\"}",
        "ibex_http_requests_total{method=\"GET\",route=\"/v1/agents/{agent_id}\",status=\"200\"}",
        "ibex_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",status=\"200\",le=\"0.0001\"}",
        "ibex_http_requests_in_flight",
        "ibex_auth_calls_total{outcome=\"ok\"}",
        "ibex_auth_call_duration_seconds_count{outcome=\"ok\"}",
        "ibex_auth_cache_lookups_total{result=\"hit\"}",
        "ibex_auth_cache_lookups_total{result=\"miss\"}",
        "ibex_db_pool_connections{state=\"idle\"}",
        "ibex_db_pool_connections{state=\"in_use\"}",
        "ibex_outbox_undelivered_events",
        "ibex_outbox_oldest_undelivered_age_seconds",
        "ibex_build_info{version=\"",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    // Raw paths never become labels.
    assert!(!text.contains(&id), "an id leaked into a label");

    // 1 000 requests to random unknown paths add no series: they share route="-".
    let before = series(&scrape(&app).await);
    let (name, value) = bearer();
    for i in 0..1000 {
        let path = format!("/v1/nothing/{i}/{}", uuid::Uuid::new_v4());
        let reply = request(app.addr, "GET", &path, &[(name, &value)], b"").await;
        assert_eq!(reply.status, 404);
    }
    let after = series(&scrape(&app).await);
    let new: Vec<_> = after.difference(&before).collect();
    assert!(
        new.iter()
            .all(|s| s.contains("route=\"-\"") && s.contains("status=\"404\"")),
        "{new:?}"
    );
    assert!(
        new.len() <= 20,
        "one labelled series (and its buckets) at most: {new:?}"
    );

    // /metrics is not on the API port.
    app.get("/metrics", &[])
        .await
        .assert_error(401, "MISSING_TOKEN");
    app.get_authed("/metrics")
        .await
        .assert_error(404, "NOT_FOUND");

    // Outages are counted (one test: the recorder is the process's, shared by every app).
    let dead = dead_addr().await;
    let app = TestApp::start(
        auth.addr,
        &[
            ("IBEX_API_METRICS_ADDR", "127.0.0.1:0"),
            (
                "IBEX_API_DATABASE_URL",
                &format!("postgres://ibex@{dead}/ibex"),
            ),
        ],
    )
    .await;
    app.get_authed("/v1/agents")
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    auth.set(Behavior::fail(tonic::Code::Unavailable));
    app.get_authed("/v1/agents")
        .await
        .assert_error(503, "AUTH_UNAVAILABLE");
    let text = scrape(&app).await;
    assert!(
        text.contains("ibex_auth_calls_total{outcome=\"unavailable\"}"),
        "{text}"
    );
    assert!(
        text.contains("ibex_db_pool_acquire_timeouts_total"),
        "{text}"
    );
    // Refused by auth before routing, yet named by its route template.
    assert!(
        text.contains(
            "ibex_http_requests_total{method=\"GET\",route=\"/v1/agents\",status=\"503\"}"
        ),
        "{text}"
    );
}
