//! `wharf fsck`: re-hash every blob (in the data directory or the bucket)
//! and report those whose bytes do not match their name. It never deletes
//! unless asked.

use std::path::Path;
use wharf_core::digest::Digest;

#[derive(Debug, Default, serde::Serialize)]
pub struct FsckReport {
    pub checked: u64,
    pub bytes: u64,
    pub corrupt: Vec<Digest>,
    pub removed: Vec<Digest>,
}

pub fn run(
    data_dir: &Path,
    store: &crate::config::BlobArgs,
    remove_corrupt: bool,
) -> anyhow::Result<FsckReport> {
    let root = data_dir.join("blobs");
    anyhow::ensure!(
        store.blob_store.is_some() || root.is_dir(),
        "{} has no blob store (is this a wharf data directory?)",
        data_dir.display()
    );
    let blobs = store.open(&root)?;
    let mut report = FsckReport::default();
    for d in blobs.list()? {
        report.checked += 1;
        report.bytes += blobs.stat(&d).unwrap_or(0);
        if !blobs.verify(&d)? {
            if remove_corrupt && blobs.remove(&d)? {
                report.removed.push(d.clone());
            }
            report.corrupt.push(d);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_and_optionally_removes_corrupt_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = wharf_store::blobs::BlobStore::open(&dir.path().join("blobs")).unwrap();
        let holder = wharf_store::blobs::leases::Holder::new();
        let good = blobs.store_bytes(b"good", None, &holder).unwrap();
        let bad = blobs.store_bytes(b"bad", None, &holder).unwrap();
        let hex = bad.hex();
        std::fs::write(
            dir.path().join("blobs/sha256").join(&hex[..2]).join(hex),
            b"tampered",
        )
        .unwrap();
        let r = super::run(dir.path(), &Default::default(), false).unwrap();
        assert_eq!(
            (r.checked, r.corrupt.clone(), r.removed.len()),
            (2, vec![bad.clone()], 0)
        );
        assert!(
            blobs.contains(&bad),
            "fsck without --remove-corrupt deletes nothing"
        );
        let r = super::run(dir.path(), &Default::default(), true).unwrap();
        assert_eq!(r.removed, vec![bad.clone()]);
        assert!(!blobs.contains(&bad) && blobs.contains(&good));
    }
}
