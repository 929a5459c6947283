//! Relative paths: validation (percent-coding them for URLs is
//! `wharf_sdk::percent`).
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
}
