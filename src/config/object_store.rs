//! The S3-compatible object store: exports and session archives.

use std::time::Duration;

use super::ConfigError;
use super::secret::Secret;
use super::setting::{Setting, Values};

settings! {
    /// S3-compatible object store the service uploads exports to and reads archives from (MinIO:
    /// http://minio.svc:9000).
    ENDPOINT = text("IBEX_API_S3_ENDPOINT", "http://127.0.0.1:9000");
    /// Endpoint that pre-signed download URLs are signed for, as browsers reach the store
    /// (https://files.example.com). Empty: IBEX_API_S3_ENDPOINT.
    PUBLIC_ENDPOINT = text("IBEX_API_S3_PUBLIC_ENDPOINT", "");
    /// Region used in SigV4 signatures.
    REGION = text("IBEX_API_S3_REGION", "us-east-1");
    /// Access key of the object store. Empty turns the object store off: exports and replays answer
    /// 503.
    ACCESS_KEY_ID = text("IBEX_API_S3_ACCESS_KEY_ID", "");
    /// Secret key of the object store. Never logged.
    SECRET_ACCESS_KEY = text("IBEX_API_S3_SECRET_ACCESS_KEY", "");
    /// Bucket memory exports are written to, under `{org_id}/`.
    EXPORT_BUCKET = text("IBEX_API_EXPORT_BUCKET", "ibex-exports");
    /// Bucket the platform's archiver writes session archives to, under `{org_id}/`.
    ARCHIVE_BUCKET = text("IBEX_API_ARCHIVE_BUCKET", "ibex-archives");
    /// Lifetime of a pre-signed download URL (export downloads, session replays): 15 minutes.
    PRESIGN_TTL = millis("IBEX_API_S3_PRESIGN_TTL_MS", "900000", 1000).up_to(7 * 86_400_000);
}

/// The object store's settings.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: String,
    /// What download URLs are signed for; the endpoint unless set.
    pub public_endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub export_bucket: String,
    pub archive_bucket: String,
    /// At most 7 days: SigV4 pre-signed URLs live no longer.
    pub presign_ttl: Duration,
}

impl S3Config {
    /// `None` when no access key is set: the object store is off.
    pub(super) fn read(v: &Values) -> Result<Option<Self>, ConfigError> {
        let endpoint = v.http_url(&ENDPOINT)?;
        let public_endpoint = v
            .optional_http_url(&PUBLIC_ENDPOINT)?
            .unwrap_or_else(|| endpoint.clone());
        let export_bucket = bucket(v, &EXPORT_BUCKET)?;
        let archive_bucket = bucket(v, &ARCHIVE_BUCKET)?;
        let presign_ttl = v.millis(&PRESIGN_TTL)?;
        let (access_key_id, secret) = (v.get(&ACCESS_KEY_ID), v.get(&SECRET_ACCESS_KEY));
        if access_key_id.is_empty() {
            return Ok(None);
        }
        if secret.is_empty() {
            return Err(
                SECRET_ACCESS_KEY.error(format!("is required when {} is set", ACCESS_KEY_ID.name))
            );
        }
        Ok(Some(Self {
            endpoint,
            public_endpoint,
            region: v.get(&REGION).to_owned(),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: Secret::new(secret),
            export_bucket,
            archive_bucket,
            presign_ttl,
        }))
    }
}

fn bucket(v: &Values, setting: &Setting) -> Result<String, ConfigError> {
    let name = v.get(setting);
    let valid = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    if valid {
        Ok(name.to_owned())
    } else {
        Err(setting.error("expected an S3 bucket name (3-63 of a-z, 0-9, '-', '.')"))
    }
}
