//! The auth layer against a real tonic auth server: strict as the platform, fail closed.

use std::time::{Duration, Instant, SystemTime};

use crate::common::*;
use ibex_api::auth::proto::ValidateTokenResponse;
use tonic::Code;

#[tokio::test]
async fn garbage_is_refused_without_calling_the_auth_service() {
    let (auth, app) = TestApp::with_auth(&[]).await;

    app.get("/v1/agents", &[])
        .await
        .assert_error(401, "MISSING_TOKEN");
    let long = format!("Bearer {TOKEN}{}", "a".repeat(300));
    let cases = [
        format!("Basic {TOKEN}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer not-a-pat".to_owned(),
        "Bearer ibex_health_probe_invalid".to_owned(),
        long,
    ];
    for value in &cases {
        let reply = app.get("/v1/agents", &[("Authorization", value)]).await;
        reply.assert_error(401, "INVALID_TOKEN");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }
    let good = format!("Bearer {TOKEN}");
    let twice = app
        .get(
            "/v1/agents",
            &[("Authorization", &good), ("Authorization", &good)],
        )
        .await;
    twice.assert_error(401, "INVALID_TOKEN");
    assert_eq!(auth.calls(), 0, "no garbage reached the auth service");

    // The scheme is case-insensitive, and then the auth service is asked.
    let lower = format!("bearer {TOKEN}");
    assert_eq!(
        app.get("/test/whoami", &[("Authorization", &lower)])
            .await
            .status,
        200
    );
    assert_eq!(auth.calls(), 1);
}

#[tokio::test]
async fn a_valid_token_reaches_the_handler_as_the_caller() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let agent = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f79";
    auth.set(Behavior::answer(ValidateTokenResponse {
        org_id: ORG_ID.into(),
        permissions: (PERMISSION_READ | 1 << 63) as i64,
        agent_id: Some(agent.into()),
        user_id: Some(USER_ID.into()),
        token_id: None,
        expires_at: None,
    }));

    let reply = app.get_authed("/test/whoami").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let me = reply.json();
    assert_eq!(me["org_id"], ORG_ID);
    assert_eq!(me["user_id"], USER_ID);
    assert_eq!(me["agent_id"], agent);
    assert_eq!(me["permissions"], PERMISSION_READ | 1 << 63);
    assert_eq!(
        me["request_id"],
        reply.request_id(),
        "handlers see the request id"
    );

    // The request id travels to the auth service as gRPC metadata.
    assert_eq!(auth.request_ids(), [reply.request_id()]);
    let sent = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let (name, value) = bearer();
    app.get("/test/whoami", &[(name, &value), ("X-Request-ID", sent)])
        .await;
    assert_eq!(auth.request_ids().last().unwrap(), sent);
}

#[tokio::test]
async fn refusals_and_expiry_are_401() {
    let (auth, app) = TestApp::with_auth(&[]).await;

    auth.set(Behavior::fail(Code::Unauthenticated));
    let reply = app.get_authed("/v1/agents").await;
    reply.assert_error(401, "INVALID_TOKEN");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));

    let mut expired = Behavior::accept();
    if let Ok(answer) = &mut expired.outcome {
        answer.expires_at = Some((SystemTime::now() - Duration::from_secs(1)).into());
    }
    auth.set(expired);
    app.get_authed("/v1/agents")
        .await
        .assert_error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn every_other_failure_is_503_never_401_never_a_pass() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let unusable = |org_id: &str, user_id: Option<&str>| {
        Behavior::answer(ValidateTokenResponse {
            org_id: org_id.into(),
            user_id: user_id.map(Into::into),
            ..Default::default()
        })
    };
    let cases = [
        Behavior::fail(Code::Internal),
        Behavior::fail(Code::Unavailable),
        Behavior::fail(Code::ResourceExhausted),
        Behavior::fail(Code::PermissionDenied),
        Behavior::fail(Code::Unknown),
        unusable("", None),
        unusable("not-a-uuid", None),
        unusable(ORG_ID, Some("not-a-uuid")),
    ];
    for behavior in cases {
        let label = format!("{:?}", behavior.outcome);
        auth.set(behavior);
        let reply = app.get_authed("/test/whoami").await;
        reply.assert_error(503, "AUTH_UNAVAILABLE");
        assert!(reply.header("retry-after").is_some(), "{label}");
        assert!(reply.header("www-authenticate").is_none(), "{label}");
    }
}

#[tokio::test]
async fn a_slow_auth_service_is_cut_off_at_the_deadline() {
    let (auth, app) = TestApp::with_auth(&[("IBEX_API_AUTH_TIMEOUT_MS", "300")]).await;
    auth.set(Behavior::accept().delayed(Duration::from_secs(5)));

    let started = Instant::now();
    app.get_authed("/v1/agents")
        .await
        .assert_error(503, "AUTH_UNAVAILABLE");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[tokio::test]
async fn auth_down_is_503_and_recovers_when_it_returns() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    assert_eq!(app.get_authed("/test/whoami").await.status, 200);

    let addr = auth.stop().await;
    for _ in 0..3 {
        app.get_authed("/test/whoami")
            .await
            .assert_error(503, "AUTH_UNAVAILABLE");
    }
    let ready = app.get("/ready", &[]).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["checks"]["auth"]["status"], "failed");
    assert_eq!(app.get("/health", &[]).await.status, 200);

    let auth = FakeAuth::start_on(addr, Behavior::accept()).await;
    let deadline = Deadline::after(Duration::from_secs(5)).every(Duration::from_millis(50));
    loop {
        let reply = app.get_authed("/test/whoami").await;
        if reply.status == 200 {
            break;
        }
        reply.assert_error(503, "AUTH_UNAVAILABLE");
        deadline.tick("no recovery within 5 s").await;
    }
    assert!(auth.calls() >= 1);
    assert_eq!(app.get("/ready", &[]).await.status, 200);
}

#[tokio::test]
async fn an_auth_service_that_never_existed_fails_closed_and_ready_says_so() {
    let addr = dead_addr().await;
    let app = TestApp::start(addr, &[]).await;
    app.get_authed("/v1/agents")
        .await
        .assert_error(503, "AUTH_UNAVAILABLE");
    app.get("/v1/agents", &[])
        .await
        .assert_error(401, "MISSING_TOKEN");

    let started = Instant::now();
    let ready = app.get("/ready", &[]).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(ready.status, 503);
    let report = ready.json();
    assert_eq!(report["status"], "unhealthy");
    assert_eq!(report["checks"]["auth"]["status"], "failed");
    assert!(report["checks"]["auth"]["latency_ms"].is_u64());
    assert_eq!(
        app.get("/health", &[]).await.json(),
        serde_json::json!({"status": "ok", "checks": {}})
    );
}

#[tokio::test]
async fn ready_is_bounded_when_the_auth_service_hangs() {
    // Accepts connections and never answers: a black hole.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hole.accept().await {
            held.push(stream);
        }
    });
    let app = TestApp::start(addr, &[("IBEX_API_READY_CHECK_TIMEOUT_MS", "400")]).await;
    let started = Instant::now();
    let ready = app.get("/ready", &[]).await;
    let took = started.elapsed();
    assert_eq!(ready.status, 503);
    assert!(took < Duration::from_millis(900), "{took:?}");
    app.get_authed("/v1/agents")
        .await
        .assert_error(503, "AUTH_UNAVAILABLE");
}

#[tokio::test]
async fn ready_probes_with_the_platform_sentinel() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let reply = app.get("/ready", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["checks"]["auth"]["status"], "ok");
    assert_eq!(auth.probes(), 1);
    assert_eq!(auth.calls(), 0);

    auth.set(Behavior::fail(Code::Internal));
    let reply = app.get("/ready", &[]).await;
    assert_eq!(reply.status, 503);
    assert!(
        reply.json()["checks"]["auth"]["message"]
            .as_str()
            .unwrap()
            .contains("Internal")
    );
}

#[tokio::test]
async fn nobody_learns_the_routes_without_a_token() {
    let (_auth, app) = TestApp::with_auth(&[]).await;
    for (method, path) in [
        ("GET", "/v1/nothing"),
        ("PUT", "/v1/agents"),
        ("GET", "/docs/../v1/agents"),
        ("GET", "//health"),
    ] {
        let reply = request(app.addr, method, path, &[], b"").await;
        reply.assert_error(401, "MISSING_TOKEN");
        assert!(reply.header("allow").is_none(), "{method} {path}");
    }
    app.get_authed("/v1/nothing")
        .await
        .assert_error(404, "NOT_FOUND");
    let (name, value) = bearer();
    request(app.addr, "PUT", "/v1/agents", &[(name, &value)], b"")
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");

    // Public paths need no token.
    for path in ["/health", "/ready", "/openapi.json", "/docs/"] {
        assert_eq!(app.get(path, &[]).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn the_cache_coalesces_concurrent_validations_into_one_call() {
    let auth = FakeAuth::start().await;
    auth.set(Behavior::accept().delayed(Duration::from_millis(100)));
    let app = TestApp::start(auth.addr, &[("IBEX_API_AUTH_CACHE_TTL_MS", "60000")]).await;

    let requests = (0..20).map(|_| app.get_authed("/test/whoami"));
    let replies = futures_util::future::join_all(requests).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(auth.calls(), 1, "20 concurrent requests, one ValidateToken");
    assert_eq!(app.get_authed("/test/whoami").await.status, 200);
    assert_eq!(auth.calls(), 1, "then served from the cache");

    // Failures are not cached: each request during an outage asks again.
    let other = "ibex_pat_0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70_differentSecret";
    auth.set(Behavior::fail(Code::Internal));
    for _ in 0..2 {
        let value = format!("Bearer {other}");
        app.get("/test/whoami", &[("Authorization", &value)])
            .await
            .assert_error(503, "AUTH_UNAVAILABLE");
    }
    assert_eq!(auth.calls(), 3);
}

#[tokio::test]
async fn without_the_cache_every_request_is_validated() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    for _ in 0..3 {
        assert_eq!(app.get_authed("/test/whoami").await.status, 200);
    }
    assert_eq!(auth.calls(), 3);
    // Revocation bites at once.
    auth.set(Behavior::fail(Code::Unauthenticated));
    app.get_authed("/test/whoami")
        .await
        .assert_error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn ready_reuses_its_report_so_anonymous_callers_cannot_flood_the_auth_service() {
    let auth = FakeAuth::start().await;
    auth.set(Behavior::accept().delayed(Duration::from_millis(50)));
    let app = TestApp::start(auth.addr, &[("IBEX_API_READY_CACHE_MS", "60000")]).await;
    let calls = (0..10).map(|_| app.get("/ready", &[]));
    let replies = futures_util::future::join_all(calls).await;
    assert!(replies.iter().all(|r| r.status == 200));
    for _ in 0..5 {
        assert_eq!(app.get("/ready", &[]).await.status, 200);
    }
    assert_eq!(auth.probes(), 1, "15 /ready calls, one probe");
}
