//! Failed-login throttling that an attacker cannot turn against the user.
//!
//! Failures are counted per (login, client address) and per client address,
//! never per login alone: hammering `admin` from one address locks that
//! address out of `admin` (after [`MAX_PER_LOGIN_ADDR`] failures within
//! [`WINDOW`]) and out of everything (after [`MAX_PER_ADDR`]), while the
//! real admin on another address still logs in. An IPv6 client is counted
//! by its /64 (one host commonly holds a whole /64); an IPv4-mapped IPv6
//! address counts as the IPv4 address.
//!
//! Checking and recording are one step: [`LoginLimiter::begin`] reserves
//! the attempt under the lock, and attempts in progress count as failures
//! until they end, so a burst of concurrent guesses cannot all pass the
//! check before the first one fails. An attempt dropped without an outcome
//! (the client went away mid-check) counts as a failure. One address has at
//! most [`MAX_IN_PROGRESS_PER_ADDR`] checks in progress at once: the argon2
//! queue is shared by everyone, and one address must not fill it ahead of
//! the real user.
//!
//! Counters live in memory (a restart forgets them) and per process.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of one login from one address within [`WINDOW`].
pub const MAX_PER_LOGIN_ADDR: usize = 10;
/// Failures from one address, whatever the logins, within [`WINDOW`].
pub const MAX_PER_ADDR: usize = 30;
/// Password checks from one address running or queued at once; more are
/// refused untried (429, `Retry-After: 1`).
pub const MAX_IN_PROGRESS_PER_ADDR: usize = 4;
pub const WINDOW: Duration = Duration::from_secs(300);
/// What a client refused only because attempts are in progress is told to
/// wait: they end within a second or two.
const PENDING_WAIT: Duration = Duration::from_secs(1);
/// Keys kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Default)]
pub struct LoginLimiter {
    state: Mutex<HashMap<Key, Entry>>,
}

/// Where attempts come from: an IPv4 address, an IPv6 /64, or unknown (no
/// peer address; all such attempts share one counter).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Source {
    Addr(IpAddr),
    Unknown,
}

impl Source {
    fn of(addr: Option<IpAddr>) -> Source {
        match addr {
            None => Source::Unknown,
            Some(IpAddr::V4(v4)) => Source::Addr(IpAddr::V4(v4)),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::Addr(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Source::Addr(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    LoginAt(String, Source),
    At(Source),
}

impl Key {
    fn limit(&self) -> usize {
        match self {
            Key::LoginAt(..) => MAX_PER_LOGIN_ADDR,
            Key::At(_) => MAX_PER_ADDR,
        }
    }
}

#[derive(Default)]
struct Entry {
    /// Recent failures, oldest first (at most the key's limit).
    failures: VecDeque<Instant>,
    /// Attempts begun and not ended.
    pending: usize,
}

impl Entry {
    fn expire(&mut self, now: Instant) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.failures.pop_front();
        }
    }

    /// How long `key` stays locked out by the failures recorded (older ones
    /// expired first), or `None`: free again when enough of the oldest have
    /// aged out.
    fn lockout(&mut self, key: &Key, now: Instant) -> Option<Duration> {
        self.expire(now);
        let limit = key.limit();
        let oldest = *self.failures.get(self.failures.len().checked_sub(limit)?)?;
        Some(WINDOW.saturating_sub(now.duration_since(oldest)))
    }

    fn idle(&self, now: Instant) -> bool {
        self.pending == 0
            && self
                .failures
                .back()
                .is_none_or(|t| now.duration_since(*t) >= WINDOW)
    }
}

/// At most this many bytes of a login are kept as a key (logins are short;
/// a huge one must not cost memory).
const MAX_KEY_LEN: usize = 256;

fn keys(login: &str, addr: Option<IpAddr>) -> [Key; 2] {
    let mut end = login.len().min(MAX_KEY_LEN);
    while !login.is_char_boundary(end) {
        end -= 1;
    }
    let source = Source::of(addr);
    [
        Key::LoginAt(login[..end].to_string(), source),
        Key::At(source),
    ]
}

/// How an attempt ended.
enum Outcome {
    Failed,
    Succeeded,
    NotTried,
}

/// A password check allowed to run. End it with [`Attempt::failed`],
/// [`Attempt::succeeded`] or [`Attempt::not_tried`]; dropped otherwise, it
/// counts as failed.
#[must_use]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    keys: [Key; 2],
    ended: bool,
}

impl Attempt<'_> {
    /// A wrong password: counted against the login at this address and
    /// against the address.
    pub fn failed(mut self) {
        self.end(Outcome::Failed);
    }

    /// A right password clears its login's failures at this address (not
    /// the address's: an attacker's own account must not reset the count of
    /// its guesses).
    pub fn succeeded(mut self) {
        self.end(Outcome::Succeeded);
    }

    /// Not checked (the server was too busy, the directory did not answer):
    /// counts for nothing.
    pub fn not_tried(mut self) {
        self.end(Outcome::NotTried);
    }

    fn end(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let now = Instant::now();
        let mut map = self.limiter.state.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            let limit = key.limit();
            let Some(entry) = map.get_mut(key) else {
                continue;
            };
            entry.pending = entry.pending.saturating_sub(1);
            entry.expire(now);
            match (&outcome, key) {
                (Outcome::Failed, _) => {
                    entry.failures.push_back(now);
                    while entry.failures.len() > limit {
                        entry.failures.pop_front();
                    }
                }
                (Outcome::Succeeded, Key::LoginAt(..)) => entry.failures.clear(),
                _ => {}
            }
            if entry.idle(now) {
                map.remove(key);
            }
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.end(Outcome::Failed);
    }
}

impl LoginLimiter {
    /// Whether `login` from `addr` is locked out by failures (not by
    /// attempts in progress), and for how long: nothing may vouch for a
    /// password from there meanwhile, not even one checked lately.
    pub fn locked_out(&self, login: &str, addr: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let wait = keys(login, addr)
            .iter()
            .filter_map(|key| map.get_mut(key).and_then(|e| e.lockout(key, now)))
            .max()?;
        Some(wait.max(Duration::from_secs(1)))
    }

    /// Reserve a password check of `login` from `addr`, or `Err(retry_after)`
    /// when the failures recorded plus the checks in progress reach the
    /// limit of the login at this address or of the address.
    pub fn begin(&self, login: &str, addr: Option<IpAddr>) -> Result<Attempt<'_>, Duration> {
        let keys = keys(login, addr);
        let now = Instant::now();
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, e| !e.idle(now));
        }
        let mut wait = Duration::ZERO;
        for key in &keys {
            let Some(entry) = map.get_mut(key) else {
                continue;
            };
            if let Some(lockout) = entry.lockout(key, now) {
                wait = wait.max(lockout);
            } else if entry.failures.len() + entry.pending >= key.limit()
                || matches!(key, Key::At(_)) && entry.pending >= MAX_IN_PROGRESS_PER_ADDR
            {
                wait = wait.max(PENDING_WAIT);
            }
        }
        if !wait.is_zero() {
            return Err(wait.max(Duration::from_secs(1)));
        }
        for key in &keys {
            map.entry(key.clone()).or_default().pending += 1;
        }
        Ok(Attempt {
            limiter: self,
            keys,
            ended: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn fail(l: &LoginLimiter, login: &str, addr: Option<IpAddr>) {
        l.begin(login, addr).expect("not throttled").failed();
    }

    #[test]
    fn throttles_a_login_per_address_not_everywhere() {
        let l = LoginLimiter::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..MAX_PER_LOGIN_ADDR {
            fail(&l, "admin", a);
        }
        let wait = l.begin("admin", a).err().expect("throttled");
        assert!(wait <= WINDOW && wait > WINDOW - Duration::from_secs(5));
        // The real admin elsewhere, and other logins from the same address,
        // are not affected.
        l.begin("admin", b).unwrap().succeeded();
        l.begin("jdev", a).unwrap().succeeded();
        // A success elsewhere does not unlock the attacker's address.
        assert!(l.begin("admin", a).is_err());
        // Locked out by failures, not by checks in progress.
        let wait = l.locked_out("admin", a).expect("locked out");
        assert!(wait <= WINDOW && wait > WINDOW - Duration::from_secs(5));
        assert_eq!(l.locked_out("admin", b), None);
        let _in_progress = l.begin("jdev", b).unwrap();
        assert_eq!(l.locked_out("jdev", b), None);
    }

    #[test]
    fn throttles_an_address_across_logins() {
        let l = LoginLimiter::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for i in 0..MAX_PER_ADDR {
            fail(&l, &format!("user{i}"), a);
        }
        assert!(l.begin("admin", a).is_err(), "any login from the address");
        l.begin("admin", b).unwrap().succeeded();
        assert!(l.begin("user0", a).is_err());
    }

    #[test]
    fn success_clears_the_login_at_its_address_only() {
        let l = LoginLimiter::default();
        let a = ip("10.0.0.1");
        for _ in 0..MAX_PER_LOGIN_ADDR - 1 {
            fail(&l, "jdev", a);
        }
        l.begin("jdev", a).unwrap().succeeded();
        for _ in 0..MAX_PER_LOGIN_ADDR {
            fail(&l, "jdev", a);
        }
        assert!(l.begin("jdev", a).is_err());
        // The address kept all 19 failures: 11 more lock it out entirely.
        for i in 0..MAX_PER_ADDR - 2 * MAX_PER_LOGIN_ADDR + 1 {
            fail(&l, &format!("other{i}"), a);
        }
        assert!(l.begin("someone", a).is_err());
    }

    #[test]
    fn attempts_in_progress_count_so_a_burst_cannot_pass_together() {
        let l = LoginLimiter::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..MAX_PER_LOGIN_ADDR - 2 {
            fail(&l, "admin", a);
        }
        let burst: Vec<_> = (0..300).filter_map(|_| l.begin("admin", a).ok()).collect();
        assert_eq!(burst.len(), 2, "only what is left of the limit may run");
        // Refused for now, told to come back soon: they may yet succeed.
        assert_eq!(l.begin("admin", a).err(), Some(PENDING_WAIT));
        l.begin("admin", b).unwrap().succeeded();
        for attempt in burst {
            attempt.failed();
        }
        assert!(l.begin("admin", a).err().unwrap() > Duration::from_secs(60));
    }

    #[test]
    fn one_address_has_few_checks_in_progress() {
        let l = LoginLimiter::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let burst: Vec<_> = (0..300)
            .filter_map(|i| l.begin(&format!("user{i}"), a).ok())
            .collect();
        assert_eq!(burst.len(), MAX_IN_PROGRESS_PER_ADDR);
        assert_eq!(l.begin("admin", a).err(), Some(PENDING_WAIT));
        // Others are not held up; refusals counted for nothing.
        l.begin("admin", b).unwrap().succeeded();
        drop(burst);
        l.begin("admin", a).unwrap().succeeded();
    }

    #[test]
    fn an_attempt_not_tried_counts_for_nothing_and_a_dropped_one_fails() {
        let l = LoginLimiter::default();
        let a = ip("10.0.0.1");
        for _ in 0..3 * MAX_PER_LOGIN_ADDR {
            l.begin("admin", a).unwrap().not_tried();
        }
        for _ in 0..MAX_PER_LOGIN_ADDR {
            drop(l.begin("admin", a).unwrap());
        }
        assert!(l.begin("admin", a).is_err());
        assert!(l.state.lock().unwrap().values().all(|e| e.pending == 0));
    }

    #[test]
    fn concurrent_threads_get_exactly_the_limit_through() {
        let l = std::sync::Arc::new(LoginLimiter::default());
        let a = ip("10.0.0.1");
        let passed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..32 {
                s.spawn(|| {
                    for _ in 0..10 {
                        if let Ok(attempt) = l.begin("admin", a) {
                            passed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(1));
                            attempt.failed();
                        }
                    }
                });
            }
        });
        assert_eq!(
            passed.load(std::sync::atomic::Ordering::Relaxed),
            MAX_PER_LOGIN_ADDR
        );
    }

    #[test]
    fn addresses_are_grouped_sensibly() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")),
            Source::of(ip("2001:db8:1:2:bbbb::2")),
            "one /64"
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
        assert_ne!(Source::of(ip("127.0.0.1")), Source::of(ip("127.0.0.2")));
        assert_eq!(Source::of(None), Source::Unknown);
        // A huge login costs a bounded key.
        let [Key::LoginAt(k, _), _] = keys(&"é".repeat(1000), None) else {
            unreachable!()
        };
        assert!(k.len() <= MAX_KEY_LEN);
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let l = LoginLimiter::default();
        l.begin("jdev", ip("10.0.0.1")).unwrap().succeeded();
        l.begin("jdev", ip("10.0.0.1")).unwrap().not_tried();
        assert!(l.state.lock().unwrap().is_empty());
    }
}
