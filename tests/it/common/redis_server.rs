//! Redis: one throwaway server per test binary that needs one.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub use ibex_api::devenv::redis::TempRedis;
use serde_json::Value;

pub fn redis() -> &'static Mutex<TempRedis> {
    static REDIS: OnceLock<Mutex<TempRedis>> = OnceLock::new();
    REDIS.get_or_init(|| Mutex::new(TempRedis::start().expect("start redis-server for the tests")))
}

pub fn redis_url() -> String {
    redis().lock().unwrap().url()
}

/// A subscription to `channel` on the shared redis-server, ready when this returns.
pub async fn subscribe(channel: &str) -> redis::aio::PubSub {
    subscribe_at(&redis_url(), channel).await
}

/// A subscription to `channel` on the redis-server at `url`, ready when this returns.
pub async fn subscribe_at(url: &str, channel: &str) -> redis::aio::PubSub {
    let client = redis::Client::open(url).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(channel).await.unwrap();
    pubsub
}

/// The next message on `pubsub`, within `limit`.
pub async fn next_message(pubsub: &mut redis::aio::PubSub, limit: Duration) -> Option<Value> {
    use futures_util::StreamExt;
    let message = tokio::time::timeout(limit, pubsub.on_message().next())
        .await
        .ok()??;
    let payload: String = message.get_payload().unwrap();
    Some(serde_json::from_str(&payload).unwrap())
}

/// Restarts `redis` and subscribes to `channel` on it while the event publisher is held off
/// (its advisory lock, taken on `admin`), so no event slips out before anyone listens.
pub async fn restart_and_subscribe(
    redis: &mut TempRedis,
    admin: &mut sqlx::PgConnection,
    channel: &str,
) -> redis::aio::PubSub {
    let publisher =
        |statement| sqlx::query(statement).bind(ibex_api::events::publisher::PUBLISHER_LOCK);
    publisher("SELECT pg_advisory_lock($1)")
        .execute(&mut *admin)
        .await
        .unwrap();
    tokio::task::block_in_place(|| redis.restart()).unwrap();
    let events = subscribe_at(&redis.url(), channel).await;
    publisher("SELECT pg_advisory_unlock($1)")
        .execute(&mut *admin)
        .await
        .unwrap();
    events
}
