//! Sessions remembered in memory: which device tokens this process checked
//! against PostgreSQL lately (`session::check_access`), so that an empty pull answered
//! from memory (`sync::quiet`) needs no database round trip at all.
//!
//! The rule that keeps this safe: **a remembered session is trusted only for an answer
//! that is itself from memory**, an empty page that hands back the cursor the device
//! sent. Anything that reads or writes data checks the session in PostgreSQL first. So
//! even in the moment between a revocation's commit and its notification reaching this
//! process, a revoked device learns nothing; its next real request fails as before.
//!
//! What forgets a session:
//! - in the process that made a change that ends sessions (the admin API, the console,
//!   a sign-out), the change itself, as soon as it commits ([`Sessions::forget`]);
//! - a `nas_sync_session` note (migration V11: a trigger on `devices` and `users` sends
//!   one for every change of an owner, generation, revocation, disabled flag or deleted
//!   row, whatever wrote it, CLI, another server process or raw SQL), and the
//!   `nas_sync_revoke` notes the services send;
//! - the change listener losing its connection (notes may be gone): everything, and
//!   nothing is remembered until it listens again;
//! - age: an entry is trusted for [`TTL`] at most after the check that made it, and for
//!   a random part of it at least: sessions checked together (a fleet after a restart)
//!   do not all expire, and go back to PostgreSQL, in the same instant.
//!
//! A check that ran while a note arrived is not remembered (the ticket compares note
//! counts), so a note cannot overtake the check it should have voided.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use uuid::Uuid;

use super::Principal;
use super::token::Claims;
use crate::lease::Lease;

/// What a session check is about: a device of a tenant, the token's user and generation.
#[derive(Clone, Copy, Debug)]
pub struct SessionKey<'a> {
    pub tenant: &'a str,
    pub device_id: &'a str,
    pub user: Uuid,
    pub generation: i64,
}

impl<'a> From<&'a Claims> for SessionKey<'a> {
    fn from(c: &'a Claims) -> Self {
        SessionKey {
            tenant: &c.tenant,
            device_id: &c.device_id,
            user: c.sub,
            generation: c.generation,
        }
    }
}

impl<'a> From<&'a Principal> for SessionKey<'a> {
    fn from(p: &'a Principal) -> Self {
        SessionKey {
            tenant: &p.tenant,
            device_id: &p.device_id,
            user: p.user_id,
            generation: p.generation,
        }
    }
}

/// How long a session checked against PostgreSQL is trusted for memory answers.
pub const TTL: Duration = Duration::from_secs(10);

/// The channel of the session notes (migration V11).
pub const SESSION_CHANNEL: &str = "nas_sync_session";

/// Most sessions kept; past this the memory starts over (a bound, not a cache policy:
/// a fleet is a few hundred devices).
const MAX_ENTRIES: usize = 50_000;

#[derive(Default)]
struct State {
    live: bool,
    /// Notes received so far (a check that saw another count is not remembered).
    notes: u64,
    entries: HashMap<(String, String), Entry>,
}

struct Entry {
    user: Uuid,
    generation: i64,
    lease: Lease,
}

/// Taken before a session check runs; handed to [`Sessions::checked`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    notes: u64,
    at: Instant,
}

/// The remembered sessions of this server process.
#[derive(Default)]
pub struct Sessions {
    state: Mutex<State>,
}

/// What a session note (`nas_sync_session`, `nas_sync_revoke`) is about: one device, a
/// user's devices, or, when it names neither readably, everything. The remembered
/// sessions forget it; the WebSocket hub checks the matching open sockets again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Device { tenant: String, device: String },
    User(Uuid),
}

impl Scope {
    /// A note's payload: `{"t", "d"}` for a device, `{"u"}` for a user.
    pub fn of_note(payload: &str) -> Scope {
        #[derive(Deserialize)]
        struct Note {
            t: Option<String>,
            d: Option<String>,
            u: Option<Uuid>,
        }
        match serde_json::from_str::<Note>(payload) {
            Ok(Note {
                t: Some(tenant),
                d: Some(device),
                ..
            }) => Scope::Device { tenant, device },
            Ok(Note { u: Some(u), .. }) => Scope::User(u),
            _ => Scope::All,
        }
    }
}

impl Sessions {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// Whether `key` was checked lately, unchanged since, and the listener is up.
    pub fn trusts(&self, key: SessionKey<'_>) -> bool {
        self.with(|s| {
            s.live
                && s.entries
                    .get(&(key.tenant.to_string(), key.device_id.to_string()))
                    .is_some_and(|e| {
                        e.user == key.user && e.generation == key.generation && e.lease.valid()
                    })
        })
        .unwrap_or(false)
    }

    /// Whether a trusted session is past half its life and nobody checks it again yet:
    /// then the caller checks it in the background (`session::check_access`), so a
    /// device that keeps pulling never waits for the check on its request path.
    pub fn claim_refresh(&self, key: SessionKey<'_>) -> bool {
        self.with(|s| {
            s.entries
                .get_mut(&(key.tenant.to_string(), key.device_id.to_string()))
                .is_some_and(|e| e.lease.claim_refresh())
        })
        .unwrap_or(false)
    }

    /// Taken just before `check_access` runs.
    pub fn ticket(&self) -> Ticket {
        let at = Instant::now();
        let notes = self.with(|s| s.notes).unwrap_or(u64::MAX);
        Ticket { notes, at }
    }

    /// `check_access` passed for `key`: remembered, unless a note arrived since the
    /// ticket was taken or nobody listens.
    pub fn checked(&self, ticket: Ticket, key: SessionKey<'_>) {
        self.with(|s| {
            if !s.live || s.notes != ticket.notes {
                return;
            }
            if s.entries.len() >= MAX_ENTRIES {
                s.entries.clear();
            }
            s.entries.insert(
                (key.tenant.to_string(), key.device_id.to_string()),
                Entry {
                    user: key.user,
                    generation: key.generation,
                    lease: Lease::new(ticket.at, TTL),
                },
            );
        });
    }

    /// A note on `nas_sync_session` or `nas_sync_revoke`: forgets what it names
    /// (everything, when it names nothing readable).
    pub fn noted(&self, payload: &str) {
        let scope = Scope::of_note(payload);
        self.with(|s| {
            s.notes += 1;
            match scope {
                Scope::Device { tenant, device } => {
                    s.entries.remove(&(tenant, device));
                }
                Scope::User(u) => s.entries.retain(|_, e| e.user != u),
                Scope::All => s.entries.clear(),
            }
        });
    }

    /// A session-ending change this process just committed (revoke, release, disable,
    /// new password, sign-out): forgotten here at once, without waiting for its note.
    /// `device` names one device of `tenant`; `None`, every device of the tenant (a
    /// user's devices: the entries do not know usernames).
    pub fn forget(&self, tenant: &str, device: Option<&str>) {
        self.with(|s| {
            s.notes += 1;
            match device {
                Some(d) => {
                    s.entries.remove(&(tenant.to_string(), d.to_string()));
                }
                None => s.entries.retain(|(t, _), _| t != tenant),
            }
        });
    }

    /// The listener is listening (again).
    pub fn connected(&self) {
        self.with(|s| {
            s.entries.clear();
            s.notes += 1;
            s.live = true;
        });
    }

    /// The listener lost its connection: notes may be missed, forget it all.
    pub fn disconnected(&self) {
        self.with(|s| {
            s.entries.clear();
            s.notes += 1;
            s.live = false;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(device: &str, user: Uuid, generation: i64) -> Claims {
        Claims {
            sub: user,
            username: "u".into(),
            tenant: "t1".into(),
            role: "store".into(),
            store_id: None,
            device_id: device.into(),
            generation,
            odoo_user_id: None,
            sid: None,
            user_type: None,
            tenant_id: None,
            iat: 0,
            exp: 0,
        }
    }

    fn remembered(s: &Sessions, c: &Claims) {
        let t = s.ticket();
        s.checked(t, c.into());
    }

    #[test]
    fn nothing_is_trusted_while_nobody_listens() {
        let s = Sessions::default();
        let c = claims("dev-1", Uuid::new_v4(), 1);
        remembered(&s, &c);
        assert!(!s.trusts((&c).into()));
        s.connected();
        remembered(&s, &c);
        assert!(s.trusts((&c).into()));
        s.disconnected();
        assert!(!s.trusts((&c).into()));
        remembered(&s, &c);
        assert!(!s.trusts((&c).into()));
    }

    #[test]
    fn only_the_same_user_and_generation_are_trusted() {
        let s = Sessions::default();
        s.connected();
        let user = Uuid::new_v4();
        remembered(&s, &claims("dev-1", user, 7));
        assert!(s.trusts((&claims("dev-1", user, 7)).into()));
        assert!(!s.trusts((&claims("dev-1", user, 8)).into()));
        assert!(!s.trusts((&claims("dev-1", Uuid::new_v4(), 7)).into()));
        assert!(!s.trusts((&claims("dev-2", user, 7)).into()));
    }

    #[test]
    fn notes_forget_what_they_name() {
        let s = Sessions::default();
        s.connected();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (ca, cb, cc) = (
            claims("dev-a", a, 1),
            claims("dev-b", b, 1),
            claims("dev-c", b, 1),
        );
        for c in [&ca, &cb, &cc] {
            remembered(&s, c);
        }
        s.noted(r#"{"t":"t1","d":"dev-a"}"#);
        assert!(!s.trusts((&ca).into()));
        assert!(s.trusts((&cb).into()));
        s.noted(&format!(r#"{{"u":"{b}"}}"#));
        assert!(!s.trusts((&cb).into()) && !s.trusts((&cc).into()));
        remembered(&s, &ca);
        s.noted("not json");
        assert!(!s.trusts((&ca).into()));
    }

    #[test]
    fn a_session_past_half_its_life_is_refreshed_once() {
        let s = Sessions::default();
        s.connected();
        let c = claims("dev-1", Uuid::new_v4(), 1);
        let old = Ticket {
            notes: s.ticket().notes,
            at: Instant::now() - TTL / 2,
        };
        s.checked(old, (&c).into());
        assert!(s.claim_refresh((&c).into()));
        assert!(!s.claim_refresh((&c).into()), "one refresh at a time");
        remembered(&s, &c);
        assert!(!s.claim_refresh((&c).into()), "a fresh check is not due");
        assert!(!s.claim_refresh((&claims("dev-2", c.sub, 1)).into()));
    }

    #[test]
    fn a_note_during_a_check_voids_it() {
        let s = Sessions::default();
        s.connected();
        let c = claims("dev-1", Uuid::new_v4(), 1);
        let ticket = s.ticket();
        s.noted(r#"{"t":"t1","d":"dev-1"}"#);
        s.checked(ticket, (&c).into());
        assert!(!s.trusts((&c).into()));
    }
}
