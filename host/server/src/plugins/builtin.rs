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
    BUILTIN
        .iter()
        .filter_map(|(name, wasm)| plugins.load(&format!("builtin:{name}"), wasm))
        .collect()
}
