//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>` lists the
//! manifests whose `subject` is that digest (signatures, SBOMs,
//! attestations) as an OCI image index, optionally filtered by
//! `?artifactType=`.
//!
//! Which manifests refer to which subject is worked out at publish time
//! ([`descriptor`], kept in the publication index), so an answer reads no
//! units. A subject nothing refers to, or one that does not exist, has an
//! empty list: the spec forbids a 404 for a name that exists.

use crate::manifest::{Descriptor, OCI_INDEX};
use crate::model::ManifestMeta;
use serde::Serialize;
use wharf_sdk::{Body, Header, Plan, percent};

/// Header of a manifest PUT answer naming the subject the manifest refers to.
pub const SUBJECT_HEADER: &str = "OCI-Subject";
/// Header of a referrers answer telling which filters were applied.
pub const FILTERS_APPLIED: &str = "OCI-Filters-Applied";
/// The query parameter (and filter name) of the artifact type filter.
const ARTIFACT_TYPE: &str = "artifactType";

/// How a manifest of digest `digest` is listed among the referrers of its
/// subject; `None` when it has no subject.
pub fn descriptor(digest: &str, meta: &ManifestMeta) -> Option<(String, Descriptor)> {
    let subject = meta.subject.clone()?;
    let mut listed = Descriptor::new(&meta.media_type, digest, meta.size);
    listed.artifact_type = meta.artifact_type.clone();
    listed.annotations = meta.annotations.clone();
    Some((subject, listed))
}

/// Which referrers a client asked for: those of any of the artifact types
/// it named, or all when it named none.
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    artifact_types: Vec<String>,
}

impl Filter {
    pub fn parse(query: &str) -> Self {
        Filter {
            artifact_types: percent::query_pairs(query)
                .filter(|(key, value)| *key == ARTIFACT_TYPE && !value.is_empty())
                .map(|(_, value)| value)
                .collect(),
        }
    }

    fn applied(&self) -> bool {
        !self.artifact_types.is_empty()
    }

    fn admits(&self, referrer: &Descriptor) -> bool {
        !self.applied()
            || referrer
                .artifact_type
                .as_ref()
                .is_some_and(|t| self.artifact_types.contains(t))
    }
}

/// The image index the referrers API answers with.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrersIndex<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<&'a Descriptor>,
}

/// The answer listing `listed`, the referrers of a subject in a
/// publication's index (none in a repository not published yet).
pub fn answer(listed: &[Descriptor], filter: &Filter) -> Plan {
    let manifests = listed.iter().filter(|r| filter.admits(r)).collect();
    let document = ReferrersIndex {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests,
    };
    let headers = filter
        .applied()
        .then(|| Header {
            name: FILTERS_APPLIED.to_string(),
            value: ARTIFACT_TYPE.to_string(),
        })
        .into_iter()
        .collect();
    Plan::Body(Body {
        status: 200,
        content_type: OCI_INDEX.to_string(),
        headers,
        body: serde_json::to_vec(&document).expect("a referrers index serializes"),
    })
}

#[cfg(test)]
mod tests;
