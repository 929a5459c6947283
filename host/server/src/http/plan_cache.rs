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

use hashbrown::{Equivalent, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use wharf_core::digest::Digest;
use wharf_core::ids::RepoId;
use wharf_core::time::Timestamp;
use wharf_runtime::calls::{Header, Plan, Request};
use wharf_store::db::Publication;

/// Plans kept at most.
pub const CAPACITY: usize = 4096;

/// Bodies larger than this are answered by the plugin each time: a plan
/// that big would hold memory for a request that is not frequent enough.
const MAX_BODY: usize = 256 * 1024;

/// What a kept plan rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    plugin: Digest,
    repo: RepoId,
    name: String,
    index: Digest,
    version: Option<u64>,
    published_at: Timestamp,
    /// The publication's settings, as the plugin's lookup sees them.
    config: serde_json::Value,
    method: String,
    path: String,
    query: String,
    headers: Vec<Header>,
}

/// A request on a publication, looked up without copying it into a [`Key`].
#[derive(Clone, Copy)]
pub struct Asked<'a> {
    pub plugin: &'a Digest,
    pub publication: &'a Publication,
    pub request: &'a Request,
}

impl Asked<'_> {
    fn key(&self) -> Key {
        let (p, r) = (self.publication, self.request);
        Key {
            plugin: self.plugin.clone(),
            repo: p.repo_id.clone(),
            name: p.name.clone(),
            index: p.index.clone(),
            version: p.version,
            published_at: p.published_at.clone(),
            config: p.config.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            headers: r.headers.clone(),
        }
    }
}

/// What a kept plan and a request are compared on, borrowed from either;
/// the settings, which have no hash, are compared beside it.
#[derive(PartialEq, Hash)]
struct Parts<'a> {
    plugin: &'a Digest,
    repo: &'a RepoId,
    name: &'a str,
    index: &'a Digest,
    version: Option<u64>,
    published_at: &'a Timestamp,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a [Header],
}

impl Key {
    fn parts(&self) -> Parts<'_> {
        Parts {
            plugin: &self.plugin,
            repo: &self.repo,
            name: &self.name,
            index: &self.index,
            version: self.version,
            published_at: &self.published_at,
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
        }
    }
}

impl<'a> Asked<'a> {
    fn parts(&self) -> Parts<'a> {
        let (p, r) = (self.publication, self.request);
        Parts {
            plugin: self.plugin,
            repo: &p.repo_id,
            name: &p.name,
            index: &p.index,
            version: p.version,
            published_at: &p.published_at,
            method: &r.method,
            path: &r.path,
            query: &r.query,
            headers: &r.headers,
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.parts().hash(h);
    }
}

impl Hash for Asked<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.parts().hash(h);
    }
}

impl Equivalent<Key> for Asked<'_> {
    fn equivalent(&self, k: &Key) -> bool {
        self.parts() == k.parts() && self.publication.config == k.config
    }
}

/// Keys come from clients (paths, queries, headers): std's keyed SipHash,
/// not hashbrown's faster default, whose seeds do not hold against chosen
/// collisions.
#[derive(Default)]
pub struct PlanCache {
    plans: Mutex<HashMap<Key, Arc<Plan>, std::hash::RandomState>>,
}

impl PlanCache {
    /// The plan kept for `asked`.
    pub fn get(&self, asked: Asked<'_>) -> Option<Arc<Plan>> {
        self.plans.lock().unwrap().get(&asked).cloned()
    }

    /// Keep `plan` for `asked`, if it is one worth keeping: a blob to serve,
    /// a small body, a redirect or an error; never a write or a pull.
    pub fn keep(&self, asked: Asked<'_>, plan: &Plan) {
        let worth = match plan {
            Plan::Blob(_) | Plan::Redirect(_) | Plan::Error(_) => true,
            Plan::Body(b) => b.body.len() <= MAX_BODY,
            Plan::Write(_) | Plan::Pull(_) => false,
        };
        if !worth {
            return;
        }
        let (key, plan) = (asked.key(), Arc::new(plan.clone()));
        let mut plans = self.plans.lock().unwrap();
        if plans.len() >= CAPACITY {
            plans.clear();
        }
        plans.insert(key, plan);
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

    fn key<'a>(
        plugin: &'a Digest,
        publication: &'a Publication,
        request: &'a Request,
    ) -> Asked<'a> {
        Asked {
            plugin,
            publication,
            request,
        }
    }

    #[test]
    fn a_plan_is_given_again_only_for_the_same_publication_and_request() {
        let cache = PlanCache::default();
        let plugin = Digest::of(b"docker.wasm");
        let p1 = publication(b"index 1");
        let req = request("/v2/team/app/manifests/1");
        cache.keep(key(&plugin, &p1, &req), &blob("sha256:a"));
        assert_eq!(
            cache.get(key(&plugin, &p1, &req)).as_deref(),
            Some(&blob("sha256:a"))
        );
        // Another publication (a publish moved the tag), another plugin,
        // another path or another Accept: not this plan.
        let p2 = publication(b"index 2");
        assert!(cache.get(key(&plugin, &p2, &req)).is_none());
        let mut protected = p1.clone();
        protected.config = serde_json::json!({"protected": true});
        assert!(cache.get(key(&plugin, &protected, &req)).is_none());
        assert!(cache.get(key(&Digest::of(b"v2"), &p1, &req)).is_none());
        let other = request("/v2/team/app/manifests/2");
        assert!(cache.get(key(&plugin, &p1, &other)).is_none());
        let mut accept = req.clone();
        accept.headers[0].value = "application/json".into();
        assert!(cache.get(key(&plugin, &p1, &accept)).is_none());
    }

    #[test]
    fn writes_pulls_and_large_bodies_are_never_kept_and_the_cache_stays_bounded() {
        let cache = PlanCache::default();
        let (plugin, p) = (Digest::of(b"docker.wasm"), publication(b"i"));
        let keep = |path: &str, plan: &Plan| cache.keep(key(&plugin, &p, &request(path)), plan);
        keep("/pull", &Plan::Pull("1".into()));
        let big = Plan::Body(Body {
            status: 200,
            content_type: "application/json".into(),
            headers: Vec::new(),
            body: vec![b'x'; MAX_BODY + 1],
        });
        keep("/big", &big);
        assert!(cache.is_empty());
        for i in 0..CAPACITY + 10 {
            keep(&format!("/{i}"), &blob("sha256:a"));
        }
        assert!(cache.len() <= CAPACITY, "{}", cache.len());
        let last = request(&format!("/{}", CAPACITY + 9));
        assert!(cache.get(key(&plugin, &p, &last)).is_some());
    }
}
