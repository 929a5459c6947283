//! Test doubles: a host that keeps blobs, units and one repository's
//! associations in memory, and serves HTTP from a closure.

use crate::host::{Host, UploadSource};
use crate::unit::FileMeta;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use wharf_sdk::fetch::BlobDownload;
use wharf_sdk::log::Level;
use wharf_sdk::{Error, Unit};

pub fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

type Blobs = Rc<RefCell<HashMap<String, Vec<u8>>>>;
type Handler = Box<dyn FnMut(&str) -> (u16, Vec<u8>)>;

#[derive(Default)]
pub struct FakeHost {
    pub blobs: Blobs,
    pub units: BTreeMap<(String, String), Unit>,
    pub repo: BTreeSet<(String, String)>,
    pub http: Option<Handler>,
    /// URLs fetched, in order (`get` and `fetch_blobs`).
    pub fetched: Vec<String>,
    /// Sizes of the `fetch_blobs` batches.
    pub batches: Vec<usize>,
    pub logs: Vec<String>,
    /// (items done, items total, bytes done, bytes total)
    pub progress: Vec<(u64, u64, u64, u64)>,
}

impl FakeHost {
    pub fn with_http(handler: impl FnMut(&str) -> (u16, Vec<u8>) + 'static) -> Self {
        FakeHost {
            http: Some(Box::new(handler)),
            ..Default::default()
        }
    }

    pub fn upload(&self, bytes: Vec<u8>) -> FakeUpload {
        FakeUpload {
            bytes,
            blobs: self.blobs.clone(),
        }
    }

    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        self.blobs.borrow().get(digest).cloned()
    }

    /// Associate a file unit, pretending its blob is stored.
    pub fn add_file(&mut self, meta: &FileMeta) {
        self.blobs
            .borrow_mut()
            .entry(meta.digest.clone())
            .or_default();
        self.add_unit(&meta.to_unit()).unwrap();
    }

    pub fn repo_keys(&self, unit_type: &str) -> Vec<String> {
        self.repo
            .iter()
            .filter(|(t, _)| t == unit_type)
            .map(|(_, k)| k.clone())
            .collect()
    }

    pub fn repo_unit(&self, unit_type: &str, key: &str) -> Option<Unit> {
        let id = (unit_type.to_string(), key.to_string());
        self.repo.contains(&id).then(|| self.units[&id].clone())
    }

    fn serve(&mut self, url: &str) -> (u16, Vec<u8>) {
        self.fetched.push(url.to_string());
        let handler = self.http.as_mut().expect("no HTTP in this test");
        handler(url)
    }
}

fn put(blobs: &Blobs, bytes: &[u8], expect: Option<&str>) -> Result<String, Error> {
    let digest = sha256(bytes);
    if let Some(expect) = expect
        && expect != digest
    {
        return Err(Error::new(
            "digest-mismatch",
            format!("expected {expect}, got {digest}"),
        ));
    }
    blobs.borrow_mut().insert(digest.clone(), bytes.to_vec());
    Ok(digest)
}

impl Host for FakeHost {
    fn store_bytes(&mut self, bytes: &[u8]) -> Result<String, Error> {
        put(&self.blobs, bytes, None)
    }

    fn stat(&mut self, digest: &str) -> Option<u64> {
        self.blobs.borrow().get(digest).map(|b| b.len() as u64)
    }

    fn add_unit(&mut self, unit: &Unit) -> Result<(), Error> {
        for blob in &unit.blobs {
            assert!(
                self.blobs.borrow().contains_key(blob),
                "unit {} needs missing blob {blob}",
                unit.key
            );
        }
        assert!(
            unit.key.len() <= 1024,
            "the host refuses keys over 1024 bytes"
        );
        let id = (unit.unit_type.clone(), unit.key.clone());
        self.units.entry(id.clone()).or_insert_with(|| unit.clone());
        self.repo.insert(id);
        Ok(())
    }

    fn remove_unit(&mut self, unit_type: &str, key: &str) -> Result<bool, Error> {
        Ok(self.repo.remove(&(unit_type.to_string(), key.to_string())))
    }

    fn list_units(
        &mut self,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Unit>, Error> {
        Ok(self
            .repo
            .iter()
            .filter(|(t, k)| t == unit_type && after.is_none_or(|a| k.as_str() > a))
            .take(limit as usize)
            .map(|id| self.units[id].clone())
            .collect())
    }

    fn get(&mut self, url: &str, cap: u64) -> Result<(u16, Vec<u8>), Error> {
        let (status, body) = self.serve(url);
        if body.len() as u64 > cap {
            return Err(Error::new("too-large", format!("{url}: too many bytes")));
        }
        Ok((status, body))
    }

    fn fetch_blobs(&mut self, downloads: &[BlobDownload]) -> Vec<Result<String, Error>> {
        self.batches.push(downloads.len());
        downloads
            .iter()
            .map(|d| {
                let (status, body) = self.serve(&d.url);
                if status != 200 {
                    return Err(Error::new(
                        "fetch",
                        format!("{}: upstream answered {status}", d.digest),
                    ));
                }
                // As the host does: a body of another length than the
                // manifest's is refused.
                if let Some(size) = d.size
                    && body.len() as u64 != size
                {
                    return Err(Error::new(
                        "size-mismatch",
                        format!(
                            "{}: the manifest gives {size} bytes, upstream sent {}",
                            d.digest,
                            body.len()
                        ),
                    ));
                }
                put(&self.blobs, &body, Some(&d.digest))
            })
            .collect()
    }

    fn progress(&mut self, done: u64, total: u64, bytes_done: u64, bytes_total: u64, _: &str) {
        self.progress.push((done, total, bytes_done, bytes_total));
    }

    fn log(&mut self, _: Level, message: &str) {
        self.logs.push(message.to_string());
    }
}

/// An upload whose stored ranges land in its host's blob map.
pub struct FakeUpload {
    bytes: Vec<u8>,
    blobs: Blobs,
}

impl UploadSource for FakeUpload {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn store_range(&mut self, offset: u64, len: u64) -> Result<String, Error> {
        let range = self
            .bytes
            .get(offset as usize..(offset + len) as usize)
            .ok_or_else(|| Error::invalid("range outside the upload"))?;
        put(&self.blobs, range, None)
    }
}
