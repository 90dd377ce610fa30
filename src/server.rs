//! The accept loop: HTTP/1.1 with a header-read timeout, a connection cap, and a graceful
//! shutdown that first flips readiness, keeps accepting for the grace period (so load balancers
//! notice), then stops accepting and gives in-flight requests a bounded time to finish.
//!
//! `axum::serve` has none of these bounds (a half-sent request would hold its connection and block
//! shutdown forever), hence hyper-util directly. Only HTTP/1.1 is served: probes, browsers behind
//! the ingress and SDKs all speak it, and one protocol means one set of header limits to test.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::HttpService;
use crate::config::ServerConfig;
use crate::middleware::request_limits;
use crate::readiness::Readiness;

#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    pub shutdown_drain: Duration,
}

impl From<&ServerConfig> for ServeOptions {
    fn from(config: &ServerConfig) -> Self {
        Self {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
            shutdown_grace: config.shutdown_grace,
            shutdown_drain: config.shutdown_drain,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves and the drain is over.
pub async fn serve(
    listener: TcpListener,
    app: impl HttpService,
    readiness: Arc<Readiness>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let mut builder = http1::Builder::new();
    // The server reads far more than a request may carry, so that the request-limits layer
    // answers the real limits with the envelope and a request id (hyper's own answer is bare).
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_headers(request_limits::SERVER_MAX_HEADERS)
        .max_header_size(request_limits::SERVER_MAX_HEADER_BYTES);

    let stop_accepting = async {
        shutdown.await;
        readiness.start_draining();
        tracing::info!(
            grace_ms = options.shutdown_grace.as_millis() as u64,
            "shutdown requested: /ready now answers 503"
        );
        tokio::time::sleep(options.shutdown_grace).await;
    };
    tokio::pin!(stop_accepting);

    loop {
        let permit = tokio::select! {
            () = &mut stop_accepting => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut stop_accepting => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        // The peer's address, for the audit trail (`ConnectInfo`, as axum's own server sets it).
        let service = tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        );
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Client resets and header-read timeouts end up here; they are not server faults.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("stopped accepting connections; draining in-flight requests");
    match tokio::time::timeout(options.shutdown_drain, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!("drain deadline passed with requests still in flight; exiting"),
    }
}

/// Resolves on SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("install SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
