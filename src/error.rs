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
    /// Another user owns this device id (it signs out first, or an operator releases it).
    #[error("device in use by another user")]
    DeviceInUse,
    #[error("user disabled")]
    UserDisabled,
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
    /// The route family's running and waiting requests are at their bounds
    /// (`api::shed`): 503 `UNAVAILABLE` with `Retry-After`.
    #[error("overloaded")]
    Overloaded { retry_after_secs: u64 },
    /// The request body fell behind the minimum arrival rate (`guard::arrival`).
    #[error("request body too slow")]
    SlowBody { min_rate: u64 },
    #[error("Odoo refused the credentials: {0}")]
    OdooAuthFailed(String),
    #[error("Odoo unreachable: {0}")]
    OdooUnreachable(String),
    /// `NAS_SYNC_SECRET_KEY` is not set, so an Odoo API key cannot be stored sealed.
    #[error("NAS_SYNC_SECRET_KEY is not set")]
    SecretKeyMissing,
    /// An Odoo mirror table whose first full mirror has not finished; details carry
    /// the progress.
    #[error("Odoo mirror not ready")]
    SyncNotReady(Value),
    /// PostgreSQL cannot be reached (pool timeout, closed pool, socket error).
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(sqlx::Error),
    /// A deadlock or serialization failure: the whole operation may be retried.
    #[error("database contention: {0}")]
    Contention(sqlx::Error),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// How one error is rendered: the one place each variant is described.
struct Rendered {
    status: StatusCode,
    /// The stable machine-readable code.
    code: &'static str,
    /// The `error` field: the code's name in CamelCase.
    name: &'static str,
    /// The sentence sent to clients; never carries internals.
    message: String,
    details: Value,
}

impl AppError {
    /// A validation failure naming the offending field.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The error table: status, code, name, message and details of every variant.
    fn render(&self) -> Rendered {
        use AppError::*;
        use StatusCode as S;
        let r = |status, code, name, message: &str| Rendered {
            status,
            code,
            name,
            message: message.to_string(),
            details: json!({}),
        };
        match self {
            Unauthorized(m) => r(S::UNAUTHORIZED, "UNAUTHORIZED", "Unauthorized", m),
            InvalidCredentials => r(
                S::UNAUTHORIZED,
                "INVALID_CREDENTIALS",
                "InvalidCredentials",
                "Invalid username or password.",
            ),
            TokenExpired => r(
                S::UNAUTHORIZED,
                "TOKEN_EXPIRED",
                "TokenExpired",
                "The access token has expired; refresh it.",
            ),
            DeviceRevoked => r(
                S::UNAUTHORIZED,
                "DEVICE_REVOKED",
                "DeviceRevoked",
                "This device has been revoked.",
            ),
            DeviceInUse => r(
                S::CONFLICT,
                "DEVICE_IN_USE",
                "DeviceInUse",
                "This device id belongs to another user; that user signs out first, or an operator releases the device.",
            ),
            UserDisabled => r(
                S::UNAUTHORIZED,
                "USER_DISABLED",
                "UserDisabled",
                "This user is disabled; ask the operator.",
            ),
            Forbidden(m) => r(S::FORBIDDEN, "FORBIDDEN", "Forbidden", m),
            NotFound(m) => r(S::NOT_FOUND, "NOT_FOUND", "NotFound", m),
            MethodNotAllowed => r(
                S::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "MethodNotAllowed",
                "This route does not accept that method.",
            ),
            Validation { field, message } => Rendered {
                details: json!({ "field": field }),
                ..r(
                    S::BAD_REQUEST,
                    "VALIDATION_FAILED",
                    "ValidationFailed",
                    &format!("Invalid value for '{field}': {message}"),
                )
            },
            UnknownTable(t) => Rendered {
                details: json!({ "table": t }),
                ..r(
                    S::BAD_REQUEST,
                    "UNKNOWN_TABLE",
                    "UnknownTable",
                    &format!("Unknown table '{t}'."),
                )
            },
            InvalidSyncToken(m) => r(
                S::BAD_REQUEST,
                "INVALID_SYNC_TOKEN",
                "InvalidSyncToken",
                &format!("The sync cursor is not valid: {m}"),
            ),
            ResyncRequired(m) => r(
                S::CONFLICT,
                "RESYNC_REQUIRED",
                "ResyncRequired",
                &format!("The cursor can no longer be served ({m}); pull again without a cursor."),
            ),
            Conflict { code, message } => r(S::CONFLICT, code, "Conflict", message),
            PayloadTooLarge(m) => r(
                S::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "PayloadTooLarge",
                m,
            ),
            UnsupportedMediaType(m) => r(
                S::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "UnsupportedMediaType",
                m,
            ),
            RateLimited { retry_after_secs } => Rendered {
                details: json!({ "retry_after": retry_after_secs }),
                ..r(
                    S::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    "RateLimited",
                    "Too many requests; retry later.",
                )
            },
            Unavailable(m) => r(S::SERVICE_UNAVAILABLE, "UNAVAILABLE", "Unavailable", m),
            Overloaded { retry_after_secs } => Rendered {
                details: json!({ "retry_after": retry_after_secs }),
                ..r(
                    S::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "Unavailable",
                    "The server is busy; retry later.",
                )
            },
            SlowBody { min_rate } => Rendered {
                details: json!({ "min_rate_bytes_per_sec": min_rate }),
                ..r(
                    S::REQUEST_TIMEOUT,
                    "REQUEST_TIMEOUT",
                    "RequestTimeout",
                    "The request body arrived too slowly; send the request again.",
                )
            },
            DatabaseUnavailable(_) => r(
                S::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "Unavailable",
                "The database is unavailable; retry shortly.",
            ),
            Contention(_) => r(
                S::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "Unavailable",
                "The database was busy with conflicting writes; retry shortly.",
            ),
            OdooAuthFailed(m) => r(S::BAD_REQUEST, "ODOO_AUTH_FAILED", "OdooAuthFailed", m),
            OdooUnreachable(m) => r(S::BAD_GATEWAY, "ODOO_UNREACHABLE", "OdooUnreachable", m),
            SecretKeyMissing => Rendered {
                details: json!({ "setting": "NAS_SYNC_SECRET_KEY" }),
                ..r(
                    S::SERVICE_UNAVAILABLE,
                    "SECRET_KEY_MISSING",
                    "SecretKeyMissing",
                    "This server has no NAS_SYNC_SECRET_KEY, so it cannot store Odoo API keys \
                     encrypted. The operator must set it (at least 32 characters, e.g. the \
                     output of `openssl rand -hex 32`) and restart the server.",
                )
            },
            SyncNotReady(progress) => Rendered {
                details: progress.clone(),
                ..r(
                    S::FORBIDDEN,
                    "SYNC_NOT_READY",
                    "SyncNotReady",
                    "The Odoo mirror of this table is still being built; retry when it is done.",
                )
            },
            Internal(_) => r(
                S::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal",
                "An internal error occurred.",
            ),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.render().status
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.render().code
    }

    /// The sentence sent to clients; never carries internals.
    pub fn message(&self) -> String {
        self.render().message
    }

    /// Whether retrying the whole operation may succeed (a deadlock or a
    /// serialization failure between concurrent transactions).
    pub fn is_retryable(&self) -> bool {
        matches!(self, AppError::Contention(_))
    }

    /// The contract's JSON body for this error.
    pub fn body(&self) -> Value {
        let r = self.render();
        json!({
            "error": r.name,
            "code": r.code,
            "message": r.message,
            "details": r.details,
        })
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = (self.status(), self.code());
        metrics::counter!("sync_errors_total", "code" => code).increment(1);
        // The one place a failure is logged, with its cause. Shed requests are
        // counted (`sync_shed_total`), not logged one by one.
        if status.is_server_error() && !matches!(self, AppError::Overloaded { .. }) {
            tracing::error!(code, error = %self, "request failed");
        } else {
            tracing::debug!(code, error = %self, "request rejected");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if let AppError::RateLimited { retry_after_secs }
        | AppError::Overloaded { retry_after_secs } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<sqlx::Error> for AppError {
    /// Sorts database failures by what the caller can do about them: wait for the
    /// database, retry a contended transaction, or nothing (internal).
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed => AppError::DatabaseUnavailable(e),
            // The server shut down, crashed or is starting (class 57P: a restart ends
            // every session), or the connection broke (class 08).
            sqlx::Error::Database(d)
                if d.code()
                    .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) =>
            {
                AppError::DatabaseUnavailable(e)
            }
            sqlx::Error::Database(d) if d.code().is_some_and(|c| c == "40P01" || c == "40001") => {
                AppError::Contention(e)
            }
            _ => AppError::Internal(anyhow::Error::new(e)),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_has_the_contract_shape() {
        let errors = [
            AppError::validation("limit", "must be at least 1"),
            AppError::UnknownTable("nope".into()),
            AppError::RateLimited {
                retry_after_secs: 7,
            },
            AppError::Internal(anyhow::anyhow!("secret detail")),
            AppError::Contention(sqlx::Error::PoolTimedOut),
        ];
        for e in &errors {
            let body = e.body();
            for key in ["error", "code", "message", "details"] {
                assert!(body.get(key).is_some(), "{key} missing in {body}");
            }
            assert_eq!(body["code"], e.code());
        }
        assert_eq!(errors[0].body()["details"]["field"], "limit");
        assert_eq!(errors[1].status(), StatusCode::BAD_REQUEST);
        assert_eq!(errors[2].body()["details"]["retry_after"], 7);
        assert!(!errors[3].message().contains("secret"));
        assert_eq!(errors[4].status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(errors[4].is_retryable() && !errors[3].is_retryable());
    }

    #[test]
    fn pool_exhaustion_is_unavailable_not_internal() {
        let e = AppError::from(sqlx::Error::PoolTimedOut);
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
        );
    }
}
