//! Throwaway local dependencies for `--dev` and the tests: a PostgreSQL cluster started from this
//! machine's binaries, and the development data seeded into it.

pub mod postgres;
pub mod redis;

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::auth::dev::{DEV_ORG_ID, DEV_USER_ID};

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
    let _ = conn.close().await;
    Ok(())
}
