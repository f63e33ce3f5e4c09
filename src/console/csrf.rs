//! Cross-site request forgery defences and browser hardening for `/admin`:
//! - every form carries the session's CSRF token (the sign-in form a cookie's, double
//!   submit), compared on every POST (`check`);
//! - a POST whose `Origin` (or, without one, `Sec-Fetch-Site`) names another site is
//!   refused before any handler runs (`guard`);
//! - every answer carries a strict Content-Security-Policy (no inline script, nothing
//!   from elsewhere), `X-Frame-Options: DENY`, `nosniff`, a referrer only to itself
//!   (under `no-referrer` browsers send `Origin: null` on every POST), and no caching.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::layout;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Whether `sent` is `expected` (compared in time independent of where they differ).
pub fn matches(expected: &str, sent: Option<&str>) -> bool {
    let Some(sent) = sent else { return false };
    if expected.is_empty() || expected.len() != sent.len() {
        return false;
    }
    expected
        .bytes()
        .zip(sent.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The answer to a form without the right CSRF token.
pub fn refused() -> Response {
    layout::problem(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this console. Go back, reload the page and try again.",
    )
}

/// The host of an `Origin` value (`https://nas.tail1234.ts.net:8443` → with port).
fn origin_host(origin: &str) -> Option<&str> {
    origin.split_once("://").map(|(_, rest)| rest)
}

/// Whether a POST comes from this site: its `Origin` names the `Host` it was sent to
/// (or a trusted proxy's `X-Forwarded-Host`: `api::proxies::client_addr` drops it
/// from anyone else); without `Origin`, `Sec-Fetch-Site` is not
/// `cross-site`. Old browsers sending neither rely on the CSRF token alone.
fn same_site(headers: &HeaderMap) -> bool {
    let get = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    match get(header::ORIGIN) {
        Some("null") => false,
        Some(origin) => {
            let Some(host) = origin_host(origin) else {
                return false;
            };
            let forwarded = headers
                .get("x-forwarded-host")
                .and_then(|v| v.to_str().ok());
            get(header::HOST).is_some_and(|h| h.eq_ignore_ascii_case(host))
                || forwarded.is_some_and(|h| h.eq_ignore_ascii_case(host))
        }
        None => !matches!(
            headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
            Some("cross-site")
        ),
    }
}

/// The `/admin` middleware: refuses cross-site POSTs, adds the security headers.
pub async fn guard(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !same_site(req.headers()) {
        tracing::warn!("admin console: a POST from another origin was refused");
        let mut response = layout::problem(
            StatusCode::FORBIDDEN,
            "This request came from another site and was refused.",
        );
        harden(response.headers_mut());
        return response;
    }
    let mut response = next.run(req).await.into_response();
    harden(response.headers_mut());
    response
}

fn harden(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "cross-origin-opener-policy", "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly() {
        assert!(matches("abc", Some("abc")));
        assert!(!matches("abc", Some("abd")));
        assert!(!matches("abc", Some("ab")));
        assert!(!matches("abc", None));
        assert!(!matches("", Some("")));
    }

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("nas:8080"));
        assert!(same_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://nas:8080"));
        assert!(same_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_site(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_site(&h));
    }
}
