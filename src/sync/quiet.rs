//! Empty pulls answered from memory. Most pulls find nothing new; this
//! process keeps, per tenant, the newest transaction that wrote to the change log
//! (from the `nas_sync` notifications, which name it, and a primed read of the log),
//! and per device whether it has open conflicts. A pull whose cursor is at or past the
//! tenant's newest change answers "nothing new" without the page statement.
//!
//! Safety rests on one rule: **a memory answer returns the cursor it was given**. It
//! never moves a cursor past anything, so a change whose notification is still on its
//! way (committed, not yet received) is only seen one pull later, never skipped. What
//! memory can get wrong is only "nothing new *yet*", and every such state is bounded:
//!
//! - memory is used only while the change listener is connected; a lost connection
//!   (notifications may be gone) forgets everything, and each tenant is primed again
//!   from the database after the listener is back;
//! - a tenant's memory is primed by reading its newest log entry and the server's
//!   bookkeeping (epoch, registry and roles versions, retention floor) after LISTEN
//!   began, and expires after [`TTL`], so even a notification lost without a
//!   disconnect delays a change by at most that long; past half of it, the next memory
//!   answer primes it again in the background, so a busy tenant never falls back to
//!   the database all at once;
//! - a device's "no open conflicts" is trusted for half of [`TTL`] to all of it (at
//!   random, so a fleet's devices do not expire together), and checked again in the
//!   background once past half its life by a pull it served;
//! - any change of the bookkeeping (`nas_sync_state` notification) forgets everything;
//!   a conflict opened, resolved or deleted forgets the devices of its tenant;
//! - a write committed by this process (push, BridgeCore push, conflict resolution)
//!   forgets its tenant at once, so "push, then another device pulls" through one
//!   process never depends on the notification's delay;
//! - a pull that names tables another module fills (the Odoo mirror's) is answered
//!   from memory only while a check in the database found them ready less than
//!   [`TTL`] ago in this generation; what decides readiness notifies
//!   `nas_sync_state` when it changes (migration V17), which forgets everything;
//! - anything unknown (a tenant not primed, a cursor from a page in the middle of a
//!   transaction, another scope or epoch, a stale registry, a legacy pull) goes to the
//!   database, which answers with its own checks.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::cursor::{Cursor, Position};
use crate::lease::Lease;

/// The prime: tenant `$1`'s newest change-log entry and the bookkeeping. The cast is
/// outside the subquery: inside, `ORDER BY xid` named the cast output column, and
/// PostgreSQL sorted the tenant's whole log instead of reading the index backwards
/// (1 s a prime once the log held millions of rows).
pub const PRIME_SQL: &str = "SELECT (SELECT xid FROM sync_changes WHERE tenant_id = $1
                  ORDER BY xid DESC, seq DESC LIMIT 1)::text::bigint,
                (SELECT value FROM server_meta WHERE key = 'epoch'),
                (SELECT value FROM server_meta WHERE key = 'registry_version'),
                (SELECT value FROM server_meta WHERE key = 'roles_version'),
                (SELECT value FROM server_meta WHERE key = 'retained_from')";

/// How long a tenant's primed memory (and a device's "no open conflicts") is trusted.
pub const TTL: Duration = Duration::from_secs(10);

/// The channel of the bookkeeping and conflict notifications (migration V9).
pub const STATE_CHANNEL: &str = "nas_sync_state";

#[derive(Default)]
struct State {
    /// The listener is connected and listening.
    live: bool,
    /// Bumped whenever memory is forgotten; a prime started before applies to nothing.
    generation: u64,
    /// Per tenant: what was primed.
    tenants: HashMap<String, Tenant>,
    /// Per tenant: the newest writer named by a note in this generation (kept apart
    /// from `tenants`, so a note received while a prime is under way is not lost).
    noted: HashMap<String, u64>,
    /// Per tenant: conflict notes received (a page's "no open conflicts" counts only
    /// when none arrived while it ran).
    conflict_notes: HashMap<String, u64>,
    /// Per (tenant, device): "no open conflicts" as a page saw it, trusted until when
    /// (between half of [`TTL`] and all of it, at random, so that the devices of a
    /// fleet do not all go back to the database in the same instant).
    clean: HashMap<(String, String), Lease>,
    /// Tenants whose prime is under way.
    priming: HashSet<String>,
    /// Per (tenant, table): found ready (`Readiness::check`) at that instant.
    ready: HashMap<(String, String), Instant>,
    /// The largest `pg_snapshot_xmax` a page statement has seen (cursors beyond it go
    /// to the database, which answers `RESYNC_REQUIRED` for a cursor ahead of it).
    next_xid: u64,
}

struct Tenant {
    primed_at: Instant,
    /// The newest transaction with a change-log entry in this tenant when primed.
    newest_xid: u64,
    epoch: Option<Uuid>,
    registry_version: String,
    roles_version: String,
    floor: Option<Position>,
}

/// The prime statement's row: newest xid, epoch, registry and roles versions, floor.
type PrimeRow = (
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// What `before_page` saw, handed back to `after_page`.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    generation: u64,
    conflict_notes: u64,
    at: Instant,
}

/// The memory of one server process.
#[derive(Default)]
pub struct Quiet {
    state: Mutex<State>,
    served: AtomicU64,
}

#[derive(Deserialize)]
struct StateNote {
    #[serde(rename = "t")]
    tenant: Option<String>,
}

impl State {
    /// Forgets everything; primes under way apply to nothing.
    fn forget(&mut self) {
        self.tenants.clear();
        self.noted.clear();
        self.conflict_notes.clear();
        self.clean.clear();
        self.ready.clear();
        self.generation += 1;
    }
}

impl Quiet {
    /// Pulls answered from memory so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// The listener is listening (again): memory may be primed from now on.
    pub fn connected(&self) {
        self.with(|s| {
            s.forget();
            s.live = true;
        });
    }

    /// The listener lost its connection: notifications may be missed, forget it all.
    pub fn disconnected(&self) {
        self.with(|s| {
            s.forget();
            s.live = false;
        });
    }

    /// A `nas_sync` note: `tenant`'s log got an entry from transaction `xid` (`None`
    /// from a trigger that does not name it: forget the tenant).
    pub fn changed(&self, tenant: &str, xid: Option<u64>) {
        self.with(|s| match xid {
            Some(x) => {
                let n = s.noted.entry(tenant.to_string()).or_default();
                *n = (*n).max(x);
            }
            None => {
                s.tenants.remove(tenant);
            }
        });
    }

    /// This process committed a write in `tenant` (rows, conflicts): forget the
    /// tenant now rather than when its notification arrives, so a pull right after the
    /// writer's answer goes to the database. Primes and pages under way count nothing.
    pub fn wrote(&self, tenant: &str) {
        self.with(|s| {
            s.tenants.remove(tenant);
            s.clean.retain(|(t, _), _| t != tenant);
            s.generation += 1;
        });
    }

    /// A `nas_sync_state` note: a conflict of a tenant, or the bookkeeping, changed.
    pub fn state_changed(&self, payload: &str) {
        let tenant = serde_json::from_str::<StateNote>(payload)
            .ok()
            .and_then(|n| n.tenant);
        self.with(|s| match tenant {
            Some(t) => {
                s.clean.retain(|(tenant, _), _| *tenant != t);
                *s.conflict_notes.entry(t).or_default() += 1;
            }
            None => s.forget(),
        });
    }

    /// Whether a pull at `cursor` (checked, decoded) by `device` of `tenant`, with the
    /// `scope` and registry this process computes now, has nothing new: then the
    /// caller answers an empty page with the same cursor.
    pub fn nothing_new(
        &self,
        tenant: &str,
        device: &str,
        cursor: &Cursor,
        scope: u64,
        registry: (&str, &str),
    ) -> bool {
        self.with(|s| {
            let Some(t) = s.tenants.get(tenant) else {
                return false;
            };
            let pos = cursor.position;
            let newest = t.newest_xid.max(s.noted.get(tenant).copied().unwrap_or(0));
            s.live
                && t.primed_at.elapsed() < TTL
                && s.clean
                    .get(&(tenant.to_string(), device.to_string()))
                    .is_some_and(Lease::valid)
                && t.epoch == Some(cursor.epoch)
                && cursor.scope == scope
                && t.registry_version == registry.0
                && t.roles_version == registry.1
                && t.floor.is_none_or(|f| pos >= f)
                && pos.xid != 0
                && pos.xid < s.next_xid
                // Every entry of the tenant is at or before the cursor.
                && pos >= Position::before_xid(newest.saturating_add(1))
        })
        .unwrap_or(false)
        .then(|| self.served.fetch_add(1, Ordering::Relaxed))
        .is_some()
    }

    /// Whether every one of `tables` of `tenant` was found ready (by a check that
    /// began after the last time memory was forgotten) less than [`TTL`] ago.
    pub fn known_ready(&self, tenant: &str, tables: &[&str]) -> bool {
        self.with(|s| {
            s.live
                && tables.iter().all(|t| {
                    s.ready
                        .get(&(tenant.to_string(), (*t).to_string()))
                        .is_some_and(|at| at.elapsed() < TTL)
                })
        })
        .unwrap_or(false)
    }

    /// A readiness check taken with `ticket` found `tables` of `tenant` ready: kept
    /// unless memory was forgotten since the ticket.
    pub fn found_ready(&self, ticket: Ticket, tenant: &str, tables: &[&str]) {
        self.with(|s| {
            if s.live && s.generation == ticket.generation {
                for t in tables {
                    s.ready
                        .insert((tenant.to_string(), (*t).to_string()), ticket.at);
                }
            }
        });
    }

    /// Taken before a page statement (or a prime) for `tenant` runs.
    pub fn before_page(&self, tenant: &str) -> Ticket {
        let at = Instant::now();
        self.with(|s| Ticket {
            generation: s.generation,
            conflict_notes: s.conflict_notes.get(tenant).copied().unwrap_or(0),
            at,
        })
        .unwrap_or(Ticket {
            generation: u64::MAX,
            conflict_notes: 0,
            at,
        })
    }

    /// After a page statement: remembers `device` without open conflicts (when the page
    /// saw none, and nothing was forgotten since `ticket`), and the newest xid seen.
    pub fn after_page(
        &self,
        ticket: Ticket,
        tenant: &str,
        device: &str,
        open_conflicts: bool,
        next_xid: u64,
    ) {
        self.with(|s| {
            s.next_xid = s.next_xid.max(next_xid);
            let quiet = s.conflict_notes.get(tenant).copied().unwrap_or(0) == ticket.conflict_notes;
            if s.live && s.generation == ticket.generation && quiet && !open_conflicts {
                s.clean.insert(
                    (tenant.to_string(), device.to_string()),
                    Lease::new(ticket.at, TTL),
                );
            }
        });
    }

    /// Whether `device`'s "no open conflicts" is past half its life and nobody checks it
    /// again yet: then the caller does, in the background (`check_conflicts`), so a
    /// device that keeps pulling keeps its memory answers.
    pub fn claim_conflict_check(&self, tenant: &str, device: &str) -> bool {
        self.with(|s| {
            s.clean
                .get_mut(&(tenant.to_string(), device.to_string()))
                .is_some_and(Lease::claim_refresh)
        })
        .unwrap_or(false)
    }

    /// Reads whether `device` (of `user`) has open conflicts, as a page statement
    /// would, and remembers the answer under the same rules (`after_page`).
    pub async fn check_conflicts(
        &self,
        pool: &PgPool,
        tenant: &str,
        device: &str,
        user: Uuid,
    ) -> sqlx::Result<()> {
        let ticket = self.before_page(tenant);
        let open: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sync_conflicts WHERE tenant_id = $1
                 AND device_id = $2 AND user_id = $3 AND status = 'open')",
        )
        .bind(tenant)
        .bind(device)
        .bind(user)
        .fetch_one(pool)
        .await?;
        self.after_page(ticket, tenant, device, open, 0);
        Ok(())
    }

    /// Whether `tenant` should be primed now (unknown, or past half its [`TTL`]) while
    /// the listener is live and no prime of it is under way; if so, the caller primes
    /// it (`prime`), and no one else does meanwhile.
    pub fn claim_prime(&self, tenant: &str) -> bool {
        self.with(|s| {
            let due = s.live
                && !s.priming.contains(tenant)
                && s.tenants
                    .get(tenant)
                    .is_none_or(|t| t.primed_at.elapsed() >= TTL / 2);
            if due {
                s.priming.insert(tenant.to_string());
            }
            due
        })
        .unwrap_or(false)
    }

    /// Reads `tenant`'s newest log entry and the bookkeeping; kept unless memory was
    /// forgotten meanwhile. Notes received meanwhile are merged (the larger xid wins).
    /// Ends the prime `claim_prime` granted.
    pub async fn prime(&self, pool: &PgPool, tenant: &str) -> sqlx::Result<()> {
        let primed = self.read_prime(pool, tenant).await;
        self.with(|s| s.priming.remove(tenant));
        primed
    }

    async fn read_prime(&self, pool: &PgPool, tenant: &str) -> sqlx::Result<()> {
        let ticket = self.before_page(tenant);
        let row: PrimeRow = sqlx::query_as(PRIME_SQL)
            .bind(tenant)
            .fetch_one(pool)
            .await?;
        let (newest, epoch, registry_version, roles_version, floor) = row;
        self.with(|s| {
            if !s.live || s.generation != ticket.generation {
                return;
            }
            s.tenants.insert(
                tenant.to_string(),
                Tenant {
                    primed_at: ticket.at,
                    newest_xid: newest.map_or(0, |x| x.max(0).cast_unsigned()),
                    epoch: epoch.as_deref().and_then(|e| Uuid::parse_str(e).ok()),
                    registry_version: registry_version.unwrap_or_default(),
                    roles_version: roles_version.unwrap_or_default(),
                    floor: floor.as_deref().and_then(super::retention::parse_floor),
                },
            );
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_device_past_half_its_life_is_checked_again_once() {
        let q = Quiet::default();
        q.connected();
        let mut ticket = q.before_page("t1");
        ticket.at -= TTL / 2;
        q.after_page(ticket, "t1", "dev-1", false, 0);
        assert!(q.claim_conflict_check("t1", "dev-1"));
        assert!(
            !q.claim_conflict_check("t1", "dev-1"),
            "one check at a time"
        );
        q.after_page(q.before_page("t1"), "t1", "dev-1", false, 0);
        assert!(
            !q.claim_conflict_check("t1", "dev-1"),
            "a fresh page is not due"
        );
        assert!(!q.claim_conflict_check("t1", "dev-2"));
        // Open conflicts: nothing to refresh.
        q.wrote("t1");
        let mut ticket = q.before_page("t1");
        ticket.at -= TTL / 2;
        q.after_page(ticket, "t1", "dev-1", true, 0);
        assert!(!q.claim_conflict_check("t1", "dev-1"));
    }
}
