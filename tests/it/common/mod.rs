//! Test harness, one module per concern: a real tonic auth server with scriptable answers
//! ([`auth`]), the real app on an ephemeral loopback port ([`app`]), a throwaway PostgreSQL
//! cluster with a database per test ([`db`]), a raw HTTP/1.1 client ([`http_client`]: raw so
//! tests can send what well-behaved clients cannot: duplicate headers, odd bytes, lying
//! Content-Length), and the other servers the app talks to: redis-server ([`redis_server`]), an
//! S3 server that checks signatures ([`object_store`]) and the memory-service stand-in
//! ([`memory_service`]); log lines kept in memory ([`capture`]). Every test binary includes it whole and uses part of it.

#![allow(dead_code)]

/// Runs `sql` on `conn` (a `&mut PgConnection`) with these binds as `$1`, `$2`, …; a failure
/// fails the test, naming the statement.
#[allow(unused_macros)]
macro_rules! run_sql {
    ($conn:expr, $sql:expr $(, $bind:expr)* $(,)?) => {{
        let sql: &str = $sql;
        sqlx::query(sql)
            $(.bind($bind))*
            .execute($conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }};
}
#[allow(unused_imports)]
pub(crate) use run_sql;

mod app;
mod auth;
mod capture;
mod clickhouse_server;
mod db;
mod http_client;
mod memory_service;
mod object_store;
mod redis_server;

#[allow(unused_imports)]
pub use app::*;
#[allow(unused_imports)]
pub use auth::*;
#[allow(unused_imports)]
pub use capture::*;
#[allow(unused_imports)]
pub use clickhouse_server::*;
#[allow(unused_imports)]
pub use db::*;
#[allow(unused_imports)]
pub use http_client::*;
#[allow(unused_imports)]
pub use memory_service::*;
#[allow(unused_imports)]
pub use object_store::*;
#[allow(unused_imports)]
pub use redis_server::*;

pub const TOKEN: &str =
    "ibex_pat_0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70_q7Yx3kP0vN2mR8sT4wZ6bC1dF5gH9jK0lM2nQ4rS6tU";
pub const ORG_ID: &str = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70";

/// The bits operations need, as the service declares them.
#[allow(unused_imports)]
pub use ibex_api::tenancy::need::*;

/// Sets up, once per test binary, what the tests share (a server): `start` runs on a thread and
/// runtime of its own, since the first test to ask may be inside its own runtime.
pub fn started_once<T: Send + Sync + 'static>(
    cell: &'static std::sync::OnceLock<T>,
    start: impl AsyncFnOnce() -> T + Send + 'static,
) -> &'static T {
    cell.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(start())
        })
        .join()
        .expect("a shared test server starts")
    })
}

/// The harness' organization ([`ORG_ID`]).
pub fn org_a() -> uuid::Uuid {
    ORG_ID.parse().unwrap()
}

/// Every permission bit the API checks.
pub const ALL_PERMISSIONS: u64 = (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 17)
    | (1 << 24)
    | (1 << 32)
    | (1 << 35)
    | (1 << 36)
    | (1 << 37);
pub const USER_ID: &str = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f71";
pub const ALLOWED_ORIGIN: &str = "https://dashboard.example.com";
pub const PERMISSION_READ: u64 = 0b01;
pub const PERMISSION_ADMIN: u64 = 0b10;

pub fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

/// How long a test polls for something to happen, and how often (100 ms unless said).
pub struct Deadline {
    at: std::time::Instant,
    every: std::time::Duration,
}

impl Deadline {
    pub fn after(limit: std::time::Duration) -> Self {
        Self {
            at: std::time::Instant::now() + limit,
            every: std::time::Duration::from_millis(100),
        }
    }

    pub fn every(self, every: std::time::Duration) -> Self {
        Self { every, ..self }
    }

    /// Fails the test with `what` once the deadline has passed; else waits until the next poll.
    pub async fn tick(&self, what: impl std::fmt::Display) {
        assert!(std::time::Instant::now() < self.at, "{what}");
        tokio::time::sleep(self.every).await;
    }
}
