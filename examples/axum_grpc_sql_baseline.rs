//! Benchmark reference for the data layer: bare axum, one ValidateToken call, then the least any
//! correct implementation must send PostgreSQL, in one flight: BEGIN with the role and tenant
//! settings, the (cached, prepared) query and the ROLLBACK, pipelined by tokio-postgres on a
//! deadpool connection that goes back without a ping. The rows as JSON. No layers, no
//! validation, no envelope, no retry. `axum_grpc_sql_baseline PORT AUTH_ADDR TOKEN DATABASE_URL`.

use std::str::FromStr;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ibex_api::auth::proto::ValidateTokenRequest;
use ibex_api::auth::proto::auth_service_client::AuthServiceClient;
use ibex_api::db::FromRow;
use ibex_api::domains::agents::Agent;
use ibex_api::domains::memories::model::{Filters, Memory};
use ibex_api::domains::memories::repo::list_statement;
use tokio_postgres::types::ToSql;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

const COLUMNS: &str = "id, org_id, name, slug, status, config, total_sessions, total_memories, \
                       last_active_at, created_at, updated_at, version";

#[derive(Clone)]
struct Reference {
    auth: AuthServiceClient<Channel>,
    token: String,
    pool: Pool,
}

impl Reference {
    async fn org(&self) -> Uuid {
        let request = ValidateTokenRequest {
            access_token: self.token.clone(),
        };
        let answer = self.auth.clone().validate_token(request).await.unwrap();
        answer.into_inner().org_id.parse().unwrap()
    }

    /// BEGIN + tenant, the query, ROLLBACK: three requests queued before the first answer.
    async fn read(&self, org: Uuid, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Agent> {
        let client = self.pool.get().await.unwrap();
        let statement = client.prepare_cached(sql).await.unwrap();
        let begin = format!(
            "BEGIN; SET LOCAL ROLE ibex_app; \
             SELECT set_config('app.current_org_id', '{}', true)",
            org.hyphenated()
        );
        let ((), rows, ()) = tokio::try_join!(
            client.batch_execute(&begin),
            client.query(&statement, params),
            client.batch_execute("ROLLBACK"),
        )
        .unwrap();
        rows.iter()
            .map(|row| Agent::from_row(row).unwrap())
            .collect()
    }
}

async fn list(State(reference): State<Reference>) -> Json<Vec<Agent>> {
    let org = reference.org().await;
    let sql = format!(
        "SELECT {COLUMNS} FROM ibex_core.agents WHERE org_id = $1 AND deleted_at IS NULL \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    );
    Json(reference.read(org, &sql, &[&org, &21i64]).await)
}

async fn one(State(reference): State<Reference>, Path(id): Path<Uuid>) -> Json<Agent> {
    let org = reference.org().await;
    let sql = format!(
        "SELECT {COLUMNS} FROM ibex_core.agents WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
    );
    let mut rows = reference.read(org, &sql, &[&org, &id]).await;
    Json(rows.pop().unwrap())
}

/// A page of an agent's memories as the API must read it: the agent's liveness check and the
/// page (the API's own statement) in the same flight as BEGIN and ROLLBACK.
async fn memories(
    State(reference): State<Reference>,
    Path(agent): Path<Uuid>,
) -> Json<Vec<Memory>> {
    let org = reference.org().await;
    let filters = Filters {
        category: None,
        status: "active",
        source: None,
        tag: None,
        created_after: None,
        created_before: None,
    };
    let page = list_statement(org, agent, &filters, None, 21);
    let client = reference.pool.get().await.unwrap();
    let check = client
        .prepare_cached(
            "SELECT status FROM ibex_core.agents \
             WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .await
        .unwrap();
    let statement = client.prepare_cached(page.text()).await.unwrap();
    let begin = format!(
        "BEGIN; SET LOCAL ROLE ibex_app; \
         SELECT set_config('app.current_org_id', '{}', true)",
        org.hyphenated()
    );
    let (check_params, page_params): (&[&(dyn ToSql + Sync)], _) = (&[&org, &agent], page.params());
    let ((), agent_rows, rows, ()) = tokio::try_join!(
        client.batch_execute(&begin),
        client.query(&check, check_params),
        client.query(&statement, &page_params),
        client.batch_execute("ROLLBACK"),
    )
    .unwrap();
    assert!(!agent_rows.is_empty(), "the agent exists");
    Json(
        rows.iter()
            .map(|row| Memory::from_row(row).unwrap())
            .collect(),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[1].parse().unwrap();
    let channel = Endpoint::from_shared(args[2].clone())
        .unwrap()
        .connect_lazy();
    let manager = Manager::from_config(
        tokio_postgres::Config::from_str(&args[4]).unwrap(),
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(10)
        .runtime(Runtime::Tokio1)
        .build()
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
        .route("/v1/agents/{agent_id}/memories", get(memories))
        .with_state(reference);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}
