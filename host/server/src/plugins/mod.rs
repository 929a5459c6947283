//! Plugins as the server sees them: the ones built into the binary
//! ([`builtin`]), the plugin API ([`api`]), the reconciliation of the
//! loaded plugins with the store ([`sync`]) and the child process that
//! compiles them ([`compiler`]). The
//! runtime itself is the crate `wharf-runtime` (a plugin is called through
//! its typed facade, `wharf_runtime::calls`).

pub mod api;
pub mod builtin;
pub mod compiler;
pub mod sync;
