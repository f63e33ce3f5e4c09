//! The application: the router (buildable without a socket, for tests) and `launch`, which serves a bound listener (through `crate::serve`, with
//! its header and idle timeouts) until a shutdown signal, letting in-flight requests
//! finish.

use std::future::Future;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use std::sync::Arc;

use crate::api::openapi::Annotated;
use crate::api::routes::Routes;
use crate::api::{self, middleware};
use crate::error::AppError;
use crate::guard::limits::Family;
pub use crate::state::AppState;
use crate::sync::horizon;
use crate::sync::retention::Aged;

/// Response bodies smaller than this are not compressed.
const MIN_COMPRESSED_BYTES: u64 = 1024;

/// Every route (`api::routes`: the API, declared once; `admin`: the console), with
/// the middleware stack.
pub fn router(state: AppState) -> Router {
    // Outermost first, around each family's routes: the family itself (read by what
    // follows), the per-address budget, then admission (`api::admission`: token,
    // fair share, body arrival, place).
    let guard = |family: Family, routes: Routes| {
        routes
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                api::admission::admit,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                middleware::rate_limit,
            ))
            .layer(Extension(family))
    };
    let metrics_here = state.config.metrics_bind.is_none();
    let (api_routes, _) = api::routes::declare(guard, metrics_here).split_for_parts();
    let annotated = Annotated(Arc::new(api::routes::annotated()));
    api_routes
        .merge(crate::console::router(&state))
        .layer(Extension(annotated))
        .fallback(|| async { AppError::NotFound("No such route.".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::timeout,
        ))
        .layer(RequestDecompressionLayer::new())
        .layer(axum::middleware::map_response(
            middleware::shape_bare_errors,
        ))
        // gzip at level 3: with pull rows rendered by row_to_json, compression became
        // the largest cost of a first sync; level 3 made it 0.86 of the SQL baseline
        // (level 6: 0.77, level 1: 0.89) for 8 % more bytes than level 6 (level 1: 18 %)
        // (docs/performance.md). Bodies under 1 KiB go as they are: a deflate stream's
        // set-up cost more than the bytes it saved (an empty pull page is ~150 bytes).
        .layer(
            CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Precise(3))
                .compress_when(DefaultPredicate::new().and(SizeAbove::new(MIN_COMPRESSED_BYTES))),
        )
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let route = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default();
                    // The client address behind a trusted proxy (`api::proxies`).
                    let client = req
                        .extensions()
                        .get::<api::proxies::ClientAddr>()
                        .map(|c| c.0.to_string())
                        .unwrap_or_default();
                    // device and tenant are recorded by the Principal extractor.
                    tracing::info_span!("http", method = %req.method(), route, request_id, client,
                        device = tracing::field::Empty, tenant = tracing::field::Empty)
                })
                // One line per request comes from `record_metrics` (with the route,
                // status and duration); the layer itself stays quiet.
                .on_response(())
                .on_failure(()),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::proxies::client_addr,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                // Logged once, with the panic's message, by the error's response.
                let what = panic
                    .downcast_ref::<&str>()
                    .map(ToString::to_string)
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                AppError::Internal(anyhow::anyhow!("a request handler panicked: {what}"))
                    .into_response()
            },
        ))
        .with_state(state)
}

/// Rows of the modules above the engine that age out with its history.
pub fn aged_rows() -> Vec<Aged> {
    vec![
        crate::odoo::mirror::FINISHED_BATCHES,
        crate::bridge::push::LOCAL_IDS,
        Aged {
            what: "user_sessions",
            delete_older_than: crate::auth::tenant::DELETE_OLD_SESSIONS,
        },
    ]
}

/// Serves `listener` until `shutdown` completes, then lets in-flight requests finish.
/// Background tasks (the horizon clock, the Odoo scheduler) stop with it.
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
    if let Some(addr) = state.config.metrics_bind {
        let metrics_app = Router::new()
            .route("/metrics", get(api::health::metrics))
            .with_state(state.clone());
        let metrics_stop = stop.clone();
        match TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "serving /metrics on its own listener");
                let timeouts = state.config.timeouts();
                tokio::spawn(async move {
                    // A scraper or two: a small fixed budget of its own.
                    let limits = crate::serve::ConnLimits::new(64, 16);
                    let _ = crate::serve::serve(l, metrics_app, timeouts, limits, async move {
                        metrics_stop.cancelled().await;
                    })
                    .await;
                });
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("NAS_SYNC_METRICS_BIND {addr}: {e}"),
                ));
            }
        }
    }
    let ledger = tokio::spawn(
        state
            .sync
            .pull_ledger
            .clone()
            .run(state.pool.clone(), stop.clone()),
    );
    let retention = tokio::spawn(crate::sync::retention::run(
        state.pool.clone(),
        crate::sync::retention::Policy {
            keep: state.config.retention,
            wait_for_audit: state.config.audit,
        },
        Duration::from_secs(30 * 60),
        aged_rows(),
        stop.clone(),
    ));
    let audit = state.config.audit.then(|| {
        tokio::spawn(crate::audit::seal::run(
            state.pool.clone(),
            state.audit.clone(),
            Duration::from_secs(2),
            state.config.audit_retention,
            stop.clone(),
        ))
    });
    if !state.config.audit {
        tracing::warn!(
            "the audit trail is off (NAS_SYNC_AUDIT=off): changes are not sealed into it"
        );
    }
    let listener_task = tokio::spawn(crate::realtime::listener::run(
        state.pool.clone(),
        state.hub.clone(),
        state.sync.registry.clone(),
        state.sync.quiet.clone(),
        state.sync.sessions.clone(),
        stop.clone(),
    ));
    let odoo = state.config.odoo.worker.then(|| {
        tokio::spawn(crate::odoo::worker::run_scheduler(
            state.odoo.clone(),
            stop.clone(),
        ))
    });
    let state_hub = state.hub.clone();
    let hub = state.hub.clone();
    let timeouts = state.config.timeouts();
    let open_files = crate::serve::open_files_limit();
    let max = state.config.max_connections.unwrap_or_else(|| {
        crate::serve::default_max_connections(open_files, state.config.db_max_connections)
    });
    let trusted = state.config.trusted_proxies.clone();
    let per_address = state
        .config
        .max_connections_per_address
        .unwrap_or((max / 4).clamp(1, 256));
    let limits = crate::serve::ConnLimits {
        exempt: Arc::new(move |ip| trusted.trusts(ip)),
        ..crate::serve::ConnLimits::new(max, per_address)
    };
    tracing::info!(
        max_connections = max,
        per_address = limits.per_address,
        open_files,
        "connection limits"
    );
    let app = router(state);
    // Open WebSockets are told to go away as soon as shutdown starts.
    let shutdown = async move {
        shutdown.await;
        state_hub.close_all();
    };
    let result = crate::serve::serve(listener, app, timeouts, limits, shutdown).await;
    // Upgraded sockets are not tracked by the server: let them send their close
    // frames (bounded) before the process goes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !hub.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let _ = clock.await;
    let _ = retention.await;
    if let Some(audit) = audit {
        let _ = audit.await;
    }
    let _ = ledger.await;
    let _ = listener_task.await;
    if let Some(odoo) = odoo {
        let _ = odoo.await;
    }
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
