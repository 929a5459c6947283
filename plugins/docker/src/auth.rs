//! Registry authentication as clients do it: answer a `401` challenge
//! (parsed by `wharf_sdk::challenge`) with Basic credentials or a Bearer
//! token from the challenge's realm (the Docker token protocol).

use serde::Deserialize;
use wharf_sdk::challenge::Challenge;
use wharf_sdk::{Error, percent};

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

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::challenge::parse as parse_challenge;

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
}
