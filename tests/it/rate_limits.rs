//! Rate limits from outside, on a real Redis: one bucket per organization and one per token,
//! shared by every replica; 429 RATE_LIMITED with Retry-After and the RateLimit headers on
//! every answer; per-organization overrides; probes and the docs never limited; and a Redis
//! that is down or hangs lets requests through (fail open) and counts it.

use crate::common::*;
use tokio::net::TcpListener;
use uuid::Uuid;

fn limits<'a>(redis: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("IBEX_API_REDIS_URL", redis),
        ("IBEX_API_RATE_LIMIT_ORG_PER_SECOND", "1"),
        ("IBEX_API_RATE_LIMIT_ORG_BURST", "10"),
        ("IBEX_API_RATE_LIMIT_TOKEN_PER_SECOND", "1000"),
        ("IBEX_API_RATE_LIMIT_TOKEN_BURST", "1000"),
    ];
    vars.extend_from_slice(extra);
    vars
}

fn number(reply: &Reply, header: &str) -> u64 {
    reply
        .header(header)
        .unwrap_or_else(|| panic!("{header} on {}", reply.status))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn two_replicas_share_one_organization_limit() {
    let auth = FakeAuth::start().await;
    let redis = redis_url();
    let vars = limits(&redis, &[]);
    let one = TestApp::start(auth.addr, &vars).await;
    let two = TestApp::start(auth.addr, &vars).await;
    // A fresh organization: its bucket is full (10), and refills at 1 a second.
    let org = Uuid::now_v7();
    let token = auth.token_for(org, MEMORY_READ);

    let mut remaining = Vec::new();
    for i in 0..10 {
        let replica = if i % 2 == 0 { &one } else { &two };
        let reply = replica.read("/v1/agents", &token).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert_eq!(number(&reply, "ratelimit-limit"), 10);
        remaining.push(number(&reply, "ratelimit-remaining"));
        assert!(number(&reply, "ratelimit-reset") >= 1);
    }
    // Counting down across both replicas (a second may refill one).
    assert!(remaining.windows(2).all(|w| w[1] <= w[0]), "{remaining:?}");
    assert!(remaining[9] <= 1, "{remaining:?}");

    let mut refused = None;
    for replica in [&one, &two, &one, &two] {
        let reply = replica.read("/v1/agents", &token).await;
        if reply.status == 429 {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("the shared bucket ran dry");
    refused.assert_error(429, "RATE_LIMITED");
    assert!(number(&refused, "retry-after") >= 1);
    assert_eq!(number(&refused, "ratelimit-remaining"), 0);
    assert_eq!(number(&refused, "ratelimit-limit"), 10);
    // Writes are refused before they run.
    let write_token = auth.token_for(org, ORG_SETTINGS_WRITE);
    let write = one.post_agent(&write_token, "n").await;
    write.assert_error(429, "RATE_LIMITED");
    assert_eq!(
        one.read("/v1/agents", &auth.token_for(Uuid::now_v7(), MEMORY_READ))
            .await
            .status,
        200,
        "another organization has its own bucket"
    );

    // Probes and the docs carry no token and are never limited.
    for path in ["/health", "/ready", "/openapi.json"] {
        let reply = one.get(path, &[]).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(reply.header("ratelimit-limit").is_none(), "{path}");
    }
}

#[tokio::test]
async fn a_token_has_a_limit_of_its_own_and_an_organization_may_have_more() {
    let auth = FakeAuth::start().await;
    let redis = redis_url();
    let generous = Uuid::now_v7();
    let overrides = format!("{generous}=1/30");
    let vars = limits(
        &redis,
        &[
            ("IBEX_API_RATE_LIMIT_ORG_PER_SECOND", "1000"),
            ("IBEX_API_RATE_LIMIT_ORG_BURST", "1000"),
            ("IBEX_API_RATE_LIMIT_TOKEN_PER_SECOND", "1"),
            ("IBEX_API_RATE_LIMIT_TOKEN_BURST", "3"),
        ],
    );
    let app = TestApp::start(auth.addr, &vars).await;
    let org = Uuid::now_v7();
    let busy = auth.token_for(org, MEMORY_READ);
    for _ in 0..3 {
        let reply = app.read("/v1/agents", &busy).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            number(&reply, "ratelimit-limit"),
            3,
            "the token's is tighter"
        );
    }
    app.read("/v1/agents", &busy)
        .await
        .assert_error(429, "RATE_LIMITED");
    let colleague = auth.token_for(org, MEMORY_READ);
    assert_eq!(
        app.read("/v1/agents", &colleague).await.status,
        200,
        "another token of the organization is not held back"
    );

    // An override replaces the organization's default.
    let mut vars = limits(
        &redis,
        &[("IBEX_API_RATE_LIMIT_ORG_OVERRIDES", overrides.as_str())],
    );
    vars.push(("IBEX_API_RATE_LIMIT_ORG_BURST", "2"));
    let app = TestApp::start(auth.addr, &vars).await;
    let big = auth.token_for(generous, MEMORY_READ);
    let reply = app.read("/v1/agents", &big).await;
    assert_eq!(number(&reply, "ratelimit-limit"), 30);
    let small = auth.token_for(Uuid::now_v7(), MEMORY_READ);
    let reply = app.read("/v1/agents", &small).await;
    assert_eq!(number(&reply, "ratelimit-limit"), 2);
}

#[tokio::test]
async fn a_redis_that_is_down_or_hangs_lets_requests_through_and_is_counted() {
    let auth = FakeAuth::start().await;
    // A port nothing listens on, and one that accepts and never answers.
    let down = format!("redis://{}", dead_addr().await);
    let hanging = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_url = format!("redis://{}", hanging.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            open.push(socket);
        }
    });
    for url in [down, hang_url] {
        let vars = limits(
            &url,
            &[
                ("IBEX_API_METRICS_ADDR", "127.0.0.1:0"),
                ("IBEX_API_RATE_LIMIT_ORG_BURST", "1"),
                ("IBEX_API_RATE_LIMIT_TIMEOUT_MS", "100"),
            ],
        );
        let app = TestApp::start(auth.addr, &vars).await;
        let token = auth.token_for(Uuid::now_v7(), MEMORY_READ);
        let before = fail_open_count(&app).await;
        for _ in 0..5 {
            let reply = app.read("/v1/agents", &token).await;
            assert_eq!(reply.status, 200, "{url}: {}", reply.text());
            assert!(reply.header("ratelimit-limit").is_none());
        }
        assert!(
            fail_open_count(&app).await > before,
            "{url}: fail-open is counted"
        );
    }
}

async fn fail_open_count(app: &TestApp) -> f64 {
    let reply = request(app.metrics_addr.unwrap(), "GET", "/metrics", &[], b"").await;
    reply
        .text()
        .lines()
        .find(|l| l.starts_with("ibex_rate_limit_decisions_total{outcome=\"fail_open\"}"))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
        .expect("the fail-open series is exported")
}
