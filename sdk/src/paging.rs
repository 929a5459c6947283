//! Paging over unit listings: `units.list` answers at most a page of the
//! current repository's units in key order; these walk all of them, or the
//! run of keys that start with a prefix. [`naming_all`] walks
//! `units.naming` and [`changes_since`] `units.changes` the same way.

use crate::Error;
use crate::Unit;
use crate::host::Host;
use crate::units::Changed;

/// Units asked for per `units.list` call by [`list_all`].
pub const LIST_PAGE: u32 = 500;

/// Every item a keyed listing answers, [`LIST_PAGE`] at a time, each page
/// asked after the last key so far; `None` once more than `cap` came.
fn walk<T>(
    cap: usize,
    key: impl Fn(&T) -> &str,
    mut page: impl FnMut(Option<&str>) -> Result<Vec<T>, Error>,
) -> Result<Option<Vec<T>>, Error> {
    let mut all: Vec<T> = Vec::new();
    loop {
        let next = page(all.last().map(&key))?;
        let done = next.len() < LIST_PAGE as usize;
        all.extend(next);
        if all.len() > cap {
            return Ok(None);
        }
        if done {
            return Ok(Some(all));
        }
    }
}

/// [`walk`] with no cap.
fn walk_all<T>(
    key: impl Fn(&T) -> &str,
    page: impl FnMut(Option<&str>) -> Result<Vec<T>, Error>,
) -> Result<Vec<T>, Error> {
    Ok(walk(usize::MAX, key, page)?.unwrap_or_default())
}

/// All units of a type in the current repository, in key order.
pub fn list_all<H: Host + ?Sized>(host: &mut H, unit_type: &str) -> Result<Vec<Unit>, Error> {
    walk_all(
        |u: &Unit| &u.key,
        |after| host.list_units(unit_type, after, LIST_PAGE),
    )
}

/// All units of a type in the current repository that name blob `digest`
/// (`units.naming`, a page at a time), in key order: the tags pointing at
/// a manifest cost as many as there are, not the repository's size.
pub fn naming_all<H: Host + ?Sized>(
    host: &mut H,
    digest: &str,
    unit_type: &str,
) -> Result<Vec<Unit>, Error> {
    walk_all(
        |u: &Unit| &u.key,
        |after| host.units_naming(digest, unit_type, after, LIST_PAGE),
    )
}

/// Every unit of a type that differs between version `since` and the
/// version a publish reads, in key order (`units.changes`, a page at a
/// time), each added or removed; `None` once more than `cap` have: a
/// publish from every unit then costs less than one from the changes.
pub fn changes_since<H: Host + ?Sized>(
    host: &mut H,
    since: u64,
    unit_type: &str,
    cap: usize,
) -> Result<Option<Vec<Changed>>, Error> {
    walk(
        cap,
        |c: &Changed| &c.unit.key,
        |after| host.changes(since, unit_type, after, LIST_PAGE),
    )
}

/// The units of a type whose keys start with `prefix` (and are longer than
/// it), in key order, listed `page` at a time from `prefix` on: keys sort,
/// so they are one run and the listing stops at the first key past it.
pub fn list_prefixed<H: Host + ?Sized>(
    host: &mut H,
    unit_type: &str,
    prefix: &str,
    page: u32,
) -> Result<Vec<Unit>, Error> {
    let mut found: Vec<Unit> = Vec::new();
    let mut after = prefix.to_string();
    loop {
        let units = host.list_units(unit_type, Some(&after), page)?;
        let full = units.len() == page as usize;
        for unit in units {
            if !unit.key.starts_with(prefix) {
                return Ok(found);
            }
            after.clone_from(&unit.key);
            found.push(unit);
        }
        if !full {
            return Ok(found);
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    fn unit(key: &str) -> Unit {
        Unit {
            unit_type: "t".into(),
            key: key.into(),
            metadata: "{}".into(),
            blobs: Vec::new(),
        }
    }

    #[test]
    fn lists_across_pages() {
        let mut host = FakeHost::default();
        for i in 0..LIST_PAGE + 20 {
            host.add_unit(&unit(&format!("k{i:05}"))).unwrap();
        }
        host.add_unit(&unit("other")).unwrap();
        let all = list_all(&mut host, "t").unwrap();
        assert_eq!(all.len(), LIST_PAGE as usize + 21);
        assert!(all.windows(2).all(|w| w[0].key < w[1].key));
        assert!(list_all(&mut host, "none").unwrap().is_empty());
    }

    #[test]
    fn lists_a_prefix_run_in_small_pages() {
        let mut host = FakeHost::default();
        for key in ["a@1", "a@2", "a@3", "a@4", "a@5", "a", "a-b@1", "b@1"] {
            host.add_unit(&unit(key)).unwrap();
        }
        let keys = |units: Vec<Unit>| units.into_iter().map(|u| u.key).collect::<Vec<_>>();
        for page in [1, 2, 5, 100] {
            let found = list_prefixed(&mut host, "t", "a@", page).unwrap();
            assert_eq!(keys(found), ["a@1", "a@2", "a@3", "a@4", "a@5"], "{page}");
        }
        assert!(list_prefixed(&mut host, "t", "c@", 2).unwrap().is_empty());
    }
}
