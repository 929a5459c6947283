//! The OCI Distribution Specification v1.1, section by section (pull, push,
//! content discovery, content management), its MUSTs as assertions, against
//! the real binary.
//!
//! Every request goes through [`OciClient`], which does what a
//! challenge-following client (docker, containerd, the official conformance
//! suite) does and nothing Wharf-specific: the request is sent without
//! credentials; on 401 the `WWW-Authenticate: Bearer realm=...,service=...,
//! scope=...` challenge is parsed, a token is fetched from the realm with
//! that service and exactly that scope (as a user with HTTP basic auth, or
//! anonymously), and the request is sent again with `Authorization: Bearer`.
//! Pushes go to names no repository has: the push creates the repository.
//! The admin API is used only for settings a test needs (a protected
//! repository, a user, an event listener).

use crate::registry_support::{DOCKER_MANIFEST, OCI_INDEX, sha256_digest};
use crate::support::*;
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

// ------------------------------------------------------------------ client --

/// A parsed `WWW-Authenticate: Bearer ...` challenge.
#[derive(Debug, Clone, PartialEq)]
struct Challenge {
    realm: String,
    service: String,
    scope: String,
    error: String,
}

/// Parse a Bearer challenge (RFC 7235 auth-params; quoted values may hold
/// commas, as `scope="repository:a/b:pull,push"` does).
fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut c = Challenge {
        realm: String::new(),
        service: String::new(),
        scope: String::new(),
        error: String::new(),
    };
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key.as_str() {
            "realm" => c.realm = value.to_string(),
            "service" => c.service = value.to_string(),
            "scope" => c.scope = value.to_string(),
            "error" => c.error = value.to_string(),
            _ => {}
        }
        rest = after.trim_start_matches([',', ' ']);
    }
    Some(c)
}

/// An answer, with what was asked and the challenge the first attempt got.
pub(crate) struct Reply {
    what: String,
    pub(crate) status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The challenge of the credential-less first attempt; `None` when it
    /// was not refused with 401.
    challenge: Option<Challenge>,
}

impl Reply {
    /// A header's value (several joined with `, `), or "" when absent.
    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<not text>").to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.contains_key(name)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {self}"))
    }

    /// The `errors[0].code` of an error answer.
    fn code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }

    /// The scope the first attempt's challenge named ("" without one).
    fn scope(&self) -> String {
        self.challenge
            .as_ref()
            .map(|c| c.scope.clone())
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(&self.body);
        let text: String = text.chars().take(600).collect();
        write!(f, "{} -> {}", self.what, self.status)?;
        if let Some(c) = &self.challenge {
            write!(f, " (after the challenge {c:?})")?;
        }
        for (k, v) in &self.headers {
            write!(f, "\n  {k}: {}", v.to_str().unwrap_or("<not text>"))?;
        }
        write!(f, "\n  body: {text}")
    }
}

/// A registry client that follows token challenges, as `docker`, containerd
/// and the official conformance suite do.
pub(crate) struct OciClient {
    base: String,
    http: Client,
    /// HTTP basic credentials given to the token realm; none: anonymous.
    login: Option<(String, String)>,
    /// The last token issued. A streamed body (no length) is sent with it
    /// at once, as docker streams a layer with the token its upload's POST
    /// got: a server may answer 401 before reading a stream, and a stream
    /// cannot be sent twice.
    last_token: std::cell::RefCell<Option<String>>,
}

impl OciClient {
    fn anonymous(s: &Server) -> OciClient {
        OciClient::anonymous_at(&s.base)
    }

    pub(crate) fn anonymous_at(base: &str) -> OciClient {
        OciClient {
            base: base.to_string(),
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            login: None,
            last_token: Default::default(),
        }
    }

    fn user(s: &Server, login: &str, password: &str) -> OciClient {
        OciClient {
            login: Some((login.to_string(), password.to_string())),
            ..OciClient::anonymous(s)
        }
    }

    fn admin(s: &Server) -> OciClient {
        OciClient::user(s, "admin", ADMIN_PASSWORD)
    }

    /// The administrator, at a server's base URL.
    pub(crate) fn admin_at(base: &str) -> OciClient {
        OciClient {
            login: Some(("admin".to_string(), ADMIN_PASSWORD.to_string())),
            ..OciClient::anonymous_at(base)
        }
    }

    /// A path, or a URL (an absolute `Location`), as a URL.
    fn url(&self, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_string()
        } else {
            format!("{}{target}", self.base)
        }
    }

    fn attempt(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunked: bool,
        token: Option<&str>,
    ) -> reqwest::blocking::Response {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.http.request(m, url);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if chunked {
            // No length: sent with chunked transfer encoding.
            r = r.body(reqwest::blocking::Body::new(std::io::Cursor::new(
                body.to_vec(),
            )));
        } else if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
            r = r.body(body.to_vec());
        }
        r.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    fn reply(what: String, r: reqwest::blocking::Response, challenge: Option<Challenge>) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().map(|b| b.to_vec()).unwrap_or_default();
        Reply {
            what,
            status,
            headers,
            body,
            challenge,
        }
    }

    /// Send a request the way a challenge-following client does. If the
    /// realm refuses to issue a token, its answer is returned.
    fn send_as(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunked: bool,
    ) -> Reply {
        let url = self.url(target);
        let what = format!("{method} {target}");
        let cached = self.last_token.borrow().clone().filter(|_| chunked);
        let first = self.attempt(method, &url, headers, body, chunked, cached.as_deref());
        if first.status().as_u16() != 401 {
            return Self::reply(what, first, None);
        }
        let first = Self::reply(what.clone(), first, None);
        let header = first.header("www-authenticate");
        let challenge = parse_challenge(&header)
            .unwrap_or_else(|| panic!("a 401 without a Bearer challenge: {first}"));
        assert!(
            !challenge.realm.is_empty() && !challenge.service.is_empty(),
            "the challenge names no realm or service: {first}"
        );
        let mut query = vec![("service", challenge.service.clone())];
        if !challenge.scope.is_empty() {
            query.push(("scope", challenge.scope.clone()));
        }
        let mut t = self
            .http
            .get(self.url(&challenge.realm))
            .query(&query)
            .header("Accept", "application/json");
        if let Some((login, password)) = &self.login {
            t = t.basic_auth(login, Some(password));
        }
        let t = t.send().unwrap();
        let realm_what = format!("GET {} (token for {what})", challenge.realm);
        let t = Self::reply(realm_what, t, Some(challenge.clone()));
        if t.status != 200 {
            return t;
        }
        let v = t.json();
        let token = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .unwrap_or_else(|| panic!("the realm answered no token: {t}"))
            .to_string();
        *self.last_token.borrow_mut() = Some(token.clone());
        let second = self.attempt(method, &url, headers, body, chunked, Some(&token));
        Self::reply(format!("{what} (with a token)"), second, Some(challenge))
    }

    pub(crate) fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        self.send_as(method, target, headers, body, false)
    }

    fn get(&self, target: &str) -> Reply {
        self.send("GET", target, &[], &[])
    }

    fn head(&self, target: &str) -> Reply {
        self.send("HEAD", target, &[], &[])
    }

    fn delete(&self, target: &str) -> Reply {
        self.send("DELETE", target, &[], &[])
    }

    fn get_manifest(&self, name: &str, reference: &str) -> Reply {
        self.send(
            "GET",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("Accept", &accept_all())],
            &[],
        )
    }

    fn head_manifest(&self, name: &str, reference: &str) -> Reply {
        self.send(
            "HEAD",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("Accept", &accept_all())],
            &[],
        )
    }

    fn put_manifest(&self, name: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Reply {
        self.send(
            "PUT",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            bytes,
        )
    }

    /// POST an upload session: 202 with its location.
    pub(crate) fn start_upload(&self, name: &str) -> String {
        let r = self.send("POST", &format!("/v2/{name}/blobs/uploads/"), &[], &[]);
        expect(&r, 202);
        let location = r.header("location");
        assert!(!location.is_empty(), "202 without Location: {r}");
        location
    }

    /// Push a blob monolithically (POST, then PUT with the bytes); returns
    /// its digest.
    pub(crate) fn push_blob(&self, name: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let location = self.start_upload(name);
        let r = self.send(
            "PUT",
            &with_query(&location, "digest", &digest),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        );
        expect(&r, 201);
        digest
    }

    /// Push a manifest; asserts 201 and returns its digest.
    pub(crate) fn push_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let r = self.put_manifest(name, reference, media_type, bytes);
        expect(&r, 201);
        sha256_digest(bytes)
    }
}

fn accept_all() -> String {
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ")
}

/// Percent-encode a query value (everything but RFC 3986 unreserved).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `location` with `key=value` added to its query.
pub(crate) fn with_query(location: &str, key: &str, value: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{key}={}", encode(value))
}

// -------------------------------------------------------------- assertions --

#[track_caller]
pub(crate) fn expect(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "expected {status}: {r}");
}

/// The spec's error body: `{"errors": [{"code", "message", "detail"}]}`, each
/// code upper-case letters and underscores.
#[track_caller]
fn check_error_body(r: &Reply) {
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("a {} whose body is not JSON ({e}): {r}", r.status));
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no `errors` list: {r}"));
    assert!(!errors.is_empty(), "an empty `errors` list: {r}");
    for e in errors {
        let code = e["code"].as_str().unwrap_or("");
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
            "error code {code:?} is not upper-case letters and underscores: {r}"
        );
        assert!(
            e.get("message").is_none_or(Value::is_string),
            "`message` is not a string: {r}"
        );
    }
}

/// A 4xx with the spec's error body and `code` first.
#[track_caller]
fn expect_error(r: &Reply, status: u16, code: &str) {
    expect(r, status);
    check_error_body(r);
    assert_eq!(r.code(), code, "expected error code {code}: {r}");
}

#[track_caller]
fn expect_digest_header(r: &Reply, digest: &str) {
    assert_eq!(
        r.header("docker-content-digest"),
        digest,
        "Docker-Content-Digest: {r}"
    );
}

/// The scope of the first attempt's challenge.
#[track_caller]
fn expect_scope(r: &Reply, scope: &str) {
    assert_eq!(r.scope(), scope, "the challenge's scope: {r}");
}

// ------------------------------------------------------------------ data --

/// Deterministic bytes that differ per seed.
fn bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) fn desc(media_type: &str, content: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256_digest(content), "size": content.len()})
}

/// An OCI image manifest; `extra` fields (artifactType, subject,
/// annotations) are merged in. Pretty-printed with a trailing newline: the
/// registry must keep these exact bytes.
pub(crate) fn oci_manifest(config: Value, layers: Vec<Value>, extra: Value) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    if let Value::Object(extra) = extra {
        m.as_object_mut().unwrap().extend(extra);
    }
    let mut out = serde_json::to_vec_pretty(&m).unwrap();
    out.push(b'\n');
    out
}

fn oci_index(manifests: Vec<Value>, extra: Value) -> Vec<u8> {
    let mut m = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    if let Value::Object(extra) = extra {
        m.as_object_mut().unwrap().extend(extra);
    }
    serde_json::to_vec_pretty(&m).unwrap()
}

/// An image pushed: its manifest and blobs.
pub(crate) struct Image {
    pub(crate) manifest: Vec<u8>,
    pub(crate) digest: String,
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

/// Push a config, two layers and their OCI manifest under `tag`.
pub(crate) fn push_image(c: &OciClient, name: &str, tag: &str, seed: &str) -> Image {
    let layers = vec![
        bytes(&format!("{seed}-1"), 3000),
        bytes(&format!("{seed}-2"), 700),
    ];
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha256_digest(l)).collect::<Vec<_>>()},
    }))
    .unwrap();
    c.push_blob(name, &config);
    for l in &layers {
        c.push_blob(name, l);
    }
    let manifest = oci_manifest(
        desc(OCI_CONFIG, &config),
        layers.iter().map(|l| desc(OCI_LAYER, l)).collect(),
        json!({"annotations": {"org.example.seed": seed}}),
    );
    let digest = c.push_manifest(name, tag, OCI_MANIFEST, &manifest);
    Image {
        manifest,
        digest,
        config,
        layers,
    }
}

/// A user with the given grants (`resource`, operations) through the admin
/// API: a setting the test needs.
fn user(s: &Server, login: &str, password: &str, grants: &[(&str, &[&str])]) {
    let (status, v) = s.post_json(
        "/api/v1/users",
        &json!({"login": login, "password": password}),
    );
    assert_eq!(status, 201, "create user {login}: {v}");
    for (resource, ops) in grants {
        let (status, v) = s.post_json(
            "/api/v1/permissions/grant",
            &json!({"login": login, "resource": resource, "operations": ops}),
        );
        assert_eq!(status, 200, "grant {resource} to {login}: {v}");
    }
}

/// A protected docker repository published as `name` (a setting only the
/// admin API gives), published once while empty.
fn protected_repo(s: &Server, id: &str, name: &str) {
    s.create_repo(json!({
        "id": id,
        "content_type": "docker",
        "distributor_config": {"repo_registry_id": name, "protected": true, "auto_publish": true},
    }));
    let t = s.repo_task(id, "publish", json!({}));
    assert_eq!(t["state"], "finished", "publish {id}: {t}");
}

// ==================================================================== pull --

#[test]
fn pull_api_version_check_follows_the_token_flow() {
    let s = Server::start();
    // Anonymous: challenged, an anonymous token, then 200.
    let r = OciClient::anonymous(&s).get("/v2/");
    expect(&r, 200);
    let c = r
        .challenge
        .clone()
        .expect("GET /v2/ challenges anonymous callers");
    assert!(c.realm.ends_with("/api/v1/registry/token"), "{r}");
    assert_eq!(c.service, "wharf");
    // A user: the same flow with basic auth at the realm.
    expect(&OciClient::admin(&s).get("/v2/"), 200);
    // A wrong password: the realm refuses, in the registry's error format.
    let r = OciClient::user(&s, "admin", "not-the-password").get("/v2/");
    expect_error(&r, 401, "UNAUTHORIZED");
    assert!(r.what.contains("token for GET /v2/"), "{r}");
}

#[test]
fn pull_manifests_and_blobs_by_tag_and_digest() {
    let s = Server::start();
    let admin = OciClient::admin(&s);
    let image = push_image(&admin, "conf/pull", "v1", "pull");
    let anon = OciClient::anonymous(&s);
    let length = image.manifest.len().to_string();

    for reference in ["v1", image.digest.as_str()] {
        let r = anon.get_manifest("conf/pull", reference);
        expect(&r, 200);
        assert_eq!(r.body, image.manifest, "the exact bytes pushed: {r}");
        expect_digest_header(&r, &image.digest);
        assert_eq!(r.header("content-type"), OCI_MANIFEST, "{r}");
        assert_eq!(r.header("content-length"), length, "{r}");
        let r = anon.head_manifest("conf/pull", reference);
        expect(&r, 200);
        assert!(r.body.is_empty(), "HEAD with a body: {r}");
        expect_digest_header(&r, &image.digest);
        assert_eq!(r.header("content-length"), length, "{r}");
        assert_eq!(r.header("content-type"), OCI_MANIFEST, "{r}");
    }
    let mut blobs = vec![image.config.clone()];
    blobs.extend(image.layers.iter().cloned());
    for blob in &blobs {
        let digest = sha256_digest(blob);
        let path = format!("/v2/conf/pull/blobs/{digest}");
        let r = anon.get(&path);
        expect(&r, 200);
        assert_eq!(&r.body, blob, "the blob's bytes: {path}");
        expect_digest_header(&r, &digest);
        let r = anon.head(&path);
        expect(&r, 200);
        assert!(r.body.is_empty(), "HEAD with a body: {r}");
        expect_digest_header(&r, &digest);
        assert_eq!(r.header("content-length"), blob.len().to_string(), "{r}");
    }
}

#[test]
fn pull_of_missing_content_is_404_with_its_code() {
    let s = Server::start();
    let admin = OciClient::admin(&s);
    push_image(&admin, "conf/missing", "v1", "missing");
    let anon = OciClient::anonymous(&s);
    let absent = sha256_digest(b"never pushed anywhere");

    expect_error(
        &anon.get_manifest("conf/missing", "v2"),
        404,
        "MANIFEST_UNKNOWN",
    );
    expect_error(
        &anon.get_manifest("conf/missing", &absent),
        404,
        "MANIFEST_UNKNOWN",
    );
    expect(&anon.head_manifest("conf/missing", "v2"), 404);
    let r = anon.get(&format!("/v2/conf/missing/blobs/{absent}"));
    expect_error(&r, 404, "BLOB_UNKNOWN");
    expect(&anon.head(&format!("/v2/conf/missing/blobs/{absent}")), 404);
    // A repository that does not exist.
    expect_error(
        &anon.get_manifest("conf/nowhere", "v1"),
        404,
        "NAME_UNKNOWN",
    );
    expect_error(&anon.get("/v2/conf/nowhere/tags/list"), 404, "NAME_UNKNOWN");
    // The admin, whose credentials reach everything, gets the same answers.
    expect_error(
        &admin.get_manifest("conf/missing", "v2"),
        404,
        "MANIFEST_UNKNOWN",
    );
    expect_error(
        &admin.get_manifest("conf/nowhere", "v1"),
        404,
        "NAME_UNKNOWN",
    );
}

#[test]
fn pull_of_a_protected_repository_is_challenged_with_the_pull_scope() {
    let s = Server::start();
    protected_repo(&s, "private", "conf/private");
    user(
        &s,
        "reader",
        "reader-password",
        &[("/repositories/private/", &["read"])],
    );
    user(&s, "stranger", "stranger-password", &[]);
    let admin = OciClient::admin(&s);
    let image = push_image(&admin, "conf/private", "v1", "private");
    let layer = sha256_digest(&image.layers[0]);
    let paths = [
        ("GET", "/v2/conf/private/manifests/v1".to_string()),
        (
            "HEAD",
            format!("/v2/conf/private/manifests/{}", image.digest),
        ),
        ("GET", format!("/v2/conf/private/blobs/{layer}")),
        ("HEAD", format!("/v2/conf/private/blobs/{layer}")),
        ("GET", "/v2/conf/private/tags/list".to_string()),
    ];
    let reader = OciClient::user(&s, "reader", "reader-password");
    let stranger = OciClient::user(&s, "stranger", "stranger-password");
    let anon = OciClient::anonymous(&s);
    let accept = accept_all();
    for (method, path) in &paths {
        let headers = [("Accept", accept.as_str())];
        let r = reader.send(method, path, &headers, &[]);
        expect(&r, 200);
        expect_scope(&r, "repository:conf/private:pull");
        // Neither anonymous nor a user without read get a token that works.
        for who in [&anon, &stranger] {
            let r = who.send(method, path, &headers, &[]);
            assert!(
                r.status == 401 || r.status == 403,
                "a caller without read got past: {r}"
            );
            expect_scope(&r, "repository:conf/private:pull");
            if *method == "GET" {
                check_error_body(&r);
            }
        }
    }
    let r = reader.get_manifest("conf/private", "v1");
    assert_eq!(r.body, image.manifest);
    // Reading is not writing: the reader's push is refused.
    let r = reader.send("POST", "/v2/conf/private/blobs/uploads/", &[], &[]);
    expect_scope(&r, "repository:conf/private:pull,push");
    assert!(r.status == 401 || r.status == 403, "a reader pushed: {r}");
    check_error_body(&r);
}

/// The `access` claim (Docker token specification) of a token the realm
/// that `GET /v2/` names issues for `scope`, as `client` would fetch it.
fn granted(client: &OciClient, scope: &str) -> Value {
    use base64::Engine as _;
    let c = OciClient::anonymous_at(&client.base)
        .get("/v2/")
        .challenge
        .expect("GET /v2/ challenges");
    let mut t = client
        .http
        .get(client.url(&c.realm))
        .query(&[("service", c.service.as_str()), ("scope", scope)]);
    if let Some((login, password)) = &client.login {
        t = t.basic_auth(login, Some(password));
    }
    let r = t.send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "token for {scope}");
    let v: Value = r.json().unwrap();
    let jwt = v["token"].as_str().unwrap();
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .unwrap(),
    )
    .unwrap();
    claims["access"].clone()
}

#[test]
fn the_realm_grants_the_asked_actions_the_caller_holds() {
    let s = Server::start();
    protected_repo(&s, "granted", "conf/granted");
    user(
        &s,
        "reader",
        "reader-password",
        &[("/repositories/granted/", &["read"])],
    );
    let reader = OciClient::user(&s, "reader", "reader-password");
    let admin = OciClient::admin(&s);
    let anon = OciClient::anonymous(&s);
    let access = |name: &str, actions: &[&str]| json!([{"type": "repository", "name": name, "actions": actions}]);
    let both = "repository:conf/granted:pull,push";
    assert_eq!(
        granted(&admin, both),
        access("conf/granted", &["pull", "push"])
    );
    assert_eq!(granted(&reader, both), access("conf/granted", &["pull"]));
    let none: &[&str] = &[];
    for (who, client) in [("anonymous", &anon), ("reader", &reader)] {
        let a = granted(client, "repository:conf/granted:push");
        assert!(
            a == access("conf/granted", none) || a == json!([]),
            "{who} got push: {a}"
        );
    }
    let a = granted(&anon, both);
    assert!(
        a == access("conf/granted", none) || a == json!([]),
        "anonymous got access to a protected repository: {a}"
    );
    // A new name: only a caller who may create repositories gets push.
    let fresh = "repository:conf/unborn:pull,push";
    assert_eq!(
        granted(&admin, fresh),
        access("conf/unborn", &["pull", "push"])
    );
    let a = granted(&reader, fresh);
    assert!(
        !a.to_string().contains("push"),
        "the reader may create repositories: {a}"
    );
}

#[test]
fn anonymous_pull_of_a_public_repository_works_with_and_without_a_token() {
    let s = Server::start();
    let image = push_image(&OciClient::admin(&s), "conf/public", "v1", "public");
    let path = "/v2/conf/public/manifests/v1";
    // Without a token: no challenge at all.
    let anon = OciClient::anonymous(&s);
    let r = anon.get_manifest("conf/public", "v1");
    expect(&r, 200);
    assert!(r.challenge.is_none(), "a public read was challenged: {r}");
    // With an anonymous token, fetched as docker does after `GET /v2/`'s
    // challenge, for the pull scope of the name.
    let base = anon.get("/v2/");
    let c = base.challenge.expect("GET /v2/ challenges");
    let t = anon
        .http
        .get(anon.url(&c.realm))
        .query(&[
            ("service", c.service.as_str()),
            ("scope", "repository:conf/public:pull"),
        ])
        .send()
        .unwrap();
    assert_eq!(t.status().as_u16(), 200);
    let v: Value = t.json().unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let r = anon
        .http
        .get(anon.url(path))
        .header("Accept", accept_all())
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().unwrap().to_vec(), image.manifest);
}

// ==================================================================== push --

#[test]
fn push_to_a_new_name_creates_the_repository() {
    let s = Server::start();
    let admin = OciClient::admin(&s);
    // The first write to the name is challenged with the name's push scope.
    let r = admin.send("POST", "/v2/conf/fresh/app/blobs/uploads/", &[], &[]);
    expect(&r, 202);
    expect_scope(&r, "repository:conf/fresh/app:pull,push");
    let location = r.header("location");
    let blob = bytes("fresh", 1234);
    let digest = sha256_digest(&blob);
    let r = admin.send("PUT", &with_query(&location, "digest", &digest), &[], &blob);
    expect(&r, 201);
    expect_scope(&r, "repository:conf/fresh/app:pull,push");
    let image = push_image(&admin, "conf/fresh/app", "v1", "fresh");
    // Pullable by anyone at once (the created repository publishes on push).
    let anon = OciClient::anonymous(&s);
    let r = anon.get_manifest("conf/fresh/app", "v1");
    expect(&r, 200);
    assert_eq!(r.body, image.manifest);
    let r = anon.get(&format!("/v2/conf/fresh/app/blobs/{digest}"));
    expect(&r, 200);
    assert_eq!(r.body, blob);
    let r = anon.get("/v2/conf/fresh/app/tags/list");
    expect(&r, 200);
    assert_eq!(r.json(), json!({"name": "conf/fresh/app", "tags": ["v1"]}));
    let r = anon.get("/v2/_catalog");
    expect(&r, 200);
    assert_eq!(r.json()["repositories"], json!(["conf/fresh/app"]), "{r}");
    // A manifest PUT to another new name creates it as well (its blobs
    // mounted from the first name).
    for b in std::iter::once(&image.config).chain(&image.layers) {
        let d = sha256_digest(b);
        let r = admin.send(
            "POST",
            &format!("/v2/conf/second/blobs/uploads/?mount={d}&from=conf/fresh/app"),
            &[],
            &[],
        );
        expect(&r, 201);
    }
    let r = admin.put_manifest("conf/second", "latest", OCI_MANIFEST, &image.manifest);
    expect(&r, 201);
    expect_scope(&r, "repository:conf/second:pull,push");
    expect(&anon.get_manifest("conf/second", "latest"), 200);
}

/// Wharf refuses names with a path component its routes use (`manifests`,
/// `blobs`, `tags`, `uploads`, `referrers`), though the spec's name grammar
/// allows them: the refusal must be a clean `NAME_INVALID` at the first
/// write, before anything is stored or created, not a 5xx after the push.
#[test]
fn a_name_with_a_route_word_is_refused_before_anything_is_stored() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    for name in ["conf/tags", "conf/manifests/app"] {
        let blob = bytes(name, 100);
        let digest = sha256_digest(&blob);
        let uploads = format!("/v2/{name}/blobs/uploads/");
        let r = c.send("POST", &uploads, &[], &[]);
        expect_error(&r, 400, "NAME_INVALID");
        let r = c.send("POST", &with_query(&uploads, "digest", &digest), &[], &blob);
        expect_error(&r, 400, "NAME_INVALID");
        let manifest = oci_manifest(desc(OCI_EMPTY, b"{}"), vec![], json!({}));
        let r = c.put_manifest(name, "v1", OCI_MANIFEST, &manifest);
        expect_error(&r, 400, "NAME_INVALID");
    }
    let (status, repos) = s.get_json("/api/v1/repositories");
    assert_eq!(status, 200, "{repos}");
    assert_eq!(
        repos["items"],
        json!([]),
        "a refused name left a repository"
    );
}

#[test]
fn anonymous_and_unprivileged_pushes_are_refused_and_create_nothing() {
    let s = Server::start();
    user(&s, "nobody", "nobody-password", &[]);
    let blob = bytes("refused", 100);
    let digest = sha256_digest(&blob);
    let manifest = oci_manifest(desc(OCI_EMPTY, b"{}"), vec![], json!({}));
    for (who, client, name) in [
        ("anonymous", OciClient::anonymous(&s), "conf/anon"),
        (
            "nobody",
            OciClient::user(&s, "nobody", "nobody-password"),
            "conf/nobody",
        ),
    ] {
        let uploads = format!("/v2/{name}/blobs/uploads/");
        for r in [
            client.send("POST", &uploads, &[], &[]),
            client.send("POST", &with_query(&uploads, "digest", &digest), &[], &blob),
            client.put_manifest(name, "v1", OCI_MANIFEST, &manifest),
        ] {
            assert!(r.status == 401 || r.status == 403, "{who} pushed: {r}");
            expect_scope(&r, &format!("repository:{name}:pull,push"));
            check_error_body(&r);
        }
        // Nothing was created: the name is still unknown.
        let r = OciClient::admin(&s).get(&format!("/v2/{name}/tags/list"));
        expect_error(&r, 404, "NAME_UNKNOWN");
    }
    let r = OciClient::anonymous(&s).get("/v2/_catalog");
    expect(&r, 200);
    assert_eq!(r.json()["repositories"], json!([]), "{r}");
}

#[test]
fn push_blob_post_then_put() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let blob = bytes("post-put", 50_000);
    let digest = sha256_digest(&blob);
    let location = c.start_upload("conf/blobbed");
    let r = c.send(
        "PUT",
        &with_query(&location, "digest", &digest),
        &[("Content-Type", "application/octet-stream")],
        &blob,
    );
    expect(&r, 201);
    expect_digest_header(&r, &digest);
    let blob_location = r.header("location");
    assert!(!blob_location.is_empty(), "201 without Location: {r}");
    let r = c.get(&blob_location);
    expect(&r, 200);
    assert_eq!(r.body, blob, "the Location is the pullable blob");
    // The session is over.
    expect_error(&c.get(&location), 404, "BLOB_UPLOAD_UNKNOWN");
    // Two sessions at once have different locations.
    assert_ne!(
        c.start_upload("conf/blobbed"),
        c.start_upload("conf/blobbed")
    );
}

#[test]
fn push_blob_in_a_single_post() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let blob = bytes("single-post", 20_000);
    let digest = sha256_digest(&blob);
    let r = c.send(
        "POST",
        &format!("/v2/conf/single/blobs/uploads/?digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        &blob,
    );
    expect(&r, 201);
    expect_digest_header(&r, &digest);
    let r = c.get(&r.header("location"));
    expect(&r, 200);
    assert_eq!(r.body, blob);
    // An empty blob and `{}` too.
    for small in [&b""[..], b"{}"] {
        let d = sha256_digest(small);
        let r = c.send(
            "POST",
            &format!("/v2/conf/single/blobs/uploads/?digest={d}"),
            &[],
            small,
        );
        expect(&r, 201);
        let r = c.head(&format!("/v2/conf/single/blobs/{d}"));
        expect(&r, 200);
        assert_eq!(r.header("content-length"), small.len().to_string(), "{r}");
    }
}

#[test]
fn push_blob_in_chunks() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let name = "conf/chunks";
    // Chunks, then an empty closing PUT; and chunks with the last one in
    // the closing PUT.
    for last_in_put in [false, true] {
        let blob = bytes(&format!("chunked-{last_in_put}"), 30_001);
        let digest = sha256_digest(&blob);
        let mut location = c.start_upload(name);
        let chunks: Vec<&[u8]> = blob.chunks(10_000).collect();
        let mut start = 0usize;
        for (i, chunk) in chunks.iter().enumerate() {
            let end = start + chunk.len() - 1;
            let range = format!("{start}-{end}");
            let headers = [
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", range.as_str()),
            ];
            if i == 1 {
                // Out of order: the chunk after this one.
                let ahead = format!("{}-{}", end + 1, end + chunk.len());
                let r = c.send("PATCH", &location, &[("Content-Range", &ahead)], chunk);
                expect(&r, 416);
                // The status tells where to resume.
                let r = c.get(&location);
                expect(&r, 204);
                assert_eq!(r.header("range"), format!("0-{}", start - 1), "{r}");
                assert!(!r.header("docker-upload-uuid").is_empty(), "{r}");
                assert!(!r.header("location").is_empty(), "{r}");
                location = r.header("location");
            }
            if last_in_put && i == chunks.len() - 1 {
                // A closing PUT whose chunk is out of order: 416, and the
                // session goes on.
                let back = format!("0-{}", chunk.len() - 1);
                let r = c.send(
                    "PUT",
                    &with_query(&location, "digest", &digest),
                    &[("Content-Range", &back)],
                    chunk,
                );
                expect(&r, 416);
                let r = c.get(&location);
                expect(&r, 204);
                assert_eq!(r.header("range"), format!("0-{}", start - 1), "{r}");
                location = r.header("location");
                let r = c.send(
                    "PUT",
                    &with_query(&location, "digest", &digest),
                    &headers,
                    chunk,
                );
                expect(&r, 201);
                expect_digest_header(&r, &digest);
                location = r.header("location");
            } else {
                let r = c.send("PATCH", &location, &headers, chunk);
                expect(&r, 202);
                assert_eq!(r.header("range"), format!("0-{end}"), "{r}");
                location = r.header("location");
                assert!(!location.is_empty(), "202 without Location: {r}");
            }
            start = end + 1;
        }
        if !last_in_put {
            let r = c.get(&location);
            expect(&r, 204);
            assert_eq!(r.header("range"), format!("0-{}", blob.len() - 1), "{r}");
            let r = c.send("PUT", &with_query(&location, "digest", &digest), &[], &[]);
            expect(&r, 201);
            expect_digest_header(&r, &digest);
            location = r.header("location");
        }
        let r = c.get(&location);
        expect(&r, 200);
        assert_eq!(r.body, blob, "last chunk in the PUT: {last_in_put}");
    }
}

#[test]
fn push_blob_streamed_in_one_patch() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let blob = bytes("stream", 70_000);
    let digest = sha256_digest(&blob);
    let location = c.start_upload("conf/stream");
    // No Content-Range, no Content-Length: chunked transfer encoding.
    let r = c.send_as(
        "PATCH",
        &location,
        &[("Content-Type", "application/octet-stream")],
        &blob,
        true,
    );
    expect(&r, 202);
    assert_eq!(r.header("range"), format!("0-{}", blob.len() - 1), "{r}");
    let location = r.header("location");
    let r = c.send("PUT", &with_query(&location, "digest", &digest), &[], &[]);
    expect(&r, 201);
    expect_digest_header(&r, &digest);
    let r = c.get(&r.header("location"));
    expect(&r, 200);
    assert_eq!(r.body, blob);
}

#[test]
fn push_blob_upload_canceled() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let blob = bytes("cancel", 5000);
    let digest = sha256_digest(&blob);
    let location = c.start_upload("conf/cancel");
    let r = c.send(
        "PATCH",
        &location,
        &[("Content-Range", "0-99")],
        &blob[..100],
    );
    expect(&r, 202);
    // The latest answer's location names the session from now on.
    let location = r.header("location");
    let r = c.send("DELETE", &location, &[], &[]);
    expect(&r, 204);
    expect_error(&c.get(&location), 404, "BLOB_UPLOAD_UNKNOWN");
    let r = c.send("PUT", &with_query(&location, "digest", &digest), &[], &blob);
    expect_error(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    expect_error(
        &c.get(&format!("/v2/conf/cancel/blobs/{digest}")),
        404,
        "BLOB_UNKNOWN",
    );
}

#[test]
fn push_blob_with_a_wrong_digest_is_refused() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let name = "conf/baddigest";
    let blob = bytes("bad-digest", 9000);
    let wrong = sha256_digest(b"some other bytes");
    let uploads = format!("/v2/{name}/blobs/uploads/");
    // Single POST.
    let r = c.send("POST", &with_query(&uploads, "digest", &wrong), &[], &blob);
    expect_error(&r, 400, "DIGEST_INVALID");
    // POST then PUT.
    let location = c.start_upload(name);
    let r = c.send("PUT", &with_query(&location, "digest", &wrong), &[], &blob);
    expect_error(&r, 400, "DIGEST_INVALID");
    // Chunked, closing PUT empty.
    let location = c.start_upload(name);
    let r = c.send("PATCH", &location, &[("Content-Range", "0-8999")], &blob);
    expect(&r, 202);
    let r = c.send(
        "PUT",
        &with_query(&r.header("location"), "digest", &wrong),
        &[],
        &[],
    );
    expect_error(&r, 400, "DIGEST_INVALID");
    // Streamed.
    let location = c.start_upload(name);
    let r = c.send_as("PATCH", &location, &[], &blob, true);
    expect(&r, 202);
    let r = c.send(
        "PUT",
        &with_query(&r.header("location"), "digest", &wrong),
        &[],
        &[],
    );
    expect_error(&r, 400, "DIGEST_INVALID");
    // A digest that is no digest at all.
    let r = c.send(
        "POST",
        &with_query(&uploads, "digest", "sha256:nothex"),
        &[],
        &blob,
    );
    assert_eq!(r.status, 400, "{r}");
    check_error_body(&r);
    // Nothing was stored under either digest.
    for d in [wrong, sha256_digest(&blob)] {
        expect_error(
            &c.get(&format!("/v2/{name}/blobs/{d}")),
            404,
            "BLOB_UNKNOWN",
        );
    }
}

#[test]
fn a_pushed_blob_is_readable_at_once_and_only_where_it_was_pushed() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let anon = OciClient::anonymous(&s);
    let blob = bytes("here", 4096);
    let digest = c.push_blob("conf/here", &blob);
    for client in [&c, &anon] {
        let r = client.get(&format!("/v2/conf/here/blobs/{digest}"));
        expect(&r, 200);
        assert_eq!(r.body, blob);
        expect(&client.head(&format!("/v2/conf/here/blobs/{digest}")), 200);
    }
    // Another repository that does not hold it.
    c.push_blob("conf/there", &bytes("there", 10));
    for client in [&c, &anon] {
        expect_error(
            &client.get(&format!("/v2/conf/there/blobs/{digest}")),
            404,
            "BLOB_UNKNOWN",
        );
        expect(&client.head(&format!("/v2/conf/there/blobs/{digest}")), 404);
    }
    // Pushed there too, it is there.
    c.push_blob("conf/there", &blob);
    expect(&anon.get(&format!("/v2/conf/there/blobs/{digest}")), 200);
}

#[test]
fn mount_from_another_repository() {
    let s = Server::start();
    let admin = OciClient::admin(&s);
    let blob = bytes("mount", 8000);
    let digest = admin.push_blob("conf/src", &blob);
    // Readable source: 201, Location, digest; readable through the target.
    let r = admin.send(
        "POST",
        &format!("/v2/conf/dst/blobs/uploads/?mount={digest}&from=conf/src"),
        &[],
        &[],
    );
    expect(&r, 201);
    expect_digest_header(&r, &digest);
    let r = admin.get(&r.header("location"));
    expect(&r, 200);
    assert_eq!(r.body, blob);
    expect(
        &OciClient::anonymous(&s).get(&format!("/v2/conf/dst/blobs/{digest}")),
        200,
    );

    // A digest nobody has: 202 and an upload session that works.
    let missing = bytes("mount-missing", 300);
    let missing_digest = sha256_digest(&missing);
    let r = admin.send(
        "POST",
        &format!("/v2/conf/dst/blobs/uploads/?mount={missing_digest}&from=conf/src"),
        &[],
        &[],
    );
    expect(&r, 202);
    let location = r.header("location");
    assert!(!location.is_empty(), "{r}");
    let r = admin.send(
        "PUT",
        &with_query(&location, "digest", &missing_digest),
        &[],
        &missing,
    );
    expect(&r, 201);

    // A source the caller may not read: 202, never the blob.
    protected_repo(&s, "vault", "conf/vault");
    let secret = bytes("secret", 500);
    let secret_digest = admin.push_blob("conf/vault", &secret);
    user(
        &s,
        "pusher",
        "pusher-password",
        &[("/repositories/", &["create", "update"])],
    );
    let pusher = OciClient::user(&s, "pusher", "pusher-password");
    pusher.push_blob("conf/pusher", b"the pusher's own");
    let r = pusher.send(
        "POST",
        &format!("/v2/conf/pusher/blobs/uploads/?mount={secret_digest}&from=conf/vault"),
        &[],
        &[],
    );
    expect(&r, 202);
    expect_scope(&r, "repository:conf/pusher:pull,push");
    expect_error(
        &pusher.get(&format!("/v2/conf/pusher/blobs/{secret_digest}")),
        404,
        "BLOB_UNKNOWN",
    );
}

#[test]
fn push_manifest_by_tag_and_by_digest_is_visible_at_once() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let anon = OciClient::anonymous(&s);
    let name = "conf/pushed";
    let image = push_image(&c, name, "v1", "manifests");
    // The tag push was checked by push_image; here its answer in detail.
    let r = c.put_manifest(name, "v1", OCI_MANIFEST, &image.manifest);
    expect(&r, 201);
    expect_digest_header(&r, &image.digest);
    let location = r.header("location");
    assert!(!location.is_empty(), "201 without Location: {r}");
    let r = anon.send("GET", &location, &[("Accept", &accept_all())], &[]);
    expect(&r, 200);
    assert_eq!(
        r.body, image.manifest,
        "the Location is the pullable manifest"
    );

    // By digest: a second manifest, no tag.
    let other = oci_manifest(
        desc(OCI_CONFIG, &image.config),
        vec![desc(OCI_LAYER, &image.layers[1])],
        json!({}),
    );
    let digest = sha256_digest(&other);
    let r = c.put_manifest(name, &digest, OCI_MANIFEST, &other);
    expect(&r, 201);
    expect_digest_header(&r, &digest);
    let r = anon.get_manifest(name, &digest);
    expect(&r, 200);
    assert_eq!(r.body, other);
    assert_eq!(r.header("content-type"), OCI_MANIFEST);
    // Tags move, and every answer follows at once.
    let r = c.put_manifest(name, "v2", OCI_MANIFEST, &other);
    expect(&r, 201);
    let r = anon.get_manifest(name, "v2");
    expect(&r, 200);
    expect_digest_header(&r, &digest);
    let r = anon.get(&format!("/v2/{name}/tags/list"));
    assert_eq!(r.json()["tags"], json!(["v1", "v2"]), "{r}");
    c.push_manifest(name, "v1", OCI_MANIFEST, &other);
    let r = anon.get_manifest(name, "v1");
    expect_digest_header(&r, &digest);
    assert_eq!(r.body, other);
    // The first manifest is still there by digest.
    expect(&anon.get_manifest(name, &image.digest), 200);
}

#[test]
fn push_manifest_refusals() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let name = "conf/refused";
    let image = push_image(&c, name, "v1", "refused");
    let config = desc(OCI_CONFIG, &image.config);
    // A layer never pushed.
    let ghost = bytes("ghost", 64);
    let bad = oci_manifest(config.clone(), vec![desc(OCI_LAYER, &ghost)], json!({}));
    let r = c.put_manifest(name, "bad", OCI_MANIFEST, &bad);
    expect_error(&r, 400, "MANIFEST_BLOB_UNKNOWN");
    // A config never pushed.
    let bad = oci_manifest(desc(OCI_CONFIG, &ghost), vec![], json!({}));
    expect_error(
        &c.put_manifest(name, "bad", OCI_MANIFEST, &bad),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    // Not JSON; JSON but not a manifest; a wrong schema version.
    for invalid in [
        b"{\"schemaVersion\": 2".to_vec(),
        b"[1, 2, 3]".to_vec(),
        oci_manifest(config.clone(), vec![], json!({"schemaVersion": 1})),
    ] {
        let r = c.put_manifest(name, "bad", OCI_MANIFEST, &invalid);
        expect_error(&r, 400, "MANIFEST_INVALID");
    }
    // The digest in the path is not the body's.
    let r = c.put_manifest(
        name,
        &sha256_digest(b"another"),
        OCI_MANIFEST,
        &image.manifest,
    );
    expect_error(&r, 400, "DIGEST_INVALID");
    // None of it was recorded.
    expect_error(&c.get_manifest(name, "bad"), 404, "MANIFEST_UNKNOWN");
    let r = c.get(&format!("/v2/{name}/tags/list"));
    assert_eq!(r.json()["tags"], json!(["v1"]), "{r}");
}

#[test]
fn push_artifact_with_the_empty_config_and_layers_of_any_media_type() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let anon = OciClient::anonymous(&s);
    let name = "conf/artifact";
    let empty = b"{}";
    let empty_digest = c.push_blob(name, empty);
    assert_eq!(
        empty_digest,
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let layers: Vec<(&str, Vec<u8>)> = vec![
        (
            "application/vnd.example.data.v1.tar+gzip",
            bytes("data", 2000),
        ),
        ("text/plain", b"hello, artifact\n".to_vec()),
        ("application/json", br#"{"k": "v"}"#.to_vec()),
    ];
    for (_, l) in &layers {
        c.push_blob(name, l);
    }
    // Descriptors with annotations and `data`, and a field no spec names:
    // all kept as pushed.
    let mut described: Vec<Value> = layers.iter().map(|(t, l)| desc(t, l)).collect();
    described[1]["annotations"] = json!({"org.opencontainers.image.title": "hello.txt"});
    {
        use base64::Engine as _;
        described[2]["data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(&layers[2].1));
    }
    let manifest = oci_manifest(
        json!({"mediaType": OCI_EMPTY, "digest": empty_digest, "size": 2}),
        described,
        json!({"artifactType": "application/vnd.example.thing.v1",
               "annotations": {"org.opencontainers.image.title": "thing"},
               "org.example.custom": {"kept": [1, 2, 3]}}),
    );
    let digest = c.push_manifest(name, "thing", OCI_MANIFEST, &manifest);
    let r = anon.get_manifest(name, "thing");
    expect(&r, 200);
    assert_eq!(r.body, manifest);
    expect_digest_header(&r, &digest);
    assert_eq!(r.header("content-type"), OCI_MANIFEST);
    let served = r.json();
    assert_eq!(served["artifactType"], "application/vnd.example.thing.v1");
    for (i, (t, l)) in layers.iter().enumerate() {
        assert_eq!(served["layers"][i]["mediaType"], *t);
        let r = anon.get(&format!("/v2/{name}/blobs/{}", sha256_digest(l)));
        expect(&r, 200);
        assert_eq!(&r.body, l, "{t} layer");
    }
    let r = anon.get(&format!("/v2/{name}/blobs/{empty_digest}"));
    expect(&r, 200);
    assert_eq!(r.body, empty);
    // An artifact without layers at all.
    let bare = oci_manifest(
        json!({"mediaType": OCI_EMPTY, "digest": empty_digest, "size": 2}),
        vec![],
        json!({"artifactType": "application/vnd.example.empty.v1"}),
    );
    c.push_manifest(name, "bare", OCI_MANIFEST, &bare);
    assert_eq!(anon.get_manifest(name, "bare").body, bare);
}

#[test]
fn push_image_index() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let anon = OciClient::anonymous(&s);
    let name = "conf/index";
    let amd = push_image(&c, name, "amd64", "amd64");
    let arm = push_image(&c, name, "arm64", "arm64");
    let platform = |arch: &str| json!({"architecture": arch, "os": "linux"});
    let mut entries = Vec::new();
    for (image, arch) in [(&amd, "amd64"), (&arm, "arm64")] {
        let mut d = desc(OCI_MANIFEST, &image.manifest);
        d["platform"] = platform(arch);
        entries.push(d);
    }
    let index = oci_index(entries.clone(), json!({}));
    let digest = c.push_manifest(name, "multi", OCI_INDEX, &index);
    for reference in ["multi", digest.as_str()] {
        let r = anon.get_manifest(name, reference);
        expect(&r, 200);
        assert_eq!(r.body, index);
        assert_eq!(r.header("content-type"), OCI_INDEX, "{r}");
        expect_digest_header(&r, &digest);
    }
    // An empty index, and an index of indexes.
    let empty = oci_index(vec![], json!({}));
    let empty_digest = c.push_manifest(name, "empty", OCI_INDEX, &empty);
    assert_eq!(anon.get_manifest(name, "empty").body, empty);
    let nested = oci_index(
        vec![desc(OCI_INDEX, &index), desc(OCI_INDEX, &empty)],
        json!({"annotations": {"org.example.nested": "yes"}}),
    );
    c.push_manifest(name, "nested", OCI_INDEX, &nested);
    let r = anon.get_manifest(name, "nested");
    expect(&r, 200);
    assert_eq!(r.body, nested);
    expect(&anon.get_manifest(name, &empty_digest), 200);
    // An index naming a manifest this repository does not have.
    let stray = oci_manifest(desc(OCI_EMPTY, b"{}"), vec![], json!({}));
    let mut bad_entries = entries;
    bad_entries.push(desc(OCI_MANIFEST, &stray));
    let bad = oci_index(bad_entries, json!({}));
    let r = c.put_manifest(name, "bad", OCI_INDEX, &bad);
    expect_error(&r, 400, "MANIFEST_BLOB_UNKNOWN");
}

#[test]
fn push_manifest_with_subject_answers_oci_subject() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let name = "conf/subject";
    let image = push_image(&c, name, "v1", "subject");
    let empty_digest = c.push_blob(name, b"{}");
    let empty = json!({"mediaType": OCI_EMPTY, "digest": empty_digest, "size": 2});
    let sig = oci_manifest(
        empty.clone(),
        vec![],
        json!({"artifactType": "application/vnd.example.sig.v1",
               "subject": desc(OCI_MANIFEST, &image.manifest)}),
    );
    let sig_digest = sha256_digest(&sig);
    let r = c.put_manifest(name, &sig_digest, OCI_MANIFEST, &sig);
    expect(&r, 201);
    assert_eq!(r.header("oci-subject"), image.digest, "{r}");
    // A subject that does not exist (yet) MUST be accepted.
    let later = oci_manifest(
        empty.clone(),
        vec![],
        json!({"annotations": {"later": "yes"}}),
    );
    let early = oci_manifest(
        empty,
        vec![],
        json!({"artifactType": "application/vnd.example.early.v1",
               "subject": desc(OCI_MANIFEST, &later)}),
    );
    let r = c.put_manifest(name, &sha256_digest(&early), OCI_MANIFEST, &early);
    expect(&r, 201);
    assert_eq!(r.header("oci-subject"), sha256_digest(&later), "{r}");
    // A manifest without a subject gets no such header.
    let r = c.put_manifest(name, "v1", OCI_MANIFEST, &image.manifest);
    expect(&r, 201);
    assert!(!r.has_header("oci-subject"), "{r}");
}

// ======================================================= content discovery --

#[test]
fn tags_list_is_sorted_and_paginated() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let anon = OciClient::anonymous(&s);
    let name = "conf/tagged";
    let image = push_image(&c, name, "latest", "tags");
    for tag in ["v2", "alpha", "v10", "v1", "beta", "1.0", "v1.0_rc-1"] {
        c.push_manifest(name, tag, OCI_MANIFEST, &image.manifest);
    }
    let mut all: Vec<String> = [
        "latest",
        "v2",
        "alpha",
        "v10",
        "v1",
        "beta",
        "1.0",
        "v1.0_rc-1",
    ]
    .map(String::from)
    .to_vec();
    all.sort();
    let r = anon.get(&format!("/v2/{name}/tags/list"));
    expect(&r, 200);
    assert_eq!(r.json(), json!({"name": name, "tags": all}), "{r}");

    // n=3: pages of three, each with a Link to the next, in order.
    let mut seen: Vec<String> = Vec::new();
    let mut next = Some(format!("/v2/{name}/tags/list?n=3"));
    let mut pages = 0;
    while let Some(target) = next.take() {
        let r = anon.get(&target);
        expect(&r, 200);
        let page: Vec<String> = serde_json::from_value(r.json()["tags"].clone()).unwrap();
        assert!(page.len() <= 3, "more than n: {r}");
        seen.extend(page.clone());
        pages += 1;
        assert!(pages <= all.len(), "the Links never end: {r}");
        let link = r.header("link");
        if !link.is_empty() {
            assert!(link.contains("rel=\"next\""), "{r}");
            let url = link
                .split_once('<')
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(u, _)| u.to_string())
                .unwrap_or_else(|| panic!("a Link without <url>: {r}"));
            next = Some(url);
        } else {
            // Without a Link, a short page is the end.
            if page.len() == 3 && seen.len() < all.len() {
                panic!("a full page without a Link before the end: {r}");
            }
        }
    }
    assert_eq!(seen, all, "pages concatenated");

    // n=0: empty, no Link.
    let r = anon.get(&format!("/v2/{name}/tags/list?n=0"));
    expect(&r, 200);
    assert_eq!(r.json()["tags"], json!([]), "{r}");
    assert!(!r.has_header("link"), "n=0 with a Link: {r}");
    // last: what follows, exclusive; n then bounds it.
    let r = anon.get(&format!("/v2/{name}/tags/list?last=beta"));
    expect(&r, 200);
    let after: Vec<&String> = all.iter().filter(|t| t.as_str() > "beta").collect();
    assert_eq!(r.json()["tags"], json!(after), "{r}");
    let r = anon.get(&format!("/v2/{name}/tags/list?n=2&last=latest"));
    assert_eq!(r.json()["tags"], json!(["v1", "v1.0_rc-1"]), "{r}");
    // n larger than all.
    let r = anon.get(&format!("/v2/{name}/tags/list?n=100"));
    assert_eq!(r.json()["tags"], json!(all), "{r}");
    assert!(!r.has_header("link"), "{r}");
}

#[test]
fn catalog_is_paginated() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let names = ["conf/cat/c", "conf/cat/a", "conf/cat/b", "conf/cat/d"];
    for n in names {
        push_image(&c, n, "v1", n);
    }
    let mut sorted = names.to_vec();
    sorted.sort();
    let anon = OciClient::anonymous(&s);
    let r = anon.get("/v2/_catalog");
    expect(&r, 200);
    assert_eq!(r.json()["repositories"], json!(sorted), "{r}");
    let r = anon.get("/v2/_catalog?n=2");
    expect(&r, 200);
    assert_eq!(r.json()["repositories"], json!(sorted[..2]), "{r}");
    let link = r.header("link");
    assert!(link.contains("rel=\"next\""), "{r}");
    let url = link[link.find('<').unwrap() + 1..link.find('>').unwrap()].to_string();
    let r = anon.get(&url);
    expect(&r, 200);
    assert_eq!(r.json()["repositories"], json!(sorted[2..]), "{r}");
    let r = anon.get("/v2/_catalog?n=10&last=conf/cat/b");
    assert_eq!(r.json()["repositories"], json!(sorted[2..]), "{r}");
}

/// An image and three referrers of it: an SBOM (artifactType, annotations),
/// a signature, and a manifest with no artifactType (its config's media type
/// stands in). Returns the image and (digest, artifactType, bytes) of each.
fn image_with_referrers(c: &OciClient, name: &str) -> (Image, Vec<(String, String, Vec<u8>)>) {
    let image = push_image(c, name, "v1", name);
    let empty_digest = c.push_blob(name, b"{}");
    let empty = json!({"mediaType": OCI_EMPTY, "digest": empty_digest, "size": 2});
    let subject = desc(OCI_MANIFEST, &image.manifest);
    let sbom_layer = br#"{"sbom": true}"#;
    c.push_blob(name, sbom_layer);
    let custom_config = br#"{"tool": "example"}"#;
    c.push_blob(name, custom_config);
    let docs = [
        (
            "application/vnd.example.sbom.v1",
            oci_manifest(
                empty.clone(),
                vec![desc("application/json", sbom_layer)],
                json!({"artifactType": "application/vnd.example.sbom.v1",
                       "subject": subject,
                       "annotations": {"org.example.sbom.format": "json"}}),
            ),
        ),
        (
            "application/vnd.example.sig.v1",
            oci_manifest(
                empty.clone(),
                vec![],
                json!({"artifactType": "application/vnd.example.sig.v1", "subject": subject}),
            ),
        ),
        (
            "application/vnd.example.config.v1+json",
            oci_manifest(
                desc("application/vnd.example.config.v1+json", custom_config),
                vec![],
                json!({"subject": subject}),
            ),
        ),
    ];
    let mut out = Vec::new();
    for (artifact_type, doc) in docs {
        let digest = sha256_digest(&doc);
        let r = c.put_manifest(name, &digest, OCI_MANIFEST, &doc);
        expect(&r, 201);
        out.push((digest, artifact_type.to_string(), doc));
    }
    (image, out)
}

/// The referrers index of `digest`, checked for what every answer must be.
#[track_caller]
fn referrers(c: &OciClient, name: &str, digest: &str, query: &str) -> (Reply, Vec<Value>) {
    let r = c.get(&format!("/v2/{name}/referrers/{digest}{query}"));
    expect(&r, 200);
    assert_eq!(r.header("content-type"), OCI_INDEX, "{r}");
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2, "{r}");
    assert_eq!(v["mediaType"], OCI_INDEX, "{r}");
    let manifests = v["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests list: {r}"))
        .clone();
    (r, manifests)
}

#[test]
fn referrers_are_listed_filtered_and_empty_when_none() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let anon = OciClient::anonymous(&s);
    let name = "conf/referred";
    let (image, refs) = image_with_referrers(&c, name);

    let (r, list) = referrers(&anon, name, &image.digest, "");
    assert_eq!(list.len(), 3, "{r}");
    for (digest, artifact_type, doc) in &refs {
        let d = list
            .iter()
            .find(|d| d["digest"] == digest.as_str())
            .unwrap_or_else(|| panic!("{digest} is not listed: {r}"));
        assert_eq!(d["mediaType"], OCI_MANIFEST, "{r}");
        assert_eq!(d["size"], doc.len(), "{r}");
        assert_eq!(d["artifactType"], artifact_type.as_str(), "{r}");
        let annotations = serde_json::from_slice::<Value>(doc).unwrap()["annotations"].clone();
        if !annotations.is_null() {
            assert_eq!(d["annotations"], annotations, "annotations copied: {r}");
        }
    }
    // Filtered by artifactType.
    let sbom = "application/vnd.example.sbom.v1";
    let (r, list) = referrers(
        &anon,
        name,
        &image.digest,
        &format!("?artifactType={}", encode(sbom)),
    );
    assert_eq!(r.header("oci-filters-applied"), "artifactType", "{r}");
    assert_eq!(list.len(), 1, "{r}");
    assert_eq!(list[0]["digest"], refs[0].0.as_str(), "{r}");
    let (r, list) = referrers(
        &anon,
        name,
        &image.digest,
        "?artifactType=application%2Fnone",
    );
    assert!(list.is_empty(), "{r}");
    // A digest without referrers (a layer; one nobody has): empty, not 404.
    for d in [sha256_digest(&image.layers[0]), sha256_digest(b"nothing")] {
        let (r, list) = referrers(&anon, name, &d, "");
        assert!(list.is_empty(), "{r}");
    }
    // Referrers in another repository are not this one's.
    let (_, list) = referrers(&anon, name, &refs[0].0, "");
    assert!(list.is_empty());
    c.push_blob("conf/elsewhere", b"{}");
    let elsewhere = oci_manifest(
        desc(OCI_EMPTY, b"{}"),
        vec![],
        json!({"artifactType": "application/vnd.example.other.v1",
               "subject": desc(OCI_MANIFEST, &image.manifest)}),
    );
    c.push_manifest("conf/elsewhere", "x", OCI_MANIFEST, &elsewhere);
    let (r, list) = referrers(&anon, name, &image.digest, "");
    assert_eq!(
        list.len(),
        3,
        "another repository's referrer listed here: {r}"
    );
    // An invalid digest: 400.
    let r = anon.get(&format!("/v2/{name}/referrers/sha256:nothex"));
    assert_eq!(r.status, 400, "{r}");
    check_error_body(&r);
}

#[test]
fn referrers_include_an_index_with_a_subject() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let name = "conf/refindex";
    let subject = push_image(&c, name, "v1", "refindex");
    let child = push_image(&c, name, "child", "refindex-child");
    let with_type = oci_index(
        vec![desc(OCI_MANIFEST, &child.manifest)],
        json!({"artifactType": "application/vnd.example.bundle.v1",
               "subject": desc(OCI_MANIFEST, &subject.manifest)}),
    );
    let without_type = oci_index(
        vec![desc(OCI_MANIFEST, &child.manifest)],
        json!({"subject": desc(OCI_MANIFEST, &subject.manifest),
               "annotations": {"org.example.kind": "plain"}}),
    );
    for doc in [&with_type, &without_type] {
        let r = c.put_manifest(name, &sha256_digest(doc), OCI_INDEX, doc);
        expect(&r, 201);
        assert_eq!(r.header("oci-subject"), subject.digest, "{r}");
    }
    let (r, list) = referrers(&c, name, &subject.digest, "");
    assert_eq!(list.len(), 2, "{r}");
    let find = |doc: &Vec<u8>| {
        list.iter()
            .find(|d| d["digest"] == sha256_digest(doc).as_str())
            .unwrap_or_else(|| panic!("not listed: {r}"))
            .clone()
    };
    let d = find(&with_type);
    assert_eq!(d["mediaType"], OCI_INDEX, "{r}");
    assert_eq!(
        d["artifactType"], "application/vnd.example.bundle.v1",
        "{r}"
    );
    let d = find(&without_type);
    assert!(
        d.get("artifactType").is_none(),
        "an index's missing artifactType is omitted: {r}"
    );
    assert_eq!(
        d["annotations"],
        json!({"org.example.kind": "plain"}),
        "{r}"
    );
}

#[test]
fn referrers_tag_schema_index_is_served() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let anon = OciClient::anonymous(&s);
    let name = "conf/fallback";
    let (image, refs) = image_with_referrers(&c, name);
    // What a client without the referrers API pushes: an index of the
    // referrers under the tag `<alg>-<hex>`.
    let tag = image.digest.replace(':', "-");
    let entries = refs
        .iter()
        .map(|(_, artifact_type, doc)| {
            let mut d = desc(OCI_MANIFEST, doc);
            d["artifactType"] = json!(artifact_type);
            d
        })
        .collect();
    let index = oci_index(entries, json!({}));
    let digest = c.push_manifest(name, &tag, OCI_INDEX, &index);
    let r = anon.get_manifest(name, &tag);
    expect(&r, 200);
    assert_eq!(r.body, index);
    assert_eq!(r.header("content-type"), OCI_INDEX, "{r}");
    expect_digest_header(&r, &digest);
    let r = anon.get(&format!("/v2/{name}/tags/list"));
    assert_eq!(r.json()["tags"], json!([tag, "v1"]), "{r}");
    // The referrers API still answers the same three.
    let (r, list) = referrers(&anon, name, &image.digest, "");
    assert_eq!(list.len(), 3, "{r}");
}

// ====================================================== content management --

#[test]
fn delete_a_tag_then_the_manifest_by_digest() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let anon = OciClient::anonymous(&s);
    let name = "conf/delete";
    let image = push_image(&c, name, "v1", "delete");
    c.push_manifest(name, "v2", OCI_MANIFEST, &image.manifest);
    let other = push_image(&c, name, "keep", "keep");

    // A tag.
    let r = c.delete(&format!("/v2/{name}/manifests/v1"));
    expect(&r, 202);
    expect_scope(&r, &format!("repository:{name}:pull,push"));
    expect_error(&anon.get_manifest(name, "v1"), 404, "MANIFEST_UNKNOWN");
    expect(&anon.head_manifest(name, "v1"), 404);
    // Only the tag: the manifest and its other tag remain.
    expect(&anon.get_manifest(name, &image.digest), 200);
    expect(&anon.get_manifest(name, "v2"), 200);
    let r = anon.get(&format!("/v2/{name}/tags/list"));
    assert_eq!(r.json()["tags"], json!(["keep", "v2"]), "{r}");
    expect_error(
        &c.delete(&format!("/v2/{name}/manifests/v1")),
        404,
        "MANIFEST_UNKNOWN",
    );

    // The manifest: gone by digest and by every tag naming it.
    let r = c.delete(&format!("/v2/{name}/manifests/{}", image.digest));
    expect(&r, 202);
    expect_error(
        &anon.get_manifest(name, &image.digest),
        404,
        "MANIFEST_UNKNOWN",
    );
    expect(&anon.head_manifest(name, &image.digest), 404);
    expect_error(&anon.get_manifest(name, "v2"), 404, "MANIFEST_UNKNOWN");
    let r = anon.get(&format!("/v2/{name}/tags/list"));
    assert_eq!(r.json()["tags"], json!(["keep"]), "{r}");
    expect_error(
        &c.delete(&format!("/v2/{name}/manifests/{}", image.digest)),
        404,
        "MANIFEST_UNKNOWN",
    );
    // The other image is untouched.
    let r = anon.get_manifest(name, "keep");
    expect(&r, 200);
    assert_eq!(r.body, other.manifest);
    // A repository that does not exist.
    expect_error(
        &c.delete(&format!("/v2/conf/nowhere/manifests/{}", image.digest)),
        404,
        "NAME_UNKNOWN",
    );
    // Anonymous deletes are refused.
    let r = anon.delete(&format!("/v2/{name}/manifests/keep"));
    assert!(r.status == 401 || r.status == 403, "{r}");
    check_error_body(&r);
    expect(&anon.get_manifest(name, "keep"), 200);
}

#[test]
fn deleting_a_referrer_takes_it_off_the_referrers_list() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let name = "conf/unrefer";
    let (image, refs) = image_with_referrers(&c, name);
    let r = c.delete(&format!("/v2/{name}/manifests/{}", refs[1].0));
    expect(&r, 202);
    let (r, list) = referrers(&c, name, &image.digest, "");
    let listed: Vec<&str> = list.iter().filter_map(|d| d["digest"].as_str()).collect();
    assert_eq!(listed.len(), 2, "{r}");
    assert!(
        !listed.contains(&refs[1].0.as_str()),
        "a deleted referrer is listed: {r}"
    );
}

#[test]
fn deleting_a_blob_is_refused_as_the_spec_allows() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let blob = bytes("undeletable", 100);
    let digest = c.push_blob("conf/blobdel", &blob);
    let r = c.delete(&format!("/v2/conf/blobdel/blobs/{digest}"));
    // 400 or 405 when blob deletion is disabled; Wharf answers 405.
    expect_error(&r, 405, "UNSUPPORTED");
    let r = c.get(&format!("/v2/conf/blobdel/blobs/{digest}"));
    expect(&r, 200);
    assert_eq!(r.body, blob);
}

// ================================================================== errors --

#[test]
fn every_4xx_answer_has_the_error_body() {
    let s = Server::start();
    let c = OciClient::admin(&s);
    let anon = OciClient::anonymous(&s);
    let name = "conf/errors";
    push_image(&c, name, "v1", "errors");
    let absent = sha256_digest(b"absent");
    let location = c.start_upload(name);
    let cases: Vec<Reply> = vec![
        anon.get(&format!("/v2/{name}/manifests/nope")),
        anon.get(&format!("/v2/{name}/blobs/{absent}")),
        anon.get("/v2/conf/unknown/manifests/v1"),
        anon.get("/v2/conf/unknown/tags/list"),
        anon.get(&format!("/v2/{name}/manifests/bad..tag!")),
        anon.get("/v2/Upper/Case/manifests/v1"),
        anon.send("POST", &format!("/v2/{name}/blobs/uploads/"), &[], &[]),
        c.put_manifest(name, "v2", OCI_MANIFEST, b"not json"),
        c.send("PATCH", &location, &[("Content-Range", "5-9")], b"12345"),
        c.send("PUT", &with_query(&location, "digest", &absent), &[], b"x"),
        c.get(&format!("/v2/{name}/blobs/uploads/no-such-upload")),
        c.delete(&format!("/v2/{name}/blobs/{absent}")),
        c.put_manifest("conf/Bad_Name", "v1", OCI_MANIFEST, b"{}"),
    ];
    for r in &cases {
        assert!((400..500).contains(&r.status), "not a 4xx: {r}");
        check_error_body(r);
    }
}

// ================================================================== events --

/// An HTTP receiver: every POST's body, answered 200.
fn event_receiver() -> (String, std::sync::mpsc::Receiver<Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(500) {
            let Ok(conn) = conn else { continue };
            let mut reader = BufReader::new(conn);
            let mut len = 0usize;
            let mut line = String::new();
            let mut first = true;
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() && !first {
                    break;
                }
                first = false;
                if let Some((k, v)) = l.split_once(':')
                    && k.trim().eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = reader
                .into_inner()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice(&body)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    (url, rx)
}

/// Wait for an event of `kind` whose text mentions `digest`; returns it.
fn wait_event(rx: &std::sync::mpsc::Receiver<Value>, kind: &str, digest: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(e) => {
                if e["type"] == kind && e.to_string().contains(digest) {
                    return e;
                }
                seen.push(e);
            }
            Err(_) => break,
        }
    }
    panic!("no {kind} event naming {digest}; got {seen:#?}");
}

#[test]
fn push_and_delete_emit_content_events() {
    let s = Server::start();
    let (url, rx) = event_receiver();
    let (status, l) = s.post_json(
        "/api/v1/events/listeners",
        &json!({"type": "http", "url": url, "events": ["content.*"]}),
    );
    assert_eq!(status, 201, "{l}");
    let c = OciClient::admin(&s);
    let name = "conf/events";
    let image = push_image(&c, name, "v1", "events");
    let e = wait_event(&rx, "content.pushed", &image.digest);
    assert!(e.to_string().contains("v1"), "the pushed tag is named: {e}");
    let r = c.delete(&format!("/v2/{name}/manifests/{}", image.digest));
    expect(&r, 202);
    wait_event(&rx, "content.deleted", &image.digest);
}
