//! Files only the server's user may read. The data directory holds the
//! metadata store (password hashes, feed credentials, webhook secrets), the
//! registry token key, TLS keys and uploaded content: it is created 0700,
//! and those files 0600, whatever the umask. A data directory an earlier
//! version left readable by others is tightened at start (and logged).

use anyhow::Context as _;
use std::fs::Permissions;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of private directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of private files.
pub const FILE_MODE: u32 = 0o600;

/// Create `path` (and missing parents) as a private directory, or tighten it
/// to 0700 if it exists and others may read or enter it.
pub fn private_dir(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)
            .with_context(|| format!("creating directory {}", path.display()))?;
        // The umask may have taken bits away (never added any): set exactly.
        std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
        return Ok(());
    }
    tighten(path, DIR_MODE)
}

/// If `path` exists and grants anything to its group or others, set it to
/// `mode` and log it (a warning, also when it cannot be changed). A file
/// that does not exist is fine.
pub fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let was = meta.permissions().mode() & 0o777;
    if was & 0o077 == 0 {
        return Ok(());
    }
    match std::fs::set_permissions(path, Permissions::from_mode(mode)) {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            was = %format!("{was:o}"),
            now = %format!("{mode:o}"),
            "tightened the permissions of a file other users could read"
        ),
        // Not ours (say, an export run by another user who may read it):
        // say so, and go on.
        Err(e) => tracing::warn!(
            path = %path.display(),
            mode = %format!("{was:o}"),
            "other users may read this file, and its mode cannot be changed: {e}"
        ),
    }
    Ok(())
}

/// Create `path` empty with mode 0600 if it does not exist (so that what
/// opens it next, e.g. SQLite, finds it private), else tighten it.
pub fn private_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(f) => {
            f.set_permissions(Permissions::from_mode(FILE_MODE))?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => tighten(path, FILE_MODE),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_become_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/data");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "an existing open directory is tightened");

        let f = dir.join("wharf.db");
        private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"x", "contents kept");
        tighten(&dir.join("absent"), FILE_MODE).unwrap();
    }
}
