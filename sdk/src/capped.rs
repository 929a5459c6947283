//! Capped reads: a host source or a stored blob read whole into memory, with
//! a limit on its size so a hostile or oversized document is refused before
//! it is read, not after.

use crate::bindings::wharf::plugin::blobs::{self, Source};
use crate::{Error, SourceReader};
use std::io::Read;

/// All of `source`, refusing one of more than `cap` bytes (`too-large`).
/// `what` names it in errors ("blob sha256:…", "the answer of <url>").
pub fn read_source(source: &Source, cap: u64, what: &str) -> Result<Vec<u8>, Error> {
    let len = source.len();
    if len > cap {
        return Err(Error::new(
            "too-large",
            format!("{what} is {len} bytes, more than the {cap} byte limit"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    SourceReader::new(source)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::new("read-failed", format!("reading {what}: {e}")))?;
    Ok(bytes)
}

/// A stored blob read whole; one of more than `cap` bytes is `too-large`,
/// one that is not stored the host's `not-found`.
pub fn read_blob(digest: &str, cap: u64) -> Result<Vec<u8>, Error> {
    read_source(&blobs::open(digest)?, cap, &format!("blob {digest}"))
}
