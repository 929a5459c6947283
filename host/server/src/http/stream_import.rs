//! The HTTP half of a streaming import: the request body feeds a
//! [`StreamSource`] that the plugin's `upload` reads while the bytes arrive
//! (see `plugins::stream_source`). The task runs in this process, since
//! only it has the body; the answer is the ended task.

use crate::app::App;
use crate::auth::Principal;
use crate::error::{Error, ErrorKind, Result};
use crate::http::unread;
use crate::import_slots::ImportSlot;
use crate::tasks::Job;
use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use wharf_runtime::stream_source::StreamSource;
use wharf_store::db::{Operation, Repository};

/// Import `body` into repository `id` for `principal`; `query` holds the
/// plugin's parameters. A refusal (no such repository, no right, no
/// length) comes after the body has been taken, for a while, so the client
/// sees it rather than a connection reset mid-send.
pub async fn run(
    app: Arc<App>,
    id: &str,
    principal: &Principal,
    query: BTreeMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let mut body = body.into_data_stream();
    let (repo, len, slot) = match prepare(&app, id, principal, headers).await {
        Ok(ready) => ready,
        Err(refused) => {
            let complete = unread::drain(&mut body, &unread::AFTER_IMPORT).await;
            return Ok(unread::closing_unless(complete, refused.into_response()));
        }
    };
    let params: serde_json::Map<String, serde_json::Value> = query
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let (source, tx) = StreamSource::new(
        len,
        app.blobs.clone(),
        &app.config.data_dir.join("spool"),
        tokio::runtime::Handle::current(),
    )
    .map_err(Error::internal)?;
    let job = Job::ImportStream {
        repository: repo.id.clone(),
        size: len,
        params: params.clone(),
        process: crate::tasks::process::ProcessId::current(),
    };
    // Its own tokio task: if the client goes away, the import still ends
    // (with an error: its body broke off) and its record says so.
    let tasks = app.tasks.clone();
    let importer = app.clone();
    let request = crate::request_context::current();
    let mut run = tokio::spawn(crate::request_context::scope(request, async move {
        tasks
            .run_here(job, move |_, ctx| {
                crate::jobs::import_stream(importer, repo.id, params, source, ctx)
            })
            .await
    }));
    // Feed the body until it ends or the import ends (done, failed, or
    // canceled while the client sends nothing).
    let mut tx = Some(tx);
    let mut complete = false;
    let mut broken = false;
    let ended = loop {
        tokio::select! {
            ended = &mut run => break ended,
            next = body.next(), if tx.is_some() => match next {
                Some(Ok(chunk)) => {
                    let sender = tx.as_ref().expect("guarded by the branch condition");
                    if sender.send(Ok(chunk)).await.is_err() {
                        tx = None; // The import stopped reading.
                    }
                }
                Some(Err(e)) => {
                    broken = true;
                    if let Some(sender) = tx.take() {
                        let _ = sender.send(Err(e.to_string())).await;
                    }
                }
                None => {
                    complete = true;
                    tx = None;
                }
            },
        }
    };
    drop(slot);
    let task = ended.map_err(|e| Error::internal(format!("import task: {e}")))??;
    // The import may have ended before the body did: finished without the
    // last bytes (the zero blocks after a tar's end), or failed early. A
    // body that broke off has no more to give.
    if !complete && !broken {
        complete = unread::drain(&mut body, &unread::AFTER_IMPORT).await;
    }
    Ok(unread::closing_unless(
        complete,
        (StatusCode::ACCEPTED, Json(task)).into_response(),
    ))
}

/// The checks before anything is stored: the repository and its plugin,
/// the right to send content, a length, a server not shutting down, a free
/// import slot (held until the import ends).
async fn prepare(
    app: &App,
    id: &str,
    principal: &Principal,
    headers: &HeaderMap,
) -> Result<(Repository, u64, ImportSlot)> {
    let repo = crate::repos::get_repo(app, id).await?;
    crate::repos::plugin_for(app, &repo)?;
    // Sending content is uploading it: the right `POST /uploads` needs, on
    // top of `execute` on the repository (which the access gate checked).
    principal.require("/content/uploads/", Operation::Create)?;
    if app.tasks.is_stopping() {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "shutting-down",
            "the server is shutting down; send the content again once it is back (or to another node)",
        ));
    }
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::LengthRequired,
                "length-required",
                "a streaming import needs Content-Length; for content of unknown length, \
                 use a resumable upload (POST /api/v1/uploads) and import that",
            )
        })?;
    let slot = app.import_slots.take(&principal.login).map_err(|full| {
        Error::new(
            ErrorKind::TooManyRequests,
            "too-many-imports",
            full.to_string(),
        )
        .retry_after(IMPORT_RETRY)
    })?;
    Ok((repo, len, slot))
}

/// When a client refused a slot is told to come back.
const IMPORT_RETRY: std::time::Duration = std::time::Duration::from_secs(5);
