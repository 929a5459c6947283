//! A sorted map kept as content-addressed shards, so that a publish
//! rewrites only the shards holding the keys that changed.
//!
//! [`Shards`] is the map's table of contents, kept in the publication
//! index: one [`ShardRef`] per shard (its first key, its blob, its
//! length), in key order. A shard holds the keys from its first up to
//! the next shard's first. A shard blob is a versioned JSON document of
//! at most [`MAX_SHARD`] entries. A lookup reads one shard (through the
//! instance's cache); [`Shards::update`] reads and rewrites the shards
//! holding the changed keys, splits any that grew past `MAX_SHARD`, joins
//! any left small to the one before it, and keeps the others as they
//! are: its cost is the change's size and the table's (about 1/[`FILL`] of
//! the map's), never the map's.
//!
//! A table read from storage is not trusted: [`Shards::validate`] checks
//! what can be checked without reading shards (digests well formed, first
//! keys strictly increasing, lengths from 1 to `MAX_SHARD`), and every
//! shard read is checked against its entry in the table (as many entries
//! as it says, from its first key to before the next shard's), so that a
//! corrupt table gives an error instead of a wrong answer.

use crate::reference::is_sha256_digest;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use wharf_sdk::json::Versioned;

/// Most entries a shard holds; an update splits a shard that grows past it.
pub const MAX_SHARD: usize = 512;
/// Entries per shard when shards are written from scratch (a build, or a
/// split): half full, so that additions do not split at once.
pub const FILL: usize = MAX_SHARD / 2;

/// A value a shard may hold.
pub trait ShardValue: Serialize + DeserializeOwned + Clone + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + 'static> ShardValue for T {}

/// Where shards are read from (`resolve`, a publish).
pub trait ShardRead {
    /// The entries of the shard stored as `digest` (implementations may
    /// cache them: shards never change).
    fn read_shard<V: ShardValue>(
        &mut self,
        digest: &str,
    ) -> Result<Rc<BTreeMap<String, V>>, String>;
}

/// Where shards are also written to (a publish).
pub trait ShardIo: ShardRead {
    /// Store a shard's bytes; their digest.
    fn write_shard(&mut self, bytes: &[u8]) -> Result<String, String>;
    /// An update keeps the shard `digest` as it is (a publish tells the
    /// host, which then keeps serving it).
    fn keep_shard(&mut self, digest: &str) -> Result<(), String>;
}

/// One shard in a map's table of contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRef {
    /// The smallest key it holds.
    pub first: String,
    pub digest: String,
    pub len: usize,
}

/// A shard blob.
#[derive(Serialize, Deserialize)]
struct Shard<V> {
    v: u64,
    entries: BTreeMap<String, V>,
}

impl<V: ShardValue> Versioned for Shard<V> {
    const WHAT: &'static str = "publication index shard";
    const VERSION_FIELD: &'static str = "v";
    const VERSION: u64 = 1;
}

/// Parse a shard's bytes.
pub fn parse<V: ShardValue>(bytes: &[u8]) -> Result<BTreeMap<String, V>, String> {
    Shard::<V>::from_bytes(bytes).map(|s| s.entries)
}

/// A parsed shard of any value type, so that one cache holds them all.
pub type AnyShard = Rc<dyn Any>;

/// Parse a shard's bytes for a cache of [`AnyShard`]s.
pub fn parse_any<V: ShardValue>(bytes: &[u8]) -> Result<AnyShard, String> {
    Ok(Rc::new(parse::<V>(bytes)?))
}

/// The entries of a cached shard, read with the value type it was parsed as.
pub fn typed<V: ShardValue>(
    shard: &AnyShard,
    digest: &str,
) -> Result<Rc<BTreeMap<String, V>>, String> {
    Rc::clone(shard)
        .downcast()
        .map_err(|_| format!("shard {digest} is read as two kinds of map"))
}

/// A sorted map as shards: its table of contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shards(pub Vec<ShardRef>);

impl Shards {
    /// Write `entries` (in key order) as new shards of [`FILL`] entries.
    pub fn build<V: ShardValue, I: ShardIo>(
        io: &mut I,
        entries: impl IntoIterator<Item = (String, V)>,
    ) -> Result<Shards, String> {
        let mut out = Vec::new();
        let mut chunk = BTreeMap::new();
        for (k, v) in entries {
            chunk.insert(k, v);
            if chunk.len() == FILL {
                out.push(write(io, std::mem::take(&mut chunk))?);
            }
        }
        if !chunk.is_empty() {
            out.push(write(io, chunk)?);
        }
        Ok(Shards(out))
    }

    /// How many entries the map holds (as the table says: see
    /// [`Shards::validate`]).
    pub fn len(&self) -> usize {
        self.0.iter().map(|s| s.len).sum()
    }

    /// Check a table read from storage as far as it can be without reading
    /// its shards: each digest `sha256:<64 lowercase hex>`, each length
    /// from 1 to [`MAX_SHARD`] (a shard is never empty, and an update
    /// splits one past `MAX_SHARD`), first keys strictly increasing. The
    /// error says what is wrong, for a sentence that starts with the map.
    pub fn validate(&self) -> Result<(), String> {
        for (i, shard) in self.0.iter().enumerate() {
            if !is_sha256_digest(&shard.digest) {
                return Err(format!(
                    "names shard {i} by {:?}, which is not a sha256 digest",
                    shard.digest
                ));
            }
            if !(1..=MAX_SHARD).contains(&shard.len) {
                return Err(format!(
                    "says its shard {i} ({}) holds {} entries; a shard holds 1 to {MAX_SHARD}",
                    shard.digest, shard.len
                ));
            }
            if let Some(before) = i.checked_sub(1).map(|b| &self.0[b])
                && before.first >= shard.first
            {
                return Err(format!(
                    "starts its shard {i} at {:?}, not after shard {}'s first key {:?}: \
                     shards are in key order",
                    shard.first,
                    i - 1,
                    before.first
                ));
            }
        }
        Ok(())
    }

    /// The entries of the shard in `slot`, checked against the table
    /// ([`check`]).
    fn read<V: ShardValue, I: ShardRead>(
        &self,
        io: &mut I,
        slot: usize,
    ) -> Result<Rc<BTreeMap<String, V>>, String> {
        let shard = &self.0[slot];
        let entries = io.read_shard::<V>(&shard.digest)?;
        let next = self.0.get(slot + 1).map(|s| s.first.as_str());
        check(shard, next, &entries)?;
        Ok(entries)
    }

    /// The shard that holds `key` if the map does: the last whose first
    /// key is not after it (the first shard for a key before them all).
    fn slot(&self, key: &str) -> usize {
        self.0
            .partition_point(|s| s.first.as_str() <= key)
            .saturating_sub(1)
    }

    /// The value of `key`.
    pub fn get<V: ShardValue, I: ShardRead>(
        &self,
        io: &mut I,
        key: &str,
    ) -> Result<Option<V>, String> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let shard = self.read::<V, _>(io, self.slot(key))?;
        Ok(shard.get(key).cloned())
    }

    /// The keys whose value `wanted` accepts, in key order. Reads every
    /// shard: for the rare question keys cannot answer (which tags name a
    /// manifest that went).
    pub fn find<V: ShardValue, I: ShardRead>(
        &self,
        io: &mut I,
        mut wanted: impl FnMut(&V) -> bool,
    ) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for slot in 0..self.0.len() {
            let entries = self.read::<V, _>(io, slot)?;
            out.extend(
                entries
                    .iter()
                    .filter(|(_, v)| wanted(v))
                    .map(|(k, _)| k.clone()),
            );
        }
        Ok(out)
    }

    /// Up to `n` entries whose keys come after `after` (all of them with
    /// none) and start with `prefix`, in key order: the shards from the
    /// one holding the start on, until `n` are found.
    pub fn range<V: ShardValue, I: ShardRead>(
        &self,
        io: &mut I,
        after: Option<&str>,
        prefix: &str,
        n: usize,
    ) -> Result<Vec<(String, V)>, String> {
        let start = after.filter(|a| *a >= prefix).unwrap_or(prefix);
        let mut out = Vec::new();
        for slot in self.slot(start)..self.0.len() {
            let shard = &self.0[slot];
            if out.len() >= n || !(shard.first.starts_with(prefix) || shard.first.as_str() < prefix)
            {
                break;
            }
            let entries = self.read::<V, _>(io, slot)?;
            let wanted = entries
                .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
                .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
                .take_while(|(k, _)| k.starts_with(prefix))
                .take(n - out.len());
            out.extend(wanted.map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(out)
    }

    /// The map with each key of `keys` set to what `change` makes of its
    /// value (none: absent); the shards of other keys are kept.
    pub fn update<V: ShardValue, I: ShardIo>(
        &self,
        io: &mut I,
        keys: &BTreeSet<String>,
        mut change: impl FnMut(&str, Option<V>) -> Option<V>,
    ) -> Result<Shards, String> {
        // The keys by the shard they fall in (all in a first one when
        // there is none yet).
        let mut by_slot: BTreeMap<usize, Vec<&String>> = BTreeMap::new();
        for key in keys {
            by_slot.entry(self.slot(key)).or_default().push(key);
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut next = 0;
        for (slot, keys) in by_slot {
            for kept in &self.0[next.min(self.0.len())..slot.min(self.0.len())] {
                io.keep_shard(&kept.digest)?;
                out.push(kept.clone());
            }
            next = slot + 1;
            let mut entries = match self.0.get(slot) {
                Some(_) => self.read::<V, _>(io, slot)?.as_ref().clone(),
                None => BTreeMap::new(),
            };
            for key in keys {
                let old = entries.remove(key.as_str());
                if let Some(new) = change(key, old) {
                    entries.insert(key.clone(), new);
                }
            }
            if entries.is_empty() {
                continue;
            }
            // A shard left small joins the one before it, so that
            // removals do not leave a table of near-empty shards.
            if entries.len() < MAX_SHARD / 8
                && let Some(before) = out.pop()
            {
                // Every key before this shard's comes before its first.
                let held = io.read_shard::<V>(&before.digest)?;
                let next = self.0.get(slot).map(|s| s.first.as_str());
                check(&before, next, &held)?;
                entries.extend(held.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            // One that grew too large is split.
            while entries.len() > MAX_SHARD {
                let split = entries.keys().nth(FILL).expect("more than FILL").clone();
                let tail = entries.split_off(&split);
                out.push(write(io, entries)?);
                entries = tail;
            }
            out.push(write(io, entries)?);
        }
        for kept in self.0.get(next..).unwrap_or_default() {
            io.keep_shard(&kept.digest)?;
            out.push(kept.clone());
        }
        Ok(Shards(out))
    }

    /// Every entry, in key order (reads every shard).
    #[cfg(test)]
    pub fn entries<V: ShardValue, I: ShardRead>(
        &self,
        io: &mut I,
    ) -> Result<Vec<(String, V)>, String> {
        self.range(io, None, "", usize::MAX)
    }
}

/// Whether a shard read holds what its table entry says: `shard.len`
/// entries, the first `shard.first`, none at or after `next` (the next
/// shard's first key). Otherwise the table (or the store) is corrupt: the
/// error says so and what to do.
fn check<V>(
    shard: &ShardRef,
    next: Option<&str>,
    entries: &BTreeMap<String, V>,
) -> Result<(), String> {
    let first = entries.keys().next();
    let last = entries.keys().next_back();
    let why = if entries.len() != shard.len {
        format!(
            "holds {} entries where the index says {}",
            entries.len(),
            shard.len
        )
    } else if first != Some(&shard.first) {
        format!("starts at {first:?} where the index says {:?}", shard.first)
    } else if let (Some(last), Some(next)) = (last, next)
        && last.as_str() >= next
    {
        format!("holds {last:?}, a key of the next shard (from {next:?})")
    } else {
        return Ok(());
    };
    Err(format!(
        "publication index shard {} is not the one the index names: it {why}; \
         the index is corrupt, publish the repository again",
        shard.digest
    ))
}

/// Store one shard; its reference.
fn write<V: ShardValue, I: ShardIo>(
    io: &mut I,
    entries: BTreeMap<String, V>,
) -> Result<ShardRef, String> {
    let first = entries.keys().next().cloned().unwrap_or_default();
    let len = entries.len();
    let bytes = Shard {
        v: Shard::<V>::VERSION,
        entries,
    }
    .to_bytes();
    Ok(ShardRef {
        first,
        digest: io.write_shard(&bytes)?,
        len,
    })
}

/// Shards in memory for tests.
#[cfg(test)]
pub mod testing {
    use super::*;
    use std::collections::HashMap;

    /// Shards in memory, counting reads and writes.
    #[derive(Default)]
    pub struct Memory {
        pub blobs: HashMap<String, Vec<u8>>,
        pub reads: usize,
        pub writes: usize,
        pub kept: Vec<String>,
    }

    impl ShardRead for Memory {
        fn read_shard<V: ShardValue>(
            &mut self,
            digest: &str,
        ) -> Result<Rc<BTreeMap<String, V>>, String> {
            self.reads += 1;
            parse(self.blobs.get(digest).ok_or("no such shard")?).map(Rc::new)
        }
    }

    impl ShardIo for Memory {
        fn write_shard(&mut self, bytes: &[u8]) -> Result<String, String> {
            self.writes += 1;
            let digest = wharf_sdk::testing::sha256(bytes);
            self.blobs.insert(digest.clone(), bytes.to_vec());
            Ok(digest)
        }
        fn keep_shard(&mut self, digest: &str) -> Result<(), String> {
            self.kept.push(digest.to_string());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Memory;
    use super::*;

    fn key(i: usize) -> String {
        format!("k{i:06}")
    }

    /// Shards in order, none empty or over the limit, each starting with
    /// its first key, holding `want`.
    fn check(io: &mut Memory, shards: &Shards, want: &BTreeMap<String, u32>) {
        let mut all = Vec::new();
        for s in &shards.0 {
            let entries = io.read_shard::<u32>(&s.digest).unwrap();
            assert!(!entries.is_empty() && entries.len() <= MAX_SHARD);
            assert_eq!(entries.len(), s.len);
            assert_eq!(entries.keys().next(), Some(&s.first));
            all.extend(entries.iter().map(|(k, v)| (k.clone(), *v)));
        }
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
        assert_eq!(all, want.clone().into_iter().collect::<Vec<_>>());
        assert_eq!(shards.len(), want.len());
    }

    #[test]
    fn an_update_rewrites_only_the_shards_it_touches() {
        let mut io = Memory::default();
        let want: BTreeMap<String, u32> = (0..10_000).map(|i| (key(i * 2), i as u32)).collect();
        let shards = Shards::build(&mut io, want.clone()).unwrap();
        assert_eq!(shards.0.len(), 10_000 / FILL + 1);
        check(&mut io, &shards, &want);

        // One key added, one changed, one removed: three shards at most.
        let (reads, writes) = (io.reads, io.writes);
        let keys: BTreeSet<String> = [key(5), key(4000), key(10_000)].into();
        let updated = shards
            .update::<u32, _>(&mut io, &keys, |k, old| match k {
                "k000005" => Some(7),
                "k004000" => old.map(|v| v + 1),
                _ => None,
            })
            .unwrap();
        assert_eq!(io.reads - reads, 3);
        assert_eq!(io.writes - writes, 3);
        assert_eq!(io.kept.len(), shards.0.len() - 3);
        let mut want = want;
        want.insert(key(5), 7);
        *want.get_mut(&key(4000)).unwrap() += 1;
        want.remove(&key(10_000));
        check(&mut io, &updated, &want);
        assert_eq!(updated.get::<u32, _>(&mut io, &key(5)).unwrap(), Some(7));
        assert_eq!(updated.get::<u32, _>(&mut io, &key(6)).unwrap(), Some(3));
        assert_eq!(updated.get::<u32, _>(&mut io, &key(7)).unwrap(), None);
    }

    #[test]
    fn shards_split_grow_from_nothing_and_empty_out() {
        let mut io = Memory::default();
        let mut shards = Shards::default();
        let mut want = BTreeMap::new();
        // Grow from empty by batches, keys before, between and after.
        for round in 0..8 {
            let keys: BTreeSet<String> = (0..300).map(|i| key(i * 8 + round)).collect();
            shards = shards
                .update::<u32, _>(&mut io, &keys, |_, _| Some(round as u32))
                .unwrap();
            want.extend(keys.into_iter().map(|k| (k, round as u32)));
            check(&mut io, &shards, &want);
        }
        assert_eq!(shards.len(), 2400);
        // A page after a key, and by prefix.
        let page = shards
            .range::<u32, _>(&mut io, Some(&key(100)), "", 3)
            .unwrap();
        let keys: Vec<&str> = page.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [key(101), key(102), key(103)]);
        let prefixed = shards
            .range::<u32, _>(&mut io, None, "k0012", 1000)
            .unwrap();
        assert_eq!(prefixed.len(), 100);
        assert!(prefixed.iter().all(|(k, _)| k.starts_with("k0012")));
        let none = shards
            .range::<u32, _>(&mut io, Some("k0013"), "k0012", 10)
            .unwrap();
        assert!(none.is_empty());
        // Remove everything.
        let all: BTreeSet<String> = want.keys().cloned().collect();
        let emptied = shards.update::<u32, _>(&mut io, &all, |_, _| None).unwrap();
        assert!(emptied.0.is_empty());
        assert_eq!(emptied.get::<u32, _>(&mut io, &key(1)).unwrap(), None);
    }

    /// `shards` with `corrupt` applied to a copy of its table.
    fn lying(shards: &Shards, corrupt: impl FnOnce(&mut Vec<ShardRef>)) -> Shards {
        let mut table = shards.0.clone();
        corrupt(&mut table);
        Shards(table)
    }

    #[test]
    fn a_table_out_of_order_or_out_of_bounds_is_refused() {
        let mut io = Memory::default();
        let want: BTreeMap<String, u32> = (0..1000).map(|i| (key(i), i as u32)).collect();
        let shards = Shards::build(&mut io, want).unwrap();
        assert_eq!(shards.0.len(), 4);
        shards.validate().unwrap();
        Shards::default().validate().unwrap();
        let refused = |corrupt: fn(&mut Vec<ShardRef>), says: &str| {
            let why = lying(&shards, corrupt).validate().unwrap_err();
            assert!(why.contains(says), "{why}");
        };
        refused(|t| t.swap(1, 2), "not after shard 1's first key");
        refused(
            |t| t[2].first = t[1].first.clone(),
            "not after shard 1's first key",
        );
        refused(|t| t[3].len = 0, "holds 0 entries; a shard holds 1 to 512");
        refused(|t| t[0].len = MAX_SHARD + 1, "holds 513 entries");
        refused(|t| t[0].len = usize::MAX, "a shard holds 1 to 512");
        refused(
            |t| t[1].digest = "sha256:../../etc".into(),
            "not a sha256 digest",
        );
        refused(
            |t| t[1].digest.make_ascii_uppercase(),
            "not a sha256 digest",
        );
    }

    #[test]
    fn a_shard_unlike_its_table_entry_is_an_error() {
        let mut io = Memory::default();
        let want: BTreeMap<String, u32> = (0..1000).map(|i| (key(i), i as u32)).collect();
        let shards = Shards::build(&mut io, want).unwrap();
        let all: BTreeSet<String> = [key(10), key(300), key(600), key(900)].into();
        // Each lie is caught by every read of the shard it is about:
        // lookups, pages, updates.
        let caught = |io: &mut Memory, table: &Shards, probe: &str, says: &str| {
            let errors = [
                table.get::<u32, _>(io, probe).map(drop),
                table.range::<u32, _>(io, Some(probe), "", 5).map(drop),
                table.update::<u32, _>(io, &all, |_, v| v).map(drop),
                table.find::<u32, _>(io, |_| false).map(drop),
            ];
            for e in errors {
                let why = e.unwrap_err();
                assert!(why.contains(says) && why.contains("corrupt"), "{why}");
            }
        };
        // A count other than the shard's.
        let table = lying(&shards, |t| t[1].len -= 1);
        caught(
            &mut io,
            &table,
            &key(300),
            "holds 256 entries where the index says 255",
        );
        // A first key other than the shard's.
        let table = lying(&shards, |t| t[1].first = key(257));
        caught(&mut io, &table, &key(300), "starts at");
        // Keys at or past the next shard's first.
        let table = lying(&shards, |t| t[1].first = key(255));
        caught(&mut io, &table, &key(10), "a key of the next shard");
        // Another map's shard (or another place's) in its place.
        let table = lying(&shards, |t| t[1].digest = t[2].digest.clone());
        caught(&mut io, &table, &key(300), "starts at");
        // The table as written reads as it should.
        assert_eq!(shards.get::<u32, _>(&mut io, &key(300)).unwrap(), Some(300));
    }
}
