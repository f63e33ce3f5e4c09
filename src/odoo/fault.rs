//! What can go wrong talking to Odoo, split the way the mirror must act on it:
//! retryable faults (network, timeouts, 429/502/503/504 from a proxy, serialization
//! failures and deadlocks) are tried again with backoff; final ones (bad credentials,
//! access errors, validation errors, missing records) are not.

use reqwest::StatusCode;

/// Whether a status is one a proxy or an overloaded Odoo answers transiently.
pub fn is_transient_status(status: u16) -> bool {
    matches!(
        StatusCode::from_u16(status),
        Ok(StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT)
    )
}

/// A failed Odoo call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OdooError {
    /// No answer: connection refused, DNS, TLS, timeout, dropped connection.
    #[error("Odoo is unreachable: {0}")]
    Unreachable(String),
    /// An HTTP status without Odoo's error body (typically a proxy's HTML page).
    #[error("Odoo answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    /// Odoo's own error, by exception name (`odoo.exceptions.AccessError`, ...).
    #[error("{name}: {message}")]
    Fault { name: String, message: String },
    /// Authentication refused (bad database, login or key).
    #[error("{0}")]
    AuthFailed(String),
    /// An answer that does not have the expected shape (or is too large).
    #[error("unexpected answer from Odoo: {0}")]
    Protocol(String),
    /// A redirect to another origin, not followed: it would re-send the API key there.
    #[error("Odoo answered with a redirect to {0}; set the connection's URL to the final address")]
    Redirected(String),
}

impl OdooError {
    pub fn http(status: u16, body: &str) -> OdooError {
        let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
        OdooError::Http { status, body }
    }

    /// From a JSON-RPC `error` member: dispatch on `data.name`, not on `code`.
    pub fn from_jsonrpc(err: &serde_json::Value) -> OdooError {
        let name = err
            .pointer("/data/name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                match err.get("code").and_then(serde_json::Value::as_i64) {
                    Some(100) => "odoo.http.SessionExpiredException",
                    Some(404) => "werkzeug.exceptions.NotFound",
                    _ => "odoo.exceptions.UnknownError",
                }
                .to_string()
            });
        let message = err
            .pointer("/data/message")
            .or_else(|| err.get("message"))
            .and_then(|v| v.as_str())
            .unwrap_or("no message")
            .to_string();
        OdooError::Fault { name, message }
    }

    /// From a JSON-2 error body `{"name","message",...}` with its HTTP status.
    pub fn from_json2(status: u16, body: &serde_json::Value) -> OdooError {
        let name = body["name"].as_str().unwrap_or("unknown").to_string();
        let message = body["message"].as_str().unwrap_or("no message").to_string();
        if status == 401 {
            return OdooError::AuthFailed(format!("Odoo refused the API key ({message})"));
        }
        if is_transient_status(status) {
            return OdooError::Http {
                status,
                body: format!("{name}: {message}"),
            };
        }
        OdooError::Fault { name, message }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            OdooError::Unreachable(_) => true,
            OdooError::Http { status, .. } => is_transient_status(*status),
            OdooError::Fault { name, message } => {
                let m = message.to_ascii_lowercase();
                name.contains("SerializationFailure")
                    || name.contains("TransactionRollbackError")
                    || name.contains("DeadlockDetected")
                    || name.contains("LockError")
                    || m.contains("could not serialize access")
                    || m.contains("deadlock detected")
            }
            OdooError::AuthFailed(_) | OdooError::Protocol(_) | OdooError::Redirected(_) => false,
        }
    }

    /// Whether Odoo refused who we are (a key that expired or was revoked): the
    /// operator renews the key and the work resumes.
    pub fn is_credentials(&self) -> bool {
        match self {
            OdooError::AuthFailed(_) => true,
            OdooError::Fault { name, .. } => {
                name.contains("AccessDenied") || name.contains("SessionExpired")
            }
            _ => false,
        }
    }

    /// Whether Odoo refused the data itself (validation, access, missing record):
    /// the row needs a person, not another attempt. Transient faults and refused
    /// credentials (the operator renews the key) are not refusals.
    pub fn is_refusal(&self) -> bool {
        matches!(self, OdooError::Fault { .. }) && !self.is_retryable() && !self.is_credentials()
    }

    /// Short text kept in status and shown to devices (no tracebacks).
    pub fn summary(&self) -> String {
        let s = self.to_string();
        let first = s.lines().next().unwrap_or_default();
        first.chars().take(500).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonrpc_errors_dispatch_on_the_exception_name() {
        let e = OdooError::from_jsonrpc(&json!({"code": 200, "message": "Odoo Server Error",
            "data": {"name": "odoo.exceptions.AccessError", "message": "no access", "debug": "Traceback"}}));
        assert!(!e.is_retryable());
        assert!(e.is_refusal());
        assert_eq!(e.summary(), "odoo.exceptions.AccessError: no access");
        let e = OdooError::from_jsonrpc(&json!({"code": 200, "message": "Odoo Server Error",
            "data": {"name": "psycopg2.errors.SerializationFailure",
                     "message": "could not serialize access due to concurrent update"}}));
        assert!(e.is_retryable());
        let e = OdooError::from_jsonrpc(&json!({"code": 100, "message": "Odoo Session Expired"}));
        assert!(matches!(e, OdooError::Fault { ref name, .. } if name.contains("SessionExpired")));
    }

    #[test]
    fn proxy_statuses_are_retryable_and_others_final() {
        for s in [429, 502, 503, 504] {
            assert!(OdooError::http(s, "<html>").is_retryable(), "{s}");
        }
        for s in [400, 403, 404, 422, 500] {
            assert!(!OdooError::http(s, "x").is_retryable(), "{s}");
        }
        assert!(OdooError::Unreachable("timeout".into()).is_retryable());
        let e = OdooError::from_json2(
            401,
            &json!({"name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey"}),
        );
        assert!(matches!(e, OdooError::AuthFailed(_)));
        let e = OdooError::from_json2(
            422,
            &json!({"name": "odoo.exceptions.ValidationError", "message": "bad"}),
        );
        assert!(e.is_refusal());
    }
}
