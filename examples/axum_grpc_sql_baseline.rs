//! Benchmark reference for the data layer: bare axum, one ValidateToken call, then the least any
//! correct implementation must send PostgreSQL through sqlx, in the fewest round trips this
//! driver allows: BEGIN with the role and tenant settings as one message, the query, and the
//! transaction dropped so its ROLLBACK rides on the pool's release ping (three flights; sqlx
//! pings every connection it takes back). The rows as JSON. No layers, no validation, no envelope.
//! `axum_grpc_sql_baseline PORT AUTH_ADDR TOKEN DATABASE_URL`.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use ibex_api::auth::proto::ValidateTokenRequest;
use ibex_api::auth::proto::auth_service_client::AuthServiceClient;
use ibex_api::domains::agents::Agent;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

const COLUMNS: &str = "id, org_id, name, slug, status, config, total_sessions, total_memories, \
                       last_active_at, created_at, updated_at";

#[derive(Clone)]
struct Reference {
    auth: AuthServiceClient<Channel>,
    token: String,
    pool: PgPool,
}

impl Reference {
    async fn org(&self) -> Uuid {
        let request = ValidateTokenRequest {
            access_token: self.token.clone(),
        };
        let answer = self.auth.clone().validate_token(request).await.unwrap();
        answer.into_inner().org_id.parse().unwrap()
    }

    async fn tenant_tx(&self, org: Uuid) -> sqlx::Transaction<'static, sqlx::Postgres> {
        self.pool
            .begin_with(format!(
                "BEGIN; SET LOCAL ROLE ibex_app; \
                 SELECT set_config('app.current_org_id', '{}', true)",
                org.hyphenated()
            ))
            .await
            .unwrap()
    }
}

async fn list(State(reference): State<Reference>) -> Json<Vec<Agent>> {
    let org = reference.org().await;
    let mut tx = reference.tenant_tx(org).await;
    let rows = sqlx::query_as::<_, Agent>(&format!(
        "SELECT {COLUMNS} FROM ibex_core.agents WHERE org_id = $1 AND deleted_at IS NULL \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(org)
    .bind(21i64)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    drop(tx);
    Json(rows)
}

async fn one(State(reference): State<Reference>, Path(id): Path<Uuid>) -> Json<Agent> {
    let org = reference.org().await;
    let mut tx = reference.tenant_tx(org).await;
    let row = sqlx::query_as::<_, Agent>(&format!(
        "SELECT {COLUMNS} FROM ibex_core.agents WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
    ))
    .bind(org)
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    drop(tx);
    Json(row)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[1].parse().unwrap();
    let channel = Endpoint::from_shared(args[2].clone())
        .unwrap()
        .connect_lazy();
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .test_before_acquire(false)
        .connect_lazy(&args[4])
        .unwrap();
    let reference = Reference {
        auth: AuthServiceClient::new(channel),
        token: args[3].clone(),
        pool,
    };
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/agents", get(list))
        .route("/v1/agents/{agent_id}", get(one))
        .with_state(reference);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}
