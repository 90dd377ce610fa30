//! The platform's S3-compatible object store (MinIO in its clusters): memory exports are written
//! to the export bucket, the archiver's session archives are read from the archive bucket.
//!
//! Download links are SigV4 query-string pre-signed URLs. They are signed for the *public*
//! endpoint, which may differ from the one the service uploads to (inside a cluster the API
//! reaches `minio.svc`; a browser needs the public host), and the signature covers the host, so
//! each bucket has a second client used only to sign.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use crate::config::S3Config;
use crate::readiness::ReadinessCheck;

/// Why the object store could not do something; callers map it to a job error code or a 503.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the object does not exist")]
    NotFound,
    /// Unreachable, refused, timed out or answered with an error. The detail is for logs only
    /// and never holds a credential.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound,
            other => Self::Unavailable(describe(&other)),
        }
    }
}

/// The error's kind without its source chain (which can quote a URL with a signature).
fn describe(e: &object_store::Error) -> String {
    match e {
        object_store::Error::Generic { store, .. } => format!("{store} request failed"),
        object_store::Error::PermissionDenied { .. } => "permission denied".into(),
        object_store::Error::Unauthenticated { .. } => "credentials refused".into(),
        other => {
            let text = other.to_string();
            text.split(':').next().unwrap_or("error").to_owned()
        }
    }
}

/// One bucket: a client for requests and one that signs URLs for the public endpoint.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    store: Arc<AmazonS3>,
    signer: Arc<AmazonS3>,
}

impl Bucket {
    fn new(config: &S3Config, name: &str) -> Result<Self, String> {
        let build = |endpoint: &str| {
            AmazonS3Builder::new()
                .with_endpoint(endpoint)
                .with_region(&config.region)
                .with_bucket_name(name)
                .with_access_key_id(&config.access_key_id)
                .with_secret_access_key(config.secret_access_key.expose())
                .with_allow_http(true)
                // MinIO and most S3-compatible servers address buckets by path.
                .with_virtual_hosted_style_request(false)
                .with_client_options(
                    ClientOptions::new()
                        .with_allow_http(true)
                        .with_connect_timeout(Duration::from_secs(2))
                        .with_timeout(Duration::from_secs(30)),
                )
                // A down store must surface in seconds (readiness, job retries), not minutes.
                .with_retry(RetryConfig {
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(5),
                    ..RetryConfig::default()
                })
                .build()
                .map_err(|_| format!("cannot configure the object store client for bucket {name}"))
        };
        Ok(Self {
            name: name.to_owned(),
            store: Arc::new(build(&config.endpoint)?),
            signer: Arc::new(build(&config.public_endpoint)?),
        })
    }

    /// The client as a plain object store (for streaming uploads).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store) as Arc<dyn ObjectStore>
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A pre-signed GET URL of `key` valid for `ttl`, and when it expires.
    pub async fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<(String, DateTime<Utc>), StorageError> {
        let expires_at = Utc::now() + ttl;
        let url = self
            .signer
            .signed_url(http::Method::GET, &Path::from(key), ttl)
            .await?;
        Ok((url.to_string(), expires_at))
    }

    /// How many objects lie under `prefix`, leaving out those under `except`.
    pub async fn count_prefix(
        &self,
        prefix: &str,
        except: Option<&str>,
    ) -> Result<u64, StorageError> {
        Ok(self.list_prefix(prefix, except).await?.len() as u64)
    }

    /// The keys under `prefix` (a whole path segment), leaving out those under `except`.
    pub async fn list_prefix(
        &self,
        prefix: &str,
        except: Option<&str>,
    ) -> Result<Vec<String>, StorageError> {
        let mut listed = self.store.list(Some(&Path::from(prefix)));
        let mut keys = Vec::new();
        while let Some(meta) = listed.next().await {
            let key = meta?.location.to_string();
            if except.is_some_and(|except| key.starts_with(&format!("{except}/"))) {
                continue;
            }
            keys.push(key);
        }
        keys.sort();
        Ok(keys)
    }

    /// Deletes `key`; one that is not there counts as deleted.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The object's bytes as a stream of chunks (memory flat however large).
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<
        futures_util::stream::BoxStream<'static, Result<bytes::Bytes, StorageError>>,
        StorageError,
    > {
        let got = self.store.get(&Path::from(key)).await?;
        Ok(got
            .into_stream()
            .map(|chunk| chunk.map_err(StorageError::from))
            .boxed())
    }

    /// Deletes every object under `prefix` (a whole path segment, `{org_id}` for the GDPR
    /// deletion); returns how many went.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, StorageError> {
        let prefix = Path::from(prefix);
        let locations = self
            .store
            .list(Some(&prefix))
            .map(|meta| meta.map(|m| m.location))
            .boxed();
        let mut deleted = self.store.delete_stream(locations);
        let mut count = 0;
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => count += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(count)
    }
}

/// Both buckets and the link lifetime.
#[derive(Debug, Clone)]
pub struct Storage {
    pub exports: Bucket,
    pub archives: Bucket,
    /// How long a pre-signed download URL stays valid (15 minutes by default).
    pub url_ttl: Duration,
}

impl Storage {
    /// `None` when no credentials are configured: exports and replays answer 503 then.
    pub fn from_config(config: Option<&S3Config>) -> Result<Option<Self>, String> {
        let Some(s3) = config else {
            return Ok(None);
        };
        Ok(Some(Self {
            exports: Bucket::new(s3, &s3.export_bucket)?,
            archives: Bucket::new(s3, &s3.archive_bucket)?,
            url_ttl: s3.presign_ttl,
        }))
    }

    pub fn buckets(&self) -> [&Bucket; 2] {
        [&self.exports, &self.archives]
    }
}

/// `/ready`'s `object_store` check, not critical: without the store only exports and replays
/// fail. A HEAD of an object that does not exist proves the endpoint, the credentials and the
/// bucket all answer.
#[derive(Debug)]
pub struct StorageReady(pub Option<Storage>);

impl ReadinessCheck for StorageReady {
    fn check(&self, deadline: Duration) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let Some(storage) = &self.0 else {
                return Err("not configured (IBEX_API_S3_ACCESS_KEY_ID is empty)".into());
            };
            let probe = async {
                for bucket in storage.buckets() {
                    match bucket.exists(".ibex-readiness-probe").await {
                        Ok(_) => {}
                        Err(e) => return Err(format!("bucket {}: {e}", bucket.name)),
                    }
                }
                Ok("reachable".to_owned())
            };
            tokio::time::timeout(deadline, probe)
                .await
                .unwrap_or_else(|_| Err("no answer".into()))
        })
    }
}
