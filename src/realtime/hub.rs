//! The hub: the open sockets of this process and the fan-out of changes to them.
//!
//! Each socket has a bounded queue. Fan-out never waits: when a socket's queue is
//! full (a client that does not read), the socket is dropped and its client
//! reconnects and pulls, so one slow client never delays the others.

use crate::auth::remembered::Scope;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::auth::{Principal, Role};
use crate::sync::registry::RegistryHandle;

/// Messages a socket's queue can hold before the socket is dropped as too slow.
pub const QUEUE: usize = 256;

/// What the hub hands a socket task.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Rows of this table changed (coalesced into one `changes` message by the task).
    Changed(String),
    /// A row sent whole: `{"type":"event","table","record"}`.
    Event { table: String, record: Value },
    /// Close the socket with this code and reason (revoked or signed-out device).
    Close { code: u16, reason: String },
}

/// A notification from the change trigger (see migrations/V4__realtime.sql).
#[derive(Debug, Clone, Deserialize)]
pub struct Change {
    #[serde(rename = "t")]
    pub tenant: String,
    #[serde(rename = "tb")]
    pub table: String,
    #[serde(rename = "s")]
    pub store: Option<String>,
    #[serde(rename = "o")]
    pub origin: Option<String>,
    /// Present for rows to send whole (urgent table or `priority = 'high'`).
    pub id: Option<String>,
}

struct Subscriber {
    tenant: String,
    device_id: String,
    /// The token's user and generation: what a session check of this socket needs.
    user: uuid::Uuid,
    generation: i64,
    role: Role,
    store: Option<String>,
    tx: mpsc::Sender<Outgoing>,
}

/// The session behind one open socket.
#[derive(Debug, Clone)]
pub struct OpenSession {
    pub socket: u64,
    pub tenant: String,
    pub device_id: String,
    pub user: uuid::Uuid,
    pub generation: i64,
}

/// The sockets of this process.
pub struct Hub {
    registry: RegistryHandle,
    sockets: RwLock<HashMap<u64, Subscriber>>,
    next: AtomicU64,
}

impl Hub {
    pub fn new(registry: RegistryHandle) -> Arc<Hub> {
        Arc::new(Hub {
            registry,
            sockets: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    /// Registers a socket; returns its id and its queue.
    pub fn subscribe(&self, who: &Principal) -> (u64, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let sub = Subscriber {
            tenant: who.tenant.clone(),
            device_id: who.device_id.clone(),
            user: who.user_id,
            generation: who.generation,
            role: who.role,
            store: match who.role {
                Role::Store => who.store_id.clone(),
                Role::Manager => None,
            },
            tx,
        };
        if let Ok(mut map) = self.sockets.write() {
            map.insert(id, sub);
            metrics::gauge!("ws_connections").set(map.len() as f64);
        }
        (id, rx)
    }

    pub fn unsubscribe(&self, id: u64) {
        if let Ok(mut map) = self.sockets.write() {
            map.remove(&id);
            metrics::gauge!("ws_connections").set(map.len() as f64);
        }
    }

    /// Open sockets of one device in this process.
    pub fn count_for(&self, tenant: &str, device_id: &str) -> usize {
        self.sockets
            .read()
            .map(|m| {
                m.values()
                    .filter(|s| s.tenant == tenant && s.device_id == device_id)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Open sockets of this process.
    pub fn len(&self) -> usize {
        self.sockets.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a subscriber may see a change of `table` in `store`.
    fn may_see(&self, sub: &Subscriber, change: &Change) -> bool {
        if sub.tenant != change.tenant {
            return false;
        }
        let registry = self.registry.current();
        let Some(table) = registry.get(&change.table) else {
            return false;
        };
        if !table.can_read(sub.role) {
            return false;
        }
        match (&sub.store, &change.store) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        }
    }

    /// Sends `message` to every socket allowed to see `change` (the device that made
    /// the change excepted); sockets whose queue is full are dropped.
    pub fn dispatch(&self, change: &Change, message: &Outgoing) {
        let mut slow = Vec::new();
        if let Ok(map) = self.sockets.read() {
            for (id, sub) in map.iter() {
                if change.origin.as_deref() == Some(sub.device_id.as_str())
                    || !self.may_see(sub, change)
                {
                    continue;
                }
                if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(message.clone()) {
                    slow.push(*id);
                }
            }
        }
        for id in slow {
            tracing::warn!(
                socket = id,
                "WebSocket client too slow; dropped (it will reconnect and pull)"
            );
            metrics::counter!("ws_dropped_total").increment(1);
            self.unsubscribe(id);
        }
    }

    /// Whether any socket of `tenant` may see `change` (to skip fetching rows nobody
    /// would receive).
    pub fn anyone_sees(&self, change: &Change) -> bool {
        self.sockets
            .read()
            .map(|m| {
                m.values().any(|s| {
                    change.origin.as_deref() != Some(s.device_id.as_str())
                        && self.may_see(s, change)
                })
            })
            .unwrap_or(false)
    }

    /// After a gap in notifications (the listener reconnected): every socket is told
    /// that every table it reads may have changed.
    pub fn resync_all(&self) {
        let registry = self.registry.current();
        let mut slow = Vec::new();
        if let Ok(map) = self.sockets.read() {
            for (id, sub) in map.iter() {
                for table in registry.readable_by(sub.role) {
                    if let Err(mpsc::error::TrySendError::Full(_)) =
                        sub.tx.try_send(Outgoing::Changed(table.name.clone()))
                    {
                        slow.push(*id);
                        break;
                    }
                }
            }
        }
        for id in slow {
            self.unsubscribe(id);
        }
    }

    /// Closes every socket (the server is shutting down; clients reconnect elsewhere
    /// or later).
    pub fn close_all(&self) {
        if let Ok(map) = self.sockets.read() {
            for sub in map.values() {
                let _ = sub.tx.try_send(Outgoing::Close {
                    code: 1001,
                    reason: "server shutting down".into(),
                });
            }
        }
    }

    /// The sessions behind open sockets that a note's scope selects: (socket, tenant, device,
    /// user, generation).
    pub fn sessions(&self, which: &Scope) -> Vec<OpenSession> {
        self.sockets
            .read()
            .map(|m| {
                m.iter()
                    .filter(|(_, s)| match which {
                        Scope::All => true,
                        Scope::Device { tenant, device } => {
                            &s.tenant == tenant && &s.device_id == device
                        }
                        Scope::User(u) => s.user == *u,
                    })
                    .map(|(id, s)| OpenSession {
                        socket: *id,
                        tenant: s.tenant.clone(),
                        device_id: s.device_id.clone(),
                        user: s.user,
                        generation: s.generation,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Closes one socket with code 4001 and `reason`.
    pub fn close(&self, socket: u64, reason: &str) {
        if let Ok(map) = self.sockets.read()
            && let Some(sub) = map.get(&socket)
        {
            let _ = sub.tx.try_send(Outgoing::Close {
                code: 4001,
                reason: reason.into(),
            });
        }
    }

    /// Closes the sockets of a device that was revoked or whose tokens were ended, with
    /// code 4001 and `reason` (`DEVICE_REVOKED` or `SIGNED_OUT`).
    pub fn revoke(&self, tenant: &str, device_id: &str, reason: &str) {
        if let Ok(map) = self.sockets.read() {
            for sub in map
                .values()
                .filter(|s| s.tenant == tenant && s.device_id == device_id)
            {
                let _ = sub.tx.try_send(Outgoing::Close {
                    code: 4001,
                    reason: reason.into(),
                });
            }
        }
    }
}
