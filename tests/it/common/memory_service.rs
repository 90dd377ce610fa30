//! A scriptable memory service (the platform's own service, so a stand-in is allowed): a real
//! HTTP server on loopback whose answer each test sets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub enum MemoryAnswer {
    /// 200 with this JSON.
    Json(Value),
    /// This status and body text.
    Raw(u16, &'static str),
    /// Sleep this long, then answer `{"results": []}`.
    Slow(Duration),
}

#[derive(Debug)]
struct MemoryServiceState {
    answer: Mutex<MemoryAnswer>,
    /// (x-request-id header, body) of every call.
    calls: Mutex<Vec<(Option<String>, Value)>>,
}

pub struct FakeMemoryService {
    pub addr: SocketAddr,
    state: Arc<MemoryServiceState>,
}

impl FakeMemoryService {
    pub async fn start(answer: MemoryAnswer) -> Self {
        use axum::extract::State;
        use axum::response::IntoResponse;
        async fn search(
            State(state): State<Arc<MemoryServiceState>>,
            headers: http::HeaderMap,
            Json(body): Json<Value>,
        ) -> axum::response::Response {
            let id = headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            state.calls.lock().unwrap().push((id, body));
            let answer = state.answer.lock().unwrap().clone();
            match answer {
                MemoryAnswer::Json(value) => Json(value).into_response(),
                MemoryAnswer::Raw(status, text) => {
                    (http::StatusCode::from_u16(status).unwrap(), text.to_owned()).into_response()
                }
                MemoryAnswer::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    Json(json!({"results": []})).into_response()
                }
            }
        }
        let state = Arc::new(MemoryServiceState {
            answer: Mutex::new(answer),
            calls: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/internal/memories/search", post(search))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, answer: MemoryAnswer) {
        *self.state.answer.lock().unwrap() = answer;
    }

    pub fn calls(&self) -> Vec<(Option<String>, Value)> {
        self.state.calls.lock().unwrap().clone()
    }
}
