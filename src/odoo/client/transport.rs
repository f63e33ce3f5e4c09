//! The HTTP side of the Odoo client: the `reqwest` client (timeouts, and a redirect
//! policy that follows only redirects within the connection's origin), answers read
//! with a size limit, and transport errors described for `last_error`.
//!
//! Redirects: a 307 or 308 re-sends the request body, and a JSON-RPC body carries the
//! API key; a redirect to another scheme, host or port is therefore never followed and
//! becomes [`OdooError::Redirected`], naming the origin so the operator can set the
//! connection's URL to the final address. Redirects inside the origin (a proxy adding
//! a trailing slash, say) are followed, at most five.
//!
//! Bodies are read chunk by chunk (after gzip decoding) and refused once they pass
//! `NAS_SYNC_ODOO_MAX_BODY_BYTES`, so an endless or huge answer is cut off instead of
//! filling the memory of a small NAS.

use std::time::Duration;

use serde_json::Value;

use crate::odoo::fault::OdooError;

/// Redirects followed within one origin.
const MAX_REDIRECTS: usize = 5;

/// Why the redirect policy stopped (found again in the error's source chain).
#[derive(Debug, thiserror::Error)]
#[error("redirect to {origin}")]
struct CrossOrigin {
    origin: String,
}

/// The client for one connection: timeouts, user agent, the same-origin redirect policy.
pub(super) fn http_client(timeout: Duration) -> Result<reqwest::Client, OdooError> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        let target = attempt.url().origin();
        if target != first.origin() {
            let origin = target.ascii_serialization();
            return attempt.error(CrossOrigin { origin });
        }
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        attempt.follow()
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(15)))
        .user_agent(concat!("nas-sync/", env!("CARGO_PKG_VERSION")))
        .redirect(policy)
        .build()
        .map_err(|e| OdooError::Unreachable(format!("building the HTTP client: {e}")))
}

/// A failed send as the mirror's error: a refused redirect, a timeout, or a
/// transport failure with its causes.
pub(super) fn send_error(e: &reqwest::Error, timeout: Duration) -> OdooError {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(c) = s.downcast_ref::<CrossOrigin>() {
            return OdooError::Redirected(c.origin.clone());
        }
        source = s.source();
    }
    if e.is_timeout() {
        OdooError::Unreachable(format!("no answer within {timeout:?}"))
    } else {
        OdooError::Unreachable(describe_reqwest(e))
    }
}

/// The whole body, refused once it passes `limit` bytes (without reading the rest).
pub(super) async fn read_body(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, OdooError> {
    let too_big = || {
        OdooError::Protocol(format!(
            "Odoo's answer is larger than {limit} bytes (NAS_SYNC_ODOO_MAX_BODY_BYTES); \
             ask for smaller pages (batch_size) or raise the limit"
        ))
    };
    // A declared length says so before anything is read (it is the compressed size
    // with gzip, so the decoded body is still counted below).
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(OdooError::Unreachable(format!(
                    "reading the answer: {}",
                    describe_reqwest(&e)
                )));
            }
        }
    }
}

/// The body as JSON; `what` names the expected answer in the error.
pub(super) async fn read_json(
    resp: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Value, OdooError> {
    let body = read_body(resp, limit).await?;
    serde_json::from_slice(&body)
        .map_err(|e| OdooError::Protocol(format!("an answer that is not {what}: {e}")))
}

/// Up to 300 characters of a body, for error messages (at most `limit` bytes read).
pub(super) async fn text_of(resp: reqwest::Response, limit: usize) -> String {
    match read_body(resp, limit).await {
        Ok(body) => String::from_utf8_lossy(&body).chars().take(300).collect(),
        Err(e) => e.summary(),
    }
}

/// A transport error with its cause chain (connection refused, DNS, TLS...).
fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
