//! `/api/v1/plugins`: list, install (hot-load), upgrade and remove content
//! types while the server runs.
//!
//! An installed plugin is validated before anything changes (compiles, speaks
//! a compatible contract, answers `describe`, clashes with no other plugin),
//! then written to `<data-dir>/installed-plugins/<name>.wasm` so it loads again
//! at the next start, and recorded in the metadata store so that every other
//! node loads it too (see [`super::sync`]). Installing a plugin whose name is
//! loaded is an upgrade: calls and tasks already running keep the version
//! they started with.

use crate::app::App;
use crate::error::{Error, ErrorKind, Result};
use crate::http::ApiErrorBody;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use std::sync::Arc;
use wharf_store::db::{InstalledPlugin, PluginState, RepoQuery, now};

/// Largest plugin accepted.
const MAX_PLUGIN_BYTES: usize = 64 << 20;

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route(
            "/plugins",
            get(list)
                .post(install)
                .layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
        .route("/plugins/{name}", delete(remove))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PluginView {
    pub name: String,
    pub version: String,
    pub content_types: Vec<String>,
    pub routes: Vec<String>,
    pub wasm_sha256: String,
    /// Whether the compiled artifact came from the cache at load.
    pub from_cache: bool,
}

fn view(p: &wharf_runtime::engine::Plugin) -> PluginView {
    PluginView {
        name: p.info.name.clone(),
        version: p.info.version.clone(),
        content_types: p
            .info
            .content_types
            .iter()
            .map(|(n, _)| n.clone())
            .collect(),
        routes: p.info.routes.clone(),
        wasm_sha256: p.wasm_digest.to_string(),
        from_cache: p.load.from_cache,
    }
}

#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", responses((status = 200, body = Vec<PluginView>)))]
async fn list(State(app): State<Arc<App>>) -> Json<Vec<PluginView>> {
    Json(app.plugins.list().iter().map(|p| view(p)).collect())
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Installed {
    #[serde(flatten)]
    pub plugin: PluginView,
    /// The version this install replaced, if it was an upgrade.
    pub upgraded_from: Option<String>,
    pub load_ms: f64,
}

/// Install or upgrade a plugin: the request body is the `.wasm` component.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins",
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = Installed), (status = 400, body = ApiErrorBody)))]
async fn install(
    State(app): State<Arc<App>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Installed>)> {
    if body.is_empty() {
        return Err(Error::invalid(
            "send the plugin's .wasm file as the request body",
        ));
    }
    let _guard = app.plugins.changes.lock().await;
    let previous: Vec<_> = app.plugins.list();
    let plugins = app.plugins.clone();
    let wasm = body.clone();
    // Compiling takes a while and runs guest code: off the async threads.
    let (plugin, stats) = tokio::task::spawn_blocking(move || plugins.install(&wasm))
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::new(ErrorKind::Invalid, "plugin-invalid", e.to_string()))?;
    let upgraded_from = previous
        .iter()
        .find(|p| p.info.name == plugin.info.name)
        .map(|p| p.info.version.clone());
    // Saved for this node's next start, and as a blob for the other nodes
    // (which need no shared file system to load it). The blob's lease
    // lasts until the record below commits; cleanup keeps it after.
    let holder = wharf_store::blobs::leases::Holder::new();
    // File writes, an fsync, perhaps a bucket upload: they block, and the
    // event loop's other connections go to another thread meanwhile.
    let saved = tokio::task::block_in_place(|| {
        super::sync::save(&app, &plugin.info.name, &body, &plugin.wasm_digest).and_then(|()| {
            app.blobs
                .store_bytes(&body, Some(&plugin.wasm_digest), &holder)
                .map(drop)
                .map_err(std::io::Error::other)
        })
    });
    if let Err(e) = saved {
        return Err(Error::internal(format!(
            "plugin loaded but not saved for the next start: {e}"
        )));
    }
    let record = InstalledPlugin {
        name: plugin.info.name.clone(),
        state: PluginState::Installed,
        version: plugin.info.version.clone(),
        wasm_sha256: plugin.wasm_digest.clone(),
        changed_at: now(),
    };
    app.store.put_installed_plugin(&record).await.map_err(|e| {
        Error::internal(format!(
            "plugin loaded and saved here, but other nodes will not learn of it: {e}; install it again"
        ))
    })?;
    drop(holder);
    tracing::info!(plugin = %plugin.info.name, version = %plugin.info.version, ?upgraded_from, "plugin installed");
    let kind = if upgraded_from.is_some() {
        "plugin.upgraded"
    } else {
        "plugin.installed"
    };
    let data = serde_json::json!({"plugin": plugin.info.name, "version": plugin.info.version, "previous": upgraded_from});
    app.events.emit(crate::events::Event::new(kind, data)).await;
    let out = Installed {
        plugin: view(&plugin),
        upgraded_from,
        load_ms: stats.duration.as_secs_f64() * 1000.0,
    };
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
struct RemoveQuery {
    /// Remove even if repositories of its content types exist.
    #[serde(default)]
    force: bool,
}

#[utoipa::path(delete, path = "/api/v1/plugins/{name}", tag = "plugins", params(RemoveQuery),
    responses((status = 204), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
async fn remove(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    q: std::result::Result<Query<RemoveQuery>, QueryRejection>,
) -> Result<StatusCode> {
    let Query(q) = q?;
    let _guard = app.plugins.changes.lock().await;
    let plugin = app
        .plugins
        .list()
        .into_iter()
        .find(|p| p.info.name == name)
        .ok_or_else(|| Error::not_found(format!("no plugin named {name:?} is loaded")))?;
    if !q.force {
        for (t, _) in &plugin.info.content_types {
            let q = RepoQuery {
                content_type: Some(t.clone()),
                limit: 1,
                ..Default::default()
            };
            if let Some(r) = app.store.list_repos(&q).await?.first() {
                return Err(Error::conflict(format!(
                    "repositories of content type {t:?} exist (e.g. {}); delete them first or remove with ?force=true",
                    r.id
                )));
            }
        }
    }
    // Recorded first: if this fails, nothing changed anywhere.
    let record = InstalledPlugin {
        name: name.clone(),
        state: PluginState::Removed,
        version: plugin.info.version.clone(),
        wasm_sha256: plugin.wasm_digest.clone(),
        changed_at: now(),
    };
    app.store.put_installed_plugin(&record).await?;
    app.plugins.remove(&name);
    let _ = std::fs::remove_file(super::sync::installed_path(&app, &name));
    tracing::info!(plugin = %name, "plugin removed");
    let data = serde_json::json!({"plugin": name, "version": plugin.info.version});
    app.events
        .emit(crate::events::Event::new("plugin.removed", data))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
