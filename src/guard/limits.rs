//! Rate limits, all with governor's keyed GCRA limiters
//! (`NAS_SYNC_RATE_LIMIT=off` disables them):
//!
//! - per device and route family, after the token is verified and before any
//!   database work: pull 200/min, push 100/min, state 100/min, reset 10/hour,
//!   WebSocket connects 60/min, everything else 300/min (the seed's defaults);
//! - login attempts per client address (30/min) and per (username, client address)
//!   (10/min): password guessing is slow from any one place, and wrong passwords
//!   sent from one place never lock the account's owner out elsewhere. Behind a
//!   trusted proxy the client address is the one `X-Forwarded-For` gives
//!   (`super::proxies`);
//! - a generous per-address budget on every request, against floods;
//! - an IPv6 client counts as its /64 (`limit_key`): one host or subscriber gets a
//!   whole /64, so counting its addresses one by one let 60 addresses make 60 guesses;
//! - a per-account slowdown: after 5 wrong passwords for a username within 15
//!   minutes, from anywhere, each further attempt for it waits first, 250 ms doubling
//!   to at most 8 s; a right password clears it. It slows guessing spread over many
//!   addresses and never refuses the owner, who gets in after the wait.
//!
//! Every limit is configurable with `NAS_SYNC_RATE_LIMITS`, e.g.
//! `pull=300/m,reset=20/h`. A refusal is 429 `RATE_LIMITED` with `Retry-After`.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AppError;

/// Route families limited per device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Pull,
    Push,
    State,
    Reset,
    Ws,
    /// Login, refresh and logout: kept apart, so a flood of them cannot take the
    /// places of authenticated routes, nor the reverse.
    Auth,
    Other,
}

impl Family {
    /// Whether every route of the family needs an access token (admission refuses a
    /// request without a valid one before it holds anything).
    pub fn needs_token(self) -> bool {
        matches!(
            self,
            Family::Pull | Family::Push | Family::State | Family::Reset | Family::Ws
        )
    }
}

/// One limit: `count` requests per `period_secs`, in bursts of up to `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period_secs: u64,
}

impl Rate {
    fn quota(self) -> Quota {
        let count = NonZeroU32::new(self.count.max(1)).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs(self.period_secs.max(1));
        Quota::with_period(period / count.get())
            .unwrap_or_else(|| Quota::per_second(count))
            .allow_burst(count)
    }

    /// `200/m`, `10/h`, `500/s`.
    fn parse(s: &str) -> anyhow::Result<Rate> {
        let (count, unit) = s.split_once('/').context("expected N/s, N/m or N/h")?;
        let count: u32 = count.trim().parse().context("the count is not a number")?;
        if count == 0 {
            bail!("a limit of 0 would refuse everything; use NAS_SYNC_RATE_LIMIT=off to disable");
        }
        let period_secs = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            other => bail!("unknown unit '{other}' (use s, m or h)"),
        };
        Ok(Rate { count, period_secs })
    }
}

/// The configured limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitSettings {
    pub pull: Rate,
    pub push: Rate,
    pub state: Rate,
    pub reset: Rate,
    pub ws: Rate,
    pub other: Rate,
    pub login_user: Rate,
    pub login_ip: Rate,
    pub per_ip: Rate,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let r = |count, period_secs| Rate { count, period_secs };
        LimitSettings {
            pull: r(200, 60),
            push: r(100, 60),
            state: r(100, 60),
            reset: r(10, 3600),
            ws: r(60, 60),
            other: r(300, 60),
            login_user: r(10, 60),
            login_ip: r(30, 60),
            per_ip: r(1000, 1),
        }
    }
}

impl LimitSettings {
    /// Defaults overridden by `name=N/unit` pairs separated by commas.
    pub fn parse(spec: &str) -> anyhow::Result<LimitSettings> {
        let mut s = LimitSettings::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rate) = part
                .split_once('=')
                .with_context(|| format!("NAS_SYNC_RATE_LIMITS: '{part}' is not name=N/unit"))?;
            let rate =
                Rate::parse(rate).with_context(|| format!("NAS_SYNC_RATE_LIMITS: '{part}'"))?;
            let slot = match name.trim() {
                "pull" => &mut s.pull,
                "push" => &mut s.push,
                "state" => &mut s.state,
                "reset" => &mut s.reset,
                "ws" => &mut s.ws,
                "other" => &mut s.other,
                "login_user" => &mut s.login_user,
                "login_ip" => &mut s.login_ip,
                "per_ip" => &mut s.per_ip,
                other => bail!(
                    "NAS_SYNC_RATE_LIMITS: unknown limit '{other}' (pull, push, state, reset, ws, other, login_user, login_ip, per_ip)"
                ),
            };
            *slot = rate;
        }
        Ok(s)
    }
}

/// The key a client address is limited under: an IPv4 address as it is, an IPv6
/// address's /64 (the same key the accept loop counts connections under).
pub use crate::serve::address_key as limit_key;

/// Wrong passwords per username, from anywhere: how long its next attempt waits.
#[derive(Default)]
struct Slowdown {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Failures older than this are forgotten.
const SLOWDOWN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Wrong passwords for one username before its attempts wait.
const SLOWDOWN_FREE: u32 = 5;
/// The longest wait.
const SLOWDOWN_MAX: Duration = Duration::from_secs(8);
/// Usernames remembered at most (attempts for names beyond it are not slowed).
const SLOWDOWN_CAPACITY: usize = 100_000;

impl Slowdown {
    fn key(username: &str) -> String {
        username.to_lowercase().chars().take(129).collect()
    }

    fn delay(&self, username: &str) -> Duration {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match failures.get(&Self::key(username)) {
            Some((n, at)) if *n > SLOWDOWN_FREE && at.elapsed() < SLOWDOWN_WINDOW => {
                let doublings = (n - SLOWDOWN_FREE - 1).min(10);
                (Duration::from_millis(250) * 2u32.pow(doublings)).min(SLOWDOWN_MAX)
            }
            _ => Duration::ZERO,
        }
    }

    fn failed(&self, username: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= SLOWDOWN_CAPACITY {
            failures.retain(|_, (_, at)| at.elapsed() < SLOWDOWN_WINDOW);
            if failures.len() >= SLOWDOWN_CAPACITY {
                return;
            }
        }
        let entry = failures
            .entry(Self::key(username))
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= SLOWDOWN_WINDOW {
            entry.0 = 0;
        }
        *entry = (entry.0.saturating_add(1), Instant::now());
    }

    fn succeeded(&self, username: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&Self::key(username));
    }
}

pub struct Limits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    families: HashMap<Family, DefaultKeyedRateLimiter<String>>,
    /// Keyed by (lowercased username, client address).
    login_user: DefaultKeyedRateLimiter<(String, IpAddr)>,
    login_ip: DefaultKeyedRateLimiter<IpAddr>,
    slowdown: Slowdown,
    checks: AtomicU64,
}

/// A governor refusal as the contract's error.
fn refused(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> AppError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    AppError::RateLimited {
        retry_after_secs: wait.as_secs().max(1),
    }
}

impl Limits {
    pub fn new(s: &LimitSettings) -> Limits {
        let families = [
            (Family::Pull, s.pull),
            (Family::Push, s.push),
            (Family::State, s.state),
            (Family::Reset, s.reset),
            (Family::Ws, s.ws),
            (Family::Other, s.other),
        ]
        .into_iter()
        .map(|(f, r)| (f, RateLimiter::keyed(r.quota())))
        .collect();
        Limits {
            per_ip: RateLimiter::keyed(s.per_ip.quota()),
            families,
            login_user: RateLimiter::keyed(s.login_user.quota()),
            login_ip: RateLimiter::keyed(s.login_ip.quota()),
            slowdown: Slowdown::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Forgets idle keys now and then, so memory follows active clients.
    fn housekeeping(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.per_ip.retain_recent();
            self.login_user.retain_recent();
            self.login_ip.retain_recent();
            for l in self.families.values() {
                l.retain_recent();
            }
        }
    }

    /// Spends one request of `ip`'s budget.
    pub fn check_request(&self, ip: IpAddr) -> Result<(), AppError> {
        self.housekeeping();
        self.per_ip.check_key(&limit_key(ip)).map_err(refused)
    }

    /// Spends one request of a device's budget for a route family.
    pub fn check_device(
        &self,
        family: Family,
        tenant: &str,
        device_id: &str,
    ) -> Result<(), AppError> {
        let Some(limiter) = self.families.get(&family) else {
            return Ok(());
        };
        let key = format!("{tenant}\u{0}{device_id}");
        limiter.check_key(&key).map_err(|e| {
            metrics::counter!("sync_rate_limited_total", "family" => format!("{family:?}").to_lowercase())
                .increment(1);
            refused(e)
        })
    }

    /// Spends one login attempt of the client address (before its body is read).
    pub fn check_login_address(&self, ip: IpAddr) -> Result<(), AppError> {
        self.housekeeping();
        self.login_ip.check_key(&limit_key(ip)).map_err(refused)
    }

    /// Spends one login attempt of the username from the client address.
    pub fn check_login_user(&self, ip: IpAddr, username: &str) -> Result<(), AppError> {
        self.login_user
            .check_key(&(Slowdown::key(username), limit_key(ip)))
            .map_err(refused)
    }

    /// Both of the above.
    pub fn check_login(&self, ip: IpAddr, username: &str) -> Result<(), AppError> {
        self.check_login_address(ip)?;
        self.check_login_user(ip, username)
    }

    /// Waits as long as the username's recent wrong passwords say (nothing for most).
    pub async fn login_wait(&self, username: &str) {
        let delay = self.slowdown.delay(username);
        if !delay.is_zero() {
            metrics::counter!("login_slowed_total").increment(1);
            tokio::time::sleep(delay).await;
        }
    }

    /// Records how a password check went for the username.
    pub fn login_outcome(&self, username: &str, ok: bool) {
        if ok {
            self.slowdown.succeeded(username);
        } else {
            self.slowdown.failed(username);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_name_their_mistakes() {
        let s = LimitSettings::parse("pull=5/m, reset=2/h,per_ip=10/s").unwrap();
        assert_eq!(
            s.pull,
            Rate {
                count: 5,
                period_secs: 60
            }
        );
        assert_eq!(
            s.reset,
            Rate {
                count: 2,
                period_secs: 3600
            }
        );
        assert_eq!(s.push, LimitSettings::default().push);
        for bad in ["pull=5", "pull=x/m", "pull=5/d", "nope=1/m", "pull=0/m"] {
            assert!(LimitSettings::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_device_budget_is_its_own() {
        let s = LimitSettings::parse("pull=3/m").unwrap();
        let l = Limits::new(&s);
        let ok = (0..10)
            .filter(|_| l.check_device(Family::Pull, "t", "a").is_ok())
            .count();
        assert_eq!(ok, 3);
        assert!(l.check_device(Family::Pull, "t", "b").is_ok());
        assert!(l.check_device(Family::Push, "t", "a").is_ok());
        assert!(matches!(
            l.check_device(Family::Pull, "t", "a"),
            Err(AppError::RateLimited { retry_after_secs }) if retry_after_secs >= 1
        ));
    }

    #[test]
    fn ipv6_counts_per_64_and_ipv4_per_address() {
        let k = |s: &str| limit_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_ne!(k("10.0.0.1"), k("10.0.0.2"));
        let s = LimitSettings::parse("login_ip=5/m").unwrap();
        let limits = Limits::new(&s);
        let refused = (0..20)
            .filter(|i| {
                let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
                limits.check_login(ip, "boss").is_err()
            })
            .count();
        assert_eq!(refused, 15, "one /64 shares one budget");
    }

    #[test]
    fn wrong_passwords_slow_the_account_down_and_a_right_one_clears_it() {
        let s = Slowdown::default();
        for _ in 0..SLOWDOWN_FREE {
            s.failed("Boss");
        }
        assert_eq!(s.delay("boss"), Duration::ZERO);
        s.failed("boss");
        assert_eq!(s.delay("BOSS"), Duration::from_millis(250));
        s.failed("boss");
        assert_eq!(s.delay("boss"), Duration::from_millis(500));
        for _ in 0..20 {
            s.failed("boss");
        }
        assert_eq!(s.delay("boss"), SLOWDOWN_MAX);
        assert_eq!(s.delay("someone-else"), Duration::ZERO);
        s.succeeded("boss");
        assert_eq!(s.delay("boss"), Duration::ZERO);
    }

    #[test]
    fn login_attempts_are_limited_per_user_and_address_and_per_address() {
        let s = LimitSettings::parse("login_user=3/m,login_ip=5/m").unwrap();
        let l = Limits::new(&s);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            (0..5).filter(|_| l.check_login(a, "alice").is_ok()).count(),
            3
        );
        // Guessing alice's password from a cannot lock her out from b.
        assert!(l.check_login(b, "Alice").is_ok());
        // And the first address has spent its five attempts.
        assert_eq!(
            (0..5)
                .filter(|i| l.check_login(a, &format!("u{i}")).is_ok())
                .count(),
            0
        );
    }
}
