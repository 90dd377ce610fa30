//! The integration tests: one binary, one module per area, sharing one harness (`common`) and,
//! through it, one throwaway PostgreSQL cluster, one redis-server and one ClickHouse for the whole
//! run (tests that take a dependency away start their own). Four areas keep binaries of their own
//! because each observes process-global state that the other tests would disturb: the tracing
//! subscriber and the trace exporter, installed once per process (`tests/logging.rs`,
//! `tests/traces.rs`, `tests/traces_unreachable.rs`), and the metrics recorder, whose series every
//! request of every test would add to (`tests/metrics.rs`).

mod common;

mod agents;
mod analytics;
mod audit;
mod auth;
mod boundaries;
mod conditional;
mod data_map;
mod data_requests;
mod database;
mod directives;
mod docs;
mod errors;
mod idempotency;
mod lifecycle;
mod memories;

mod module_graph;
mod organizations;
mod rate_limits;
mod retention;
mod round_trips;
mod security;
mod sessions;
mod tokens;
mod users;
