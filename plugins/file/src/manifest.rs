//! PULP_MANIFEST: one line per file, `relative_path,sha256hex,size`.
//!
//! The same format Pulp's file plugin reads and writes, so a Wharf file
//! repository can mirror a Pulp one and the other way round. The last two
//! fields hold no commas, so a line is split at its last two commas and a
//! relative path may itself contain commas.

use crate::paths::{self, MAX_FILE_PATH};
use std::collections::HashMap;

/// The file name clients fetch.
pub const FILE_NAME: &str = "PULP_MANIFEST";

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub relative_path: String,
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
    pub size: u64,
}

/// Parse a manifest. A trailing newline (and `\r\n` line ends) are fine; an
/// empty line elsewhere, a malformed field, an unsafe path or a path listed
/// twice is an error naming the line (1-based).
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    // A lone newline is the trailing newline of an empty manifest.
    if let [only] = lines[..]
        && only.strip_suffix(b"\r").unwrap_or(only).is_empty()
    {
        lines.clear();
    }
    let mut entries = Vec::with_capacity(lines.len());
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(lines.len());
    for (i, raw) in lines.into_iter().enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| format!("line {n} is not UTF-8"))?;
        let entry = parse_line(line).map_err(|e| format!("line {n}: {e}"))?;
        if let Some(first) = seen.insert(entry.relative_path.clone(), n) {
            return Err(format!(
                "line {n}: {:?} is already listed on line {first}; a repository holds one file per relative path",
                entry.relative_path
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn parse_line(line: &str) -> Result<Entry, String> {
    if line.is_empty() {
        return Err("empty line".to_string());
    }
    let mut fields = line.rsplitn(3, ',');
    let (Some(size), Some(hex), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("{line:?} is not 'relative_path,sha256hex,size'"));
    };
    paths::validate(path, "relative path", MAX_FILE_PATH)?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "checksum {hex:?} of {path:?} is not 64 hexadecimal digits (sha256)"
        ));
    }
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("size {size:?} of {path:?} is not a number"));
    }
    let size = size
        .parse::<u64>()
        .map_err(|_| format!("size {size:?} of {path:?} is too large"))?;
    Ok(Entry {
        relative_path: path.to_string(),
        digest: format!("sha256:{}", hex.to_ascii_lowercase()),
        size,
    })
}

/// The manifest text of `entries`, sorted by relative path, one line each
/// with a trailing newline.
pub fn format(entries: &[Entry]) -> String {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
    let mut out = String::new();
    for e in sorted {
        let hex = e.digest.strip_prefix("sha256:").unwrap_or(&e.digest);
        out.push_str(&format!("{},{hex},{}\n", e.relative_path, e.size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn entry(path: &str, c: char, size: u64) -> Entry {
        Entry {
            relative_path: path.to_string(),
            digest: format!("sha256:{}", hex(c)),
            size,
        }
    }

    #[test]
    fn parses_lines_with_or_without_trailing_newline() {
        let text = format!("a.txt,{},3\ndir/b.bin,{},0", hex('a'), hex('b'));
        let want = vec![entry("a.txt", 'a', 3), entry("dir/b.bin", 'b', 0)];
        assert_eq!(parse(text.as_bytes()).unwrap(), want);
        assert_eq!(parse(format!("{text}\n").as_bytes()).unwrap(), want);
        let crlf = text.replace('\n', "\r\n") + "\r\n";
        assert_eq!(parse(crlf.as_bytes()).unwrap(), want);
    }

    #[test]
    fn empty_manifest_has_no_files() {
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(parse(b"\n").unwrap(), vec![]);
        assert_eq!(parse(b"\r\n").unwrap(), vec![]);
        assert_eq!(parse(b"\n\n").unwrap_err(), "line 1: empty line");
    }

    #[test]
    fn lowercases_checksums_and_keeps_commas_in_paths() {
        let text = format!("x,y.txt,{},12\n", hex('A'));
        assert_eq!(
            parse(text.as_bytes()).unwrap(),
            vec![entry("x,y.txt", 'a', 12)]
        );
    }

    #[test]
    fn rejects_malformed_lines_naming_the_line() {
        let good = format!("a,{},1", hex('a'));
        for (bad, why) in [
            (
                "just-a-name".to_string(),
                "is not 'relative_path,sha256hex,size'",
            ),
            ("a,1".to_string(), "is not 'relative_path,sha256hex,size'"),
            (format!("b,{},", hex('b')), "is not a number"),
            (format!("b,{},-1", hex('b')), "is not a number"),
            (format!("b,{},+1", hex('b')), "is not a number"),
            (format!("b,{},1x", hex('b')), "is not a number"),
            (
                format!("b,{},99999999999999999999999", hex('b')),
                "too large",
            ),
            ("b,abc,1".to_string(), "not 64 hexadecimal"),
            (format!("b,{},1", hex('g')), "not 64 hexadecimal"),
            (format!("../b,{},1", hex('b')), "\"..\""),
            (format!("/b,{},1", hex('b')), "absolute"),
            (format!(",{},1", hex('b')), "empty"),
            (String::new(), "empty line"),
        ] {
            let text = format!("{good}\n{bad}\n{good}x\n");
            let e = parse(text.as_bytes()).unwrap_err();
            assert!(e.starts_with("line 2: "), "{bad:?}: {e}");
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn rejects_non_utf8_and_duplicates() {
        let mut bytes = format!("a,{},1\n", hex('a')).into_bytes();
        bytes.extend_from_slice(b"\xff,");
        assert_eq!(parse(&bytes).unwrap_err(), "line 2 is not UTF-8");
        let dup = format!("a,{},1\nb,{},2\na,{},3\n", hex('a'), hex('b'), hex('c'));
        let e = parse(dup.as_bytes()).unwrap_err();
        assert!(
            e.starts_with("line 3: \"a\" is already listed on line 1"),
            "{e}"
        );
    }

    #[test]
    fn formats_sorted_and_round_trips() {
        let entries = vec![
            entry("z/last", 'c', 30),
            entry("a.txt", 'a', 10),
            entry("a/inner", 'b', 20),
        ];
        let text = format(&entries);
        assert_eq!(
            text,
            format!(
                "a.txt,{},10\na/inner,{},20\nz/last,{},30\n",
                hex('a'),
                hex('b'),
                hex('c')
            )
        );
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
        assert_eq!(parse(text.as_bytes()).unwrap(), sorted);
        assert_eq!(format(&[]), "");
    }
}
