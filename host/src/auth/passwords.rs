//! Passwords: argon2id with the crate's default parameters, a random salt per
//! hash, stored as a PHC string. Hashing is deliberately slow, so it runs on
//! the blocking pool.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::Rng as _;
use std::sync::LazyLock;

pub const MIN_LEN: usize = 8;
const MAX_LEN: usize = 1024;

/// A hash no password matches, verified when a login does not exist so that
/// a wrong login costs as much time as a wrong password.
static DUMMY: LazyLock<String> =
    LazyLock::new(|| hash_now("no password matches this").expect("hashing a constant"));

/// Refuse passwords that are too short or absurdly long.
pub fn check_policy(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!(
            "the password is too short: use at least {MIN_LEN} characters"
        ));
    }
    if password.len() > MAX_LEN {
        return Err(format!("the password is too long: at most {MAX_LEN} bytes"));
    }
    Ok(())
}

fn hash_now(password: &str) -> anyhow::Result<String> {
    Ok(Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?
        .to_string())
}

fn verify_now(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        tracing::error!("a stored password hash is not a PHC string");
        return false;
    };
    // Argon2's verification compares in constant time.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

pub async fn hash(password: &str) -> anyhow::Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_now(&password)).await?
}

/// Whether `password` matches `hash`; `None` verifies against a dummy hash
/// (and fails), taking the same time.
pub async fn verify(hash: Option<&str>, password: &str) -> bool {
    let hash = hash.map(str::to_string);
    let password = password.to_string();
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => verify_now(&h, &password),
        None => {
            let _ = verify_now(&DUMMY, &password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A random password of 24 letters and digits (about 142 bits).
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(Some(&h), "correct horse").await);
        assert!(!verify(Some(&h), "wrong horse").await);
        assert!(!verify(None, "correct horse").await);
        assert_ne!(h, hash("correct horse").await.unwrap(), "salted");
    }

    #[test]
    fn policy_and_generation() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
        let p = generate();
        assert_eq!(p.len(), 24);
        assert!(check_policy(&p).is_ok());
        assert_ne!(p, generate());
    }
}
