//! The platform auth service every request is validated by.

use std::time::Duration;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// The platform auth service's gRPC endpoint (http:// or https://).
    GRPC_ADDR = text("IBEX_API_AUTH_GRPC_ADDR", "http://127.0.0.1:9091");
    /// Deadline of one ValidateToken call; past it the request is refused with 503
    /// AUTH_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.
    TIMEOUT = millis("IBEX_API_AUTH_TIMEOUT_MS", "1000", 1);
    /// Deadline for opening the TCP connection to the auth service.
    CONNECT_TIMEOUT = millis("IBEX_API_AUTH_CONNECT_TIMEOUT_MS", "500", 1);
    /// 0 validates every request. Above 0, successful validations are cached for at most this long
    /// (and never past the token's expiry): a revoked token keeps working for up to this long.
    CACHE_TTL = millis("IBEX_API_AUTH_CACHE_TTL_MS", "0", 0);
    /// Most tokens the validation cache holds.
    CACHE_MAX_ENTRIES = number("IBEX_API_AUTH_CACHE_MAX_ENTRIES", "10000", 1, 10_000_000);
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub grpc_addr: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Zero: every request is validated.
    pub cache_ttl: Duration,
    pub cache_max_entries: usize,
}

impl AuthConfig {
    pub(super) fn read(v: &Values) -> Result<Self, ConfigError> {
        let addr = v.get(&GRPC_ADDR);
        let uri: http::Uri = addr
            .parse()
            .map_err(|_| GRPC_ADDR.error("expected a URI such as http://auth:9091"))?;
        if !matches!(
            (uri.scheme_str(), uri.host()),
            (Some("http" | "https"), Some(_))
        ) {
            return Err(GRPC_ADDR.error("expected an http:// or https:// URI with a host"));
        }
        Ok(Self {
            grpc_addr: addr.to_owned(),
            timeout: v.millis(&TIMEOUT)?,
            connect_timeout: v.millis(&CONNECT_TIMEOUT)?,
            cache_ttl: v.millis(&CACHE_TTL)?,
            cache_max_entries: v.number(&CACHE_MAX_ENTRIES)? as usize,
        })
    }
}
