//! The HTTP server: where it listens, what it accepts, how it stops.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderValue;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// The HTTP server's settings.
    pub struct ServerConfig {
        /// IP address to listen on.
        HOST = text("IBEX_API_HOST", "0.0.0.0") => host: IpAddr, by ip_address;
        /// TCP port to listen on.
        PORT = number("IBEX_API_PORT", "8010", 1, 65535) => port: u16;
        /// Comma-separated browser origins allowed to call the API (https://dashboard.example.com).
        /// Empty allows none; `*` is refused.
        CORS_ALLOWED_ORIGINS = text("IBEX_API_CORS_ALLOWED_ORIGINS", "")
            => cors_allowed_origins: Vec<HeaderValue>, by origins;
        /// Deadline for a whole request, auth included; past it the answer is 504 REQUEST_TIMEOUT.
        REQUEST_TIMEOUT = millis("IBEX_API_REQUEST_TIMEOUT_MS", "10000", 1)
            => request_timeout: Duration;
        /// Largest accepted request body; larger is 413 PAYLOAD_TOO_LARGE.
        MAX_BODY_BYTES = number("IBEX_API_MAX_BODY_BYTES", "1048576", 1, 1 << 30)
            => max_body_bytes: usize;
        /// Open client connections at most; further ones wait in the kernel's accept queue.
        MAX_CONNECTIONS = number("IBEX_API_MAX_CONNECTIONS", "4096", 1, 1 << 20)
            => max_connections: usize;
        /// Time a client has to send a request's headers, and how long an idle keep-alive
        /// connection stays open; then the connection is closed.
        HEADER_READ_TIMEOUT = millis("IBEX_API_HEADER_READ_TIMEOUT_MS", "5000", 1)
            => header_read_timeout: Duration;
        /// After SIGTERM/SIGINT: time /ready answers 503 while new connections are still accepted,
        /// so load balancers can stop routing here.
        SHUTDOWN_GRACE = millis("IBEX_API_SHUTDOWN_GRACE_MS", "5000", 0) => shutdown_grace: Duration;
        /// After the grace period: time in-flight requests get to finish before the process exits
        /// anyway.
        SHUTDOWN_DRAIN = millis("IBEX_API_SHUTDOWN_DRAIN_MS", "15000", 0) => shutdown_drain: Duration;
    }
}

fn ip_address(v: &Values, setting: &Setting) -> Result<IpAddr, ConfigError> {
    v.parse(setting, "an IP address such as 0.0.0.0")
}

/// Exact origins only: a wildcard would let any site's scripts call the API with a user's token.
fn origins(v: &Values, setting: &Setting) -> Result<Vec<HeaderValue>, ConfigError> {
    v.list(setting)
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
