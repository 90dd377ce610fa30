//! The one long-lived gRPC channel to the auth service, and what its answers mean.

use std::time::{Duration, SystemTime};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use std::future::Future;

use tonic::metadata::AsciiMetadataValue;

use super::caller::{Caller, CallerToken};
use super::proto::auth_service_client::AuthServiceClient;
use super::proto::{
    CreateTokenRequest, CreateTokenResponse, ListTokensRequest, ListTokensResponse,
    RevokeTokenRequest, RevokeTokenResponse, ValidateTokenRequest,
};
use crate::error::ApiError;
use crate::request_id::RequestId;

/// The token the platform uses to probe the auth service: UNAUTHENTICATED means "reachable".
pub const HEALTH_PROBE_TOKEN: &str = "ibex_health_probe_invalid";

/// Why a request could not be authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("the auth service rejected the token")]
    Rejected,
    #[error("the token's expires_at has passed")]
    Expired,
    #[error("auth service unavailable: {0}")]
    Unavailable(String),
}

impl From<AuthFailure> for ApiError {
    fn from(failure: AuthFailure) -> Self {
        match failure {
            AuthFailure::Rejected | AuthFailure::Expired => ApiError::InvalidToken,
            AuthFailure::Unavailable(_) => ApiError::AuthUnavailable,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthClient {
    client: AuthServiceClient<Channel>,
    timeout: Duration,
}

impl AuthClient {
    /// Builds the channel without connecting: the API starts while the auth service is down and
    /// the channel reconnects on its own when it comes back.
    pub fn new(addr: &str, connect_timeout: Duration, timeout: Duration) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(addr.to_owned())
            .map_err(|e| format!("invalid auth address: {e}"))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            // Detects a dead peer under a call. Pings go out only while a call is open
            // (while_idle off), so an idle channel never trips a server's ping policy.
            .http2_keep_alive_interval(Duration::from_secs(60))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(false);
        Ok(Self {
            client: AuthServiceClient::new(endpoint.connect_lazy()),
            timeout,
        })
    }

    /// Asks the auth service who owns `token`, within the configured deadline.
    pub async fn validate(
        &self,
        token: &str,
        request_id: RequestId,
    ) -> Result<Caller, AuthFailure> {
        let started = std::time::Instant::now();
        let answer = self.call(token, Some(request_id), self.timeout).await;
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(status) if status.code() == Code::Unauthenticated => "rejected",
            Err(_) => "unavailable",
        };
        crate::observability::metrics::record_auth_call(outcome, started.elapsed());
        let answer = answer.map_err(|status| match status.code() {
            Code::Unauthenticated => AuthFailure::Rejected,
            _ => AuthFailure::Unavailable(describe(&status)),
        })?;
        let caller = Caller::from_answer(answer)
            .map_err(|unusable| AuthFailure::Unavailable(format!("unusable answer: {unusable}")))?;
        if caller.is_expired_at(SystemTime::now()) {
            return Err(AuthFailure::Expired);
        }
        Ok(caller)
    }

    /// The platform's reachability probe: the sentinel token must be refused as UNAUTHENTICATED.
    pub async fn probe(&self, deadline: Duration) -> Result<(), String> {
        match self.call(HEALTH_PROBE_TOKEN, None, deadline).await {
            Err(status) if status.code() == Code::Unauthenticated => Ok(()),
            Err(status) => Err(describe(&status)),
            Ok(_) => Err("the auth service accepted the health-probe token".to_owned()),
        }
    }

    async fn call(
        &self,
        token: &str,
        request_id: Option<RequestId>,
        deadline: Duration,
    ) -> Result<super::proto::ValidateTokenResponse, Status> {
        let mut request = tonic::Request::new(ValidateTokenRequest {
            access_token: token.to_owned(),
        });
        // Tells the server when to give up too; the client-side bound is the timeout below.
        request.set_timeout(deadline);
        if let Some(id) = request_id {
            let mut value: tonic::metadata::AsciiMetadataValue =
                id.to_string().parse().expect("a UUID is valid metadata");
            // Unique per call: HPACK-indexing it would only churn the connection's header table
            // (measured at ~5,000 instructions per call); "never indexed" skips that.
            value.set_sensitive(true);
            request.metadata_mut().insert("x-request-id", value);
        }
        let span = crate::observability::traces::client_span("auth.ValidateToken");
        span.in_scope(|| crate::observability::traces::inject(request.metadata_mut()));
        let mut client = self.client.clone();
        let call = tokio::time::timeout(deadline, client.validate_token(request));
        match tracing::Instrument::instrument(call, span).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(
                "no answer within the auth deadline",
            )),
        }
    }
}

impl AuthClient {
    /// CreateToken on the caller's behalf.
    pub async fn create_token(
        &self,
        caller: &CallerToken,
        request_id: RequestId,
        message: CreateTokenRequest,
    ) -> Result<CreateTokenResponse, ApiError> {
        let mut client = self.client.clone();
        let request = self.on_behalf_of(caller, request_id, message);
        self.management(client.create_token(request)).await
    }

    /// RevokeToken on the caller's behalf.
    pub async fn revoke_token(
        &self,
        caller: &CallerToken,
        request_id: RequestId,
        message: RevokeTokenRequest,
    ) -> Result<RevokeTokenResponse, ApiError> {
        let mut client = self.client.clone();
        let request = self.on_behalf_of(caller, request_id, message);
        self.management(client.revoke_token(request)).await
    }

    /// ListTokens on the caller's behalf.
    pub async fn list_tokens(
        &self,
        caller: &CallerToken,
        request_id: RequestId,
        message: ListTokensRequest,
    ) -> Result<ListTokensResponse, ApiError> {
        let mut client = self.client.clone();
        let request = self.on_behalf_of(caller, request_id, message);
        self.management(client.list_tokens(request)).await
    }

    /// A request carrying the caller's PAT as `authorization` (never indexed by HPACK, like
    /// every secret) and the request id, with the auth deadline.
    fn on_behalf_of<T>(
        &self,
        caller: &CallerToken,
        request_id: RequestId,
        message: T,
    ) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        let metadata = request.metadata_mut();
        if let Ok(mut bearer) = format!("Bearer {}", caller.expose()).parse::<AsciiMetadataValue>()
        {
            bearer.set_sensitive(true);
            metadata.insert("authorization", bearer);
        }
        let mut id: AsciiMetadataValue = request_id
            .to_string()
            .parse()
            .expect("a UUID is valid metadata");
        id.set_sensitive(true);
        metadata.insert("x-request-id", id);
        crate::observability::traces::inject(metadata);
        request
    }

    /// Runs a management call under the auth deadline and maps its status as docs/domains/tokens.md says.
    /// The auth service's message is never passed on: it may quote the request.
    async fn management<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, ApiError> {
        let status = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => status,
            Err(_) => Status::deadline_exceeded("no answer within the auth deadline"),
        };
        Err(match status.code() {
            Code::PermissionDenied => ApiError::InsufficientPermissions,
            Code::InvalidArgument => {
                ApiError::validation("The auth service refused the request's values.")
            }
            Code::NotFound => ApiError::not_found("No token with this id."),
            Code::Unauthenticated => ApiError::InvalidToken,
            code => {
                tracing::warn!(code = ?code, "auth service unavailable for a token operation");
                ApiError::AuthUnavailable
            }
        })
    }
}

/// A log-safe description of a failed call: the code and tonic's message, never metadata.
fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The auth service answers the platform's sentinel probe.
#[derive(Debug)]
pub struct AuthReachable(pub AuthClient);

impl crate::readiness::ReadinessCheck for AuthReachable {
    fn check(
        &self,
        deadline: std::time::Duration,
    ) -> futures_util::future::BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            self.0
                .probe(deadline)
                .await
                .map(|()| "reachable".to_owned())
        })
    }
}
