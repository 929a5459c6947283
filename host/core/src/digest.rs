//! `Digest`: a validated content address (`sha256:<64 lowercase hex>`).
//!
//! Every digest that names a file on disk passes through this type, so a path
//! built from a digest can never contain `/`, `..` or anything but hex.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
pub struct InvalidDigest(pub String);

impl Digest {
    pub const ALGORITHM: &'static str = "sha256";

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a finished hasher computed.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The 64 hex digits, safe to use as a file name.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 bytes the hex digits spell.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(self.hex(), &mut out).expect("a Digest holds 64 hex digits");
        out
    }
}

/// A set of digests held as their 32 bytes, sorted: a million of them take
/// 32 MB, where a `HashSet<Digest>` takes several times that. What orphan
/// cleanup holds of every blob the store references.
#[derive(Debug, Default, Clone)]
pub struct DigestSet(Vec<[u8; 32]>);

impl DigestSet {
    pub fn contains(&self, d: &Digest) -> bool {
        self.0.binary_search(&d.to_bytes()).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A [`DigestSet`] being filled, one digest at a time (from a cursor, say),
/// sorted once at the end.
#[derive(Debug, Default)]
pub struct DigestSetBuilder(Vec<[u8; 32]>);

impl DigestSetBuilder {
    pub fn add(&mut self, d: &Digest) {
        self.0.push(d.to_bytes());
    }

    pub fn build(self) -> DigestSet {
        let mut v = self.0;
        v.sort_unstable();
        v.dedup();
        v.shrink_to_fit();
        DigestSet(v)
    }
}

impl FromIterator<Digest> for DigestSet {
    fn from_iter<I: IntoIterator<Item = Digest>>(iter: I) -> Self {
        let mut b = DigestSetBuilder::default();
        for d in iter {
            b.add(&d);
        }
        b.build()
    }
}

impl Extend<Digest> for DigestSet {
    fn extend<I: IntoIterator<Item = Digest>>(&mut self, iter: I) {
        self.0.extend(iter.into_iter().map(|d| d.to_bytes()));
        self.0.sort_unstable();
        self.0.dedup();
    }
}

/// Digest state of files written in order by this process, by id: how many
/// bytes each state covers. A file received in one stream is hashed as it
/// arrives, so storing it needs no second read. Lost on restart (and unknown
/// to other nodes): callers hash the file then.
pub struct RunningDigests<K>(std::sync::Mutex<std::collections::HashMap<K, (u64, Sha256)>>);

impl<K> Default for RunningDigests<K> {
    fn default() -> Self {
        RunningDigests(Default::default())
    }
}

impl<K: Eq + std::hash::Hash> RunningDigests<K> {
    /// Take out the state of `key` if it covers exactly `len` bytes, to go
    /// on hashing what is appended; a stale state is dropped.
    pub fn take(&self, key: &K, len: u64) -> Option<Sha256> {
        match self.0.lock().unwrap().remove(key) {
            Some((covered, h)) if covered == len => Some(h),
            _ => None,
        }
    }

    /// Record the state of `key` after `len` bytes.
    pub fn put(&self, key: K, len: u64, state: Sha256) {
        self.0.lock().unwrap().insert(key, (len, state));
    }

    /// The digest of the first `len` bytes of `key`, if its state covers
    /// exactly them (the state is kept).
    pub fn digest(&self, key: &K, len: u64) -> Option<Digest> {
        match self.0.lock().unwrap().get(key) {
            Some((covered, h)) if *covered == len => Some(Digest::from_hasher(h.clone())),
            _ => None,
        }
    }

    pub fn forget(&self, key: &K) {
        self.0.lock().unwrap().remove(key);
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| InvalidDigest(s.to_string()))?;
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Digest(s.to_string()))
        } else {
            Err(InvalidDigest(s.to_string()))
        }
    }
}

impl TryFrom<String> for Digest {
    type Error = InvalidDigest;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_canonical_sha256() {
        let d = Digest::of(b"");
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
        for bad in [
            "",
            "sha256:",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../etc/passwd/../../../../../../../../../../../../../../../../.",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_digest_set_holds_exactly_what_it_was_given() {
        let held: Vec<Digest> = (0..1000u32).map(|i| Digest::of(&i.to_le_bytes())).collect();
        let mut set: DigestSet = held.iter().cloned().chain(held[..10].to_vec()).collect();
        assert_eq!(set.len(), 1000);
        assert!(held.iter().all(|d| set.contains(d)));
        assert!(!set.contains(&Digest::of(b"other")));
        set.extend([Digest::of(b"other")]);
        assert!(set.contains(&Digest::of(b"other")) && set.len() == 1001);
        assert_eq!(Digest::of(b"").to_bytes()[..2], [0xe3, 0xb0]);
    }
}
