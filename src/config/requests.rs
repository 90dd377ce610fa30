//! What the API keeps for its callers between requests: idempotent answers and list cursors.

use std::time::Duration;

use super::ConfigError;
use super::secret::Secret;
use super::setting::{Setting, Values};

settings! {
    /// How long the answer to a POST with an Idempotency-Key is kept for its retries (24 hours);
    /// expired keys are swept every minute in batches of 1,000.
    IDEMPOTENCY_TTL = millis("IBEX_API_IDEMPOTENCY_TTL_MS", "86400000", 1_000);
    /// Secrets that sign list cursors (HMAC-SHA256), separated by commas, each at least 32
    /// characters: the first signs, every one verifies, so a rotation puts the new key first and
    /// keeps the old one for a while. Every replica needs the same keys. Empty: a random key per
    /// process, and a cursor works only on the replica that issued it. Never logged.
    CURSOR_KEYS = text("IBEX_API_CURSOR_KEYS", "");
}

#[derive(Debug, Clone)]
pub struct RequestsConfig {
    /// How long the answer to a POST with an Idempotency-Key is kept.
    pub idempotency_ttl: Duration,
    /// Cursor signing keys, the signing one first; empty: a random key of this process.
    pub cursor_keys: Vec<Secret>,
}

impl RequestsConfig {
    pub(super) fn read(v: &Values) -> Result<Self, ConfigError> {
        let cursor_keys = v
            .get(&CURSOR_KEYS)
            .split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(|key| {
                if key.len() < 32 {
                    return Err(CURSOR_KEYS.error("each key must be at least 32 characters"));
                }
                Ok(Secret::new(key))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            idempotency_ttl: v.millis(&IDEMPOTENCY_TTL)?,
            cursor_keys,
        })
    }
}
