//! Request limits per organization and per token, shared by every replica through Redis.
//!
//! Each limit is a GCRA bucket (a token bucket kept as one timestamp, the "theoretical arrival
//! time"): `per_second` requests a second sustained, `burst` at once. Both buckets of a request
//! (its organization's and its token's) are checked and charged by one Lua script on Redis's
//! clock, so a request costs one round trip and the replicas need no clock agreement. A request
//! over either limit is refused with `429 RATE_LIMITED` and charged to neither.
//!
//! Every authenticated answer carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset` (the IETF draft's fields) of the tighter bucket. Probes, `/docs` and
//! `/openapi.json` carry no token and are never limited.
//!
//! A limiter must never take the API down: when Redis does not answer within the timeout, the
//! request goes through (counted in `ibex_rate_limit_decisions_total{outcome="fail_open"}`, and
//! logged at most once a second), and Redis is left alone for a second before it is asked again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue};
use redis::aio::ConnectionManager;

use crate::auth::Caller;
use crate::config::{Limit, Limits};
use crate::error::ApiError;
use crate::observability::metrics;

pub const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
/// The headers every limited answer carries (the envelope layer keeps them on errors).
pub const HEADERS: [HeaderName; 3] = [LIMIT, REMAINING, RESET];

/// How long Redis is left alone after it failed to answer.
const BACKOFF: Duration = Duration::from_secs(1);

/// GCRA over every key given: KEYS are the buckets, ARGV two numbers per key (the emission
/// interval in microseconds, the burst). All are charged only when all allow. Answers
/// {allowed, limit, remaining, reset_us, retry_after_us}, the last four of the tightest bucket.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local allowed, retry = 1, 0
local tats = {}
local limit, remaining, reset = 0, nil, 0
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - burst * interval
  if now < allow_at then
    allowed = 0
    if allow_at - now > retry then retry = allow_at - now end
    new_tat = tat
  end
  tats[i] = new_tat
  local left = math.floor((now - (new_tat - burst * interval)) / interval)
  if left < 0 then left = 0 end
  if remaining == nil or left < remaining then
    limit, remaining, reset = burst, left, new_tat - now
  end
end
if allowed == 1 then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, string.format('%d', tats[i]), 'PX',
               math.floor((tats[i] - now) / 1000) + 1)
  end
end
return {allowed, limit, remaining, reset, retry}
";

/// What the script decided, in the units of the headers.
#[derive(Debug, Clone, Copy)]
struct Decision {
    allowed: bool,
    limit: u64,
    remaining: u64,
    reset_secs: u64,
    retry_after_secs: u64,
}

pub struct RateLimiter {
    client: redis::Client,
    connection: Mutex<Option<ConnectionManager>>,
    script: redis::Script,
    limits: Limits,
    timeout: Duration,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not asked (after a failure).
    quiet_until_ms: AtomicU64,
    /// Milliseconds since `started` of the last fail-open log line.
    last_warning_ms: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn interval_micros(limit: &Limit) -> u64 {
    (1_000_000.0 / limit.per_second).ceil().max(1.0) as u64
}

impl RateLimiter {
    pub fn new(client: redis::Client, limits: Limits, timeout: Duration) -> Self {
        Self {
            client,
            connection: Mutex::new(None),
            script: redis::Script::new(SCRIPT),
            limits,
            timeout,
            started: Instant::now(),
            quiet_until_ms: AtomicU64::new(0),
            last_warning_ms: AtomicU64::new(0),
        }
    }

    /// `None` when Redis could not be asked: the request goes through.
    async fn decide(&self, caller: &Caller) -> Option<Decision> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        if now_ms < self.quiet_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        match tokio::time::timeout(self.timeout, self.ask(caller)).await {
            Ok(Ok(decision)) => Some(decision),
            failure => {
                let reason = match failure {
                    Ok(Err(error)) => error.to_string(),
                    _ => "timed out".to_owned(),
                };
                // A fresh connection next time, not one that may be stuck reconnecting.
                *self.connection.lock().expect("not poisoned") = None;
                self.fail_open(now_ms, &reason);
                None
            }
        }
    }

    async fn ask(&self, caller: &Caller) -> redis::RedisResult<Decision> {
        let mut connection = self.connection().await?;
        let org = self
            .limits
            .org_overrides
            .get(&caller.org_id)
            .copied()
            .unwrap_or(self.limits.org);
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(format!("ibex:ratelimit:org:{}", caller.org_id))
            .arg(interval_micros(&org))
            .arg(org.burst);
        if let Some(token_id) = caller.token_id {
            invocation
                .key(format!("ibex:ratelimit:token:{token_id}"))
                .arg(interval_micros(&self.limits.token))
                .arg(self.limits.token.burst);
        }
        let answer: Result<(i64, i64, i64, i64, i64), _> =
            invocation.invoke_async(&mut connection).await;
        let (allowed, limit, remaining, reset_us, retry_us) = answer?;
        let secs = |micros: i64| (micros.max(0) as u64).div_ceil(1_000_000);
        Ok(Decision {
            allowed: allowed == 1,
            limit: limit.max(0) as u64,
            remaining: remaining.max(0) as u64,
            reset_secs: secs(reset_us),
            retry_after_secs: secs(retry_us).max(1),
        })
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        if let Some(connection) = self.connection.lock().expect("not poisoned").clone() {
            return Ok(connection);
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *self.connection.lock().expect("not poisoned") = Some(connection.clone());
        Ok(connection)
    }

    fn fail_open(&self, now_ms: u64, reason: &str) {
        metrics::record_rate_limit("fail_open");
        self.quiet_until_ms
            .store(now_ms + BACKOFF.as_millis() as u64, Ordering::Relaxed);
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if (last == 0 || now_ms >= last + 1_000)
            && self
                .last_warning_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                reason,
                "rate limiter cannot reach Redis: requests are let through"
            );
        }
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`) around every route, inside the auth
/// layer; `None` (no Redis, or limits turned off) lets everything through.
pub async fn layer(
    State(limiter): State<Option<std::sync::Arc<RateLimiter>>>,
    req: Request,
    next: Next,
) -> Response {
    let (Some(limiter), Some(caller)) = (limiter, req.extensions().get::<Caller>()) else {
        return next.run(req).await;
    };
    let Some(decision) = limiter.decide(caller).await else {
        return next.run(req).await;
    };
    let mut response = if decision.allowed {
        metrics::record_rate_limit("allowed");
        next.run(req).await
    } else {
        metrics::record_rate_limit("limited");
        ApiError::RateLimited {
            retry_after_secs: decision.retry_after_secs,
        }
        .into_response()
    };
    set_headers(response.headers_mut(), &decision);
    response
}

fn set_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(LIMIT, HeaderValue::from(decision.limit));
    headers.insert(REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RESET, HeaderValue::from(decision.reset_secs));
}
