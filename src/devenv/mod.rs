//! Throwaway local dependencies for `--dev` and the tests: a PostgreSQL cluster started from this
//! machine's binaries, and the development data seeded into it.

pub mod clickhouse;
pub mod postgres;
pub mod redis;
pub mod s3;
pub mod stack;

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::auth::dev::{DEV_ORG_ID, DEV_USER_ID};

/// The dev agents' ids.
pub fn dev_agent_ids() -> [Uuid; 3] {
    [0, 1, 2].map(|i| Uuid::from_u128(DEV_AGENTS[i].0))
}

/// The first dev agent, the one the printed examples use.
pub const DEV_AGENT_ID: Uuid = Uuid::from_u128(DEV_AGENTS[0].0);

/// Agents a newcomer finds in `--dev`: (id, name, slug, status).
const DEV_AGENTS: &[(u128, &str, &str, &str)] = &[
    (
        0x0192_f0c4_5d7e_7c3a_9f1e_2b3c_4d5e_7001,
        "Support bot",
        "support-bot",
        "active",
    ),
    (
        0x0192_f0c4_5d7e_7c3a_9f1e_2b3c_4d5e_7002,
        "Research assistant",
        "research-assistant",
        "active",
    ),
    (
        0x0192_f0c4_5d7e_7c3a_9f1e_2b3c_4d5e_7003,
        "Billing helper",
        "billing-helper",
        "paused",
    ),
];

/// Seeds the development organization, its owner and a few agents. Runs as the login role (a
/// platform path, outside any tenant) and is idempotent, so a `--dev` pointed at an existing
/// database can run it again.
pub async fn seed(url: &str) -> Result<(), String> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| format!("seed: {}", crate::db::error::describe_unavailable(&e)))?;
    let seed_error =
        |e: sqlx::Error| format!("seed: {}", crate::db::error::describe_unavailable(&e));
    sqlx::query(
        "INSERT INTO ibex_core.organizations (id, name, slug, tier, billing_email)
         VALUES ($1, 'Development org', 'dev-org', 'pro', 'billing@dev.example')
         ON CONFLICT DO NOTHING",
    )
    .bind(DEV_ORG_ID)
    .execute(&mut conn)
    .await
    .map_err(seed_error)?;
    sqlx::query(
        "INSERT INTO ibex_core.users (id, org_id, email, name, role, status)
         VALUES ($1, $2, 'owner@dev.example', 'Dev Owner', 'owner', 'active')
         ON CONFLICT DO NOTHING",
    )
    .bind(DEV_USER_ID)
    .bind(DEV_ORG_ID)
    .execute(&mut conn)
    .await
    .map_err(seed_error)?;
    for (id, name, slug, status) in DEV_AGENTS {
        sqlx::query(
            "INSERT INTO ibex_core.agents (id, org_id, created_by, name, slug, status, config)
             VALUES ($1, $2, $3, $4, $5, $6, '{\"model\": \"gpt-4o-mini\"}')
             ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::from_u128(*id))
        .bind(DEV_ORG_ID)
        .bind(DEV_USER_ID)
        .bind(name)
        .bind(slug)
        .bind(status)
        .execute(&mut conn)
        .await
        .map_err(seed_error)?;
    }
    seed_memories(&mut conn).await.map_err(seed_error)?;
    seed_sessions(&mut conn).await.map_err(seed_error)?;
    seed_data_request(&mut conn).await.map_err(seed_error)?;
    let _ = conn.close().await;
    Ok(())
}

/// One person's access request, received three days ago, so `/v1/data-requests` shows one from
/// the start (the worker carries it out: plan, archive, receipt).
async fn seed_data_request(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    use crate::domains::data_requests::model::{Subject, SubjectKind};
    let subject = Subject {
        kind: SubjectKind::EndUser,
        user_id: None,
        external_ids: vec!["conv-1-3".into()],
        session_ids: Vec::new(),
        agent_ids: Vec::new(),
    };
    let salt = "5eed0000000000000000000000000001";
    sqlx::query(
        "INSERT INTO ibex_core.data_requests
             (id, org_id, type, subject_kind, subject, subject_salt, subject_commitment, reference,
              received_at, due_at, created_by)
         VALUES ($1, $2, 'access', 'end_user', $3, $4, $5, 'DEV-TICKET-1',
                 now() - interval '3 days', now() - interval '3 days' + interval '1 month', $6)
         ON CONFLICT DO NOTHING",
    )
    .bind(Uuid::from_u128(0x0192_f0c4_5d7e_7c3a_9f1e_da7a_0000_0001))
    .bind(DEV_ORG_ID)
    .bind(serde_json::to_value(&subject).expect("a subject serializes"))
    .bind(salt)
    .bind(subject.commitment(salt))
    .bind(DEV_USER_ID)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What the dev agents remember: (category, source, confidence, tags, content).
const DEV_MEMORIES: &[(&str, &str, f32, &[&str], &str)] = &[
    (
        "preference",
        "extracted",
        0.94,
        &["customer", "communication"],
        "The customer prefers answers in short bullet points and dislikes long paragraphs.",
    ),
    (
        "factual",
        "user_provided",
        0.99,
        &["customer", "billing"],
        "Acme Corp is on the Pro plan and renews every January 15th.",
    ),
    (
        "behavioral",
        "inferred",
        0.71,
        &["customer"],
        "Users from Acme usually ask follow-up questions about invoices right after a refund.",
    ),
    (
        "procedural",
        "imported",
        0.88,
        &["support", "refunds"],
        "To issue a refund: verify the order id, check the 30-day window, then open a billing ticket.",
    ),
    (
        "episodic",
        "extracted",
        0.65,
        &["support", "outage"],
        "On November 3rd the customer reported a login outage that lasted about 40 minutes.",
    ),
    (
        "factual",
        "extracted",
        0.83,
        &["product"],
        "The mobile app supports offline mode since version 4.2.",
    ),
    (
        "preference",
        "user_provided",
        0.97,
        &["communication", "language"],
        "Reply in German when the customer writes in German.",
    ),
    (
        "procedural",
        "extracted",
        0.79,
        &["support", "escalation"],
        "Escalate to a human agent when the customer mentions a legal complaint.",
    ),
];

/// Seeds the dev agents' memories, with tags and one relationship each, idempotently.
async fn seed_memories(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    for (agent_index, (agent, ..)) in DEV_AGENTS.iter().enumerate() {
        let mut previous: Option<Uuid> = None;
        for (i, (category, source, confidence, tags, content)) in DEV_MEMORIES.iter().enumerate() {
            let id = Uuid::from_u128(
                0x0192_f0c4_5d7e_7c3a_9f1e_0000_0000_0000
                    + (agent_index as u128) * 0x100
                    + i as u128,
            );
            let inserted = sqlx::query(
                "INSERT INTO ibex_core.memories
                     (id, org_id, agent_id, content, content_hash, category, source, confidence,
                      retrieval_count, metadata, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, encode(sha256(convert_to($4, 'UTF8')), 'hex'), $5, $6, $7,
                         $8, jsonb_build_object('seeded', true),
                         now() - make_interval(hours => $9), now() - make_interval(hours => $9))
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(DEV_ORG_ID)
            .bind(Uuid::from_u128(*agent))
            .bind(content)
            .bind(category)
            .bind(source)
            .bind(confidence)
            .bind((i * 3) as i32)
            .bind((i * 7 + agent_index) as i32)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                continue;
            }
            for tag in *tags {
                sqlx::query(
                    "INSERT INTO ibex_core.memory_tags (memory_id, org_id, tag) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(DEV_ORG_ID)
                .bind(tag)
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query(
                "INSERT INTO ibex_core.memory_versions (id, memory_id, org_id, operation)
                 VALUES (ibex_core.uuid_v7(), $1, $2, 'create')",
            )
            .bind(id)
            .bind(DEV_ORG_ID)
            .execute(&mut *conn)
            .await?;
            if let Some(previous) = previous {
                sqlx::query(
                    "INSERT INTO ibex_core.memory_relationships
                         (id, org_id, source_memory_id, target_memory_id, relation)
                     VALUES (ibex_core.uuid_v7(), $1, $2, $3, 'related_to')",
                )
                .bind(DEV_ORG_ID)
                .bind(id)
                .bind(previous)
                .execute(&mut *conn)
                .await?;
            }
            previous = Some(id);
        }
        sqlx::query(
            "UPDATE ibex_core.agents SET total_memories =
                 (SELECT count(*) FROM ibex_core.memories
                  WHERE agent_id = $1 AND deleted_at IS NULL)
             WHERE id = $1",
        )
        .bind(Uuid::from_u128(*agent))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Sessions per dev agent; the first of each agent is still active, the rest completed.
const DEV_SESSIONS_PER_AGENT: u128 = 6;
const DEV_MODELS: &[(&str, &str)] = &[
    ("gpt-4o-mini", "openai"),
    ("claude-3-5-sonnet", "anthropic"),
    ("llama-3.1-70b", "groq"),
];

/// The id of the dev agent's `n`-th seeded session.
pub fn dev_session_id(agent_index: usize, n: u128) -> Uuid {
    Uuid::from_u128(0x0192_f0c4_5d7e_7c3a_9f1e_5e55_0000_0000 + (agent_index as u128) * 0x100 + n)
}

/// Seeds sessions with one checkpoint per turn for the dev agents, idempotently.
async fn seed_sessions(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    for (agent_index, (agent, ..)) in DEV_AGENTS.iter().enumerate() {
        for n in 0..DEV_SESSIONS_PER_AGENT {
            let id = dev_session_id(agent_index, n);
            let (model, provider) = DEV_MODELS[(n as usize + agent_index) % DEV_MODELS.len()];
            let turns = 2 + (n as i32 * 3) % 7;
            let active = n == 0;
            let inserted = sqlx::query(
                "INSERT INTO ibex_core.sessions
                     (id, org_id, agent_id, external_id, status, model, provider, turn_count,
                      total_input_tokens, total_output_tokens, total_latency_ms,
                      created_at, updated_at, completed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8 * 420, $8 * 180, $8 * 950,
                         now() - make_interval(hours => $9), now() - make_interval(hours => $9),
                         CASE WHEN $5 = 'completed' THEN now() - make_interval(hours => $9) + interval '10 minutes' END)
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(DEV_ORG_ID)
            .bind(Uuid::from_u128(*agent))
            .bind(format!("conv-{}-{n}", agent_index + 1))
            .bind(if active { "active" } else { "completed" })
            .bind(model)
            .bind(provider)
            .bind(turns)
            .bind((n * 11 + agent_index as u128) as i32)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                continue;
            }
            sqlx::query(
                "INSERT INTO ibex_core.checkpoints
                     (id, org_id, session_id, turn_index, request_id, model, provider,
                      input_tokens, output_tokens, latency_ms, is_streaming, created_at)
                 SELECT ibex_core.uuid_v7(), $1, $2, t, gen_random_uuid(), $3, $4, 420, 180, 950,
                        t % 2 = 0, s.created_at + t * interval '1 minute'
                 FROM ibex_core.sessions s, generate_series(0, $5 - 1) AS t
                 WHERE s.id = $2",
            )
            .bind(DEV_ORG_ID)
            .bind(id)
            .bind(model)
            .bind(provider)
            .bind(turns)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(
            "UPDATE ibex_core.agents SET total_sessions =
                 (SELECT count(*) FROM ibex_core.sessions WHERE agent_id = $1 AND deleted_at IS NULL)
             WHERE id = $1",
        )
        .bind(Uuid::from_u128(*agent))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Writes the archive of every completed dev session, as the platform's archiver would (the
/// active ones have none yet: their replay is `409 SESSION_NOT_ARCHIVED`).
pub async fn seed_archives(storage: &crate::storage::Storage) -> Result<(), String> {
    use object_store::ObjectStoreExt;
    let store = storage.archives.store();
    for (agent_index, (agent, ..)) in DEV_AGENTS.iter().enumerate() {
        for n in 1..DEV_SESSIONS_PER_AGENT {
            let session = dev_session_id(agent_index, n);
            let agent = Uuid::from_u128(*agent);
            let key = crate::domains::sessions::repo::archive_key(DEV_ORG_ID, agent, session);
            let lines: String = (0..2 + (n as i32 * 3) % 7)
                .map(|turn| {
                    serde_json::json!({
                        "turn_index": turn,
                        "request": {"role": "user", "content": format!("question {turn}")},
                        "response": {"role": "assistant", "content": format!("answer {turn}")},
                    })
                    .to_string()
                        + "\n"
                })
                .collect();
            store
                .put(
                    &object_store::path::Path::from(key.as_str()),
                    lines.into_bytes().into(),
                )
                .await
                .map_err(|e| format!("seed archives: {e}"))?;
        }
    }
    Ok(())
}
