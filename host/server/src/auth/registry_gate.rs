//! The registry side's access check, run by `http::registry::dispatch`
//! before a request reaches its plugin.
//!
//! The host does not parse registry paths; it finds the repository a
//! request is about through the publication map: the longest published name
//! that prefixes the path after the plugin's route prefix, on a `/`
//! boundary (`/v2/my/app/manifests/x` → `my/app`). The path is the
//! canonical one ([`super::canonical`]), the same string the plugin parses.
//! Then:
//!
//! - reads (GET, HEAD) of an unprotected repository, or of a path that maps
//!   to no publication (`/v2/_catalog`, unknown names), need nothing;
//! - reads of a protected repository need `pull` in a registry token, or a
//!   user (HTTP basic or a login token) with `read` on it;
//! - writes need `push` (or `update` on the repository; on `/repositories`
//!   for a name not published yet);
//! - the route root itself (`GET /v2/`, the API version check) answers 401
//!   with the token challenge to anonymous callers: that is how Docker
//!   learns where to get tokens, also for anonymous pulls.
//!
//! What the gate admitted ([`Admitted`]) bounds what the plugin may do
//! with the request: it sees only that repository's publication and the
//! blobs it serves (`plugins::host`), and a plan naming anything else is
//! not carried out (`http::registry`). So a name that continues with what
//! looks like another published name (a repository `a` and another
//! `a/manifests`) resolves to the longest, and the plugin, which parses
//! `a`, finds nothing.

use super::registry_token::{Claims, SERVICE, refusal};
use super::{AuthError, Credentials, Principal, parse_authorization};
use crate::app::App;
use crate::db::Operation;
use crate::ids::RepoId;
use crate::plugins::calls::Refusal;
use crate::plugins::runtime::Plugin;
use crate::visibility::Reader;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;

/// Who is pulling or pushing.
enum Caller {
    Anonymous,
    Token(Claims),
    User(Principal),
}

/// Repository ids published under `name`, by any plugin.
pub fn repositories_named(app: &App, name: &str) -> Vec<String> {
    app.plugins
        .list()
        .iter()
        .filter_map(|p| app.publications.get(&p.info.name, name))
        .map(|p| p.repo_id.to_string())
        .collect()
}

fn repo_resource(id: &str) -> String {
    format!("/repositories/{id}/")
}

pub fn may_pull(app: &App, caller: Option<&Principal>, repos: &[String]) -> bool {
    repos.iter().all(|r| {
        !app.auth.protection.contains(r)
            || caller.is_some_and(|p| p.allows(&repo_resource(r), Operation::Read))
    })
}

pub fn may_push(caller: Option<&Principal>, repos: &[String]) -> bool {
    let Some(p) = caller else { return false };
    if repos.is_empty() {
        return p.allows("/repositories/", Operation::Update);
    }
    repos
        .iter()
        .all(|r| p.allows(&repo_resource(r), Operation::Update))
}

/// The published name (and its repository) that `rest` is about.
fn published_target(app: &App, plugin: &str, rest: &str) -> Option<(String, String)> {
    let mut cand = rest.trim_end_matches('/');
    loop {
        if let Some(p) = app.publications.get(plugin, cand) {
            return Some((cand.to_string(), p.repo_id.to_string()));
        }
        cand = &cand[..cand.rfind('/')?];
    }
}

fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD)
}

/// What the gate let through.
pub struct Admitted {
    /// The repository access was checked against, when the path names a
    /// published one; a write must then change that repository and no other.
    pub repository: Option<String>,
    /// Whether the caller may read a repository (the catalog lists only
    /// those; a push may mount blobs only from those).
    pub reader: Reader,
}

impl Admitted {
    fn new(app: &App, repository: Option<String>, caller: Caller) -> Self {
        Admitted {
            repository,
            reader: reader(app, caller),
        }
    }
}

/// Whether `caller` may read a repository: an unprotected one, or one its
/// token (pull on a published name) or its permissions (read) allow.
fn reader(app: &App, caller: Caller) -> Reader {
    let (auth, publications) = (app.auth.clone(), app.publications.clone());
    Arc::new(move |repo: &RepoId| {
        if !auth.protection.contains(repo.as_str()) {
            return true;
        }
        match &caller {
            Caller::Anonymous => false,
            Caller::Token(claims) => publications
                .for_repo(repo.as_str())
                .iter()
                .any(|p| claims.grants(&p.name, "pull")),
            Caller::User(p) => p.allows(&repo_resource(repo.as_str()), Operation::Read),
        }
    })
}

/// `Ok` to let the request through to the plugin, else the answer to send.
pub async fn admit(
    app: &App,
    plugin: &Plugin,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    addr: Option<IpAddr>,
) -> Result<Admitted, Response> {
    let Some(prefix) = plugin
        .info
        .routes
        .iter()
        .find(|r| path.starts_with(r.as_str()) || path == r.trim_end_matches('/'))
    else {
        return Ok(Admitted::new(app, None, Caller::Anonymous));
    };
    let rest = path.get(prefix.len()..).unwrap_or("");
    let challenge = |scope: Option<String>, error: Option<&str>| {
        unauthorized(app, plugin, method, headers, scope, error)
    };
    if rest.is_empty() {
        return match caller(app, plugin, method, headers, addr).await? {
            Caller::Anonymous => Err(challenge(None, None)),
            c => Ok(Admitted::new(app, None, c)),
        };
    }
    let write = is_write(method);
    let target = published_target(app, &plugin.info.name, rest);
    let protected = target
        .as_ref()
        .is_some_and(|(_, repo)| app.auth.protection.contains(repo));
    let repository = target.as_ref().map(|(_, r)| r.clone());
    if !write && !protected {
        // A public read needs nobody; credentials sent anyway (a catalog
        // of what this caller may read) count when they are valid.
        let who = if headers.contains_key(header::AUTHORIZATION) {
            caller(app, plugin, method, headers, addr)
                .await
                .unwrap_or(Caller::Anonymous)
        } else {
            Caller::Anonymous
        };
        return Ok(Admitted::new(app, repository, who));
    }
    let action = if write { "push" } else { "pull" };
    let scope = target.as_ref().map(|(name, _)| {
        format!(
            "repository:{name}:{}",
            if write { "pull,push" } else { "pull" }
        )
    });
    let repos: Vec<String> = target.iter().map(|(_, r)| r.clone()).collect();
    match caller(app, plugin, method, headers, addr).await? {
        Caller::Anonymous => Err(challenge(scope, None)),
        Caller::Token(claims) => {
            let ok = match &target {
                Some((name, _)) => claims.grants(name, action),
                None => claims.access.iter().any(|a| {
                    a.kind == "repository"
                        && rest.starts_with(&format!("{}/", a.name))
                        && a.actions.iter().any(|x| x == action)
                }),
            };
            if ok {
                Ok(Admitted::new(app, repository, Caller::Token(claims)))
            } else {
                Err(challenge(scope, Some("insufficient_scope")))
            }
        }
        Caller::User(p) => {
            let ok = if write {
                may_push(Some(&p), &repos)
            } else {
                may_pull(app, Some(&p), &repos)
            };
            if ok {
                Ok(Admitted::new(app, repository, Caller::User(p)))
            } else {
                Err(head_safe(
                    method,
                    refusal(
                        &plugin.errors,
                        StatusCode::FORBIDDEN,
                        Refusal::Denied,
                        &format!(
                            "user {} may not {action} here: requested access to the resource is denied",
                            p.login
                        ),
                    ),
                ))
            }
        }
    }
}

async fn caller(
    app: &App,
    plugin: &Plugin,
    method: &Method,
    headers: &HeaderMap,
    addr: Option<IpAddr>,
) -> Result<Caller, Response> {
    match parse_authorization(headers) {
        Ok(None) => return Ok(Caller::Anonymous),
        // A registry token is a JWT (dots); a login token is not.
        Ok(Some(Credentials::Bearer(t))) if t.contains('.') => {
            return match app.auth.registry_key.verify(&t) {
                Some(c) => Ok(Caller::Token(c)),
                None => Err(unauthorized(
                    app,
                    plugin,
                    method,
                    headers,
                    None,
                    Some("invalid_token"),
                )),
            };
        }
        _ => {}
    }
    match app.auth.authenticate(headers, addr).await {
        Ok(Some(p)) => Ok(Caller::User(p)),
        Ok(None) => Ok(Caller::Anonymous),
        Err(AuthError::Unauthenticated(_)) => Err(unauthorized(
            app,
            plugin,
            method,
            headers,
            None,
            Some("invalid_token"),
        )),
        Err(e) => Err(e.into_response()),
    }
}

/// The realm clients fetch tokens from.
fn realm(app: &App, headers: &HeaderMap) -> String {
    let base = match &app.auth.config.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| !h.is_empty() && !h.contains(['"', ' ', ',']))
                .map(str::to_string)
                .unwrap_or_else(|| app.config.listen.to_string());
            // Set by a TLS listener (authoritative), or by a TLS-terminating proxy.
            let scheme = match headers.get("x-forwarded-proto").map(|v| v.as_bytes()) {
                Some(b"https") => "https",
                _ => "http",
            };
            format!("{scheme}://{host}")
        }
    };
    format!("{base}/api/v1/registry/token")
}

/// 401 with the token challenge, in the plugin's error format.
fn unauthorized(
    app: &App,
    plugin: &Plugin,
    method: &Method,
    headers: &HeaderMap,
    scope: Option<String>,
    error: Option<&str>,
) -> Response {
    let mut challenge = format!(
        "Bearer realm=\"{}\",service=\"{SERVICE}\"",
        realm(app, headers)
    );
    if let Some(s) = &scope {
        challenge.push_str(&format!(",scope=\"{s}\""));
    }
    if let Some(e) = error {
        challenge.push_str(&format!(",error=\"{e}\""));
    }
    let message = match error {
        Some("insufficient_scope") => {
            "authentication required: the token does not grant this repository"
        }
        Some(_) => "authentication required: the credentials are invalid or expired",
        None => "authentication required",
    };
    let mut r = refusal(
        &plugin.errors,
        StatusCode::UNAUTHORIZED,
        Refusal::Unauthorized,
        message,
    );
    if let Ok(v) = HeaderValue::try_from(challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    head_safe(method, r)
}

fn head_safe(method: &Method, mut r: Response) -> Response {
    if *method == Method::HEAD {
        *r.body_mut() = Body::empty();
    }
    r
}
