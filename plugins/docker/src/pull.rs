//! Remote content on request: a pull-through repository's `pull` of one
//! upstream reference, and `locate`, where the host downloads a blob that
//! a sync or pull left on the feed (`download_policy` `on_demand` or
//! `streamed`).
//!
//! A pull-through repository holds what it pulled from many upstream
//! names: its tags are named `<upstream name>:<tag>` (`library/alpine:3`),
//! and clients reach them as `<repository name>/<upstream name>:<tag>`
//! ([`crate::routes`]). A pulled blob records the upstream name it came
//! from, so that `locate` knows where it lives.

use crate::manifest::{ACCEPT_ALL, MAX_MANIFEST};
use crate::model::{BLOB, BlobMeta, TAG};
use crate::reference::{is_sha256_digest, is_valid_name, is_valid_tag};
use crate::sync::{self, Client};
use std::collections::{BTreeMap, BTreeSet};
use wharf_sdk::fetch::BlobDownload;
use wharf_sdk::host::Host;
use wharf_sdk::log::Level;
use wharf_sdk::paging::list_prefixed;
use wharf_sdk::{Error, Summary};

/// A reference as a `pull` plan names it: an upstream name with a tag or
/// a digest.
#[derive(Debug, PartialEq, Eq)]
pub struct UpstreamRef<'a> {
    pub name: &'a str,
    pub target: Target<'a>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    Tag(&'a str),
    Digest(&'a str),
}

impl<'a> UpstreamRef<'a> {
    /// `name:tag` or `name@sha256:…`.
    pub fn parse(reference: &'a str) -> Result<Self, Error> {
        let invalid = || Error::invalid(format!("{reference:?} is not name:tag or name@digest"));
        let (name, target) = match reference.split_once('@') {
            Some((name, digest)) if is_sha256_digest(digest) => (name, Target::Digest(digest)),
            Some(_) => return Err(invalid()),
            None => {
                let (name, tag) = reference.rsplit_once(':').ok_or_else(invalid)?;
                if !is_valid_tag(tag) {
                    return Err(invalid());
                }
                (name, Target::Tag(tag))
            }
        };
        if !is_valid_name(name) {
            return Err(invalid());
        }
        Ok(UpstreamRef { name, target })
    }

    /// The plan's words for a tag of `name`.
    pub fn tag(name: &str, tag: &str) -> String {
        format!("{name}:{tag}")
    }

    /// The plan's words for a manifest of `name` by digest.
    pub fn digest(name: &str, digest: &str) -> String {
        format!("{name}@{digest}")
    }
}

/// The name of the tag unit that holds `tag` of the upstream `name` in a
/// pull-through repository.
pub fn tag_name(name: &str, tag: &str) -> String {
    UpstreamRef::tag(name, tag)
}

/// Bring `reference` of the feed into the repository: its manifest (and,
/// for an index, its children), its blobs (left on the feed under an
/// `on_demand` or `streamed` policy), and for a tag the tag.
pub fn pull<H: Host>(
    host: &mut H,
    importer_config: &str,
    reference: &str,
) -> Result<Summary, Error> {
    let wanted = UpstreamRef::parse(reference)?;
    let settings = sync::pull_settings(importer_config, wanted.name)?;
    let mut summary = Summary {
        units_added: 0,
        units_removed: 0,
        bytes_stored: 0,
        message: String::new(),
    };
    let (tag, target) = match wanted.target {
        Target::Tag(t) => (tag_name(wanted.name, t), t),
        Target::Digest(d) => (String::new(), d),
    };
    // What the repository's tag of that name points at now.
    let mut current: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if !tag.is_empty() {
        for unit in list_prefixed(host, TAG, &format!("{tag}@"), 16)? {
            let meta = crate::model::tag_meta(&unit)?;
            current.entry(meta.name).or_default().insert(meta.manifest);
        }
    }
    let mut client = Client::new(host, &settings);
    let url = format!("{}/v2/{}/manifests/{target}", settings.feed, wanted.name);
    let response = client.get(&url, Some(ACCEPT_ALL), MAX_MANIFEST)?;
    if response.status == 404 {
        return Err(Error::not_found(format!(
            "{} has no {reference}",
            settings.feed
        )));
    }
    let pending = sync::plan_tag(&mut client, &tag, &response, &url, &current, &mut summary)?;
    let Some(pending) = pending else {
        summary.message = format!("{reference} from {}: unchanged", settings.feed);
        return Ok(summary);
    };
    if let Target::Digest(d) = wanted.target
        && pending.digest != d
    {
        return Err(Error::new(
            "digest-mismatch",
            format!("{url} answered manifest {} for {d}", pending.digest),
        ));
    }
    let failed = sync::download(
        &mut client,
        std::slice::from_ref(&pending),
        settings.deferred,
        &mut summary,
    )?;
    if let Err(why) = sync::add_pending(
        client.host,
        &pending,
        &failed,
        Some(wanted.name),
        &mut summary,
    )? {
        return Err(Error::new(
            "upstream-error",
            format!("pull of {reference} from {} failed: {why}", settings.feed),
        ));
    }
    summary.message = format!(
        "pulled {reference} from {} ({}): {}",
        settings.feed,
        pending.digest,
        sync::stored_text(&settings, &summary)
    );
    client.host.log(Level::Info, &summary.message);
    Ok(summary)
}

/// Where the host downloads `digest`, a blob of the repository left on its
/// feed: the upstream name it was pulled from (else the repository's
/// `upstream_name`), with credentials got now (tokens expire).
pub fn locate<H: Host>(
    host: &mut H,
    importer_config: &str,
    digest: &str,
) -> Result<BlobDownload, Error> {
    let unit = host
        .get_unit(BLOB, digest)?
        .ok_or_else(|| Error::not_found(format!("the repository has no blob {digest}")))?;
    let meta: BlobMeta = serde_json::from_str(&unit.metadata)
        .map_err(|e| Error::invalid(format!("blob {digest} has unreadable metadata: {e}")))?;
    let settings = match meta.upstream.as_deref() {
        Some(name) => sync::pull_settings(importer_config, name)?,
        None => sync::settings(importer_config)?,
    };
    let mut client = Client::new(host, &settings);
    client.authorize_pulls(&settings.feed)?;
    Ok(BlobDownload {
        url: client.blob_url(digest),
        headers: client.headers(None),
        digest: digest.to_string(),
        size: Some(meta.size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            UpstreamRef::parse("library/alpine:3.20").unwrap(),
            UpstreamRef {
                name: "library/alpine",
                target: Target::Tag("3.20")
            }
        );
        let by_digest = format!("library/alpine@{d}");
        assert_eq!(
            UpstreamRef::parse(&by_digest).unwrap(),
            UpstreamRef {
                name: "library/alpine",
                target: Target::Digest(&d)
            }
        );
        for bad in [
            "alpine",
            "Alpine:1",
            "a/../b:1",
            "a:",
            "a@sha256:zz",
            ":1",
            "a:b:c/d",
        ] {
            assert!(UpstreamRef::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(UpstreamRef::tag("a/b", "1"), "a/b:1");
        assert_eq!(UpstreamRef::digest("library/alpine", &d), by_digest);
    }
}
