//! The HTTP server: where it listens, what it accepts, how it stops.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderValue;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// IP address to listen on.
    HOST = text("IBEX_API_HOST", "0.0.0.0");
    /// TCP port to listen on.
    PORT = number("IBEX_API_PORT", "8010", 1, 65535);
    /// Comma-separated browser origins allowed to call the API (https://dashboard.example.com).
    /// Empty allows none; `*` is refused.
    CORS_ALLOWED_ORIGINS = text("IBEX_API_CORS_ALLOWED_ORIGINS", "");
    /// Deadline for a whole request, auth included; past it the answer is 504 REQUEST_TIMEOUT.
    REQUEST_TIMEOUT = millis("IBEX_API_REQUEST_TIMEOUT_MS", "10000", 1);
    /// Largest accepted request body; larger is 413 PAYLOAD_TOO_LARGE.
    MAX_BODY_BYTES = number("IBEX_API_MAX_BODY_BYTES", "1048576", 1, 1 << 30);
    /// Open client connections at most; further ones wait in the kernel's accept queue.
    MAX_CONNECTIONS = number("IBEX_API_MAX_CONNECTIONS", "4096", 1, 1 << 20);
    /// Time a client has to send a request's headers, and how long an idle keep-alive connection
    /// stays open; then the connection is closed.
    HEADER_READ_TIMEOUT = millis("IBEX_API_HEADER_READ_TIMEOUT_MS", "5000", 1);
    /// After SIGTERM/SIGINT: time /ready answers 503 while new connections are still accepted, so
    /// load balancers can stop routing here.
    SHUTDOWN_GRACE = millis("IBEX_API_SHUTDOWN_GRACE_MS", "5000", 0);
    /// After the grace period: time in-flight requests get to finish before the process exits
    /// anyway.
    SHUTDOWN_DRAIN = millis("IBEX_API_SHUTDOWN_DRAIN_MS", "15000", 0);
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    pub cors_allowed_origins: Vec<HeaderValue>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    pub shutdown_drain: Duration,
}

impl ServerConfig {
    pub(super) fn read(v: &Values) -> Result<Self, ConfigError> {
        Ok(Self {
            host: v.parse(&HOST, "an IP address such as 0.0.0.0")?,
            port: v.number(&PORT)? as u16,
            cors_allowed_origins: origins(v)?,
            request_timeout: v.millis(&REQUEST_TIMEOUT)?,
            max_body_bytes: v.number(&MAX_BODY_BYTES)? as usize,
            max_connections: v.number(&MAX_CONNECTIONS)? as usize,
            header_read_timeout: v.millis(&HEADER_READ_TIMEOUT)?,
            shutdown_grace: v.millis(&SHUTDOWN_GRACE)?,
            shutdown_drain: v.millis(&SHUTDOWN_DRAIN)?,
        })
    }
}

/// Exact origins only: a wildcard would let any site's scripts call the API with a user's token.
fn origins(v: &Values) -> Result<Vec<HeaderValue>, ConfigError> {
    let setting = &CORS_ALLOWED_ORIGINS;
    v.get(setting)
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            if origin.contains('*') {
                return Err(setting.error("wildcards are refused: list the dashboard's origins"));
            }
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .ok_or_else(|| {
                    setting.error(format!("`{origin}` must start with http:// or https://"))
                })?;
            if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
                return Err(setting.error(format!(
                    "`{origin}` must be scheme://host[:port] with no path"
                )));
            }
            HeaderValue::from_str(origin)
                .map_err(|_| setting.error(format!("`{origin}` is not a valid origin")))
        })
        .collect()
}
