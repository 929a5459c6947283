//! Login tokens: 32 random bytes, base64url, handed out once by
//! `POST /api/v1/login`. The store keeps only their SHA-256, so a stolen
//! database holds no usable token. A token expires (`--token-ttl`), and is
//! revoked by logout, by a password change and by deleting its user.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq as _;
use wharf_store::db::{ApiToken, now};

/// A new token and the record to store for it.
pub fn issue(login: &str, ttl: Duration) -> (String, ApiToken) {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let record = ApiToken {
        hash: hash(&token),
        login: login.to_string(),
        created_at: now(),
        expires_at: unix_now() + ttl.as_secs(),
    };
    (token, record)
}

/// Hex SHA-256 of a token: the key it is stored under.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a token looks like one of ours (43 base64url characters); a
/// registry token (a JWT) has dots and is never looked up.
pub fn looks_like_token(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `record`, found under `hash(token)`, is valid for `token` now.
/// The hash comparison is constant-time, whatever the store's lookup did.
pub fn is_valid(record: &ApiToken, token: &str) -> bool {
    let matches: bool = record.hash.as_bytes().ct_eq(hash(token).as_bytes()).into();
    matches && record.expires_at > unix_now()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 form of Unix seconds.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_checked_by_hash() {
        let (t, rec) = issue("jdev", Duration::from_secs(3600));
        assert!(looks_like_token(&t), "{t}");
        assert_eq!(rec.hash, hash(&t));
        assert!(is_valid(&rec, &t));
        let (t2, _) = issue("jdev", Duration::from_secs(3600));
        assert_ne!(t, t2);
        assert!(!is_valid(&rec, &t2));
        let expired = ApiToken {
            expires_at: unix_now() - 1,
            ..rec
        };
        assert!(!is_valid(&expired, &t));
        assert!(!looks_like_token("a.b.c"));
    }
}
