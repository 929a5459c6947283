//! Fuzz targets for the host's parsers of request text (docs/fuzzing.md):
//! registry paths (percent-decoding and the canonical form the access gate
//! and plugins share) and byte ranges (`Range` of blob GETs, `Content-Range`
//! of pushed and uploaded chunks). Each runs for `WHARF_FUZZ_SECONDS` on its
//! corpus in `fuzz/corpus/<target>/` and on mutants of it.

use crate::auth::canonical::canonical_path;
use crate::auth::percent;
use crate::http::registry::parse_range;
use crate::http::write::range_start;
use crate::uploads::{ChunkQuery, chunk_offset};
use axum::http::{HeaderMap, HeaderValue, header};
use wharf_fuzz::proptest::prelude::*;

// ------------------------------------------------------- registry paths --

/// Whether every `%` of `s` starts a two-hex-digit escape.
fn escapes_well_formed(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] == b'%')
        .all(|i| b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
}

fn check_path(bytes: &[u8]) -> Result<(), TestCaseError> {
    let raw = String::from_utf8_lossy(bytes);
    for plus_is_space in [false, true] {
        if let Some(decoded) = percent::decode(&raw, plus_is_space) {
            prop_assert!(escapes_well_formed(&raw), "decoded {raw:?}");
            prop_assert!(decoded.len() <= raw.len());
        }
    }
    let _ = percent::query_pairs(&raw);
    let Ok(path) = canonical_path(&raw) else {
        return Ok(());
    };
    // What the gate and the plugin see is one plain, absolute path...
    prop_assert!(path.starts_with('/'), "{path:?}");
    prop_assert!(
        !path
            .chars()
            .any(|c| c.is_control() || c == '\\' || c == '%'),
        "{path:?} keeps a control character, a backslash or a %"
    );
    let inner = path[1..].strip_suffix('/').unwrap_or(&path[1..]);
    prop_assert!(
        inner.is_empty() || inner.split('/').all(|s| !matches!(s, "" | "." | "..")),
        "{path:?} keeps an empty, . or .. segment"
    );
    // ...that is the client's path decoded once, and its own canonical form.
    let once = percent::decode(&raw, false);
    prop_assert_eq!(Some(&path), once.as_ref());
    let again = canonical_path(&path);
    prop_assert_eq!(again.as_ref(), Ok(&path));
    Ok(())
}

#[test]
fn fuzz_registry_paths() {
    let dictionary: &[&[u8]] = &[
        b"/v2/",
        b"/manifests/",
        b"/blobs/uploads/",
        b"/tags/list",
        b"/files/",
        b"%2F",
        b"%2f",
        b"%5C",
        b"%2e",
        b"%2E%2E",
        b"%25",
        b"%00",
        b"%ff",
        b"%c3%a9",
        b"%+f",
        b"//",
        b"/./",
        b"/../",
        b"\\",
        b"+",
    ];
    wharf_fuzz::run_matching(
        "canonical-path",
        dictionary,
        "(/([a-z._-]|%[0-9a-fA-F+ -]{0,2}|%2[eEfF5]|%5[cC]|\\\\){0,8}){0,6}/?",
        check_path,
    );
}

// ------------------------------------------------------------ byte ranges --

/// The decimal numbers written in `text`, with their neighbours: the sizes
/// at which a range written there changes meaning.
fn sizes_near(text: &str) -> Vec<u64> {
    let mut sizes = vec![0, 1, 2, 100, 4096, u64::MAX - 1, u64::MAX];
    for n in text
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|d| d.parse::<u64>().ok())
    {
        sizes.extend([n.saturating_sub(1), n, n.saturating_add(1)]);
    }
    sizes
}

/// Whether `s` is a non-empty run of ASCII digits.
fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// What RFC 9110 says a single `bytes=` range of a `len`-byte blob is, for
/// the plain forms `A-B`, `A-` and `-N`; `None` for anything else.
fn expected_range(text: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = text.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let last = len.checked_sub(1);
    Some(match (a, b) {
        ("", n) if digits(n) => {
            let n: u64 = n.parse().ok()?;
            match last {
                Some(last) if n > 0 => Ok((len - n.min(len), last)),
                _ => Err(()),
            }
        }
        (a, "") if digits(a) => {
            let a: u64 = a.parse().ok()?;
            match last {
                Some(last) if a <= last => Ok((a, last)),
                _ => Err(()),
            }
        }
        (a, b) if digits(a) && digits(b) => {
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            if a > b {
                return None; // Invalid: ignored or refused, either is fine.
            }
            match last {
                Some(last) if a <= last => Ok((a, b.min(last))),
                _ => Err(()),
            }
        }
        _ => return None,
    })
}

/// The start of a `Content-Range` of the plain form `[bytes ]A-B[/T]`.
fn expected_start(text: &str) -> Option<u64> {
    let spec = text.strip_prefix("bytes ").unwrap_or(text);
    let (a, rest) = spec.split_once('-')?;
    let (b, total) = rest.split_once('/').unwrap_or((rest, "*"));
    (digits(a) && digits(b) && (total == "*" || digits(total)))
        .then(|| a.parse().ok())
        .flatten()
}

fn check_ranges(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    for len in sizes_near(&text) {
        let range = parse_range(&text, len);
        if let Some(Ok((first, last))) = range {
            prop_assert!(
                first <= last && last < len,
                "{text:?} of {len} bytes gave {first}-{last}"
            );
        }
        if let Some(expected) = expected_range(&text, len) {
            prop_assert_eq!(range, Some(expected), "{:?} of {} bytes", text, len);
        }
    }
    let Ok(value) = HeaderValue::from_bytes(bytes) else {
        return Ok(());
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_RANGE, value);
    let pushed = range_start(&headers);
    let uploaded = chunk_offset(&ChunkQuery { offset: None }, &headers).ok();
    if let Some(start) = expected_start(&text) {
        prop_assert_eq!(pushed, Ok(Some(start)), "push Content-Range {:?}", text);
        if text.starts_with("bytes ") {
            prop_assert_eq!(
                uploaded,
                Some(Some(start)),
                "upload Content-Range {:?}",
                text
            );
        }
    }
    Ok(())
}

#[test]
fn fuzz_byte_ranges() {
    let dictionary: &[&[u8]] = &[
        b"bytes=",
        b"bytes ",
        b"bytes */",
        b"-",
        b",",
        b"/",
        b"*",
        b" ",
        b"+",
        b"0",
        b"18446744073709551615",
        b"18446744073709551616",
    ];
    wharf_fuzz::run_matching(
        "byte-range",
        dictionary,
        "(bytes[= ]?)? ?[+-]?[0-9]{0,21} ?-? ?[0-9]{0,21}(/([0-9]{0,21}|\\*))?(,[0-9]{0,3}-[0-9]{0,3})?",
        check_ranges,
    );
}
