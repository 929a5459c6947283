//! HTTP: the admin API under `/api/v1` and the web console at `/ui/`, and
//! everything else routed to the plugin that claims the path (the registry
//! side); which of the two a listener serves is its [`Side`]. Every listener
//! also answers `/healthz`, `/readyz` and `/metrics`, counts its requests
//! and gives each a request id.

pub mod console;
pub mod docs;
pub mod error;
pub use error::ApiErrorBody;
pub mod openapi;
pub mod plan_cache;
pub mod registry;
pub mod request_id;
pub mod stream_import;
pub mod unread;
pub mod write;

use crate::app::App;
use crate::listeners::Side;
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use std::sync::Arc;

/// The routes of one listener.
pub fn router(app: Arc<App>, side: Side) -> axum::Router {
    let ops = axum::Router::new()
        .route("/healthz", get(crate::health::healthz))
        .route("/readyz", get(crate::health::readyz))
        .route("/metrics", get(crate::metrics::handler))
        .route_layer(axum::middleware::from_fn(crate::metrics::record_route));
    let routes = match side {
        Side::Both => ops
            .merge(console::routes())
            .nest("/api/v1", api(app.clone()))
            .fallback(registry::dispatch),
        // Nothing else is at `/` here: it leads to the console.
        Side::Admin => ops
            .route("/", get(console::to_console))
            .merge(console::routes())
            .nest("/api/v1", api(app.clone()))
            .fallback(|| async {
                crate::error::Error::not_found(
                    "no such endpoint: this listener serves the admin API (/api/v1) \
                     and the console (/ui/) only",
                )
            }),
        // The token endpoint of the Docker token flow belongs to the registry
        // protocol (the realm clients are sent to); the rest of the API's
        // paths fall to the plugins, and no plugin claims them: the
        // registry's own 404.
        Side::Registry => ops
            .route(
                "/api/v1/registry/token",
                get(crate::auth::registry_token::token),
            )
            .route_layer(axum::middleware::from_fn(crate::metrics::record_route))
            .fallback(registry::dispatch),
    };
    let tracker = crate::metrics::Tracker {
        app: app.clone(),
        listener: side.as_str(),
    };
    routes
        .layer(axum::middleware::from_fn_with_state(
            tracker,
            crate::metrics::track,
        ))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(app)
}

fn api(app: Arc<App>) -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/status", get(status))
        .route("/openapi.json", get(openapi::document))
        .route("/docs", get(docs::page))
        .route("/docs/app.js", get(docs::script))
        .route("/docs/app.css", get(docs::style))
        .merge(crate::repos::routes())
        .merge(crate::remotes::routes())
        .merge(crate::versions::routes())
        .merge(crate::uploads::routes())
        .merge(crate::tasks::api::routes())
        .merge(crate::groups::routes())
        .merge(crate::schedules::routes())
        .merge(crate::orphans::routes())
        .merge(crate::fsck::routes())
        .merge(crate::plugins::api::routes())
        .merge(crate::events::api::routes())
        .merge(crate::auth::api::routes())
        // After every route: the access check applies to matched routes
        // (the fallback answers 404 to anyone).
        .route_layer(axum::middleware::from_fn_with_state(
            app,
            crate::auth::middleware::enforce,
        ))
        .route_layer(axum::middleware::from_fn(crate::metrics::record_route))
        .fallback(|| async { crate::error::Error::not_found("no such API endpoint") })
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
/// authenticated user also gets plugins and storage (the blob directory, and
/// the metadata store's backend, `sqlite` or `mongodb`, and health).
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
    let backend = app.store.backend();
    let db = match db_ok {
        Ok(()) => serde_json::json!({"backend": backend, "ok": true}),
        Err(e) => serde_json::json!({"backend": backend, "ok": false, "error": e.to_string()}),
    };
    let store = app.blobs.clone();
    let blobs_ok = tokio::task::spawn_blocking(move || store.probe().is_ok())
        .await
        .unwrap_or(false);
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ok": db_ok_flag,
        "contract": format!("{}@{}.{}.{}", wharf_runtime::engine::CONTRACT_PACKAGE,
            wharf_runtime::engine::CONTRACT_VERSION.0, wharf_runtime::engine::CONTRACT_VERSION.1,
            wharf_runtime::engine::CONTRACT_VERSION.2),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "plugins": plugins,
        "plugin_load_failures": *app.plugin_failures.lock().unwrap(),
        "storage": {"blobs": {"path": app.blobs.root().display().to_string(), "location": app.blobs.describe(), "ok": blobs_ok}, "db": db},
    }))
}
