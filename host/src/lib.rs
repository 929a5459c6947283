//! Wharf: a content platform whose content types are sandboxed WebAssembly
//! plugins. See `docs/architecture.md` for the map of this crate.

pub mod app;
pub mod bench;
pub mod blobs;
pub mod config;
pub mod db;
pub mod digest;
pub mod http;
pub mod ids;
pub mod plugins;
pub mod publications;
pub mod repos;
pub mod server;
pub mod tasks;
pub mod uploads;
