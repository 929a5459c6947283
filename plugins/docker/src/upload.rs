//! Importing a `docker save` archive.
//!
//! Two layouts exist: the legacy one (`manifest.json` naming a config and
//! uncompressed layer tars per image) and the OCI image layout (`index.json`
//! plus `blobs/sha256/*`), written by skopeo and by Docker 25+ (which writes
//! both; the OCI side is preferred because it carries the real manifests).
//! The whole structure is validated first; only then are blobs stored, by
//! range, so layer bytes never enter guest memory.

use crate::archive::{Archive, FileRange, read_range};
use crate::manifest::{self, DOCKER_CONFIG, DOCKER_LAYER_TAR, Descriptor, Kind, MAX_MANIFEST};
use crate::model::{self, ManifestMeta};
use crate::reference::{is_lower_hex, is_sha256_digest, is_valid_tag, tag_of_reference};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use wharf_sdk::host::{Host, UploadSource};
use wharf_sdk::log::Level;
use wharf_sdk::{Error, Summary};

/// Cap for `manifest.json` and `index.json`.
const MAX_LAYOUT_JSON: u64 = 4 << 20;
/// Cap for image configs (real ones are a few KiB; history can grow them).
const MAX_CONFIG: u64 = 16 << 20;
/// How deep indexes may nest inside indexes.
const MAX_DEPTH: usize = 4;

/// Members from this size on that are named like layers are stored as soon
/// as the scan meets them (see [`import`]).
const STORE_EARLY_FROM: u64 = 1 << 20;

/// Import the archive `src` into the current repository.
///
/// Layers (`*/layer.tar`, `blobs/sha256/*` of a MiB or more) are stored
/// while the headers are scanned, the moment the scan reaches them: when
/// the source is a body still arriving (a streaming import), their bytes
/// then go straight from the network into blobs, read once. What they are
/// is only checked later, against the manifests; a stored blob that turns
/// out to be unused is an orphan, removed by orphan cleanup.
pub fn import<S: UploadSource, H: Host>(src: &mut S, host: &mut H) -> Result<Summary, Error> {
    let mut early = HashMap::new();
    let total = src.seek(std::io::SeekFrom::End(0)).unwrap_or(0);
    let archive = Archive::scan_visiting(src, |src, path, range| {
        if range.size < STORE_EARLY_FROM
            || !(path.ends_with("/layer.tar") || path.starts_with("blobs/sha256/"))
        {
            return Ok(());
        }
        // A digest-named blob is checked as it streams; a legacy layer is
        // checked against its config's diff id later.
        let expect = digest_of_name(path);
        let digest = store_range(src, range, expect.as_deref(), path)?;
        early.insert(range, digest);
        // Items: blobs stored so far (their number is unknown until the
        // end); bytes: how far into the archive.
        let at = range.offset + range.size;
        host.progress(early.len() as u64, 0, at, total, &format!("stored {path}"));
        Ok(())
    })?;
    let plan = if archive.contains("index.json") {
        Plan::Oci(plan_oci(&archive, src)?)
    } else if archive.contains("manifest.json") {
        Plan::Legacy(plan_legacy(&archive, src)?)
    } else {
        return Err(Error::invalid(
            "the archive has neither index.json (OCI layout) nor manifest.json (docker save): is it a `docker save` tarball?",
        ));
    };
    let mut run = Run::new(src, host);
    run.early = early;
    match plan {
        Plan::Legacy(images) => run.legacy(&images)?,
        Plan::Oci(plan) => run.oci(&plan)?,
    }
    Ok(run.finish())
}

enum Plan {
    Legacy(Vec<LegacyImage>),
    Oci(OciPlan),
}

// ---- legacy layout -------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

struct LegacyImage {
    config_path: String,
    config: FileRange,
    /// Known when the config's file name is its digest.
    config_digest: Option<String>,
    /// Path, bytes, and the diff id the config gives the layer.
    layers: Vec<(String, FileRange, String)>,
    tags: Vec<String>,
}

fn plan_legacy<S: UploadSource>(archive: &Archive, src: &mut S) -> Result<Vec<LegacyImage>, Error> {
    let bytes = archive.read(src, "manifest.json", MAX_LAYOUT_JSON)?;
    let entries: Vec<LegacyEntry> = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("manifest.json is not valid: {e}")))?;
    if entries.is_empty() {
        return Err(Error::invalid("manifest.json lists no images"));
    }
    let mut images = Vec::with_capacity(entries.len());
    let mut tag_owner: HashMap<String, String> = HashMap::new();
    for entry in entries {
        let in_image = |e: Error| {
            Error::invalid(format!(
                "manifest.json image {:?}: {}",
                entry.config, e.message
            ))
        };
        let config = archive.file(&entry.config).map_err(in_image)?;
        let config_bytes = read_range(
            src,
            config,
            MAX_CONFIG,
            &format!("image config {:?}", entry.config),
        )?;
        let parsed: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
            Error::invalid(format!(
                "image config {:?} is not valid JSON: {e}",
                entry.config
            ))
        })?;
        let diff_ids = parsed.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        if diff_ids.len() != entry.layers.len() {
            return Err(Error::invalid(format!(
                "image config {:?} lists {} rootfs.diff_ids but manifest.json lists {} layers",
                entry.config,
                diff_ids.len(),
                entry.layers.len()
            )));
        }
        if let Some(bad) = diff_ids.iter().find(|d| !is_sha256_digest(d)) {
            return Err(Error::invalid(format!(
                "image config {:?} has an invalid diff id {bad:?}",
                entry.config
            )));
        }
        let mut layers = Vec::with_capacity(entry.layers.len());
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            layers.push((path.clone(), archive.file(path).map_err(in_image)?, diff_id));
        }
        let mut tags = Vec::new();
        for reference in entry.repo_tags.iter().flatten() {
            // `docker save img` without a tag means latest, as for `docker pull`.
            let tag = tag_of_reference(reference).unwrap_or("latest");
            if !is_valid_tag(tag) {
                return Err(Error::invalid(format!(
                    "manifest.json: {reference:?} has an invalid tag"
                )));
            }
            if let Some(other) = tag_owner.insert(tag.to_string(), entry.config.clone())
                && other != entry.config
            {
                return Err(Error::invalid(format!(
                    "manifest.json gives tag {tag:?} to two different images ({other:?} and {:?})",
                    entry.config
                )));
            }
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_string());
            }
        }
        images.push(LegacyImage {
            config_digest: digest_of_name(&entry.config),
            config_path: entry.config,
            config,
            layers,
            tags,
        });
    }
    Ok(images)
}

/// Store `range` of `src`; `what` names it in errors.
fn store_range<S: UploadSource>(
    src: &mut S,
    range: FileRange,
    expect: Option<&str>,
    what: &str,
) -> Result<String, Error> {
    src.store_range(range.offset, range.size, expect)
        .map_err(|e| {
            // A digest mismatch means the archive lies about its content.
            let code = if e.code == "digest-mismatch" {
                "invalid-input"
            } else {
                e.code.as_str()
            };
            Error::new(code, format!("storing {what}: {}", e.message))
        })
}

/// `<hex>.json` (legacy) and `blobs/sha256/<hex>` (Docker 25) configs are
/// named by their digest, which we then make the host check.
fn digest_of_name(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let hex = name.strip_suffix(".json").unwrap_or(name);
    let named = name.ends_with(".json") || path.ends_with(&format!("blobs/sha256/{hex}"));
    (named && is_lower_hex(hex, 64)).then(|| format!("sha256:{hex}"))
}

// ---- OCI layout ----------------------------------------------------------

struct OciBlob {
    digest: String,
    range: FileRange,
    media_type: String,
    layer: bool,
}

struct OciManifest {
    digest: String,
    range: FileRange,
    meta: ManifestMeta,
}

#[derive(Default)]
struct OciPlan {
    blobs: Vec<OciBlob>,
    /// Children before the indexes that list them.
    manifests: Vec<OciManifest>,
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayoutFile {
    image_layout_version: String,
}

fn plan_oci<S: UploadSource>(archive: &Archive, src: &mut S) -> Result<OciPlan, Error> {
    if archive.contains("oci-layout") {
        let bytes = archive.read(src, "oci-layout", 64 << 10)?;
        let layout: OciLayoutFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("oci-layout is not valid: {e}")))?;
        if !layout.image_layout_version.starts_with("1.") {
            return Err(Error::invalid(format!(
                "oci-layout version {:?} is not supported (1.x is)",
                layout.image_layout_version
            )));
        }
    }
    let bytes = archive.read(src, "index.json", MAX_LAYOUT_JSON)?;
    let index = manifest::parse(&bytes, Some(manifest::OCI_INDEX))
        .map_err(|e| Error::invalid(format!("index.json is not valid: {e}")))?;
    let Kind::List { manifests: top } = index.kind else {
        return Err(Error::invalid(
            "index.json is an image manifest, not an index",
        ));
    };
    if top.is_empty() {
        return Err(Error::invalid("index.json lists no manifests"));
    }
    let mut walk = OciWalk {
        archive,
        src,
        plan: OciPlan::default(),
        seen: HashSet::new(),
    };
    for desc in &top {
        walk.manifest(desc, "index.json", 0)?;
        if let Some(tag) = tag_of_descriptor(desc)
            && let Some(other) = walk.plan.tags.insert(tag.clone(), desc.digest.clone())
            && other != desc.digest
        {
            return Err(Error::invalid(format!(
                "index.json gives tag {tag:?} to two different manifests ({other} and {})",
                desc.digest
            )));
        }
    }
    Ok(walk.plan)
}

/// The tag a top-level index.json entry names: containerd's full image name,
/// else the OCI ref name when it is a tag (skopeo `oci-archive:x:tag`).
fn tag_of_descriptor(desc: &Descriptor) -> Option<String> {
    let a = &desc.annotations;
    if let Some(tag) = a
        .get("io.containerd.image.name")
        .and_then(|n| tag_of_reference(n))
    {
        return Some(tag.to_string());
    }
    let name = a.get("org.opencontainers.image.ref.name")?;
    if is_valid_tag(name) {
        return Some(name.clone());
    }
    tag_of_reference(name)
        .filter(|t| is_valid_tag(t))
        .map(str::to_string)
}

struct OciWalk<'a, S> {
    archive: &'a Archive,
    src: &'a mut S,
    plan: OciPlan,
    seen: HashSet<String>,
}

impl<S: UploadSource> OciWalk<'_, S> {
    /// Where the layout keeps a blob, checked against its descriptor.
    fn locate(&self, desc: &Descriptor, referrer: &str) -> Result<Option<FileRange>, Error> {
        let hex = desc.digest.strip_prefix("sha256:").unwrap_or_default();
        let path = format!("blobs/sha256/{hex}");
        let range = match self.archive.file(&path) {
            Ok(range) => range,
            Err(_) if desc.is_foreign() => return Ok(None),
            Err(e) => {
                return Err(Error::invalid(format!(
                    "{referrer} refers to {}: {}",
                    desc.digest, e.message
                )));
            }
        };
        if range.size != desc.size {
            return Err(Error::invalid(format!(
                "{path} is {} bytes but {referrer} says {} is {} bytes",
                range.size, desc.digest, desc.size
            )));
        }
        Ok(Some(range))
    }

    fn manifest(&mut self, desc: &Descriptor, referrer: &str, depth: usize) -> Result<(), Error> {
        if !self.seen.insert(desc.digest.clone()) {
            return Ok(());
        }
        if depth > MAX_DEPTH {
            return Err(Error::invalid(format!(
                "indexes nest more than {MAX_DEPTH} deep at {}",
                desc.digest
            )));
        }
        let range = self.locate(desc, referrer)?.ok_or_else(|| {
            Error::invalid(format!(
                "{referrer} refers to missing manifest {}",
                desc.digest
            ))
        })?;
        let what = format!("manifest {}", desc.digest);
        let bytes = read_range(self.src, range, MAX_MANIFEST, &what)?;
        let parsed = manifest::parse(&bytes, Some(&desc.media_type))
            .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        match &parsed.kind {
            Kind::List { manifests } => {
                for child in manifests {
                    self.manifest(child, &what, depth + 1)?;
                }
            }
            Kind::Image { config, layers } => {
                self.blob(config, &what, false)?;
                for layer in layers {
                    self.blob(layer, &what, true)?;
                }
            }
        }
        let meta = ManifestMeta::new(&parsed, range.size, desc.platform.clone());
        self.plan.manifests.push(OciManifest {
            digest: desc.digest.clone(),
            range,
            meta,
        });
        Ok(())
    }

    fn blob(&mut self, desc: &Descriptor, referrer: &str, layer: bool) -> Result<(), Error> {
        if self.seen.contains(&desc.digest) {
            return Ok(());
        }
        if let Some(range) = self.locate(desc, referrer)? {
            self.seen.insert(desc.digest.clone());
            let media_type = desc.media_type.clone();
            self.plan.blobs.push(OciBlob {
                digest: desc.digest.clone(),
                range,
                media_type,
                layer,
            });
        }
        Ok(())
    }
}

// ---- storing -------------------------------------------------------------

/// Stores blobs, adds units, reports progress and keeps the summary.
struct Run<'a, S, H> {
    src: &'a mut S,
    host: &'a mut H,
    stored: HashMap<FileRange, String>,
    /// Stored during the scan, not yet checked against what refers to them.
    early: HashMap<FileRange, String>,
    layers_total: u64,
    layers_done: u64,
    bytes_total: u64,
    bytes_done: u64,
    images: u64,
    tags: Vec<String>,
    summary: Summary,
}

impl<'a, S: UploadSource, H: Host> Run<'a, S, H> {
    fn new(src: &'a mut S, host: &'a mut H) -> Self {
        Run {
            src,
            host,
            stored: HashMap::new(),
            early: HashMap::new(),
            layers_total: 0,
            layers_done: 0,
            bytes_total: 0,
            bytes_done: 0,
            images: 0,
            tags: Vec::new(),
            summary: Summary {
                units_added: 0,
                units_removed: 0,
                bytes_stored: 0,
                message: String::new(),
            },
        }
    }

    /// Store a range once, however many images share it.
    fn copy(
        &mut self,
        range: FileRange,
        expect: Option<&str>,
        what: &str,
        layer: bool,
    ) -> Result<String, Error> {
        if let Some(digest) = self.stored.get(&range) {
            return Ok(digest.clone());
        }
        // Stored during the scan (which reported its progress then), or now.
        let (digest, now) = match self.early.remove(&range) {
            Some(digest) => match expect {
                Some(e) if e != digest => {
                    return Err(Error::invalid(format!(
                        "storing {what}: digest mismatch: expected {e}, got {digest}"
                    )));
                }
                _ => (digest, false),
            },
            None => (store_range(self.src, range, expect, what)?, true),
        };
        self.stored.insert(range, digest.clone());
        self.summary.bytes_stored += range.size;
        if layer {
            self.layers_done += 1;
            self.bytes_done += range.size;
        }
        if layer && now {
            let message = format!("stored {what}");
            self.host.progress(
                self.layers_done,
                self.layers_total,
                self.bytes_done,
                self.bytes_total,
                &message,
            );
        }
        Ok(digest)
    }

    fn add(&mut self, unit: wharf_sdk::Unit) -> Result<(), Error> {
        self.host.add_unit(&unit)?;
        self.summary.units_added += 1;
        Ok(())
    }

    fn tag(&mut self, name: &str, manifest: &str) -> Result<(), Error> {
        let change = model::set_tag(self.host, name, manifest)?;
        self.summary.units_added += u64::from(change.added);
        self.summary.units_removed += change.removed;
        self.tags.push(name.to_string());
        Ok(())
    }

    fn set_totals<'r>(&mut self, layers: impl Iterator<Item = &'r FileRange>) {
        let unique: HashSet<&FileRange> = layers.collect();
        self.layers_total = unique.len() as u64;
        self.bytes_total = unique.iter().map(|r| r.size).sum();
    }

    /// Store everything first and add units only after: a bad layer in the
    /// last image must leave the repository untouched.
    fn legacy(&mut self, images: &[LegacyImage]) -> Result<(), Error> {
        self.set_totals(
            images
                .iter()
                .flat_map(|i| i.layers.iter().map(|(_, r, _)| r)),
        );
        let mut stored = Vec::with_capacity(images.len());
        for image in images {
            let what = format!("image config {:?}", image.config_path);
            let config_digest =
                self.copy(image.config, image.config_digest.as_deref(), &what, false)?;
            let mut layers = Vec::with_capacity(image.layers.len());
            for (path, range, diff_id) in &image.layers {
                let what = format!(
                    "layer {path:?} (expected diff id {diff_id} from {:?})",
                    image.config_path
                );
                let digest = self.copy(*range, Some(diff_id), &what, true)?;
                layers.push(Descriptor::new(DOCKER_LAYER_TAR, &digest, range.size));
            }
            let config = Descriptor::new(DOCKER_CONFIG, &config_digest, image.config.size);
            let bytes = manifest::docker_schema2(&config, &layers);
            let digest = self.host.store_bytes(&bytes, None)?;
            self.summary.bytes_stored += bytes.len() as u64;
            let parsed =
                manifest::Parsed::plain(manifest::DOCKER_MANIFEST, Kind::Image { config, layers });
            stored.push((
                digest,
                ManifestMeta::new(&parsed, bytes.len() as u64, None),
                parsed,
                &image.tags,
            ));
        }
        for (digest, meta, parsed, tags) in stored {
            for blob in parsed.children() {
                self.add(model::blob_unit(&blob.digest, &blob.media_type, blob.size))?;
            }
            self.add(model::manifest_unit(&digest, &meta))?;
            self.images += 1;
            for tag in tags {
                self.tag(tag, &digest)?;
            }
        }
        Ok(())
    }

    fn oci(&mut self, plan: &OciPlan) -> Result<(), Error> {
        self.set_totals(plan.blobs.iter().filter(|b| b.layer).map(|b| &b.range));
        for blob in &plan.blobs {
            self.copy(
                blob.range,
                Some(&blob.digest),
                &format!("blob {}", blob.digest),
                blob.layer,
            )?;
        }
        for m in &plan.manifests {
            self.copy(
                m.range,
                Some(&m.digest),
                &format!("manifest {}", m.digest),
                false,
            )?;
        }
        for blob in &plan.blobs {
            self.add(model::blob_unit(
                &blob.digest,
                &blob.media_type,
                blob.range.size,
            ))?;
        }
        for m in &plan.manifests {
            self.add(model::manifest_unit(&m.digest, &m.meta))?;
            self.images += u64::from(m.meta.config.is_some());
        }
        for (tag, digest) in &plan.tags {
            self.tag(tag, digest)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Summary {
        let tags = if self.tags.is_empty() {
            "no tags".to_string()
        } else {
            format!("tags {}", self.tags.join(", "))
        };
        self.summary.message = format!(
            "imported {} image(s) with {} layer(s), {} bytes; {tags}",
            self.images, self.layers_total, self.bytes_total
        );
        self.host.log(Level::Info, &self.summary.message);
        self.summary
    }
}

#[cfg(test)]
mod tests;
