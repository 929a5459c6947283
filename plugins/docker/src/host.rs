//! The host imports the plugin's logic needs, behind traits so the logic can
//! be tested natively against an in-memory fake.

use std::io::{self, Read, Seek, SeekFrom};
use wharf_sdk::fetch::BlobDownload;
use wharf_sdk::log::Level;
use wharf_sdk::{Error, Header, Source, SourceReader, Unit, blobs, fetch, sessions, units};

/// Page size for unit listings.
const LIST_PAGE: u32 = 500;

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
    fn store_bytes(&mut self, bytes: &[u8], expect: Option<&str>) -> Result<String, Error>;
    fn stat(&mut self, digest: &str) -> Option<u64>;
    fn add_unit(&mut self, unit: &Unit) -> Result<(), Error>;
    fn remove_unit(&mut self, unit_type: &str, key: &str) -> Result<bool, Error>;
    fn list_units(
        &mut self,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Unit>, Error>;
    fn get_unit(&mut self, unit_type: &str, key: &str) -> Result<Option<Unit>, Error>;
    /// A stored blob read whole; blobs over `cap` bytes are an error.
    fn read_blob(&mut self, digest: &str, cap: u64) -> Result<Vec<u8>, Error>;
    /// A GET whose body is read into memory; bodies over `cap` bytes are an error.
    fn get(&mut self, url: &str, headers: &[Header], cap: u64) -> Result<HttpResponse, Error>;
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
}

/// All units of a type in the current repository, paging through the host.
pub fn list_all<H: Host + ?Sized>(host: &mut H, unit_type: &str) -> Result<Vec<Unit>, Error> {
    let mut all: Vec<Unit> = Vec::new();
    loop {
        let after = all.last().map(|u| u.key.clone());
        let page = host.list_units(unit_type, after.as_deref(), LIST_PAGE)?;
        let done = page.len() < LIST_PAGE as usize;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// An uploaded archive: readable for headers and small documents, and able to
/// have the host store byte ranges of it.
pub trait UploadSource: Read + Seek {
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

    fn read_blob(&mut self, digest: &str, cap: u64) -> Result<Vec<u8>, Error> {
        let source = blobs::open(digest)?;
        let len = source.len();
        if len > cap {
            return Err(Error::invalid(format!(
                "blob {digest} is {len} bytes, more than the {cap} byte limit"
            )));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        SourceReader::new(&source)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::new("read-failed", format!("reading {digest}: {e}")))?;
        Ok(bytes)
    }

    fn get(&mut self, url: &str, headers: &[Header], cap: u64) -> Result<HttpResponse, Error> {
        let response = fetch::fetch(&fetch::Request {
            method: "GET".to_string(),
            url: url.to_string(),
            headers: headers.to_vec(),
        })?;
        let len = response.body.len();
        if len > cap {
            return Err(Error::invalid(format!(
                "{url} answered with {len} bytes, more than the {cap} byte limit"
            )));
        }
        let mut body = Vec::with_capacity(len as usize);
        SourceReader::new(&response.body)
            .read_to_end(&mut body)
            .map_err(|e| Error::new("fetch-failed", format!("reading the answer of {url}: {e}")))?;
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
        wharf_sdk::log::progress(items_done, items_total, bytes_done, bytes_total, message);
    }

    fn log(&mut self, level: Level, message: &str) {
        wharf_sdk::log::log(level, message);
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
}

/// The host-held upload.
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
    fn store_range(
        &mut self,
        offset: u64,
        len: u64,
        expect: Option<&str>,
    ) -> Result<String, Error> {
        self.source.store_range(offset, len, expect)
    }
}
