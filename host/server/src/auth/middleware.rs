//! The one gate of the admin API: every request under `/api/v1` that
//! matched a route passes here. It finds the route's row in [`rules`],
//! authenticates the caller, checks the permission, hands the handler the
//! [`Principal`] (as a request extension), and writes the audit record of
//! every write: who, what, on which resource, with what result.

use super::principal::normalize_resource;
use super::rules::{self, Access, Rule};
use super::{ClientAddr, Principal, percent};
use crate::app::App;
use crate::error::Error;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use wharf_store::db::Operation;

pub const API_PREFIX: &str = "/api/v1";
/// Largest JSON body read here (to find a copy's source repository).
const MAX_INSPECTED_BODY: usize = 1 << 20;

fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub async fn enforce(
    State(app): State<Arc<App>>,
    ClientAddr(addr): ClientAddr,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    // Inside the nested router the URI lacks `/api/v1`; the original has it.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let route = matched
        .strip_prefix(API_PREFIX)
        .unwrap_or(&matched)
        .to_string();
    let rel_path = path.strip_prefix(API_PREFIX).unwrap_or(&path).to_string();
    let action = format!("{method} {path}");

    let Some(rule) = rules::find(method.as_str(), &route) else {
        let resp = Error::forbidden(format!(
            "no access rule for {method} {API_PREFIX}{route}: access is denied by default \
             (a route needs a row in host/wharf/src/auth/rules.rs)"
        ))
        .into_response();
        audit(&method, "-", &action, "-", resp.status());
        return refuse(req, resp).await;
    };
    if rule.access == Access::Public {
        return next.run(req).await;
    }
    let principal = match app.auth.authenticate(req.headers(), addr).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            let resp = super::AuthError::Unauthenticated(
                "log in first: POST /api/v1/login with HTTP basic auth gives a token; send it as \
                 `Authorization: Bearer <token>` (or send HTTP basic auth on every request)"
                    .into(),
            )
            .into_response();
            audit(&method, "-", &action, "-", resp.status());
            return refuse(req, resp).await;
        }
        Err(e) => {
            let resp = e.into_response();
            audit(&method, "-", &action, "-", resp.status());
            return refuse(req, resp).await;
        }
    };
    let resource = match authorize(&app, rule, &route, &rel_path, &principal, &mut req).await {
        Ok(r) => r,
        Err((resource, e)) => {
            let resp = e.into_response();
            audit(&method, &principal.login, &action, &resource, resp.status());
            return refuse(req, resp).await;
        }
    };
    let login = principal.login.clone();
    req.extensions_mut().insert(principal);
    let resp = next.run(req).await;
    if is_write(&method) {
        audit(&method, &login, &action, &resource, resp.status());
    }
    resp
}

/// A refusal, answered once the request's body (an upload chunk, a
/// streaming import) has been taken, within limits: a client still sending
/// would otherwise see a reset instead of the reason.
async fn refuse(req: Request, resp: Response) -> Response {
    if !is_write(req.method()) {
        return resp;
    }
    let limits = &crate::http::unread::AFTER_REFUSAL;
    crate::http::unread::answer_after_draining(req.into_body(), limits, resp).await
}

fn audit(method: &Method, user: &str, action: &str, resource: &str, status: StatusCode) {
    if !is_write(method) && status != StatusCode::FORBIDDEN {
        return;
    }
    let result = if status.is_success() {
        "ok"
    } else if matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    ) {
        "denied"
    } else {
        "failed"
    };
    tracing::info!(
        target: "wharf::audit",
        user,
        action,
        resource,
        status = status.as_u16(),
        result,
        "admin request"
    );
}

/// A decoded path parameter that is safe as a resource path segment.
fn segment(name: &str, raw: &str) -> Result<String, Error> {
    let bad = || Error::invalid(format!("invalid {name} {raw:?} in the path"));
    let v = percent::decode(raw, false).ok_or_else(bad)?;
    match normalize_resource(&v) {
        Ok(n) if n.matches('/').count() == 2 => Ok(v),
        _ => Err(bad()),
    }
}

/// Check the rule for this request; returns the resource path it checked
/// (with the refusal, when refused).
async fn authorize(
    app: &App,
    rule: &Rule,
    route: &str,
    rel_path: &str,
    p: &Principal,
    req: &mut Request,
) -> Result<String, (String, Error)> {
    let unknown = |e| ("-".to_string(), e);
    let params = rules::params(route, rel_path).ok_or_else(|| {
        unknown(Error::internal(format!(
            "route {route} does not match {rel_path}"
        )))
    })?;
    let mut values = Vec::new();
    for (name, raw) in params {
        values.push((name, segment(name, raw).map_err(unknown)?));
    }
    let fill = |template: &str| {
        let mut s = template.to_string();
        for (name, v) in &values {
            s = s.replace(&format!("{{{name}}}"), v);
        }
        normalize_resource(&s).map_err(|e| unknown(Error::internal(e)))
    };
    let resource = match rule.access {
        Access::Public | Access::Authenticated => String::new(),
        Access::Permission(template, op) => {
            let resource = fill(template)?;
            p.require(&resource, op)
                .map_err(|e| (resource.clone(), e))?;
            resource
        }
        Access::Task { op, repo_op } => {
            let resource = fill("/tasks/{id}")?;
            if !p.allows(&resource, op)
                && !task_repos_allow(app, p, &values, repo_op)
                    .await
                    .map_err(|e| (resource.clone(), e))?
            {
                p.require(&resource, op)
                    .map_err(|e| (resource.clone(), e))?;
            }
            resource
        }
    };
    if let Some(field) = rule.body_repository {
        check_body_repository(p, field, req)
            .await
            .map_err(|e| (resource.clone(), e))?;
    }
    Ok(resource)
}

/// Whether the task locks repositories and `op` is allowed on all of them.
async fn task_repos_allow(
    app: &App,
    p: &Principal,
    values: &[(&str, String)],
    op: Operation,
) -> Result<bool, Error> {
    let Some((_, id)) = values.iter().find(|(n, _)| *n == "id") else {
        return Ok(false);
    };
    let Ok(id) = id.parse::<wharf_core::ids::TaskId>() else {
        return Ok(false);
    };
    let Some(task) = app.store.get_task(&id).await? else {
        return Ok(false);
    };
    let repos: Vec<&str> = task
        .locks
        .iter()
        .filter_map(|l| l.repository())
        .map(|r| r.as_str())
        .collect();
    Ok(!repos.is_empty()
        && repos
            .iter()
            .all(|r| p.allows(&format!("/repositories/{r}/"), op)))
}

/// Read the (small, JSON) body to check `read` on the repository its
/// `field` names, then put it back for the handler. A body without that
/// field is left to the handler to refuse.
async fn check_body_repository(p: &Principal, field: &str, req: &mut Request) -> Result<(), Error> {
    let body = std::mem::replace(req.body_mut(), Body::empty());
    let bytes = axum::body::to_bytes(body, MAX_INSPECTED_BODY)
        .await
        .map_err(|e| Error::invalid(format!("request body: {e}")))?;
    let named = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get(field).and_then(|f| f.as_str()).map(str::to_string));
    *req.body_mut() = Body::from(bytes);
    if let Some(repo) = named
        && let Ok(resource) = normalize_resource(&format!("/repositories/{repo}"))
    {
        p.require(&resource, Operation::Read)?;
    }
    Ok(())
}
