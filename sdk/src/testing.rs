//! An in-memory host for a plugin's native tests (feature `testing`):
//! blobs in a map, units and one repository's associations, upload sessions,
//! and HTTP answered by a closure. It checks what the real host checks where
//! a test would otherwise pass by accident (a unit naming a blob that is not
//! stored, a key over 1024 bytes, a download of the wrong size).

use crate::bindings::wharf::plugin::fetch::BlobDownload;
use crate::bindings::wharf::plugin::log::Level;
use crate::bindings::wharf::plugin::publications::PublishedBefore;
use crate::bindings::wharf::plugin::units::Changed;
use crate::host::{Host, HttpResponse, Sessions, UploadSource};
use crate::{Error, Header, Unit};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::rc::Rc;

/// `sha256:<hex>` of `bytes`, as the host names blobs.
pub fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A well-formed digest made of one repeated hex digit (`sha256:aaa…`), for
/// tests that need a digest but no content.
pub fn digest_of(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// Blobs by digest, shared by a host and its uploads.
pub type Blobs = Rc<RefCell<HashMap<String, Vec<u8>>>>;
/// An HTTP answer of a test: status, headers, body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);
type Handler = Box<dyn FnMut(&str, &[Header]) -> Answer>;

/// One repository's view of a host that keeps everything in memory.
#[derive(Default)]
pub struct FakeHost {
    pub blobs: Blobs,
    /// Every unit ever added, by (type, key).
    pub units: BTreeMap<(String, String), Unit>,
    /// The current repository's associations.
    pub repo: BTreeSet<(String, String)>,
    pub http: Option<Handler>,
    /// URLs fetched with `get`, in order.
    pub gets: Vec<String>,
    /// URLs fetched with `fetch_blobs`, in order.
    pub downloads: Vec<String>,
    /// URLs fetched either way, in order.
    pub fetched: Vec<String>,
    /// Sizes of the `fetch_blobs` batches.
    pub batches: Vec<usize>,
    pub logs: Vec<String>,
    /// (items done, items total, bytes done, bytes total) of each report.
    pub progress: Vec<(u64, u64, u64, u64)>,
    /// Upload sessions by id: the bytes received so far.
    pub sessions: HashMap<String, Vec<u8>>,
    /// The repository's versions: its associations as each
    /// [`FakeHost::snapshot`] saw them. A publish reads the current ones.
    pub versions: Vec<BTreeSet<(String, String)>>,
    /// What `previous` answers (a publish replacing a publication).
    pub previous: Option<PublishedBefore>,
}

impl FakeHost {
    /// A host whose HTTP answers come from `handler(url, request headers)`.
    pub fn with_http(handler: impl FnMut(&str, &[Header]) -> Answer + 'static) -> Self {
        FakeHost {
            http: Some(Box::new(handler)),
            ..Default::default()
        }
    }

    /// A host whose HTTP answers are `handler(url)`: a status and a body.
    pub fn serving(mut handler: impl FnMut(&str) -> (u16, Vec<u8>) + 'static) -> Self {
        Self::with_http(move |url, _| {
            let (status, body) = handler(url);
            (status, Vec::new(), body)
        })
    }

    /// An upload whose stored ranges land in this host's blobs.
    pub fn upload(&self, bytes: Vec<u8>) -> FakeUpload {
        FakeUpload {
            cursor: Cursor::new(bytes),
            blobs: self.blobs.clone(),
        }
    }

    /// Make units that name `digest` acceptable without real content.
    pub fn pretend_stored(&self, digest: &str) {
        self.blobs
            .borrow_mut()
            .entry(digest.to_string())
            .or_default();
    }

    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        self.blobs.borrow().get(digest).cloned()
    }

    /// Record the repository's associations as a new version; its number.
    pub fn snapshot(&mut self) -> u64 {
        self.versions.push(self.repo.clone());
        self.versions.len() as u64 - 1
    }

    /// The keys of the repository's units of a type, in order.
    pub fn repo_keys(&self, unit_type: &str) -> Vec<String> {
        self.repo
            .iter()
            .filter(|(t, _)| t == unit_type)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// A unit, if the repository holds it.
    pub fn repo_unit(&self, unit_type: &str, key: &str) -> Option<Unit> {
        let id = (unit_type.to_string(), key.to_string());
        self.repo.contains(&id).then(|| self.units[&id].clone())
    }

    fn answer(&mut self, url: &str, headers: &[Header]) -> Answer {
        self.fetched.push(url.to_string());
        let handler = self.http.as_mut().expect("no HTTP in this test");
        handler(url, headers)
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

impl Sessions for FakeHost {
    fn length(&mut self, id: &str) -> Option<u64> {
        self.sessions.get(id).map(|b| b.len() as u64)
    }

    fn commit(&mut self, id: &str, expect: Option<&str>) -> Result<String, Error> {
        let bytes = self
            .sessions
            .remove(id)
            .ok_or_else(|| Error::new("not-found", format!("no session {id}")))?;
        put(&self.blobs, &bytes, expect)
    }

    fn abort(&mut self, id: &str) -> bool {
        self.sessions.remove(id).is_some()
    }

    /// The fake host has no callers to check: a stored blob is received.
    fn receive(&mut self, digest: &str) -> bool {
        self.blobs.borrow().contains_key(digest)
    }
}

impl Host for FakeHost {
    fn store_bytes(&mut self, bytes: &[u8], expect: Option<&str>) -> Result<String, Error> {
        put(&self.blobs, bytes, expect)
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

    fn get_unit(&mut self, unit_type: &str, key: &str) -> Result<Option<Unit>, Error> {
        Ok(self.repo_unit(unit_type, key))
    }

    fn previous(&mut self) -> Option<PublishedBefore> {
        self.previous.clone()
    }

    fn changes(
        &mut self,
        since: u64,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Changed>, Error> {
        let then = self
            .versions
            .get(since as usize)
            .ok_or_else(|| Error::new("not-found", format!("version {since} is gone")))?;
        let of_type = |ids: &BTreeSet<(String, String)>| -> BTreeSet<String> {
            ids.iter()
                .filter(|(t, k)| t == unit_type && after.is_none_or(|a| k.as_str() > a))
                .map(|(_, k)| k.clone())
                .collect()
        };
        let (then, now) = (of_type(then), of_type(&self.repo));
        Ok(then
            .symmetric_difference(&now)
            .take(limit as usize)
            .map(|key| Changed {
                unit: self.units[&(unit_type.to_string(), key.clone())].clone(),
                added: now.contains(key),
            })
            .collect())
    }

    fn units_naming(
        &mut self,
        digest: &str,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Unit>, Error> {
        Ok(self
            .repo
            .iter()
            .filter(|(t, k)| t == unit_type && after.is_none_or(|a| k.as_str() > a))
            .map(|id| &self.units[id])
            .filter(|u| u.blobs.iter().any(|b| b == digest))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    fn read_blob(&mut self, digest: &str, cap: u64) -> Result<Vec<u8>, Error> {
        let bytes = self
            .blob(digest)
            .ok_or_else(|| Error::new("not-found", format!("blob {digest} is not stored")))?;
        assert!(bytes.len() as u64 <= cap, "blob over the cap");
        Ok(bytes)
    }

    fn get(&mut self, url: &str, headers: &[Header], cap: u64) -> Result<HttpResponse, Error> {
        self.gets.push(url.to_string());
        let (status, headers, body) = self.answer(url, headers);
        if body.len() as u64 > cap {
            return Err(Error::new(
                "too-large",
                format!("{url}: more than the {cap} byte limit"),
            ));
        }
        let headers = headers
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    fn fetch_blobs(&mut self, downloads: &[BlobDownload]) -> Vec<Result<String, Error>> {
        self.batches.push(downloads.len());
        downloads
            .iter()
            .map(|d| {
                self.downloads.push(d.url.clone());
                let (status, _, body) = self.answer(&d.url, &d.headers);
                if status != 200 {
                    return Err(Error::new(
                        "fetch-failed",
                        format!("{}: {} answered {status}", d.digest, d.url),
                    ));
                }
                // As the host does: a body of another length than the
                // descriptor's is refused.
                if let Some(size) = d.size
                    && body.len() as u64 != size
                {
                    return Err(Error::new(
                        "size-mismatch",
                        format!(
                            "{}: the descriptor gives {size} bytes, upstream sent {}",
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

/// An upload whose stored ranges land in the same blob map as its host's.
pub struct FakeUpload {
    cursor: Cursor<Vec<u8>>,
    blobs: Blobs,
}

impl Read for FakeUpload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.cursor.read(buf)
    }
}

impl Seek for FakeUpload {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.cursor.seek(pos)
    }
}

impl UploadSource for FakeUpload {
    fn len(&self) -> u64 {
        self.cursor.get_ref().len() as u64
    }

    fn store_range(
        &mut self,
        offset: u64,
        len: u64,
        expect: Option<&str>,
    ) -> Result<String, Error> {
        let range = offset
            .checked_add(len)
            .and_then(|end| self.cursor.get_ref().get(offset as usize..end as usize))
            .ok_or_else(|| Error::invalid("range outside the upload"))?;
        put(&self.blobs, range, expect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_checks_and_serves() {
        let mut host = FakeHost::serving(|url| match url {
            "http://x/a" => (200, b"abc".to_vec()),
            _ => (404, Vec::new()),
        });
        let d = host.store_bytes(b"abc", None).unwrap();
        assert_eq!(d, sha256(b"abc"));
        assert_eq!(host.stat(&d), Some(3));
        assert_eq!(
            host.store_bytes(b"x", Some(&d)).unwrap_err().code,
            "digest-mismatch"
        );
        let response = host.get("http://x/a", &[], 10).unwrap();
        assert_eq!((response.status, response.body), (200, b"abc".to_vec()));
        assert_eq!(
            host.get("http://x/a", &[], 2).unwrap_err().code,
            "too-large"
        );
        let mut upload = host.upload(b"hello world".to_vec());
        assert_eq!(upload.len(), 11);
        let hello = upload.store_range(0, 5, None).unwrap();
        assert_eq!(host.blob(&hello).unwrap(), b"hello");
        assert!(upload.store_range(8, 5, None).is_err());
        assert!(upload.store_range(u64::MAX, 2, None).is_err());
        assert_eq!(host.gets, ["http://x/a", "http://x/a"]);
    }
}
