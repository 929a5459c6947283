//! A table of contents for a tar archive held by the host.
//!
//! Scanning walks the tar headers only (seeking over file data), recording
//! where each member's bytes are, so layers can later be stored by range
//! without passing through guest memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use wharf_sdk::Error;

/// More members than any `docker save` writes; a bound on memory for hostile input.
const MAX_ENTRIES: usize = 200_000;
/// How many symlinks a lookup may follow before we call it a loop.
const MAX_LINK_HOPS: usize = 40;

/// Where a member's bytes are in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileRange {
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug)]
enum Member {
    File(FileRange),
    /// Target as a normalized archive path.
    Link(String),
    /// Directories, devices, sparse files: never image content.
    Other,
}

#[derive(Debug)]
pub struct Archive {
    members: HashMap<String, Member>,
}

impl Archive {
    /// Read the tar headers of `reader`, refusing paths and links that could
    /// point outside the archive.
    #[cfg(test)]
    pub fn scan<R: Read + Seek>(reader: &mut R) -> Result<Archive, Error> {
        Self::scan_visiting(reader, |_, _, _| Ok(()))
    }

    /// Like [`Archive::scan`], calling `visit` with each regular file the
    /// moment its header is read, before its bytes are skipped: on a source
    /// that is still arriving, bytes stored then never need a second pass.
    pub fn scan_visiting<R: Read + Seek>(
        reader: &mut R,
        mut visit: impl FnMut(&mut R, &str, FileRange) -> Result<(), Error>,
    ) -> Result<Archive, Error> {
        let len = reader.seek(SeekFrom::End(0)).map_err(corrupt)?;
        reader.seek(SeekFrom::Start(0)).map_err(corrupt)?;
        let mut members = HashMap::new();
        // The tar reader and `visit` take turns with the source; neither
        // holds it across a call.
        let shared = RefCell::new(reader);
        let mut tar = tar::Archive::new(Shared(&shared));
        for entry in tar.entries_with_seek().map_err(corrupt)? {
            let entry = entry.map_err(corrupt)?;
            let raw = entry.path_bytes();
            let name = std::str::from_utf8(&raw)
                .map_err(|_| {
                    Error::invalid(format!(
                        "archive entry {:?} is not a UTF-8 path",
                        String::from_utf8_lossy(&raw)
                    ))
                })?
                .to_string();
            let path = normalize(&name).ok_or_else(|| {
                Error::invalid(format!(
                    "archive entry {name:?} has an absolute path or a `..` component"
                ))
            })?;
            let kind = entry.header().entry_type();
            let member = if kind.is_file() || kind == tar::EntryType::Continuous {
                // Found by fuzzing: a file named "" or "." was handed to
                // `visit` with an empty path.
                if path.is_empty() {
                    return Err(Error::invalid(format!(
                        "archive entry {name:?} is a file without a name"
                    )));
                }
                let range = FileRange {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                };
                if range
                    .offset
                    .checked_add(range.size)
                    .is_none_or(|end| end > len)
                {
                    return Err(Error::invalid(format!(
                        "archive is truncated: entry {name:?} needs {} bytes at offset {} but the archive has {len}",
                        range.size, range.offset
                    )));
                }
                visit(&mut shared.borrow_mut(), &path, range)?;
                Member::File(range)
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name_bytes().ok_or_else(|| {
                    Error::invalid(format!("archive link {name:?} has no target"))
                })?;
                let target = std::str::from_utf8(&target).map_err(|_| {
                    Error::invalid(format!("archive link {name:?} has a non UTF-8 target"))
                })?;
                // Symlinks are relative to their directory, hard links to the root.
                let joined = match (kind.is_symlink(), path.rsplit_once('/')) {
                    (true, Some((dir, _))) if !target.starts_with('/') => format!("{dir}/{target}"),
                    _ => target.to_string(),
                };
                let resolved = resolve_within(&joined).ok_or_else(|| {
                    Error::invalid(format!(
                        "archive link {name:?} -> {target:?} points outside the archive"
                    ))
                })?;
                Member::Link(resolved)
            } else {
                Member::Other
            };
            if path.is_empty() {
                continue; // "./" itself
            }
            if let Some(previous) = members.insert(path.clone(), member)
                && !matches!(previous, Member::Other)
            {
                return Err(Error::invalid(format!(
                    "archive has two entries named {path:?}"
                )));
            }
            if members.len() > MAX_ENTRIES {
                return Err(Error::invalid(format!(
                    "archive has more than {MAX_ENTRIES} entries"
                )));
            }
        }
        if members.is_empty() {
            return Err(Error::invalid("archive is empty: it has no tar entries"));
        }
        Ok(Archive { members })
    }

    /// Whether `path` names a member (following links).
    pub fn contains(&self, path: &str) -> bool {
        self.file(path).is_ok()
    }

    /// The bytes of the regular file at `path`, following links inside the archive.
    pub fn file(&self, path: &str) -> Result<FileRange, Error> {
        let mut current = normalize(path).filter(|p| !p.is_empty()).ok_or_else(|| {
            Error::invalid(format!("{path:?} is not a valid path inside the archive"))
        })?;
        for _ in 0..MAX_LINK_HOPS {
            match self.members.get(&current) {
                Some(Member::File(range)) => return Ok(*range),
                Some(Member::Link(target)) => current = target.clone(),
                Some(Member::Other) => {
                    return Err(Error::invalid(format!(
                        "{path:?} in the archive is not a regular file"
                    )));
                }
                None => return Err(Error::invalid(format!("{path:?} is not in the archive"))),
            }
        }
        Err(Error::invalid(format!(
            "{path:?} in the archive is a symlink loop"
        )))
    }

    /// Read a small member into memory, refusing it when larger than `cap`.
    pub fn read<R: Read + Seek>(
        &self,
        reader: &mut R,
        path: &str,
        cap: u64,
    ) -> Result<Vec<u8>, Error> {
        let range = self.file(path)?;
        read_range(reader, range, cap, path)
    }
}

/// A reader lent to the tar parser one call at a time.
struct Shared<'a, 'r, R>(&'a RefCell<&'r mut R>);

impl<R: Read> Read for Shared<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl<R: Seek> Seek for Shared<'_, '_, R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.0.borrow_mut().seek(to)
    }
}

/// Read `range` of `reader`, refusing more than `cap` bytes; `what` names it in errors.
pub fn read_range<R: Read + Seek>(
    reader: &mut R,
    range: FileRange,
    cap: u64,
    what: &str,
) -> Result<Vec<u8>, Error> {
    if range.size > cap {
        return Err(Error::invalid(format!(
            "{what} is {} bytes, more than the {cap} byte limit",
            range.size
        )));
    }
    let mut bytes = vec![0; range.size as usize];
    reader
        .seek(SeekFrom::Start(range.offset))
        .and_then(|_| reader.read_exact(&mut bytes))
        .map_err(|e| Error::invalid(format!("cannot read {what}: {e}")))?;
    Ok(bytes)
}

fn corrupt(e: std::io::Error) -> Error {
    Error::invalid(format!(
        "not a valid tar archive (truncated or corrupt): {}",
        printable(&e.to_string(), 160)
    ))
}

/// At most `max` characters of `s` with control and non-ASCII characters
/// escaped: tar errors quote header bytes, which in a corrupt archive are junk.
fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// An entry path without `.` components or repeated slashes; `None` for
/// absolute paths and `..`, which we never accept in member names.
fn normalize(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// A link target resolved against the archive root; `..` is fine as long as
/// it never climbs above the root (legacy saves link `../<id>/layer.tar`).
fn resolve_within(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TarBuilder;
    use std::io::Cursor;

    #[test]
    fn files_and_links() {
        let bytes = TarBuilder::new()
            .dir("abc")
            .file("abc/layer.tar", b"layer bytes")
            .symlink("def/layer.tar", "../abc/layer.tar")
            .hardlink("ghi/layer.tar", "abc/layer.tar")
            .file("./manifest.json", b"[]")
            .finish();
        let mut r = Cursor::new(bytes);
        let a = Archive::scan(&mut r).unwrap();
        let range = a.file("abc/layer.tar").unwrap();
        assert_eq!(range.size, 11);
        assert_eq!(a.file("def/layer.tar").unwrap(), range);
        assert_eq!(a.file("ghi/layer.tar").unwrap(), range);
        assert_eq!(
            a.read(&mut r, "def/layer.tar", 100).unwrap(),
            b"layer bytes"
        );
        assert!(a.contains("manifest.json"));
        assert!(!a.contains("nope"));
        assert!(
            a.file("abc")
                .unwrap_err()
                .message
                .contains("not a regular file")
        );
        let err = a.read(&mut r, "abc/layer.tar", 4).unwrap_err();
        assert!(
            err.message.contains("more than the 4 byte limit"),
            "{}",
            err.message
        );
    }

    #[test]
    fn hostile_paths() {
        for (bytes, needle) in [
            (
                TarBuilder::new().file_raw_name("../evil", b"x").finish(),
                "../evil",
            ),
            (
                TarBuilder::new()
                    .file_raw_name("/etc/passwd", b"x")
                    .finish(),
                "/etc/passwd",
            ),
            (
                TarBuilder::new().file_raw_name("a/../../b", b"x").finish(),
                "a/../../b",
            ),
            (
                TarBuilder::new()
                    .symlink("a/link", "../../etc/passwd")
                    .finish(),
                "a/link",
            ),
            (
                TarBuilder::new().symlink("link", "/etc/passwd").finish(),
                "link",
            ),
        ] {
            let err = Archive::scan(&mut Cursor::new(bytes)).unwrap_err();
            assert_eq!(err.code, "invalid-input");
            assert!(err.message.contains(needle), "{}", err.message);
        }
    }

    #[test]
    fn symlink_loops() {
        let bytes = TarBuilder::new()
            .symlink("a", "b")
            .symlink("b", "a")
            .finish();
        let a = Archive::scan(&mut Cursor::new(bytes)).unwrap();
        assert!(a.file("a").unwrap_err().message.contains("loop"));
    }

    #[test]
    fn empty_truncated_and_garbage() {
        let err = Archive::scan(&mut Cursor::new(Vec::new())).unwrap_err();
        assert!(err.message.contains("empty"), "{}", err.message);
        let err = Archive::scan(&mut Cursor::new(vec![0u8; 1024])).unwrap_err();
        assert!(err.message.contains("empty"), "{}", err.message);

        let full = TarBuilder::new().file("big", &[7u8; 5000]).finish();
        let err = Archive::scan(&mut Cursor::new(full[..2048].to_vec())).unwrap_err();
        assert!(err.message.contains("truncated"), "{}", err.message);
        let err = Archive::scan(&mut Cursor::new(full[..300].to_vec())).unwrap_err();
        assert_eq!(err.code, "invalid-input");

        let err = Archive::scan(&mut Cursor::new(
            b"this is not a tar file at all".repeat(40),
        ))
        .unwrap_err();
        assert!(
            err.message.contains("not a valid tar archive"),
            "{}",
            err.message
        );

        // Junk header bytes quoted by the tar reader stay printable and short.
        let mut junk = TarBuilder::new().file("a", b"x").finish();
        for (i, b) in junk[..512].iter_mut().enumerate() {
            *b = (i * 37 % 256) as u8 | 0x80;
        }
        let err = Archive::scan(&mut Cursor::new(junk)).unwrap_err();
        assert!(err.message.len() < 300, "{}", err.message);
        assert!(
            err.message
                .chars()
                .all(|c| c.is_ascii() && !c.is_ascii_control() || c == '…'),
            "{}",
            err.message
        );
    }

    #[test]
    fn nameless_files_refused() {
        for name in ["", ".", "./"] {
            let bytes = TarBuilder::new().file_raw_name(name, b"x").finish();
            let err = Archive::scan(&mut Cursor::new(bytes)).unwrap_err();
            assert!(err.message.contains("without a name"), "{}", err.message);
        }
    }

    #[test]
    fn duplicates_refused() {
        let bytes = TarBuilder::new().file("a", b"1").file("a", b"2").finish();
        let err = Archive::scan(&mut Cursor::new(bytes)).unwrap_err();
        assert!(err.message.contains("two entries"), "{}", err.message);
    }

    #[test]
    fn long_names() {
        let long = format!("{}/layer.tar", "d".repeat(150));
        let bytes = TarBuilder::new().file(&long, b"xyz").finish();
        let a = Archive::scan(&mut Cursor::new(bytes)).unwrap();
        assert_eq!(a.file(&long).unwrap().size, 3);
    }
}
