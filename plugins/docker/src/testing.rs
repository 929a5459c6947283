//! Test doubles: an in-memory host and a tar writer that can also write the
//! hostile entries real tools refuse to produce.

use crate::host::{Host, HttpResponse, Sessions, UploadSource};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::rc::Rc;
use wharf_sdk::fetch::BlobDownload;
use wharf_sdk::log::Level;
use wharf_sdk::{Error, Header, Unit};

pub fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

type Handler = Box<dyn FnMut(&str, &[Header]) -> (u16, Vec<(String, String)>, Vec<u8>)>;

/// One repository's view of a host that keeps everything in memory.
#[derive(Default)]
pub struct FakeHost {
    pub blobs: Rc<RefCell<HashMap<String, Vec<u8>>>>,
    pub units: BTreeMap<(String, String), Unit>,
    pub repo: BTreeSet<(String, String)>,
    pub http: Option<Handler>,
    /// URLs fetched with `get`, in order.
    pub gets: Vec<String>,
    /// URLs fetched with `fetch_blobs`, in order.
    pub downloads: Vec<String>,
    pub logs: Vec<String>,
    pub progress_calls: u32,
    /// Upload sessions by id: the bytes received so far.
    pub sessions: HashMap<String, Vec<u8>>,
}

impl FakeHost {
    pub fn with_http(
        handler: impl FnMut(&str, &[Header]) -> (u16, Vec<(String, String)>, Vec<u8>) + 'static,
    ) -> Self {
        FakeHost {
            http: Some(Box::new(handler)),
            ..Default::default()
        }
    }

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
            .insert(digest.to_string(), Vec::new());
    }

    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        self.blobs.borrow().get(digest).cloned()
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

    fn put(&mut self, bytes: &[u8], expect: Option<&str>) -> Result<String, Error> {
        put(&self.blobs, bytes, expect)
    }
}

fn put(
    blobs: &RefCell<HashMap<String, Vec<u8>>>,
    bytes: &[u8],
    expect: Option<&str>,
) -> Result<String, Error> {
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
        self.put(&bytes, expect)
    }

    fn abort(&mut self, id: &str) -> bool {
        self.sessions.remove(id).is_some()
    }
}

impl Host for FakeHost {
    fn store_bytes(&mut self, bytes: &[u8], expect: Option<&str>) -> Result<String, Error> {
        self.put(bytes, expect)
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

    fn read_blob(&mut self, digest: &str, cap: u64) -> Result<Vec<u8>, Error> {
        let bytes = self
            .blob(digest)
            .ok_or_else(|| Error::new("not-found", format!("blob {digest} is not stored")))?;
        assert!(bytes.len() as u64 <= cap, "blob over the cap");
        Ok(bytes)
    }

    fn get(&mut self, url: &str, headers: &[Header], cap: u64) -> Result<HttpResponse, Error> {
        self.gets.push(url.to_string());
        let handler = self.http.as_mut().expect("no HTTP in this test");
        let (status, headers, body) = handler(url, headers);
        if body.len() as u64 > cap {
            return Err(Error::invalid(format!(
                "{url} answered with too many bytes"
            )));
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
        downloads
            .iter()
            .map(|d| {
                self.downloads.push(d.url.clone());
                let handler = self.http.as_mut().expect("no HTTP in this test");
                let (status, _, body) = handler(&d.url, &d.headers);
                if status != 200 {
                    return Err(Error::new(
                        "fetch-failed",
                        format!("{} answered {status}", d.url),
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

    fn progress(&mut self, _: u64, _: u64, _: u64, _: u64, _: &str) {
        self.progress_calls += 1;
    }

    fn log(&mut self, _: Level, message: &str) {
        self.logs.push(message.to_string());
    }
}

/// An upload whose stored ranges land in the same blob map as its host's.
pub struct FakeUpload {
    cursor: Cursor<Vec<u8>>,
    blobs: Rc<RefCell<HashMap<String, Vec<u8>>>>,
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
    fn store_range(
        &mut self,
        offset: u64,
        len: u64,
        expect: Option<&str>,
    ) -> Result<String, Error> {
        let bytes = self.cursor.get_ref();
        let range = bytes
            .get(offset as usize..(offset + len) as usize)
            .ok_or_else(|| Error::invalid("range outside the upload"))?;
        put(&self.blobs, range, expect)
    }
}

/// Writes tar archives for tests; entries are kept until `finish` so a
/// half-built archive can be cloned into variants.
#[derive(Clone, Default)]
pub struct TarBuilder {
    entries: Vec<TarEntry>,
}

#[derive(Clone)]
enum TarEntry {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
    RawName(String, Vec<u8>),
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn with(mut self, entry: TarEntry) -> Self {
        self.entries.push(entry);
        self
    }

    pub fn file(self, path: &str, data: &[u8]) -> Self {
        self.with(TarEntry::File(path.into(), data.to_vec()))
    }

    pub fn dir(self, path: &str) -> Self {
        self.with(TarEntry::Dir(path.into()))
    }

    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.with(TarEntry::Symlink(path.into(), target.into()))
    }

    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.with(TarEntry::Hardlink(path.into(), target.into()))
    }

    /// A regular file whose name is written verbatim (`../x`, `/etc/x`).
    pub fn file_raw_name(self, name: &str, data: &[u8]) -> Self {
        self.with(TarEntry::RawName(name.into(), data.to_vec()))
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h
    }

    pub fn finish(self) -> Vec<u8> {
        use tar::EntryType as T;
        let mut b = tar::Builder::new(Vec::new());
        for entry in self.entries {
            match entry {
                TarEntry::File(path, data) => {
                    let mut h = Self::header(T::Regular, data.len() as u64);
                    b.append_data(&mut h, path, &data[..]).unwrap();
                }
                TarEntry::Dir(path) => {
                    let mut h = Self::header(T::Directory, 0);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
                TarEntry::Symlink(path, target) => {
                    let mut h = Self::header(T::Symlink, 0);
                    b.append_link(&mut h, path, target).unwrap();
                }
                TarEntry::Hardlink(path, target) => {
                    let mut h = Self::header(T::Link, 0);
                    b.append_link(&mut h, path, target).unwrap();
                }
                TarEntry::RawName(name, data) => {
                    let mut h = Self::header(T::Regular, data.len() as u64);
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    b.append(&h, &data[..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }
}
