//! Optional cache of successful validations (off unless `IBEX_API_AUTH_CACHE_TTL_MS` > 0).
//!
//! Keys are SHA-256 digests, so the raw token is never held after the request. An entry lives
//! at most min(TTL, expires_at - now). Concurrent validations of one token share a single call,
//! run as its own task so that a caller hanging up does not fail the others. Failures and
//! outages are never stored: the next request asks again.
//!
//! The trade-off: a revoked token keeps working here for up to the TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use sha2::{Digest, Sha256};

use super::caller::Caller;
use super::client::AuthFailure;

type Key = [u8; 32];
type Pending = Shared<BoxFuture<'static, Result<Caller, AuthFailure>>>;

#[derive(Debug)]
pub struct ValidationCache {
    ttl: Duration,
    max_entries: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, (Caller, Instant)>,
    pending: HashMap<Key, Pending>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("entries", &self.entries.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl ValidationCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            state: Mutex::default(),
        }
    }

    /// A cached caller, or the result of `validate` (shared with concurrent askers).
    pub async fn get_or_validate<F>(
        self: &Arc<Self>,
        token: &str,
        validate: F,
    ) -> Result<Caller, AuthFailure>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Caller, AuthFailure>>,
    {
        let key: Key = Sha256::digest(token.as_bytes()).into();
        let pending = {
            let mut state = self.state.lock().expect("cache lock");
            match state.entries.get(&key) {
                Some((caller, until)) if *until > Instant::now() => {
                    crate::observability::metrics::record_cache_lookup(true);
                    return Ok(caller.clone());
                }
                Some(_) => {
                    state.entries.remove(&key);
                }
                None => {}
            }
            crate::observability::metrics::record_cache_lookup(false);
            if let Some(pending) = state.pending.get(&key) {
                pending.clone()
            } else {
                let cache = Arc::clone(self);
                let call = validate();
                let task = tokio::spawn(async move {
                    let result = call.await;
                    cache.complete(key, &result);
                    result
                });
                let pending = async move {
                    task.await.unwrap_or_else(|_| {
                        Err(AuthFailure::Unavailable(
                            "validation task failed".to_owned(),
                        ))
                    })
                }
                .boxed()
                .shared();
                state.pending.insert(key, pending.clone());
                pending
            }
        };
        pending.await
    }

    fn complete(&self, key: Key, result: &Result<Caller, AuthFailure>) {
        let mut state = self.state.lock().expect("cache lock");
        state.pending.remove(&key);
        let Ok(caller) = result else { return };
        let lifetime = match caller.expires_at {
            Some(at) => at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(self.ttl),
            None => self.ttl,
        };
        if lifetime.is_zero() {
            return;
        }
        if state.entries.len() >= self.max_entries {
            let now = Instant::now();
            state.entries.retain(|_, (_, until)| *until > now);
        }
        if state.entries.len() >= self.max_entries {
            // Still full of live entries: drop an arbitrary one rather than grow.
            if let Some(victim) = state.entries.keys().next().copied() {
                state.entries.remove(&victim);
            }
        }
        state
            .entries
            .insert(key, (caller.clone(), Instant::now() + lifetime));
    }

    /// Drops every entry whose caller is the token `token_id`.
    pub fn forget_token(&self, token_id: uuid::Uuid) {
        let mut state = self.state.lock().expect("cache lock");
        state
            .entries
            .retain(|_, (caller, _)| caller.token_id != Some(token_id));
    }

    pub fn len(&self) -> usize {
        self.state.lock().expect("cache lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Permissions;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn caller(expires_in: Option<Duration>) -> Caller {
        Caller {
            org_id: uuid::Uuid::now_v7(),
            user_id: None,
            agent_id: None,
            token_id: None,
            permissions: Permissions(1),
            expires_at: expires_in.map(|d| SystemTime::now() + d),
        }
    }

    #[tokio::test]
    async fn coalesces_and_caches_successes_only() {
        let cache = Arc::new(ValidationCache::new(Duration::from_secs(60), 10));
        let calls = Arc::new(AtomicUsize::new(0));
        let ask = |result: Result<Caller, AuthFailure>| {
            let calls = Arc::clone(&calls);
            move || {
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    result
                }
                .boxed()
            }
        };
        let failure = Err(AuthFailure::Unavailable("down".into()));
        assert!(
            cache
                .get_or_validate("t", ask(failure.clone()))
                .await
                .is_err()
        );
        assert!(cache.get_or_validate("t", ask(failure)).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2, "failures are not cached");

        let ok = Ok(caller(None));
        let (a, b) = tokio::join!(
            cache.get_or_validate("u", ask(ok.clone())),
            cache.get_or_validate("u", ask(ok.clone()))
        );
        assert_eq!(a.unwrap(), b.unwrap());
        cache.get_or_validate("u", ask(ok)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one call for three askers");
    }

    #[tokio::test]
    async fn never_outlives_the_token_or_the_bound() {
        let cache = Arc::new(ValidationCache::new(Duration::from_secs(60), 2));
        let ok = |c: Caller| move || async move { Ok(c) }.boxed();
        cache
            .get_or_validate("short", ok(caller(Some(Duration::from_millis(30)))))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let expired =
            cache.get_or_validate("short", || async { Err(AuthFailure::Rejected) }.boxed());
        assert_eq!(expired.await, Err(AuthFailure::Rejected));
        for token in ["a", "b", "c", "d"] {
            cache
                .get_or_validate(token, ok(caller(None)))
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 2);
    }
}
