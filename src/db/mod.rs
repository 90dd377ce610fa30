//! PostgreSQL access: one lazily connecting pool, and the only way a request reaches it, a
//! transaction already confined to the caller's organization ([`OrgTx`]).
//!
//! Tenancy by construction: [`Database`] keeps its pool private. Request code gets a connection
//! only through [`Database::begin_for`], which needs the authenticated [`Caller`] and has already
//! run `SET LOCAL ROLE ibex_app` and set `app.current_org_id` before it hands anything out, so
//! row-level security applies to every statement a handler can write. Work that must cross
//! organizations goes through [`Database::platform`], named so that it stands out in review.

pub mod error;
pub mod migrate;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::auth::Caller;
use crate::config::Config;
use crate::error::ApiError;
use crate::readiness::ReadinessCheck;

/// The service's database handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: PgPool,
    /// Rung after a commit that wrote outbox events, so this replica publishes them at once.
    outbox_wake: Arc<Notify>,
}

impl Database {
    /// Builds the pool without connecting: the service starts while PostgreSQL is down and
    /// recovers by itself when it comes back.
    pub fn connect_lazy(config: &Config) -> Result<Self, String> {
        let statement_timeout = config.database_statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(config.database_url.expose())
            .map_err(|_| "IBEX_API_DATABASE_URL is not a valid PostgreSQL URL".to_owned())?
            .application_name("ibex-api")
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(config.database_max_connections)
            .acquire_timeout(config.database_acquire_timeout)
            // No ping before handing a connection out (it was a round trip per request): a
            // connection left over from before a database restart fails at its first message,
            // BEGIN, which has no effect, and `begin_tenant` then retries on another one.
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            outbox_wake: Arc::new(Notify::new()),
        })
    }

    /// Open and idle connections, for the metrics.
    pub fn pool_state(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// What the event publisher waits on besides its poll interval.
    pub fn outbox_wake(&self) -> Arc<Notify> {
        Arc::clone(&self.outbox_wake)
    }

    /// A transaction in which row-level security shows only `caller`'s organization.
    pub async fn begin_for(&self, caller: &Caller) -> Result<OrgTx, ApiError> {
        let span = crate::observability::traces::client_span("db.begin");
        tracing::Instrument::instrument(self.begin_tenant(caller.org_id), span).await
    }

    /// Like [`Database::begin_for`], for a background job acting for one organization (an
    /// export): the organization comes from the job's own row, never from a request.
    pub async fn begin_for_job(&self, org_id: Uuid) -> Result<OrgTx, ApiError> {
        self.begin_tenant(org_id).await
    }

    async fn begin_tenant(&self, org_id: Uuid) -> Result<OrgTx, ApiError> {
        let started = std::time::Instant::now();
        // BEGIN, the role and the tenant in one simple-query message: one round trip. The org
        // id is a `Uuid` (from the auth service or a job's own row), rendered as 36 hex digits
        // and dashes, never client text.
        let begin = format!(
            "BEGIN; SET LOCAL ROLE ibex_app; \
             SELECT set_config('app.current_org_id', '{}', true)",
            org_id.hyphenated()
        );
        // A connection that died idle (a database restart) fails at this first message, before
        // anything of the request was sent: it is dropped and another one drawn. Each pooled
        // connection can be dead at most once, so the pool size bounds the retries.
        let mut attempts = self.pool.options().get_max_connections() + 1;
        let tx = loop {
            match self.pool.begin_with(begin.clone()).await {
                Ok(tx) => break tx,
                Err(error) if attempts > 1 && error::is_dead_connection(&error) => {
                    attempts -= 1;
                    tracing::debug!(reason = %error::describe_unavailable(&error), "dead pooled connection replaced");
                }
                Err(error) => return Err(error.into()),
            }
        };
        Ok(OrgTx {
            tx,
            org_id,
            outbox_wake: Arc::clone(&self.outbox_wake),
            wake_on_commit: false,
            started,
        })
    }

    /// A connection outside any organization, as the login role: for migrations, readiness,
    /// development seeding and (later) platform jobs that must cross organizations. Never for
    /// request handlers.
    pub async fn platform(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, ApiError> {
        Ok(self.pool.acquire().await?)
    }
}

/// The pool's connections, for `/metrics`.
#[derive(Debug)]
pub struct PoolSampler(pub Database);

impl crate::observability::metrics::Sampler for PoolSampler {
    fn sample(&self) -> futures_util::future::BoxFuture<'_, ()> {
        use crate::observability::metrics::DB_POOL_CONNECTIONS;
        let (size, idle) = self.0.pool_state();
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "open").set(f64::from(size));
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use")
            .set(f64::from(size).max(idle as f64) - idle as f64);
        Box::pin(std::future::ready(()))
    }
}

/// A request transaction confined to one organization. Dropping it without [`OrgTx::commit`]
/// rolls back.
#[derive(Debug)]
pub struct OrgTx {
    tx: Transaction<'static, Postgres>,
    org_id: Uuid,
    outbox_wake: Arc<Notify>,
    /// Set once the transaction wrote an outbox event.
    wake_on_commit: bool,
    /// When BEGIN was asked for, for the transaction latency metric.
    started: std::time::Instant,
}

impl OrgTx {
    /// The organization every statement of this transaction is confined to.
    pub fn org_id(&self) -> Uuid {
        self.org_id
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), ApiError> {
        let span = crate::observability::traces::client_span("db.commit");
        let committed = tracing::Instrument::instrument(self.tx.commit(), span).await;
        crate::observability::metrics::record_db_transaction(
            if committed.is_ok() { "commit" } else { "error" },
            self.started.elapsed(),
        );
        committed?;
        if self.wake_on_commit {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    /// Ends a transaction that only read, without waiting for PostgreSQL: the ROLLBACK is
    /// queued on the connection and goes out with the pool's own release round trip (sqlx
    /// pings every connection it takes back), so a read costs BEGIN and its query and nothing
    /// the request waits for. Never after a write: use [`OrgTx::commit`].
    pub fn finish_read(self) {
        crate::observability::metrics::record_db_transaction("read", self.started.elapsed());
        drop(self.tx);
    }

    pub(crate) fn wake_publisher_on_commit(&mut self) {
        self.wake_on_commit = true;
    }
}

/// `/ready`'s `database` check: PostgreSQL answers and its schema is the one this binary expects.
#[derive(Debug)]
pub struct DatabaseReady(pub Database);

impl ReadinessCheck for DatabaseReady {
    fn name(&self) -> &'static str {
        "database"
    }

    fn critical(&self) -> bool {
        true
    }

    fn check(&self, deadline: Duration) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let mut conn = tokio::time::timeout(deadline, self.0.pool.acquire())
                .await
                .map_err(|_| "no connection within the deadline".to_owned())?
                .map_err(|e| error::describe_unavailable(&e))?;
            migrate::check_current(&mut conn).await
        })
    }
}
