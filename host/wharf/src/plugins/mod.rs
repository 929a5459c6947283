//! Plugins as the server sees them: the runtime (crate `wharf-runtime`,
//! re-exported here), the plugin API ([`api`]) and the reconciliation of the
//! loaded plugins with the store ([`sync`]).

pub use wharf_runtime::engine as runtime;
pub use wharf_runtime::{
    LoadFailure, Plugins, admission, bindings, download, err, host, stream_source, wit_repo,
};

pub mod api;
pub mod sync;
