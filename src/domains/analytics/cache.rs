//! Cache-aside in Redis for analytics answers: key `analytics:` + SHA-256 (hex) of the
//! organization, the operation and its normalized parameters. The cache is never a reason to
//! fail: every Redis operation has a short deadline, and after a failure the cache is skipped
//! for a few seconds (so a Redis outage costs no request more than one deadline).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const OPERATION_TIMEOUT: Duration = Duration::from_millis(150);
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(5);

pub struct AnalyticsCache {
    client: Option<redis::Client>,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    skip_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for AnalyticsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsCache")
            .field("enabled", &self.client.is_some())
            .finish()
    }
}

/// The cache key of an answer.
pub fn key(org_id: Uuid, normalized: &str) -> String {
    let digest = Sha256::digest(format!("{org_id}|{normalized}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("analytics:{hex}")
}

impl AnalyticsCache {
    /// `None`: no Redis configured, every answer comes from ClickHouse.
    pub fn new(client: Option<redis::Client>) -> Self {
        Self {
            client,
            conn: tokio::sync::Mutex::new(None),
            skip_until: Mutex::new(None),
        }
    }

    fn skipping(&self) -> bool {
        let skip = self.skip_until.lock().expect("not poisoned");
        skip.is_some_and(|until| Instant::now() < until)
    }

    /// Skips the cache for a while and drops the connection: after an outage of some seconds
    /// the client's own reconnection has given up, and a kept connection would fail every request
    /// after each skip for minutes (the chaos soak saw two); a fresh one connects at once.
    async fn failed(&self) {
        *self.skip_until.lock().expect("not poisoned") = Some(Instant::now() + SKIP_AFTER_FAILURE);
        *self.conn.lock().await = None;
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        let client = self.client.as_ref()?;
        if self.skipping() {
            return None;
        }
        let mut slot = self.conn.lock().await;
        // Requests that queued behind a connect that failed skip too: each retrying in turn made
        // the queue's last one wait one deadline per request ahead of it (the chaos soak saw
        // analytics answers of 475 ms five seconds into a Redis outage).
        if self.skipping() {
            return None;
        }
        if slot.is_none() {
            // One attempt within the deadline: the client's default retries with backoff a
            // refused connection until the deadline, so a stopped Redis cost the whole 150 ms.
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(OPERATION_TIMEOUT)
                .set_response_timeout(OPERATION_TIMEOUT)
                .set_number_of_retries(0);
            let connect = ConnectionManager::new_with_config(client.clone(), config);
            match tokio::time::timeout(OPERATION_TIMEOUT, connect).await {
                Ok(Ok(conn)) => *slot = Some(conn),
                _ => {
                    drop(slot);
                    self.failed().await;
                    return None;
                }
            }
        }
        slot.clone()
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut conn = self.connection().await?;
        match tokio::time::timeout(OPERATION_TIMEOUT, conn.get::<_, Option<Vec<u8>>>(key)).await {
            Ok(Ok(hit)) => hit,
            _ => {
                self.failed().await;
                None
            }
        }
    }

    pub async fn put(&self, key: &str, value: &[u8], ttl_secs: u64) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let set = conn.set_ex::<_, _, ()>(key, value, ttl_secs);
        if !matches!(
            tokio::time::timeout(OPERATION_TIMEOUT, set).await,
            Ok(Ok(()))
        ) {
            self.failed().await;
        }
    }
}
