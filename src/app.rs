//! The application: shared state, the router (buildable without a socket, for
//! tests), and `launch`, which serves a bound listener until a shutdown signal,
//! letting in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::api::{self, limits::Limits, middleware};
use crate::auth::token::{self, Keys};
use crate::config::Config;
use crate::error::AppError;
use crate::sync::{Registry, horizon};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    pub registry: Arc<Registry>,
    pub metrics: PrometheusHandle,
    /// `None` when rate limiting is off.
    pub limits: Option<Arc<Limits>>,
}

impl AppState {
    /// Creates the database if missing, migrates it, checks the epoch, and loads the
    /// table registry and the signing secret.
    pub async fn prepare(config: Config) -> anyhow::Result<AppState> {
        let pool = crate::db::prepare(&config).await?;
        horizon::check_epoch(&pool).await?;
        AppState::from_pool(config, pool).await
    }

    /// Builds the state over an already migrated database.
    pub async fn from_pool(config: Config, pool: PgPool) -> anyhow::Result<AppState> {
        let registry = Registry::load(&pool).await?;
        let secret = token::load_secret(&pool, config.jwt_secret.as_deref()).await?;
        let keys = Keys::new(&secret, config.access_token_ttl);
        Ok(AppState {
            pool,
            limits: config.rate_limit.then(|| Arc::new(Limits::production())),
            config: Arc::new(config),
            keys: Arc::new(keys),
            registry: Arc::new(registry),
            metrics: metrics_handle(),
        })
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every app).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// Every route, with the middleware stack.
pub fn router(state: AppState) -> Router {
    let api_routes = Router::new()
        .route("/api/v1/auth/login", post(api::auth::login))
        .route("/api/v1/auth/refresh", post(api::auth::refresh))
        .route("/api/v1/sync/pull", post(api::sync::pull))
        .route("/api/v1/sync/push", post(api::sync::push))
        .route("/api/v1/sync/status", get(api::sync::status))
        .route("/api/v1/sync/state", get(api::sync::state))
        .route("/api/v1/sync/reset", post(api::sync::reset))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::rate_limit,
        ));

    Router::new()
        .route("/health", get(api::health::health))
        .route("/ready", get(api::health::ready))
        .route("/metrics", get(api::health::metrics))
        .route("/api/openapi.json", get(api::openapi::openapi_json))
        .merge(api_routes)
        .fallback(|| async { AppError::NotFound("No such route.".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::timeout))
        .layer(RequestDecompressionLayer::new())
        .layer(axum::middleware::map_response(middleware::shape_bare_errors))
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id)
            }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .with_state(state)
}

/// Serves `listener` until `shutdown` completes, then lets in-flight requests finish.
/// Background tasks (the horizon clock) stop with it.
pub async fn launch(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let clock = tokio::spawn(horizon::run_clock(
        state.pool.clone(),
        Duration::from_secs(2),
        stop.clone(),
    ));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    stop.cancel();
    let _ = clock.await;
    result
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
