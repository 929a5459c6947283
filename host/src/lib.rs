//! Wharf: a content platform whose content types are sandboxed WebAssembly
//! plugins. See `docs/architecture.md` for the map of this crate.

pub mod app;
pub mod auth;
pub mod bench;
pub mod blobs;
pub mod cli;
pub mod config;
pub mod connections;
pub mod db;
pub mod digest;
pub mod events;
pub mod fsck;
#[cfg(test)]
mod fuzz;
pub mod groups;
pub mod health;
pub mod http;
pub mod ids;
pub mod import_slots;
pub mod jobs;
pub mod listeners;
pub mod metrics;
pub mod orphans;
pub mod outbound;
pub mod plugins;
pub mod private_files;
pub mod publications;
pub mod repos;
pub mod secrets;
pub mod server;
pub mod sessions;
pub mod tasks;
pub mod tls;
pub mod uploads;
pub mod visibility;
