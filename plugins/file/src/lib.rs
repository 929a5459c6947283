//! Wharf's file content type: plain files described by a PULP_MANIFEST
//! (`relative_path,sha256,size` per line), like Pulp's file plugin.
//!
//! - upload: one uploaded file at a client-given relative path
//! - sync: mirror a remote PULP_MANIFEST and its files
//! - publish: write a PULP_MANIFEST and an index under a base path
//! - select, edit: pick or remove files by relative path (no tags)
//! - resolve: serve `/files/<base path>/<relative path>` and the manifest
//!
//! This file wires the WIT exports to host-independent logic (the other
//! modules), which is tested natively against in-memory fakes.

mod edit;
mod index;
mod manifest;
mod paths;
mod publish;
mod routes;
mod sync;
mod unit;
mod upload;

use index::{MAX_INDEX, PublicationIndex};
use std::cell::RefCell;
use std::rc::Rc;
use wharf_sdk::cache::DigestCache;
use wharf_sdk::capped;
use wharf_sdk::host::{WasmHost, WasmUpload};
use wharf_sdk::json::Versioned;
use wharf_sdk::publications::{self, Publication};
use wharf_sdk::{
    Change, ContentType, Error, Guest, Info, Plan, Published, Repository, Request, Source, Summary,
    UnitRef, Written,
};

/// Parsed indexes an instance keeps: a pooled instance serves many requests,
/// and parsing an index per request would cost more than the request.
const CACHED_INDEXES: usize = 32;
/// Bytes of index blobs the cache may hold.
const CACHED_INDEX_BYTES: u64 = 64 << 20;

thread_local! {
    // A plugin instance is single-threaded; this is its per-instance static.
    static INDEXES: RefCell<DigestCache<PublicationIndex>> =
        RefCell::new(DigestCache::new(CACHED_INDEXES, CACHED_INDEX_BYTES));
}

struct FilePlugin;

impl Guest for FilePlugin {
    fn describe() -> Info {
        Info {
            name: "file".to_string(),
            // Tests build a second copy with a suffix to exercise upgrades.
            version: format!(
                "{}{}",
                env!("CARGO_PKG_VERSION"),
                option_env!("WHARF_PLUGIN_VERSION_SUFFIX").unwrap_or("")
            ),
            content_types: vec![ContentType {
                name: unit::FILE.to_string(),
                description: "Files described by a PULP_MANIFEST (name,sha256,size)".to_string(),
            }],
            routes: vec![routes::ROUTE.to_string()],
            errors: routes::error_format(),
            naming: wharf_sdk::Naming::by_id(&[]),
        }
    }

    fn valid_name(_name: String) -> Result<(), String> {
        Err("this content type creates no repositories on push".into())
    }

    fn upload(_repo: Repository, data: Source, params: String) -> Result<Summary, Error> {
        upload::import(&mut WasmHost, &mut WasmUpload::new(&data), &params)
    }

    fn sync(repo: Repository) -> Result<Summary, Error> {
        sync::run(&mut WasmHost, &repo.importer_config)
    }

    fn publish(repo: Repository) -> Result<Published, Error> {
        publish::publish(&mut WasmHost, &repo)
    }

    fn select(_repo: Repository, references: Vec<String>) -> Result<Vec<UnitRef>, Error> {
        edit::select(&mut WasmHost, &references)
    }

    fn edit(_repo: Repository, change: Change) -> Result<Summary, Error> {
        edit::edit(&mut WasmHost, &change)
    }

    fn pull(_repo: Repository, _reference: String) -> Result<Summary, Error> {
        Err(Error::no_remote_content("content"))
    }

    fn locate(_repo: Repository, _digest: String) -> Result<wharf_sdk::BlobDownload, Error> {
        Err(Error::no_remote_content("blobs"))
    }

    fn write(req: Request, _repo: Repository, _session: Option<String>) -> Written {
        Written::unsupported(&req)
    }

    fn resolve(req: Request) -> Plan {
        routes::resolve(&mut HostRegistry, &req)
    }
}

/// Publications through the host, indexes through the instance cache.
struct HostRegistry;

impl routes::Registry for HostRegistry {
    fn lookup(&mut self, name: &str) -> Option<Publication> {
        publications::lookup(name)
    }

    fn index(&mut self, digest: &str) -> Result<Rc<PublicationIndex>, String> {
        INDEXES.with_borrow_mut(|cache| cache.get_or_load(digest, || read_index(digest)))
    }
}

/// Read and parse a stored index; its size is what the cache accounts.
fn read_index(digest: &str) -> Result<(PublicationIndex, u64), String> {
    let bytes = capped::read_blob(digest, MAX_INDEX)
        .map_err(|e| format!("index {digest}: {}", e.message))?;
    let len = bytes.len() as u64;
    Ok((PublicationIndex::from_bytes(&bytes)?, len))
}

wharf_sdk::export_plugin!(FilePlugin);
