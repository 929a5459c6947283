//! The bottom layer of the host: the types every other crate names.
//! Depends on no other Wharf crate (docs/architecture.md, "Layers").

pub mod digest;
pub mod ids;
pub mod percent;
pub mod private_files;
pub mod remote;
pub mod retention;
pub mod schedule;
pub mod time;
pub mod tls;
