//! The access archive: one ZIP file with the subject's data, written to a temporary file as it is
//! read (rows streamed from PostgreSQL, chunks from ClickHouse and the object store), so memory
//! stays flat however large the archive; then uploaded to the export bucket in parts.
//!
//! Inside: `README.txt` for the person, one NDJSON file per table (the stored columns, one row a
//! line), `clickhouse/llm_traces.ndjson`, the objects verbatim under `objects/`, `manifest.json`
//! (per file its path, rows, bytes and SHA-256, and what was left out and why) and
//! `manifest.jws` (the manifest signed). Never inside: token secrets or hashes, idempotency
//! records, pre-signed URLs, embeddings, anyone else's data.

use std::fs::File;
use std::io::{Read, Seek, Write};

use chrono::Utc;
use futures_util::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use super::model::{Subject, SubjectKind, hex};
use super::plan::{Location, access_stores, data_request_prefix};
use crate::domains::analytics::store::TraceStore;
use crate::domains::organizations::deletion::begin_in_org;
use crate::signing::SigningKeys;
use crate::storage::Storage;

/// One file of the archive, as the manifest lists it.
#[derive(Debug, Serialize)]
pub struct FileEntry {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Something the archive leaves out, and why.
#[derive(Debug, Serialize)]
pub struct Excluded {
    pub what: &'static str,
    pub why: &'static str,
}

const ALWAYS_EXCLUDED: &[Excluded] = &[
    Excluded {
        what: "token secrets and hashes",
        why: "never stored by this service; the auth service keeps only a hash, which is a credential",
    },
    Excluded {
        what: "idempotency records",
        why: "replays of API answers kept for 24 hours for retries; what they hold is in the other files",
    },
    Excluded {
        what: "pre-signed URLs",
        why: "made on each read, never stored; they would be credentials",
    },
    Excluded {
        what: "embeddings",
        why: "kept by the memory service, derived from the memories' content included here",
    },
    Excluded {
        what: "the outbox of platform events",
        why: "a delivery queue of change notices naming ids only, emptied as it is delivered",
    },
];

/// Why building failed: which store could not be read.
#[derive(Debug)]
pub struct Failed {
    pub store: &'static str,
    pub kind: String,
}

fn failed(store: &'static str) -> impl Fn(String) -> Failed {
    move |kind| Failed { store, kind }
}

/// The ZIP being written, and what the manifest will say of each file.
struct Builder {
    zip: ZipWriter<File>,
    files: Vec<FileEntry>,
    current: Option<(String, Sha256, u64, u64)>,
}

impl Builder {
    fn new(file: File) -> Self {
        Self {
            zip: ZipWriter::new(file),
            files: Vec::new(),
            current: None,
        }
    }

    fn start(&mut self, path: &str) -> Result<(), Failed> {
        self.end()?;
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        self.zip
            .start_file(path, options)
            .map_err(|e| local(e.to_string()))?;
        self.current = Some((path.to_owned(), Sha256::new(), 0, 0));
        Ok(())
    }

    /// Writes `chunk`; `rows` lines it adds.
    fn write(&mut self, chunk: &[u8], rows: u64) -> Result<(), Failed> {
        let (_, hasher, bytes, counted) = self.current.as_mut().expect("a file is open");
        hasher.update(chunk);
        *bytes += chunk.len() as u64;
        *counted += rows;
        self.zip.write_all(chunk).map_err(|e| local(e.to_string()))
    }

    fn end(&mut self) -> Result<(), Failed> {
        if let Some((path, hasher, bytes, rows)) = self.current.take() {
            self.files.push(FileEntry {
                path,
                rows,
                bytes,
                sha256: hex(&hasher.finalize()),
            });
        }
        Ok(())
    }

    /// A file outside the manifest (the manifest itself, its signature).
    fn unlisted(&mut self, path: &str, content: &[u8]) -> Result<(), Failed> {
        self.end()?;
        self.zip
            .start_file(path, SimpleFileOptions::default())
            .map_err(|e| local(e.to_string()))?;
        self.zip
            .write_all(content)
            .map_err(|e| local(e.to_string()))
    }
}

fn local(kind: String) -> Failed {
    Failed {
        store: "archive",
        kind,
    }
}

/// What an archive is about.
pub struct Request<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub subject: &'a Subject,
    pub received_at: chrono::DateTime<Utc>,
    pub due_at: chrono::DateTime<Utc>,
    /// The frozen items, per store.
    pub items: &'a std::collections::BTreeMap<String, Vec<String>>,
}

/// The written archive.
pub struct Written {
    pub key: String,
    pub sha256: String,
    pub bytes: i64,
    pub files: usize,
}

/// Builds the archive of `request` and uploads it; returns its key, digest and size.
pub async fn build(
    conn: &mut PgConnection,
    request: &Request<'_>,
    storage: &Storage,
    traces: Option<&TraceStore>,
    signing: &SigningKeys,
) -> Result<Written, Failed> {
    let mut temp = tempfile::tempfile().map_err(|e| local(e.to_string()))?;
    let file = temp.try_clone().map_err(|e| local(e.to_string()))?;
    let mut zip = Builder::new(file);
    zip.start("README.txt")?;
    zip.write(readme(request.subject.kind).as_bytes(), 0)?;
    let mut excluded: Vec<&Excluded> = ALWAYS_EXCLUDED.iter().collect();
    match request.subject.kind {
        SubjectKind::EndUser => end_user(conn, request, storage, traces, &mut zip).await?,
        SubjectKind::User => user(conn, request, &mut zip).await?,
        SubjectKind::Organization => organization(conn, request, storage, traces, &mut zip).await?,
    }
    if request.subject.kind == SubjectKind::User {
        excluded.push(&TOKENS_EXCLUDED);
    }
    zip.end()?;
    let manifest = json!({
        "request": {
            "id": request.id,
            "org_id": request.org_id,
            "type": "access",
            "received_at": millis(request.received_at),
            "due_at": millis(request.due_at),
        },
        "subject": request.subject,
        "generated_at": millis(Utc::now()),
        "files": zip.files,
        "excluded": excluded,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
    zip.unlisted("manifest.json", &manifest_bytes)?;
    zip.unlisted("manifest.jws", signing.sign(&manifest).as_bytes())?;
    let files = zip.files.len();
    zip.zip.finish().map_err(|e| local(e.to_string()))?;
    // Digest and upload from the file, in parts.
    temp.rewind().map_err(|e| local(e.to_string()))?;
    let key = super::plan::archive_object_key(request.org_id, request.id);
    let mut upload = BufWriter::with_capacity(
        storage.exports.store(),
        Path::from(key.as_str()),
        5 * 1024 * 1024,
    )
    .with_max_concurrency(2);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut bytes = 0i64;
    let uploaded: Result<(), Failed> = async {
        loop {
            let n = temp.read(&mut buffer).map_err(|e| local(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            bytes += n as i64;
            upload
                .write_all(&buffer[..n])
                .await
                .map_err(|e| failed("exports_bucket")(e.to_string()))?;
        }
        upload
            .shutdown()
            .await
            .map_err(|e| failed("exports_bucket")(e.to_string()))
    }
    .await;
    if let Err(failure) = uploaded {
        let _ = upload.abort().await;
        return Err(failure);
    }
    Ok(Written {
        key,
        sha256: hex(&hasher.finalize()),
        bytes,
        files,
    })
}

fn millis(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const TOKENS_EXCLUDED: Excluded = Excluded {
    what: "token metadata",
    why: "kept by the platform's auth service, which does not attribute tokens to operators; the ids of the tokens the operator created or used are in postgresql/audit_events.ndjson",
};

fn readme(kind: SubjectKind) -> String {
    let whom = match kind {
        SubjectKind::EndUser => "you, as a person who talked to its AI agents",
        SubjectKind::User => "you, as an operator of its account",
        SubjectKind::Organization => "the organization",
    };
    format!(
        "This archive holds the data the IBEX platform keeps about {whom}, on behalf of the \
         organization that asked for it.\n\n\
         - postgresql/*.ndjson: one file per table, one record per line (JSON).\n\
         - clickhouse/llm_traces.ndjson: the record of each request your conversations made.\n\
         - objects/: stored files, exactly as kept.\n\
         - manifest.json: every file with its size, number of records and SHA-256 digest, and \
         what was left out and why.\n\
         - manifest.jws: the manifest signed by the platform (EdDSA); the public keys are \
         published at /.well-known/jwks.json of the API that made it.\n"
    )
}

/// Rows of `sql` (one `text` column: a row as JSON; `$1` the organization, `$2` the ids) into the
/// file at `path`; nothing written when there are none.
async fn rows(
    conn: &mut PgConnection,
    org_id: Uuid,
    sql: &str,
    ids: Option<Vec<String>>,
    zip: &mut Builder,
    path: &str,
) -> Result<(), Failed> {
    let db = |e: sqlx::Error| failed("postgresql")(crate::db::error::describe_unavailable(&e));
    let mut tx = begin_in_org(conn, org_id).await.map_err(db)?;
    let mut query = sqlx::query_scalar::<_, String>(sql).bind(org_id);
    if let Some(ids) = ids {
        query = query.bind(ids);
    }
    let mut stream = query.fetch(&mut *tx);
    let mut started = false;
    while let Some(row) = stream.next().await {
        let mut line = row.map_err(db)?;
        if !started {
            zip.start(path)?;
            started = true;
        }
        line.push('\n');
        zip.write(line.as_bytes(), 1)?;
    }
    drop(stream);
    tx.rollback().await.map_err(db)?;
    Ok(())
}

fn frozen(request: &Request<'_>, store: &str) -> Vec<String> {
    request.items.get(store).cloned().unwrap_or_default()
}

async fn end_user(
    conn: &mut PgConnection,
    request: &Request<'_>,
    storage: &Storage,
    traces: Option<&TraceStore>,
    zip: &mut Builder,
) -> Result<(), Failed> {
    let org = request.org_id;
    for (table, key) in [
        ("sessions", "id::text"),
        ("checkpoints", "id::text"),
        ("memories", "id::text"),
        ("memory_tags", "memory_id::text || '/' || tag"),
        ("memory_versions", "id::text"),
    ] {
        let sql = format!(
            "SELECT to_jsonb(t)::text FROM ibex_core.{table} t
             WHERE org_id = $1 AND {key} = ANY($2) ORDER BY {key}"
        );
        let ids = frozen(request, table);
        if !ids.is_empty() {
            rows(
                conn,
                org,
                &sql,
                Some(ids),
                zip,
                &format!("postgresql/{table}.ndjson"),
            )
            .await?;
        }
    }
    // A link to a memory that is not the person's names no such memory: its end is null.
    if !frozen(request, "memory_relationships").is_empty() {
        rows(
            conn,
            org,
            "SELECT (to_jsonb(t) || jsonb_build_object(
                 'source_memory_id', CASE WHEN source_memory_id::text = ANY($2) THEN source_memory_id END,
                 'target_memory_id', CASE WHEN target_memory_id::text = ANY($2) THEN target_memory_id END))::text
             FROM ibex_core.memory_relationships t
             WHERE org_id = $1 AND (source_memory_id::text = ANY($2) OR target_memory_id::text = ANY($2))
             ORDER BY id",
            Some(frozen(request, "memories")),
            zip,
            "postgresql/memory_relationships.ndjson",
        )
        .await?;
    }
    let sessions: Vec<Uuid> = frozen(request, "sessions")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    if let Some(traces) = traces {
        if !frozen(request, "llm_traces").is_empty() {
            trace_lines(traces.export_json(org, Some(&sessions)), zip).await?;
        }
    }
    for key in frozen(request, "session_archives") {
        object(&storage.archives, "session_archives", &key, zip).await?;
    }
    Ok(())
}

async fn user(
    conn: &mut PgConnection,
    request: &Request<'_>,
    zip: &mut Builder,
) -> Result<(), Failed> {
    let org = request.org_id;
    rows(
        conn,
        org,
        "SELECT to_jsonb(t)::text FROM ibex_core.users t WHERE org_id = $1 AND id::text = ANY($2)",
        Some(frozen(request, "users")),
        zip,
        "postgresql/users.ndjson",
    )
    .await?;
    let events = frozen(request, "audit_events");
    if !events.is_empty() {
        rows(
            conn,
            org,
            "SELECT to_jsonb(t)::text FROM ibex_core.audit_events t
             WHERE org_id = $1 AND id::text = ANY($2) ORDER BY occurred_at, id",
            Some(events),
            zip,
            "postgresql/audit_events.ndjson",
        )
        .await?;
    }
    let authored = frozen(request, "authored");
    if !authored.is_empty() {
        zip.start("authored.ndjson")?;
        for item in authored {
            let (kind, id) = item.split_once('/').unwrap_or(("", &item));
            let mut line = serde_json::to_vec(&json!({"kind": kind, "id": id})).expect("json");
            line.push(b'\n');
            zip.write(&line, 1)?;
        }
    }
    Ok(())
}

async fn organization(
    conn: &mut PgConnection,
    request: &Request<'_>,
    storage: &Storage,
    traces: Option<&TraceStore>,
    zip: &mut Builder,
) -> Result<(), Failed> {
    let org = request.org_id;
    for store in access_stores(SubjectKind::Organization) {
        match store.location {
            Location::Table => {
                let column = if store.name == "organizations" {
                    "id"
                } else {
                    "org_id"
                };
                let sql = format!(
                    "SELECT to_jsonb(t)::text FROM ibex_core.{} t WHERE {column} = $1",
                    store.name
                );
                rows(
                    conn,
                    org,
                    &sql,
                    None,
                    zip,
                    &format!("postgresql/{}.ndjson", store.name),
                )
                .await?;
            }
            Location::Exports | Location::Archives => {
                let (bucket, name) = if store.location == Location::Exports {
                    (&storage.exports, "exports_bucket")
                } else {
                    (&storage.archives, "archives_bucket")
                };
                let keys = bucket
                    .list_prefix(&org.to_string(), Some(&data_request_prefix(org)))
                    .await
                    .map_err(|e| failed(name)(e.to_string()))?;
                for key in keys {
                    object(bucket, name, &key, zip).await?;
                }
            }
            Location::Traces => {
                if let Some(traces) = traces {
                    trace_lines(traces.export_json(org, None), zip).await?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

async fn trace_lines(
    cursor: Result<clickhouse::query::BytesCursor, String>,
    zip: &mut Builder,
) -> Result<(), Failed> {
    let mut cursor = cursor.map_err(failed("llm_traces"))?;
    zip.start("clickhouse/llm_traces.ndjson")?;
    loop {
        match cursor.next().await {
            Ok(Some(chunk)) => {
                let lines = chunk.iter().filter(|b| **b == b'\n').count() as u64;
                zip.write(&chunk, lines)?;
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(failed("llm_traces")(e.to_string())),
        }
    }
}

async fn object(
    bucket: &crate::storage::Bucket,
    store: &'static str,
    key: &str,
    zip: &mut Builder,
) -> Result<(), Failed> {
    let mut stream = match bucket.get_stream(key).await {
        Ok(stream) => stream,
        // Gone since planning (a session deleted meanwhile): nothing to copy.
        Err(crate::storage::StorageError::NotFound) => return Ok(()),
        Err(e) => return Err(failed(store)(e.to_string())),
    };
    zip.start(&format!("objects/{}/{key}", bucket.name))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| failed(store)(e.to_string()))?;
        zip.write(&chunk, 0)?;
    }
    Ok(())
}
