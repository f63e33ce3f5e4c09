//! Load shedding: per route family (`limits::Family`) a bounded number of requests run
//! at once and a bounded number wait for their turn; a request that finds both full is
//! answered at once with 503 `UNAVAILABLE` and `Retry-After`, instead of queueing
//! without bound (issue 13: an overload once grew the server to 679 MB of waiting
//! requests). A request waits before its body is read, so a waiting request costs
//! little more than its socket.
//!
//! `NAS_SYNC_LOAD_LIMITS` sets the bounds, e.g. `pull=64+2048,push=4+64` (running +
//! waiting) or `off`; the defaults follow the pool size (`NAS_SYNC_DB_MAX_CONNECTIONS`).

use std::collections::HashMap;

use anyhow::{Context, bail};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::limits::Family;
use crate::app::AppState;
use crate::error::AppError;

/// How long a shed client is told to wait before retrying, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The families, in the order settings name them.
const FAMILIES: [(&str, Family); 6] = [
    ("pull", Family::Pull),
    ("push", Family::Push),
    ("state", Family::State),
    ("reset", Family::Reset),
    ("ws", Family::Ws),
    ("other", Family::Other),
];

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
    /// carry large bodies, so few do.
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
                    "NAS_SYNC_LOAD_LIMITS: unknown family '{}' (pull, push, state, reset, ws, other)",
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

/// One family's gate: `admitted` holds running + waiting permits, `running` the
/// running ones.
struct Gate {
    admitted: Semaphore,
    running: Semaphore,
    bound: Bound,
}

/// The gates of this process.
pub struct Shed {
    gates: HashMap<Family, Gate>,
}

impl Shed {
    pub fn new(limits: &LoadLimits) -> Shed {
        let gates = limits
            .0
            .iter()
            .filter_map(|(f, b)| b.map(|b| (*f, b)))
            .map(|(f, bound)| {
                let gate = Gate {
                    admitted: Semaphore::new(bound.running + bound.waiting),
                    running: Semaphore::new(bound.running),
                    bound,
                };
                (f, gate)
            })
            .collect();
        Shed { gates }
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
}

/// Runs the request when its family has room, else answers 503 with `Retry-After`.
pub async fn shed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let family = Family::of(req.uri().path());
    let Some(gate) = state.shed.gates.get(&family) else {
        return next.run(req).await;
    };
    let Ok(_admitted) = gate.admitted.try_acquire() else {
        metrics::counter!("sync_shed_total", "family" => format!("{family:?}").to_lowercase())
            .increment(1);
        return AppError::Overloaded {
            retry_after_secs: RETRY_AFTER_SECS,
        }
        .into_response();
    };
    // The semaphore is never closed; a closed one would only mean "run unbounded".
    let _running = gate.running.acquire().await;
    next.run(req).await
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
}
