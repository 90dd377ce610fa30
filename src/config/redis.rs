//! Redis: where platform events are published and rate limits are kept; and the outbox publisher.

use std::time::Duration;

use super::ConfigError;
use super::secret::SecretUrl;
use super::setting::{Setting, Values};

settings! {
    /// Redis' and the outbox publisher's settings.
    pub struct RedisConfig {
        /// Redis the platform events are published to (redis://[:password@]host:port[/db],
        /// rediss:// for TLS). The password is never logged. Empty turns publishing off: events
        /// wait in the outbox until it is set.
        URL = text("IBEX_API_REDIS_URL", "redis://127.0.0.1:6379")
            => url: Option<SecretUrl>, by redis_url;
        /// How often the event publisher looks for events committed by other replicas (this
        /// replica's own are published at once).
        OUTBOX_POLL = millis("IBEX_API_OUTBOX_POLL_MS", "250", 10) => outbox_poll: Duration;
    }
}

/// `None` turns publishing off (events wait in the outbox) and the rate limits with it.
fn redis_url(v: &Values, setting: &Setting) -> Result<Option<SecretUrl>, ConfigError> {
    match v.get(setting) {
        "" => Ok(None),
        url if !(url.starts_with("redis://") || url.starts_with("rediss://")) => {
            Err(setting.error("expected a redis:// or rediss:// URL"))
        }
        url => {
            redis::IntoConnectionInfo::into_connection_info(url)
                .map_err(|_| setting.error("not a valid Redis URL"))?;
            Ok(Some(SecretUrl::new(url)))
        }
    }
}
