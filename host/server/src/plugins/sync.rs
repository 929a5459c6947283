//! Keeping every node's loaded plugins in step with installs and removals
//! made through the API on any node.
//!
//! An install writes the component to `<data-dir>/installed-plugins/<name>.wasm`
//! (the data directory is shared by every node) and records
//! `{name, installed, version, sha256}` in the metadata store; a removal
//! records `{name, removed, version, sha256}`. Every node (servers and
//! workers) reconciles with those records at start and then every
//! [`INTERVAL`]: it loads an installed component whose digest differs from
//! what it runs (the compiled artifact is usually in the shared cache, so
//! this is a load, not a compile), and unloads a removed one if it runs that
//! very component. Comparing digests, not versions, makes the rule
//! idempotent and lets a rebuilt plugin of the same version through.
//!
//! A node therefore runs another node's install within [`INTERVAL`]; calls
//! already running keep the version they started with, as on the installing
//! node.

use crate::app::App;
use std::sync::{Arc, Weak};
use std::time::Duration;
use wharf_core::digest::Digest;
use wharf_store::db::{InstalledPlugin, PluginState};

/// How often a node looks for installs and removals made elsewhere.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Where installed components are kept.
pub fn installed_path(app: &App, name: &str) -> std::path::PathBuf {
    app.config
        .data_dir
        .join("installed-plugins")
        .join(format!("{name}.wasm"))
}

/// What one round changed.
#[derive(Debug, Default)]
pub struct Reconciled {
    pub loaded: Vec<String>,
    pub removed: Vec<String>,
}

/// Bring the loaded plugins in line with the store's records.
pub async fn reconcile(app: &App) -> anyhow::Result<Reconciled> {
    let records = app.store.list_installed_plugins().await?;
    // Installs and removals through this node's API wait for us, and we for
    // them: a record and the loaded set are then never seen half-changed.
    let _guard = app.plugins.changes.lock().await;
    let mut done = Reconciled::default();
    for r in records {
        let running = app
            .plugins
            .list()
            .into_iter()
            .find(|p| p.info.name == r.name);
        match r.state {
            PluginState::Installed => {
                if running.is_some_and(|p| p.wasm_digest == r.wasm_sha256) {
                    continue;
                }
                match load(app, &r).await {
                    Ok(()) => done.loaded.push(format!("{}@{}", r.name, r.version)),
                    Err(e) => tracing::warn!(
                        plugin = %r.name,
                        version = %r.version,
                        "cannot load a plugin installed on another node: {e:#}"
                    ),
                }
            }
            PluginState::Removed => {
                if running.is_some_and(|p| p.wasm_digest == r.wasm_sha256) {
                    app.plugins.remove(&r.name);
                    done.removed.push(format!("{}@{}", r.name, r.version));
                }
            }
        }
    }
    for p in &done.loaded {
        tracing::info!(plugin = %p, "loaded a plugin installed on another node");
    }
    for p in &done.removed {
        tracing::info!(plugin = %p, "unloaded a plugin removed on another node");
    }
    Ok(done)
}

async fn load(app: &App, r: &InstalledPlugin) -> anyhow::Result<()> {
    let path = installed_path(app, &r.name);
    let wasm = tokio::fs::read(&path).await.map_err(|e| {
        anyhow::anyhow!(
            "reading {}: {e} (every node must share the data directory)",
            path.display()
        )
    })?;
    let digest = Digest::of(&wasm);
    // A newer install may be replacing the file right now: the next round
    // sees its record.
    anyhow::ensure!(
        digest == r.wasm_sha256,
        "{} has digest {digest}, not the recorded {}; it is being replaced, or the data directory is not shared",
        path.display(),
        r.wasm_sha256
    );
    let plugins = app.plugins.clone();
    tokio::task::spawn_blocking(move || plugins.install(&wasm).map(drop))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Reconcile every [`INTERVAL`] for as long as the application lives.
pub fn spawn(app: &Arc<App>) {
    let weak: Weak<App> = Arc::downgrade(app);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(INTERVAL).await;
            let Some(app) = weak.upgrade() else { return };
            if let Err(e) = reconcile(&app).await {
                tracing::warn!("cannot reconcile plugins with the store: {e:#}");
            }
        }
    });
}
