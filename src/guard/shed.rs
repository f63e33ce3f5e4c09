//! Load shedding and fair shares, as plain types: per route family (`limits::Family`)
//! a bounded number of requests run at once and a bounded number wait for their turn,
//! and one client (a device, or an address before login) may hold at most its share
//! of those places. The web layer's admission (`api::admission`) takes them in order:
//! token, share, body arrival (`super::arrival`), place. A request that finds a family
//! full is answered at once with 503 `UNAVAILABLE` and `Retry-After` instead of
//! queueing without bound (an overload once grew the server to 679 MB of waiting
//! requests).
//!
//! `NAS_SYNC_LOAD_LIMITS` sets the bounds, e.g. `pull=64+2048,push=4+64` (running +
//! waiting) or `off`; the defaults follow the pool size (`NAS_SYNC_DB_MAX_CONNECTIONS`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use anyhow::{Context, bail};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::arrival::Arrival;
use super::limits::Family;

pub use super::RETRY_AFTER_SECS;

/// The families, in the order settings name them.
const FAMILIES: [(&str, Family); 7] = [
    ("pull", Family::Pull),
    ("push", Family::Push),
    ("state", Family::State),
    ("reset", Family::Reset),
    ("ws", Family::Ws),
    ("auth", Family::Auth),
    ("other", Family::Other),
];

/// The most places of a family one client may hold: this fraction of them, and at
/// least [`MIN_SHARE`].
const SHARE_DIVISOR: usize = 16;
const MIN_SHARE: usize = 2;

/// One family's bounds: requests running at once, and waiting beyond those.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub running: usize,
    pub waiting: usize,
}

/// The bounds of every family; `None` for a family turns shedding off there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadLimits(pub Vec<(Family, Option<Bound>)>);

impl LoadLimits {
    /// The defaults for a pool of `pool` connections. Pulls are short and (when empty)
    /// need no connection, so many may run; pushes hold a connection per chunk and
    /// carry large bodies, so few do. Logins spend CPU on password hashing.
    pub fn defaults(pool: u32) -> LoadLimits {
        let p = usize::try_from(pool.max(1)).unwrap_or(16);
        let b = |running: usize, waiting: usize| {
            Some(Bound {
                running: running.max(1),
                waiting,
            })
        };
        LoadLimits(vec![
            (Family::Pull, b(4 * p, 128 * p)),
            (Family::Push, b(p / 2, 8 * p)),
            (Family::State, b(p, 32 * p)),
            (Family::Reset, b(p / 4, 4 * p)),
            (Family::Ws, b(p, 64 * p)),
            (Family::Auth, b(p / 2, 16 * p)),
            (Family::Other, b(p, 32 * p)),
        ])
    }

    /// The defaults for `pool`, overridden by `family=RUNNING+WAITING` (or
    /// `family=off`) pairs separated by commas; `off` alone turns shedding off.
    pub fn parse(spec: &str, pool: u32) -> anyhow::Result<LoadLimits> {
        let mut limits = LoadLimits::defaults(pool);
        let spec = spec.trim();
        if spec == "off" {
            for (_, b) in &mut limits.0 {
                *b = None;
            }
            return Ok(limits);
        }
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').with_context(|| {
                format!("NAS_SYNC_LOAD_LIMITS: '{part}' is not family=RUNNING+WAITING")
            })?;
            let Some((_, family)) = FAMILIES.iter().find(|(n, _)| *n == name.trim()) else {
                bail!(
                    "NAS_SYNC_LOAD_LIMITS: unknown family '{}' (pull, push, state, reset, ws, auth, other)",
                    name.trim()
                );
            };
            let bound = match value.trim() {
                "off" => None,
                v => Some(
                    parse_bound(v).with_context(|| format!("NAS_SYNC_LOAD_LIMITS: '{part}'"))?,
                ),
            };
            for (f, b) in &mut limits.0 {
                if f == family {
                    *b = bound;
                }
            }
        }
        Ok(limits)
    }
}

/// `8+64` → running 8, waiting 64.
fn parse_bound(v: &str) -> anyhow::Result<Bound> {
    let (running, waiting) = v.split_once('+').context("expected RUNNING+WAITING")?;
    let running: usize = running.trim().parse().context("RUNNING is not a number")?;
    let waiting: usize = waiting.trim().parse().context("WAITING is not a number")?;
    if running == 0 {
        bail!("RUNNING must be at least 1 (use off to turn shedding off)");
    }
    Ok(Bound { running, waiting })
}

/// Who a request counts against for its family's fair share.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    /// The device of a verified token (tenant, device id).
    Device(String, String),
    /// The client address (an IPv6 address as its /64) of a request without one.
    Address(IpAddr),
}

/// One family's gate: `admitted` holds running + waiting permits, `running` the
/// running ones, `held` the places each client holds now.
pub struct Gate {
    admitted: Semaphore,
    running: Semaphore,
    bound: Bound,
    share: usize,
    held: Mutex<HashMap<Client, usize>>,
}

/// One client's place in a gate, given back on drop.
pub struct Share<'a> {
    gate: &'a Gate,
    client: Client,
}

impl Gate {
    fn new(bound: Bound) -> Gate {
        Gate {
            admitted: Semaphore::new(bound.running + bound.waiting),
            running: Semaphore::new(bound.running),
            bound,
            share: ((bound.running + bound.waiting) / SHARE_DIVISOR).max(MIN_SHARE),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// A place for `client`, unless it holds its share already.
    pub fn share(&self, client: Client) -> Option<Share<'_>> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = held.entry(client.clone()).or_insert(0);
        if *n >= self.share {
            return None;
        }
        *n += 1;
        Some(Share { gate: self, client })
    }
}

impl Gate {
    /// A place among the running and waiting, if there is one.
    pub fn admit(&self) -> Option<SemaphorePermit<'_>> {
        self.admitted.try_acquire().ok()
    }

    /// Waits for a running slot (the semaphore is never closed; a closed one would
    /// only mean "run unbounded").
    pub async fn run(&self) -> Option<SemaphorePermit<'_>> {
        self.running.acquire().await.ok()
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut held = self
            .gate
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// The gates of this process, and how bodies must arrive.
pub struct Shed {
    gates: HashMap<Family, Gate>,
    arrival: Arrival,
}

impl Shed {
    pub fn new(limits: &LoadLimits, arrival: Arrival) -> Shed {
        let gates = limits
            .0
            .iter()
            .filter_map(|(f, b)| b.map(|b| (*f, Gate::new(b))))
            .collect();
        Shed { gates, arrival }
    }

    /// Requests of `family` admitted and waiting for a running slot now (0 when the
    /// family is not bounded).
    pub fn waiting(&self, family: Family) -> usize {
        self.gates.get(&family).map_or(0, |g| {
            let admitted = g.bound.running + g.bound.waiting - g.admitted.available_permits();
            let running = g.bound.running - g.running.available_permits();
            admitted.saturating_sub(running)
        })
    }

    /// The gate of `family` (`None`: not bounded).
    pub fn gate(&self, family: Family) -> Option<&Gate> {
        self.gates.get(&family)
    }

    /// How bodies must arrive.
    pub fn arrival(&self) -> &Arrival {
        &self.arrival
    }

    /// Bytes of request bodies held in memory now.
    pub fn buffered_bytes(&self) -> usize {
        self.arrival.buffered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_name_their_mistakes() {
        let l = LoadLimits::parse("pull=2+3, push=off", 16).unwrap();
        let get = |f| l.0.iter().find(|(g, _)| *g == f).unwrap().1;
        assert_eq!(
            get(Family::Pull),
            Some(Bound {
                running: 2,
                waiting: 3
            })
        );
        assert_eq!(get(Family::Push), None);
        assert_eq!(
            get(Family::State),
            LoadLimits::defaults(16).0[2].1,
            "others keep their defaults"
        );
        assert!(
            LoadLimits::parse("off", 16)
                .unwrap()
                .0
                .iter()
                .all(|(_, b)| b.is_none())
        );
        for bad in ["pull=2", "pull=0+1", "pull=x+1", "nope=1+1", "pull"] {
            assert!(LoadLimits::parse(bad, 16).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_follow_the_pool_and_never_reach_zero() {
        for (_, b) in LoadLimits::defaults(1).0 {
            assert!(b.unwrap().running >= 1);
        }
        let big = LoadLimits::defaults(32);
        assert_eq!(big.0[0].1.unwrap().running, 128);
    }

    #[test]
    fn a_client_holds_at_most_its_share_and_gives_it_back() {
        let gate = Gate::new(Bound {
            running: 2,
            waiting: 62,
        });
        assert_eq!(gate.share, 4);
        let me = Client::Address("10.0.0.1".parse().unwrap());
        let other = Client::Device("t".into(), "d".into());
        let mine: Vec<_> = (0..4).map(|_| gate.share(me.clone()).unwrap()).collect();
        assert!(gate.share(me.clone()).is_none(), "a fifth place");
        assert!(gate.share(other.clone()).is_some(), "others keep theirs");
        drop(mine);
        assert!(gate.share(me).is_some());
        assert!(gate.held.lock().unwrap().is_empty(), "no entry left behind");
    }
}
