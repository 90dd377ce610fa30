//! What the API keeps for its callers between requests: idempotent answers and list cursors.

use std::time::Duration;

use super::ConfigError;
use super::secret::Secret;
use super::setting::{Setting, Values};

settings! {
    /// What the API keeps for its callers between requests.
    pub struct RequestsConfig {
        /// How long the answer to a POST with an Idempotency-Key is kept for its retries (24
        /// hours); expired keys are swept every minute in batches of 1,000.
        IDEMPOTENCY_TTL = millis("IBEX_API_IDEMPOTENCY_TTL_MS", "86400000", 1_000)
            => idempotency_ttl: Duration;
        /// Secrets that sign list cursors (HMAC-SHA256), separated by commas, each at least 32
        /// characters: the first signs, every one verifies, so a rotation puts the new key first
        /// and keeps the old one for a while. Every replica needs the same keys. Empty: a random
        /// key per process, and a cursor works only on the replica that issued it. Never logged.
        CURSOR_KEYS = text("IBEX_API_CURSOR_KEYS", "") => cursor_keys: Vec<Secret>, by cursor_keys;
    }
}

fn cursor_keys(v: &Values, setting: &Setting) -> Result<Vec<Secret>, ConfigError> {
    v.list(setting)
        .map(|key| {
            if key.len() < 32 {
                return Err(setting.error("each key must be at least 32 characters"));
            }
            Ok(Secret::new(key))
        })
        .collect()
}
