//! Image manifests and indexes: media types, parsing, and building the Docker
//! schema2 manifest for legacy `docker save` archives.

use crate::reference::is_sha256_digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The Accept header a client sends to get any manifest we can store.
pub const ACCEPT_ALL: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json";

/// Largest manifest or index we read into memory.
pub const MAX_MANIFEST: u64 = 4 << 20;

/// A content descriptor, as manifests and indexes write them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// OCI 1.1: what kind of artifact the described manifest is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: &str, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            size,
            digest: digest.to_string(),
            urls: Vec::new(),
            platform: None,
            annotations: BTreeMap::new(),
            artifact_type: None,
        }
    }

    /// Layers that registries may legally leave out (Windows base layers):
    /// they are fetched from their `urls`, not from us.
    pub fn is_foreign(&self) -> bool {
        self.media_type.contains("foreign") || self.media_type.contains("nondistributable")
    }
}

/// What a manifest document is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    List {
        manifests: Vec<Descriptor>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub media_type: String,
    pub kind: Kind,
    /// OCI 1.1 artifacts: the manifest this one refers to (a signature's,
    /// an SBOM's image). It need not exist.
    pub subject: Option<Descriptor>,
    /// OCI 1.1 artifacts: the document's own `artifactType`.
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Parsed {
    /// A document without the OCI 1.1 artifact fields.
    pub fn plain(media_type: &str, kind: Kind) -> Self {
        Parsed {
            media_type: media_type.to_string(),
            kind,
            subject: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// What kind of artifact this is, as the referrers API reports it: the
    /// document's `artifactType`, else an image manifest's config media type.
    pub fn effective_artifact_type(&self) -> Option<String> {
        let config_type = match &self.kind {
            Kind::Image { config, .. } => Some(&config.media_type),
            Kind::List { .. } => None,
        };
        self.artifact_type
            .as_ref()
            .or(config_type)
            .filter(|t| !t.is_empty())
            .cloned()
    }

    /// Digests of everything this document references directly.
    pub fn children(&self) -> Vec<&Descriptor> {
        match &self.kind {
            Kind::Image { config, layers } => std::iter::once(config).chain(layers).collect(),
            Kind::List { manifests } => manifests.iter().collect(),
        }
    }
}

pub fn is_list(media_type: &str) -> bool {
    media_type == DOCKER_LIST || media_type == OCI_INDEX
}

pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        DOCKER_MANIFEST | DOCKER_LIST | OCI_MANIFEST | OCI_INDEX
    )
}

/// A media type without parameters, lowercased (`Content-Type` values).
pub fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u64>,
    #[serde(default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Parse a manifest or index. `declared` is what its referrer said it is (a
/// descriptor's media type or a `Content-Type`); the document's own
/// `mediaType` wins, and OCI documents without one are recognised by shape.
pub fn parse(bytes: &[u8], declared: Option<&str>) -> Result<Parsed, String> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid manifest JSON: {e}"))?;
    if let Some(v) = raw.schema_version
        && v != 2
    {
        return Err(format!("schema version {v} manifests are not supported"));
    }
    let declared = declared.map(essence).filter(|m| is_manifest_type(m));
    let media_type = match (raw.media_type.filter(|m| !m.is_empty()), declared) {
        (Some(own), _) => own,
        (None, Some(declared)) => declared,
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if raw.config.is_some() => OCI_MANIFEST.to_string(),
        (None, None) => {
            return Err("document is neither an image manifest nor an index".to_string());
        }
    };
    let kind = if is_list(&media_type) {
        let manifests = raw
            .manifests
            .ok_or_else(|| format!("{media_type} without a `manifests` list"))?;
        Kind::List { manifests }
    } else if media_type == DOCKER_MANIFEST || media_type == OCI_MANIFEST {
        let config = raw
            .config
            .ok_or_else(|| format!("{media_type} without a `config`"))?;
        Kind::Image {
            config,
            layers: raw.layers.unwrap_or_default(),
        }
    } else {
        return Err(format!("unsupported manifest media type {media_type:?}"));
    };
    let parsed = Parsed {
        media_type,
        kind,
        subject: raw.subject,
        artifact_type: raw.artifact_type.filter(|t| !t.is_empty()),
        annotations: raw.annotations,
    };
    if let Some(bad) = parsed
        .children()
        .into_iter()
        .chain(&parsed.subject)
        .find(|d| !is_sha256_digest(&d.digest))
    {
        return Err(format!(
            "descriptor digest {:?} is not a sha256 digest",
            bad.digest
        ));
    }
    Ok(parsed)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Schema2<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

/// A Docker schema2 manifest. Field order is fixed by the struct, so the same
/// image always yields the same bytes and the same digest.
pub fn docker_schema2(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let doc = Schema2 {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config,
        layers,
    };
    serde_json::to_vec_pretty(&doc).expect("manifest serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    use wharf_sdk::testing::digest_of as digest;

    #[test]
    fn builds_deterministic_schema2() {
        let config = Descriptor::new(DOCKER_CONFIG, &digest('c'), 1234);
        let layers = vec![
            Descriptor::new(DOCKER_LAYER_TAR, &digest('1'), 10),
            Descriptor::new(DOCKER_LAYER_TAR, &digest('2'), 20),
        ];
        let a = docker_schema2(&config, &layers);
        assert_eq!(a, docker_schema2(&config, &layers));
        let text = String::from_utf8(a.clone()).unwrap();
        assert!(text.starts_with("{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\""));
        let parsed = parse(&a, None).unwrap();
        assert_eq!(parsed.media_type, DOCKER_MANIFEST);
        assert_eq!(parsed.kind, Kind::Image { config, layers });
    }

    #[test]
    fn parses_indexes_and_infers_types() {
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#,
            digest('a')
        );
        let p = parse(index.as_bytes(), None).unwrap();
        assert_eq!(p.media_type, OCI_INDEX);
        let Kind::List { manifests } = &p.kind else {
            panic!()
        };
        assert_eq!(
            manifests[0].platform.as_ref().unwrap()["architecture"],
            "arm64"
        );
        // A declared Docker list type is kept when the document has no mediaType.
        let p = parse(
            index.as_bytes(),
            Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(p.media_type, DOCKER_LIST);

        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[]}}"#,
            digest('b')
        );
        assert_eq!(parse(m.as_bytes(), None).unwrap().media_type, OCI_MANIFEST);
    }

    #[test]
    fn refuses_bad_documents() {
        assert!(
            parse(b"{", None)
                .unwrap_err()
                .contains("invalid manifest JSON")
        );
        assert!(
            parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None)
                .unwrap_err()
                .contains("schema version 1")
        );
        assert!(
            parse(br#"{"schemaVersion":2}"#, None)
                .unwrap_err()
                .contains("neither")
        );
        let bad = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#;
        assert!(
            parse(bad.as_bytes(), None)
                .unwrap_err()
                .contains("not a sha256 digest")
        );
        let artifact = r#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#;
        assert!(
            parse(artifact.as_bytes(), None)
                .unwrap_err()
                .contains("unsupported")
        );
        let neg = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":-1}},"layers":[]}}"#,
            digest('b')
        );
        assert!(parse(neg.as_bytes(), None).is_err());
    }

    #[test]
    fn essences() {
        assert_eq!(
            essence("Application/JSON; charset=utf-8"),
            "application/json"
        );
        assert!(is_list(OCI_INDEX) && is_list(DOCKER_LIST) && !is_list(OCI_MANIFEST));
    }
}
