//! IBEX management API: the operator-facing HTTP API of the IBEX platform.

pub mod access_log;
pub mod app;
pub mod auth;
pub mod config;
pub mod cors;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod log_format;
pub mod openapi;
pub mod pagination;
pub mod readiness;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod telemetry;
