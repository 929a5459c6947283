//! The plugin runtime: sandboxed content-type plugins on wasmtime
//! ([`engine`]), their shares of the instance pool ([`admission`]), what a
//! plugin may reach ([`host`], with [`download`] and [`stream_source`] behind
//! its imports, [`outbound`] the policy for every request the host makes for
//! it, [`visibility`] and [`publications`] what it may see), the set of
//! loaded plugins ([`Plugins`]), the typed calls of a plugin's exports
//! ([`calls`]), and how errors on a plugin's routes look ([`error_format`]).
//!
//! Layer 3: depends on `wharf-core` and `wharf-store` only. The generated
//! bindings (`bindings`) are this crate's alone: the crates above call a
//! plugin through [`calls`], with host-owned types.

pub mod admission;
pub mod calls;
pub mod download;
pub mod engine;
pub mod error_format;
pub mod host;
pub mod naming;
pub mod outbound;
pub mod publications;
mod registry;
pub mod stream_source;
pub mod transport;
pub mod varies;
pub mod visibility;

pub use registry::{LoadFailure, Plugins};

use wharf_store::db::Repository;

/// Generated from `wit/plugin.wit`.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "content-plugin",
        with: { "wharf:plugin/blobs.source": super::host::SourceHandle },
    });
}

/// An error for a plugin: its `code` (`fetch`, `denied`, `too-large`, ...)
/// and a message for the task record.
pub(crate) fn err(code: &str, message: impl Into<String>) -> bindings::wharf::plugin::types::Error {
    bindings::wharf::plugin::types::Error {
        code: code.to_string(),
        message: message.into(),
    }
}

/// A repository as a plugin sees it.
pub(crate) fn wit_repo(r: &Repository) -> bindings::wharf::plugin::types::Repository {
    bindings::wharf::plugin::types::Repository {
        id: r.id.to_string(),
        content_type: r.content_type.clone(),
        importer_config: r.importer_config.to_string(),
        distributor_config: r.distributor_config.to_string(),
    }
}
