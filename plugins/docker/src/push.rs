//! Pushes: blob uploads (monolithic, chunked, cross-repository mount),
//! manifest PUT by tag or digest, and manifest/tag DELETE.
//!
//! A push takes two calls. `resolve` ([`plan`]) finds the repository the
//! name belongs to and tells the host where the request body goes (a new or
//! an existing upload session); the host streams it to disk, checks the
//! caller may change that repository, and calls `write` ([`write`]), which
//! answers and records units. Blob bytes never enter the plugin: a finished
//! upload is committed by the host, hashing as it goes.
//!
//! A write that changes units tells the host's event listeners what it did
//! (`written.events`): a manifest PUT is `pushed`, a DELETE `deleted`.

use crate::manifest::{self, Kind, MAX_MANIFEST};
use crate::model::{self, MANIFEST, ManifestMeta, TAG};
use crate::publish::{parse_config, registry_name};
use crate::reference::{is_valid_digest, is_valid_name, is_valid_tag};
use crate::referrers::SUBJECT_HEADER;
use crate::routes::{Registry, Route, digest_header, digest_invalid, failure, parse_path};
use wharf_sdk::host::{Host, Sessions};
use wharf_sdk::percent::query_param;
use wharf_sdk::{
    Body, BodyTarget, ContentAction, ContentEvent, Error, Failure, Header, Plan, Repository,
    Request, WritePlan, Written,
};

/// Blob uploads have no size limit of their own: the host caps every
/// session at the server's maximum blob size (`--max-blob-size`).
const MAX_BLOB: u64 = u64::MAX;

fn header(name: &str, value: impl Into<String>) -> Header {
    Header {
        name: name.to_string(),
        value: value.into(),
    }
}

/// A body-less answer with headers.
fn empty(status: u16, headers: Vec<Header>) -> Plan {
    Plan::Body(Body {
        status,
        content_type: String::new(),
        headers,
        body: Vec::new(),
    })
}

fn method_is(req: &Request, m: &str) -> bool {
    req.method.eq_ignore_ascii_case(m)
}

/// The repository a push to `name` changes: the published one, else
/// [`repository_named`] `name`.
fn push_target<R: Registry>(registry: &mut R, name: &str) -> Result<String, Failure> {
    if let Some(p) = registry.lookup(name) {
        return Ok(p.repository_id);
    }
    repository_named(registry, name)
}

/// The repository whose `repo_registry_id` is `name`, else the one whose id
/// is `name` (its default registry name), published or not; `NAME_UNKNOWN`
/// when there is none.
pub fn repository_named<R: Registry>(registry: &mut R, name: &str) -> Result<String, Failure> {
    let found = registry.find_repositories("repo_registry_id", name);
    match found.as_slice() {
        [one] => return Ok(one.id.clone()),
        [] => {}
        many => {
            let ids: Vec<&str> = many.iter().map(|r| r.id.as_str()).collect();
            return Err(failure(
                400,
                "NAME_INVALID",
                format!(
                    "several repositories are registered under {name}: {}; give each its own repo_registry_id",
                    ids.join(", ")
                ),
            ));
        }
    }
    if let Some(repo) = registry.repository(name)
        && parse_config(&repo.distributor_config)
            .and_then(|c| registry_name(&c, &repo.id))
            .is_ok_and(|n| n == name)
    {
        return Ok(repo.id);
    }
    Err(failure(
        404,
        "NAME_UNKNOWN",
        format!(
            "no repository is registered under the name {name}; create one first, e.g. \
             `wharf docker repo create --repo-id <id> --repo-registry-id {name} --auto-publish true`"
        ),
    ))
}

fn write_plan(repository: String, body: BodyTarget, max_body: u64) -> Plan {
    Plan::Write(WritePlan {
        repository,
        body,
        max_body,
    })
}

fn unsupported(req: &Request, what: &str) -> Failure {
    failure(
        405,
        "UNSUPPORTED",
        format!("{} is not supported on {what}", req.method),
    )
}

/// `resolve` for methods other than GET and HEAD.
pub fn plan<R: Registry>(registry: &mut R, req: &Request, route: Route) -> Result<Plan, Failure> {
    match route {
        Route::Uploads { name } if method_is(req, "POST") => {
            // A mount is decided in `write` (the host notes the blob as
            // received there); the session is its fallback.
            let repo = push_target(registry, &name)?;
            Ok(write_plan(repo, BodyTarget::NewSession, MAX_BLOB))
        }
        Route::Upload { name, id } => {
            let repo = push_target(registry, &name)?;
            if method_is(req, "PATCH") || method_is(req, "PUT") {
                Ok(write_plan(repo, BodyTarget::Session(id), MAX_BLOB))
            } else if method_is(req, "DELETE") {
                Ok(write_plan(repo, BodyTarget::None, 0))
            } else {
                Err(unsupported(req, "a blob upload"))
            }
        }
        Route::Manifest { name, .. } if method_is(req, "PUT") => {
            let repo = push_target(registry, &name)?;
            Ok(write_plan(repo, BodyTarget::NewSession, MAX_MANIFEST))
        }
        Route::Manifest { name, .. } if method_is(req, "DELETE") => {
            let repo = push_target(registry, &name)?;
            Ok(write_plan(repo, BodyTarget::None, 0))
        }
        Route::Blob { .. } => Err(failure(
            405,
            "UNSUPPORTED",
            "blobs are removed by orphan cleanup once no manifest needs them, not by DELETE",
        )),
        _ => Err(unsupported(req, "this route")),
    }
}

/// `GET /v2/<name>/blobs/uploads/<id>`: how much of an upload arrived.
pub fn upload_status<R: Registry>(registry: &mut R, name: &str, id: &str) -> Result<Plan, Failure> {
    let len = registry
        .session_length(id)
        .ok_or_else(|| upload_unknown(id))?;
    Ok(empty(204, upload_headers(name, id, len)))
}

fn upload_unknown(id: &str) -> Failure {
    failure(
        404,
        "BLOB_UPLOAD_UNKNOWN",
        format!("blob upload {id} is not known (finished, canceled or never started)"),
    )
}

fn upload_headers(name: &str, id: &str, len: u64) -> Vec<Header> {
    vec![
        header("Location", format!("/v2/{name}/blobs/uploads/{id}")),
        // Inclusive end; "0-0" for an empty upload, as distribution says.
        header("Range", format!("0-{}", len.saturating_sub(1))),
        header("Docker-Upload-UUID", id),
    ]
}

fn blob_created(name: &str, digest: &str) -> Vec<Header> {
    let mut headers = digest_header(digest);
    headers.push(header("Location", format!("/v2/{name}/blobs/{digest}")));
    headers
}

/// Settings of the repository a write changes.
fn auto_publish(repo: &Repository) -> bool {
    parse_config(&repo.distributor_config).is_ok_and(|c| c.auto_publish.unwrap_or(false))
}

/// `write`: carry out what [`plan`] asked for.
pub fn write<H: Host + Sessions>(
    host: &mut H,
    req: &Request,
    repo: &Repository,
    session: Option<&str>,
) -> Written {
    match write_route(host, req, session) {
        Ok(Changed::No(plan)) => Written::answer(plan),
        Ok(Changed::Yes(plan, event)) => Written {
            plan,
            publish: auto_publish(repo),
            events: vec![event],
        },
        Err(f) => Written::answer(Plan::Error(f)),
    }
}

/// Whether an answer changed the repository's units (and so may publish),
/// and what it did, for the event listeners.
enum Changed {
    No(Plan),
    Yes(Plan, ContentEvent),
}

fn event(action: ContentAction, reference: &str, digest: Option<String>) -> ContentEvent {
    ContentEvent {
        action,
        reference: reference.to_string(),
        digest,
    }
}

fn host_failure(e: Error) -> Failure {
    failure(500, "UNKNOWN", format!("{}: {}", e.code, e.message))
}

fn write_route<H: Host + Sessions>(
    host: &mut H,
    req: &Request,
    session: Option<&str>,
) -> Result<Changed, Failure> {
    let route = parse_path(&req.path)?;
    let session = || session.ok_or_else(|| failure(500, "UNKNOWN", "the host sent no session"));
    match route {
        Route::Uploads { name } => {
            let id = session()?;
            // Cross-repository mount: the bytes are stored already. The host
            // notes them as received by this repository only if the pusher
            // may see them (a repository it may read holds them); otherwise
            // the client uploads into the session, as the spec says.
            if let Some(mount) = mount_of(req)
                && host.receive(&mount)
            {
                host.abort(id);
                return Ok(Changed::No(empty(201, blob_created(&name, &mount))));
            }
            match query_param(&req.query, "digest") {
                // Monolithic: the whole blob came with the POST.
                Some(digest) => commit_blob(host, &name, id, &digest).map(Changed::No),
                None => {
                    let len = host.length(id).ok_or_else(|| upload_unknown(id))?;
                    Ok(Changed::No(empty(202, upload_headers(&name, id, len))))
                }
            }
        }
        Route::Upload { name, id } if method_is(req, "PATCH") => {
            let len = host.length(&id).ok_or_else(|| upload_unknown(&id))?;
            Ok(Changed::No(empty(202, upload_headers(&name, &id, len))))
        }
        Route::Upload { name, id } if method_is(req, "PUT") => {
            let digest = query_param(&req.query, "digest").ok_or_else(|| {
                failure(
                    400,
                    "DIGEST_INVALID",
                    "finish an upload with PUT ...?digest=sha256:<hex>",
                )
            })?;
            commit_blob(host, &name, &id, &digest).map(Changed::No)
        }
        Route::Upload { id, .. } => {
            if host.abort(&id) {
                Ok(Changed::No(empty(204, Vec::new())))
            } else {
                Err(upload_unknown(&id))
            }
        }
        Route::Manifest { name, reference } if method_is(req, "PUT") => {
            let (plan, digest) = put_manifest(host, req, &name, &reference, session()?)?;
            let pushed = event(ContentAction::Pushed, &reference, Some(digest));
            Ok(Changed::Yes(plan, pushed))
        }
        Route::Manifest { name, reference } => {
            let digest = delete_manifest(host, &name, &reference)?;
            let deleted = event(ContentAction::Deleted, &reference, Some(digest));
            Ok(Changed::Yes(empty(202, Vec::new()), deleted))
        }
        _ => Err(unsupported(req, "this route")),
    }
}

/// The digest a POST asks to mount (`?mount=<digest>[&from=<name>]`).
fn mount_of(req: &Request) -> Option<String> {
    let mount = query_param(&req.query, "mount").filter(|d| is_valid_digest(d))?;
    match query_param(&req.query, "from") {
        Some(from) if !is_valid_name(&from) => None,
        _ => Some(mount),
    }
}

fn commit_blob<H: Sessions>(
    host: &mut H,
    name: &str,
    id: &str,
    digest: &str,
) -> Result<Plan, Failure> {
    if !is_valid_digest(digest) {
        host.abort(id);
        return Err(digest_invalid(digest));
    }
    match host.commit(id, Some(digest)) {
        Ok(stored) => Ok(empty(201, blob_created(name, &stored))),
        Err(e) if e.code == "digest-mismatch" => Err(failure(
            400,
            "DIGEST_INVALID",
            format!("the uploaded bytes do not match {digest}: {}", e.message),
        )),
        Err(e) if e.code == "not-found" => Err(upload_unknown(id)),
        Err(e) => Err(host_failure(e)),
    }
}

fn manifest_invalid(message: impl Into<String>) -> Failure {
    failure(400, "MANIFEST_INVALID", message)
}

/// Store and record a manifest; the answer and the manifest's digest.
fn put_manifest<H: Host + Sessions>(
    host: &mut H,
    req: &Request,
    name: &str,
    reference: &str,
    session: &str,
) -> Result<(Plan, String), Failure> {
    let by_digest = reference.contains(':');
    if by_digest && !is_valid_digest(reference) {
        host.abort(session);
        return Err(digest_invalid(reference));
    }
    if !by_digest && !is_valid_tag(reference) {
        host.abort(session);
        return Err(failure(
            400,
            "TAG_INVALID",
            format!("invalid tag {reference:?}"),
        ));
    }
    let len = host
        .length(session)
        .ok_or_else(|| upload_unknown(session))?;
    if len == 0 {
        host.abort(session);
        return Err(manifest_invalid("the manifest is empty"));
    }
    let expect = by_digest.then_some(reference);
    let digest = host.commit(session, expect).map_err(|e| {
        if e.code == "digest-mismatch" {
            failure(
                400,
                "DIGEST_INVALID",
                format!("the manifest does not match {reference}: {}", e.message),
            )
        } else {
            host_failure(e)
        }
    })?;
    let bytes = host
        .read_blob(&digest, MAX_MANIFEST)
        .map_err(host_failure)?;
    let content_type = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value.as_str());
    let parsed = manifest::parse(&bytes, content_type).map_err(manifest_invalid)?;
    // Every referenced blob must be stored with the size the manifest says,
    // and every child of an index must be a manifest of this repository.
    let mut blob_units = Vec::new();
    match &parsed.kind {
        Kind::Image { config, layers } => {
            for d in std::iter::once(config)
                .chain(layers)
                .filter(|d| !d.is_foreign())
            {
                match host.stat(&d.digest) {
                    Some(size) if size == d.size => {
                        blob_units.push(model::blob_unit(&d.digest, &d.media_type, d.size))
                    }
                    Some(size) => {
                        return Err(manifest_invalid(format!(
                            "blob {} is {size} bytes, the manifest says {}",
                            d.digest, d.size
                        )));
                    }
                    None => {
                        return Err(failure(
                            400,
                            "MANIFEST_BLOB_UNKNOWN",
                            format!("blob {} is not stored; push it first", d.digest),
                        ));
                    }
                }
            }
        }
        Kind::List { manifests } => {
            for child in manifests {
                if host
                    .get_unit(MANIFEST, &child.digest)
                    .map_err(host_failure)?
                    .is_none()
                {
                    return Err(failure(
                        400,
                        "MANIFEST_BLOB_UNKNOWN",
                        format!(
                            "manifest {} is not in {name}; push it (by digest) first",
                            child.digest
                        ),
                    ));
                }
            }
        }
    }
    for unit in &blob_units {
        host.add_unit(unit).map_err(host_failure)?;
    }
    let meta = ManifestMeta::new(&parsed, len, None);
    host.add_unit(&model::manifest_unit(&digest, &meta))
        .map_err(host_failure)?;
    if !by_digest {
        model::set_tag(host, reference, &digest).map_err(host_failure)?;
    }
    let mut headers = digest_header(&digest);
    headers.push(header("Location", format!("/v2/{name}/manifests/{digest}")));
    if let Some(subject) = &parsed.subject {
        headers.push(header(SUBJECT_HEADER, subject.digest.as_str()));
    }
    Ok((empty(201, headers), digest))
}

/// Remove a manifest (by digest, with every tag on it) or a tag; the digest
/// of the manifest it named.
fn delete_manifest<H: Host>(host: &mut H, name: &str, reference: &str) -> Result<String, Failure> {
    let unknown = || {
        failure(
            404,
            "MANIFEST_UNKNOWN",
            format!("manifest {reference} is not in {name}"),
        )
    };
    if reference.contains(':') {
        if !is_valid_digest(reference) {
            return Err(digest_invalid(reference));
        }
        if !host
            .remove_unit(MANIFEST, reference)
            .map_err(host_failure)?
        {
            return Err(unknown());
        }
        // Tags pointing at it go with it, as in distribution: a tag unit
        // names its manifest among its blobs, so the host finds them.
        for tag in wharf_sdk::paging::naming_all(host, reference, TAG).map_err(host_failure)? {
            let meta = model::tag_meta(&tag).map_err(host_failure)?;
            if meta.manifest == reference {
                host.remove_unit(TAG, &tag.key).map_err(host_failure)?;
            }
        }
    } else {
        if !is_valid_tag(reference) {
            return Err(failure(
                400,
                "TAG_INVALID",
                format!("invalid tag {reference:?}"),
            ));
        }
        return model::remove_tag(host, reference)
            .map_err(host_failure)?
            .ok_or_else(unknown);
    }
    Ok(reference.to_string())
}

#[cfg(test)]
mod tests;
