//! Paging over unit listings: `units.list` answers at most a page of the
//! current repository's units in key order; these walk all of them, or the
//! run of keys that start with a prefix. [`changes_since`] walks
//! `units.changes` the same way.

use crate::Error;
use crate::Unit;
use crate::host::Host;
use crate::units::Changed;

/// Units asked for per `units.list` call by [`list_all`].
pub const LIST_PAGE: u32 = 500;

/// All units of a type in the current repository, in key order.
pub fn list_all<H: Host + ?Sized>(host: &mut H, unit_type: &str) -> Result<Vec<Unit>, Error> {
    let mut all: Vec<Unit> = Vec::new();
    loop {
        let after = all.last().map(|u| u.key.clone());
        let page = host.list_units(unit_type, after.as_deref(), LIST_PAGE)?;
        let done = page.len() < LIST_PAGE as usize;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// All units of a type in the current repository that name blob `digest`
/// (`units.naming`, a page at a time), in key order: the tags pointing at
/// a manifest cost as many as there are, not the repository's size.
pub fn naming_all<H: Host + ?Sized>(
    host: &mut H,
    digest: &str,
    unit_type: &str,
) -> Result<Vec<Unit>, Error> {
    let mut all: Vec<Unit> = Vec::new();
    loop {
        let after = all.last().map(|u| u.key.clone());
        let page = host.units_naming(digest, unit_type, after.as_deref(), LIST_PAGE)?;
        let done = page.len() < LIST_PAGE as usize;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
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
    let mut all: Vec<Changed> = Vec::new();
    loop {
        let after = all.last().map(|c| c.unit.key.clone());
        let page = host.changes(since, unit_type, after.as_deref(), LIST_PAGE)?;
        let done = page.len() < LIST_PAGE as usize;
        all.extend(page);
        if all.len() > cap {
            return Ok(None);
        }
        if done {
            return Ok(Some(all));
        }
    }
}
