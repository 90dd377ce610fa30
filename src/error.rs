//! The one place where failures become the platform's error envelope.
//!
//! Handlers, extractors and layers return [`ApiError`]. Its `IntoResponse` only tags the response
//! with the error; the envelope layer (which knows the request id) renders the body. Responses
//! that reach the envelope layer untagged (a tower-http 408/413, a caught panic, a routing 404)
//! are classified by [`ApiError::from_status`], so no raw body ever leaves the service.

use std::borrow::Cow;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{self, HeaderValue};
use serde::Serialize;
use utoipa::ToSchema;

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 2;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("An Authorization header with a bearer token is required.")]
    MissingToken,
    #[error("The access token is invalid, expired or revoked.")]
    InvalidToken,
    #[error("The access token lacks a permission this operation requires.")]
    InsufficientPermissions,
    #[error("A token cannot be given a permission its creator does not hold.")]
    PermissionElevationDenied,
    #[error("{0}")]
    NotFound(Cow<'static, str>),
    /// An agent id in a body or query string names no live agent of the caller's organization.
    #[error("No agent with this id in the organization.")]
    AgentNotFound,
    /// A user id in a body or query string names no user of the caller's organization.
    #[error("No user with this id in the organization.")]
    UserNotFound,
    /// A role change the role order forbids the caller (owner > admin > member > viewer).
    #[error(
        "Roles can be granted or taken away only below the caller's own role; only an owner grants or removes owner, and no one raises their own role."
    )]
    RoleNotGrantable,
    /// A cursor that this service did not issue for this list, filters and organization.
    #[error("The cursor is not one this list returned; start again without a cursor.")]
    InvalidCursor,
    #[error("This method is not allowed on this path.")]
    MethodNotAllowed,
    #[error("The request body exceeds the size limit.")]
    PayloadTooLarge,
    #[error("The request's header section is too large or has too many headers.")]
    HeadersTooLarge,
    #[error("The request's path and query are too long.")]
    UriTooLong,
    #[error("The request body must be sent as Content-Type: application/json.")]
    UnsupportedMediaType,
    #[error("{message}")]
    Validation {
        message: Cow<'static, str>,
        field_errors: Vec<FieldError>,
    },
    #[error("The request did not complete within the service's deadline.")]
    RequestTimeout,
    #[error("{}", .0.message())]
    Conflict(Conflict),
    /// The access archive was deleted after its retention period.
    #[error(
        "The archive was deleted at the end of its retention period; file a new access request."
    )]
    ArchiveExpired,
    #[error("The resource changed since the version named in If-Match; read it again.")]
    PreconditionFailed,
    #[error(
        "This Idempotency-Key was used for a different request (method, path or body); use a new key."
    )]
    IdempotencyKeyReused,
    #[error("A request with this Idempotency-Key is still running; retry once it has finished.")]
    IdempotencyKeyInUse,
    #[error(
        "This Idempotency-Key's first request created a token, whose secret is shown once and never stored, so it is not replayed. If the secret was lost, revoke the token that Location names and create another."
    )]
    IdempotencyReplayWithheld,
    #[error("Too many requests for this organization or token; retry after Retry-After seconds.")]
    RateLimited { retry_after_secs: u64 },
    #[error("This operation is not implemented yet.")]
    NotImplemented,
    #[error("The authentication service is unavailable; retry shortly.")]
    AuthUnavailable,
    #[error("The service is unavailable; retry shortly.")]
    ServiceUnavailable,
    #[error("The memory service is unavailable; retry shortly.")]
    MemoryServiceUnavailable,
    #[error("The analytics store is unavailable; retry shortly.")]
    AnalyticsUnavailable,
    #[error("An internal error occurred.")]
    Internal,
}

/// A request that is well-formed but collides with the resource's current state (409). Each
/// domain adds its own variants; the code is what clients branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// The state changed under the request in a way no domain rule names.
    Generic,
    AgentSlug,
    AgentHasSessions,
    AgentStatus,
    OrgStatus,
    UserEmail,
    LastOwner,
    SessionNotArchived,
    DataRequestTransition,
    DataRequestNotCancelable,
    DataRequestNotCompleted,
    DataRequestNoArchive,
}

impl Conflict {
    pub const ALL: [Self; 12] = [
        Self::Generic,
        Self::AgentSlug,
        Self::AgentHasSessions,
        Self::AgentStatus,
        Self::OrgStatus,
        Self::UserEmail,
        Self::LastOwner,
        Self::SessionNotArchived,
        Self::DataRequestTransition,
        Self::DataRequestNotCancelable,
        Self::DataRequestNotCompleted,
        Self::DataRequestNoArchive,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::Generic => "CONFLICT",
            Self::AgentSlug => "AGENT_SLUG_CONFLICT",
            Self::AgentHasSessions => "AGENT_HAS_SESSIONS",
            Self::AgentStatus => "AGENT_STATUS_CONFLICT",
            Self::OrgStatus => "ORG_STATUS_CONFLICT",
            Self::UserEmail => "USER_EMAIL_CONFLICT",
            Self::LastOwner => "LAST_OWNER_PROTECTED",
            Self::SessionNotArchived => "SESSION_NOT_ARCHIVED",
            Self::DataRequestTransition => "DATA_REQUEST_INVALID_TRANSITION",
            Self::DataRequestNotCancelable => "DATA_REQUEST_NOT_CANCELABLE",
            Self::DataRequestNotCompleted => "DATA_REQUEST_NOT_COMPLETED",
            Self::DataRequestNoArchive => "DATA_REQUEST_NO_ARCHIVE",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Generic => "The request conflicts with the resource's current state.",
            Self::AgentSlug => "A live agent of this organization already uses this slug.",
            Self::AgentHasSessions => {
                "The agent has sessions and cannot be deleted; archive it instead."
            }
            Self::AgentStatus => "The agent's current status does not allow this change.",
            Self::OrgStatus => {
                "The organization's status does not allow this change (its deletion is under way)."
            }
            Self::UserEmail => "A live user of this organization already has this email address.",
            Self::LastOwner => "The organization's last owner can be neither demoted nor deleted.",
            Self::SessionNotArchived => "The session's archive does not exist (yet); retry later.",
            Self::DataRequestTransition => {
                "The data request's status does not allow this step (confirm: awaiting_confirmation only; extend: once, while open)."
            }
            Self::DataRequestNotCancelable => {
                "The data request can no longer be canceled: its work has started or it has ended."
            }
            Self::DataRequestNotCompleted => "The data request has not succeeded (yet).",
            Self::DataRequestNoArchive => "Only an access request has an archive.",
        }
    }
}

impl ApiError {
    /// 404 for a resource that is missing, deleted or another organization's: the three answer
    /// alike so ids cannot be probed across tenants.
    pub fn not_found(what: &'static str) -> Self {
        Self::NotFound(Cow::Borrowed(what))
    }

    pub fn validation(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Validation {
            message: message.into(),
            field_errors: Vec::new(),
        }
    }

    pub fn field(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            message: Cow::Borrowed("The request has invalid parameters."),
            field_errors: vec![FieldError {
                field: field.to_owned(),
                code,
                message: message.into(),
            }],
        }
    }

    /// A 400 naming every field at fault.
    pub fn fields(field_errors: Vec<FieldError>) -> Self {
        Self::Validation {
            message: Cow::Borrowed("The request has invalid parameters."),
            field_errors,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientPermissions
            | Self::PermissionElevationDenied
            | Self::RoleNotGrantable => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::AgentNotFound | Self::UserNotFound => StatusCode::NOT_FOUND,
            Self::InvalidCursor => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::RequestTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::ArchiveExpired => StatusCode::GONE,
            // 409 rather than the IETF draft's 422: the platform never answers 422.
            Self::IdempotencyKeyReused
            | Self::IdempotencyKeyInUse
            | Self::IdempotencyReplayWithheld => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Self::AuthUnavailable
            | Self::ServiceUnavailable
            | Self::MemoryServiceUnavailable
            | Self::AnalyticsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, documented code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "MISSING_TOKEN",
            Self::InvalidToken => "INVALID_TOKEN",
            Self::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            Self::PermissionElevationDenied => "PERMISSION_ELEVATION_DENIED",
            Self::NotFound(_) => "NOT_FOUND",
            Self::AgentNotFound => "AGENT_NOT_FOUND",
            Self::UserNotFound => "USER_NOT_FOUND",
            Self::RoleNotGrantable => "ROLE_NOT_GRANTABLE",
            Self::InvalidCursor => "INVALID_CURSOR",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Self::UriTooLong => "URI_TOO_LONG",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::Validation { .. } => "VALIDATION_ERROR",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::Conflict(conflict) => conflict.code(),
            Self::PreconditionFailed => "PRECONDITION_FAILED",
            Self::ArchiveExpired => "DATA_REQUEST_ARCHIVE_EXPIRED",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::IdempotencyKeyInUse => "IDEMPOTENCY_KEY_IN_USE",
            Self::IdempotencyReplayWithheld => "IDEMPOTENCY_REPLAY_WITHHELD",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::NotImplemented => "NOT_IMPLEMENTED",
            Self::AuthUnavailable => "AUTH_UNAVAILABLE",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::MemoryServiceUnavailable => "MEMORY_SERVICE_UNAVAILABLE",
            Self::AnalyticsUnavailable => "ANALYTICS_UNAVAILABLE",
            Self::Internal => "INTERNAL_ERROR",
        }
    }

    /// Classifies an error response that was produced without an `ApiError` (a tower-http
    /// layer, axum's router, a caught panic). Statuses outside the platform's table collapse to
    /// the nearest documented one.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::InvalidToken,
            StatusCode::FORBIDDEN => Self::InsufficientPermissions,
            StatusCode::NOT_FOUND => {
                Self::NotFound(Cow::Borrowed("No resource matches this path."))
            }
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Self::HeadersTooLarge,
            StatusCode::URI_TOO_LONG => Self::UriTooLong,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Self::RequestTimeout,
            StatusCode::CONFLICT => Self::Conflict(Conflict::Generic),
            StatusCode::PRECONDITION_FAILED => Self::PreconditionFailed,
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited {
                retry_after_secs: 1,
            },
            StatusCode::NOT_IMPLEMENTED => Self::NotImplemented,
            StatusCode::SERVICE_UNAVAILABLE => Self::ServiceUnavailable,
            s if s.is_client_error() => Self::validation("The request is malformed."),
            _ => Self::Internal,
        }
    }

    /// Renders the envelope. Called by the envelope layer only, which supplies the request id.
    pub fn into_envelope(self, request_id: &str) -> Response {
        let status = self.status();
        let (code, message) = (self.code(), self.to_string());
        let extra_header = match &self {
            Self::MissingToken | Self::InvalidToken => {
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
            }
            Self::AuthUnavailable
            | Self::ServiceUnavailable
            | Self::MemoryServiceUnavailable
            | Self::AnalyticsUnavailable => {
                Some((header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS)))
            }
            // The first request is usually done within a second.
            Self::IdempotencyKeyInUse => Some((header::RETRY_AFTER, HeaderValue::from(1u32))),
            Self::RateLimited { retry_after_secs } => Some((
                header::RETRY_AFTER,
                HeaderValue::from((*retry_after_secs).max(1)),
            )),
            _ => None,
        };
        let field_errors = match self {
            Self::Validation { field_errors, .. } if !field_errors.is_empty() => Some(field_errors),
            // Named like every other parameter error, for clients that read `field_errors`.
            Self::InvalidCursor => Some(vec![FieldError {
                field: "cursor".to_owned(),
                code: "INVALID_CURSOR",
                message: "is not a cursor this list returned".to_owned(),
            }]),
            _ => None,
        };
        let body = ErrorResponse {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
                request_id: request_id.to_owned(),
                field_errors,
            },
        };
        let json = serde_json::to_vec(&body).expect("error envelope serialises");
        let mut response = Response::new(Body::from(json));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some((name, value)) = extra_header {
            headers.insert(name, value);
        }
        response
    }
}

impl IntoResponse for ApiError {
    /// Tags an empty response with the error; the envelope layer renders it.
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self.status();
        response.extensions_mut().insert(self);
        response
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "NOT_FOUND", "message": "No resource matches this path.", "request_id": "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70"}}))]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable UPPER_SNAKE_CASE code; see docs/errors.md.
    #[schema(example = "VALIDATION_ERROR")]
    pub code: String,
    /// Human-readable explanation; never echoes request content.
    pub message: String,
    /// The request's id, equal to the `X-Request-ID` response header.
    #[schema(format = Uuid)]
    pub request_id: String,
    /// Present on some VALIDATION_ERROR responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_errors: Option<Vec<FieldError>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// The parameter or body field at fault.
    pub field: String,
    #[schema(example = "INVALID_UUID")]
    pub code: &'static str,
    pub message: String,
}
