//! Helpers for the registry-side tests: the real peers (skopeo, podman, a
//! CNCF distribution registry), a token server for a distribution behind
//! token auth, a fake upstream registry, registry HTTP calls, snapshots of
//! a repository's content, and a tar writer for hostile archives.

use crate::support::*;
use base64::Engine as _;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The media types `docker pull` asks for (engine 20.10 sends these four).
pub const DOCKER_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `admin:PASSWORD`, for `--creds` / `--dest-creds` of skopeo and podman.
pub fn admin_creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

/// The Docker CLI with a config directory of its own (its logins).
pub fn docker_with_config(config: &Path) -> Command {
    let mut c = docker();
    c.env("DOCKER_CONFIG", config);
    c
}

/// `skopeo` with a permissive signature policy (nothing here is signed).
pub fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy");
    c
}

/// `podman` on the test run's private storage (`PODMAN_ARGS`).
pub fn podman() -> Command {
    let args = std::env::var("PODMAN_ARGS").expect("PODMAN_ARGS: run through scripts/test.sh");
    let mut c = Command::new("podman");
    c.args(args.split_whitespace());
    c
}

/// `images.json` written by scripts/make-test-images.sh.
pub fn images_json() -> Value {
    let text = std::fs::read_to_string(images_dir().join("images.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The entry of `images.json` describing `file`.
pub fn image_info(file: &str) -> Value {
    images_json()["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["file"] == file)
        .unwrap_or_else(|| panic!("{file} is not in images.json"))
        .clone()
}

/// A scratch directory in the test run directory, removed on drop.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap()
}

/// Load the test busybox image into the Docker engine as `name_tag`, a
/// name of the test's own (other tests remove the shared `test/busybox`
/// tag from the engine at any time).
pub fn docker_load_busybox_as(name_tag: &str) {
    let tmp = scratch();
    let archive = tmp.path().join("renamed.tar");
    must(skopeo().args([
        "copy",
        "--quiet",
        &format!(
            "docker-archive:{}",
            images_dir().join("busybox.tar").display()
        ),
        &format!("docker-archive:{}:{name_tag}", archive.display()),
    ]));
    must(docker().arg("load").arg("-i").arg(&archive));
}

/// `podman push` of `name` to a test server, as the administrator.
pub fn podman_push_as_admin(name: &str) {
    must(podman().args([
        "push",
        "--tls-verify=false",
        "--creds",
        &admin_creds(),
        name,
    ]));
}

/// Load a test image archive into podman (whose archive names it
/// `archive_ref`) and tag it `name`.
pub fn podman_load_as(file: &str, archive_ref: &str, name: &str) {
    let archive = format!("docker-archive:{}", images_dir().join(file).display());
    must(podman().args(["pull", &archive]));
    let filter = format!("reference={archive_ref}");
    let loaded = must(podman().args(["images", "-q", "--filter", &filter]));
    let id = loaded
        .lines()
        .next()
        .expect("podman loaded the image")
        .trim()
        .to_string();
    must(podman().args(["tag", &id, name]));
}

/// An HTTP client that reports redirects instead of following them.
pub fn no_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// GET (or HEAD) `path` on the server with extra headers.
pub fn request(s: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = no_redirects().request(method, s.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().unwrap()
}

pub fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The `errors[0].code` of a registry error answer.
pub fn error_code(r: Response) -> String {
    let v: Value = r.json().unwrap_or(Value::Null);
    v["errors"][0]["code"].as_str().unwrap_or("").to_string()
}

/// Create a docker repository published as `name`, with extra settings.
pub fn docker_repo(s: &Server, id: &str, name: &str, importer: Value) {
    s.create_repo(json!({
        "id": id,
        "content_type": "docker",
        "importer_config": importer,
        "distributor_config": {"repo_registry_id": name},
    }));
}

/// Upload and import a file; returns the final task record (any state).
pub fn import(s: &Server, repo: &str, file: &Path) -> Value {
    let upload = s.upload(file, 4 << 20);
    s.repo_task(repo, "import", json!({"upload_id": upload}))
}

pub fn publish(s: &Server, repo: &str) -> Value {
    let t = s.repo_task(repo, "publish", json!({}));
    assert_eq!(t["state"], "finished", "publish: {t}");
    t
}

pub fn sync(s: &Server, repo: &str) -> Value {
    s.repo_task(repo, "sync", json!({}))
}

/// A task that must have failed; returns its error message.
pub fn failed_with(task: &Value) -> String {
    assert_eq!(task["state"], "error", "the task did not fail: {task}");
    task["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {task}"))
        .to_string()
}

/// What a repository holds: unit counts and the keys of every unit.
#[derive(Debug, PartialEq)]
pub struct Content {
    pub counts: Value,
    pub tags: Vec<String>,
    pub manifests: Vec<String>,
    pub blobs: Vec<String>,
}

fn unit_keys(s: &Server, repo: &str, unit_type: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/v1/repositories/{repo}/content?type={unit_type}&limit=1000");
        if let Some(a) = &after {
            path.push_str(&format!(
                "&after={}",
                a.replace('@', "%40").replace(':', "%3A")
            ));
        }
        let (status, page) = s.get_json(&path);
        assert_eq!(status, 200, "{path}: {page}");
        for u in page["items"].as_array().unwrap() {
            keys.push(u["key"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return keys,
        }
    }
    panic!("{repo}: more than 1000 pages of {unit_type}");
}

pub fn content(s: &Server, repo: &str) -> Content {
    let (status, detail) = s.get_json(&format!("/api/v1/repositories/{repo}"));
    assert_eq!(status, 200, "{detail}");
    Content {
        counts: detail["content_counts"].clone(),
        tags: unit_keys(s, repo, "tag"),
        manifests: unit_keys(s, repo, "manifest"),
        blobs: unit_keys(s, repo, "blob"),
    }
}

/// Tag names (not unit keys) of a repository.
pub fn tag_names(c: &Content) -> Vec<String> {
    let mut names: Vec<String> = c
        .tags
        .iter()
        .map(|k| k.split_once('@').unwrap().0.to_string())
        .collect();
    names.sort();
    names
}

/// A CNCF distribution registry (`docker-registry`) on loopback with its
/// storage in the test run directory; killed on drop.
pub struct Distribution {
    pub addr: String,
    pub dir: tempfile::TempDir,
    child: Child,
    /// `user:password` when it wants basic auth (used by [`Self::push`]).
    creds: Option<String>,
    /// `https` when it serves TLS, else `http`.
    scheme: &'static str,
}

impl Distribution {
    pub fn start() -> Distribution {
        Self::start_with(None, |_| String::new())
    }

    /// A registry serving TLS with this certificate chain and key (a
    /// private CA's: clients must be told to trust it).
    pub fn start_with_tls(cert: &Path, key: &Path) -> Distribution {
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        Self::start_with(None, |_| tls)
    }

    /// A registry that wants HTTP basic auth as `user`/`password` for
    /// everything (distribution's htpasswd backend; the bcrypt hash made
    /// by Debian's Python through libxcrypt, at the lowest cost).
    pub fn start_with_basic_auth(user: &str, password: &str) -> Distribution {
        let hash = must(Command::new("/usr/bin/python3").args([
            "-W",
            "ignore",
            "-c",
            "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))",
            password,
        ]));
        Self::start_with(Some(format!("{user}:{password}")), |dir| {
            let file = dir.join("htpasswd");
            std::fs::write(&file, format!("{user}:{}\n", hash.trim())).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: wharf-test\n    path: {}\n",
                file.display()
            )
        })
    }

    /// A registry that wants a Bearer token from its own token server for
    /// everything (distribution's `token` auth): the [`TokenServer`] it
    /// names as its realm issues them to `user`/`password` only, signed by a
    /// key whose certificate chains to the registry's `rootcertbundle` (a
    /// private CA). [`Self::push`] goes through the token flow too (skopeo
    /// answers the challenge with the account).
    pub fn start_with_token_auth(user: &str, password: &str) -> (Distribution, TokenServer) {
        let mut tokens = None;
        let d = Self::start_with(Some(format!("{user}:{password}")), |dir| {
            let pki = crate::serving::Pki::new(dir, "token-ca");
            let (chain, key) = pki.leaf("token-signer");
            let server = TokenServer::start(user, password, &chain, &key);
            let auth = format!(
                "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    \
                 issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                server.realm(),
                pki.ca().display()
            );
            tokens = Some(server);
            auth
        });
        (d, tokens.expect("the token server started"))
    }

    /// A registry whose config gets `extra` right after `http.addr` (YAML,
    /// made in its directory): more of `http` when indented.
    fn start_with(creds: Option<String>, extra: impl FnOnce(&Path) -> String) -> Distribution {
        let dir = scratch();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{}",
                dir.path().join("storage").display(),
                extra(dir.path())
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let config_text = std::fs::read_to_string(&config).unwrap();
        let scheme = if config_text.contains("  tls:") {
            "https"
        } else {
            "http"
        };
        let d = Distribution {
            addr,
            dir,
            child,
            creds,
            scheme,
        };
        // Up is all this asks: the certificate is checked by the tests.
        let http = Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let start = Instant::now();
        loop {
            // Up once it answers: 200, or 401 when it wants a login.
            let up = http
                .get(format!("{}/v2/", d.url()))
                .send()
                .is_ok_and(|r| matches!(r.status().as_u16(), 200 | 401));
            if up {
                return d;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "docker-registry did not start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// `skopeo copy` an archive from the test images to `name:tag` here.
    pub fn push(&self, archive: &str, transport: &str, name_tag: &str) {
        let mut copy = skopeo();
        copy.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(creds) = &self.creds {
            copy.args(["--dest-creds", creds]);
        }
        must(copy.args([
            &format!("{transport}:{}", images_dir().join(archive).display()),
            &format!("docker://{}/{name_tag}", self.addr),
        ]));
    }

    /// The manifest `name:reference` as served, with its digest (behind
    /// auth, as skopeo gets it with the account: Basic, or a token).
    pub fn manifest(&self, name: &str, reference: &str) -> (Vec<u8>, String) {
        if let Some(creds) = &self.creds {
            let sep = if reference.starts_with("sha256:") {
                '@'
            } else {
                ':'
            };
            let out = skopeo()
                .args(["inspect", "--raw", "--tls-verify=false", "--creds", creds])
                .arg(format!("docker://{}/{name}{sep}{reference}", self.addr))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "skopeo inspect {name}:{reference}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let digest = sha256_digest(&out.stdout);
            return (out.stdout, digest);
        }
        let r = Client::new()
            .get(format!(
                "http://{}/v2/{name}/manifests/{reference}",
                self.addr
            ))
            .header("Accept", DOCKER_ACCEPT)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{name}:{reference}");
        let digest = header(&r, "docker-content-digest");
        (r.bytes().unwrap().to_vec(), digest)
    }

    /// Where the registry keeps the bytes of a blob.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- docker-registry log ({}) ---\n{}",
                self.addr,
                self.log()
            );
        }
    }
}

/// The `service` a token-auth [`Distribution`] names in its challenges: the
/// audience (`aud`) of the tokens it accepts.
pub const TOKEN_SERVICE: &str = "wharf-test-upstream";
/// The issuer (`iss`) a token-auth [`Distribution`] trusts.
pub const TOKEN_ISSUER: &str = "wharf-test-token-issuer";

/// A token a [`TokenServer`] issued.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The account it was issued to (its `sub`).
    pub subject: String,
    /// What it grants, as scopes: `repository:up/app:pull,push`.
    pub granted: Vec<String>,
    /// The JWT itself.
    pub token: String,
}

/// What a [`TokenServer`] did.
#[derive(Default)]
struct TokenLog {
    issued: Vec<IssuedToken>,
    /// Requests refused for a missing or wrong account.
    refused: usize,
}

/// What a [`TokenServer`] signs with and whom it serves.
struct TokenSigner {
    key: jsonwebtoken::EncodingKey,
    /// The signing certificate, then its CA (base64 DER, as `x5c` wants).
    x5c: Vec<String>,
    user: String,
    password: String,
}

/// A token server of the Docker token protocol (the one distribution's
/// `token` auth sends clients to) on loopback, for one account.
///
/// A test fixture, not a mock of something that runs here: no token server
/// (docker_auth, Harbor's or GitLab's) is to be had on this machine, so
/// this one issues real tokens that the real registry verifies. `GET
/// /token?service=S&scope=repository:NAME:pull,push` with the account in
/// HTTP Basic auth answers `{"token", "access_token", "expires_in"}`: an
/// ES256 JWT (`iss`, `sub`, `aud` = the service, `exp`, `nbf`, `iat`,
/// `jti`, `access`) granting the pull and push asked for, whose `x5c`
/// header carries the signing certificate and the CA the registry trusts.
/// A missing or wrong password answers 401, another service 400. One
/// thread per connection; each answer closes its connection.
pub struct TokenServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: Arc<Mutex<TokenLog>>,
}

impl TokenServer {
    /// A token server for `user`/`password`, signing with `key` (a PKCS#8
    /// P-256 key in PEM) whose certificate chain (PEM, leaf first) is
    /// `chain`.
    fn start(user: &str, password: &str, chain: &Path, key: &Path) -> TokenServer {
        let key_der = pem_blocks(key, "PRIVATE KEY")
            .pop()
            .expect("a PKCS#8 private key");
        let x5c = pem_blocks(chain, "CERTIFICATE")
            .iter()
            .map(|der| base64::engine::general_purpose::STANDARD.encode(der))
            .collect();
        let signer = Arc::new(TokenSigner {
            key: jsonwebtoken::EncodingKey::from_ec_der(&key_der),
            x5c,
            user: user.to_string(),
            password: password.to_string(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(TokenLog::default()));
        let seen = log.clone();
        std::thread::spawn(move || {
            // Bounded: a test asks for a few dozen tokens at most.
            for conn in listener.incoming().take(1000) {
                let Ok(conn) = conn else { break };
                let (signer, log) = (signer.clone(), seen.clone());
                std::thread::spawn(move || serve_token(conn, &signer, &log));
            }
        });
        TokenServer { url, log }
    }

    /// The realm registries send clients to: `{url}/token`.
    pub fn realm(&self) -> String {
        format!("{}/token", self.url)
    }

    /// The tokens issued so far, oldest first.
    pub fn issued(&self) -> Vec<IssuedToken> {
        self.log.lock().unwrap().issued.clone()
    }

    /// Token requests refused so far for a missing or wrong account.
    pub fn refused(&self) -> usize {
        self.log.lock().unwrap().refused
    }
}

/// The DER of each `label` block of a PEM file.
fn pem_blocks(path: &Path, label: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).unwrap();
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let mut blocks = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let stop = after.find(&end).expect("a PEM block without its end");
        let b64: String = after[..stop].split_whitespace().collect();
        blocks.push(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        );
        rest = &after[stop + end.len()..];
    }
    blocks
}

/// `%XX` and `+` of a query string value decoded.
fn query_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The serial number of the next token, its `jti`.
static NEXT_JTI: AtomicUsize = AtomicUsize::new(1);

/// The head of the request on `conn` (request line and headers), or
/// `None` when the client went away first.
fn read_head(conn: &mut std::net::TcpStream) -> Option<String> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).to_string())
}

/// Answer one request of a [`TokenServer`].
fn serve_token(mut conn: std::net::TcpStream, signer: &TokenSigner, log: &Mutex<TokenLog>) {
    let Some(head) = read_head(&mut conn) else {
        return;
    };
    let answer = |conn: &mut std::net::TcpStream, status: &str, extra: &str, body: &str| {
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             {extra}Connection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let error = |code: &str, message: &str| {
        json!({"errors": [{"code": code, "message": message}]}).to_string()
    };
    let mut request_line = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (
        request_line.next().unwrap_or(""),
        request_line.next().unwrap_or(""),
    );
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" || path != "/token" {
        let body = error("UNSUPPORTED", "only GET /token");
        return answer(&mut conn, "404 Not Found", "", &body);
    }
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (query_decode(k), query_decode(v)))
        .collect();

    // The account, in HTTP Basic auth.
    let account = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.trim().strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let expected = format!("{}:{}", signer.user, signer.password);
    if account.as_deref() != Some(expected.as_str()) {
        log.lock().unwrap().refused += 1;
        let body = error("UNAUTHORIZED", "authentication required");
        let challenge = "WWW-Authenticate: Basic realm=\"wharf-test-token-server\"\r\n";
        return answer(&mut conn, "401 Unauthorized", challenge, &body);
    }
    let service = params.iter().find(|(k, _)| k == "service");
    if service.is_none_or(|(_, s)| s != TOKEN_SERVICE) {
        let body = error("DENIED", "unknown service");
        return answer(&mut conn, "400 Bad Request", "", &body);
    }

    // The account may pull and push every repository: grant what is asked.
    let mut access = Vec::new();
    let mut granted = Vec::new();
    let scopes = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '));
    for scope in scopes {
        let Some((kind_name, actions)) = scope.rsplit_once(':') else {
            continue;
        };
        let Some(("repository", name)) = kind_name.split_once(':') else {
            continue;
        };
        let actions: Vec<&str> = actions
            .split(',')
            .filter(|a| matches!(*a, "pull" | "push"))
            .collect();
        if !actions.is_empty() {
            access.push(json!({"type": "repository", "name": name, "actions": actions}));
            granted.push(format!("repository:{name}:{}", actions.join(",")));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.x5c = Some(signer.x5c.clone());
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": signer.user,
        // One audience, a string: distribution 2.8 reads `aud` into a
        // string and refuses an array as a malformed token.
        "aud": TOKEN_SERVICE,
        "exp": now.as_secs() + 300,
        "nbf": now.as_secs(),
        "iat": now.as_secs(),
        "jti": format!("wharf-test-{}", NEXT_JTI.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let token = jsonwebtoken::encode(&header, &claims, &signer.key).expect("sign the token");
    log.lock().unwrap().issued.push(IssuedToken {
        subject: signer.user.clone(),
        granted,
        token: token.clone(),
    });
    let body = json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    answer(&mut conn, "200 OK", "", &body);
}

/// How a [`FakeUpstream`] answers GETs of its layer.
#[derive(Clone)]
pub enum LayerReply {
    /// These bytes (true or false), with their length.
    Bytes(Vec<u8>),
    /// `503 Service Unavailable` with `Retry-After: 1` to the first `n`
    /// GETs, then these bytes.
    UnavailableThen(usize, Vec<u8>),
    /// 64 KiB of `x` every `pause`, with no length, until the client hangs
    /// up (bounded: 4 GiB or 5 minutes).
    Endless { pause: Duration },
}

/// What a [`FakeUpstream`] saw of its layer.
#[derive(Default)]
struct LayerStats {
    gets: AtomicUsize,
    sent: AtomicU64,
    /// Layer answers still being written.
    open: AtomicUsize,
}

/// A registry on loopback that serves one image under any name: tag
/// `latest`, a manifest naming `config` and one layer (the digest and size
/// given, whatever bytes `reply` says); counts and watches the layer's
/// downloads. One thread per connection, each answer closes its connection.
pub struct FakeUpstream {
    pub url: String,
    layer: Arc<LayerStats>,
}

impl FakeUpstream {
    pub fn start(config: Vec<u8>, layer: (String, u64), reply: LayerReply) -> FakeUpstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config_digest = sha256_digest(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": layer.1, "digest": layer.0}],
        })
        .to_string()
        .into_bytes();
        let stats = Arc::new(LayerStats::default());
        let seen = stats.clone();
        let blobs = Arc::new((config_digest, layer.0));
        std::thread::spawn(move || {
            // Bounded: a test makes a few dozen requests at most.
            for conn in listener.incoming().take(1000) {
                let Ok(conn) = conn else { break };
                let (config, manifest, blobs, reply, stats) = (
                    config.clone(),
                    manifest.clone(),
                    blobs.clone(),
                    reply.clone(),
                    seen.clone(),
                );
                std::thread::spawn(move || {
                    serve_upstream(conn, &config, &manifest, &blobs, &reply, &stats);
                });
            }
        });
        FakeUpstream { url, layer: stats }
    }

    /// GETs of the layer so far.
    pub fn layer_downloads(&self) -> usize {
        self.layer.gets.load(Ordering::SeqCst)
    }

    /// Layer bytes written to clients so far.
    pub fn layer_bytes_sent(&self) -> u64 {
        self.layer.sent.load(Ordering::SeqCst)
    }

    /// Layer answers still being written (a client still reading, or not
    /// yet seen to hang up).
    pub fn layer_streams_open(&self) -> usize {
        self.layer.open.load(Ordering::SeqCst)
    }
}

/// Answer one request of a [`FakeUpstream`].
fn serve_upstream(
    mut conn: std::net::TcpStream,
    config: &[u8],
    manifest: &[u8],
    (config_digest, layer): &(String, String),
    reply: &LayerReply,
    stats: &LayerStats,
) {
    let Some(head) = read_head(&mut conn) else {
        return;
    };
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let manifest_digest = sha256_digest(manifest);
    let answer =
        |conn: &mut std::net::TcpStream, status: &str, ctype: &str, extra: &str, body: &[u8]| {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
             Docker-Content-Digest: {manifest_digest}\r\n{extra}Connection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes())
                .and_then(|()| conn.write_all(body))
        };
    let name = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split_once("/tags/list"))
        .map(|(n, _)| n.to_string());
    let _ = if path == "/v2/" {
        answer(&mut conn, "200 OK", "application/json", "", b"{}")
    } else if let Some(name) = name {
        let tags = json!({"name": name, "tags": ["latest"]}).to_string();
        answer(&mut conn, "200 OK", "application/json", "", tags.as_bytes())
    } else if path.contains("/manifests/") {
        answer(&mut conn, "200 OK", DOCKER_MANIFEST, "", manifest)
    } else if path.ends_with(&format!("/blobs/{config_digest}")) {
        answer(&mut conn, "200 OK", "application/octet-stream", "", config)
    } else if path.ends_with(&format!("/blobs/{layer}")) {
        let n = stats.gets.fetch_add(1, Ordering::SeqCst);
        stats.open.fetch_add(1, Ordering::SeqCst);
        let octets = "application/octet-stream";
        let whole = |conn: &mut std::net::TcpStream, bytes: &[u8]| {
            let r = answer(conn, "200 OK", octets, "", bytes);
            if r.is_ok() {
                stats.sent.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            }
            r
        };
        let result = match reply {
            LayerReply::Bytes(bytes) => whole(&mut conn, bytes),
            LayerReply::UnavailableThen(failures, _) if n < *failures => answer(
                &mut conn,
                "503 Service Unavailable",
                "application/json",
                "Retry-After: 1\r\n",
                b"{}",
            ),
            LayerReply::UnavailableThen(_, bytes) => whole(&mut conn, bytes),
            LayerReply::Endless { pause } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {octets}\r\nConnection: close\r\n\r\n"
                );
                let chunk = vec![b'x'; 64 << 10];
                let start = Instant::now();
                let mut result = conn.write_all(head.as_bytes());
                for _ in 0..(1 << 16) {
                    if result.is_err() || start.elapsed() > Duration::from_secs(300) {
                        break;
                    }
                    result = conn.write_all(&chunk);
                    if result.is_ok() {
                        stats.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    }
                    if !pause.is_zero() {
                        std::thread::sleep(*pause);
                    }
                }
                result
            }
        };
        stats.open.fetch_sub(1, Ordering::SeqCst);
        result
    } else {
        answer(&mut conn, "404 Not Found", "application/json", "", b"{}")
    };
}

/// A tar writer that also writes what real tools refuse to: `..` paths,
/// absolute paths, links pointing anywhere.
#[derive(Default)]
pub struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> Tar {
        self.entry(name, b'0', "", data);
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Tar {
        self.entry(name, b'2', target, &[]);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0u8; 1024]);
        self.buf
    }

    fn entry(&mut self, name: &str, kind: u8, link: &str, data: &[u8]) {
        assert!(name.len() < 100 && link.len() < 100, "ustar names only");
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |field: &mut [u8], value: u64| {
            let digits = format!("{value:0width$o}", width = field.len() - 1);
            field[..digits.len()].copy_from_slice(digits.as_bytes());
        };
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], 0);
        h[148..156].fill(b' ');
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let sum = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(sum.as_bytes());
        self.buf.extend_from_slice(&h);
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }
}
