//! `GET /v1/data-map`: any valid token of an organization (it describes the service, not the
//! organization's data). `GET /.well-known/jwks.json`: no token (public keys, for anyone who
//! checks a receipt).

use axum::Json;
use axum::extract::State;

use super::data_map::data_map;
use super::model::DataMap;
use crate::auth::Caller;
use crate::signing::JwkSet;
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/data-map", tag = "data-requests", summary = "The data map",
    description = "Every store the service keeps (PostgreSQL tables, the ClickHouse trace table, the object store's buckets, Redis key spaces and channels): what it holds, its personal data by field, which kinds of data subject reach it, which subject kinds an access or an erasure request covers today, and how long it is kept. For records of processing and for planning data requests.",
    responses((status = 200, description = "The map.", body = DataMap)))]
pub async fn get_data_map(State(state): State<AppState>, _caller: Caller) -> Json<DataMap> {
    Json(data_map(state.storage.as_ref()))
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "data-requests", operation_id = "jwks",
    summary = "The service's public signing keys",
    description = "No token. The Ed25519 public keys (a JWK Set, RFC 7517 and 8037) that verify what the service signs: data-request receipts and archive manifests, compact JWS with `alg` `EdDSA` naming their key by `kid` (its RFC 7638 thumbprint). The first configured key signs; earlier ones stay listed after a rotation.",
    responses((status = 200, description = "The key set.", body = JwkSet)))]
pub async fn jwks(State(state): State<AppState>) -> Json<JwkSet> {
    Json(state.signing.jwks())
}
