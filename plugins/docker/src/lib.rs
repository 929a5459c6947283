//! Wharf's Docker/OCI content type: imports `docker save` archives, mirrors
//! upstream registries, publishes repositories and answers the registry API.
//!
//! Everything but this file is host-independent logic behind the traits in
//! [`host`] and [`routes::Registry`], so it is tested natively.

mod archive;
mod auth;
mod glob;
mod host;
mod index;
mod manifest;
mod model;
mod publish;
mod push;
mod reference;
mod routes;
mod sync;
mod upload;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod testing;

use host::{WasmHost, WasmUpload};
use index::{ByteCache, IndexCache, MAX_INDEX, PublicationIndex};
use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;
use wharf_sdk::publications::{self, Publication};
use wharf_sdk::{
    ContentType, Error, Guest, Info, Plan, Published, Repository, Request, Source, SourceReader,
    Summary, Written, blobs, repositories, sessions,
};

/// Parsed indexes kept per instance; a pooled instance serves many requests.
const CACHED_INDEXES: usize = 64;
/// Manifest bytes kept per instance (the host pools up to a few dozen).
const CACHED_MANIFEST_BYTES: usize = 4 << 20;

thread_local! {
    static INDEXES: RefCell<IndexCache> = RefCell::new(IndexCache::new(CACHED_INDEXES));
    static MANIFESTS: RefCell<ByteCache> = RefCell::new(ByteCache::new(CACHED_MANIFEST_BYTES));
}

struct DockerPlugin;

impl Guest for DockerPlugin {
    fn describe() -> Info {
        Info {
            name: "docker".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            content_types: vec![ContentType {
                name: "docker".to_string(),
                description: "Docker and OCI container images".to_string(),
            }],
            routes: vec!["/v2/".to_string()],
        }
    }

    fn upload(_repo: Repository, data: Source, _params: String) -> Result<Summary, Error> {
        upload::import(&mut WasmUpload::new(&data), &mut WasmHost)
    }

    fn sync(repo: Repository) -> Result<Summary, Error> {
        sync::run(&mut WasmHost, &repo.importer_config)
    }

    fn publish(repo: Repository) -> Result<Published, Error> {
        publish::publish(&mut WasmHost, &repo)
    }

    fn resolve(req: Request) -> Plan {
        routes::resolve(&mut HostRegistry, &req)
    }

    fn write(req: Request, repo: Repository, session: Option<String>) -> Written {
        push::write(&mut WasmHost, &req, &repo, session.as_deref())
    }
}

/// Publications through the host, indexes through the instance cache.
struct HostRegistry;

impl routes::Registry for HostRegistry {
    fn lookup(&mut self, name: &str) -> Option<Publication> {
        publications::lookup(name)
    }

    fn names(&mut self, after: Option<&str>, limit: u32) -> Vec<String> {
        publications::names(after, limit)
    }

    fn index(&mut self, digest: &str) -> Result<Rc<PublicationIndex>, String> {
        INDEXES.with_borrow_mut(|cache| cache.get_or_load(digest, || read_index(digest)))
    }

    fn manifest(&mut self, digest: &str, size: u64) -> Result<Rc<Vec<u8>>, String> {
        MANIFESTS.with_borrow_mut(|cache| cache.get_or_load(digest, || read_blob(digest, size)))
    }

    fn repository(&mut self, id: &str) -> Option<Repository> {
        repositories::get(id)
    }

    fn find_repositories(&mut self, key: &str, value: &str) -> Vec<Repository> {
        repositories::find(key, value)
    }

    fn blob_size(&mut self, digest: &str) -> Option<u64> {
        blobs::stat(digest)
    }

    fn session_length(&mut self, id: &str) -> Option<u64> {
        sessions::length(id)
    }
}

/// A stored blob of known `size` read whole (the host wrote it under its
/// verified digest, so only the length is checked).
fn read_blob(digest: &str, size: u64) -> Result<Vec<u8>, String> {
    let source = blobs::open(digest).map_err(|e| e.to_string())?;
    if source.len() != size {
        return Err(format!(
            "blob {digest} is {} bytes, the publication says {size}",
            source.len()
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    SourceReader::new(&source)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {digest}: {e}"))?;
    Ok(bytes)
}

fn read_index(digest: &str) -> Result<PublicationIndex, String> {
    let source = blobs::open(digest).map_err(|e| e.to_string())?;
    let len = source.len();
    if len > MAX_INDEX {
        return Err(format!(
            "index {digest} is {len} bytes, more than the {MAX_INDEX} byte limit"
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    SourceReader::new(&source)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading index {digest}: {e}"))?;
    PublicationIndex::from_bytes(&bytes)
}

wharf_sdk::export_plugin!(DockerPlugin);
