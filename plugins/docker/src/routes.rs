//! The registry side: Docker Registry HTTP API V2 (and OCI Distribution
//! 1.1) requests resolved into plans. Reads are answered here, the referrers
//! API in [`crate::referrers`]; writes (pushes) are planned in [`crate::push`].
//!
//! A name no repository has is `NAME_UNKNOWN`; a repository that exists but
//! is not published yet reads as an empty one (no tags, no manifests, no
//! referrers), except for blobs pushed to it, which the host serves.

use crate::index::View;
use crate::manifest::essence;
use crate::pull;
use crate::reference::{is_valid_digest, is_valid_name, is_valid_tag};
use crate::referrers;
use crate::shards::ShardRead;
use std::rc::Rc;
use wharf_sdk::publications::Publication;
use wharf_sdk::{
    Body, ErrorFormat, Failure, Header, Naming, Plan, Refusal, Repository, Request, ServeBlob,
    percent,
};

/// Manifests up to this size are answered inline from the instance's cache
/// (no file open or read in the host per request); larger ones are served
/// by the host from the blob store.
pub const MAX_INLINE_MANIFEST: u64 = 256 << 10;

/// Catalog page size when the client gives no `n`.
const DEFAULT_CATALOG_PAGE: usize = 1000;
/// Largest page we answer, whatever `n` says.
const MAX_PAGE: usize = 10_000;

/// What the registry reads: publications and their indexes (a root, and
/// its shards through [`ShardRead`]), and for pushes the repositories, stored
/// blobs and upload sessions.
pub trait Registry: ShardRead {
    fn lookup(&mut self, name: &str) -> Option<Publication>;
    fn names(&mut self, after: Option<&str>, limit: u32) -> Vec<String>;
    /// The index root of a publication; implementations cache it.
    fn index(&mut self, digest: &str) -> Result<Rc<View>, String>;
    /// The bytes of a published manifest of `size` bytes (at most
    /// [`MAX_INLINE_MANIFEST`]); implementations cache them.
    fn manifest(&mut self, digest: &str, size: u64) -> Result<Rc<Vec<u8>>, String>;
    /// A repository of this content type by id.
    fn repository(&mut self, id: &str) -> Option<Repository>;
    /// Repositories whose distributor setting `key` is `value`.
    fn find_repositories(&mut self, key: &str, value: &str) -> Vec<Repository>;
    /// Size of a stored blob.
    fn blob_size(&mut self, digest: &str) -> Option<u64>;
    /// Bytes an upload session has received.
    fn session_length(&mut self, id: &str) -> Option<u64>;
}

#[derive(Debug, PartialEq)]
pub enum Route {
    Base,
    Catalog,
    Tags {
        name: String,
    },
    Manifest {
        name: String,
        reference: String,
    },
    Blob {
        name: String,
        digest: String,
    },
    /// `/v2/<name>/blobs/uploads/`: start a blob upload.
    Uploads {
        name: String,
    },
    /// `/v2/<name>/blobs/uploads/<id>`: one blob upload.
    Upload {
        name: String,
        id: String,
    },
    /// `/v2/<name>/referrers/<digest>`: the manifests whose subject is `digest`.
    Referrers {
        name: String,
        digest: String,
    },
}

/// The Docker Registry HTTP API's error envelope and codes, for the host's
/// refusals on `/v2/` and for this plugin's own failures.
pub fn error_format() -> ErrorFormat {
    ErrorFormat::json(r#"{"errors":[{"code":"{code}","message":"{message}","detail":{}}]}"#)
        .code(Refusal::NameInvalid, "NAME_INVALID")
        .code(Refusal::Unauthorized, "UNAUTHORIZED")
        .code(Refusal::Denied, "DENIED")
        .code(Refusal::NameUnknown, "NAME_UNKNOWN")
        .code(Refusal::BlobUnknown, "BLOB_UNKNOWN")
        .code(Refusal::UploadInvalid, "BLOB_UPLOAD_INVALID")
        .code(Refusal::UploadUnknown, "BLOB_UPLOAD_UNKNOWN")
        .code(Refusal::TooLarge, "SIZE_INVALID")
        .code(Refusal::TooManyRequests, "TOOMANYREQUESTS")
        .code(Refusal::Unavailable, "UNAVAILABLE")
        .code(Refusal::Internal, "UNKNOWN")
        .header("Docker-Distribution-API-Version", "registry/2.0")
}

/// Names are everything between `/v2/` and the last of these markers;
/// a repository's name is its `repo_registry_id`, else its id; a push to a
/// new name creates a repository that publishes on push.
pub fn naming() -> Naming {
    Naming {
        markers: ["/manifests/", "/blobs/", "/tags/list", "/referrers/"]
            .map(String::from)
            .to_vec(),
        name_setting: Some("repo_registry_id".to_string()),
        create_on_push: Some(r#"{"auto_publish":true}"#.to_string()),
    }
}

pub fn failure(status: u16, code: &str, message: impl Into<String>) -> Failure {
    Failure {
        status,
        code: code.to_string(),
        message: message.into(),
    }
}

/// Map a URL path to a route. Names have several segments, so the path is
/// split at the last `/manifests/`, `/blobs/`, `/referrers/` or `/tags/list`.
pub fn parse_path(raw: &str) -> Result<Route, Failure> {
    let decoded = percent::decode(raw);
    let path = decoded.as_deref().unwrap_or(raw);
    let not_found = || failure(404, "NOT_FOUND", format!("no registry route for {raw}"));
    let rest = match path {
        "/v2" | "/v2/" => return Ok(Route::Base),
        "/v2/_catalog" => return Ok(Route::Catalog),
        p => p.strip_prefix("/v2/").ok_or_else(not_found)?,
    };
    let name_of = |name: &str| -> Result<String, Failure> {
        if is_valid_name(name) {
            Ok(name.to_string())
        } else {
            Err(failure(
                400,
                "NAME_INVALID",
                format!("invalid repository name {name:?}"),
            ))
        }
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags {
            name: name_of(name)?,
        });
    }
    let at = |marker: &str| rest.rfind(marker).map(|i| (i, marker.len()));
    let manifests = at("/manifests/");
    let blobs = at("/blobs/");
    let referrers = at("/referrers/");
    let Some((at, skip)) = manifests.max(blobs).max(referrers) else {
        return Err(not_found());
    };
    let (name, target) = (&rest[..at], &rest[at + skip..]);
    let name = name_of(name)?;
    if referrers == Some((at, skip)) {
        return Ok(Route::Referrers {
            name,
            digest: target.to_string(),
        });
    }
    if blobs == Some((at, skip)) {
        if target == "uploads" || target == "uploads/" {
            return Ok(Route::Uploads { name });
        }
        if let Some(id) = target.strip_prefix("uploads/") {
            return Ok(Route::Upload {
                name,
                id: id.to_string(),
            });
        }
        return Ok(Route::Blob {
            name,
            digest: target.to_string(),
        });
    }
    Ok(Route::Manifest {
        name,
        reference: target.to_string(),
    })
}

/// `n` and `last` of a paginated listing.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub n: Option<usize>,
    pub last: Option<String>,
}

pub fn parse_page(query: &str) -> Result<Page, Failure> {
    let mut page = Page::default();
    for (key, value) in percent::query_pairs(query) {
        match key {
            "n" => {
                let n = value.parse::<usize>().map_err(|_| {
                    failure(
                        400,
                        "PAGINATION_NUMBER_INVALID",
                        format!("n={value:?} is not a number"),
                    )
                })?;
                page.n = Some(n);
            }
            "last" if !value.is_empty() => page.last = Some(value),
            _ => {}
        }
    }
    Ok(page)
}

/// Whether a client that sent these headers takes `media_type`. No Accept
/// header (or an empty one) and wildcards take anything; parameters are ignored.
pub fn accepts(headers: &[Header], media_type: &str) -> bool {
    let mut listed = false;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("accept"))
    {
        for item in h.value.split(',') {
            let item = essence(item);
            if item.is_empty() {
                continue;
            }
            if item.contains('*') || item == media_type {
                return true;
            }
            listed = true;
        }
    }
    !listed
}

/// Whether an `If-None-Match` header names the entity tag `"<digest>"` (or `*`).
pub fn if_none_match(headers: &[Header], digest: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("if-none-match"))
        .flat_map(|h| h.value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| {
            tag == "*" || tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')) == Some(digest)
        })
}

pub fn json_body(value: serde_json::Value, headers: Vec<Header>) -> Plan {
    Plan::Body(Body {
        status: 200,
        content_type: "application/json".to_string(),
        headers,
        body: value.to_string().into_bytes(),
    })
}

fn next_link(path: &str, n: usize, last: &str) -> Header {
    Header {
        name: "Link".to_string(),
        value: format!("<{path}?n={n}&last={last}>; rel=\"next\""),
    }
}

pub fn digest_header(digest: &str) -> Vec<Header> {
    vec![Header {
        name: "Docker-Content-Digest".to_string(),
        value: digest.to_string(),
    }]
}

/// Answer a request on `/v2/`.
pub fn resolve<R: Registry>(registry: &mut R, req: &Request) -> Plan {
    resolve_route(registry, req).unwrap_or_else(Plan::Error)
}

fn resolve_route<R: Registry>(registry: &mut R, req: &Request) -> Result<Plan, Failure> {
    let route = parse_path(&req.path)?;
    if !(req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("HEAD")) {
        return crate::push::plan(registry, req, route);
    }
    match route {
        Route::Base => Ok(json_body(
            serde_json::json!({}),
            vec![Header {
                name: "Docker-Distribution-API-Version".into(),
                value: "registry/2.0".into(),
            }],
        )),
        Route::Catalog => {
            let page = parse_page(&req.query)?;
            let n = page.n.unwrap_or(DEFAULT_CATALOG_PAGE).min(MAX_PAGE);
            let mut names = if n == 0 {
                Vec::new()
            } else {
                registry.names(page.last.as_deref(), n as u32 + 1)
            };
            let more = names.len() > n;
            names.truncate(n);
            let link = names
                .last()
                .filter(|_| more)
                .map(|last| next_link("/v2/_catalog", n, last));
            Ok(json_body(
                serde_json::json!({ "repositories": names }),
                link.into_iter().collect(),
            ))
        }
        Route::Tags { name } => {
            let named = named(registry, &name)?;
            let page = parse_page(&req.query)?;
            // Without `n`, all tags, as distribution does.
            let n = page.n.map_or(usize::MAX, |n| n.min(MAX_PAGE));
            // A pull-through repository's tags of this upstream name are
            // listed by their tag alone.
            let prefix = named
                .upstream()
                .map_or(String::new(), |upstream| format!("{upstream}:"));
            let after = page.last.as_deref().map(|last| format!("{prefix}{last}"));
            let mut tags: Vec<String> = match named.index() {
                Some(index) => index
                    .tags(registry, after.as_deref(), &prefix, n.saturating_add(1))
                    .map_err(|e| unreadable(&name, e))?
                    .into_iter()
                    .map(|t| t[prefix.len()..].to_string())
                    .collect(),
                None => Vec::new(),
            };
            let more = tags.len() > n;
            tags.truncate(n);
            let link = tags
                .last()
                .filter(|_| more)
                .map(|last| next_link(&format!("/v2/{name}/tags/list"), n, last));
            Ok(json_body(
                serde_json::json!({ "name": name, "tags": tags }),
                link.into_iter().collect(),
            ))
        }
        Route::Manifest { name, reference } => {
            let named = named(registry, &name)?;
            let unknown = || {
                failure(
                    404,
                    "MANIFEST_UNKNOWN",
                    format!("manifest {reference} is not in {name}"),
                )
            };
            let by_digest = reference.contains(':');
            if by_digest && !is_valid_digest(&reference) {
                return Err(digest_invalid(&reference));
            }
            if !by_digest && !is_valid_tag(&reference) {
                return Err(failure(
                    400,
                    "TAG_INVALID",
                    format!("invalid tag {reference:?}"),
                ));
            }
            let index = named.index().ok_or_else(unknown)?;
            if let Some(upstream) = named.upstream()
                && !req.pulled
            {
                // A pull-through cache asks the host to pull tags (unless
                // fresh) and digests it lacks.
                if !by_digest {
                    return Ok(Plan::Pull(pull::UpstreamRef::tag(upstream, &reference)));
                }
                let held = index
                    .manifest(registry, &reference)
                    .map_err(|e| unreadable(&name, e))?;
                if held.is_none() {
                    return Ok(Plan::Pull(pull::UpstreamRef::digest(upstream, &reference)));
                }
            }
            let tagged;
            let digest = if by_digest {
                &reference
            } else {
                let tag_key = match named.upstream() {
                    Some(upstream) => pull::tag_name(upstream, &reference),
                    None => reference.clone(),
                };
                tagged = index
                    .tag(registry, &tag_key)
                    .map_err(|e| unreadable(&name, e))?
                    .ok_or_else(unknown)?;
                &tagged
            };
            let entry = index
                .manifest(registry, digest)
                .map_err(|e| unreadable(&name, e))?
                .ok_or_else(unknown)?;
            if !accepts(&req.headers, &entry.media_type) {
                // We never convert between formats, so say what there is.
                return Err(failure(
                    404,
                    "MANIFEST_UNKNOWN",
                    format!(
                        "manifest {reference} of {name} exists only as {}, which the Accept header does not list",
                        entry.media_type
                    ),
                ));
            }
            let mut headers = digest_header(digest);
            headers.push(Header {
                name: "ETag".to_string(),
                value: format!("\"{digest}\""),
            });
            if reference.contains(':') {
                // By digest the answer never changes; by tag it may.
                headers.push(Header {
                    name: "Cache-Control".to_string(),
                    value: "max-age=31536000, immutable".to_string(),
                });
            }
            let body = |status: u16, body: Vec<u8>, headers: Vec<Header>| {
                Plan::Body(Body {
                    status,
                    content_type: entry.media_type.clone(),
                    headers,
                    body,
                })
            };
            if if_none_match(&req.headers, digest) {
                return Ok(body(304, Vec::new(), headers));
            }
            if entry.size <= MAX_INLINE_MANIFEST
                && let Ok(bytes) = registry.manifest(digest, entry.size)
            {
                return Ok(body(200, bytes.to_vec(), headers));
            }
            // Large, or unreadable here: the host serves (or reports) the blob.
            Ok(Plan::Blob(ServeBlob {
                digest: digest.clone(),
                media_type: entry.media_type.clone(),
                headers: digest_header(digest),
            }))
        }
        Route::Blob { name, digest } => {
            if !is_valid_digest(&digest) {
                return Err(digest_invalid(&digest));
            }
            let named = named(registry, &name)?;
            let published = match &named {
                Named::Published(publication, index)
                | Named::PullThrough(publication, index, _) => {
                    let has = index
                        .has_blob(registry, &digest)
                        .map_err(|e| unreadable(&name, e))?;
                    has.then_some(publication)
                }
                Named::Unpublished => None,
            };
            match published {
                Some(publication) => {
                    if req.method.eq_ignore_ascii_case("GET")
                        && let Some(base) = redirect_url(&publication.config)
                    {
                        return Ok(Plan::Redirect(format!(
                            "{}/{digest}",
                            base.trim_end_matches('/')
                        )));
                    }
                    Ok(serve_blob(&digest))
                }
                // Stored but not named by a published manifest (pushed,
                // not yet published): the host serves it only if this
                // repository received it through its own uploads.
                _ if registry.blob_size(&digest).is_some() => Ok(serve_blob(&digest)),
                _ => Err(failure(
                    404,
                    "BLOB_UNKNOWN",
                    format!("blob {digest} is not in {name}"),
                )),
            }
        }
        Route::Referrers { name, digest } => {
            let named = named(registry, &name)?;
            if !is_valid_digest(&digest) {
                return Err(digest_invalid(&digest));
            }
            let filter = referrers::Filter::parse(&req.query);
            let listed = match named.index() {
                Some(index) => index
                    .referrers(registry, &digest)
                    .map_err(|e| unreadable(&name, e))?,
                None => Vec::new(),
            };
            Ok(referrers::answer(&listed, &filter))
        }
        Route::Uploads { .. } => Err(failure(405, "UNSUPPORTED", "start a blob upload with POST")),
        Route::Upload { name, id } => crate::push::upload_status(registry, &name, &id),
    }
}

/// What a name on a read route is.
enum Named {
    /// A published repository: its publication and index.
    Published(Publication, Rc<View>),
    /// An upstream name below a published pull-through repository: the
    /// repository's publication and index, and the upstream name.
    PullThrough(Publication, Rc<View>, String),
    /// A repository that exists but has no publication yet.
    Unpublished,
}

impl Named {
    /// The published content; none before the first publish.
    fn index(&self) -> Option<Rc<View>> {
        match self {
            Named::Published(_, index) | Named::PullThrough(_, index, _) => Some(index.clone()),
            Named::Unpublished => None,
        }
    }

    /// The upstream name a pull-through repository is asked for.
    fn upstream(&self) -> Option<&str> {
        match self {
            Named::PullThrough(_, _, upstream) => Some(upstream),
            _ => None,
        }
    }
}

/// Whether a publication's distributor settings make it a pull-through
/// cache (`pull_through`).
fn is_pull_through(config: &str) -> bool {
    // Most publications are not; skip parsing their config.
    config.contains("pull_through")
        && serde_json::from_str::<serde_json::Value>(config)
            .ok()
            .and_then(|v| v.get("pull_through")?.as_bool())
            .unwrap_or(false)
}

/// The repository `name` names: `NAME_UNKNOWN` only when no repository has
/// that name.
fn named<R: Registry>(registry: &mut R, name: &str) -> Result<Named, Failure> {
    let Some(publication) = registry.lookup(name) else {
        crate::push::repository_named(registry, name)?;
        return Ok(Named::Unpublished);
    };
    let index = registry
        .index(&publication.index)
        .map_err(|e| unreadable(name, e))?;
    if publication.name != name {
        // The host admitted a name below a pull-through repository's.
        let upstream = name
            .strip_prefix(&publication.name)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|_| is_pull_through(&publication.config))
            .ok_or_else(|| {
                failure(
                    404,
                    "NAME_UNKNOWN",
                    format!("repository name {name} is not known to this registry"),
                )
            })?
            .to_string();
        return Ok(Named::PullThrough(publication, index, upstream));
    }
    Ok(Named::Published(publication, index))
}

/// The publication of `name` cannot be read (a missing or damaged blob).
fn unreadable(name: &str, e: String) -> Failure {
    failure(
        500,
        "UNKNOWN",
        format!("cannot read the publication of {name}: {e}"),
    )
}

pub fn digest_invalid(digest: &str) -> Failure {
    failure(400, "DIGEST_INVALID", format!("invalid digest {digest:?}"))
}

/// The host serves a stored blob (HEAD: its length, no body).
fn serve_blob(digest: &str) -> Plan {
    Plan::Blob(ServeBlob {
        digest: digest.to_string(),
        media_type: "application/octet-stream".to_string(),
        headers: digest_header(digest),
    })
}

/// Crane's redirect mode: blobs are served from `redirect_url/<digest>`.
fn redirect_url(config: &str) -> Option<String> {
    // Most publications have no redirect; skip parsing their config.
    if !config.contains("redirect_url") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(config).ok()?;
    value
        .get("redirect_url")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
pub(crate) mod tests;
