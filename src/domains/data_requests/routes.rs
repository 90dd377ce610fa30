//! `GET /v1/data-map`: any valid token of an organization (it describes the service, not the
//! organization's data).

use axum::Json;
use axum::extract::State;

use super::data_map::data_map;
use super::model::DataMap;
use crate::auth::Caller;
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/data-map", tag = "data-requests", summary = "The data map",
    description = "Every store the service keeps (PostgreSQL tables, the ClickHouse trace table, the object store's buckets, Redis key spaces and channels): what it holds, its personal data by field, which kinds of data subject reach it, which subject kinds an access or an erasure request covers today, and how long it is kept. For records of processing and for planning data requests.",
    responses((status = 200, description = "The map.", body = DataMap)))]
pub async fn get_data_map(State(state): State<AppState>, _caller: Caller) -> Json<DataMap> {
    Json(data_map(state.storage.as_ref()))
}
