//! No token, Authorization header, body or query value ever reaches a log line, at any level,
//! from this crate or from the HTTP and gRPC libraries under it.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .init();

    let auth = FakeAuth::start().await;
    let app = TestApp::start(auth.addr, &[]).await;
    let (name, value) = bearer();
    let headers = [(name, value.as_str()), ("Content-Type", "application/json")];

    let reply = app
        .get_authed("/v1/agents?cursor=SECRET-QUERY&limit=5")
        .await;
    assert_eq!(reply.status, 501);
    let ok_id = reply.request_id().to_owned();
    request(
        app.addr,
        "POST",
        "/test/json",
        &headers,
        br#"{"name": "SECRET-BODY"}"#,
    )
    .await;
    request(
        app.addr,
        "POST",
        "/test/json",
        &headers,
        br#"{"name": SECRET-BODY"#,
    )
    .await;
    auth.set(Behavior::fail(tonic::Code::Unauthenticated));
    app.get_authed("/v1/agents")
        .await
        .assert_error(401, "INVALID_TOKEN");
    auth.set(Behavior::fail(tonic::Code::Internal));
    app.get_authed("/v1/agents")
        .await
        .assert_error(503, "AUTH_UNAVAILABLE");
    auth.set(Behavior::accept());
    app.get_authed("/test/panic")
        .await
        .assert_error(500, "INTERNAL_ERROR");
    let wrong_scheme = format!("Basic {TOKEN}");
    app.get("/v1/agents", &[("Authorization", &wrong_scheme)])
        .await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let secret = TOKEN.rsplit('_').next().unwrap();
    assert!(
        logs.len() > 1000,
        "the capture saw the libraries' trace output too"
    );
    for forbidden in [TOKEN, secret, "Bearer ", "SECRET-QUERY", "SECRET-BODY"] {
        assert!(
            !logs.contains(forbidden),
            "`{forbidden}` leaked into the logs"
        );
    }
    assert!(
        !logs.to_ascii_lowercase().contains("\"authorization\""),
        "no header dump"
    );

    // The access line of the authenticated request: route template, status, ids.
    let access = logs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["target"] == "access" && l["fields"]["request_id"] == ok_id.as_str())
        .expect("an access line for the request");
    let fields = &access["fields"];
    assert_eq!(fields["route"], "/v1/agents");
    assert_eq!(fields["status"], 501);
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["org_id"], ORG_ID);
    assert_eq!(fields["user_id"], USER_ID);
    assert!(fields["latency_ms"].is_f64());
    assert_eq!(
        access["span"]["request_id"],
        ok_id.as_str(),
        "lines carry the request's span"
    );
}
