//! Data requests from outside, over real HTTP, PostgreSQL, Redis, ClickHouse, the S3 server and
//! the auth server: each subject kind and type, the rules and transitions, and faults. After
//! each erasure a direct look into PostgreSQL, ClickHouse and the object store finds nothing of
//! the subject and everything of everyone else.
//!
//! Every test works in an organization of its own: ClickHouse is shared by the test binary.

mod end_user;
mod faults;
mod organization;
mod rules;
mod user;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::common::*;

pub const REQUESTS: &str = "/v1/data-requests";

/// The app with the object store, ClickHouse and Redis, a worker that retries fast, an
/// organization of the test's own with an owner; keep it alive as long as the test.
pub struct World {
    pub auth: FakeAuth,
    pub app: TestApp,
    pub s3: TempS3,
    pub org: Uuid,
    pub owner: Uuid,
    /// The owner's token (known to the auth service's token store, so it may revoke tokens).
    pub token: String,
}

impl World {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        let auth = FakeAuth::start().await;
        let s3 = TempS3::start().unwrap();
        let mut settings = s3_settings(&s3);
        settings.extend([
            ("IBEX_API_CLICKHOUSE_URL", clickhouse().url()),
            ("IBEX_API_REDIS_URL", redis_url()),
            ("IBEX_API_DATA_REQUEST_LEASE_MS", "3000".into()),
            ("IBEX_API_DATA_REQUEST_RETRY_MAX_MS", "500".into()),
            ("IBEX_API_MAX_BODY_BYTES", "262144".into()),
            ("IBEX_API_GDPR_BATCH_SIZE", "2".into()),
        ]);
        let mut overrides = as_refs(&settings);
        overrides.extend_from_slice(extra);
        let app = TestApp::start(auth.addr, &overrides).await;
        let org = Uuid::now_v7();
        app.db.add_org(org).await;
        let owner = app.db.add_user(org, "owner").await;
        let token = auth.stored_token(org, Some(owner), ALL_PERMISSIONS);
        Self {
            auth,
            app,
            s3,
            org,
            owner,
            token,
        }
    }

    /// An active operator of the organization with `role`, and a token of theirs with every
    /// permission.
    pub async fn operator(&self, role: &str) -> (Uuid, String) {
        let user = self.app.db.add_user(self.org, role).await;
        let token = self
            .auth
            .stored_token(self.org, Some(user), ALL_PERMISSIONS);
        (user, token)
    }

    /// Files a request; its body.
    pub async fn file(&self, body: Value) -> Value {
        let reply = self.app.post(REQUESTS, &self.token, body).await;
        reply.assert_located(202, REQUESTS)
    }

    /// `GET {path}` as the owner, which must answer 200; its body.
    pub async fn read(&self, path: &str) -> Value {
        let reply = self.app.read(path, &self.token).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    pub async fn get(&self, id: &str) -> Value {
        self.read(&format!("{REQUESTS}/{id}")).await
    }

    /// Polls the request until it is in `status` (within 30 s); its body.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        self.wait_for_within(id, status, Duration::from_secs(30))
            .await
    }

    /// Polls the request until it is in `status` (within `limit`); its body.
    pub async fn wait_for_within(&self, id: &str, status: &str, limit: Duration) -> Value {
        let deadline = Deadline::after(limit);
        loop {
            let request = self.get(id).await;
            if request["status"] == status {
                return request;
            }
            assert!(
                !["succeeded", "canceled", "rejected"]
                    .contains(&request["status"].as_str().unwrap())
                    || request["status"] == status,
                "request {id} ended {} instead of {status}: {request:#}",
                request["status"]
            );
            let late = format!("request {id} not {status} within {limit:?}: {request:#}");
            deadline.tick(late).await;
        }
    }

    /// The bytes of a succeeded access request's archive, through its pre-signed link.
    pub async fn archive(&self, id: &str) -> Vec<u8> {
        let link = self
            .app
            .read(&format!("{REQUESTS}/{id}/archive"), &self.token)
            .await;
        assert_eq!(link.status, 200, "{}", link.text());
        let (status, zip) = plain_get(link.json()["url"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        zip
    }

    /// `POST …/{id}/{action}` (`confirm`, `cancel`) as the owner.
    pub async fn act(&self, id: &str, action: &str) -> Reply {
        let path = format!("{REQUESTS}/{id}/{action}");
        self.app.post(&path, &self.token, json!({})).await
    }

    /// Confirms an erasure awaiting confirmation; its body.
    pub async fn confirm(&self, id: &str) -> Value {
        let reply = self.act(id, "confirm").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// `GET /v1/data-request-receipts/{receipt_id}`, with no token.
    pub async fn public_receipt(&self, receipt_id: &str) -> Reply {
        let path = format!("/v1/data-request-receipts/{receipt_id}");
        self.app.get(&path, &[]).await
    }

    /// The receipt of a succeeded request, its JWS verified with the published keys; the claims.
    pub async fn verified_receipt(&self, id: &str) -> Value {
        let body = self.read(&format!("{REQUESTS}/{id}/receipt")).await;
        let claims = self.verify(body["jws"].as_str().unwrap()).await;
        assert_eq!(claims, body["receipt"], "the receipt is what was signed");
        claims
    }

    /// The claims of a compact JWS, verified with `/.well-known/jwks.json` alone.
    pub async fn verify(&self, jws: &str) -> Value {
        let keys = self.app.get("/.well-known/jwks.json", &[]).await.json();
        verify_jws(&keys, jws)
    }

    pub async fn admin(&self) -> sqlx::PgConnection {
        self.app.db.admin().await
    }

    /// Rows of `table` in this organization (as the superuser, outside the API).
    pub async fn count(&self, sql: &str) -> i64 {
        let mut admin = self.admin().await;
        admin.value(sql, self.org).await
    }
}

/// The claims of a compact EdDSA JWS, verified with the key of its `kid` in the JWK Set `keys`.
pub fn verify_jws(keys: &Value, jws: &str) -> Value {
    let mut parts = jws.split('.');
    let (header, payload, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let head: Value = serde_json::from_slice(&B64URL.decode(header).unwrap()).unwrap();
    assert_eq!(head["alg"], "EdDSA");
    let key = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == head["kid"])
        .expect("the signing key is published");
    let x: [u8; 32] = B64URL
        .decode(key["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let signature = Signature::from_slice(&B64URL.decode(signature).unwrap()).unwrap();
    VerifyingKey::from_bytes(&x)
        .unwrap()
        .verify(format!("{header}.{payload}").as_bytes(), &signature)
        .expect("the signature verifies with the published key");
    serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The commitment a request shows: SHA-256 of `salt ":" subject`, the subject as compact JSON
/// with its fields in order (kind, user_id, external_ids, session_ids, agent_ids), lists sorted,
/// written here independently of the service's serializer.
pub fn commitment(salt: &str, subject: &Value) -> String {
    let mut ordered = String::from("{");
    let mut first = true;
    for field in [
        "kind",
        "user_id",
        "external_ids",
        "session_ids",
        "agent_ids",
    ] {
        if let Some(value) = subject.get(field) {
            if !first {
                ordered.push(',');
            }
            first = false;
            ordered.push_str(&format!("\"{field}\":{value}"));
        }
    }
    ordered.push('}');
    sha256_hex(format!("{salt}:{ordered}").as_bytes())
}

/// A subject with nothing but its kind: what an erased request keeps.
pub fn redacted(kind: &str) -> Value {
    json!({"kind": kind, "user_id": null, "external_ids": [], "session_ids": [], "agent_ids": []})
}

/// The ZIP's files by name.
pub fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        files.insert(file.name().unwrap().into_owned(), content);
    }
    files
}

/// The NDJSON lines of a file, parsed.
pub fn lines(content: &[u8]) -> Vec<Value> {
    String::from_utf8(content.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Two people talking to two agents of the world's organization, and one of another
/// organization under the same external id.
pub struct People {
    pub agent_a: Uuid,
    pub agent_b: Uuid,
    /// person-1: a session of agent A, a soft-deleted one of agent B (both `external_id`
    /// "person-1"), and one without external id, named by its id.
    pub sessions_1: [Uuid; 3],
    /// person-2: a session of agent A ("person-2").
    pub session_2: Uuid,
    /// person-1's memories (one soft-deleted) and person-2's; one of the agent's own (no session).
    pub memories_1: [Uuid; 2],
    pub memory_2: Uuid,
    pub agent_memory: Uuid,
    /// A succeeded export of agent A made after person-1's memories, and one made before them.
    pub export_after: Uuid,
    pub export_before: Uuid,
    pub other_org: Uuid,
    pub other_session: Uuid,
}

pub const PERSON_1: &str = "person-1";

impl World {
    /// Seeds [`People`]: rows, archives, traces, export files, hot cache.
    pub async fn seed_people(&self) -> People {
        let org = self.org;
        let db = &self.app.db;
        let (agent_a, agent_b) = (db.add_agent(org).await, db.add_agent(org).await);
        let other_org = Uuid::now_v7();
        db.add_org(other_org).await;
        let other_agent = db.add_agent(other_org).await;
        let ids: Vec<Uuid> = (0..12).map(|_| Uuid::now_v7()).collect();
        let people = People {
            agent_a,
            agent_b,
            sessions_1: [ids[0], ids[1], ids[2]],
            session_2: ids[3],
            memories_1: [ids[4], ids[5]],
            memory_2: ids[6],
            agent_memory: ids[7],
            export_after: ids[8],
            export_before: ids[9],
            other_org,
            other_session: ids[10],
        };
        let mut admin = self.admin().await;
        // The export made before person-1's memories existed.
        let sql = "INSERT INTO ibex_core.memory_exports (id, org_id, agent_id, format, status,
                   object_key, row_count, size_bytes, created_at, finished_at)
             VALUES ($1, $2, $3, 'json', 'succeeded', $4, 1, 10, now() - interval '1 hour',
                     now() - interval '1 hour')";
        run_sql!(
            &mut admin,
            sql,
            people.export_before,
            org,
            agent_a,
            format!("{org}/memories/{agent_a}/{}.ndjson", people.export_before)
        );
        for (id, org, agent, external, deleted) in [
            (people.sessions_1[0], org, agent_a, Some(PERSON_1), false),
            (people.sessions_1[1], org, agent_b, Some(PERSON_1), true),
            (people.sessions_1[2], org, agent_b, None, false),
            (people.session_2, org, agent_a, Some("person-2"), false),
            (
                people.other_session,
                other_org,
                other_agent,
                Some(PERSON_1),
                false,
            ),
        ] {
            let sql = "INSERT INTO ibex_core.sessions (id, org_id, agent_id, external_id, model,
                       provider, turn_count, deleted_at)
                 VALUES ($1, $2, $3, $4, 'gpt-4o-mini', 'openai', 2,
                         CASE WHEN $5 THEN now() END)";
            run_sql!(&mut admin, sql, id, org, agent, external, deleted);
            for turn in 0..2 {
                let sql = "INSERT INTO ibex_core.checkpoints (id, org_id, session_id, turn_index)
                     VALUES ($1, $2, $3, $4)";
                run_sql!(&mut admin, sql, Uuid::now_v7(), org, id, turn);
            }
            // The archiver's file.
            let dir = self
                .s3
                .root()
                .join(format!("ibex-archives/{org}/{agent}/{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join(format!("{id}.ndjson")),
                format!("{{\"session\":\"{id}\",\"turn\":0}}\n"),
            )
            .unwrap();
        }
        for (id, agent, session, deleted, content) in [
            (
                people.memories_1[0],
                agent_a,
                Some(people.sessions_1[0]),
                false,
                "person-1 likes tea",
            ),
            (
                people.memories_1[1],
                agent_b,
                Some(people.sessions_1[1]),
                true,
                "person-1 lives in Lyon",
            ),
            (
                people.memory_2,
                agent_a,
                Some(people.session_2),
                false,
                "person-2 likes coffee",
            ),
            (
                people.agent_memory,
                agent_a,
                None,
                false,
                "answer in French",
            ),
        ] {
            let sql = "INSERT INTO ibex_core.memories (id, org_id, agent_id, session_id, content,
                     content_hash, category, deleted_at)
                 VALUES ($1, $2, $3, $4, $5, repeat('a', 64), 'preference',
                         CASE WHEN $6 THEN now() END)";
            run_sql!(&mut admin, sql, id, org, agent, session, content, deleted);
            for tag in ["drinks", "a/slash"] {
                let sql = "INSERT INTO ibex_core.memory_tags (memory_id, org_id, tag)
                           VALUES ($1, $2, $3)";
                run_sql!(&mut admin, sql, id, org, tag);
            }
            let sql = "INSERT INTO ibex_core.memory_versions (id, memory_id, org_id, operation)
                 VALUES ($1, $2, $3, 'create')";
            run_sql!(&mut admin, sql, Uuid::now_v7(), id, org);
        }
        // person-1's memory relates to person-2's; person-2's to the agent's own.
        for (source, target) in [
            (people.memories_1[0], people.memory_2),
            (people.memory_2, people.agent_memory),
        ] {
            let sql = "INSERT INTO ibex_core.memory_relationships (id, org_id, source_memory_id,
                     target_memory_id, relation) VALUES ($1, $2, $3, $4, 'contradicts')";
            run_sql!(&mut admin, sql, Uuid::now_v7(), org, source, target);
        }
        let sql = "INSERT INTO ibex_core.memory_exports (id, org_id, agent_id, format, status,
                   object_key, row_count, size_bytes, finished_at)
             VALUES ($1, $2, $3, 'json', 'succeeded', $4, 3, 10, now() + interval '1 second')";
        run_sql!(
            &mut admin,
            sql,
            people.export_after,
            org,
            agent_a,
            format!("{org}/memories/{agent_a}/{}.ndjson", people.export_after)
        );
        for export in [people.export_before, people.export_after] {
            let dir = self
                .s3
                .root()
                .join(format!("ibex-exports/{org}/memories/{agent_a}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{export}.ndjson")), b"{}\n").unwrap();
        }
        // Traces: two per session, and one of the agent without a session.
        let mut traces = Vec::new();
        for (org, agent, session) in [
            (org, agent_a, people.sessions_1[0].to_string()),
            (org, agent_b, people.sessions_1[2].to_string()),
            (org, agent_a, people.session_2.to_string()),
            (org, agent_a, String::new()),
            (other_org, other_agent, people.other_session.to_string()),
        ] {
            for _ in 0..2 {
                traces.push(json!({
                    "request_id": Uuid::new_v4().to_string(),
                    "org_id": org.to_string(),
                    "agent_id": agent.to_string(),
                    "session_id": session,
                    "model": "gpt-4o-mini",
                    "provider": "openai",
                    "input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                    "proxy_overhead_ms": 1.0, "ttfb_ms": 50.0, "total_latency_ms": 150.0,
                    "status_code": 200, "error_code": "",
                    "requested_at": chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
                }));
            }
        }
        insert_json(&clickhouse().url(), &traces).await;
        // The proxy's hot cache of agent A.
        let mut redis = redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let key = format!("{org}:hot_memories:{agent_a}");
        let _: () = redis::cmd("ZADD")
            .arg(&key)
            .arg(1)
            .arg(people.memories_1[0].to_string())
            .arg(2)
            .arg(people.memory_2.to_string())
            .query_async(&mut redis)
            .await
            .unwrap();
        people
    }

    /// How many traces the sessions have in ClickHouse.
    pub async fn traces_of(&self, org: Uuid, sessions: &[Uuid]) -> u64 {
        let client = clickhouse::Client::default()
            .with_url(clickhouse().url())
            .with_validation(false);
        let sessions: Vec<String> = sessions.iter().map(Uuid::to_string).collect();
        client
            .query("SELECT count() FROM ibex.llm_traces WHERE org_id = ? AND has(?, session_id)")
            .bind(org.to_string())
            .bind(sessions)
            .fetch_one::<u64>()
            .await
            .unwrap()
    }

    /// Whether the object exists in the S3 server's store (its files on disk).
    pub fn object_exists(&self, bucket: &str, key: &str) -> bool {
        self.s3.root().join(bucket).join(key).exists()
    }
}
