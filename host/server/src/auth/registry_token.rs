//! Registry tokens (the Docker token flow): `GET /api/v1/registry/token?
//! service=wharf&scope=repository:NAME:pull,push` with optional HTTP basic
//! auth answers a short-lived JWT (HS256) whose `access` claim lists what
//! was granted. Anonymous callers get `pull` on unprotected names; users
//! get `pull` where they may read the repository and `push` where they may
//! update it (on a name no repository has: where they may create one, as
//! the push creates it). A scope that is not granted is left out, not refused: the
//! registry then answers 401 for it, as Docker expects.
//!
//! The signing key is 32 random bytes made at first start and kept in the
//! metadata store; every node sharing the store signs with it, so a token
//! from one node is good on every other.

use super::{AuthError, ClientAddr, Principal, percent, registry_gate};
use crate::app::App;
use anyhow::Context as _;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use wharf_runtime::calls::{ErrorFormat, Refusal, Rendered};
use wharf_store::db::{Operation, Store};

pub const SERVICE: &str = "wharf";
pub const TTL_SECS: u64 = 300;
/// Where an installation from before kept the key (adopted at start).
const KEY_FILE: &str = "registry-token.key";
/// The key's name among the metadata store's secrets.
const KEY_SECRET: &str = "registry-token-key";

pub struct SigningKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// One granted resource, as the Docker token specification shapes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceAccess {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The login; empty for an anonymous token.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<ResourceAccess>,
}

impl Claims {
    /// The repository names it grants `action` on.
    pub fn names_granted<'a>(&'a self, action: &'a str) -> impl Iterator<Item = String> + 'a {
        self.access
            .iter()
            .filter(move |a| a.kind == "repository" && a.actions.iter().any(|x| x == action))
            .map(|a| a.name.clone())
    }

    /// Whether `action` (`pull`, `push`) is granted on the repository `name`.
    pub fn grants(&self, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == "repository" && a.name == name && a.actions.iter().any(|x| x == action)
        })
    }
}

impl SigningKey {
    /// The key every node sharing the metadata store signs with: made by the
    /// first node to start, kept in the store (its `secrets`), so nodes need
    /// no shared file system. An installation from before keeps the key in
    /// `<data-dir>/registry-token.key`: that one is adopted (tightened to
    /// 0600), so tokens already issued stay valid.
    pub async fn load_or_create(data_dir: &Path, store: &dyn Store) -> anyhow::Result<SigningKey> {
        let path = data_dir.join(KEY_FILE);
        let candidate = match std::fs::read(&path) {
            Ok(bytes) => {
                // Made readable by others by an older version, or by hand.
                wharf_core::private_files::tighten(&path, wharf_core::private_files::FILE_MODE)?;
                anyhow::ensure!(
                    bytes.len() >= 32,
                    "{} is shorter than 32 bytes: remove it to make a new one (issued registry tokens become invalid)",
                    path.display()
                );
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                rand::random::<[u8; 32]>().to_vec()
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let secret = store
            .ensure_secret(KEY_SECRET, &candidate)
            .await
            .context("reading the registry token key from the metadata store")?;
        anyhow::ensure!(
            secret.len() >= 32,
            "the registry token key in the metadata store is shorter than 32 bytes"
        );
        Ok(SigningKey {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
        })
    }

    pub fn sign(&self, login: &str, access: Vec<ResourceAccess>) -> String {
        let now = super::tokens::unix_now();
        let claims = Claims {
            iss: SERVICE.into(),
            sub: login.into(),
            aud: SERVICE.into(),
            exp: now + TTL_SECS,
            nbf: now.saturating_sub(5),
            iat: now,
            jti: hex::encode(rand::random::<[u8; 16]>()),
            access,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The claims of a valid, unexpired token of ours.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[SERVICE]);
        v.set_issuer(&[SERVICE]);
        v.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .ok()
            .map(|d| d.claims)
    }
}

/// The token endpoint's answer (both names, as clients differ).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    token: String,
    access_token: String,
    expires_in: u64,
    issued_at: String,
}

/// An error of the token endpoint (`{"errors": [...]}`): the endpoint
/// speaks the Docker token protocol, whose clients print this shape. It is
/// the host's own endpoint, not a plugin's route; refusals on a plugin's
/// routes use the plugin's format ([`refusal`]).
fn registry_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]});
    (status, Json(body)).into_response()
}

/// A refusal on a plugin's routes, in the plugin's error format (its code
/// for `kind`, its envelope and headers).
pub fn refusal(format: &ErrorFormat, status: StatusCode, kind: Refusal, message: &str) -> Response {
    rendered(status, format.refusal(kind, message))
}

/// An error answer rendered in a plugin's format.
pub fn rendered(status: StatusCode, r: Rendered<'_>) -> Response {
    let mut resp = (status, r.body).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::try_from(r.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    // Checked at load: valid names and values.
    for (name, value) in r.headers {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            h.insert(k, v);
        }
    }
    resp
}

/// `repository:NAME:pull,push` → (NAME, actions); other resource types are ignored.
fn parse_scope(scope: &str) -> Option<(String, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    (kind == "repository" && !name.is_empty()).then(|| {
        (
            name.to_string(),
            actions
                .split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect(),
        )
    })
}

/// What the caller may do on the repository name: the requested actions
/// that are allowed, in request order.
async fn granted(
    app: &App,
    caller: Option<&Principal>,
    name: &str,
    requested: &[String],
) -> Vec<String> {
    let repos: Vec<String> = match crate::registry_names::repositories_named(app, name).await {
        Ok(ids) => ids.iter().map(|r| r.to_string()).collect(),
        Err(e) => {
            tracing::warn!(name, "token scope not granted: {e}");
            return Vec::new();
        }
    };
    // Pulls of a name below a pull-through repository's are pulls of it.
    let pull_repos: Vec<String> = if repos.is_empty() {
        crate::registry_names::pull_through_bases(app, name)
            .iter()
            .map(|r| r.to_string())
            .collect()
    } else {
        repos.clone()
    };
    let mut out: Vec<String> = Vec::new();
    for action in requested {
        let ok = match action.as_str() {
            // A name no repository has: a pull of it finds nothing now,
            // and a pull granted on it would hold, while the token lives,
            // for a protected repository created under it later; only
            // who may create one (a first push) gets it.
            "pull" if pull_repos.is_empty() => {
                caller.is_some_and(|p| p.allows("/repositories/", Operation::Create))
            }
            "pull" => registry_gate::may_pull(app, caller, &pull_repos).await,
            "push" => registry_gate::may_push(caller, &repos),
            _ => false,
        };
        if ok && !out.contains(action) {
            out.push(action.clone());
        }
    }
    out
}

#[utoipa::path(get, path = "/api/v1/registry/token", tag = "auth", security((), ("basic" = [])),
    params(
        ("service" = Option<String>, Query, description = "must be `wharf` when given"),
        ("scope" = Option<String>, Query, description = "`repository:NAME:pull[,push]`, repeatable"),
    ),
    responses(
        (status = 200, body = TokenResponse, description = "a registry token (HTTP basic auth optional: anonymous tokens grant pull on unprotected repositories)"),
        (status = 401, description = "wrong login or password"),
        (status = 429, description = "too many failed logins"),
    ))]
pub async fn token(
    State(app): State<Arc<App>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = percent::query_pairs(query.as_deref().unwrap_or(""));
    if let Some((_, s)) = pairs.iter().find(|(k, _)| k == "service")
        && s != SERVICE
    {
        return registry_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            &format!("unknown service {s:?}: this server's is {SERVICE:?}"),
        );
    }
    let caller = match app.auth.authenticate(&headers, addr).await {
        Ok(p) => p,
        Err(AuthError::Unauthenticated(_)) => {
            return registry_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "incorrect username or password",
            );
        }
        Err(e @ (AuthError::RateLimited(_) | AuthError::Busy)) => {
            let why = match e {
                AuthError::Busy => "too many password checks at once; try again later",
                _ => "too many failed logins; try again later",
            };
            let mut r = registry_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", why);
            if let Some(secs) = e.retry_after() {
                r.headers_mut().insert(header::RETRY_AFTER, secs.into());
            }
            return r;
        }
        Err(e) => return e.into_response(),
    };
    let mut access: Vec<ResourceAccess> = Vec::new();
    for (_, scope) in pairs.iter().filter(|(k, _)| k == "scope") {
        // One parameter may hold several space-separated scopes.
        for one in scope.split(' ').filter(|s| !s.is_empty()) {
            let Some((name, requested)) = parse_scope(one) else {
                continue;
            };
            let actions = granted(&app, caller.as_ref(), &name, &requested).await;
            match access.iter_mut().find(|a| a.name == name) {
                Some(a) => {
                    for x in actions {
                        if !a.actions.contains(&x) {
                            a.actions.push(x);
                        }
                    }
                }
                None => access.push(ResourceAccess {
                    kind: "repository".into(),
                    name,
                    actions,
                }),
            }
        }
    }
    let login = caller.as_ref().map(|p| p.login.as_str()).unwrap_or("");
    tracing::debug!(user = login, ?access, "registry token");
    let token = app.auth.registry_key.sign(login, access);
    Json(TokenResponse {
        access_token: token.clone(),
        token,
        expires_in: TTL_SECS,
        issued_at: super::tokens::rfc3339(super::tokens::unix_now()),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key from a fresh store in a fresh directory.
    async fn fresh_key() -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let store =
            wharf_store::db::sqlite::SqliteStore::open(&dir.path().join("wharf.db")).unwrap();
        SigningKey::load_or_create(dir.path(), &store)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn tokens_verify_only_with_our_key_and_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            wharf_store::db::sqlite::SqliteStore::open(&dir.path().join("wharf.db")).unwrap();
        let key = SigningKey::load_or_create(dir.path(), &store)
            .await
            .unwrap();
        // Another node on the same store (a directory of its own).
        let elsewhere = tempfile::tempdir().unwrap();
        let again = SigningKey::load_or_create(elsewhere.path(), &store)
            .await
            .unwrap();
        let access = vec![ResourceAccess {
            kind: "repository".into(),
            name: "my/app".into(),
            actions: vec!["pull".into()],
        }];
        let t = key.sign("jdev", access);
        let c = again.verify(&t).expect("same key after a restart");
        assert_eq!(c.sub, "jdev", "same key on every node of the store");
        assert!(c.grants("my/app", "pull"));
        assert!(!c.grants("my/app", "push"));
        assert!(!c.grants("my", "pull"));
        let other = fresh_key().await;
        assert!(other.verify(&t).is_none());
        let mut tampered = t.clone();
        tampered.pop();
        assert!(key.verify(&tampered).is_none());
    }

    /// An older installation's key file is adopted, so its tokens stay good.
    #[tokio::test]
    async fn a_key_file_of_an_older_version_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), [7u8; 32]).unwrap();
        let old = SigningKey {
            encoding: EncodingKey::from_secret(&[7u8; 32]),
            decoding: DecodingKey::from_secret(&[7u8; 32]),
        };
        let t = old.sign("jdev", vec![]);
        let store =
            wharf_store::db::sqlite::SqliteStore::open(&dir.path().join("wharf.db")).unwrap();
        let key = SigningKey::load_or_create(dir.path(), &store)
            .await
            .unwrap();
        assert!(key.verify(&t).is_some());
        assert!(fresh_key().await.verify(&t).is_none());
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(
            parse_scope("repository:my/app:pull,push"),
            Some(("my/app".into(), vec!["pull".into(), "push".into()]))
        );
        assert_eq!(parse_scope("registry:catalog:*"), None);
        assert_eq!(parse_scope("repository::pull"), None);
    }
}
