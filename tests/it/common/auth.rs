//! The fake auth service: a real gRPC server whose answers the test scripts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ibex_api::auth::dev::DevAuthService;
use ibex_api::auth::proto::auth_service_server::{AuthService, AuthServiceServer};
use ibex_api::auth::proto::{
    CreateTokenRequest, CreateTokenResponse, ListTokensRequest, ListTokensResponse,
    RevokeTokenRequest, RevokeTokenResponse, ValidateTokenRequest, ValidateTokenResponse,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use super::*;

#[derive(Clone, Debug)]
pub struct Behavior {
    pub delay: Duration,
    pub outcome: Result<ValidateTokenResponse, Code>,
}

impl Behavior {
    pub fn accept() -> Self {
        Self::answer(ValidateTokenResponse {
            org_id: ORG_ID.into(),
            permissions: PERMISSION_READ as i64,
            agent_id: None,
            user_id: Some(USER_ID.into()),
            token_id: None,
            expires_at: Some((SystemTime::now() + Duration::from_secs(3600)).into()),
        })
    }

    pub fn answer(response: ValidateTokenResponse) -> Self {
        Self {
            delay: Duration::ZERO,
            outcome: Ok(response),
        }
    }

    pub fn fail(code: Code) -> Self {
        Self {
            delay: Duration::ZERO,
            outcome: Err(code),
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug)]
struct FakeState {
    behavior: Mutex<Behavior>,
    /// Tokens with their own answer (another organization, other bits); the rest get `behavior`.
    tokens: Mutex<HashMap<String, ValidateTokenResponse>>,
    /// The token RPCs (Create/Revoke/List) run against a real in-memory store...
    store: DevAuthService,
    /// ...unless a test scripts a failure (`Err(code)`) or silence (a delay) for them.
    token_rpcs: Mutex<Behavior>,
    /// Metadata the token RPCs arrived with: (authorization, x-request-id).
    token_rpc_metadata: Mutex<Vec<(Option<String>, Option<String>)>>,
    calls: AtomicUsize,
    probes: AtomicUsize,
    request_ids: Mutex<Vec<String>>,
    /// `traceparent` metadata of ValidateToken calls (empty string when absent).
    traceparents: Mutex<Vec<String>>,
}

#[derive(Debug, Clone)]
struct FakeService(Arc<FakeState>);

#[tonic::async_trait]
impl AuthService for FakeService {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.token_rpc(request, async |r| self.0.store.create_token(r).await)
            .await
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        self.token_rpc(request, async |r| self.0.store.revoke_token(r).await)
            .await
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        self.token_rpc(request, async |r| self.0.store.list_tokens(r).await)
            .await
    }

    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        let behavior = self.0.behavior.lock().unwrap().clone();
        let probe = request.get_ref().access_token == "ibex_health_probe_invalid";
        if probe {
            self.0.probes.fetch_add(1, Ordering::SeqCst);
        } else {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            let id = request
                .metadata()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned());
            self.0
                .request_ids
                .lock()
                .unwrap()
                .push(id.unwrap_or_default());
            let traceparent = request
                .metadata()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            self.0.traceparents.lock().unwrap().push(traceparent);
        }
        tokio::time::sleep(behavior.delay).await;
        let known = self
            .0
            .tokens
            .lock()
            .unwrap()
            .get(&request.get_ref().access_token)
            .cloned();
        if let (Some(answer), Ok(_)) = (known, &behavior.outcome) {
            return Ok(Response::new(answer));
        }
        let token = request.get_ref().access_token.clone();
        if behavior.outcome.is_ok() && self.0.store.knows(&token) {
            // Minted, revoked or expired there: the store decides.
            return self
                .0
                .store
                .validate_token(Request::new(ValidateTokenRequest {
                    access_token: token,
                }))
                .await;
        }
        match behavior.outcome {
            Ok(_) if probe => Err(Status::unauthenticated("invalid token")),
            Ok(answer) => Ok(Response::new(answer)),
            Err(code) => Err(Status::new(code, "scripted failure")),
        }
    }
}

impl FakeService {
    /// Records the metadata, then answers as scripted or as the in-memory store does.
    async fn token_rpc<T, R>(
        &self,
        request: Request<T>,
        store: impl AsyncFnOnce(Request<T>) -> Result<Response<R>, Status>,
    ) -> Result<Response<R>, Status> {
        let read = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let seen = (read("authorization"), read("x-request-id"));
        self.0.token_rpc_metadata.lock().unwrap().push(seen);
        let behavior = self.0.token_rpcs.lock().unwrap().clone();
        tokio::time::sleep(behavior.delay).await;
        match behavior.outcome {
            Err(code) => Err(Status::new(code, "scripted failure quoting SECRET-INPUT")),
            Ok(_) => store(request).await,
        }
    }
}

pub struct FakeAuth {
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeAuth {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), Behavior::accept()).await
    }

    pub async fn start_on(addr: SocketAddr, behavior: Behavior) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind fake auth");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(FakeState {
            behavior: Mutex::new(behavior),
            tokens: Mutex::new(HashMap::new()),
            store: DevAuthService::new(ibex_api::auth::dev::generate_token()),
            token_rpcs: Mutex::new(Behavior::accept()),
            token_rpc_metadata: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            probes: AtomicUsize::new(0),
            request_ids: Mutex::new(Vec::new()),
            traceparents: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = oneshot::channel();
        let service = AuthServiceServer::new(FakeService(Arc::clone(&state)));
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A fresh token that the service accepts for `org_id` with `permissions` (a user the
    /// database does not know).
    pub fn token_for(&self, org_id: Uuid, permissions: u64) -> String {
        self.token_for_user(org_id, Some(Uuid::now_v7()), permissions)
    }

    /// A fresh token of `user_id` (`None`: an agent's token, no user).
    pub fn token_for_user(&self, org_id: Uuid, user_id: Option<Uuid>, permissions: u64) -> String {
        let token = ibex_api::auth::dev::generate_token();
        let answer = ValidateTokenResponse {
            org_id: org_id.to_string(),
            permissions: permissions as i64,
            agent_id: user_id.is_none().then(|| Uuid::now_v7().to_string()),
            user_id: user_id.map(|id| id.to_string()),
            token_id: Some(Uuid::now_v7().to_string()),
            expires_at: Some((SystemTime::now() + Duration::from_secs(3600)).into()),
        };
        self.state
            .tokens
            .lock()
            .unwrap()
            .insert(token.clone(), answer);
        token
    }

    /// A token known to the in-memory store (so the token RPCs accept it as a caller).
    pub fn stored_token(&self, org_id: Uuid, user_id: Option<Uuid>, permissions: u64) -> String {
        self.state.store.add_token(org_id, user_id, permissions)
    }

    /// Scripts the token RPCs: `Behavior::fail(code)`, or a delay.
    pub fn set_token_rpcs(&self, behavior: Behavior) {
        *self.state.token_rpcs.lock().unwrap() = behavior;
    }

    /// (authorization, x-request-id) of every token RPC so far.
    pub fn token_rpc_metadata(&self) -> Vec<(Option<String>, Option<String>)> {
        self.state.token_rpc_metadata.lock().unwrap().clone()
    }

    pub fn set(&self, behavior: Behavior) {
        *self.state.behavior.lock().unwrap() = behavior;
    }

    /// ValidateToken calls, the health probe excluded.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    pub fn probes(&self) -> usize {
        self.state.probes.load(Ordering::SeqCst)
    }

    pub fn traceparents(&self) -> Vec<String> {
        self.state.traceparents.lock().unwrap().clone()
    }

    pub fn request_ids(&self) -> Vec<String> {
        self.state.request_ids.lock().unwrap().clone()
    }

    /// Stops serving and closes its connections; returns the address for a restart.
    pub async fn stop(mut self) -> SocketAddr {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        if tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .is_err()
        {
            panic!("fake auth did not stop");
        }
        self.addr
    }
}

/// An address where nothing listens (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
