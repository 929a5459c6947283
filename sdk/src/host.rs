//! The host imports a plugin's task logic (upload, sync, publish, write)
//! uses, behind traits, so that logic runs natively in tests against an
//! in-memory fake (`wharf_sdk::testing`, feature `testing`). [`WasmHost`] and
//! [`WasmUpload`] are the real implementations, over the WIT imports.

use crate::bindings::wharf::plugin::fetch::{self, BlobDownload};
use crate::bindings::wharf::plugin::log::{self, Level};
use crate::bindings::wharf::plugin::publications::{self, PublishedBefore};
use crate::bindings::wharf::plugin::units::{self, Changed};
use crate::bindings::wharf::plugin::{blobs, sessions};
use crate::{Error, Header, Source, SourceReader, Unit, capped};
use std::io::{self, Read, Seek, SeekFrom};

/// An HTTP answer with its (small, capped) body in memory.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first header of that name (case-insensitive).
pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Everything upload, sync and publish ask of the host.
pub trait Host {
    /// Store a document the plugin built; with `expect`, a different digest
    /// is an error and nothing is stored.
    fn store_bytes(&mut self, bytes: &[u8], expect: Option<&str>) -> Result<String, Error>;
    /// The size of a stored blob, if stored.
    fn stat(&mut self, digest: &str) -> Option<u64>;
    fn add_unit(&mut self, unit: &Unit) -> Result<(), Error>;
    fn remove_unit(&mut self, unit_type: &str, key: &str) -> Result<bool, Error>;
    /// The current repository's units in key order after `after`, at most
    /// `limit` (see [`crate::paging`] for whole listings).
    fn list_units(
        &mut self,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Unit>, Error>;
    fn get_unit(&mut self, unit_type: &str, key: &str) -> Result<Option<Unit>, Error>;
    /// In a publish: the publication it replaces, with the version it
    /// serves; what it serves may be read (and is kept when read).
    fn previous(&mut self) -> Option<PublishedBefore>;
    /// In a publish: the units of `unit_type` that differ between version
    /// `since` and the version being published, in key order after
    /// `after`, at most `limit` (see [`crate::paging::changes_since`]);
    /// `not-found` when that version is gone.
    fn changes(
        &mut self,
        since: u64,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Changed>, Error>;
    /// The units of `unit_type` of the current repository that name blob
    /// `digest`, in key order after `after`, at most `limit` (0.7.2; see
    /// [`crate::paging::naming_all`]). Not in a publish.
    fn units_naming(
        &mut self,
        digest: &str,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Unit>, Error>;
    /// A stored blob read whole; blobs over `cap` bytes are an error.
    fn read_blob(&mut self, digest: &str, cap: u64) -> Result<Vec<u8>, Error>;
    /// A GET whose body is read into memory; bodies over `cap` bytes are an error.
    fn get(&mut self, url: &str, headers: &[Header], cap: u64) -> Result<HttpResponse, Error>;
    /// Downloads straight into the blob store, one result per download.
    fn fetch_blobs(&mut self, downloads: &[BlobDownload]) -> Vec<Result<String, Error>>;
    fn progress(
        &mut self,
        items_done: u64,
        items_total: u64,
        bytes_done: u64,
        bytes_total: u64,
        message: &str,
    );
    fn log(&mut self, level: Level, message: &str);
}

/// The host's upload sessions of the current repository (pushes).
pub trait Sessions {
    fn length(&mut self, id: &str) -> Option<u64>;
    /// Store the session's bytes as a blob and end the session.
    fn commit(&mut self, id: &str, expect: Option<&str>) -> Result<String, Error>;
    fn abort(&mut self, id: &str) -> bool;
    /// In a write: the write's repository received the stored blob
    /// `digest` without an upload (a mount). False if the caller may not
    /// see it or it is not stored.
    fn receive(&mut self, digest: &str) -> bool;
}

/// Uploaded bytes: readable (in bounded reads) for headers and small
/// documents, and able to have the host store a range of them without
/// copying them into the guest.
pub trait UploadSource: Read + Seek {
    /// The upload's length in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Have the host store `len` bytes at `offset` as a blob; with `expect`,
    /// a different digest is an error and nothing is stored.
    fn store_range(&mut self, offset: u64, len: u64, expect: Option<&str>)
    -> Result<String, Error>;
}

/// The real host, through the WIT imports.
pub struct WasmHost;

impl Host for WasmHost {
    fn store_bytes(&mut self, bytes: &[u8], expect: Option<&str>) -> Result<String, Error> {
        blobs::store_bytes(bytes, expect)
    }

    fn stat(&mut self, digest: &str) -> Option<u64> {
        blobs::stat(digest)
    }

    fn add_unit(&mut self, unit: &Unit) -> Result<(), Error> {
        units::add(unit)
    }

    fn remove_unit(&mut self, unit_type: &str, key: &str) -> Result<bool, Error> {
        units::remove(unit_type, key)
    }

    fn list_units(
        &mut self,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Unit>, Error> {
        units::list(unit_type, after, limit)
    }

    fn get_unit(&mut self, unit_type: &str, key: &str) -> Result<Option<Unit>, Error> {
        units::get(unit_type, key)
    }

    fn previous(&mut self) -> Option<PublishedBefore> {
        publications::previous()
    }

    fn changes(
        &mut self,
        since: u64,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Changed>, Error> {
        units::changes(since, unit_type, after, limit)
    }

    fn units_naming(
        &mut self,
        digest: &str,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Unit>, Error> {
        units::naming(digest, unit_type, after, limit)
    }

    fn read_blob(&mut self, digest: &str, cap: u64) -> Result<Vec<u8>, Error> {
        capped::read_blob(digest, cap)
    }

    fn get(&mut self, url: &str, headers: &[Header], cap: u64) -> Result<HttpResponse, Error> {
        let response = fetch::fetch(&fetch::Request {
            method: "GET".to_string(),
            url: url.to_string(),
            headers: headers.to_vec(),
        })?;
        let body = capped::read_source(&response.body, cap, &format!("the answer of {url}"))
            .map_err(|e| match e.code.as_str() {
                "too-large" => e,
                _ => Error::new("fetch-failed", e.message),
            })?;
        Ok(HttpResponse {
            status: response.status,
            headers: response.headers,
            body,
        })
    }

    fn fetch_blobs(&mut self, downloads: &[BlobDownload]) -> Vec<Result<String, Error>> {
        fetch::fetch_blobs(downloads)
    }

    fn progress(
        &mut self,
        items_done: u64,
        items_total: u64,
        bytes_done: u64,
        bytes_total: u64,
        message: &str,
    ) {
        log::progress(items_done, items_total, bytes_done, bytes_total, message);
    }

    fn log(&mut self, level: Level, message: &str) {
        log::log(level, message);
    }
}

impl Sessions for WasmHost {
    fn length(&mut self, id: &str) -> Option<u64> {
        sessions::length(id)
    }

    fn commit(&mut self, id: &str, expect: Option<&str>) -> Result<String, Error> {
        sessions::commit(id, expect)
    }

    fn abort(&mut self, id: &str) -> bool {
        sessions::abort(id)
    }

    fn receive(&mut self, digest: &str) -> bool {
        sessions::receive(digest)
    }
}

/// The host-held upload `upload` receives.
pub struct WasmUpload<'a> {
    source: &'a Source,
    reader: SourceReader<'a>,
}

impl<'a> WasmUpload<'a> {
    pub fn new(source: &'a Source) -> Self {
        WasmUpload {
            source,
            reader: SourceReader::new(source),
        }
    }
}

impl Read for WasmUpload<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Seek for WasmUpload<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.reader.seek(pos)
    }
}

impl UploadSource for WasmUpload<'_> {
    fn len(&self) -> u64 {
        self.reader.len()
    }

    fn store_range(
        &mut self,
        offset: u64,
        len: u64,
        expect: Option<&str>,
    ) -> Result<String, Error> {
        self.source.store_range(offset, len, expect)
    }
}
