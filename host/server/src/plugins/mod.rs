//! Plugins as the server sees them: the runtime (crate `wharf-runtime`,
//! re-exported here; a plugin is called through its typed facade,
//! [`calls`]), the plugin API ([`api`]) and the reconciliation of the loaded
//! plugins with the store ([`sync`]).

pub use wharf_runtime::engine as runtime;
pub use wharf_runtime::{LoadFailure, Plugins, admission, calls, download, host, stream_source};

pub mod api;
pub mod sync;
