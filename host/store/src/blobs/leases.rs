//! Blob leases and the link lock: what keeps orphan cleanup from deleting
//! a blob that something is about to reference.
//!
//! Between a writer deciding that a blob is there (it stored it, found it
//! stored already, or a plugin's `stat` said so) and the commit of the unit
//! or publication that names it, the blob is referenced by nothing; a
//! cleanup run in that window would delete it, and the commit would then
//! name missing bytes. So every such decision takes a **lease** for its
//! [`Holder`] (a plugin call): the digest is appended to the holder's file
//! `<blobs>/leases/active/<id>`. After the commit the holder is released:
//! its file moves to `released/<generation>-<id>`.
//!
//! The **generation** (`<blobs>/leases/generation`) is how a cleanup run
//! tells whether a released holder's commit is in its snapshot of the
//! references: a run first advances it, then takes its snapshot. A holder
//! released under an older generation committed before the snapshot; one
//! released under the run's own generation or a newer one may have
//! committed after it, so its leases still count for that run. No clock is
//! compared across machines.
//!
//! Deciding and leasing, and re-checking and deleting, must not interleave,
//! so both happen under the **link lock**, an advisory `flock` on
//! `<blobs>/leases/lock`: writers take it shared (they exclude only
//! cleanup, not each other), cleanup exclusive. Being a lock and files in
//! the data directory, it holds across every process and node sharing that
//! directory (docs/scaling.md), whatever the metadata store. Each
//! acquisition opens the file anew: `flock` belongs to an open file
//! description, so threads of one process exclude each other as processes
//! do. A holder whose process died is never released: its leases lapse
//! [`LEASE_FOR`] after its last one.

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use wharf_core::digest::Digest;

/// How long the leases of a holder that is never released (its process
/// died, or it leased for a later request, as a mount does) count: more
/// than the longest plugin call (an import or sync may run an hour).
pub const LEASE_FOR: Duration = Duration::from_secs(6 * 3600);

const LOCK_FILE: &str = "lock";
const GENERATION_FILE: &str = "generation";
const ACTIVE: &str = "active";
const RELEASED: &str = "released";

pub struct Leases {
    dir: Dir,
}

/// The link lock, held until dropped (closing the file releases it).
#[must_use = "the lock is released when this is dropped"]
pub struct LinkLock {
    _file: std::fs::File,
}

/// A cleanup run's generation: leases released under it or later count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Generation(u64);

/// Whoever takes leases: a plugin call, released (dropped) after its
/// changes commit. Its file is created with its first lease.
pub struct Holder {
    id: uuid::Uuid,
    state: Mutex<HolderState>,
}

#[derive(Default)]
struct HolderState {
    /// The leases directory, once a lease was taken.
    dir: Option<Dir>,
    leased: HashSet<Digest>,
    /// Never released: the leases lapse after [`LEASE_FOR`].
    kept: bool,
}

impl Default for Holder {
    fn default() -> Self {
        Self::new()
    }
}

impl Holder {
    pub fn new() -> Self {
        Holder {
            id: uuid::Uuid::new_v4(),
            state: Mutex::default(),
        }
    }

    fn name(&self) -> String {
        self.id.simple().to_string()
    }

    /// Leave the leases in place when dropped: they lapse after
    /// [`LEASE_FOR`]. For a lease taken for a later request.
    pub fn keep(&self) {
        self.state.lock().unwrap().kept = true;
    }
}

impl Drop for Holder {
    /// Release: the leases keep counting for cleanup runs that began before
    /// now (see the module documentation). The link lock may be held by a
    /// cleanup for a while, so on an async runtime the release waits for
    /// it on a blocking thread (released a little later is still safe).
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap();
        let Some(dir) = state.dir.take() else { return };
        if state.kept {
            return;
        }
        let name = self.name();
        let release = move || {
            let released = lock(&dir, false).and_then(|_lock| {
                let generation = read_generation(&dir)?;
                dir.rename(
                    Path::new(ACTIVE).join(&name),
                    &dir,
                    Path::new(RELEASED).join(format!("{}-{name}", generation.0)),
                )
            });
            if let Err(e) = released {
                tracing::warn!(
                    "cannot release blob leases {name} (they lapse in {LEASE_FOR:?}): {e}"
                );
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(release)),
            Err(_) => release(),
        }
    }
}

fn lock(dir: &Dir, exclusive: bool) -> io::Result<LinkLock> {
    let file = dir
        .open_with(
            LOCK_FILE,
            OpenOptions::new().read(true).write(true).create(true),
        )?
        .into_std();
    if exclusive {
        file.lock()?;
    } else {
        file.lock_shared()?;
    }
    Ok(LinkLock { _file: file })
}

/// The current generation (0 before the first run). Contents that are not
/// a number are an error, never a generation going back: a release would
/// then be dated before a run in progress, and its leases dropped early.
fn read_generation(dir: &Dir) -> io::Result<Generation> {
    match dir.read_to_string(GENERATION_FILE) {
        Ok(s) => s.trim().parse().map(Generation).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blobs/leases/{GENERATION_FILE} holds no generation number: {s:.40?}"),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Generation(0)),
        Err(e) => Err(e),
    }
}

/// Whether a holder's last lease was granted less than [`LEASE_FOR`] ago.
/// A time in the future (the clock of the node that wrote it is ahead)
/// counts as fresh.
fn fresh(modified: io::Result<SystemTime>) -> bool {
    modified.is_ok_and(|t| t.elapsed().map_or(true, |age| age < LEASE_FOR))
}

/// The digests listed in a holder's file; lines that are not one (a line
/// torn by a crash) are skipped.
fn digests_in(dir: &Dir, path: &Path) -> io::Result<impl Iterator<Item = Digest>> {
    let mut bytes = Vec::new();
    dir.open(path)?.read_to_end(&mut bytes)?;
    let digests: Vec<Digest> = bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .filter_map(|hex| format!("sha256:{hex}").parse().ok())
        .collect();
    Ok(digests.into_iter())
}

impl Leases {
    /// Open (creating if needed) `<blobs_root>/leases`.
    pub fn open(blobs_root: &Path) -> io::Result<Self> {
        let path = blobs_root.join("leases");
        std::fs::create_dir_all(path.join(ACTIVE))?;
        std::fs::create_dir_all(path.join(RELEASED))?;
        Ok(Leases {
            dir: Dir::open_ambient_dir(&path, ambient_authority())?,
        })
    }

    /// Taken by whatever decides that a blob is there and leases it.
    pub fn linking(&self) -> io::Result<LinkLock> {
        lock(&self.dir, false)
    }

    /// Taken by cleanup to re-check its candidates and delete them.
    pub fn collecting(&self) -> io::Result<LinkLock> {
        lock(&self.dir, true)
    }

    /// Grant `holder` a lease of `d`; the caller holds [`Self::linking`]
    /// and has just seen the blob stored.
    pub fn grant(&self, _locked: &LinkLock, holder: &Holder, d: &Digest) -> io::Result<()> {
        let mut state = holder.state.lock().unwrap();
        if state.leased.contains(d) {
            return Ok(());
        }
        // Opened and closed each time: another node reads it afterwards,
        // and closing is what publishes the bytes on a network file system.
        let mut file = self.dir.open_with(
            Path::new(ACTIVE).join(holder.name()),
            OpenOptions::new().append(true).create(true),
        )?;
        file.write_all(format!("{}\n", d.hex()).as_bytes())?;
        if state.dir.is_none() {
            state.dir = Some(self.dir.try_clone()?);
        }
        state.leased.insert(d.clone());
        Ok(())
    }

    /// Start a cleanup run: advance the generation and return it. Take the
    /// snapshot of references after this.
    pub fn begin_collection(&self) -> io::Result<Generation> {
        let _locked = self.collecting()?;
        let next = read_generation(&self.dir)?
            .0
            .checked_add(1)
            .map(Generation)
            .ok_or_else(|| io::Error::other("the lease generation is at its maximum"))?;
        // Written aside and renamed: a crash never leaves a partial number.
        let tmp = format!("{GENERATION_FILE}.tmp");
        self.dir.write(&tmp, next.0.to_string())?;
        self.dir.rename(&tmp, &self.dir, GENERATION_FILE)?;
        Ok(next)
    }

    /// Every digest leased by a holder not released, or released under
    /// `run` or later; the caller holds [`Self::collecting`]. Drops what no
    /// longer counts: holders released before `run` (their commits are in
    /// the run's snapshot) and holders whose leases lapsed.
    pub fn held(&self, _locked: &LinkLock, run: Generation) -> io::Result<HashSet<Digest>> {
        let mut held = HashSet::new();
        for entry in self.dir.read_dir(ACTIVE)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue; // Not a holder's file: none of ours.
            }
            let path = Path::new(ACTIVE).join(entry.file_name());
            if fresh(entry.metadata()?.modified().map(|t| t.into_std())) {
                held.extend(digests_in(&self.dir, &path)?);
            } else {
                let _ = self.dir.remove_file(&path);
            }
        }
        for entry in self.dir.read_dir(RELEASED)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name();
            let path = Path::new(RELEASED).join(&name);
            let generation = name
                .to_str()
                .and_then(|n| n.split_once('-'))
                .and_then(|(g, _)| g.parse().ok())
                .map(Generation);
            if generation.is_some_and(|g| g >= run) {
                held.extend(digests_in(&self.dir, &path)?);
            } else {
                let _ = self.dir.remove_file(&path);
            }
        }
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Leases) {
        let dir = tempfile::tempdir().unwrap();
        let leases = Leases::open(dir.path()).unwrap();
        (dir, leases)
    }

    fn held(leases: &Leases, run: Generation) -> HashSet<Digest> {
        leases.held(&leases.collecting().unwrap(), run).unwrap()
    }

    fn grant(leases: &Leases, holder: &Holder, d: &Digest) {
        leases.grant(&leases.linking().unwrap(), holder, d).unwrap();
    }

    #[test]
    fn a_released_lease_counts_only_for_runs_begun_before_the_release() {
        let (_dir, leases) = open();
        let d = Digest::of(b"layer");
        let holder = Holder::new();
        grant(&leases, &holder, &d);
        grant(&leases, &holder, &d);
        let before = leases.begin_collection().unwrap();
        assert_eq!(held(&leases, before), HashSet::from([d.clone()]));
        // Released while that run goes on: its commit may be missing from
        // the run's snapshot, so it still counts for it...
        drop(holder);
        assert_eq!(held(&leases, before), HashSet::from([d.clone()]));
        // ...but not for the next run, whose snapshot has the commit.
        let after = leases.begin_collection().unwrap();
        assert!(held(&leases, after).is_empty());
        assert!(held(&leases, before).is_empty(), "and it is gone");
    }

    #[test]
    fn a_kept_lease_stays_until_it_lapses() {
        let (dir, leases) = open();
        let d = Digest::of(b"layer");
        let holder = Holder::new();
        grant(&leases, &holder, &d);
        holder.keep();
        let file = dir.path().join("leases/active").join(holder.name());
        drop(holder);
        let run = leases.begin_collection().unwrap();
        assert_eq!(held(&leases, run), HashSet::from([d.clone()]));
        let old = SystemTime::now() - LEASE_FOR - Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(held(&leases, run).is_empty());
        assert!(!file.exists());
    }

    /// What other nodes or a damaged disk leave in `leases/` neither
    /// crashes a run nor costs a valid lease: torn or foreign lines are
    /// skipped, stray names and directories ignored, a file dated ahead
    /// (another node's clock) still counts.
    #[test]
    fn stray_and_damaged_lease_files_cost_no_lease() {
        let (dir, leases) = open();
        let root = dir.path().join("leases");
        let d = Digest::of(b"layer");
        let holder = Holder::new();
        grant(&leases, &holder, &d);
        let mine = root.join("active").join(holder.name());
        let mut contents = std::fs::read(&mine).unwrap();
        contents.extend_from_slice(b"\xff\xfe not utf-8\n../../etc/passwd\n");
        contents.extend_from_slice(&Digest::of(b"torn").hex().as_bytes()[..20]);
        std::fs::write(&mine, contents).unwrap();
        std::fs::create_dir(root.join("active/a-directory")).unwrap();
        std::fs::create_dir(root.join("released/99-a-directory")).unwrap();
        std::fs::write(root.join("released/no-generation"), d.hex()).unwrap();
        let foreign = std::os::unix::ffi::OsStrExt::from_bytes(b"7-\xff\xfe");
        let foreign: &std::ffi::OsStr = foreign;
        std::fs::write(root.join("released").join(foreign), b"\0\0\0").unwrap();
        let ahead = SystemTime::now() + Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&mine)
            .unwrap()
            .set_modified(ahead)
            .unwrap();
        let run = leases.begin_collection().unwrap();
        assert_eq!(held(&leases, run), HashSet::from([d.clone()]));
        assert!(mine.exists(), "a lease dated ahead is not lapsed");
        assert!(!root.join("released/no-generation").exists());
    }

    /// A generation file that holds no number stops cleanup runs and
    /// releases (the leases then count until they lapse) rather than
    /// sending the generation back; a release keeps its leases.
    #[test]
    fn a_damaged_generation_stops_runs_and_keeps_leases() {
        let (dir, leases) = open();
        let d = Digest::of(b"layer");
        let run = leases.begin_collection().unwrap();
        let holder = Holder::new();
        grant(&leases, &holder, &d);
        let generation = dir.path().join("leases/generation");
        std::fs::write(&generation, b"\xffgarbage").unwrap();
        drop(holder);
        assert_eq!(held(&leases, run), HashSet::from([d.clone()]));
        let e = leases.begin_collection().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        std::fs::write(&generation, u64::MAX.to_string()).unwrap();
        assert!(leases.begin_collection().is_err(), "no wrap to 0");
        std::fs::write(&generation, b"41\n").unwrap();
        assert_eq!(leases.begin_collection().unwrap(), Generation(42));
        assert_eq!(std::fs::read_to_string(&generation).unwrap(), "42");
    }

    #[test]
    fn a_holder_without_leases_leaves_nothing() {
        let (dir, leases) = open();
        drop(Holder::new());
        let run = leases.begin_collection().unwrap();
        assert!(held(&leases, run).is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("leases/released"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn collecting_waits_for_linking_in_the_same_process() {
        let (_dir, leases) = open();
        let leases = std::sync::Arc::new(leases);
        let linking = leases.linking().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let other = leases.clone();
        let t = std::thread::spawn(move || {
            let _ex = other.collecting().unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "cleanup got the lock while a link held it"
        );
        drop(linking);
        rx.recv_timeout(Duration::from_secs(5))
            .expect("cleanup gets the lock once the link is done");
        t.join().unwrap();
    }
}
