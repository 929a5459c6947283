//! Percent-encoding for URLs: encoding path segments and query values, and
//! decoding request paths and query strings, leniently or strictly.
//!
//! Built on the `percent-encoding` crate; an escape is `%` and exactly two
//! ASCII hex digits (`%+f` is not one, whatever `u8::from_str_radix` says).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::borrow::Cow;

/// Everything but the RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode everything but unreserved characters: a path segment (a
/// `/` in it is encoded too) or a query value. Escapes are upper case.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// Percent-encode a relative path segment by segment, keeping its `/`s.
pub fn encode_path(path: &str) -> String {
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// Lenient decoding: `None` when there is nothing to decode (no `%`) or the
/// result is not UTF-8. A `%` not followed by two hex digits stays as it is.
pub fn decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

/// [`decode`], or `s` itself when it does not decode.
pub fn decode_or_raw(s: &str) -> String {
    decode(s).unwrap_or_else(|| s.to_string())
}

/// Strict decoding: a `%` not followed by two hex digits, or bytes that are
/// not UTF-8 once decoded, are an error (a sentence naming `s`).
pub fn decode_strict(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let hex = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
    if s.match_indices('%')
        .any(|(i, _)| !(hex(i + 1) && hex(i + 2)))
    {
        return Err(format!("{s:?} has a malformed percent-escape"));
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// The `key=value` pairs of a query string, values decoded leniently
/// ([`decode_or_raw`]); a pair without `=` has an empty value, empty pairs
/// are skipped.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, String)> {
    raw_pairs(query).map(|(key, value)| (key, decode_or_raw(value.unwrap_or(""))))
}

/// The value of the first `key=value` pair of a query string, decoded
/// leniently; pairs without `=` do not count.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    raw_pairs(query)
        .filter_map(|(k, v)| Some((k, v?)))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| decode_or_raw(v))
}

fn raw_pairs(query: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_all_but_unreserved() {
        assert_eq!(encode_path("dir/name.txt"), "dir/name.txt");
        assert_eq!(encode_path("a b/c%d?#"), "a%20b/c%25d%3F%23");
        assert_eq!(encode_path("ü"), "%C3%BC");
        assert_eq!(encode("a/b"), "a%2Fb");
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
        assert_eq!(encode("-._~Az09"), "-._~Az09");
    }

    #[test]
    fn strict_decoding_round_trips_and_refuses_malformed_escapes() {
        for p in ["a b/c%d?#", "ü/ファイル", "plain", "a,b;c=d"] {
            assert_eq!(decode_strict(&encode_path(p)).unwrap(), p);
        }
        assert_eq!(decode_strict("%2e%2E").unwrap(), "..");
        for bad in ["a%", "a%2", "a%zz", "%+f", "%-1", "% 1", "%%41"] {
            let e = decode_strict(bad).unwrap_err();
            assert!(e.contains("malformed"), "{bad}: {e}");
        }
        assert!(decode_strict("%FF").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn lenient_decoding_keeps_what_is_no_escape() {
        assert_eq!(decode("plain"), None);
        assert_eq!(decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(decode("%+f%zz%4").as_deref(), Some("%+f%zz%4"));
        assert_eq!(decode("%ff"), None, "not UTF-8");
        assert_eq!(decode_or_raw("%ff"), "%ff");
    }

    #[test]
    fn query_strings() {
        let pairs: Vec<_> = query_pairs("n=5&&last=a%2Fb&flag").collect();
        assert_eq!(
            pairs,
            [
                ("n", "5".into()),
                ("last", "a/b".into()),
                ("flag", String::new())
            ]
        );
        assert_eq!(
            query_param("x&digest=sha256%3Aab&digest=2", "digest").as_deref(),
            Some("sha256:ab")
        );
        assert_eq!(query_param("digest", "digest"), None);
    }
}
