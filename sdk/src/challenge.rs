//! HTTP authentication as a client answers it: a `WWW-Authenticate`
//! challenge parsed into its scheme and parameters (RFC 9110 §11.6.1), and
//! the `Authorization` value of Basic credentials. A plugin that fetches
//! from an upstream needing credentials (a registry's token flow) starts
//! here.

use base64::Engine as _;
use std::collections::BTreeMap;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq)]
pub struct Challenge {
    /// Lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// Lowercased names → values (`realm`, `service`, `scope`).
    pub params: BTreeMap<String, String>,
}

/// Parse `Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"`;
/// quoted values may hold commas and `\"`. `None` for an empty header.
pub fn parse(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if chars.next_if_eq(&'=').is_none() {
            break;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// The `Authorization` header value of Basic credentials.
pub fn basic(username: &str, password: &str) -> String {
    let pair = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quotes_commas_and_escapes() {
        let c = parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.com/token");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        let c = parse(r#"Basic realm="Registry Realm, with \"comma\"""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], r#"Registry Realm, with "comma""#);
        let c = parse("bearer realm=http://x/t, service=s").unwrap();
        assert_eq!(c.params["service"], "s");
        assert_eq!(parse(""), None);
    }

    #[test]
    fn basic_credentials() {
        assert_eq!(basic("user", "pass"), "Basic dXNlcjpwYXNz");
        assert_eq!(basic("", ""), "Basic Og==");
    }
}
