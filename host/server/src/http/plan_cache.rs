//! Plans given again. A GET or HEAD on a published repository whose
//! `resolve` read nothing but the request and that publication (the
//! runtime tells: `Plugin::resolve_repeatable`) is answered with the same
//! plan the next time, without a plugin call, for as long as the
//! publication stays the same.
//!
//! The key holds everything such a plan can rest on: the plugin's
//! component (a new version has new keys), the publication (repository,
//! name, index, version, time and settings: a publish, or a setting changed
//! in place, makes new keys, and the old ones are never asked for again),
//! the method, the canonical path, the query and the headers the plugin
//! sees. Only the plugin call is saved:
//! the gate before it and the trust check of the plan after it (a blob the
//! publication does not serve is never served) run on every request.
//!
//! The cache is bounded: when it holds [`CAPACITY`] plans it starts again
//! empty, which costs one plugin call per plan in use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wharf_core::digest::Digest;
use wharf_runtime::calls::{Header, Plan, Request};
use wharf_store::db::Publication;

/// Plans kept at most.
pub const CAPACITY: usize = 4096;

/// Bodies larger than this are answered by the plugin each time: a plan
/// that big would hold memory for a request that is not frequent enough.
const MAX_BODY: usize = 256 * 1024;

/// What a repeatable plan rests on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    plugin: Digest,
    publication: (String, String, Digest, Option<u64>, String),
    /// The publication's settings, as the plugin's lookup sees them.
    config: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Key {
    pub fn new(plugin: &Digest, publication: &Publication, request: &Request) -> Key {
        Key {
            plugin: plugin.clone(),
            publication: (
                publication.repo_id.to_string(),
                publication.name.clone(),
                publication.index.clone(),
                publication.version,
                publication.published_at.as_str().to_string(),
            ),
            config: publication.config.to_string(),
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            headers: request
                .headers
                .iter()
                .map(|Header { name, value }| (name.clone(), value.clone()))
                .collect(),
        }
    }
}

#[derive(Default)]
pub struct PlanCache {
    plans: Mutex<HashMap<Key, Arc<Plan>>>,
}

impl PlanCache {
    /// The plan kept for `key`.
    pub fn get(&self, key: &Key) -> Option<Arc<Plan>> {
        self.plans.lock().unwrap().get(key).cloned()
    }

    /// Keep `plan` for `key`, if it is one worth keeping: a blob to serve,
    /// a small body, a redirect or an error; never a write or a pull.
    pub fn keep(&self, key: Key, plan: &Plan) {
        let worth = match plan {
            Plan::Blob(_) | Plan::Redirect(_) | Plan::Error(_) => true,
            Plan::Body(b) => b.body.len() <= MAX_BODY,
            Plan::Write(_) | Plan::Pull(_) => false,
        };
        if !worth {
            return;
        }
        let mut plans = self.plans.lock().unwrap();
        if plans.len() >= CAPACITY {
            plans.clear();
        }
        plans.insert(key, Arc::new(plan.clone()));
    }

    pub fn len(&self) -> usize {
        self.plans.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_runtime::calls::{Body, ServeBlob};

    fn publication(index: &[u8]) -> Publication {
        Publication {
            plugin: "docker".into(),
            name: "team/app".into(),
            repo_id: "app".parse().unwrap(),
            index: Digest::of(index),
            version: Some(1),
            config: serde_json::json!({}),
            published_at: wharf_core::time::Timestamp::now(),
            blobs: Vec::new(),
        }
    }

    fn request(path: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            query: String::new(),
            headers: vec![Header {
                name: "accept".into(),
                value: "application/vnd.oci.image.manifest.v1+json".into(),
            }],
            pulled: false,
        }
    }

    fn blob(d: &str) -> Plan {
        Plan::Blob(ServeBlob {
            digest: d.into(),
            media_type: "application/octet-stream".into(),
            headers: Vec::new(),
        })
    }

    #[test]
    fn a_plan_is_given_again_only_for_the_same_publication_and_request() {
        let cache = PlanCache::default();
        let plugin = Digest::of(b"docker.wasm");
        let p1 = publication(b"index 1");
        let req = request("/v2/team/app/manifests/1");
        cache.keep(Key::new(&plugin, &p1, &req), &blob("sha256:a"));
        assert_eq!(
            cache.get(&Key::new(&plugin, &p1, &req)).as_deref(),
            Some(&blob("sha256:a"))
        );
        // Another publication (a publish moved the tag), another plugin,
        // another path or another Accept: not this plan.
        let p2 = publication(b"index 2");
        assert!(cache.get(&Key::new(&plugin, &p2, &req)).is_none());
        let mut protected = p1.clone();
        protected.config = serde_json::json!({"protected": true});
        assert!(cache.get(&Key::new(&plugin, &protected, &req)).is_none());
        assert!(
            cache
                .get(&Key::new(&Digest::of(b"v2"), &p1, &req))
                .is_none()
        );
        let other = request("/v2/team/app/manifests/2");
        assert!(cache.get(&Key::new(&plugin, &p1, &other)).is_none());
        let mut accept = req.clone();
        accept.headers[0].value = "application/json".into();
        assert!(cache.get(&Key::new(&plugin, &p1, &accept)).is_none());
    }

    #[test]
    fn writes_pulls_and_large_bodies_are_never_kept_and_the_cache_stays_bounded() {
        let cache = PlanCache::default();
        let (plugin, p) = (Digest::of(b"docker.wasm"), publication(b"i"));
        let key = |path: &str| Key::new(&plugin, &p, &request(path));
        cache.keep(key("/pull"), &Plan::Pull("1".into()));
        let big = Plan::Body(Body {
            status: 200,
            content_type: "application/json".into(),
            headers: Vec::new(),
            body: vec![b'x'; MAX_BODY + 1],
        });
        cache.keep(key("/big"), &big);
        assert!(cache.is_empty());
        for i in 0..CAPACITY + 10 {
            cache.keep(key(&format!("/{i}")), &blob("sha256:a"));
        }
        assert!(cache.len() <= CAPACITY, "{}", cache.len());
        assert!(cache.get(&key(&format!("/{}", CAPACITY + 9))).is_some());
    }
}
