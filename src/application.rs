//! The service as one value: configuration in, a bound server out, run until a shutdown signal.
//! `main` (production and `--dev`) and the tests start it the same way, so the start-up sequence
//! is written once: wire the application from the configuration, start the metrics listener,
//! take the listener, serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::app::{self, App, HttpService};
use crate::config::Config;
use crate::readiness::Readiness;
use crate::server::{self, ServeOptions};

/// A wired, bound service, not yet serving.
pub struct Application<S> {
    app: S,
    readiness: Arc<Readiness>,
    listener: TcpListener,
    options: ServeOptions,
    metrics_addr: Option<SocketAddr>,
}

/// Wires the service from `config` onto `listener`. `extra_routes` lets tests mount handlers
/// behind exactly the production stack; production passes none.
pub async fn build(
    config: &Config,
    listener: TcpListener,
    extra_routes: Router<App>,
) -> Result<Application<impl HttpService>, String> {
    let (app, readiness, db) = app::from_config(config, extra_routes)?;
    let metrics_addr =
        crate::observability::metrics::start(config, app::metric_samplers(&db)).await?;
    if let Some(addr) = metrics_addr {
        tracing::info!(%addr, "metrics listening");
    }
    Ok(Application {
        app,
        readiness,
        listener,
        options: ServeOptions::from(&config.server),
        metrics_addr,
    })
}

/// [`build`] on the address the configuration names.
pub async fn bind(config: &Config) -> Result<Application<impl HttpService>, String> {
    let addr = SocketAddr::new(config.server.host, config.server.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    build(config, listener, Router::new()).await
}

impl<S: HttpService> Application<S> {
    /// Where it listens (the port the system chose, for a listener bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `/metrics` listens, when metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The readiness `/ready` reports (draining included).
    pub fn readiness(&self) -> Arc<Readiness> {
        Arc::clone(&self.readiness)
    }

    /// Serves until `shutdown` resolves and the drain is over, then flushes the traces.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(addr = %self.local_addr(), "ibex-api listening");
        server::serve(
            self.listener,
            self.app,
            self.readiness,
            self.options,
            shutdown,
        )
        .await;
        crate::observability::traces::flush();
    }
}
