//! The host imports upload, sync and publish use, behind a trait so their
//! logic is tested natively against an in-memory fake (`testing.rs`).

use std::io::Read;
use wharf_sdk::fetch::{self, BlobDownload};
use wharf_sdk::log::Level;
use wharf_sdk::{Error, Source, SourceReader, Unit, blobs, units};

/// What upload, sync and publish ask of the host.
pub trait Host {
    fn store_bytes(&mut self, bytes: &[u8]) -> Result<String, Error>;
    fn stat(&mut self, digest: &str) -> Option<u64>;
    fn add_unit(&mut self, unit: &Unit) -> Result<(), Error>;
    fn remove_unit(&mut self, unit_type: &str, key: &str) -> Result<bool, Error>;
    fn list_units(
        &mut self,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Unit>, Error>;
    /// GET `url`; the answer's status and body (at most `cap` bytes).
    fn get(&mut self, url: &str, cap: u64) -> Result<(u16, Vec<u8>), Error>;
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

/// Uploaded bytes: their length, and a way to have the host store a range of
/// them without copying them into the guest.
pub trait UploadSource {
    fn len(&self) -> u64;
    fn store_range(&mut self, offset: u64, len: u64) -> Result<String, Error>;
}

/// The real host, through the WIT imports.
pub struct WasmHost;

impl Host for WasmHost {
    fn store_bytes(&mut self, bytes: &[u8]) -> Result<String, Error> {
        blobs::store_bytes(bytes, None)
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

    fn get(&mut self, url: &str, cap: u64) -> Result<(u16, Vec<u8>), Error> {
        let response = fetch::fetch(&fetch::Request {
            method: "GET".to_string(),
            url: url.to_string(),
            headers: Vec::new(),
        })?;
        let len = response.body.len();
        if len > cap {
            return Err(Error::new(
                "too-large",
                format!("{url} answered {len} bytes, more than the {cap} byte limit"),
            ));
        }
        let mut body = Vec::with_capacity(len as usize);
        SourceReader::new(&response.body)
            .read_to_end(&mut body)
            .map_err(|e| Error::new("fetch-failed", format!("reading the answer of {url}: {e}")))?;
        Ok((response.status, body))
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

/// The upload the host hands to `upload`.
pub struct WasmUpload<'a>(pub &'a Source);

impl UploadSource for WasmUpload<'_> {
    fn len(&self) -> u64 {
        self.0.len()
    }

    fn store_range(&mut self, offset: u64, len: u64) -> Result<String, Error> {
        self.0.store_range(offset, len, None)
    }
}
