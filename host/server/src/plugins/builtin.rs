//! The plugins built into the binary (`docker`, `file`; embedded by the
//! crate's build script from `target/plugins`), loaded at start before the
//! plugin directory's, which may add plugins or override these by name.
//! `--builtin-plugins false` leaves them out.

use wharf_runtime::{LoadFailure, Plugins};

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// Load every built-in plugin; what failed is returned for `/status`.
pub fn load(plugins: &Plugins) -> Vec<LoadFailure> {
    if BUILTIN.is_empty() {
        tracing::warn!(
            "this wharf was built without its built-in plugins (build them first: \
             scripts/build-plugins.sh, or `make install`); only --plugin-dir's are loaded"
        );
    }
    let mut failures = Vec::new();
    for (name, wasm) in BUILTIN {
        match plugins.install(wasm) {
            Ok((p, stats)) => tracing::info!(
                plugin = %p.info.name,
                version = %p.info.version,
                from_cache = stats.from_cache,
                ms = stats.duration.as_secs_f64() * 1000.0,
                "built-in plugin loaded"
            ),
            Err(e) => {
                tracing::error!(plugin = name, "built-in plugin not loaded: {e}");
                failures.push(LoadFailure {
                    file: format!("builtin:{name}"),
                    error: e.to_string(),
                });
            }
        }
    }
    failures
}
