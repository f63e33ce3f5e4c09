//! The shared state every handler can reach (`AppState`), how it is built (`prepare`
//! migrates and checks the database first), and the contexts the domains take from it
//! through `FromRef`. Below the web layer: it names the guards' plain types, never a
//! handler or a router.

use crate::audit::SealKey;
use std::sync::{Arc, OnceLock};

use axum::extract::FromRef;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

use crate::auth::token::{self, Keys};
use crate::bridge::BridgeCtx;
use crate::config::Config;
use crate::guard::arrival::Arrival;
use crate::guard::limits::Limits;
use crate::guard::shed::Shed;
use crate::odoo::OdooCtx;
use crate::secrets::SecretBox;
use crate::sync::registry::RegistryHandle;
use crate::sync::{Registry, SyncCtx, SyncLimits, horizon};

/// What every handler can reach: one `Arc` around [`Shared`], so the clones axum makes
/// for each layer and extractor of every request cost one reference count (cloning the
/// dozens of handles inside measured 16 % of the server's CPU on empty pulls).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state itself. The domains get only their own context (`SyncCtx`, `OdooCtx`,
/// through `FromRef`); the rest (metrics, the WebSocket hub, rate limits) belongs to
/// the web layer. `pool` and `keys` are the same handles the contexts hold.
pub struct Shared {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub keys: Arc<Keys>,
    /// Seals the audit trail (derived from the same secret as `keys`).
    pub audit: SealKey,
    pub sync: SyncCtx,
    pub odoo: OdooCtx,
    pub bridge: BridgeCtx,
    /// The open WebSockets of this process.
    pub hub: Arc<crate::realtime::Hub>,
    pub metrics: PrometheusHandle,
    /// `None` when rate limiting is off.
    pub limits: Option<Arc<Limits>>,
    /// The bounds on requests running and waiting per route family.
    pub shed: Arc<Shed>,
}

impl AppState {
    /// Creates the database if missing, migrates it, checks the epoch, seals Odoo API
    /// keys stored in plain text (with `NAS_SYNC_SECRET_KEY`), and loads the table
    /// registry and the signing secret.
    pub async fn prepare(config: Config) -> anyhow::Result<AppState> {
        let secrets = secret_box(&config)?;
        let pool = crate::db::prepare(&config.db()).await?;
        horizon::check_epoch(&pool).await?;
        crate::odoo::connections::seal_stored_keys(&pool, secrets.as_deref()).await?;
        AppState::from_pool(config, pool).await
    }

    /// Builds the state over an already migrated database.
    pub async fn from_pool(config: Config, pool: PgPool) -> anyhow::Result<AppState> {
        let secrets = secret_box(&config)?;
        let registry = RegistryHandle::new(Registry::load(&pool).await?);
        let secret = token::load_secret(&pool, config.jwt_secret.as_deref()).await?;
        let keys = Arc::new(Keys::new(&secret, config.access_token_ttl));
        let audit = SealKey::from_secret(&secret);
        let sync = SyncCtx {
            pool: pool.clone(),
            registry: registry.clone(),
            keys: keys.clone(),
            pull_ledger: Arc::default(),
            quiet: Arc::default(),
            sessions: Arc::default(),
            readiness: Arc::new(crate::odoo::MirrorReadiness),
            limits: SyncLimits {
                max_value_bytes: config.max_value_bytes,
                max_page_bytes: config.max_page_bytes,
            },
        };
        let odoo = OdooCtx {
            pool: pool.clone(),
            registry: registry.clone(),
            settings: Arc::new(config.odoo.clone()),
            secrets,
            wakeup: Arc::new(tokio::sync::Notify::new()),
        };
        let bridge = BridgeCtx {
            sync: sync.clone(),
            app_types: Arc::new(config.app_types.clone()),
            write_back: odoo.wakeup.clone(),
            create_wait: config.bridge_create_wait,
        };
        Ok(AppState(Arc::new(Shared {
            bridge,
            hub: crate::realtime::Hub::new(registry),
            limits: config
                .rate_limit
                .then(|| Arc::new(Limits::new(&config.rate_limits))),
            shed: Arc::new(Shed::new(
                &config.load_limits,
                Arrival::new(
                    config.body_min_rate,
                    config.header_timeout,
                    config.body_limit,
                    config.body_buffer_bytes,
                ),
            )),
            config: Arc::new(config),
            pool,
            keys,
            audit,
            sync,
            odoo,
            metrics: metrics_handle(),
        })))
    }
}

/// The sealing key from `NAS_SYNC_SECRET_KEY`; a key too short stops the start.
fn secret_box(config: &Config) -> anyhow::Result<Option<Arc<SecretBox>>> {
    config
        .secret_key
        .as_deref()
        .map(|k| SecretBox::new(k).map(Arc::new))
        .transpose()
        .map_err(anyhow::Error::new)
}

impl FromRef<AppState> for SyncCtx {
    fn from_ref(state: &AppState) -> SyncCtx {
        state.sync.clone()
    }
}

impl FromRef<AppState> for BridgeCtx {
    fn from_ref(state: &AppState) -> BridgeCtx {
        state.bridge.clone()
    }
}

impl FromRef<AppState> for OdooCtx {
    fn from_ref(state: &AppState) -> OdooCtx {
        state.odoo.clone()
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every app).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("sync_duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ],
                )
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}
