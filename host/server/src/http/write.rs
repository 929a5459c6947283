//! Writes through a plugin's routes (a `docker push`): `resolve` answered
//! with a write plan, and this module carries it out.
//!
//! 1. The repository must exist, be one of the plugin's content types, and
//!    be the one the access gate checked the caller against (when the gate
//!    found one by its published name).
//! 2. The request body streams into an upload session (new, or named by the
//!    plan), hashed on the way; a `Content-Range` must start at the session's
//!    length.
//! 3. The plugin's `write` runs with the repository's units and sessions;
//!    its unit changes are committed in one transaction only if it answered
//!    without an error.
//! 4. If it asked (the repository publishes on push), the repository is
//!    published inline (`jobs::publish_on_push`, no task) before the answer
//!    goes out, so a pushed tag is pullable as soon as the PUT answers; and
//!    the plugin's content events go to the event listeners.

use crate::app::App;
use crate::auth::registry_gate::Admitted;
use crate::auth::registry_token::refusal;
use crate::events::Event;
use crate::http::registry::plugin_failure;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use std::sync::Arc;
use wharf_runtime::calls::{BodyTarget, ErrorFormat, Plan, Refusal, Request, WritePlan, Written};
use wharf_runtime::engine::Plugin;
use wharf_runtime::host::TaskCall;
use wharf_store::blobs::leases::Holder;
use wharf_store::db::{Progress, Repository};
use wharf_store::sessions::{Owner, SessionError, SessionId};

/// The first number of `Content-Range` (`0-1023`, or `bytes 0-1023/*`);
/// `Err` says why it cannot be read.
pub(crate) fn range_start(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("");
    text.trim()
        .trim_start_matches("bytes")
        .trim()
        .split('-')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| format!("cannot parse Content-Range {text:?}; send START-END"))
}

fn session_failure(errors: &ErrorFormat, e: SessionError, location: Option<&str>) -> Response {
    let (status, kind) = match &e {
        SessionError::WrongOffset { .. } => {
            (StatusCode::RANGE_NOT_SATISFIABLE, Refusal::UploadInvalid)
        }
        SessionError::TooLarge { .. } | SessionError::BlobTooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, Refusal::TooLarge)
        }
        SessionError::Unknown(_) => (StatusCode::NOT_FOUND, Refusal::UploadUnknown),
        SessionError::Busy(_) => (StatusCode::CONFLICT, Refusal::UploadInvalid),
        SessionError::Body(_) => (StatusCode::BAD_REQUEST, Refusal::UploadInvalid),
        // Where the sessions are kept does not answer (the bucket, say).
        SessionError::Io(_) => {
            tracing::warn!("upload session: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, Refusal::Unavailable)
        }
        SessionError::Blob(_) => {
            tracing::error!("upload session: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, Refusal::Internal)
        }
    };
    let mut r = refusal(errors, status, kind, &e.to_string());
    // Where to resume: the session's range, and its address.
    if let SessionError::WrongOffset { len, .. } = e {
        let range = format!("0-{}", len.saturating_sub(1));
        r.headers_mut()
            .insert(header::RANGE, HeaderValue::try_from(range).expect("ascii"));
        if let Some(l) = location.and_then(|l| HeaderValue::try_from(l).ok()) {
            r.headers_mut().insert(header::LOCATION, l);
        }
    }
    r
}

/// A 500 in the plugin's format.
fn internal(errors: &ErrorFormat, e: impl std::fmt::Display) -> Response {
    refusal(
        errors,
        StatusCode::INTERNAL_SERVER_ERROR,
        Refusal::Internal,
        &e.to_string(),
    )
}

/// The repository a write plan names, checked against the plugin and the gate.
async fn target(
    app: &App,
    plugin: &Plugin,
    admitted: &Admitted,
    id: &str,
) -> Result<Repository, Response> {
    let errors = &plugin.errors;
    let unknown = || {
        refusal(
            errors,
            StatusCode::NOT_FOUND,
            Refusal::NameUnknown,
            &format!("repository {id} does not exist"),
        )
    };
    let repo_id = id.parse().map_err(|_| unknown())?;
    let repo = app
        .store
        .get_repo(&repo_id)
        .await
        .map_err(|e| internal(errors, e))?
        .ok_or_else(unknown)?;
    if !plugin
        .info
        .content_types
        .iter()
        .any(|(t, _)| *t == repo.content_type)
    {
        tracing::warn!(plugin = %plugin.info.name, repo = %id, "plugin planned a write to a repository of another content type");
        return Err(unknown());
    }
    if let Some(checked) = &admitted.repository
        && checked != id
    {
        return Err(refusal(
            errors,
            StatusCode::FORBIDDEN,
            Refusal::Denied,
            &format!("access was checked for repository {checked}, not {id}"),
        ));
    }
    Ok(repo)
}

/// Carry out a write plan; `Ok` is the plan to answer with.
pub async fn run(
    app: &Arc<App>,
    plugin: &Arc<Plugin>,
    admitted: Admitted,
    req: Request,
    plan: WritePlan,
    headers: &HeaderMap,
    body: Body,
) -> Result<Plan, Response> {
    let errors = &plugin.errors;
    let repo = target(app, plugin, &admitted, &plan.repository).await?;
    let owner = Owner {
        plugin: plugin.info.name.clone(),
        repository: repo.id.to_string(),
    };
    let sessions = &app.plugins.runtime.env.sessions;
    // A session never grows past the server's maximum blob size, whatever
    // the plan allows.
    let max_blob = app.config.max_blob_size;
    let (session, created): (Option<SessionId>, bool) = match &plan.body {
        BodyTarget::None => (None, false),
        BodyTarget::NewSession => {
            let id = sessions
                .create(&owner)
                .map_err(|e| session_failure(errors, e.into(), None))?;
            if let Err(e) = sessions
                .append(id, body.into_data_stream(), None, plan.max_body, max_blob)
                .await
            {
                sessions.abort(&id);
                return Err(session_failure(errors, e, None));
            }
            (Some(id), true)
        }
        BodyTarget::Session(name) => {
            let id = sessions
                .find(name, &owner.plugin, Some(&owner.repository))
                .map_err(|e| session_failure(errors, e.into(), None))?
                .ok_or_else(|| {
                    session_failure(errors, SessionError::Unknown(name.clone()), None)
                })?;
            let start = range_start(headers).map_err(|m| {
                refusal(errors, StatusCode::BAD_REQUEST, Refusal::UploadInvalid, &m)
            })?;
            // Chunks add up to one blob: `append` counts what it holds.
            sessions
                .append(id, body.into_data_stream(), start, plan.max_body, max_blob)
                .await
                .map_err(|e| session_failure(errors, e, Some(&req.path)))?;
            (Some(id), false)
        }
    };
    // What the repository's publication serves, the write may name (a
    // `HEAD` said so) without a read of everything the repository holds.
    let served = match app.publications.of(&plugin.info.name, repo.id.as_str()) {
        Some(p) if p.is_of(&repo) => app.served.get(app.store.as_ref(), &p).await.ok(),
        _ => None,
    };
    let written = call_write(plugin, &repo, req, session, admitted.reader.clone(), served).await;
    // `_leases` keeps the blobs the write names from cleanup until its
    // changes are committed (`blobs::leases`).
    let (written, changes, _leases) = match written {
        Ok(w) => w,
        Err(resp) => {
            if created && let Some(id) = session {
                sessions.abort(&id);
            }
            return Err(resp);
        }
    };
    let failed = match &written.plan {
        Plan::Error(_) => true,
        Plan::Body(b) => b.status >= 400,
        _ => false,
    };
    if failed {
        // A write that failed keeps nothing: no units, no new session.
        if created && let Some(id) = session {
            sessions.abort(&id);
        }
        return Ok(written.plan);
    }
    if !changes.is_empty() {
        let pushed = wharf_store::db::VersionOrigin::new(wharf_store::db::VersionCause::Push, None);
        app.store
            .apply_changes(&repo.id, &changes, &pushed)
            .await
            .map_err(|e| internal(errors, e))?;
        if written.publish
            && let Err(e) = crate::jobs::publish_on_push(app, &repo.id).await
        {
            // The push itself is kept; the next publish shows it.
            tracing::error!(repo = %repo.id, "publish on push failed: {}", e.message);
            return Err(refusal(
                errors,
                StatusCode::INTERNAL_SERVER_ERROR,
                Refusal::Internal,
                &format!(
                    "the push was stored, but publishing {} failed: {}; publish it again",
                    repo.id, e.message
                ),
            ));
        }
    }
    for event in &written.events {
        app.events
            .emit(Event::new(
                event.action.event_type(),
                serde_json::json!({
                    "repository": repo.id,
                    "plugin": plugin.info.name,
                    "reference": event.reference,
                    "digest": event.digest,
                }),
            ))
            .await;
    }
    Ok(written.plan)
}

/// Run the plugin's `write` off the async threads; hand back its answer and
/// its staged unit changes.
async fn call_write(
    plugin: &Arc<Plugin>,
    repo: &Repository,
    req: Request,
    session: Option<SessionId>,
    reader: wharf_runtime::visibility::Reader,
    served: Option<Arc<wharf_runtime::visibility::Served>>,
) -> Result<(Written, Vec<wharf_store::db::UnitChange>, Arc<Holder>), Response> {
    let call = TaskCall::new(
        repo.clone(),
        Arc::new(|_: Progress| {}),
        Vec::new(),
        Some(reader),
    )
    .serving(served);
    let session = session.map(|s| s.to_string());
    let errors = &plugin.errors;
    let plugin = plugin.clone();
    let outcome = tokio::task::spawn_blocking(move || plugin.write(call, &req, session.as_deref()))
        .await
        .map_err(|e| internal(errors, e))?;
    let staged = outcome.map_err(|e| plugin_failure(errors, e))?;
    Ok((staged.answer, staged.call.changes, staged.call.leases))
}
