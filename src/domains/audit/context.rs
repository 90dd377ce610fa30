//! Where a change came from, as the request tells it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::header::USER_AGENT;
use http::request::Parts;

use crate::error::ApiError;

/// Longest user agent kept; the rest is cut (a header can be kilobytes).
const MAX_USER_AGENT: usize = 512;

/// The request id, the client's address and its user agent, for an audit event.
///
/// The client address is the last `X-Forwarded-For` entry when there is one (the address the
/// nearest proxy, the ingress, saw; earlier entries are whatever the client claimed), else the
/// socket's peer.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    pub request_id: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for AuditContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| v.parse::<std::net::IpAddr>().is_ok())
            .map(str::to_owned);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.chars()
                    .filter(|c| *c != '\0')
                    .take(MAX_USER_AGENT)
                    .collect()
            });
        Ok(Self {
            // The request's own extension first: it travels with the request into any task
            // (the idempotency layer runs handlers in one of their own).
            request_id: parts
                .extensions
                .get::<crate::request_id::RequestId>()
                .copied()
                .or_else(crate::request_id::current)
                .map(|id| id.to_string())
                .unwrap_or_default(),
            client_ip: forwarded.or(peer),
            user_agent,
        })
    }
}
