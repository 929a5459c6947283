//! Percent-decoding of a path segment or a query string, as a client sent
//! them (axum decodes path parameters the same way).

/// Decode `%XX` escapes (and `+` as a space when `plus_is_space`); `None`
/// when an escape is malformed or the result is not UTF-8.
pub fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Two hex digits: `from_str_radix` alone would take "+f".
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `a=1&b=x%20y` as decoded pairs, keeping repeated keys (`scope=..&scope=..`).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k, true)?, decode(v, true)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(decode("a%40b", false).unwrap(), "a@b");
        assert_eq!(decode("a+b", true).unwrap(), "a b");
        assert_eq!(decode("a+b", false).unwrap(), "a+b");
        assert!(decode("%zz", false).is_none());
        assert!(decode("%4", false).is_none());
        // A sign is not a hex digit (the canonical-path fuzz target).
        assert!(decode("%+f", false).is_none());
        assert_eq!(
            query_pairs("scope=repository%3Amy%2Fapp%3Apull&scope=x&service=wharf"),
            [
                ("scope".to_string(), "repository:my/app:pull".to_string()),
                ("scope".to_string(), "x".to_string()),
                ("service".to_string(), "wharf".to_string())
            ]
        );
    }
}
