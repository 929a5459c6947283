//! Relative paths: validation, and percent-encoding for URLs.
//!
//! The plugin never touches a filesystem (the host stores and serves blobs by
//! digest), but relative paths end up in URLs, in PULP_MANIFEST files other
//! tools read, and in directories clients download into. So they are held to
//! the rules a careful client would apply: relative, no `.`/`..` components,
//! no empty components, no control characters, bounded length.

/// Longest publication base path, in bytes.
pub const MAX_BASE_PATH: usize = 1024;

/// Longest relative path of a file, in bytes. A file's unit key is
/// `<relative path>:sha256:<64 hex>` and the host caps keys at 1024 bytes, so
/// 72 bytes of the 1024 go to the digest.
pub const MAX_FILE_PATH: usize = 1024 - KEY_DIGEST_SUFFIX;

/// Length of `:sha256:<64 hex>`.
pub const KEY_DIGEST_SUFFIX: usize = ":sha256:".len() + 64;

/// Check that `path` is a safe relative path of at most `max` bytes. The
/// error says what is wrong, for humans; `what` names the value ("relative
/// path", "base_path").
pub fn validate(path: &str, what: &str, max: usize) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if path.len() > max {
        return Err(format!(
            "{what} is {} bytes long; at most {max} are allowed",
            path.len()
        ));
    }
    if let Some(c) = path.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{what} {:?} contains the control character U+{:04X}",
            path, c as u32
        ));
    }
    if path.starts_with('/') {
        return Err(format!(
            "{what} {path:?} is absolute; give it relative, without a leading '/'"
        ));
    }
    for segment in path.split('/') {
        match segment {
            "" => {
                return Err(format!(
                    "{what} {path:?} has an empty component ('//' or a trailing '/')"
                ));
            }
            "." | ".." => {
                return Err(format!(
                    "{what} {path:?} has a {segment:?} component; name files without '.' or '..'"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Bytes a URL path segment may carry as they are: RFC 3986 unreserved
/// characters. Everything else is percent-encoded, which every server decodes.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encode one path segment (a `/` in it is encoded too).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for &b in segment.as_bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode a relative path segment by segment, keeping its `/`s.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Decode `%XX` escapes. A `%` not followed by two hex digits, or bytes that
/// are not UTF-8 once decoded, are an error.
pub fn percent_decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{s:?} has a malformed percent-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> bool {
        validate(p, "relative path", MAX_FILE_PATH).is_ok()
    }

    #[test]
    fn accepts_ordinary_relative_paths() {
        for p in [
            "a",
            "a.txt",
            "dir/name.txt",
            "a/b/c/d.iso",
            "..a/b..",
            ".hidden/x",
            "with space/and,comma:colon",
            "ünïcödé/ファイル",
            "a\\b",
        ] {
            assert!(ok(p), "{p}");
        }
    }

    #[test]
    fn refuses_paths_that_escape_or_are_ambiguous() {
        for (p, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../x", "\"..\""),
            ("a/../../x", "\"..\""),
            ("a/..", "\"..\""),
            ("./a", "\".\""),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("a\nb", "U+000A"),
            ("a\0b", "U+0000"),
            ("a\u{7f}", "U+007F"),
            ("a\u{85}b", "U+0085"),
        ] {
            let e = validate(p, "relative path", MAX_FILE_PATH).unwrap_err();
            assert!(e.contains(why), "{p:?}: {e}");
        }
    }

    #[test]
    fn enforces_the_length_limit() {
        assert_eq!(MAX_FILE_PATH, 952);
        assert!(ok(&"a".repeat(MAX_FILE_PATH)));
        let e = validate(
            &"a".repeat(MAX_FILE_PATH + 1),
            "relative path",
            MAX_FILE_PATH,
        )
        .unwrap_err();
        assert!(e.contains("at most 952"), "{e}");
        assert!(validate(&"b".repeat(1024), "base_path", MAX_BASE_PATH).is_ok());
        assert!(validate(&"b".repeat(1025), "base_path", MAX_BASE_PATH).is_err());
    }

    #[test]
    fn encodes_segments_but_keeps_separators() {
        assert_eq!(encode_path("dir/name.txt"), "dir/name.txt");
        assert_eq!(encode_path("a b/c%d?#"), "a%20b/c%25d%3F%23");
        assert_eq!(encode_path("ü"), "%C3%BC");
        assert_eq!(encode_segment("a/b"), "a%2Fb");
    }

    #[test]
    fn decodes_what_it_encodes() {
        for p in ["a b/c%d?#", "ü/ファイル", "plain", "a,b;c=d"] {
            assert_eq!(percent_decode(&encode_path(p)).unwrap(), p);
        }
        assert_eq!(percent_decode("%2e%2E").unwrap(), "..");
    }

    #[test]
    fn refuses_malformed_escapes() {
        assert!(percent_decode("a%").is_err());
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("a%zz").is_err());
        assert!(percent_decode("%FF").is_err(), "not UTF-8");
    }
}
