//! Benchmark reference: a bare axum handler that makes one ValidateToken call per request and
//! nothing else (no layers, no checks). It shows what a gRPC round trip per request costs by
//! itself, so the auth layer's own overhead can be read off the difference.
//! `axum_grpc_baseline PORT AUTH_ADDR TOKEN`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use ibex_api::auth::proto::ValidateTokenRequest;
use ibex_api::auth::proto::auth_service_client::AuthServiceClient;
use tonic::transport::{Channel, Endpoint};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[1].parse().unwrap();
    let channel = Endpoint::from_shared(args[2].clone())
        .unwrap()
        .connect_lazy();
    let token = args[3].clone();
    let app = Router::new()
        .route(
            "/",
            get(
                |State((client, token)): State<(AuthServiceClient<Channel>, String)>| async move {
                    let request = ValidateTokenRequest {
                        access_token: token,
                    };
                    match client.clone().validate_token(request).await {
                        Ok(answer) => answer.into_inner().org_id,
                        Err(status) => status.code().to_string(),
                    }
                },
            ),
        )
        .with_state((AuthServiceClient::new(channel), token));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}
