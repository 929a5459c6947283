//! A bounded cache of parsed immutable documents by digest, for a pooled
//! plugin instance that serves many requests (publication indexes,
//! manifests). Content-addressed entries never go stale; the bounds (entry
//! count, and the bytes of the documents held) only cap memory. Least
//! recently used entries go first; the one just loaded always stays.
//!
//! Keep one per instance in a `thread_local!` `RefCell` (an instance is
//! single-threaded).

use std::collections::HashMap;
use std::rc::Rc;

pub struct DigestCache<T> {
    /// Digest → (document, its size, when it was last used).
    entries: HashMap<String, (Rc<T>, u64, u64)>,
    /// The use counter: a hit costs a map lookup, and an eviction (only
    /// on a load, which reads a blob anyway) a scan for the oldest use.
    uses: u64,
    bytes: u64,
    max_entries: usize,
    max_bytes: u64,
}

impl<T> DigestCache<T> {
    /// A cache of at most `max_entries` (at least 1) documents and, but for
    /// the latest, `max_bytes` bytes of them.
    pub fn new(max_entries: usize, max_bytes: u64) -> Self {
        DigestCache {
            entries: HashMap::new(),
            uses: 0,
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The document with this digest; `load` reads and parses it (returning
    /// its size in bytes too) when it is not cached. A failed load caches
    /// nothing.
    pub fn get_or_load<E>(
        &mut self,
        digest: &str,
        load: impl FnOnce() -> Result<(T, u64), E>,
    ) -> Result<Rc<T>, E> {
        self.uses += 1;
        if let Some((value, _, used)) = self.entries.get_mut(digest) {
            *used = self.uses;
            return Ok(value.clone());
        }
        let (value, size) = load()?;
        let value = Rc::new(value);
        while !self.entries.is_empty()
            && (self.entries.len() >= self.max_entries
                || self.bytes.saturating_add(size) > self.max_bytes)
        {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(d, _)| d.clone())
                .expect("not empty");
            if let Some((_, n, _)) = self.entries.remove(&oldest) {
                self.bytes -= n;
            }
        }
        self.entries
            .insert(digest.to_string(), (value.clone(), size, self.uses));
        self.bytes += size;
        Ok(value)
    }

    /// How many documents are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes of the cached documents.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The cached digests, least recently used first.
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        let mut by_use: Vec<(&String, u64)> = self
            .entries
            .iter()
            .map(|(d, (_, _, used))| (d, *used))
            .collect();
        by_use.sort_by_key(|(_, used)| *used);
        by_use.into_iter().map(|(d, _)| d.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests<T>(cache: &DigestCache<T>) -> Vec<&str> {
        cache.digests().collect()
    }

    #[test]
    fn loads_once_and_evicts_least_recently_used() {
        let mut cache = DigestCache::new(2, u64::MAX);
        let mut loads = Vec::new();
        for digest in ["a", "b", "a", "c", "a", "b"] {
            let got = cache
                .get_or_load(digest, || {
                    loads.push(digest);
                    Ok::<_, String>((digest.to_string(), 10))
                })
                .unwrap();
            assert_eq!(*got, digest);
        }
        // a, b loaded; a used; c evicts b (least recent); a hit; b evicts c.
        assert_eq!(loads, ["a", "b", "c", "b"]);
        assert_eq!(digests(&cache), ["a", "b"]);
        assert!(cache.get_or_load("x", || Err("boom")).is_err());
        assert_eq!(digests(&cache), ["a", "b"]);
        assert_eq!((cache.len(), cache.bytes()), (2, 20));
    }

    #[test]
    fn bounds_bytes_but_keeps_the_latest() {
        let mut cache = DigestCache::new(10, 100);
        for (digest, size) in [("a", 40), ("b", 40), ("c", 40)] {
            cache
                .get_or_load(digest, || Ok::<_, ()>(((), size)))
                .unwrap();
        }
        assert_eq!(digests(&cache), ["b", "c"]);
        assert!(cache.bytes() <= 100);
        cache
            .get_or_load("huge", || Ok::<_, ()>(((), 500)))
            .unwrap();
        assert_eq!(digests(&cache), ["huge"]);
        assert_eq!(cache.bytes(), 500);
    }
}
