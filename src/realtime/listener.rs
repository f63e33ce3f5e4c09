//! The `LISTEN` connection of this server process: notifications of committed
//! changes (channel `nas_sync`) and of revoked or signed-out devices (`nas_sync_revoke`), handed to
//! the hub; changes and `nas_sync_state` notes also feed the memory of empty pulls
//! (`sync::quiet`), and revocations and `nas_sync_session` notes the remembered sessions
//! (`auth::remembered`); both are trusted only while this connection is up. When the connection is lost (PostgreSQL restarted, a network cut) it
//! reconnects with backoff and tells every socket to resync, since notifications sent
//! meanwhile are gone.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::hub::{Change, Hub, Outgoing};
use crate::auth::remembered::{SESSION_CHANNEL, Scope, SessionKey, Sessions};
use crate::auth::session::check_access;
use crate::db::sql::Ident;
use crate::error::AppError;
use crate::sync::quiet::{Quiet, STATE_CHANNEL};
use crate::sync::registry::RegistryHandle;

/// The channel the change trigger notifies.
pub const CHANNEL: &str = "nas_sync";
/// The channel device revocations and ended sessions are announced on.
pub const REVOKE_CHANNEL: &str = "nas_sync_revoke";

#[derive(Deserialize)]
struct Revoked {
    #[serde(rename = "t")]
    tenant: String,
    #[serde(rename = "d")]
    device: String,
    /// The close reason: `DEVICE_REVOKED` (the default, and what older servers send)
    /// or `SIGNED_OUT` (the device's tokens were ended).
    #[serde(rename = "r", default)]
    reason: Option<String>,
}

/// Listens until `stop`.
pub async fn run(
    pool: PgPool,
    hub: Arc<Hub>,
    registry: RegistryHandle,
    quiet: Arc<Quiet>,
    sessions: Arc<Sessions>,
    stop: CancellationToken,
) {
    /// Memory is not trusted once nobody listens (stopped, or this task ended).
    struct Offline(Arc<Quiet>, Arc<Sessions>);
    impl Drop for Offline {
        fn drop(&mut self) {
            self.0.disconnected();
            self.1.disconnected();
        }
    }
    let _offline = Offline(quiet.clone(), sessions.clone());
    let mut backoff = Duration::from_millis(250);
    let mut connected_before = false;
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen_all([CHANNEL, REVOKE_CHANNEL, STATE_CHANNEL, SESSION_CHANNEL])
                .await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = stop.cancelled() => return,
            l = listener => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, ?backoff, "cannot LISTEN for changes; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(250);
        if connected_before {
            tracing::info!("change listener reconnected; telling every socket to resync");
            hub.resync_all();
            // A revocation noted while nobody listened was missed: every open socket's
            // session is checked again, in the background.
            let (pool, hub, sessions) = (pool.clone(), hub.clone(), sessions.clone());
            tokio::spawn(async move { recheck(&pool, &hub, &sessions, &Scope::All).await });
        }
        connected_before = true;
        quiet.connected();
        sessions.connected();
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(n)) => {
                    remember(&quiet, &sessions, n.channel(), n.payload());
                    if n.channel() == SESSION_CHANNEL {
                        // Whatever wrote it (a service, the CLI, raw SQL): the sockets
                        // of what it names are checked again; all of them (a TRUNCATE)
                        // in the background, not holding the notes up.
                        match Scope::of_note(n.payload()) {
                            Scope::All => {
                                let (pool, hub, sessions) =
                                    (pool.clone(), hub.clone(), sessions.clone());
                                tokio::spawn(async move {
                                    recheck(&pool, &hub, &sessions, &Scope::All).await;
                                });
                            }
                            scope => recheck(&pool, &hub, &sessions, &scope).await,
                        }
                    }
                    handle(&pool, &hub, &registry, n.channel(), n.payload()).await;
                }
                Ok(None) => {
                    quiet.disconnected();
                    sessions.disconnected();
                    tracing::warn!("change listener lost its connection; reconnecting");
                    break;
                }
                Err(e) => {
                    quiet.disconnected();
                    sessions.disconnected();
                    tracing::warn!(error = %e, "change listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Checks the sessions behind the open sockets `which` selects against PostgreSQL and
/// closes those that ended: 4001 `DEVICE_REVOKED`, or 4001 `SIGNED_OUT` (released,
/// the user disabled, new password, tokens ended). A check that cannot run (the
/// database unreachable) closes nothing.
pub async fn recheck(pool: &PgPool, hub: &Hub, sessions: &Sessions, which: &Scope) {
    for open in hub.sessions(which) {
        let key = SessionKey {
            tenant: &open.tenant,
            device_id: &open.device_id,
            user: open.user,
            generation: open.generation,
        };
        let reason = match check_access(pool, sessions, key).await {
            Ok(()) => continue,
            Err(AppError::DeviceRevoked) => "DEVICE_REVOKED",
            Err(
                AppError::Unauthorized(_)
                | AppError::UserDisabled
                | AppError::TokenExpired
                | AppError::DeviceInUse,
            ) => "SIGNED_OUT",
            Err(e) => {
                tracing::warn!(error = %e, device_id = %open.device_id,
                    "could not check an open socket's session; keeping it");
                continue;
            }
        };
        tracing::info!(tenant = %open.tenant, device_id = %open.device_id, reason,
            "closing a socket whose session ended");
        hub.close(open.socket, reason);
    }
}

/// Feeds the memory of empty pulls (`sync::quiet`) and the remembered sessions before
/// anything else.
fn remember(quiet: &Quiet, sessions: &Sessions, channel: &str, payload: &str) {
    #[derive(Deserialize)]
    struct Note {
        t: String,
        x: Option<u64>,
    }
    match channel {
        CHANNEL => match serde_json::from_str::<Note>(payload) {
            Ok(n) => quiet.changed(&n.t, n.x),
            // Unreadable: nothing known about which tenant; forget everything.
            Err(_) => quiet.state_changed("{}"),
        },
        STATE_CHANNEL => quiet.state_changed(payload),
        REVOKE_CHANNEL | SESSION_CHANNEL => sessions.noted(payload),
        _ => {}
    }
}

async fn handle(pool: &PgPool, hub: &Hub, registry: &RegistryHandle, channel: &str, payload: &str) {
    if hub.is_empty() {
        return;
    }
    if channel == REVOKE_CHANNEL {
        if let Ok(r) = serde_json::from_str::<Revoked>(payload) {
            let reason = r.reason.as_deref().unwrap_or("DEVICE_REVOKED");
            hub.revoke(&r.tenant, &r.device, reason);
        }
        return;
    }
    if channel != CHANNEL {
        return;
    }
    let change: Change = match serde_json::from_str(payload) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, payload, "unreadable change notification");
            return;
        }
    };
    if let Some(id) = &change.id
        && hub.anyone_sees(&change)
        && let Some(record) = fetch(pool, registry, &change, id).await
    {
        hub.dispatch(
            &change,
            &Outgoing::Event {
                table: change.table.clone(),
                record,
            },
        );
    }
    hub.dispatch(&change, &Outgoing::Changed(change.table.clone()));
}

/// The row as a pull would send it.
async fn fetch(
    pool: &PgPool,
    registry: &RegistryHandle,
    change: &Change,
    id: &str,
) -> Option<Value> {
    let registry = registry.current();
    let table = registry.get(&change.table)?;
    let id = uuid::Uuid::parse_str(id).ok()?;
    let sql = format!(
        "SELECT to_jsonb(t) - 'tenant_id' FROM {} t WHERE id = $1 AND tenant_id = $2",
        Ident(&table.name)
    );
    match sqlx::query_scalar::<_, Value>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&change.tenant)
        .fetch_optional(pool)
        .await
    {
        Ok(row) => row,
        Err(e) => {
            tracing::warn!(error = %e, table = %change.table, "could not read an urgent row");
            None
        }
    }
}
