//! IBEX management API: the operator-facing HTTP API of the IBEX platform.

pub mod app;
pub mod application;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod devenv;
pub mod domains;
pub mod error;
pub mod events;
pub mod healthcheck;
pub mod layer;
pub mod leased;
pub mod log_format;
pub mod middleware;
pub mod observability;
pub mod openapi;
pub mod probes;
pub mod readiness;
pub mod request_id;
pub mod server;
pub mod signing;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod wire;
