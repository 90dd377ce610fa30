//! Every error path of the skeleton answers the envelope, over real HTTP against the real stack.

use crate::common::*;

/// A raw `POST` to the app.
async fn post(app: &TestApp, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    request(app.addr, "POST", path, headers, body).await
}

#[tokio::test]
async fn unknown_route_and_wrong_method() {
    let (_auth, app) = TestApp::with_auth(&[]).await;

    app.get_authed("/v1/nothing-here")
        .await
        .assert_error(404, "NOT_FOUND");
    app.get_authed("/health/")
        .await
        .assert_error(404, "NOT_FOUND");

    let (name, value) = bearer();
    let reply = request(app.addr, "PUT", "/v1/agents", &[(name, &value)], b"").await;
    reply.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.header("allow"), Some("GET,HEAD,POST"));
}

#[tokio::test]
async fn body_errors() {
    let (_auth, app) = TestApp::with_auth(&[]).await;
    let (name, value) = bearer();
    let auth_header = (name, value.as_str());
    let json = ("Content-Type", "application/json");

    let marker = b"{\"name\": \"SECRET-MARKER\"";
    let reply = post(&app, "/test/json", &[auth_header, json], marker).await;
    reply.assert_error(400, "VALIDATION_ERROR");
    assert!(
        !reply.text().contains("SECRET-MARKER"),
        "the body is never echoed"
    );

    let wrong_shape = br#"{"name": 42, "note": "SECRET-MARKER"}"#;
    let reply = post(&app, "/test/json", &[auth_header, json], wrong_shape).await;
    reply.assert_error(400, "VALIDATION_ERROR");
    assert!(!reply.text().contains("SECRET-MARKER"));

    let text = ("Content-Type", "text/plain");
    post(&app, "/test/json", &[auth_header, text], br#"{"name":"a"}"#)
        .await
        .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    post(&app, "/test/json", &[auth_header], br#"{"name":"a"}"#)
        .await
        .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");

    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(2000));
    post(&app, "/test/json", &[auth_header, json], big.as_bytes())
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    // Also to a stub that never reads its body: the declared length alone is refused.
    post(&app, "/v1/agents", &[auth_header, json], big.as_bytes())
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");

    // Chunked, no Content-Length: the limit bites while the extractor reads.
    let chunk = "y".repeat(900);
    let raw = format!(
        "POST /test/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        value.trim_start_matches("Authorization: "),
        chunk.len(),
        chunk.len()
    );
    send_raw(app.addr, raw.as_bytes())
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");

    post(
        &app,
        "/test/json",
        &[auth_header, json],
        br#"{"name":"ok"}"#,
    )
    .await
    .status
    .eq(&200)
    .then_some(())
    .expect("a good body passes");
}

#[tokio::test]
async fn parameter_errors_name_the_field_without_echoing_it() {
    let (_auth, app) = TestApp::with_auth(&[]).await;

    let reply = app.get_authed("/v1/agents/SECRET-MARKER").await;
    let body = reply.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["field_errors"][0]["field"], "agent_id");
    assert_eq!(body["error"]["field_errors"][0]["code"], "INVALID_UUID");
    assert!(!reply.text().contains("SECRET-MARKER"));

    let reply = app
        .get_authed(&format!("/v1/agents/{ORG_ID}/memories/not-a-uuid"))
        .await;
    let body = reply.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["field_errors"][0]["field"], "memory_id");

    let reply = app
        .get_authed(&format!("/v1/agents/{ORG_ID}/directive/versions/-1"))
        .await;
    let body = reply.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["field_errors"][0]["field"], "version_num");

    let body = app
        .get_authed("/v1/agents?limit=0")
        .await
        .assert_error(400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["field_errors"][0]["field"], "limit");
    app.get_authed("/v1/agents?limit=abc")
        .await
        .assert_error(400, "VALIDATION_ERROR");
    let body = app
        .get_authed("/v1/agents?limit=100&cursor=SECRET-MARKER")
        .await
        .assert_error(400, "INVALID_CURSOR");
    assert_eq!(body["error"]["field_errors"][0]["field"], "cursor");
    assert!(!body.to_string().contains("SECRET-MARKER"));
}

/// An app whose requests time out at 600 ms and statements at 500 ms (the test routes sleep past
/// them).
async fn with_short_deadlines(auth: &FakeAuth) -> TestApp {
    let deadlines = [
        ("IBEX_API_REQUEST_TIMEOUT_MS", "600"),
        ("IBEX_API_DATABASE_STATEMENT_TIMEOUT_MS", "500"),
    ];
    TestApp::start(auth.addr, &deadlines).await
}

#[tokio::test]
async fn handler_error_panic_and_timeout() {
    let auth = FakeAuth::start().await;
    let app = with_short_deadlines(&auth).await;

    app.get_authed("/test/admin")
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSIONS");

    let reply = app.get_authed("/test/panic").await;
    reply.assert_error(500, "INTERNAL_ERROR");
    assert!(!reply.text().contains("exploded"), "no panic message leaks");
    // The process keeps serving.
    assert_eq!(app.get_authed("/test/whoami").await.status, 200);

    let started = std::time::Instant::now();
    app.get_authed("/test/slow")
        .await
        .assert_error(504, "REQUEST_TIMEOUT");
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(550) && took < std::time::Duration::from_secs(3),
        "{took:?}"
    );
}

/// Every documented `/v1` operation is mounted and authenticates; the stubs answer 501, the
/// implemented operations anything but 401/404/405/5xx for a well-formed request on unknown ids.
#[tokio::test]
async fn every_documented_operation_is_mounted_and_stubs_answer_501() {
    let (_auth, app) = TestApp::with_auth(&[]).await;
    let (name, value) = bearer();
    let doc = serde_json::to_value(ibex_api::app::document()).unwrap();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") || ibex_api::auth::layer::is_public(path) {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|seg| match seg {
                "{version_num}" => "3",
                s if s.starts_with('{') => ORG_ID,
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            let reply = request(app.addr, &method, &concrete, &[(name, &value)], b"").await;
            if op["responses"]["501"].is_object() {
                reply.assert_error(501, "NOT_IMPLEMENTED");
            } else {
                assert!(
                    ![401, 405, 500, 501, 503].contains(&reply.status),
                    "{method} {path}: {}",
                    reply.status
                );
            }
            let anonymous = request(app.addr, &method, &concrete, &[], b"").await;
            anonymous.assert_error(401, "MISSING_TOKEN");
            seen += 1;
        }
    }
    assert_eq!(seen, 51, "every operation is documented and mounted");
}

#[tokio::test]
async fn request_ids_are_validated_and_echoed() {
    let (_auth, app) = TestApp::with_auth(&[]).await;
    let kept = "67e55044-10b1-426f-9247-bb680e5fe0c8";

    for sent in [
        kept,
        "67E55044-10B1-426F-9247-BB680E5FE0C8",
        "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
        "67e5504410b1426f9247bb680e5fe0c8",
    ] {
        let reply = app.get("/nowhere", &[("X-Request-ID", sent)]).await;
        let body = reply.assert_error(401, "MISSING_TOKEN");
        assert_eq!(reply.request_id(), kept, "{sent}");
        assert_eq!(body["error"]["request_id"], kept);
    }

    let oversized = "a".repeat(60_000);
    let replaced: Vec<String> = vec![
        "garbage".into(),
        "".into(),
        format!("{kept}\tx"),
        format!("{kept}%0d%0aX-Injected: 1"),
        oversized,
        "00000000-0000-0000-0000-000000000000".into(),
    ];
    for sent in &replaced {
        let reply = app.get("/health", &[("X-Request-ID", sent)]).await;
        assert_eq!(reply.status, 200);
        let id = uuid::Uuid::parse_str(reply.request_id()).unwrap();
        assert_eq!(id.get_version_num(), 7, "fresh v7 for {:.40}", sent);
        assert_ne!(reply.request_id(), kept);
        assert!(reply.header("x-injected").is_none());
    }

    let twice = app
        .get("/health", &[("X-Request-ID", kept), ("X-Request-ID", kept)])
        .await;
    assert_ne!(twice.request_id(), kept, "two headers: neither is trusted");

    // A CRLF in the raw request ends the header line: the rest is a separate header, the id is
    // kept as sent, and nothing injected comes back.
    let raw = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-ID: {kept}\r\nX-Injected: yes\r\n\r\n"
    );
    let reply = send_raw(app.addr, raw.as_bytes()).await;
    assert_eq!(reply.request_id(), kept);
    assert!(reply.header("x-injected").is_none());

    // Fresh ids differ per request.
    let a = app.get("/health", &[]).await;
    let b = app.get("/health", &[]).await;
    assert_ne!(a.request_id(), b.request_id());
}

#[tokio::test]
async fn cors_for_the_dashboard_only() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let (name, value) = bearer();
    let allowed = ("Origin", ALLOWED_ORIGIN);
    let other = ("Origin", "https://evil.example.com");

    // Preflight: no token needed, answered with the allow-lists and a request id.
    let preflight = [
        allowed,
        ("Access-Control-Request-Method", "PATCH"),
        (
            "Access-Control-Request-Headers",
            "authorization, content-type, x-request-id",
        ),
    ];
    let reply = request(app.addr, "OPTIONS", "/v1/agents/x", &preflight, b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert!(
        reply
            .header("access-control-allow-methods")
            .unwrap()
            .contains("PATCH")
    );
    let allowed_headers = reply
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in ["authorization", "content-type", "x-request-id"] {
        assert!(allowed_headers.contains(h), "{allowed_headers}");
    }
    reply.request_id();
    assert_eq!(auth.calls(), 0, "a preflight never reaches auth");

    let evil_preflight = [other, ("Access-Control-Request-Method", "GET")];
    let reply = request(app.addr, "OPTIONS", "/v1/agents", &evil_preflight, b"").await;
    assert!(reply.header("access-control-allow-origin").is_none());

    // Error responses carry CORS headers for the dashboard, and none for anyone else.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        ("/v1/agents", vec![], 401),
        ("/v1/nope", vec![(name, value.as_str())], 404),
        ("/test/panic", vec![(name, value.as_str())], 500),
        ("/test/unimplemented", vec![(name, value.as_str())], 501),
        ("/health", vec![], 200),
    ];
    for (path, headers, status) in cases {
        let mut with_origin = headers.clone();
        with_origin.push(allowed);
        let reply = app.get(path, &with_origin).await;
        assert_eq!(reply.status, status, "{path}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(ALLOWED_ORIGIN),
            "{path}"
        );
        let vary = reply.headers_named("vary").join(",");
        assert!(
            vary.contains("origin"),
            "{path}: caches must key on Origin ({vary})"
        );
        let exposed = reply
            .header("access-control-expose-headers")
            .unwrap_or_default();
        assert!(exposed.contains("x-request-id"), "{path}: {exposed}");

        let mut with_other = headers.clone();
        with_other.push(other);
        let reply = app.get(path, &with_other).await;
        assert_eq!(reply.status, status, "{path}");
        assert!(
            reply.header("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
}

/// Every error path of the issue, with the dashboard's origin and with another one.
#[tokio::test]
async fn every_error_path_has_cors_for_the_dashboard_only() {
    let auth = FakeAuth::start().await;
    let app = with_short_deadlines(&auth).await;
    let (name, value) = bearer();
    let token = (name, value.as_str());
    let json = ("Content-Type", "application/json");
    let big = "x".repeat(2000);
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a [u8],
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("GET", "/v1/agents", vec![], b"", 401, "MISSING_TOKEN"),
        ("GET", "/v1/unknown", vec![token], b"", 404, "NOT_FOUND"),
        (
            "PUT",
            "/v1/agents",
            vec![token],
            b"",
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "POST",
            "/test/json",
            vec![token, json],
            b"{not json",
            400,
            "VALIDATION_ERROR",
        ),
        (
            "POST",
            "/test/json",
            vec![token],
            b"{}",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "POST",
            "/test/json",
            vec![token, json],
            big.as_bytes(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "GET",
            "/v1/agents/not-a-uuid",
            vec![token],
            b"",
            400,
            "VALIDATION_ERROR",
        ),
        (
            "GET",
            "/test/admin",
            vec![token],
            b"",
            403,
            "INSUFFICIENT_PERMISSIONS",
        ),
        (
            "GET",
            "/test/panic",
            vec![token],
            b"",
            500,
            "INTERNAL_ERROR",
        ),
        (
            "GET",
            "/test/slow",
            vec![token],
            b"",
            504,
            "REQUEST_TIMEOUT",
        ),
        (
            "GET",
            "/test/unimplemented",
            vec![token],
            b"",
            501,
            "NOT_IMPLEMENTED",
        ),
    ];
    for (method, path, headers, body, status, code) in cases {
        for (origin, allowed) in [(ALLOWED_ORIGIN, true), ("https://evil.example.com", false)] {
            let mut with_origin = headers.clone();
            with_origin.push(("Origin", origin));
            let reply = request(app.addr, method, path, &with_origin, body).await;
            reply.assert_error(status, code);
            let allow = reply.header("access-control-allow-origin");
            if allowed {
                assert_eq!(allow, Some(ALLOWED_ORIGIN), "{method} {path}");
                let exposed = reply
                    .header("access-control-expose-headers")
                    .unwrap_or_default();
                assert!(exposed.contains("x-request-id"), "{method} {path}");
            } else {
                assert_eq!(allow, None, "{method} {path}");
                assert!(
                    reply.header("access-control-expose-headers").is_none(),
                    "{method} {path}"
                );
            }
        }
    }
    // Auth-service failures: 401 from the service, 503 when it fails.
    auth.set(Behavior::fail(tonic::Code::Unauthenticated));
    let with_origin = [token, ("Origin", ALLOWED_ORIGIN)];
    let reply = request(app.addr, "GET", "/v1/agents", &with_origin, b"").await;
    reply.assert_error(401, "INVALID_TOKEN");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    auth.set(Behavior::fail(tonic::Code::Internal));
    let reply = request(app.addr, "GET", "/v1/agents", &with_origin, b"").await;
    reply.assert_error(503, "AUTH_UNAVAILABLE");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
}
