//! The one error type of the service, rendered in the contract's shape:
//! `{"error": "ErrorName", "code": "UPPER_SNAKE_CODE", "message": "...", "details": {...}}`.
//!
//! Internal failures are logged here once, with their cause, and reach the client
//! only as `INTERNAL` with a generic sentence.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Every failure a request can meet.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("authentication required")]
    Unauthorized(String),
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("access token expired")]
    TokenExpired,
    #[error("device revoked")]
    DeviceRevoked,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("validation failed on {field}: {message}")]
    Validation { field: String, message: String },
    #[error("unknown table {0}")]
    UnknownTable(String),
    #[error("invalid sync token: {0}")]
    InvalidSyncToken(String),
    #[error("resync required: {0}")]
    ResyncRequired(String),
    #[error("conflict: {message}")]
    Conflict { code: &'static str, message: String },
    #[error("payload too large")]
    PayloadTooLarge(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("Odoo refused the credentials: {0}")]
    OdooAuthFailed(String),
    #[error("Odoo unreachable: {0}")]
    OdooUnreachable(String),
    /// An Odoo mirror table whose first full mirror has not finished; details carry
    /// the progress.
    #[error("Odoo mirror not ready")]
    SyncNotReady(Value),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// A validation failure naming the offending field.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        use AppError::*;
        match self {
            Unauthorized(_) | InvalidCredentials | TokenExpired | DeviceRevoked => {
                StatusCode::UNAUTHORIZED
            }
            Forbidden(_) => StatusCode::FORBIDDEN,
            NotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Validation { .. } | UnknownTable(_) | InvalidSyncToken(_) => StatusCode::BAD_REQUEST,
            ResyncRequired(_) | Conflict { .. } => StatusCode::CONFLICT,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OdooAuthFailed(_) => StatusCode::BAD_REQUEST,
            OdooUnreachable(_) => StatusCode::BAD_GATEWAY,
            SyncNotReady(_) => StatusCode::FORBIDDEN,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use AppError::*;
        match self {
            Unauthorized(_) => "UNAUTHORIZED",
            InvalidCredentials => "INVALID_CREDENTIALS",
            TokenExpired => "TOKEN_EXPIRED",
            DeviceRevoked => "DEVICE_REVOKED",
            Forbidden(_) => "FORBIDDEN",
            NotFound(_) => "NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Validation { .. } => "VALIDATION_FAILED",
            UnknownTable(_) => "UNKNOWN_TABLE",
            InvalidSyncToken(_) => "INVALID_SYNC_TOKEN",
            ResyncRequired(_) => "RESYNC_REQUIRED",
            Conflict { code, .. } => code,
            PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            RateLimited { .. } => "RATE_LIMITED",
            Unavailable(_) => "UNAVAILABLE",
            OdooAuthFailed(_) => "ODOO_AUTH_FAILED",
            OdooUnreachable(_) => "ODOO_UNREACHABLE",
            SyncNotReady(_) => "SYNC_NOT_READY",
            Internal(_) => "INTERNAL",
        }
    }

    fn name(&self) -> &'static str {
        use AppError::*;
        match self {
            Unauthorized(_) => "Unauthorized",
            InvalidCredentials => "InvalidCredentials",
            TokenExpired => "TokenExpired",
            DeviceRevoked => "DeviceRevoked",
            Forbidden(_) => "Forbidden",
            NotFound(_) => "NotFound",
            MethodNotAllowed => "MethodNotAllowed",
            Validation { .. } => "ValidationFailed",
            UnknownTable(_) => "UnknownTable",
            InvalidSyncToken(_) => "InvalidSyncToken",
            ResyncRequired(_) => "ResyncRequired",
            Conflict { .. } => "Conflict",
            PayloadTooLarge(_) => "PayloadTooLarge",
            UnsupportedMediaType(_) => "UnsupportedMediaType",
            RateLimited { .. } => "RateLimited",
            Unavailable(_) => "Unavailable",
            OdooAuthFailed(_) => "OdooAuthFailed",
            OdooUnreachable(_) => "OdooUnreachable",
            SyncNotReady(_) => "SyncNotReady",
            Internal(_) => "Internal",
        }
    }

    /// The sentence sent to clients; never carries internals.
    pub fn message(&self) -> String {
        use AppError::*;
        match self {
            Unauthorized(m) => m.clone(),
            InvalidCredentials => "Invalid username or password.".into(),
            TokenExpired => "The access token has expired; refresh it.".into(),
            DeviceRevoked => "This device has been revoked.".into(),
            MethodNotAllowed => "This route does not accept that method.".into(),
            Forbidden(m)
            | NotFound(m)
            | PayloadTooLarge(m)
            | UnsupportedMediaType(m)
            | Unavailable(m)
            | OdooAuthFailed(m)
            | OdooUnreachable(m) => m.clone(),
            SyncNotReady(_) => {
                "The Odoo mirror of this table is still being built; retry when it is done.".into()
            }
            Validation { field, message } => format!("Invalid value for '{field}': {message}"),
            UnknownTable(t) => format!("Unknown table '{t}'."),
            InvalidSyncToken(m) => format!("The sync cursor is not valid: {m}"),
            ResyncRequired(m) => {
                format!("The cursor can no longer be served ({m}); pull again without a cursor.")
            }
            Conflict { message, .. } => message.clone(),
            RateLimited { .. } => "Too many requests; retry later.".into(),
            Internal(_) => "An internal error occurred.".into(),
        }
    }

    fn details(&self) -> Value {
        match self {
            AppError::Validation { field, .. } => json!({ "field": field }),
            AppError::UnknownTable(t) => json!({ "table": t }),
            AppError::SyncNotReady(progress) => progress.clone(),
            AppError::RateLimited { retry_after_secs } => {
                json!({ "retry_after": retry_after_secs })
            }
            _ => json!({}),
        }
    }

    /// The contract's JSON body for this error.
    pub fn body(&self) -> Value {
        json!({
            "error": self.name(),
            "code": self.code(),
            "message": self.message(),
            "details": self.details(),
        })
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        metrics::counter!("sync_errors_total", "code" => self.code()).increment(1);
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request rejected");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if let AppError::RateLimited { retry_after_secs } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::error!(error = %e, "database unavailable");
                AppError::Unavailable("The database is unavailable; retry shortly.".into())
            }
            _ => AppError::Internal(anyhow::Error::new(e)),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
