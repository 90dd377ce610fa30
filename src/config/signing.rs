//! The keys that sign what the service attests (data-request receipts, archive manifests).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

use super::ConfigError;
use super::secret::Secret;
use super::setting::{Setting, Values};

settings! {
    /// The signing keys.
    pub struct SigningConfig {
        /// Ed25519 private keys (32-byte seeds, base64url without padding) that sign data-request
        /// receipts and archive manifests, separated by commas: the first signs, and every one's
        /// public key is published at /.well-known/jwks.json, so a rotation puts the new key first
        /// and keeps the old ones. Make one with `head -c 32 /dev/urandom | basenc --base64url | tr -d
        /// =`. Empty: a random key per process, whose signatures verify only while it runs. Never
        /// logged.
        KEYS = text("IBEX_API_SIGNING_KEYS", "") => keys: Vec<Secret>, by seeds;
    }
}

fn seeds(v: &Values, setting: &Setting) -> Result<Vec<Secret>, ConfigError> {
    v.list(setting)
        .map(|key| match B64URL.decode(key) {
            Ok(seed) if seed.len() == 32 => Ok(Secret::new(key)),
            // Never quote the value: it is a private key.
            _ => Err(setting.error("each key must be 32 bytes in base64url without padding")),
        })
        .collect()
}

impl SigningConfig {
    /// The seeds, decoded (checked when read).
    pub fn seeds(&self) -> Vec<[u8; 32]> {
        self.keys
            .iter()
            .filter_map(|key| B64URL.decode(key.expose()).ok()?.try_into().ok())
            .collect()
    }
}
