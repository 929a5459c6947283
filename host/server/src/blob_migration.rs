//! `wharf blobs migrate`: copy an installation's blobs from its data
//! directory into an S3 bucket, re-hashing each on the way (a blob whose
//! bytes do not match its name is reported, never copied). What the bucket
//! holds already at the same size is skipped, so an interrupted run is
//! resumed by running it again. The directory is left as it was: remove
//! `<data-dir>/blobs/sha256` once the nodes serve from the bucket.

use std::path::Path;
use wharf_core::digest::Digest;
use wharf_store::blobs::objects::ObjectHome;
use wharf_store::blobs::{BlobStore, hash_file_range};

/// What a migration did (so far, while it runs).
#[derive(Debug, Default, serde::Serialize)]
pub struct Migrated {
    /// Blobs in the data directory.
    pub found: u64,
    pub copied: u64,
    pub copied_bytes: u64,
    /// Already in the bucket.
    pub skipped: u64,
    /// Not copied: their bytes do not match their digest (`wharf fsck`).
    pub corrupt: Vec<Digest>,
}

/// Copy every blob of `data_dir` into `to`; `progress` hears after each.
pub fn run(
    data_dir: &Path,
    to: &ObjectHome,
    mut progress: impl FnMut(&Migrated),
) -> anyhow::Result<Migrated> {
    let root = data_dir.join("blobs");
    anyhow::ensure!(
        root.join("sha256").is_dir(),
        "{} has no blobs to migrate (is this a wharf data directory?)",
        data_dir.display()
    );
    let from = BlobStore::open(&root)?;
    let mut done = Migrated::default();
    let all = from.list()?;
    done.found = all.len() as u64;
    for d in all {
        let file = from.open_blob(&d)?;
        let len = file.metadata()?.len();
        if to.size(&d)? == Some(len) {
            done.skipped += 1;
        } else if hash_file_range(&file, 0, len)? != d {
            done.corrupt.push(d);
        } else {
            to.upload(&d, &file, len)?;
            done.copied += 1;
            done.copied_bytes += len;
        }
        progress(&done);
    }
    Ok(done)
}
