//! The server: the services (repositories, uploads, tasks and jobs, events,
//! access, the plugin API) and the HTTP layer over them, on the plugin
//! runtime and the stores below. See `docs/architecture.md` for the map.

pub mod allocator;
pub mod app;
pub mod auth;
pub mod bench;
pub mod blob_migration;
pub mod config;
pub mod connections;
pub mod error;
pub mod event_loops;
pub mod events;
pub mod fsck;
#[cfg(test)]
mod fuzz;
pub mod groups;
pub mod health;
pub mod http;
pub mod import_slots;
pub mod jobs;
pub mod listeners;
pub mod metrics;
pub mod notify;
pub mod on_demand;
pub mod orphans;
pub mod plugins;
pub mod pull_through;
pub mod registry_names;
pub mod remotes;
pub mod repos;
pub mod request_context;
pub mod retention;
pub mod schedules;
pub mod secrets;
pub mod server;
pub mod tasks;
pub mod tls;
pub mod uploads;
pub mod versions;
pub mod zero_copy;
