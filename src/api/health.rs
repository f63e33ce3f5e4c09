//! Probes and metrics: `/health` (process only), `/ready` (database and migrations),
//! `/metrics` (Prometheus text).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::db::migrate;
use crate::error::AppError;
use crate::state::AppState;

/// Liveness: answers without touching the database.
#[utoipa::path(get, path = "/health", operation_id = "health", tag = "ops", responses((status = 200, description = "alive")))]
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers and carries every migration of this build.
#[utoipa::path(get, path = "/ready", operation_id = "ready", tag = "ops",
    responses((status = 200, description = "ready"), (status = 503, description = "not ready")))]
pub async fn ready(State(state): State<AppState>) -> Response {
    if migrate::is_current(&state.pool).await {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        AppError::Unavailable("The database is unreachable or not migrated.".into()).into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "ops", responses((status = 200, description = "Prometheus text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
