//! Delivers outbox events to Redis: in id order (so per organization in commit order), one batch
//! per transaction, marked delivered only after Redis accepted the batch. While Redis is down
//! nothing is marked and the batch is retried with backoff; a restart loses nothing because the
//! outbox is the queue. Delivery is at least once (a crash between publishing and marking repeats
//! a batch): subscribers de-duplicate.
//!
//! Several replicas may run a publisher; a transaction-scoped advisory lock lets one at a time
//! take a batch, which keeps the global order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use sqlx::{Connection, Row};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::SecretUrl;
use crate::db::Database;
use crate::readiness::ReadinessCheck;

const BATCH: i64 = 100;
/// Any constant works; it only has to be the same for every replica.
pub const PUBLISHER_LOCK: i64 = 0x1b3c_0b0c_5e17_0001;
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("database: {0}")]
    Database(String),
    #[error("redis: {0}")]
    Redis(String),
}

impl From<sqlx::Error> for PublishError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(crate::db::error::describe_unavailable(&e))
    }
}

/// Starts the publisher; `None` for `redis_url` leaves events in the outbox and says so once.
pub fn spawn(db: Database, redis_url: Option<SecretUrl>, poll: Duration) -> JoinHandle<()> {
    let wake = db.outbox_wake();
    tokio::spawn(async move {
        let Some(url) = redis_url else {
            tracing::warn!(
                "IBEX_API_REDIS_URL is empty: platform events are kept in the outbox and not published"
            );
            return;
        };
        let client = match redis::Client::open(url.expose()) {
            Ok(client) => client,
            Err(_) => {
                tracing::error!(redis = %url, "invalid Redis URL: events are not published");
                return;
            }
        };
        run(db, client, wake, poll).await;
    })
}

async fn run(db: Database, client: redis::Client, wake: Arc<Notify>, poll: Duration) {
    let mut redis: Option<ConnectionManager> = None;
    let mut backoff = Duration::ZERO;
    let mut failing = false;
    loop {
        if backoff.is_zero() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        } else {
            tokio::time::sleep(backoff).await;
        }
        loop {
            match publish_batch(&db, &client, &mut redis).await {
                Ok(delivered) => {
                    if failing {
                        tracing::info!("event publishing recovered");
                        failing = false;
                    }
                    backoff = Duration::ZERO;
                    if delivered < BATCH as usize {
                        break;
                    }
                }
                Err(problem) => {
                    if !failing {
                        tracing::warn!(reason = %problem, "event publishing failed; retrying with backoff");
                        failing = true;
                    }
                    if matches!(problem, PublishError::Redis(_)) {
                        redis = None; // reconnect on the next attempt
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                    break;
                }
            }
        }
    }
}

/// Publishes the oldest undelivered events; returns how many were delivered.
async fn publish_batch(
    db: &Database,
    client: &redis::Client,
    redis: &mut Option<ConnectionManager>,
) -> Result<usize, PublishError> {
    let mut conn = db
        .platform()
        .await
        .map_err(|_| PublishError::Database("no connection".into()))?;
    let mut tx = conn.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(PUBLISHER_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(0); // another replica is publishing
    }
    let rows = sqlx::query(
        "SELECT id, channel, payload, delete_key, zrem_key, zrem_members FROM ibex_core.outbox
         WHERE delivered_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        ids.push(row.get::<i64, _>("id"));
        // A cache eviction goes before its announcement: whoever reacts to the event finds the
        // cache already without the ids.
        let zrem_key: Option<String> = row.get("zrem_key");
        let zrem_members: Option<Vec<String>> = row.get("zrem_members");
        if let (Some(key), Some(members)) = (zrem_key, zrem_members) {
            pipe.zrem(key, members).ignore();
        }
        let channel: Option<String> = row.get("channel");
        let payload: Option<String> = row.get("payload");
        if let (Some(channel), Some(payload)) = (channel, payload) {
            pipe.publish(channel, payload).ignore();
        }
        if let Some(key) = row.get::<Option<String>, _>("delete_key") {
            pipe.del(key).ignore();
        }
    }
    let connection = match redis {
        Some(connection) => connection,
        None => {
            let connected =
                tokio::time::timeout(REDIS_TIMEOUT, ConnectionManager::new(client.clone()))
                    .await
                    .map_err(|_| PublishError::Redis("connect timed out".into()))?
                    .map_err(|e| PublishError::Redis(format!("{:?}", e.kind())))?;
            redis.insert(connected)
        }
    };
    tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(connection))
        .await
        .map_err(|_| PublishError::Redis("no answer".into()))?
        .map_err(|e| PublishError::Redis(format!("{:?}", e.kind())))?;
    sqlx::query(
        "UPDATE ibex_core.outbox SET delivered_at = now(), attempts = attempts + 1
         WHERE id = ANY($1)",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    // Delivered events are kept a day for inspection, then removed.
    sqlx::query(
        "DELETE FROM ibex_core.outbox WHERE id IN (
             SELECT id FROM ibex_core.outbox
             WHERE delivered_at < now() - interval '1 day' LIMIT 1000)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids.len())
}

/// `/ready`'s `redis` check: not critical (a Redis outage delays events, it loses none), and it
/// reports the outbox backlog with the oldest undelivered event's age.
#[derive(Debug)]
pub struct RedisReady {
    pub db: Database,
    pub client: Option<redis::Client>,
}

/// Undelivered events and the oldest one's age in seconds (for `/ready` and the metrics).
pub async fn backlog(db: &Database) -> Result<(i64, Option<f64>), crate::error::ApiError> {
    let mut conn = db.platform().await?;
    let row = sqlx::query(
        "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at))::float8 AS age
         FROM ibex_core.outbox WHERE delivered_at IS NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.get("n"), row.get("age")))
}

/// The outbox backlog, for `/metrics`: one bounded query, gauges left as they were when the
/// database cannot answer.
#[derive(Debug)]
pub struct OutboxSampler(pub Database);

impl crate::observability::metrics::Sampler for OutboxSampler {
    fn sample(&self) -> futures_util::future::BoxFuture<'_, ()> {
        use crate::observability::metrics::{OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE};
        Box::pin(async move {
            let answer = tokio::time::timeout(Duration::from_millis(500), backlog(&self.0)).await;
            if let Ok(Ok((count, oldest))) = answer {
                metrics::gauge!(OUTBOX_BACKLOG).set(count as f64);
                metrics::gauge!(OUTBOX_OLDEST_AGE).set(oldest.unwrap_or(0.0));
            }
        })
    }
}

impl RedisReady {
    async fn backlog(&self) -> String {
        match backlog(&self.db).await {
            Ok((count, Some(age))) => format!("{count} undelivered events, oldest {age:.1} s old"),
            Ok((_, None)) => "0 undelivered events".into(),
            Err(_) => "outbox backlog unknown".into(),
        }
    }
}

impl ReadinessCheck for RedisReady {
    fn check(&self, deadline: Duration) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let started = Instant::now();
            let ping = async {
                let Some(client) = &self.client else {
                    return Err("publishing is off (IBEX_API_REDIS_URL is empty)".to_owned());
                };
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("unreachable ({:?})", e.kind()))?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map_err(|e| format!("no PONG ({:?})", e.kind()))?;
                Ok(())
            };
            let pinged = tokio::time::timeout(deadline / 2, ping)
                .await
                .unwrap_or_else(|_| Err("no answer".into()));
            let remaining = deadline.saturating_sub(started.elapsed());
            let backlog = tokio::time::timeout(remaining, self.backlog())
                .await
                .unwrap_or_else(|_| "outbox backlog unknown".into());
            match pinged {
                Ok(()) => Ok(format!("reachable; {backlog}")),
                Err(problem) => Err(format!("{problem}; {backlog}")),
            }
        })
    }
}
