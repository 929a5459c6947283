//! Keeping every node's loaded plugins in step with installs and removals
//! made through the API on any node.
//!
//! An install writes the component to `<data-dir>/installed-plugins/<name>.wasm`
//! and to the blob store (which every node shares, as a directory or a
//! bucket), and records `{name, installed, version, sha256}` in the
//! metadata store; a removal
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
    // Installs and removals through this node's API wait for us, and we for
    // them: a record and the loaded set are then never seen half-changed.
    // The records are read under the lock: read before it, they could be
    // older than an install that held it, and bring its predecessor back.
    let _guard = app.plugins.changes.lock().await;
    let records = app.store.list_installed_plugins().await?;
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

/// Keep component `wasm` of plugin `name` in this node's data directory.
pub fn save(app: &App, name: &str, wasm: &[u8], digest: &Digest) -> std::io::Result<()> {
    let path = installed_path(app, name);
    let dir = path.parent().expect("a file in installed-plugins");
    let tmp = dir.join(format!("{name}.{}.tmp", digest.hex()));
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&tmp, wasm))
        .and_then(|_| std::fs::rename(&tmp, &path))
}

/// The component a record names: this node's copy when it has that one,
/// else the blob store's (saved here for the next start).
async fn fetch(app: &App, r: &InstalledPlugin) -> anyhow::Result<Vec<u8>> {
    let path = installed_path(app, &r.name);
    if let Ok(wasm) = tokio::fs::read(&path).await
        && Digest::of(&wasm) == r.wasm_sha256
    {
        return Ok(wasm);
    }
    let (blobs, digest) = (app.blobs.clone(), r.wasm_sha256.clone());
    let wasm = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let mut wasm = Vec::new();
        std::io::Read::read_to_end(&mut blobs.open_blob(&digest)?, &mut wasm)?;
        Ok(wasm)
    })
    .await?
    .map_err(|e| {
        anyhow::anyhow!(
            "reading its component {} from the blob store: {e:#}",
            r.wasm_sha256
        )
    })?;
    // A newer install may be replacing it right now: the next round sees
    // its record.
    let digest = Digest::of(&wasm);
    anyhow::ensure!(
        digest == r.wasm_sha256,
        "its component in the blob store has digest {digest}, not the recorded {}",
        r.wasm_sha256
    );
    if let Err(e) = save(app, &r.name, &wasm, &digest) {
        tracing::warn!(plugin = %r.name, "cannot keep its component for the next start: {e}");
    }
    Ok(wasm)
}

async fn load(app: &App, r: &InstalledPlugin) -> anyhow::Result<()> {
    let wasm = fetch(app, r).await?;
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
