//! The platform auth service every request is validated by.

use std::time::Duration;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// The auth service's settings.
    pub struct AuthConfig {
        /// The platform auth service's gRPC endpoint (http:// or https://).
        GRPC_ADDR = text("IBEX_API_AUTH_GRPC_ADDR", "http://127.0.0.1:9091")
            => grpc_addr: String, by grpc_addr;
        /// Deadline of one ValidateToken call; past it the request is refused with 503
        /// AUTH_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.
        TIMEOUT = millis("IBEX_API_AUTH_TIMEOUT_MS", "1000", 1) => timeout: Duration;
        /// Deadline for opening the TCP connection to the auth service.
        CONNECT_TIMEOUT = millis("IBEX_API_AUTH_CONNECT_TIMEOUT_MS", "500", 1)
            => connect_timeout: Duration;
        /// 0 validates every request. Above 0, successful validations are cached for at most this
        /// long (and never past the token's expiry): a revoked token keeps working for up to this
        /// long.
        CACHE_TTL = millis("IBEX_API_AUTH_CACHE_TTL_MS", "0", 0) => cache_ttl: Duration;
        /// Most tokens the validation cache holds.
        CACHE_MAX_ENTRIES = number("IBEX_API_AUTH_CACHE_MAX_ENTRIES", "10000", 1, 10_000_000)
            => cache_max_entries: usize;
    }
}

fn grpc_addr(v: &Values, setting: &Setting) -> Result<String, ConfigError> {
    let addr = v.get(setting);
    let uri: http::Uri = addr
        .parse()
        .map_err(|_| setting.error("expected a URI such as http://auth:9091"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(addr.to_owned()),
        _ => Err(setting.error("expected an http:// or https:// URI with a host")),
    }
}
