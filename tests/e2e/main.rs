//! End-to-end tests. They drive the real `wharf` binary (`WHARF_BIN`) with
//! real clients. `scripts/test.sh` builds everything, starts the services and
//! sets the environment; see README.md.

mod support;

mod api;
mod auth;
mod cli;
mod conformance;
mod console;
mod docker;
mod events;
mod hostile_access;
mod hostile_feeds;
mod hostile_gc;
mod hostile_load;
mod hostile_login;
mod hostile_outbound;
mod hostile_registry;
mod hostile_uploads;
mod image;
mod import_bad_input;
mod import_stream;
mod nodes;
mod object_storage;
mod packaging;
mod plugins;
mod python_packages;
mod quickstart;
mod registry_api;
mod registry_clients;
mod registry_push;
mod registry_support;
mod registry_sync;
mod remote_content;
mod remotes;
mod runtime;
mod scaling;
mod serving;
mod versions;
mod workers;
