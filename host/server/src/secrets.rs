//! Secrets are write-only: credentials in a repository's settings (a feed's
//! `password`, a token) are stored and handed to the plugin that uses them,
//! but every read path (the API, hence the CLI; `wharf db export` unless
//! `--include-secrets`) shows [`MASK`] in their place.
//!
//! The rule, on `importer_config` and `distributor_config` at any depth:
//!
//! - a key (case-insensitive, `-` read as `_`) named `password`, `passwd`,
//!   `passphrase`, `token`, `secret`, `api_key`, `apikey` or `private_key`,
//!   or ending in `_password`, `_token`, `_secret`, `_api_key` or
//!   `_private_key`, has its value (when not null or empty) replaced by
//!   [`MASK`];
//! - a string that is a URL with a password in its user info
//!   (`https://user:PASSWORD@host`) shows [`MASK`] as that password.
//!
//! Writing back what was read keeps the stored value ([`unmask`]), so a
//! GET-modify-PATCH round trip does not destroy a secret; [`MASK`] itself is
//! never stored as a secret.

use serde_json::{Map, Value};
use wharf_store::db::{Publication, Repository};

/// What a secret reads as.
pub const MASK: &str = "********";

/// Whether a settings key names a secret (see the module documentation).
pub fn is_secret_key(key: &str) -> bool {
    const NAMES: &[&str] = &[
        "password",
        "passwd",
        "passphrase",
        "token",
        "secret",
        "api_key",
        "apikey",
        "private_key",
    ];
    const SUFFIXES: &[&str] = &["_password", "_token", "_secret", "_api_key", "_private_key"];
    let k = key.to_ascii_lowercase().replace('-', "_");
    NAMES.contains(&k.as_str()) || SUFFIXES.iter().any(|s| k.ends_with(s))
}

fn is_unset(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

/// `s` with the password of its URL user info masked, if it is such a URL.
fn mask_str(s: &str) -> Option<String> {
    if !s.contains('@') || !s.contains("://") {
        return None;
    }
    let mut u = reqwest::Url::parse(s).ok()?;
    u.password()?;
    u.set_password(Some(MASK)).ok()?;
    Some(u.to_string())
}

/// `v` as it may be shown: secrets replaced by [`MASK`].
pub fn mask(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let shown = if is_secret_key(k) && !is_unset(v) {
                        Value::String(MASK.into())
                    } else {
                        mask(v)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(mask).collect()),
        Value::String(s) => mask_str(s).map_or_else(|| v.clone(), Value::String),
        _ => v.clone(),
    }
}

/// What to store for `new`, sent by a client that may have read `old`
/// masked: a secret sent back as [`MASK`] (or a URL with its masked
/// password) keeps the stored value. `Err` names a masked secret with no
/// stored value to keep.
pub fn unmask(new: Value, old: Option<&Value>, path: &str) -> Result<Value, String> {
    if let Some(old) = old
        && new != *old
        && new == mask(old)
    {
        return Ok(old.clone());
    }
    match new {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let here = format!("{path}.{k}");
                let old_v = old.and_then(|o| o.get(&k)).filter(|o| !is_unset(o));
                let v = if is_secret_key(&k) && v.as_str() == Some(MASK) {
                    old_v.cloned().ok_or_else(|| masked_without_value(&here))?
                } else {
                    unmask(v, old_v, &here)?
                };
                out.insert(k, v);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => {
            let olds = old.and_then(Value::as_array);
            a.into_iter()
                .enumerate()
                .map(|(i, v)| unmask(v, olds.and_then(|o| o.get(i)), &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()
                .map(Value::Array)
        }
        Value::String(s) => {
            let masked_url = reqwest::Url::parse(&s)
                .ok()
                .is_some_and(|u| u.password() == Some(MASK));
            if masked_url {
                Err(masked_without_value(path))
            } else {
                Ok(Value::String(s))
            }
        }
        v => Ok(v),
    }
}

fn masked_without_value(path: &str) -> String {
    format!(
        "{path} is {MASK:?}, which stands for a stored secret, but none is stored there: \
         send the real value"
    )
}

/// The listener as it may be shown: its webhook secret masked.
pub fn mask_listener(l: &wharf_store::db::Listener) -> wharf_store::db::Listener {
    l.masked(MASK)
}

/// The repository as it may be shown.
pub fn mask_repo(mut r: Repository) -> Repository {
    r.importer_config = mask(&r.importer_config);
    r.distributor_config = mask(&r.distributor_config);
    r
}

/// The remote as it may be shown: its settings' secrets and its proxy's
/// password masked.
pub fn mask_remote(mut r: wharf_store::db::Remote) -> wharf_store::db::Remote {
    r.settings = mask(&r.settings);
    r.transport.proxy = r.transport.proxy.map(|p| mask_str(&p).unwrap_or(p));
    r
}

/// The publication as it may be shown (it carries the distributor settings).
pub fn mask_publication(mut p: Publication) -> Publication {
    p.config = mask(&p.config);
    p
}

/// The secret strings of a repository's settings (for scrubbing texts such
/// as task errors): the values of secret keys and URL passwords, at least 4
/// characters long.
pub fn secret_values(r: &Repository) -> Vec<String> {
    fn walk(v: &Value, secret: bool, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| walk(v, is_secret_key(k), out)),
            Value::Array(a) => a.iter().for_each(|v| walk(v, secret, out)),
            Value::String(s) if secret => out.push(s.clone()),
            Value::String(s) => {
                if let Ok(u) = reqwest::Url::parse(s)
                    && let Some(pw) = u.password()
                {
                    out.push(pw.to_string());
                    if let Some(decoded) = crate::auth::percent::decode(pw, false) {
                        out.push(decoded);
                    }
                }
            }
            Value::Number(n) if secret => out.push(n.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&r.importer_config, false, &mut out);
    walk(&r.distributor_config, false, &mut out);
    out.retain(|s| s.len() >= 4);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with every one of `secrets` replaced by [`MASK`].
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_follow_the_rule() {
        for k in [
            "password",
            "Password",
            "token",
            "secret",
            "client_secret",
            "client-secret",
            "proxy_password",
            "auth_token",
            "api_key",
            "aws_private_key",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "username",
            "feed",
            "upstream_name",
            "tokens_url",
            "secretive",
            "key",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn masks_at_any_depth_and_in_urls() {
        let stored = json!({
            "feed": "https://bob:s3cr3t%21@registry.example/",
            "username": "bob",
            "password": "hunter22",
            "empty_token": "",
            "proxy": {"client_secret": "xyz123", "url": "http://p"},
            "list": [{"token": 42}],
        });
        let shown = mask(&stored);
        assert_eq!(
            shown,
            json!({
                "feed": "https://bob:********@registry.example/",
                "username": "bob",
                "password": MASK,
                "empty_token": "",
                "proxy": {"client_secret": MASK, "url": "http://p"},
                "list": [{"token": MASK}],
            })
        );
        let text = shown.to_string();
        for s in ["hunter22", "s3cr3t", "xyz123", "42"] {
            assert!(!text.contains(s), "{s} in {text}");
        }
        // Sent back as read: the stored values stay.
        assert_eq!(unmask(shown.clone(), Some(&stored), "c").unwrap(), stored);
        // Sent back with a change elsewhere: the secrets still stay.
        let mut changed = shown.clone();
        changed["username"] = json!("ann");
        changed["proxy"]["url"] = json!("http://q");
        let kept = unmask(changed, Some(&stored), "c").unwrap();
        assert_eq!(kept["password"], "hunter22");
        assert_eq!(kept["proxy"]["client_secret"], "xyz123");
        assert_eq!(kept["feed"], stored["feed"]);
        assert_eq!(kept["username"], "ann");
        // A new value replaces the stored one.
        let new = unmask(json!({"password": "new-pw"}), Some(&stored), "c").unwrap();
        assert_eq!(new["password"], "new-pw");
    }

    #[test]
    fn the_mask_is_never_stored_as_a_secret() {
        let err = unmask(json!({"password": MASK}), None, "importer_config").unwrap_err();
        assert!(err.contains("importer_config.password"), "{err}");
        let err = unmask(json!({"feed": "http://u:********@h/"}), None, "c").unwrap_err();
        assert!(err.contains("c.feed"), "{err}");
        // Not a secret key: a literal value like any other.
        assert_eq!(
            unmask(json!({"note": MASK}), None, "c").unwrap(),
            json!({"note": MASK})
        );
    }

    #[test]
    fn scrubs_secret_values_from_texts() {
        let repo = Repository {
            id: "app".parse().unwrap(),
            content_type: "docker".into(),
            display_name: String::new(),
            description: String::new(),
            notes: Default::default(),
            importer_config: json!({"feed": "http://u:p%40ss-url@h/", "password": "hunter22", "x": "abc"}),
            distributor_config: json!({"token": "tok-tok"}),
            retain_versions: None,
            created_at: wharf_store::db::now(),
            updated_at: wharf_store::db::now(),
        };
        let s = secret_values(&repo);
        let text = scrub(
            "GET http://u:p%40ss-url@h/v2/: 401 (hunter22, tok-tok, p@ss-url, abc)",
            &s,
        );
        assert_eq!(
            text,
            "GET http://u:********@h/v2/: 401 (********, ********, ********, abc)"
        );
    }
}
