//! Failed-login throttling: at most [`MAX_FAILURES`] failed password checks
//! per login and per client address within [`WINDOW`]; past that, password
//! checks for that login or from that address are refused (429 with
//! `Retry-After`) without being tried, until the oldest failure ages out.
//!
//! Counters live in memory (a restart forgets them) and per process.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: usize = 10;
pub const WINDOW: Duration = Duration::from_secs(300);
/// Keys kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Login(String),
    Addr(IpAddr),
}

/// At most this many bytes of a login are kept as a key (logins are short;
/// a huge one must not cost memory).
const MAX_KEY_LEN: usize = 256;

fn login_key(login: &str) -> Key {
    let mut end = login.len().min(MAX_KEY_LEN);
    while !login.is_char_boundary(end) {
        end -= 1;
    }
    Key::Login(login[..end].to_string())
}

fn keys(login: &str, addr: Option<IpAddr>) -> impl Iterator<Item = Key> {
    std::iter::once(login_key(login)).chain(addr.map(Key::Addr))
}

impl LoginLimiter {
    /// `Err(retry_after)` when this login or address is throttled.
    pub fn check(&self, login: &str, addr: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap();
        let mut wait = Duration::ZERO;
        for key in keys(login, addr) {
            if let Some(times) = map.get(&key) {
                let recent: Vec<&Instant> = times
                    .iter()
                    .filter(|t| now.duration_since(**t) < WINDOW)
                    .collect();
                if recent.len() >= MAX_FAILURES {
                    // Free again when enough of the oldest have aged out.
                    let oldest = recent[recent.len() - MAX_FAILURES];
                    wait = wait.max(WINDOW.saturating_sub(now.duration_since(*oldest)));
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait.max(Duration::from_secs(1)))
        }
    }

    pub fn failed(&self, login: &str, addr: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap();
        if map.len() >= SWEEP_AT {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
        }
        for key in keys(login, addr) {
            let times = map.entry(key).or_default();
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= WINDOW)
            {
                times.pop_front();
            }
            times.push_back(now);
            while times.len() > MAX_FAILURES {
                times.pop_front();
            }
        }
    }

    /// A successful login clears its login's failures (not its address's:
    /// an attacker's own account must not reset the count of its guesses).
    pub fn succeeded(&self, login: &str) {
        self.failures.lock().unwrap().remove(&login_key(login));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_per_login_and_per_address() {
        let l = LoginLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(l.check("jdev", Some(a)).is_ok());
            l.failed("jdev", Some(a));
        }
        let wait = l.check("jdev", Some(b)).unwrap_err();
        assert!(wait <= WINDOW && wait > WINDOW - Duration::from_secs(5));
        assert!(l.check("other", Some(a)).is_err(), "same address");
        assert!(l.check("other", Some(b)).is_ok());
        l.succeeded("jdev");
        assert!(l.check("jdev", Some(b)).is_ok());
        assert!(l.check("jdev", Some(a)).is_err());
    }
}
