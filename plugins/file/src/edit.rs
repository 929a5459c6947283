//! Tag-level operations in the file content type's words (the `select` and
//! `edit` exports): a reference is a file's relative path. Selecting a path
//! gives its `file` unit (which names the file's blob, all a published file
//! needs); removing a path takes its file out of the repository. File
//! repositories have no tags.

use crate::paths::{self, MAX_FILE_PATH};
use crate::unit::{FILE, FileMeta, at_path};
use wharf_sdk::host::Host;
use wharf_sdk::{Change, Error, Summary, Unit, UnitRef};

/// The file units at each of `paths`, each once, in the order named.
fn files_at<H: Host + ?Sized>(host: &mut H, paths: &[String]) -> Result<Vec<Unit>, Error> {
    let mut found: Vec<Unit> = Vec::new();
    for path in paths {
        paths::validate(path, "relative path", MAX_FILE_PATH).map_err(Error::invalid_reference)?;
        let units = at_path(host, path)?;
        if units.is_empty() {
            return Err(Error::not_found(format!(
                "no file {path:?} in the repository"
            )));
        }
        for unit in units {
            if !found.iter().any(|f| f.key == unit.key) {
                found.push(unit);
            }
        }
    }
    Ok(found)
}

/// The `file` units at `paths`.
pub fn select<H: Host + ?Sized>(host: &mut H, paths: &[String]) -> Result<Vec<UnitRef>, Error> {
    Ok(files_at(host, paths)?
        .into_iter()
        .map(|u| UnitRef::new(FILE, u.key))
        .collect())
}

/// Remove the files at some paths; tags are `unsupported`.
pub fn edit<H: Host + ?Sized>(host: &mut H, change: &Change) -> Result<Summary, Error> {
    match change {
        Change::Remove(paths) => {
            let mut removed = 0;
            for unit in files_at(host, paths)? {
                if host.remove_unit(FILE, &unit.key)? {
                    removed += 1;
                }
            }
            Ok(Summary::edited(
                0,
                removed,
                format!("removed {removed} file(s)"),
            ))
        }
        Change::Tag(_) => Err(Error::unsupported("file repositories have no tags")),
        Change::Adopt(units) => {
            let removed = wharf_sdk::adopt::replace_namesakes(host, units, FILE, |host, unit| {
                at_path(host, &FileMeta::from_unit(unit)?.relative_path)
            })?;
            Ok(Summary::edited(
                0,
                removed,
                format!("{removed} file(s) replaced by copied ones"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::{AddFile, key};
    use wharf_sdk::TagEdit;
    use wharf_sdk::testing::FakeHost;
    use wharf_sdk::testing::digest_of as d;

    fn repository() -> FakeHost {
        let mut host = FakeHost::default();
        for (path, c) in [("a.txt", 'a'), ("dir/b.txt", 'b'), ("c", 'c')] {
            host.add_file(&FileMeta {
                relative_path: path.into(),
                digest: d(c),
                size: 1,
            });
        }
        host
    }

    fn strings(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn selects_files_by_path_once() {
        let mut host = repository();
        let units = select(&mut host, &strings(&["dir/b.txt", "a.txt", "dir/b.txt"])).unwrap();
        let got: Vec<_> = units.into_iter().map(|u| (u.unit_type, u.key)).collect();
        assert_eq!(
            got,
            vec![
                (FILE.to_string(), key("dir/b.txt", &d('b'))),
                (FILE.to_string(), key("a.txt", &d('a'))),
            ]
        );
    }

    #[test]
    fn unknown_and_malformed_paths_are_refused() {
        let mut host = repository();
        let e = select(&mut host, &strings(&["nope.txt"])).unwrap_err();
        assert_eq!(e.code, "not-found");
        assert!(e.message.contains("nope.txt"));
        for bad in ["/abs", "a/../b", ""] {
            assert_eq!(
                select(&mut host, &strings(&[bad])).unwrap_err().code,
                "invalid",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn removes_files_by_path() {
        let mut host = repository();
        let s = edit(&mut host, &Change::Remove(strings(&["a.txt", "c"]))).unwrap();
        assert_eq!((s.units_added, s.units_removed), (0, 2));
        assert_eq!(host.repo_keys(FILE), vec![key("dir/b.txt", &d('b'))]);
        let e = edit(&mut host, &Change::Remove(strings(&["a.txt"]))).unwrap_err();
        assert_eq!(e.code, "not-found");
    }

    #[test]
    fn tags_are_unsupported() {
        let mut host = repository();
        let e = edit(
            &mut host,
            &Change::Tag(TagEdit {
                name: "v1".into(),
                target: "a.txt".into(),
            }),
        )
        .unwrap_err();
        assert_eq!(e.code, "unsupported");
        assert_eq!(e.message, "file repositories have no tags");
        assert_eq!(host.repo_keys(FILE).len(), 3);
    }
}
