//! The registry side's access check, run by `http::registry::dispatch`
//! before a request reaches its plugin.
//!
//! The host does not parse registry paths beyond what the plugin declared
//! (`Naming`): the name is the part of the canonical path
//! ([`super::canonical`], the same string the plugin parses) after the route
//! prefix and before the last of the plugin's markers
//! (`/v2/my/app/manifests/x` → `my/app`), and its repository is found by
//! `registry_names`, published or not. A plugin that declares no markers
//! names repositories by publication only: the longest published name that
//! prefixes the path, on a `/` boundary. Then:
//!
//! - reads (GET, HEAD) of an unprotected repository, or of a path that names
//!   no repository (`/v2/_catalog`, unknown names), need nothing;
//! - reads of a protected repository need `pull` in a registry token, or a
//!   user (HTTP basic or a login token) with `read` on it;
//! - writes need `push` on the name in a registry token, or a user with
//!   `update` on the repository; for a name no repository has, `create` on
//!   `/repositories/`, and a POST or PUT then creates the
//!   repository when the plugin and the server allow it
//!   (`registry_names::create_for_push`);
//! - a 401 names the scope of the request (`repository:NAME:pull` or
//!   `repository:NAME:pull,push`), so clients that follow the challenge ask
//!   the token endpoint for exactly that;
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
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;
use wharf_core::ids::RepoId;
use wharf_runtime::calls::Refusal;
use wharf_runtime::engine::Plugin;
use wharf_runtime::publications::Granted;
use wharf_runtime::visibility::Reader;
use wharf_store::db::Operation;

/// Who is pulling or pushing.
enum Caller {
    Anonymous,
    Token(Claims),
    User(Principal),
}

fn repo_resource(id: &str) -> String {
    format!("/repositories/{id}/")
}

pub async fn may_pull(app: &App, caller: Option<&Principal>, repos: &[String]) -> bool {
    for r in repos {
        if app.auth.protection.learn(app.auth.store(), r).await
            && !caller.is_some_and(|p| p.allows(&repo_resource(r), Operation::Read))
        {
            return false;
        }
    }
    true
}

pub fn may_push(caller: Option<&Principal>, repos: &[String]) -> bool {
    let Some(p) = caller else { return false };
    if repos.is_empty() {
        // A new name: pushing it creates its repository.
        return p.allows("/repositories/", Operation::Create);
    }
    repos
        .iter()
        .all(|r| p.allows(&repo_resource(r), Operation::Update))
}

/// The published name (and its repository) that `rest` is about.
async fn published_target(app: &App, plugin: &str, rest: &str) -> Option<(String, String)> {
    let publications = app.publications.whole().await;
    let mut cand = rest.trim_end_matches('/');
    loop {
        if let Some(p) = publications.get(plugin, cand) {
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
    let granted = match &caller {
        Caller::Anonymous => Granted::Nothing,
        Caller::Token(claims) => Granted::Names(claims.names_granted("pull").collect()),
        Caller::User(p) if p.is_super_user() => Granted::Any,
        Caller::User(p) => p.permissions.readable_repositories().clone(),
    };
    let (auth, publications) = (app.auth.clone(), app.publications.clone());
    Reader::new(
        move |repo: &RepoId| {
            if !auth.protection.protects(repo.as_str()) {
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
        },
        granted,
    )
}

/// `Ok` to let the request through to the plugin, else the answer to send.
///
/// While the publications load at start, a request about a published name
/// goes on at once (its publication read from the store); any other waits
/// for the load, since what the plugin answers for it (a catalog, a new
/// name) may rest on every publication.
pub async fn admit(
    app: &Arc<App>,
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
        app.publications.whole().await;
        return Ok(Admitted::new(app, None, Caller::Anonymous));
    };
    let rest = path.get(prefix.len()..).unwrap_or("");
    let challenge = |scope: Option<String>, error: Option<&str>| {
        unauthorized(app, plugin, method, headers, scope, error)
    };
    let write = is_write(method);
    if rest.is_empty() {
        app.publications.whole().await;
        return match caller(app, plugin, method, headers, addr).await? {
            Caller::Anonymous => Err(challenge(None, None)),
            c => Ok(Admitted::new(app, None, c)),
        };
    }
    let target = match plugin.naming.name_in(rest) {
        Some(name) => match crate::registry_names::repository_named(app, plugin, name).await {
            // A read below a pull-through repository's name is a read of it.
            Ok(None) if !write => Some((
                name.to_string(),
                crate::registry_names::pull_through_base(app, plugin, name).map(|r| r.to_string()),
            )),
            Ok(repo) => Some((name.to_string(), repo.map(|r| r.to_string()))),
            Err(e) => return Err(name_failure(plugin, method, e)),
        },
        None => published_target(app, &plugin.info.name, rest)
            .await
            .map(|(n, r)| (n, Some(r))),
    };
    let repository = target.as_ref().and_then(|(_, r)| r.clone());
    let protected = match &repository {
        Some(repo) => app.auth.protection.learn(app.auth.store(), repo).await,
        None => false,
    };
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
    let repos: Vec<String> = repository.iter().cloned().collect();
    let who = caller(app, plugin, method, headers, addr).await?;
    let allowed = match &who {
        Caller::Anonymous => return Err(challenge(scope, None)),
        Caller::Token(claims) => match &target {
            Some((name, _)) => claims.grants(name, action),
            None => false,
        },
        Caller::User(p) => {
            if write {
                may_push(Some(p), &repos)
            } else {
                may_pull(app, Some(p), &repos).await
            }
        }
    };
    if !allowed {
        return Err(match &who {
            Caller::User(p) => head_safe(
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
            ),
            _ => challenge(scope, Some("insufficient_scope")),
        });
    }
    // A push to a name no repository has: create it, for a caller who may.
    let repository = match (&target, repository) {
        (Some((name, None)), None)
            if matches!(*method, Method::POST | Method::PUT)
                && crate::registry_names::creates_on_push(app, plugin)
                && may_create(&who) =>
        {
            let login = match &who {
                Caller::Token(c) => c.sub.as_str(),
                Caller::User(p) => p.login.as_str(),
                Caller::Anonymous => "",
            };
            match crate::registry_names::create_for_push(app, plugin, name, login).await {
                Ok(id) => Some(id.to_string()),
                Err(e) => return Err(name_failure(plugin, method, e)),
            }
        }
        (_, repository) => repository,
    };
    Ok(Admitted::new(app, repository, who))
}

/// Whether a caller the gate let push may create a repository: a user with
/// `create` on `/repositories/`, or a token (the token endpoint grants push
/// on a new name only to such users).
fn may_create(who: &Caller) -> bool {
    match who {
        Caller::Anonymous => false,
        Caller::Token(_) => true,
        Caller::User(p) => p.allows("/repositories/", Operation::Create),
    }
}

/// A name that maps to several repositories, or a store that does not answer.
fn name_failure(plugin: &Plugin, method: &Method, e: crate::registry_names::NameError) -> Response {
    use crate::registry_names::NameError;
    let (status, kind) = match &e {
        NameError::Ambiguous { .. } | NameError::Invalid(_) => {
            (StatusCode::BAD_REQUEST, Refusal::NameInvalid)
        }
        NameError::Store(wharf_store::db::StoreError::Conflict(_)) => {
            (StatusCode::CONFLICT, Refusal::NameInvalid)
        }
        NameError::Store(e) => {
            tracing::error!("finding a repository by name: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, Refusal::Unavailable)
        }
    };
    head_safe(
        method,
        refusal(&plugin.errors, status, kind, &e.to_string()),
    )
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
