//! HTTP: the admin API under `/api/v1`, and everything else routed to the
//! plugin that claims the path (the registry side).

pub mod error;
pub mod openapi;
pub mod registry;
pub mod write;

use crate::app::App;
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use std::sync::Arc;

pub fn router(app: Arc<App>) -> axum::Router {
    let api = axum::Router::new()
        .route("/status", get(status))
        .route("/openapi.json", get(openapi::document))
        .merge(crate::repos::routes())
        .merge(crate::uploads::routes())
        .merge(crate::tasks::api::routes())
        .merge(crate::groups::routes())
        .merge(crate::orphans::routes())
        .merge(crate::plugins::api::routes())
        .merge(crate::events::api::routes())
        .merge(crate::auth::api::routes())
        // After every route: the access check applies to matched routes
        // (the fallback answers 404 to anyone).
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::auth::middleware::enforce,
        ))
        .fallback(|| async { error::ApiError::not_found("no such API endpoint") });
    axum::Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok" }))
        .fallback(registry::dispatch)
        .with_state(app)
}

#[derive(serde::Serialize)]
struct PluginStatus {
    name: String,
    version: String,
    content_types: Vec<ContentTypeStatus>,
    routes: Vec<String>,
    wasm_sha256: String,
}

#[derive(serde::Serialize)]
struct ContentTypeStatus {
    name: String,
    description: String,
}

/// Anyone gets the version and whether the server is healthy; an
/// authenticated user also gets plugins and storage.
async fn status(
    State(app): State<Arc<App>>,
    crate::auth::ClientAddr(addr): crate::auth::ClientAddr,
    headers: axum::http::HeaderMap,
) -> Json<serde_json::Value> {
    let db_ok = app.store.ping().await;
    let authenticated = headers.contains_key(axum::http::header::AUTHORIZATION)
        && matches!(app.auth.authenticate(&headers, addr).await, Ok(Some(_)));
    if !authenticated {
        return Json(serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ok": db_ok.is_ok(),
        }));
    }
    let plugins: Vec<PluginStatus> = app
        .plugins
        .list()
        .iter()
        .map(|p| PluginStatus {
            name: p.info.name.clone(),
            version: p.info.version.clone(),
            content_types: p
                .info
                .content_types
                .iter()
                .map(|(n, d)| ContentTypeStatus {
                    name: n.clone(),
                    description: d.clone(),
                })
                .collect(),
            routes: p.info.routes.clone(),
            wasm_sha256: p.wasm_digest.to_string(),
        })
        .collect();
    let db_ok_flag = db_ok.is_ok();
    let db = match db_ok {
        Ok(()) => serde_json::json!({"backend": "sqlite", "ok": true}),
        Err(e) => serde_json::json!({"backend": "sqlite", "ok": false, "error": e.to_string()}),
    };
    let blobs_ok = std::fs::metadata(app.blobs.root()).is_ok();
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ok": db_ok_flag,
        "contract": format!("{}@{}.{}.{}", crate::plugins::runtime::CONTRACT_PACKAGE,
            crate::plugins::runtime::CONTRACT_VERSION.0, crate::plugins::runtime::CONTRACT_VERSION.1,
            crate::plugins::runtime::CONTRACT_VERSION.2),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "plugins": plugins,
        "plugin_load_failures": *app.plugin_failures.lock().unwrap(),
        "storage": {"blobs": {"path": app.blobs.root().display().to_string(), "ok": blobs_ok}, "db": db},
    }))
}
