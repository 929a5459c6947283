//! Passwords checked lately: a local user's login and password that passed
//! the argon2 check are remembered for [`FOR`], so the same credentials
//! sent again (a client answering each registry challenge with HTTP basic
//! auth: `podman push` asks a token per layer scope, several at once) are
//! not hashed again, and are not turned away as a burst of attempts.
//!
//! What is kept is an HMAC of the password under a key made at start (never
//! the password), next to the user's stored hash: a changed password (or a
//! removed user) no longer matches. A wrong password never matches, so it
//! still goes through the throttled check; and an address locked out by
//! failures is not let in on an entry either (`auth::check_password`), or
//! the entry would answer its guesses. At most [`MAX`] entries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a checked password is taken on its word.
pub const FOR: Duration = Duration::from_secs(60);
/// Entries kept at most; past it, nothing new is remembered until some
/// expire.
const MAX: usize = 10_000;

struct Entry {
    mac: [u8; 32],
    /// The user's stored password hash when it was checked.
    hash: String,
    at: Instant,
}

pub struct Verified {
    key: [u8; 32],
    by_login: Mutex<HashMap<String, Entry>>,
}

impl Default for Verified {
    fn default() -> Self {
        Verified {
            key: rand::random(),
            by_login: Mutex::default(),
        }
    }
}

impl Verified {
    fn mac(&self, password: &str) -> [u8; 32] {
        crate::events::hmac_sha256(&self.key, password.as_bytes())
    }

    /// Whether `login` proved `password` lately against the stored `hash`.
    pub fn contains(&self, login: &str, password: &str, hash: &str) -> bool {
        let mac = self.mac(password);
        let map = self.by_login.lock().unwrap_or_else(|e| e.into_inner());
        map.get(login).is_some_and(|e| {
            e.at.elapsed() < FOR
                && e.hash == hash
                && subtle::ConstantTimeEq::ct_eq(&e.mac[..], &mac[..]).into()
        })
    }

    /// Remember that `login` proved `password` against `hash` just now.
    pub fn insert(&self, login: &str, password: &str, hash: &str) {
        let entry = Entry {
            mac: self.mac(password),
            hash: hash.to_string(),
            at: Instant::now(),
        };
        let mut map = self.by_login.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX {
            map.retain(|_, e| e.at.elapsed() < FOR);
        }
        if map.len() < MAX || map.contains_key(login) {
            map.insert(login.to_string(), entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_password_against_the_same_hash_matches() {
        let v = Verified::default();
        assert!(!v.contains("jdev", "secret-1", "$h1"));
        v.insert("jdev", "secret-1", "$h1");
        assert!(v.contains("jdev", "secret-1", "$h1"));
        assert!(!v.contains("jdev", "secret-2", "$h1"), "another password");
        assert!(
            !v.contains("jdev", "secret-1", "$h2"),
            "the password changed"
        );
        assert!(!v.contains("madmin", "secret-1", "$h1"), "another user");
        // Another process (another key) never matches this one's entries.
        let other = Verified::default();
        assert!(!other.contains("jdev", "secret-1", "$h1"));
    }
}
