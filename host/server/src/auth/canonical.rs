//! The one form of a request path that both the access gate and the plugin
//! see. The host decodes a path on a plugin's routes exactly once; the gate
//! decides on that string and the plugin parses that string, so no encoding
//! can make them disagree on which repository a request is about.
//!
//! Refused (the request answers 400, nothing is looked up):
//! - malformed `%` escapes, or bytes that do not decode to UTF-8;
//! - an encoded `/` (`%2F`): a path's segments are the ones the client wrote;
//! - a `%` left after decoding (double encoding such as `%2573`);
//! - control characters and `\`;
//! - empty segments (`//`) other than one trailing `/`, and `.` or `..`
//!   segments.

use super::percent;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path has a malformed %-escape or is not UTF-8 once decoded")]
    Undecodable,
    #[error("the path encodes a '/' (%2F); send path separators as they are")]
    EncodedSlash,
    #[error("the path is encoded twice (a '%' is left after decoding)")]
    DoubleEncoded,
    #[error("the path holds a control character or a backslash")]
    BadCharacter,
    #[error("the path has an empty, '.' or '..' segment; send it in its plain form")]
    BadSegment,
}

/// `raw` (as the client sent it, without the query) decoded once and
/// checked; `Err` says why it is refused.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err(PathError::EncodedSlash);
    }
    let path = if raw.contains('%') {
        percent::decode(raw, false).ok_or(PathError::Undecodable)?
    } else {
        raw.to_string()
    };
    if path.contains('%') {
        return Err(PathError::DoubleEncoded);
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(PathError::BadCharacter);
    }
    let inner = path.strip_prefix('/').ok_or(PathError::BadSegment)?;
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if !inner.is_empty() && inner.split('/').any(|s| matches!(s, "" | "." | "..")) {
        return Err(PathError::BadSegment);
    }
    if inner.is_empty() && path.len() > 1 && path != "/" {
        // "//" alone.
        return Err(PathError::BadSegment);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass_unchanged() {
        for p in [
            "/v2/",
            "/v2",
            "/v2/_catalog",
            "/v2/my/app/manifests/latest",
            "/v2/my/app/blobs/uploads/",
            "/files/isos/a.iso",
        ] {
            assert_eq!(canonical_path(p).as_deref(), Ok(p));
        }
    }

    #[test]
    fn escapes_are_decoded_once() {
        assert_eq!(
            canonical_path("/v2/%73ecret/tags/list").as_deref(),
            Ok("/v2/secret/tags/list")
        );
        assert_eq!(
            canonical_path("/files/a%20b.txt").as_deref(),
            Ok("/files/a b.txt")
        );
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        use PathError::*;
        for (p, why) in [
            ("/v2/%2573ecret/tags/list", DoubleEncoded),
            ("/v2/secret%2Fx/tags/list", EncodedSlash),
            ("/v2/secret%2fx/tags/list", EncodedSlash),
            ("/v2/a%5Cb/tags/list", EncodedSlash),
            ("/v2/%zz/tags/list", Undecodable),
            ("/v2/%ff/tags/list", Undecodable),
            ("/v2//secret/tags/list", BadSegment),
            ("/v2/public/../secret/tags/list", BadSegment),
            ("/v2/public/%2e%2e/secret/tags/list", BadSegment),
            ("/v2/./secret/tags/list", BadSegment),
            ("/v2/secret/tags/list/..", BadSegment),
            ("//", BadSegment),
            ("/v2/a%00b/tags/list", BadCharacter),
            ("/v2/a\\b", BadCharacter),
        ] {
            assert_eq!(canonical_path(p), Err(why), "{p}");
        }
    }
}
