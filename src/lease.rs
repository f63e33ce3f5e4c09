//! `Lease`: how long something a process learned from PostgreSQL is trusted in memory
//! (the remembered sessions of `auth::remembered`, the quiet devices of
//! `sync::quiet`), with jittered expiry and at most one background renewal.

use std::time::{Duration, Instant};

/// How long something this process learned from PostgreSQL is trusted (here, and for
/// `sync::quiet`'s devices without open conflicts): from `at` until between half of
/// `ttl` and all of it, at random, so that what was learned together does not expire
/// together; past half its life, one background check may renew it.
pub struct Lease {
    refresh_at: Instant,
    /// A background check was claimed (at most one per lease).
    refreshing: bool,
    until: Instant,
}

impl Lease {
    pub fn new(at: Instant, ttl: Duration) -> Lease {
        let until = at + ttl / 2 + ttl.mul_f64(rand::random_range(0.0..0.5));
        Lease {
            refresh_at: at + (until - at) / 2,
            refreshing: false,
            until,
        }
    }

    pub fn valid(&self) -> bool {
        Instant::now() < self.until
    }

    /// Whether the caller should check again now; true at most once per lease.
    pub fn claim_refresh(&mut self) -> bool {
        let due = !self.refreshing && Instant::now() >= self.refresh_at;
        self.refreshing |= due;
        due
    }
}
