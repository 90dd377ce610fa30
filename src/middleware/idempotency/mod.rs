//! Idempotency keys, as Stripe's API has them: a `POST` sent with `Idempotency-Key` runs once;
//! a retry with the same key, method, path and body gets the first answer again, marked
//! `Idempotent-Replayed: true`, and does nothing else.
//!
//! A key is claimed in PostgreSQL (scoped to the organization and the caller, under row-level
//! security) before the handler runs, and the answer is stored when it finishes. The handler
//! runs in a task of its own, so a client that hangs up (the "lost response" a retry is for)
//! does not cancel the work half-way: it finishes, its answer is stored, and the retry gets it.
//!
//! - Same key, different method, path or body: `409 IDEMPOTENCY_KEY_REUSED` (409, not the IETF
//!   draft's 422: the platform never answers 422).
//! - Same key while the first request runs: `409 IDEMPOTENCY_KEY_IN_USE` with `Retry-After`.
//! - A first answer with a 5xx is not stored: the key is released and a retry runs again.
//! - An answer that holds a secret (a new token's plaintext) is never stored; a retry gets
//!   `409 IDEMPOTENCY_REPLAY_WITHHELD` with the first answer's `Location`, and nothing is minted.
//! - A replica that dies mid-request holds its key until the lease (twice the request timeout)
//!   runs out; then a retry runs again.
//!
//! This module is the layer; [`store`] keeps the keys and answers in PostgreSQL; [`openapi`]
//! documents the header and its answers on every POST of the document.

pub mod openapi;
mod store;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use uuid::Uuid;

pub use store::{Idempotency, spawn_sweep, sweep};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::request_id::RequestId;
use store::{Claim, Scope};

pub const KEY_HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The middleware (`axum::middleware::from_fn_with_state`), on the matched routes, inside the
/// auth layer: only authenticated `POST`s with the header are affected.
pub async fn layer(State(idempotency): State<Idempotency>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let (Some(raw_key), Some(caller)) = (
        req.headers().get(KEY_HEADER),
        req.extensions().get::<Caller>(),
    ) else {
        return next.run(req).await;
    };
    let key = match parse_key(raw_key) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let caller = caller.clone();
    let request_id = req.extensions().get::<RequestId>().copied();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(error) => return body_error(error).into_response(),
    };
    let fingerprint = fingerprint(&parts.method, &parts.uri, &body);
    let scope = Scope {
        org_id: caller.org_id,
        caller_id: caller_id(&caller),
        key,
    };
    match idempotency.claim(&caller, &scope, &fingerprint).await {
        Err(error) => error.into_response(),
        Ok(Claim::InUse) => ApiError::IdempotencyKeyInUse.into_response(),
        Ok(Claim::Mismatch) => ApiError::IdempotencyKeyReused.into_response(),
        Ok(Claim::Withheld(location)) => {
            let mut response = ApiError::IdempotencyReplayWithheld.into_response();
            if let Some(value) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Ok(Claim::Stored(answer)) => answer.replay(request_id),
        Ok(Claim::Claimed) => {
            let request = Request::from_parts(parts, Body::from(body));
            // Its own task: a client hanging up must not cancel the work between its effect
            // and the stored answer.
            // The task re-enters the request's id (a task-local does not follow a spawn), so
            // its log lines, audit events and outbox rows name the request.
            let work = async move {
                let response = next.run(request).await;
                idempotency
                    .settle(&caller, &scope, &fingerprint, response)
                    .await
            }
            .in_current_span();
            let id = request_id.unwrap_or_else(RequestId::generate);
            let run = tokio::spawn(crate::request_id::scoped(id, || work));
            run.await
                .unwrap_or_else(|_| ApiError::Internal.into_response())
        }
    }
}

/// 1 to 255 visible ASCII characters (IETF draft and Stripe alike).
fn parse_key(raw: &HeaderValue) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    if (1..=255).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        Ok(String::from_utf8_lossy(bytes).into_owned())
    } else {
        Err(ApiError::field(
            "Idempotency-Key",
            "INVALID_IDEMPOTENCY_KEY",
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
        ))
    }
}

/// Whose keys these are: the user, else the agent, else the token (a key is never shared
/// across callers, so one caller cannot replay another's answer).
fn caller_id(caller: &Caller) -> Uuid {
    caller
        .user_id
        .or(caller.agent_id)
        .or(caller.token_id)
        .unwrap_or(Uuid::nil())
}

fn fingerprint(method: &Method, uri: &http::Uri, body: &[u8]) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(method.as_str());
    hash.update([0]);
    hash.update(uri.path_and_query().map_or("", |p| p.as_str()));
    hash.update([0]);
    hash.update(body);
    hash.finalize().to_vec()
}

fn body_error(error: axum::Error) -> ApiError {
    let inner = error.into_inner();
    if inner.is::<http_body_util::LengthLimitError>() {
        ApiError::PayloadTooLarge
    } else {
        ApiError::validation("The request body could not be read.")
    }
}
