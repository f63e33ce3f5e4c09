//! Rate limits (`NAS_SYNC_RATE_LIMIT=off` disables them): a generous per-address
//! request budget against floods, and a strict budget of failed logins per address
//! and username against password guessing. Successful logins cost nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AppError;

pub struct Limits {
    requests: DefaultKeyedRateLimiter<IpAddr>,
    failed_logins: Mutex<HashMap<(IpAddr, String), (u32, Instant)>>,
    max_failures: u32,
    failure_window: Duration,
}

impl Limits {
    pub fn new(per_second: u32, burst: u32, max_failures: u32, failure_window: Duration) -> Self {
        let per_second = NonZeroU32::new(per_second.max(1)).expect("nonzero");
        let burst = NonZeroU32::new(burst.max(1)).expect("nonzero");
        Limits {
            requests: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            failed_logins: Mutex::new(HashMap::new()),
            max_failures,
            failure_window,
        }
    }

    /// Production defaults: 500 requests/s per address (bursts of 1000), 10 failed
    /// logins per address and username per 5 minutes.
    pub fn production() -> Self {
        Limits::new(500, 1000, 10, Duration::from_secs(300))
    }

    /// Spends one request of `ip`'s budget.
    pub fn check_request(&self, ip: IpAddr) -> Result<(), AppError> {
        self.requests.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            AppError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            }
        })
    }

    /// Refuses a login attempt for `username` from an address with too many recent
    /// failures.
    pub fn check_login(&self, ip: IpAddr, username: &str) -> Result<(), AppError> {
        let map = self.failed_logins.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((count, since)) = map.get(&(ip, key(username))) {
            let elapsed = since.elapsed();
            if *count >= self.max_failures && elapsed < self.failure_window {
                let retry = (self.failure_window - elapsed).as_secs().max(1);
                return Err(AppError::RateLimited {
                    retry_after_secs: retry,
                });
            }
        }
        Ok(())
    }

    /// Counts a failed login.
    pub fn login_failed(&self, ip: IpAddr, username: &str) {
        let mut map = self.failed_logins.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            let window = self.failure_window;
            map.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = map
            .entry((ip, username.to_string()))
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.failure_window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

/// Usernames are at most 128 characters; longer ones share one key.
fn key(username: &str) -> String {
    username.chars().take(129).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_lock_out_after_the_limit() {
        let l = Limits::new(10, 10, 3, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check_login(ip, "alice").is_ok());
            l.login_failed(ip, "alice");
        }
        assert!(matches!(
            l.check_login(ip, "alice"),
            Err(AppError::RateLimited { .. })
        ));
        assert!(l.check_login(other, "alice").is_ok());
        assert!(l.check_login(ip, "bob").is_ok());
    }

    #[test]
    fn request_budget_runs_out() {
        let l = Limits::new(1, 5, 3, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let ok = (0..10).filter(|_| l.check_request(ip).is_ok()).count();
        assert_eq!(ok, 5);
    }
}
