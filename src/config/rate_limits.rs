//! Request limits per organization and per token (GCRA in Redis).

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// Request limits per organization and per token, kept in Redis (`IBEX_API_REDIS_URL`) and
    /// shared by every replica. `false`, or no Redis, turns them off. When Redis does not answer,
    /// requests go through (fail open).
    ENABLED = text("IBEX_API_RATE_LIMIT_ENABLED", "true");
    /// Requests a second an organization may make, sustained, across all its tokens and all
    /// replicas.
    ORG_PER_SECOND = number("IBEX_API_RATE_LIMIT_ORG_PER_SECOND", "100", 1, 1_000_000);
    /// Requests an organization may make at once before the sustained rate applies.
    ORG_BURST = number("IBEX_API_RATE_LIMIT_ORG_BURST", "200", 1, 1_000_000);
    /// Requests a second one token may make, sustained.
    TOKEN_PER_SECOND = number("IBEX_API_RATE_LIMIT_TOKEN_PER_SECOND", "50", 1, 1_000_000);
    /// Requests one token may make at once.
    TOKEN_BURST = number("IBEX_API_RATE_LIMIT_TOKEN_BURST", "100", 1, 1_000_000);
    /// Organizations with limits of their own: `ORG_ID=PER_SECOND/BURST` separated by commas, e.g.
    /// `0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70=500/1000`.
    ORG_OVERRIDES = text("IBEX_API_RATE_LIMIT_ORG_OVERRIDES", "");
    /// How long a request waits for the limiter's Redis; past it the request goes through and Redis
    /// is left alone for a second.
    TIMEOUT = millis("IBEX_API_RATE_LIMIT_TIMEOUT_MS", "100", 1);
}

/// A rate-limit bucket's size: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u32,
}

/// The limits in force: defaults, and organizations with their own.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub org: Limit,
    pub token: Limit,
    pub org_overrides: HashMap<Uuid, Limit>,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// `None` turns the limits off (also when there is no Redis).
    pub limits: Option<Limits>,
    pub timeout: Duration,
}

impl RateLimitConfig {
    pub(super) fn read(v: &Values) -> Result<Self, ConfigError> {
        let enabled = v.flag(&ENABLED)?;
        let limit = |rate: &Setting, burst: &Setting| -> Result<Limit, ConfigError> {
            Ok(Limit {
                per_second: v.number(rate)? as f64,
                burst: v.number(burst)? as u32,
            })
        };
        let limits = Limits {
            org: limit(&ORG_PER_SECOND, &ORG_BURST)?,
            token: limit(&TOKEN_PER_SECOND, &TOKEN_BURST)?,
            org_overrides: overrides(v)?,
        };
        Ok(Self {
            limits: enabled.then_some(limits),
            timeout: v.millis(&TIMEOUT)?,
        })
    }
}

fn overrides(v: &Values) -> Result<HashMap<Uuid, Limit>, ConfigError> {
    let expected = || {
        ORG_OVERRIDES.error("expected ORG_ID=PER_SECOND/BURST, comma separated, positive integers")
    };
    let mut found = HashMap::new();
    for entry in v
        .get(&ORG_OVERRIDES)
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (org_id, numbers) = entry.split_once('=').ok_or_else(expected)?;
        let (rate, burst) = numbers.split_once('/').ok_or_else(expected)?;
        let org_id = Uuid::try_parse(org_id.trim()).map_err(|_| expected())?;
        let (Ok(rate), Ok(burst)) = (rate.trim().parse::<u32>(), burst.trim().parse::<u32>())
        else {
            return Err(expected());
        };
        if rate == 0 || burst == 0 {
            return Err(expected());
        }
        found.insert(
            org_id,
            Limit {
                per_second: f64::from(rate),
                burst,
            },
        );
    }
    Ok(found)
}
