//! Wharf's Docker/OCI content type: imports `docker save` archives, mirrors
//! upstream registries (whole, or as a pull-through cache: [`pull`]), publishes repositories and answers the registry API;
//! selects, removes and tags images by tag or digest ([`edit`]).
//!
//! Everything but this file is host-independent logic behind the traits in
//! [`host`] and [`routes::Registry`], so it is tested natively.

mod archive;
mod auth;
mod edit;
mod glob;
mod index;
mod manifest;
mod model;
mod publish;
mod pull;
mod push;
mod reference;
mod referrers;
mod routes;
mod shards;
mod sync;
mod upload;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod testing;

use index::{MAX_INDEX, View};
use shards::{ShardRead, ShardValue};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use wharf_sdk::cache::DigestCache;
use wharf_sdk::capped;
use wharf_sdk::host::{WasmHost, WasmUpload};
use wharf_sdk::publications::{self, Publication};
use wharf_sdk::{
    Change, ContentType, Error, Guest, Info, Plan, Published, Repository, Request, Source, Summary,
    UnitRef, Written, blobs, repositories, sessions,
};

/// Parsed index roots kept per instance; a pooled instance serves many
/// requests.
const CACHED_INDEXES: usize = 64;
/// Index shard bytes kept parsed per instance.
const CACHED_SHARD_BYTES: u64 = 8 << 20;
/// Manifest bytes kept per instance (the host pools up to a few dozen).
const CACHED_MANIFEST_BYTES: u64 = 4 << 20;

thread_local! {
    static INDEXES: RefCell<DigestCache<View>> =
        RefCell::new(DigestCache::new(CACHED_INDEXES, u64::MAX));
    /// Shards of any value type, as `Rc<BTreeMap<String, V>>`.
    static SHARDS: RefCell<DigestCache<shards::AnyShard>> =
        RefCell::new(DigestCache::new(usize::MAX, CACHED_SHARD_BYTES));
    static MANIFESTS: RefCell<DigestCache<Vec<u8>>> =
        RefCell::new(DigestCache::new(usize::MAX, CACHED_MANIFEST_BYTES));
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
            errors: routes::error_format(),
            naming: routes::naming(),
        }
    }

    fn valid_name(name: String) -> Result<(), String> {
        publish::check_name(&name).map_err(|why| format!("repository name {name:?} {why}"))
    }

    fn upload(_repo: Repository, data: Source, _params: String) -> Result<Summary, Error> {
        upload::import(&mut WasmUpload::new(&data), &mut WasmHost)
    }

    fn sync(repo: Repository) -> Result<Summary, Error> {
        sync::run(&mut WasmHost, &repo.importer_config)
    }

    fn pull(repo: Repository, reference: String) -> Result<Summary, Error> {
        pull::pull(&mut WasmHost, &repo.importer_config, &reference)
    }

    fn locate(repo: Repository, digest: String) -> Result<wharf_sdk::BlobDownload, Error> {
        pull::locate(&mut WasmHost, &repo.importer_config, &digest)
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

    fn index(&mut self, digest: &str) -> Result<Rc<View>, String> {
        INDEXES.with_borrow_mut(|cache| {
            cache.get_or_load(digest, || {
                let bytes = capped::read_blob(digest, MAX_INDEX).map_err(|e| e.message)?;
                let len = bytes.len() as u64;
                Ok((View::read(&bytes)?, len))
            })
        })
    }

    fn manifest(&mut self, digest: &str, size: u64) -> Result<Rc<Vec<u8>>, String> {
        MANIFESTS.with_borrow_mut(|cache| {
            cache.get_or_load(digest, || read_manifest(digest, size).map(|b| (b, size)))
        })
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

/// Shards through the instance cache; `resolve` only reads them.
impl ShardRead for HostRegistry {
    fn read_shard<V: ShardValue>(
        &mut self,
        digest: &str,
    ) -> Result<Rc<BTreeMap<String, V>>, String> {
        let any = SHARDS.with_borrow_mut(|cache| {
            cache.get_or_load(digest, || {
                let bytes = capped::read_blob(digest, MAX_INDEX).map_err(|e| e.message)?;
                let len = bytes.len() as u64;
                Ok::<_, String>((shards::parse_any::<V>(&bytes)?, len))
            })
        })?;
        shards::typed(&any, digest)
    }
}

/// A stored manifest of known `size` read whole (the host wrote it under
/// its verified digest, so only the length is checked).
fn read_manifest(digest: &str, size: u64) -> Result<Vec<u8>, String> {
    let bytes = capped::read_blob(digest, size).map_err(|e| e.message)?;
    if bytes.len() as u64 != size {
        return Err(format!(
            "blob {digest} is {} bytes, the publication says {size}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

wharf_sdk::export_plugin!(DockerPlugin);
