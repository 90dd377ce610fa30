//! A development stand-in for the platform's memory service, for `--dev` and the tests: the same
//! HTTP contract (`POST /internal/memories/search`), ranking an agent's memories by PostgreSQL
//! full-text search instead of embeddings. Loopback only. Like the real service it reads only
//! the organization the request names, under row-level security.

use std::net::SocketAddr;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db::Database;

#[derive(Debug, Deserialize)]
struct SearchCall {
    org_id: Uuid,
    agent_id: Uuid,
    query: String,
    limit: i64,
    #[serde(default)]
    filters: Filters,
}

#[derive(Debug, Default, Deserialize)]
struct Filters {
    category: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    min_confidence: Option<f64>,
}

async fn search(
    State(db): State<Database>,
    Json(call): Json<SearchCall>,
) -> Result<Json<Value>, StatusCode> {
    let unavailable = |_| StatusCode::SERVICE_UNAVAILABLE;
    let mut tx = db.begin_for_job(call.org_id).await.map_err(unavailable)?;
    // Any word of the query may match (plainto_tsquery alone would demand all of them).
    let limit = call.limit.clamp(1, 50);
    let rows: Vec<(Uuid, f64)> = tx
        .query(
            "WITH q AS (SELECT replace(plainto_tsquery('english', $3)::text, '&', '|')::tsquery AS q)
             SELECT m.id, ts_rank_cd(to_tsvector('english', m.content), q.q)::float8 AS score
             FROM ibex_core.memories m, q
             WHERE m.org_id = $1 AND m.agent_id = $2 AND m.deleted_at IS NULL
               AND m.status = 'active'
               AND to_tsvector('english', m.content) @@ q.q
               AND ($4::text IS NULL OR m.category = $4)
               AND ($5::float8 IS NULL OR m.confidence >= $5)
               AND (SELECT count(*) FROM ibex_core.memory_tags t
                    WHERE t.memory_id = m.id AND t.tag = ANY($6)) = cardinality($6::text[])
             ORDER BY score DESC, m.created_at DESC, m.id DESC
             LIMIT $7",
            &[
                &call.org_id,
                &call.agent_id,
                &call.query,
                &call.filters.category,
                &call.filters.min_confidence,
                &call.filters.tags,
                &limit,
            ],
        )
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    tx.commit().await.map_err(unavailable)?;
    let results: Vec<Value> = rows
        .into_iter()
        .map(|(id, score)| json!({"memory_id": id, "score": score}))
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// Serves the stand-in on `listen` (give port 0 for a free one); returns where it listens.
pub async fn spawn(listen: SocketAddr, db: Database) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/internal/memories/search", post(search))
        .with_state(db);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}
