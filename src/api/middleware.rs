//! Request middleware: the per-address request budget, the request timeout (as a
//! contract error, not a bare 408), and HTTP metrics labelled by route.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::state::AppState;

/// The client address of a request: the one `X-Forwarded-For` gives behind a trusted
/// proxy (`super::proxies`), else the peer's (unspecified when served without
/// connect info).
pub fn client_ip(req_extensions: &axum::http::Extensions) -> IpAddr {
    if let Some(super::proxies::ClientAddr(ip)) = req_extensions.get() {
        return *ip;
    }
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(limits) = &state.limits
        && let Err(e) = limits.check_request(client_ip(req.extensions()))
    {
        return e.into_response();
    }
    next.run(req).await
}

pub async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            AppError::Unavailable("The request took too long; retry it.".into()).into_response()
        }
    }
}

/// Routes too frequent and too dull to log (probes and scrapes).
const QUIET: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Counts and times every request by route, and logs one line per request (not for
/// probes) inside the request's span, which carries device and tenant once known.
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // Unknown methods share one label, so a client cannot grow the metric without bound.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics::counter!("sync_requests_total", "route" => route.clone(), "method" => method.clone(),
        "status" => status.to_string())
    .increment(1);
    metrics::histogram!("sync_duration_seconds", "route" => route.clone())
        .record(elapsed.as_secs_f64());
    if !QUIET.contains(&route.as_str()) {
        tracing::info!(
            route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    }
    response
}

/// Layers below the handlers (request decompression) and axum's own extractors (a
/// path parameter that is not UTF-8, a WebSocket route called without the upgrade
/// headers) answer some failures with an empty or plain-text body; give every error
/// answer the contract's shape, keeping axum's sentence as the message.
pub async fn shape_bare_errors(response: Response) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // JSON is already the error shape; HTML is a page of the admin console, written
    // for a person in a browser.
    let shaped =
        content_type.starts_with("application/json") || content_type.starts_with("text/html");
    if shaped || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let bytes = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let said = |fallback: &str| {
        if text.is_empty() {
            fallback.to_string()
        } else {
            text.clone()
        }
    };
    use axum::http::StatusCode as S;
    match status {
        S::UNSUPPORTED_MEDIA_TYPE if text.is_empty() => AppError::UnsupportedMediaType(
            "Unsupported Content-Encoding: send plain or gzip bodies.".into(),
        ),
        S::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType(text),
        S::NOT_FOUND => AppError::NotFound(said("No such route.")),
        S::METHOD_NOT_ALLOWED => AppError::MethodNotAllowed,
        S::PAYLOAD_TOO_LARGE => {
            AppError::PayloadTooLarge(said("The request body is larger than the server accepts."))
        }
        S::SERVICE_UNAVAILABLE | S::REQUEST_TIMEOUT | S::GATEWAY_TIMEOUT => {
            AppError::Unavailable(said("Service unavailable; retry shortly."))
        }
        s if s.is_server_error() => AppError::Internal(anyhow::anyhow!("bare {s}: {text}")),
        // 400, 422, 426 (a WebSocket route without the upgrade headers) and the rest.
        _ => AppError::validation("request", said("the request is not valid")),
    }
    .into_response()
}
