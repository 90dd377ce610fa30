//! Start-up, drain on shutdown, slow clients, and the binary's command line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A connection to the app that has sent `bytes` and waits.
async fn connect_and_send(app: &TestApp, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

#[tokio::test]
async fn shutdown_flips_readiness_then_drains_in_flight_requests() {
    let (_auth, mut app) = TestApp::with_auth(&[
        ("IBEX_API_SHUTDOWN_GRACE_MS", "400"),
        ("IBEX_API_SHUTDOWN_DRAIN_MS", "3000"),
        // A reused readiness report must not hide the shutdown.
        ("IBEX_API_READY_CACHE_MS", "60000"),
    ])
    .await;
    assert_eq!(app.get("/ready", &[]).await.status, 200);

    let addr = app.addr;
    let in_flight = tokio::spawn(async move {
        let (name, value) = bearer();
        request(addr, "GET", "/test/sleep/900", &[(name, &value)], b"").await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let server = app.begin_shutdown();

    // During the grace period: still accepting, but not ready.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ready = app.get("/ready", &[]).await;
    assert_eq!(ready.status, 503);
    let report = ready.json();
    assert_eq!(report["status"], "unhealthy");
    assert_eq!(report["checks"]["shutdown"]["status"], "failed");
    assert_eq!(app.get("/health", &[]).await.status, 200);

    // After it: new connections are refused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener closed after the grace period"
    );

    // The in-flight request finished normally, and then the server stopped.
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "done");
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("server exits after the drain")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn the_drain_is_bounded_and_half_sent_requests_do_not_block_it() {
    let (_auth, mut app) = TestApp::with_auth(&[
        ("IBEX_API_SHUTDOWN_DRAIN_MS", "300"),
        ("IBEX_API_HEADER_READ_TIMEOUT_MS", "300"),
    ])
    .await;
    // A client that sends half a request head and then nothing.
    let _slow = connect_and_send(&app, b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
    // A request that would run for 10 s.
    let addr = app.addr;
    let long = tokio::spawn(async move {
        let (name, value) = bearer();
        let raw = format!("GET /test/sleep/10000 HTTP/1.1\r\nHost: x\r\n{name}: {value}\r\n\r\n");
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut buf).await;
        buf
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let server = app.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("the drain is bounded")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    drop(long);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (_auth, app) = TestApp::with_auth(&[("IBEX_API_HEADER_READ_TIMEOUT_MS", "300")]).await;
    let mut stream = connect_and_send(&app, b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut buf),
    )
    .await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(started.elapsed() < Duration::from_secs(2));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bad_configuration_refuses_to_start_naming_the_variable() {
    for (var, value) in [
        ("IBEX_API_PORT", "eighty"),
        ("IBEX_API_CORS_ALLOWED_ORIGINS", "*"),
        ("IBEX_API_LOG_FORMAT", "xml"),
        ("IBEX_API_PROT", "1"),
    ] {
        let output = binary().env(var, value).output().unwrap();
        assert!(!output.status.success(), "{var}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(var), "{var}: {stderr}");
    }
    let output = binary().arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn dev_mode_serves_end_to_end_and_the_healthcheck_command_works() {
    let port = free_port().to_string();
    let health = binary()
        .arg("healthcheck")
        .env("IBEX_API_PORT", &port)
        .output()
        .unwrap();
    assert!(!health.status.success(), "nothing listens yet");

    let mut child = binary()
        .arg("--dev")
        .env("IBEX_API_PORT", &port)
        .env("IBEX_API_SHUTDOWN_GRACE_MS", "200")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let token = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.trim()
                .strip_prefix("IBEX_DEV_TOKEN=")
                .map(str::to_owned)
        })
        .expect("the dev token is printed");
    assert!(ibex_api::auth::token::is_well_formed_pat(&token));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    runtime.block_on(async {
        let deadline = Deadline::after(Duration::from_secs(5)).every(Duration::from_millis(50));
        while TcpStream::connect(addr).await.is_err() {
            deadline.tick("server did not start").await;
        }
        let value = format!("Bearer {token}");
        let agents = request(addr, "GET", "/v1/agents", &[("Authorization", &value)], b"").await;
        assert_eq!(agents.status, 200, "{}", agents.text());
        let seeded = agents.json();
        assert!(seeded["items"].as_array().unwrap().len() >= 3, "{seeded}");
        let wrong = format!("Bearer {}", ibex_api::auth::dev::generate_token());
        request(addr, "GET", "/v1/agents", &[("Authorization", &wrong)], b"")
            .await
            .assert_error(401, "INVALID_TOKEN");
        let ready = request(addr, "GET", "/ready", &[], b"").await;
        assert_eq!(ready.status, 200, "{}", ready.text());
    });

    let health = binary()
        .arg("healthcheck")
        .env("IBEX_API_PORT", &port)
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    // The throwaway PostgreSQL cluster went with it.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("ibex-pg-{}-", child.id()))
        })
        .collect();
    assert!(leftovers.is_empty(), "cluster directory left behind");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (_auth, app) = TestApp::with_auth(&[("IBEX_API_HEADER_READ_TIMEOUT_MS", "300")]).await;
    let mut stream = connect_and_send(&app, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
        .await
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    let rest = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
    )
    .await;
    assert_eq!(
        rest.expect("closed within 3 s").unwrap(),
        0,
        "closed, nothing more sent"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}
