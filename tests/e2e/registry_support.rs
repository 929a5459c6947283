//! Helpers for the registry-side tests: the real peers (skopeo, podman, a
//! CNCF distribution registry), registry HTTP calls, snapshots of a
//! repository's content, and a tar writer for hostile archives.

use crate::support::*;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
}

impl Distribution {
    pub fn start() -> Distribution {
        let dir = scratch();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("storage").display()
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
        let d = Distribution { addr, dir, child };
        let http = Client::new();
        let start = Instant::now();
        loop {
            let up = http
                .get(format!("http://{}/v2/", d.addr))
                .send()
                .is_ok_and(|r| r.status().is_success());
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
        format!("http://{}", self.addr)
    }

    /// `skopeo copy` an archive from the test images to `name:tag` here.
    pub fn push(&self, archive: &str, transport: &str, name_tag: &str) {
        must(skopeo().args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("{transport}:{}", images_dir().join(archive).display()),
            &format!("docker://{}/{name_tag}", self.addr),
        ]));
    }

    /// The manifest `name:reference` as served, with its digest.
    pub fn manifest(&self, name: &str, reference: &str) -> (Vec<u8>, String) {
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
