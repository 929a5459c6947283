//! The distributor: turn a repository's units into a publication index.

use crate::index::PublicationIndex;
use crate::model::{BLOB, MANIFEST, TAG};
use crate::reference::is_valid_name;
use serde::Deserialize;
use wharf_sdk::host::Host;
use wharf_sdk::json::Versioned;
use wharf_sdk::log::Level;
use wharf_sdk::paging::list_all;
use wharf_sdk::{Error, Published, Repository, Summary};

#[derive(Debug, Default, Deserialize)]
pub struct DistributorConfig {
    pub repo_registry_id: Option<String>,
    pub redirect_url: Option<String>,
    /// Publish after every push, so pushed tags are visible at once.
    pub auto_publish: Option<bool>,
}

pub fn parse_config(json: &str) -> Result<DistributorConfig, Error> {
    let config: DistributorConfig = wharf_sdk::json::settings(json)
        .map_err(|e| Error::invalid(format!("distributor settings are not valid JSON: {e}")))?;
    if let Some(url) = config.redirect_url.as_deref().filter(|u| !u.is_empty())
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(Error::invalid(format!(
            "redirect_url {url:?} must be an http:// or https:// URL"
        )));
    }
    Ok(config)
}

/// The name clients pull by: `repo_registry_id`, else the repository id.
/// Path components the registry's routes use after a name: a name holding
/// one could be split two ways (`a/manifests` + `latest` or `a` +
/// `manifests/latest`).
const ROUTE_WORDS: [&str; 5] = ["manifests", "blobs", "tags", "uploads", "referrers"];

pub fn registry_name(config: &DistributorConfig, repo_id: &str) -> Result<String, Error> {
    let (name, from) = match config.repo_registry_id.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => (name, "repo_registry_id"),
        None => (repo_id, "the repository id"),
    };
    check_name(name)
        .map(|()| name.to_string())
        .map_err(|why| Error::invalid(format!("{from} {name:?} {why}; set repo_registry_id")))
}

/// Whether clients can use `name`; `Err` ends a sentence that starts with
/// the name.
pub fn check_name(name: &str) -> Result<(), String> {
    if !is_valid_name(name) {
        return Err(
            "is not a valid registry name: use lowercase path components \
             ([a-z0-9] separated by '.', '_' or '-') joined by '/'"
                .to_string(),
        );
    }
    if let Some(word) = name.split('/').find(|c| ROUTE_WORDS.contains(c)) {
        return Err(format!(
            "has the path component {word:?}, which the registry's routes use \
             (/v2/<name>/{word}/...): a request path could then name two repositories; \
             choose a name without {}",
            ROUTE_WORDS.join(", ")
        ));
    }
    Ok(())
}

/// Build and store the publication index of the current repository.
pub fn publish<H: Host>(host: &mut H, repo: &Repository) -> Result<Published, Error> {
    let config = parse_config(&repo.distributor_config)?;
    let name = registry_name(&config, &repo.id)?;
    let tags = list_all(host, TAG)?;
    let manifests = list_all(host, MANIFEST)?;
    let blobs = list_all(host, BLOB)?;
    let (index, warnings) = PublicationIndex::build(&tags, &manifests, &blobs);
    for warning in &warnings {
        host.log(Level::Warn, warning);
    }
    let bytes = index.to_bytes();
    let digest = host.store_bytes(&bytes, None)?;
    let message = format!(
        "published {name}: {} tag(s), {} manifest(s), {} blob(s)",
        index.tags.len(),
        index.manifests.len(),
        index.blobs.len()
    );
    host.log(Level::Info, &message);
    Ok(Published {
        name,
        index: digest,
        summary: Summary {
            units_added: 0,
            units_removed: 0,
            bytes_stored: bytes.len() as u64,
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ManifestMeta, blob_unit, manifest_unit, tag_unit};
    use wharf_sdk::testing::FakeHost;

    fn repo(id: &str, config: &str) -> Repository {
        Repository {
            id: id.into(),
            content_type: "docker".into(),
            importer_config: String::new(),
            distributor_config: config.into(),
        }
    }

    #[test]
    fn names_and_settings() {
        let none = DistributorConfig::default();
        assert_eq!(registry_name(&none, "busybox").unwrap(), "busybox");
        let err = registry_name(&none, "My Repo").unwrap_err();
        assert_eq!(err.code, "invalid-input");
        assert!(err.message.contains("repo_registry_id"), "{}", err.message);
        let c = parse_config(r#"{"repo_registry_id": "team/app"}"#).unwrap();
        assert_eq!(registry_name(&c, "ignored id").unwrap(), "team/app");
        let c = parse_config(r#"{"repo_registry_id": "Team/App"}"#).unwrap();
        assert!(
            registry_name(&c, "x")
                .unwrap_err()
                .message
                .contains("Team/App")
        );
        assert!(parse_config("{").is_err());
        assert!(parse_config(r#"{"redirect_url": "ftp://x"}"#).is_err());
        assert!(parse_config(r#"{"redirect_url": "https://cdn/x"}"#).is_ok());
        assert!(parse_config("").is_ok());
    }

    #[test]
    fn publishes_an_index_of_the_repository() {
        let mut host = FakeHost::default();
        let m = host.store_bytes(b"manifest", None).unwrap();
        let c = host.store_bytes(b"config", None).unwrap();
        let l = host.store_bytes(b"layer", None).unwrap();
        host.add_unit(&blob_unit(&c, "c", 6)).unwrap();
        host.add_unit(&blob_unit(&l, "l", 5)).unwrap();
        let meta = ManifestMeta {
            media_type: crate::manifest::DOCKER_MANIFEST.into(),
            size: 8,
            config: Some(c.clone()),
            layers: vec![l.clone()],
            manifests: vec![],
            ..Default::default()
        };
        host.add_unit(&manifest_unit(&m, &meta)).unwrap();
        host.add_unit(&tag_unit("latest", &m)).unwrap();

        let published =
            publish(&mut host, &repo("r1", r#"{"repo_registry_id":"my/app"}"#)).unwrap();
        assert_eq!(published.name, "my/app");
        let index = PublicationIndex::from_bytes(&host.blob(&published.index).unwrap()).unwrap();
        assert_eq!(index.tags["latest"], m);
        assert_eq!(
            index.manifests[&m].media_type,
            crate::manifest::DOCKER_MANIFEST
        );
        assert_eq!(index.blobs.len(), 3);
        assert!(published.summary.message.contains("1 tag(s)"));

        // Publishing unchanged content yields the same index blob.
        assert_eq!(
            publish(&mut host, &repo("r1", r#"{"repo_registry_id":"my/app"}"#))
                .unwrap()
                .index,
            published.index
        );
    }
}
