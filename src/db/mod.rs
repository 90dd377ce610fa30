//! PostgreSQL access: two lazily connecting pools, and the only way a request reaches the
//! database, a transaction already confined to the caller's organization ([`OrgTx`]).
//!
//! Tenancy by construction: [`Database`] keeps its pools private. Request code gets a connection
//! only through [`Database::begin_for`], which needs the authenticated [`Caller`]; the
//! transaction it returns runs `SET LOCAL ROLE ibex_app` and sets `app.current_org_id` before
//! any statement of the handler, so row-level security applies to every statement a handler
//! can write. Work that must cross organizations goes through [`Database::platform`], named so
//! that it stands out in review.
//!
//! Two drivers, on purpose. Requests use tokio-postgres behind deadpool, because it pipelines:
//! BEGIN with the tenant settings, the first statement and (for a read) the ROLLBACK go out
//! without waiting for each other, and a connection goes back to the pool without a ping. sqlx
//! cannot do either (it waits for every statement, and pings every connection it takes back),
//! which made a read cost 3 round trips and PostgreSQL the bottleneck. Migrations, `/ready`,
//! seeding and the background jobs keep sqlx on a small pool of their own: they are not on a
//! request's path, and sqlx's embedded migrator is what deploys already use.

pub mod error;
pub mod migrate;
mod rows;
mod sql;

pub use error::DbError;
pub use rows::FromRow;
pub(crate) use rows::from_row;
pub use sql::Sql;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, RecyclingMethod, Runtime};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, RowStream};
use uuid::Uuid;

use crate::auth::Caller;
use crate::config::DatabaseConfig;
use crate::error::ApiError;
use crate::readiness::ReadinessCheck;

/// Connections of the platform pool (sqlx): the export worker, the deletion job, the outbox
/// publisher and `/ready`, besides `IBEX_API_DATABASE_MAX_CONNECTIONS` for requests.
pub const PLATFORM_CONNECTIONS: u32 = 3;

/// A statement's parameters, as tokio-postgres takes them.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The service's database handle; cheap to clone.
#[derive(Clone)]
pub struct Database {
    /// Requests: tokio-postgres, pipelined, no ping.
    tenants: deadpool_postgres::Pool,
    /// Everything that is not a request (see the module documentation).
    platform: PgPool,
    /// Rung after a commit that wrote outbox events, so this replica publishes them at once.
    outbox_wake: Arc<Notify>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// Builds both pools without connecting: the service starts while PostgreSQL is down and
    /// recovers by itself when it comes back.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self, String> {
        let invalid = || "IBEX_API_DATABASE_URL is not a valid PostgreSQL URL".to_owned();
        let statement_timeout = config.statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(config.url.expose())
            .map_err(|_| invalid())?
            .application_name("ibex-api")
            .options([("statement_timeout", statement_timeout.as_str())]);
        let platform = PgPoolOptions::new()
            .max_connections(PLATFORM_CONNECTIONS)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(options);

        let mut pg =
            tokio_postgres::Config::from_str(config.url.expose()).map_err(|_| invalid())?;
        pg.application_name("ibex-api")
            .options(format!("-c statement_timeout={statement_timeout}"))
            .connect_timeout(config.acquire_timeout);
        // Fast recycling: a connection comes back without a ping; one the server closed (a
        // restart) is noticed by its own connection task and dropped at the next draw, and one
        // that died unnoticed fails at its first flight, which `OrgTx` then retries.
        let manager = Manager::from_connect(
            pg,
            PatientConnect {
                inner: deadpool_postgres::ConfigConnectImpl {
                    tls: tls_connector(),
                },
                patience: config.acquire_timeout,
            },
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let acquire = Some(config.acquire_timeout);
        let tenants = deadpool_postgres::Pool::builder(manager)
            .max_size(config.max_connections as usize)
            .runtime(Runtime::Tokio1)
            .wait_timeout(acquire)
            .create_timeout(acquire)
            .recycle_timeout(acquire)
            .build()
            .map_err(|e| format!("database pool: {e}"))?;
        Ok(Self {
            tenants,
            platform,
            outbox_wake: Arc::new(Notify::new()),
        })
    }

    /// Open and idle connections of both pools, for the metrics.
    pub fn pool_state(&self) -> (u32, usize) {
        let status = self.tenants.status();
        (
            self.platform.size() + status.size as u32,
            self.platform.num_idle() + status.available,
        )
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
        // BEGIN, the role, the tenant and the request's id in one simple-query message, sent
        // with the first statement. Both ids are `Uuid`s (the org from the auth service or a
        // job's own row, the request id validated by the request-id layer), rendered as hex
        // digits and dashes, never client text. Outbox rows take the request id from it as
        // their column default, whichever task writes them.
        let request_id = crate::request_id::current()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let begin = format!(
            "BEGIN; SET LOCAL ROLE ibex_app; \
             SELECT set_config('app.current_org_id', '{}', true), \
                    set_config('app.request_id', '{request_id}', true)",
            org_id.hyphenated()
        );
        Ok(OrgTx {
            client: None,
            tenants: self.tenants.clone(),
            org_id,
            begin: Some(begin),
            open: false,
            at_commit: Vec::new(),
            outbox_wake: Arc::clone(&self.outbox_wake),
            wake_on_commit: false,
            started,
        })
    }

    /// A connection outside any organization, as the login role: for migrations, readiness,
    /// development seeding and platform jobs that must cross organizations. Never for request
    /// handlers.
    pub async fn platform(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, ApiError> {
        Ok(self.platform.acquire().await?)
    }
}

/// Opens connections, and keeps trying for up to the acquire timeout while the server refuses
/// them (down, or restarting: "the database system is starting up"), so a request that arrives
/// as PostgreSQL comes back waits for it instead of failing; past the timeout it is a 503.
struct PatientConnect {
    inner: deadpool_postgres::ConfigConnectImpl<tokio_postgres_rustls::MakeRustlsConnect>,
    patience: Duration,
}

impl deadpool_postgres::Connect for PatientConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let pg_config = pg_config.clone();
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + self.patience;
            let mut pause = Duration::from_millis(10);
            loop {
                match self.inner.connect(&pg_config).await {
                    Ok(connected) => return Ok(connected),
                    Err(error)
                        if error::refused_connect(&error)
                            && tokio::time::Instant::now() + pause < deadline =>
                    {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(200));
                    }
                    Err(error) => return Err(error),
                }
            }
        })
    }
}

/// TLS when the URL asks for it (`sslmode=require`), with the web's root certificates; the
/// default `prefer` falls back to plain TCP when the server offers none.
fn tls_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
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

/// What a statement gives back.
enum Outcome {
    Rows(Vec<Row>),
    Count(u64),
}

/// A request transaction confined to one organization. Nothing is sent, and no connection
/// drawn, until its first statement, which carries BEGIN and the tenant settings in the same
/// flight. Dropping it
/// without [`OrgTx::commit`] rolls back.
pub struct OrgTx {
    /// Drawn from the pool for the first statement, not before: a handler holds no connection
    /// while it parses (or a client slowly sends) the request's body.
    client: Option<Object>,
    tenants: deadpool_postgres::Pool,
    org_id: Uuid,
    /// The BEGIN message, until it went out with the first statement.
    begin: Option<String>,
    /// BEGIN went out and neither COMMIT nor ROLLBACK did yet.
    open: bool,
    /// Writes that go out with COMMIT ([`OrgTx::execute_at_commit`]).
    at_commit: Vec<(&'static str, Sql)>,
    outbox_wake: Arc<Notify>,
    /// Set once the transaction wrote an outbox event.
    wake_on_commit: bool,
    /// When the transaction was asked for, for the transaction latency metric.
    started: std::time::Instant,
}

impl std::fmt::Debug for OrgTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgTx")
            .field("org_id", &self.org_id)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl OrgTx {
    /// Plans this transaction's statements for their parameters' values (a custom plan each
    /// time), where the best index depends on them: two filters whose indexes compete (a category
    /// on half the memories and a source on 2%, an actor behind a third of the audit log and an
    /// action on one event in 200). Statements are prepared and cached per connection, and after
    /// five executions PostgreSQL may settle on a generic plan that cannot see the values
    /// (BENCHMARKS.md, "Filtered lists at a million rows"). Costs the planning of each execution,
    /// so lists whose statement has one sensible index keep the cached plan. Travels with BEGIN:
    /// call it before the first statement.
    pub fn plan_for_values(&mut self) {
        if let Some(begin) = &mut self.begin {
            begin.push_str("; SET LOCAL plan_cache_mode = force_custom_plan");
        }
    }

    /// The organization every statement of this transaction is confined to.
    pub fn org_id(&self) -> Uuid {
        self.org_id
    }

    /// Every row `sql` returns.
    pub async fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        match self.run(&[(sql, params)], false).await?.pop() {
            Some(Outcome::Rows(rows)) => Ok(rows),
            _ => unreachable!("one statement, asked for rows"),
        }
    }

    /// The rows of each statement, all sent in one flight: for a check and the read that
    /// depends on it (does the agent exist, and its memories), which cost a round trip each
    /// when sent one after the other.
    pub async fn query_pipelined(
        &mut self,
        statements: &[(&str, Params<'_>)],
    ) -> Result<Vec<Vec<Row>>, DbError> {
        Ok(self
            .run(statements, false)
            .await?
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Rows(rows) => rows,
                Outcome::Count(_) => unreachable!("asked for rows"),
            })
            .collect())
    }

    /// How many rows `sql` changed.
    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        match self.run(&[(sql, params)], true).await?.pop() {
            Some(Outcome::Count(n)) => Ok(n),
            _ => unreachable!("one statement, asked for a count"),
        }
    }

    /// Runs `sql` in the same flight as COMMIT, for a write nothing else depends on (an outbox
    /// event): if it fails, the transaction rolls back and [`OrgTx::commit`] says so.
    pub fn execute_at_commit(&mut self, sql: &'static str, params: Sql) {
        self.at_commit.push((sql, params));
    }

    /// The first row, if any.
    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// The first row; [`DbError::NoRow`] (a 404) when there is none.
    pub async fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, DbError> {
        self.query_opt(sql, params).await?.ok_or(DbError::NoRow)
    }

    /// Every row, decoded.
    pub async fn fetch_all<T: FromRow>(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<T>, DbError> {
        self.query(sql, params)
            .await?
            .iter()
            .map(T::from_row)
            .collect()
    }

    /// The first row decoded, if any.
    pub async fn fetch_optional<T: FromRow>(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<T>, DbError> {
        match self.query_opt(sql, params).await? {
            Some(row) => Ok(Some(T::from_row(&row)?)),
            None => Ok(None),
        }
    }

    /// The first column of the first row, if there is a row.
    pub async fn fetch_value<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<T>, DbError> {
        let row = self.query_opt(sql, params).await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    /// Row `id` of one of the organization's tables (`ibex_core.{table}`), decoded, unless it is
    /// soft-deleted.
    pub async fn fetch_live<T: FromRow>(
        &mut self,
        table: &str,
        columns: &str,
        id: Uuid,
    ) -> Result<Option<T>, DbError> {
        let org_id = self.org_id();
        let sql = format!(
            "SELECT {columns} FROM ibex_core.{table}
             WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
        );
        self.fetch_optional(&sql, &[&org_id, &id]).await
    }

    /// The first row decoded; [`DbError::NoRow`] (a 404) when there is none.
    pub async fn fetch_one<T: FromRow>(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<T, DbError> {
        self.fetch_optional(sql, params)
            .await?
            .ok_or(DbError::NoRow)
    }

    /// The rows of `sql` as they arrive, for a result too large to hold (an export).
    pub async fn stream(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream, DbError> {
        if self.begin.is_some() {
            // BEGIN goes out (and the connection is drawn) with a statement of its own.
            self.execute("SELECT 1", &[]).await?;
        }
        let statement = self.conn().prepare_cached(sql).await?;
        Ok(self
            .conn()
            .query_raw(&statement, params.iter().copied())
            .await?)
    }

    /// Sends statements in one flight; the first flight also carries BEGIN. A connection found
    /// dead at that first flight had run nothing of this transaction, so another one is drawn
    /// and the flight sent again; each pooled connection can be dead at most once, so the pool
    /// size bounds the attempts.
    async fn run(
        &mut self,
        statements: &[(&str, Params<'_>)],
        count: bool,
    ) -> Result<Vec<Outcome>, DbError> {
        self.connect().await?;
        let mut attempts = self.tenants.status().max_size + 1;
        loop {
            let first = self.begin.is_some();
            let result = self.send(statements, count).await;
            match result {
                Ok(outcome) => {
                    if first {
                        self.begin = None;
                        self.open = true;
                    }
                    return Ok(outcome);
                }
                Err(error) if first && attempts > 1 && error.is_dead_connection() => {
                    attempts -= 1;
                    tracing::debug!(reason = %error.describe(), "dead pooled connection replaced");
                    let fresh = self.tenants.get().await?;
                    if let Some(dead) = self.client.replace(fresh) {
                        let _ = Object::take(dead);
                    }
                }
                Err(error) => {
                    if first {
                        // BEGIN may have run before the statement failed.
                        self.begin = None;
                        self.open = true;
                    }
                    return Err(error);
                }
            }
        }
    }

    async fn send(
        &self,
        statements: &[(&str, Params<'_>)],
        count: bool,
    ) -> Result<Vec<Outcome>, DbError> {
        let prepared = self.prepare_all(statements).await?;
        let client = self.conn();
        // Each future queues its messages on the connection at its first poll, and both
        // `try_join!` and `try_join_all` poll in order: BEGIN, then the statements in order,
        // all in one write.
        let all = futures_util::future::try_join_all(statements.iter().zip(&prepared).map(
            |((_, params), statement)| async move {
                if count {
                    client.execute(statement, params).await.map(Outcome::Count)
                } else {
                    client.query(statement, params).await.map(Outcome::Rows)
                }
            },
        ));
        Ok(match &self.begin {
            Some(begin) => tokio::try_join!(client.batch_execute(begin), all)?.1,
            None => all.await?,
        })
    }

    /// Draws the transaction's connection, the first time.
    async fn connect(&mut self) -> Result<(), DbError> {
        if self.client.is_none() {
            self.client = Some(self.tenants.get().await?);
        }
        Ok(())
    }

    /// The connection [`OrgTx::connect`] drew.
    fn conn(&self) -> &Object {
        self.client
            .as_ref()
            .expect("connected before the first statement")
    }

    /// Commits, sending the writes queued by [`OrgTx::execute_at_commit`] in the same flight.
    pub async fn commit(mut self) -> Result<(), ApiError> {
        let at_commit = std::mem::take(&mut self.at_commit);
        if !self.open && at_commit.is_empty() {
            // Nothing was sent: nothing to commit.
            self.begin = None;
            return Ok(());
        }
        let statements: Vec<(&str, Vec<&(dyn ToSql + Sync)>)> = at_commit
            .iter()
            .map(|(sql, params)| (*sql, params.params()))
            .collect();
        let statements: Vec<(&str, Params<'_>)> = statements
            .iter()
            .map(|(sql, params)| (*sql, params.as_slice()))
            .collect();
        self.connect().await?;
        let prepared = self.prepare_all(&statements).await.map_err(DbError::from)?;
        if let Some(begin) = self.begin.take() {
            // Only queued writes: BEGIN goes out ahead of them, in the same flight.
            self.open = true;
            self.conn().batch_execute(&begin).now_or_never();
        }
        let client = self.conn();
        let writes = futures_util::future::try_join_all(
            statements
                .iter()
                .zip(&prepared)
                .map(|((_, params), statement)| client.execute(statement, params)),
        );
        let span = crate::observability::traces::client_span("db.commit");
        let committed = tracing::Instrument::instrument(
            async { tokio::try_join!(writes, client.batch_execute("COMMIT")) },
            span,
        )
        .await;
        self.open = false;
        crate::observability::metrics::record_db_transaction(
            if committed.is_ok() { "commit" } else { "error" },
            self.started.elapsed(),
        );
        committed.map_err(DbError::from)?;
        if self.wake_on_commit {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    /// Ends a transaction that only read, without waiting for PostgreSQL: the ROLLBACK is
    /// queued on the connection ahead of whatever its next user sends. Never after a write: use
    /// [`OrgTx::commit`].
    pub fn finish_read(self) {
        crate::observability::metrics::record_db_transaction("read", self.started.elapsed());
        drop(self);
    }

    async fn prepare_all(
        &self,
        statements: &[(&str, Params<'_>)],
    ) -> Result<Vec<tokio_postgres::Statement>, tokio_postgres::Error> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, _) in statements {
            prepared.push(self.conn().prepare_cached(sql).await?);
        }
        Ok(prepared)
    }

    pub(crate) fn wake_publisher_on_commit(&mut self) {
        self.wake_on_commit = true;
    }
}

impl Drop for OrgTx {
    fn drop(&mut self) {
        if let (true, Some(client)) = (self.open, &self.client) {
            // One poll writes the ROLLBACK into the connection's queue; its answer is read and
            // discarded by the connection task. Requests on a connection run in order, so the
            // next transaction on it starts after this one ended.
            let _ = client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}

/// `/ready`'s `database` check: PostgreSQL answers and its schema is the one this binary expects.
#[derive(Debug)]
pub struct DatabaseReady(pub Database);

impl ReadinessCheck for DatabaseReady {
    fn check(&self, deadline: Duration) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let mut conn = tokio::time::timeout(deadline, self.0.platform.acquire())
                .await
                .map_err(|_| "no connection within the deadline".to_owned())?
                .map_err(|e| error::describe_unavailable(&e))?;
            migrate::check_current(&mut conn).await
        })
    }
}
