//! Registry authentication as clients do it: answer a `401` challenge with
//! Basic credentials or a Bearer token from the challenge's realm.

use serde::Deserialize;
use std::collections::BTreeMap;
use wharf_sdk::{Error, percent};

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq)]
pub struct Challenge {
    /// Lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// Lowercased names → values (`realm`, `service`, `scope`).
    pub params: BTreeMap<String, String>,
}

/// Parse `Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
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

/// An `Authorization` header value for Basic auth.
pub fn basic(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64(format!("{username}:{password}").as_bytes())
    )
}

/// Where to ask for a token: the realm, with the service and scope the
/// challenge named (or `fallback_scope` when it named none).
pub fn token_url(challenge: &Challenge, fallback_scope: &str) -> Result<String, Error> {
    let realm = challenge
        .params
        .get("realm")
        .filter(|r| r.starts_with("http://") || r.starts_with("https://"))
        .ok_or_else(|| {
            Error::new(
                "denied",
                "the upstream's Bearer challenge has no usable realm",
            )
        })?;
    let mut query = Vec::new();
    if let Some(service) = challenge.params.get("service") {
        query.push(format!("service={}", percent::encode(service)));
    }
    let scope = challenge
        .params
        .get("scope")
        .map_or(fallback_scope, String::as_str);
    query.push(format!("scope={}", percent::encode(scope)));
    let sep = if realm.contains('?') { '&' } else { '?' };
    Ok(format!("{realm}{sep}{}", query.join("&")))
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// The token of a token endpoint's JSON answer (`token` or OAuth `access_token`).
pub fn token_from_body(body: &[u8]) -> Result<String, Error> {
    let response: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            "denied",
            // Where, not what: serde quotes the values it did not expect.
            format!(
                "the token endpoint answered invalid JSON (at {})",
                crate::sync::json_error_at(&e)
            ),
        )
    })?;
    response
        .token
        .or(response.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::new("denied", "the token endpoint answered without a token"))
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.com/token");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        let c = parse_challenge(r#"Basic realm="Registry Realm, with \"comma\"""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], r#"Registry Realm, with "comma""#);
        let c = parse_challenge("bearer realm=http://x/t, service=s").unwrap();
        assert_eq!(c.params["service"], "s");
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn token_urls() {
        let c = parse_challenge(r#"Bearer realm="http://h:1/token",service="svc 1""#).unwrap();
        assert_eq!(
            token_url(&c, "repository:a/b:pull").unwrap(),
            "http://h:1/token?service=svc%201&scope=repository%3Aa%2Fb%3Apull"
        );
        let c = parse_challenge(r#"Bearer service="x""#).unwrap();
        assert_eq!(token_url(&c, "s").unwrap_err().code, "denied");
        assert_eq!(
            token_from_body(br#"{"token":"abc","expires_in":300}"#).unwrap(),
            "abc"
        );
        assert_eq!(
            token_from_body(br#"{"access_token":"def"}"#).unwrap(),
            "def"
        );
        assert!(token_from_body(b"{}").is_err());
    }

    #[test]
    fn basic_auth() {
        assert_eq!(basic("user", "pass"), "Basic dXNlcjpwYXNz");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
