//! `/healthz` (liveness: the process answers) and `/readyz` (readiness: the
//! metadata store, the blob directory and, with `--broker`, RabbitMQ are
//! usable, and the server is not shutting down). Every listener serves both.

use crate::app::App;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when shutdown starts: load balancers should stop sending traffic.
static STOPPING: AtomicBool = AtomicBool::new(false);

pub fn mark_stopping() {
    STOPPING.store(true, Ordering::Relaxed);
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// 200 when every part is usable; 503 naming the parts that are not.
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let mut check = |name: &str, outcome: Result<&str, String>| {
        let v = match outcome {
            Ok(state) => serde_json::json!({"ok": true, "state": state}),
            Err(e) => {
                ready = false;
                serde_json::json!({"ok": false, "error": e})
            }
        };
        checks.insert(name.to_string(), v);
    };
    check(
        "store",
        app.store
            .ping()
            .await
            .map(|()| "reachable")
            .map_err(|e| format!("the metadata store does not answer: {e}")),
    );
    let (root, store) = (app.blobs.root().to_path_buf(), app.blobs.clone());
    let blobs = tokio::task::spawn_blocking(move || {
        // An unnamed temporary file: proves the directory exists and is
        // writable, and leaves nothing behind. Blobs in a bucket are
        // staged there too, and the bucket must answer.
        tempfile::tempfile_in(&root)
            .map_err(|e| format!("cannot write in {}: {e}", root.display()))?;
        match store.objects() {
            None => Ok("writable"),
            Some(o) => o
                .probe()
                .map(|()| "reachable")
                .map_err(|e| format!("the object storage does not answer: {e}")),
        }
    })
    .await
    .unwrap_or_else(|e| Err(format!("check failed: {e}")));
    check("blobs", blobs);
    check(
        "broker",
        match app.tasks.broker_connected() {
            None => Ok("not configured"),
            Some(true) => Ok("connected"),
            Some(false) => Err("the connection to RabbitMQ is down".into()),
        },
    );
    check(
        "server",
        if STOPPING.load(Ordering::Relaxed) {
            Err("shutting down".into())
        } else {
            Ok("serving")
        },
    );
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({"ready": ready, "checks": checks})),
    )
        .into_response()
}
