//! IBEX management API: the operator-facing HTTP API of the IBEX platform.

pub mod access_log;
pub mod auth;
pub mod config;
pub mod envelope;
pub mod error;
pub mod request_id;
pub mod app;
pub mod extract;
pub mod openapi;
pub mod pagination;
pub mod readiness;
pub mod routes;
pub mod healthcheck;
pub mod server;
pub mod telemetry;
