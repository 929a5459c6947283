//! The set of loaded plugins: loaded from a directory at start, installed
//! and removed at run time (hot-loading), found by name, content type or
//! registry path.

use crate::engine::{LoadStats, Plugin, PluginError, Runtime};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// A snapshot of the loaded plugins. Replaced whole on install, so a call that
/// holds an `Arc<Plugin>` finishes on the version it started with.
#[derive(Default, Clone)]
struct Loaded {
    by_name: HashMap<String, Arc<Plugin>>,
}

pub struct Plugins {
    pub runtime: Arc<Runtime>,
    loaded: RwLock<Arc<Loaded>>,
    /// Held by an API install or removal (until its record is in the store)
    /// and by [`sync::reconcile`], so neither sees the other half done.
    pub changes: tokio::sync::Mutex<()>,
}

/// A plugin that failed to load, reported by the status endpoint.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LoadFailure {
    pub file: String,
    pub error: String,
}

impl Plugins {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Plugins {
            runtime,
            loaded: RwLock::new(Arc::default()),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    /// Load every `*.wasm` in `dir`. A plugin that fails is reported and
    /// skipped; the others load.
    pub fn load_dir(&self, dir: &Path) -> anyhow::Result<Vec<LoadFailure>> {
        let mut failures = Vec::new();
        let mut files: Vec<_> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), "plugin directory does not exist; no content types loaded");
                return Ok(failures);
            }
            Err(e) => return Err(e.into()),
        };
        files.retain(|p| p.extension().is_some_and(|e| e == "wasm"));
        files.sort();
        for path in files {
            let source = path.display().to_string();
            let failure = match crate::engine::read_wasm(&path) {
                Ok(wasm) => self.load(&source, &wasm),
                Err(e) => Some(self.refused(&source, PluginError::Invalid(format!("{e:#}")))),
            };
            failures.extend(failure);
        }
        Ok(failures)
    }

    /// Load one plugin at start, named `source` (its file, or `builtin:…`)
    /// in the log and in the failure returned if it does not load.
    pub fn load(&self, source: &str, wasm: &[u8]) -> Option<LoadFailure> {
        match self.install(wasm) {
            Ok((p, stats)) => {
                tracing::info!(
                    plugin = %p.info.name,
                    version = %p.info.version,
                    source,
                    from_cache = stats.from_cache,
                    ms = stats.duration.as_secs_f64() * 1000.0,
                    "plugin loaded"
                );
                None
            }
            Err(e) => Some(self.refused(source, e)),
        }
    }

    fn refused(&self, source: &str, e: PluginError) -> LoadFailure {
        tracing::error!(file = source, "plugin not loaded: {e}");
        LoadFailure {
            file: source.to_string(),
            error: e.to_string(),
        }
    }

    /// Validate and load a plugin, replacing an older version of the same name.
    pub fn install(&self, wasm: &[u8]) -> Result<(Arc<Plugin>, LoadStats), PluginError> {
        let (plugin, stats) = self.runtime.load(wasm)?;
        let mut guard = self.loaded.write().unwrap();
        for other in guard.by_name.values() {
            if other.info.name == plugin.info.name {
                continue;
            }
            for (t, _) in &plugin.info.content_types {
                if other.info.content_types.iter().any(|(o, _)| o == t) {
                    return Err(PluginError::Invalid(format!(
                        "plugin {} declares content type {t:?}, which plugin {} already provides",
                        plugin.info.name, other.info.name
                    )));
                }
            }
            for r in &plugin.info.routes {
                if other
                    .info
                    .routes
                    .iter()
                    .any(|o| o.starts_with(r.as_str()) || r.starts_with(o.as_str()))
                {
                    return Err(PluginError::Invalid(format!(
                        "plugin {} claims route {r:?}, which overlaps plugin {}'s routes",
                        plugin.info.name, other.info.name
                    )));
                }
            }
        }
        let mut next = (**guard).clone();
        next.by_name
            .insert(plugin.info.name.clone(), plugin.clone());
        *guard = Arc::new(next);
        Ok((plugin, stats))
    }

    /// Unload a plugin; calls holding it finish first.
    pub fn remove(&self, name: &str) -> bool {
        let mut guard = self.loaded.write().unwrap();
        let mut next = (**guard).clone();
        let removed = next.by_name.remove(name).is_some();
        *guard = Arc::new(next);
        removed
    }

    pub fn list(&self) -> Vec<Arc<Plugin>> {
        let mut v: Vec<_> = self
            .loaded
            .read()
            .unwrap()
            .by_name
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        v
    }

    /// The plugin providing a content type.
    pub fn for_content_type(&self, content_type: &str) -> Option<Arc<Plugin>> {
        let loaded = self.loaded.read().unwrap();
        loaded
            .by_name
            .values()
            .find(|p| p.info.content_types.iter().any(|(t, _)| t == content_type))
            .cloned()
    }

    /// The plugin whose route prefix matches `path`.
    pub fn for_path(&self, path: &str) -> Option<Arc<Plugin>> {
        let loaded = self.loaded.read().unwrap();
        // `/v2` matches the route `/v2/` too, without allocating per request.
        let matches = |r: &str| path.starts_with(r) || r.strip_suffix('/') == Some(path);
        loaded
            .by_name
            .values()
            .find(|p| p.info.routes.iter().any(|r| matches(r)))
            .cloned()
    }
}
