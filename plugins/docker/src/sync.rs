//! The importer's sync: mirror tags of an upstream registry repository.
//!
//! Per tag one manifest GET; the body is stored as-is (the host checks it
//! against `Docker-Content-Digest`). Tags whose manifest the repository
//! already has cost nothing more. Missing blobs are downloaded by the host in
//! parallel, verified while streaming; units are added only once everything
//! a manifest needs is stored, so a tag in the repository is always complete.

use crate::auth;
use crate::glob::TagFilter;
use crate::manifest::{self, ACCEPT_ALL, Kind, MAX_MANIFEST, essence};
use crate::model::{self, MANIFEST, ManifestMeta, TAG};
use crate::reference::{is_sha256_digest, is_valid_name, is_valid_tag};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use wharf_sdk::challenge::Challenge;
use wharf_sdk::fetch::BlobDownload;
use wharf_sdk::host::{Host, HttpResponse};
use wharf_sdk::log::Level;
use wharf_sdk::paging::list_all;
use wharf_sdk::{Error, Header, Summary};

/// Cap for a page of `tags/list` and for token answers.
const MAX_JSON: u64 = 4 << 20;
/// Bound on `Link` pagination, against an upstream that loops.
const MAX_PAGES: usize = 10_000;
/// Downloads per `fetch-blobs` call: enough for parallelism, small enough
/// for regular progress reports.
const DOWNLOAD_BATCH: usize = 32;
/// How deep indexes may nest.
const MAX_DEPTH: usize = 4;
/// Machine word for failures on the upstream's side.
const UPSTREAM: &str = "upstream-error";

#[derive(Debug, Default, Deserialize)]
struct ImporterConfig {
    feed: Option<String>,
    upstream_name: Option<String>,
    include_tags: Option<Vec<String>>,
    exclude_tags: Option<Vec<String>>,
    username: Option<String>,
    password: Option<String>,
    mirror: Option<bool>,
    /// Read by the host (`fetch-blobs` downloads nothing unless it is
    /// `immediate`); here only for what the summary says.
    download_policy: Option<String>,
    /// Which upstream names a pull-through repository may pull.
    include_names: Option<Vec<String>>,
    exclude_names: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct Settings {
    /// Without a trailing `/`.
    pub feed: String,
    pub upstream: String,
    pub filter: TagFilter,
    pub credentials: Option<(String, String)>,
    /// Mirror (`true`, the default): the repository's tags become the
    /// upstream's selected set exactly, so tags gone upstream (or filtered
    /// out now) are removed. Additive (`false`, Pulp 3's default): a sync
    /// adds and moves tags, never removes one.
    pub mirror: bool,
    /// Blobs stay on the feed until a client asks (`download_policy` of
    /// `on_demand` or `streamed`).
    pub deferred: bool,
    /// Upstream names a pull-through repository may pull.
    pub names: TagFilter,
}

/// The settings of a sync of the repository's `upstream_name`.
pub fn settings(json: &str) -> Result<Settings, Error> {
    remote_settings(json, None)
}

/// The settings of a pull of `upstream` into a pull-through repository:
/// its `upstream_name` is not needed, and `upstream` must pass its
/// `include_names` and `exclude_names`.
pub fn pull_settings(json: &str, upstream: &str) -> Result<Settings, Error> {
    let settings = remote_settings(json, Some(upstream.to_string()))?;
    if !settings.names.allows(upstream) {
        return Err(Error::new(
            "denied",
            format!(
                "{upstream} is not among the upstream names this repository may pull                  (its include_names and exclude_names)"
            ),
        ));
    }
    Ok(settings)
}

fn remote_settings(json: &str, upstream: Option<String>) -> Result<Settings, Error> {
    let config: ImporterConfig = wharf_sdk::json::settings(json)
        .map_err(|e| Error::invalid(format!("importer settings are not valid JSON: {e}")))?;
    let feed = config.feed.filter(|f| !f.is_empty()).ok_or_else(|| {
        Error::invalid(
            "set the importer's `feed` (the upstream registry URL, e.g. http://host:5000)",
        )
    })?;
    if !(feed.starts_with("http://") || feed.starts_with("https://")) {
        return Err(Error::invalid(format!(
            "feed {feed:?} must be an http:// or https:// URL"
        )));
    }
    let upstream = upstream
        .or(config.upstream_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Error::invalid("set the importer's `upstream_name` (e.g. library/busybox)")
        })?;
    if !is_valid_name(&upstream) {
        return Err(Error::invalid(format!(
            "upstream_name {upstream:?} is not a valid repository name"
        )));
    }
    let credentials = config
        .username
        .map(|u| (u, config.password.unwrap_or_default()));
    Ok(Settings {
        feed: feed.trim_end_matches('/').to_string(),
        upstream,
        filter: TagFilter {
            include: config.include_tags.unwrap_or_default(),
            exclude: config.exclude_tags.unwrap_or_default(),
        },
        credentials,
        mirror: config.mirror.unwrap_or(true),
        deferred: config
            .download_policy
            .is_some_and(|p| p == "on_demand" || p == "streamed"),
        names: TagFilter {
            include: config.include_names.unwrap_or_default(),
            exclude: config.exclude_names.unwrap_or_default(),
        },
    })
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().strip_prefix('<')?.split_once('>')?;
        params
            .split(';')
            .any(|p| p.trim().replace(['"', ' '], "") == "rel=next")
            .then(|| target.to_string())
    })
}

/// A `Link` target made absolute against the feed.
pub fn absolute_url(feed: &str, link: &str) -> String {
    if link.starts_with("http://") || link.starts_with("https://") {
        return link.to_string();
    }
    if link.starts_with('/') {
        let authority_start = feed.find("://").map_or(0, |i| i + 3);
        let origin_end = feed[authority_start..]
            .find('/')
            .map_or(feed.len(), |i| authority_start + i);
        return format!("{}{link}", &feed[..origin_end]);
    }
    format!("{feed}/{link}")
}

/// HTTP to the upstream, answering auth challenges once per request.
pub struct Client<'a, H: Host> {
    pub host: &'a mut H,
    /// `{feed}/v2/{upstream}`.
    base: String,
    upstream: String,
    credentials: Option<(String, String)>,
    authorization: Option<String>,
    /// The last Bearer challenge, to renew the token when downloads fail.
    bearer: Option<Challenge>,
}

impl<'a, H: Host> Client<'a, H> {
    pub fn new(host: &'a mut H, settings: &Settings) -> Self {
        Client {
            host,
            base: format!("{}/v2/{}", settings.feed, settings.upstream),
            upstream: settings.upstream.clone(),
            credentials: settings.credentials.clone(),
            authorization: None,
            bearer: None,
        }
    }

    /// `{feed}/v2/{upstream}/blobs/{digest}`.
    pub fn blob_url(&self, digest: &str) -> String {
        format!("{}/blobs/{digest}", self.base)
    }

    /// Credentials for the upstream, got the way a client gets them: the
    /// feed's API root answers 401 with the challenge to follow (a Bearer
    /// token for pulls of the upstream name, or Basic).
    pub fn authorize_pulls(&mut self, feed: &str) -> Result<(), Error> {
        let url = format!("{feed}/v2/");
        self.get(&url, None, MAX_JSON).map(|_| ())
    }

    pub fn headers(&self, accept: Option<&str>) -> Vec<Header> {
        let mut headers = Vec::new();
        if let Some(accept) = accept {
            headers.push(Header {
                name: "Accept".into(),
                value: accept.into(),
            });
        }
        if let Some(auth) = &self.authorization {
            headers.push(Header {
                name: "Authorization".into(),
                value: auth.clone(),
            });
        }
        headers
    }

    pub fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
        cap: u64,
    ) -> Result<HttpResponse, Error> {
        let response = self.host.get(url, &self.headers(accept), cap)?;
        if response.status != 401 {
            return Ok(response);
        }
        let challenge = response
            .header("www-authenticate")
            .and_then(wharf_sdk::challenge::parse)
            .ok_or_else(|| {
                Error::new(
                    "denied",
                    format!("{url} answered 401 without an authentication challenge"),
                )
            })?;
        self.authorize(challenge)?;
        let response = self.host.get(url, &self.headers(accept), cap)?;
        if response.status == 401 {
            let hint = if self.credentials.is_some() {
                "refused the credentials"
            } else {
                "needs credentials: set username and password"
            };
            return Err(Error::new("denied", format!("{url} {hint}")));
        }
        Ok(response)
    }

    fn authorize(&mut self, challenge: Challenge) -> Result<(), Error> {
        match challenge.scheme.as_str() {
            "bearer" => {
                let url =
                    auth::token_url(&challenge, &format!("repository:{}:pull", self.upstream))?;
                let headers: Vec<Header> = self
                    .credentials
                    .iter()
                    .map(|(u, p)| Header {
                        name: "Authorization".into(),
                        value: wharf_sdk::challenge::basic(u, p),
                    })
                    .collect();
                let response = self.host.get(&url, &headers, MAX_JSON)?;
                if response.status != 200 {
                    let hint = match (response.status, self.credentials.is_some()) {
                        (401 | 403, true) => ": it refused the credentials",
                        (401 | 403, false) => ": it needs credentials: set username and password",
                        _ => "",
                    };
                    return Err(Error::new(
                        "denied",
                        format!(
                            "the token endpoint {url} answered {}{hint}",
                            status_text(response.status)
                        ),
                    ));
                }
                self.authorization =
                    Some(format!("Bearer {}", auth::token_from_body(&response.body)?));
                self.bearer = Some(challenge);
            }
            "basic" => {
                let (user, password) = self.credentials.as_ref().ok_or_else(|| {
                    Error::new(
                        "denied",
                        "the upstream asks for Basic auth: set username and password",
                    )
                })?;
                self.authorization = Some(wharf_sdk::challenge::basic(user, password));
            }
            other => {
                return Err(Error::new(
                    "denied",
                    format!("unsupported authentication scheme {other:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Renew a Bearer token (they expire); `false` when not using one.
    fn renew(&mut self) -> Result<bool, Error> {
        match self.bearer.take() {
            Some(challenge) => self.authorize(challenge).map(|_| true),
            None => Ok(false),
        }
    }
}

/// A non-2xx answer as an error: its status and reason only. The body never
/// reaches the task record (an internal service's answer must not leak
/// through a sync's error).
fn ensure_ok(response: &HttpResponse, url: &str) -> Result<(), Error> {
    if (200..300).contains(&response.status) {
        return Ok(());
    }
    Err(Error::new(
        UPSTREAM,
        format!("{url}: upstream answered {}", status_text(response.status)),
    ))
}

/// `404 Not Found`: a status with its usual reason phrase.
pub fn status_text(status: u16) -> String {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    };
    format!("{status} {reason}").trim_end().to_string()
}

/// Where a JSON document failed to parse, never what it held (serde's
/// messages quote the values they did not expect).
pub fn json_error_at(e: &serde_json::Error) -> String {
    format!("line {}, column {}", e.line(), e.column())
}

#[derive(Deserialize)]
struct TagsPage {
    tags: Option<Vec<String>>,
}

/// What one tag needs before its units can be added.
pub struct Pending {
    /// The tag's name in the repository (empty: no tag, a manifest pulled
    /// by digest).
    pub tag: String,
    pub digest: String,
    /// Children before parents.
    manifests: Vec<(String, ManifestMeta)>,
    /// Digest → (media type, size).
    blobs: BTreeMap<String, (String, u64)>,
}

/// Mirror the upstream described by `importer_config` into the current repository.
pub fn run<H: Host>(host: &mut H, importer_config: &str) -> Result<Summary, Error> {
    let settings = settings(importer_config)?;
    let mut client = Client::new(host, &settings);
    let mut summary = Summary {
        units_added: 0,
        units_removed: 0,
        bytes_stored: 0,
        message: String::new(),
    };
    let mut failures: Vec<String> = Vec::new();

    let upstream_tags = list_tags(&mut client, &settings)?;
    let wanted: Vec<&String> = upstream_tags
        .iter()
        .filter(|t| settings.filter.allows(t))
        .collect();
    let mut current: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for unit in list_all(client.host, TAG)? {
        let tag = model::tag_meta(&unit)?;
        current.entry(tag.name).or_default().insert(tag.manifest);
    }

    let mut keep: HashSet<&str> = HashSet::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut unchanged = 0u64;
    for (i, tag) in wanted.iter().enumerate() {
        client.host.progress(
            i as u64,
            wanted.len() as u64,
            0,
            0,
            &format!("checking tag {tag}"),
        );
        let url = format!("{}/manifests/{tag}", client.base);
        let response = client.get(&url, Some(ACCEPT_ALL), MAX_MANIFEST)?;
        if response.status == 404 {
            client.host.log(
                Level::Warn,
                &format!("tag {tag} vanished upstream during the sync"),
            );
            continue;
        }
        keep.insert(tag.as_str());
        match plan_tag(&mut client, tag, &response, &url, &current, &mut summary) {
            Ok(Some(p)) => pending.push(p),
            Ok(None) => unchanged += 1,
            Err(e) => failures.push(format!("tag {tag}: {}", e.message)),
        }
    }

    let failed = download(&mut client, &pending, settings.deferred, &mut summary)?;

    let mut updated = 0u64;
    for p in &pending {
        match add_pending(client.host, p, &failed, None, &mut summary)? {
            Ok(()) => updated += 1,
            Err(why) => failures.push(why),
        }
    }

    // Mirror: tags gone upstream (or filtered out now) leave the repository;
    // an additive sync keeps them.
    let mut removed = 0u64;
    for (name, manifests) in &current {
        if !settings.mirror || keep.contains(name.as_str()) {
            continue;
        }
        for manifest in manifests {
            if client
                .host
                .remove_unit(TAG, &model::tag_key(name, manifest))?
            {
                summary.units_removed += 1;
            }
        }
        removed += 1;
    }

    if !failures.is_empty() {
        // The host commits nothing of a failed call: say so, not "synced".
        return Err(Error::new(
            UPSTREAM,
            format!(
                "sync of {} from {} failed, nothing was changed: {}",
                settings.upstream,
                settings.feed,
                failures.join("; ")
            ),
        ));
    }
    let mode = if settings.mirror {
        "mirror"
    } else {
        "additive"
    };
    summary.message = format!(
        "synced {} from {} ({}): {} of {} upstream tag(s) selected, {} unchanged, {updated} updated, {removed} removed; {}",
        settings.upstream,
        settings.feed,
        mode,
        wanted.len(),
        upstream_tags.len(),
        unchanged,
        stored_text(&settings, &summary)
    );
    client.host.log(Level::Info, &summary.message);
    Ok(summary)
}

/// What the bytes of a sync or pull came to: stored, or left on the feed.
pub fn stored_text(settings: &Settings, summary: &Summary) -> String {
    if settings.deferred {
        format!(
            "{} bytes stored, layers left on the feed until a client asks (download_policy)",
            summary.bytes_stored
        )
    } else {
        format!("{} bytes stored", summary.bytes_stored)
    }
}

/// Add the units of a tag whose blobs are all stored (or left on the
/// feed): its blobs (recording `upstream`, the name they came from, when
/// given), manifests, and the tag. `Ok(Err(why))` when a blob failed.
pub fn add_pending<H: Host>(
    host: &mut H,
    p: &Pending,
    failed: &HashMap<String, String>,
    upstream: Option<&str>,
    summary: &mut Summary,
) -> Result<Result<(), String>, Error> {
    if let Some((digest, why)) = p
        .blobs
        .keys()
        .find_map(|d| failed.get(d).map(|why| (d, why)))
    {
        return Ok(Err(format!("tag {}: blob {digest}: {why}", p.tag)));
    }
    for (digest, (media_type, size)) in &p.blobs {
        let mut unit = model::blob_unit(digest, media_type, *size);
        if let Some(name) = upstream {
            unit = model::blob_unit_from(digest, media_type, *size, name);
        }
        host.add_unit(&unit)?;
        summary.units_added += 1;
    }
    for (digest, meta) in &p.manifests {
        host.add_unit(&model::manifest_unit(digest, meta))?;
        summary.units_added += 1;
    }
    if !p.tag.is_empty() {
        let change = model::set_tag(host, &p.tag, &p.digest)?;
        summary.units_added += u64::from(change.added);
        summary.units_removed += change.removed;
    }
    Ok(Ok(()))
}

fn list_tags<H: Host>(
    client: &mut Client<'_, H>,
    settings: &Settings,
) -> Result<Vec<String>, Error> {
    let mut url = format!("{}/tags/list", client.base);
    let mut seen = HashSet::new();
    let mut tags = Vec::new();
    while seen.insert(url.clone()) && seen.len() <= MAX_PAGES {
        let response = client.get(&url, None, MAX_JSON)?;
        if response.status == 404 {
            return Err(Error::new(
                "not-found",
                format!("{} has no repository {}", settings.feed, settings.upstream),
            ));
        }
        ensure_ok(&response, &url)?;
        let page: TagsPage = serde_json::from_slice(&response.body).map_err(|e| {
            Error::new(
                UPSTREAM,
                format!(
                    "{url} answered an invalid tag list (at {})",
                    json_error_at(&e)
                ),
            )
        })?;
        tags.extend(
            page.tags
                .unwrap_or_default()
                .into_iter()
                .filter(|t| is_valid_tag(t)),
        );
        match response.header("link").and_then(next_link) {
            Some(next) => url = absolute_url(&settings.feed, &next),
            None => break,
        }
    }
    tags.sort();
    tags.dedup();
    Ok(tags)
}

/// Store a tag's manifest and work out what it still needs; `None` when the
/// repository already has the tag pointing at the same manifest.
pub fn plan_tag<H: Host>(
    client: &mut Client<'_, H>,
    tag: &str,
    response: &HttpResponse,
    url: &str,
    current: &BTreeMap<String, BTreeSet<String>>,
    summary: &mut Summary,
) -> Result<Option<Pending>, Error> {
    ensure_ok(response, url)?;
    let expect = response
        .header("docker-content-digest")
        .filter(|d| is_sha256_digest(d));
    let points_at = |digest: &str| {
        current
            .get(tag)
            .is_some_and(|m| m.len() == 1 && m.contains(digest))
    };
    // Unchanged per the upstream's digest header: not even the manifest
    // bytes need to go back to the host.
    if let Some(d) = expect
        && points_at(d)
        && client.host.get_unit(MANIFEST, d)?.is_some()
    {
        return Ok(None);
    }
    let digest = client.host.store_bytes(&response.body, expect)?;
    let has_manifest = client.host.get_unit(MANIFEST, &digest)?.is_some();
    if points_at(&digest) && has_manifest {
        return Ok(None);
    }
    let mut pending = Pending {
        tag: tag.to_string(),
        digest: digest.clone(),
        manifests: Vec::new(),
        blobs: BTreeMap::new(),
    };
    if !has_manifest {
        summary.bytes_stored += response.body.len() as u64;
        let declared = response.header("content-type");
        collect(
            client,
            &digest,
            &response.body,
            declared,
            None,
            &mut pending,
            0,
        )?;
    }
    Ok(Some(pending))
}

/// Record a manifest and what it references, fetching child manifests of an
/// index unless the repository already has them.
fn collect<H: Host>(
    client: &mut Client<'_, H>,
    digest: &str,
    body: &[u8],
    declared: Option<&str>,
    platform: Option<serde_json::Value>,
    pending: &mut Pending,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(
            UPSTREAM,
            format!("indexes nest more than {MAX_DEPTH} deep at {digest}"),
        ));
    }
    let parsed = manifest::parse(body, declared.map(essence).as_deref())
        .map_err(|e| Error::new(UPSTREAM, format!("manifest {digest}: {e}")))?;
    match &parsed.kind {
        Kind::List { manifests } => {
            for child in manifests {
                let known = pending.manifests.iter().any(|(d, _)| *d == child.digest)
                    || client.host.get_unit(MANIFEST, &child.digest)?.is_some();
                if known {
                    continue;
                }
                let url = format!("{}/manifests/{}", client.base, child.digest);
                let response = client.get(&url, Some(ACCEPT_ALL), MAX_MANIFEST)?;
                ensure_ok(&response, &url)?;
                client
                    .host
                    .store_bytes(&response.body, Some(&child.digest))?;
                let declared = Some(child.media_type.as_str()).filter(|m| !m.is_empty());
                collect(
                    client,
                    &child.digest,
                    &response.body,
                    declared,
                    child.platform.clone(),
                    pending,
                    depth + 1,
                )?;
            }
        }
        Kind::Image { config, layers } => {
            for blob in std::iter::once(config)
                .chain(layers)
                .filter(|b| !b.is_foreign())
            {
                pending
                    .blobs
                    .insert(blob.digest.clone(), (blob.media_type.clone(), blob.size));
            }
        }
    }
    pending.manifests.push((
        digest.to_string(),
        ManifestMeta::new(&parsed, body.len() as u64, platform),
    ));
    Ok(())
}

/// Download every blob the pending tags need and the host lacks (`deferred`:
/// have the host leave them on the feed). Returns the digests that failed,
/// with why.
pub fn download<H: Host>(
    client: &mut Client<'_, H>,
    pending: &[Pending],
    deferred: bool,
    summary: &mut Summary,
) -> Result<HashMap<String, String>, Error> {
    let mut needed: BTreeMap<&str, u64> = BTreeMap::new();
    for p in pending {
        for (digest, (_, size)) in &p.blobs {
            if !needed.contains_key(digest.as_str()) && client.host.stat(digest).is_none() {
                needed.insert(digest, *size);
            }
        }
    }
    let total_items = needed.len() as u64;
    let total_bytes: u64 = needed.values().sum();
    let mut failed: HashMap<String, String> = HashMap::new();
    let (mut items, mut bytes) = (0u64, 0u64);
    let todo: Vec<(&str, u64)> = needed.into_iter().collect();
    for batch in todo.chunks(DOWNLOAD_BATCH) {
        let mut results = fetch(client, batch);
        // A token may expire during a long sync: renew once and retry.
        if results.iter().any(Result::is_err) && client.renew()? {
            let retry: Vec<(&str, u64)> = batch
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_err())
                .map(|(b, _)| *b)
                .collect();
            let mut again = fetch(client, &retry).into_iter();
            for r in results.iter_mut().filter(|r| r.is_err()) {
                *r = again
                    .next()
                    .unwrap_or_else(|| Err(Error::new(UPSTREAM, "no answer")));
            }
        }
        for ((digest, size), result) in batch.iter().zip(results) {
            match result {
                Ok(_) => {
                    items += 1;
                    bytes += size;
                    if !deferred {
                        summary.bytes_stored += size;
                    }
                }
                Err(e) => {
                    failed.insert(digest.to_string(), e.message);
                }
            }
        }
        client
            .host
            .progress(items, total_items, bytes, total_bytes, "downloading blobs");
    }
    Ok(failed)
}

fn fetch<H: Host>(client: &mut Client<'_, H>, batch: &[(&str, u64)]) -> Vec<Result<String, Error>> {
    let headers = client.headers(None);
    let downloads: Vec<BlobDownload> = batch
        .iter()
        .map(|(digest, size)| BlobDownload {
            url: client.blob_url(digest),
            headers: headers.clone(),
            digest: digest.to_string(),
            // The descriptor's size: the host reads no more than this.
            size: Some(*size),
        })
        .collect();
    client.host.fetch_blobs(&downloads)
}

#[cfg(test)]
mod tests;
