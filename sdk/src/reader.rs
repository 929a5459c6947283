//! `std::io::Read + Seek` over a host [`Source`], so ordinary parsers (tar,
//! serde_json) can walk host-held bytes with bounded reads.

use crate::bindings::wharf::plugin::blobs::{Source, max_read};
use std::io::{self, Read, Seek, SeekFrom};

/// Buffered reader over a host source. Reads go to the host in chunks of at
/// most the host's `max-read`; seeking is free, so skipping a 2 GiB layer costs
/// nothing.
pub struct SourceReader<'a> {
    source: &'a Source,
    len: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk: u32,
}

impl<'a> SourceReader<'a> {
    pub fn new(source: &'a Source) -> Self {
        let chunk = max_read().clamp(4096, 256 * 1024);
        SourceReader {
            source,
            len: source.len(),
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
            chunk,
        }
    }

    /// The source's total length.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Current position.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl Read for SourceReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos >= buf_end {
            // One host call fills a whole chunk, so walking tar headers or
            // parsing JSON costs one call per chunk, not per byte.
            self.buf = self
                .source
                .read(self.pos, self.chunk)
                .map_err(|e| io::Error::other(format!("{}: {}", e.code, e.message)))?;
            self.buf_start = self.pos;
            if self.buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "source ended early",
                ));
            }
        }
        let off = (self.pos - self.buf_start) as usize;
        let n = (self.buf.len() - off).min(out.len());
        out[..n].copy_from_slice(&self.buf[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SourceReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}
