//! A collector that is not there costs dropped spans, counted, never latency. One test per
//! binary: the exporter is the process's.

#[path = "it/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use ibex_api::config::LogFormat;
use ibex_api::observability::{metrics, traces};

async fn median_latency(app: &TestApp, requests: usize) -> Duration {
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let reply = app.get_authed("/v1/agents").await;
        assert_eq!(reply.status, 200);
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies[requests / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_no_latency_and_counts_dropped_spans() {
    let dead = dead_addr().await;
    // SAFETY: set before any other thread reads the environment.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{dead}"));
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "50");
        std::env::set_var("OTEL_EXPORTER_OTLP_TIMEOUT", "500");
    }
    let handle = metrics::handle();
    ibex_api::telemetry::init(LogFormat::Json, "warn");
    drop(std::panic::take_hook());
    assert!(traces::enabled());

    let (_auth, app) = TestApp::with_auth(&[]).await;
    median_latency(&app, 20).await; // warm-up: connections, pool
    // Interleaved halves, so drift on a noisy machine hits both alike.
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        traces::set_enabled(true);
        on.push(median_latency(&app, 30).await);
        traces::set_enabled(false);
        off.push(median_latency(&app, 30).await);
    }
    traces::set_enabled(true);
    on.sort();
    off.sort();
    let (on, off) = (on[2], off[2]);
    eprintln!("median latency with a dead collector {on:?}, tracing off {off:?}");
    assert!(
        on <= off * 2 + Duration::from_millis(2),
        "tracing to a dead collector slowed requests: {on:?} against {off:?}"
    );

    let deadline = Deadline::after(Duration::from_secs(30));
    loop {
        let text = handle.render();
        let dropped = text
            .lines()
            .find(|l| l.starts_with("ibex_trace_spans_dropped_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0);
        if dropped > 0.0 {
            break;
        }
        deadline
            .tick(format!("no dropped spans counted:\n{text}"))
            .await;
    }
}
