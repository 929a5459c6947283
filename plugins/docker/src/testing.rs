//! Test doubles of the Docker plugin: a tar writer that can also write the
//! hostile entries real tools refuse to produce. The host itself is
//! `wharf_sdk::testing::FakeHost`.

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
