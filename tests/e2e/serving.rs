//! Serving for real: TLS with certificates made by `openssl` (a CA and a
//! leaf, as an operator would have), separate admin and registry listeners,
//! certificate reload, `/metrics`, `/readyz`, request ids, graceful
//! shutdown, and `wharf config check`.
//!
//! The Docker engine of the test run treats every 127.0.0.0/8 registry as
//! "insecure" (its built-in default): it still speaks HTTPS to a TLS port
//! first but does not verify the certificate. Certificate *verification* is
//! therefore proven with skopeo (`--src-cert-dir`, verification on), curl
//! and rustls clients; Docker proves it pulls through the TLS-only port.

use crate::registry_support::*;
use crate::support::*;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A CA and server certificates signed by it, made with the openssl CLI.
pub(crate) struct Pki {
    dir: PathBuf,
    name: String,
}

impl Pki {
    /// A new CA in `dir/<name>/`.
    pub(crate) fn new(dir: &Path, name: &str) -> Pki {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        must(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .args(["-subj", &format!("/CN=Wharf test CA {name}")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(dir.join("ca.key"))
                .arg("-out")
                .arg(dir.join("ca.crt")),
        );
        Pki {
            dir,
            name: name.into(),
        }
    }

    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A leaf for 127.0.0.1 and localhost: (chain file = leaf + CA, key file).
    pub(crate) fn leaf(&self, leaf: &str) -> (PathBuf, PathBuf) {
        let (key, csr, crt, chain, ext) = (
            self.dir.join(format!("{leaf}.key")),
            self.dir.join(format!("{leaf}.csr")),
            self.dir.join(format!("{leaf}.crt")),
            self.dir.join(format!("{leaf}-chain.pem")),
            self.dir.join(format!("{leaf}.ext")),
        );
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        must(
            Command::new("openssl")
                .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes"])
                .args(["-subj", &format!("/CN={leaf} of {}", self.name)])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        );
        must(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(self.ca())
                .arg("-CAkey")
                .arg(self.dir.join("ca.key"))
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&crt),
        );
        let text =
            std::fs::read_to_string(&crt).unwrap() + &std::fs::read_to_string(self.ca()).unwrap();
        std::fs::write(&chain, text).unwrap();
        (chain, key)
    }

    /// A directory holding only this CA as `ca.crt` (skopeo's --cert-dir).
    fn cert_dir(&self) -> PathBuf {
        let d = self.dir.join("cert-dir");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(self.ca(), d.join("ca.crt")).unwrap();
        d
    }
}

/// SHA-256 fingerprint of the first certificate in a PEM file.
fn file_fingerprint(pem: &Path) -> String {
    must(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(pem),
    )
    .trim()
    .to_string()
}

/// SHA-256 fingerprint of the certificate a new connection to `addr` gets.
fn served_fingerprint(addr: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", "localhost"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    x509.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let done = x509.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "no certificate served on {addr}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(done.stdout).unwrap().trim().to_string()
}

/// An HTTPS client trusting only `ca`.
fn tls_client(ca: &Path) -> Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// `/etc/docker/certs.d/<host:port>/ca.crt`, removed on drop.
struct DockerTrust(PathBuf);

impl DockerTrust {
    fn new(host_port: &str, ca: &Path) -> DockerTrust {
        let dir = PathBuf::from("/etc/docker/certs.d").join(host_port);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(ca, dir.join("ca.crt")).unwrap();
        DockerTrust(dir)
    }
}

impl Drop for DockerTrust {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `/metrics` parsed: each sample line's `name{labels}` and value.
struct Metrics(Vec<(String, HashMap<String, String>, f64)>);

impl Metrics {
    fn scrape(client: &Client, base: &str) -> Metrics {
        let r = client.get(format!("{base}/metrics")).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let ct = header_of(&r, "content-type");
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        let text = r.text().unwrap();
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), HashMap::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("bad labels in {line}"));
                    let labels = body
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            samples.push((name, labels, value));
        }
        Metrics(samples)
    }

    /// The sum of the samples of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

fn header_of(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A server whose admin API is plain HTTP on `s.addr` and whose registry is
/// TLS-only on its own port, serving `cert`/`key`; busybox published.
/// The digest of the layer of `test/busybox` (as [`tls_registry`] publishes
/// it) on the TLS registry listener `registry`.
fn busybox_layer(https: &Client, registry: &str) -> String {
    let manifest: Value = https
        .get(format!(
            "https://{registry}/v2/test/busybox/manifests/latest"
        ))
        .header("Accept", DOCKER_MANIFEST)
        .send()
        .unwrap()
        .json()
        .unwrap();
    manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn tls_registry(cert: &Path, key: &Path, extra: &[&str]) -> (Server, String) {
    let registry = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "--registry-listen",
        &registry,
        "--registry-tls-cert",
        cert.to_str().unwrap(),
        "--registry-tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let s = Server::start_with_plugin_dir(&env_path("WHARF_PLUGIN_DIR"), &args);
    docker_repo(&s, "busybox", "test/busybox", json!({}));
    s.import_and_publish("busybox", &images_dir().join("busybox.tar"));
    (s, registry)
}

#[test]
fn docker_and_skopeo_pull_over_https_and_plain_http_to_the_tls_port_fails_cleanly() {
    let tmp = scratch();
    let pki = Pki::new(tmp.path(), "one");
    let (cert, key) = pki.leaf("registry");
    let (s, registry) = tls_registry(&cert, &key, &[]);
    let https = tls_client(&pki.ca());
    let base = format!("https://{registry}");

    // The served chain verifies against the CA (rustls client, and curl).
    let r = https
        .get(format!("{base}/v2/test/busybox/manifests/latest"))
        .header("Accept", DOCKER_ACCEPT)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let digest = header_of(&r, "docker-content-digest");
    assert_eq!(sha256_digest(&r.bytes().unwrap()), digest);
    must(
        Command::new("curl")
            .args(["-sSf", "--cacert"])
            .arg(pki.ca())
            .arg(format!("{base}/v2/test/busybox/tags/list")),
    );

    // The token challenge sends clients to an https realm on this listener,
    // which hands out (anonymous) tokens.
    let r = https.get(format!("{base}/v2/")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let challenge = header_of(&r, "www-authenticate");
    let realm = format!("https://{registry}/api/v1/registry/token");
    assert!(
        challenge.contains(&format!("realm=\"{realm}\"")),
        "{challenge}"
    );
    let r = https
        .get(format!(
            "{realm}?service=wharf&scope=repository:test/busybox:pull"
        ))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Plain HTTP to the TLS port: a clear 400, not a hang or garbage.
    for client in [anonymous_client(), no_redirects()] {
        let r = client
            .get(format!(
                "http://{registry}/v2/test/busybox/manifests/latest"
            ))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let text = r.text().unwrap();
        assert!(
            text.contains("HTTPS only") && text.contains(&registry),
            "{text}"
        );
    }
    let (ok, out) = run(Command::new("curl").args([
        "-sS",
        "--max-time",
        "10",
        &format!("http://{registry}/v2/"),
    ]));
    assert!(ok && out.contains("HTTPS only"), "{out}");

    // skopeo verifies the certificate (TLS verification is on by default).
    let good = pki.cert_dir();
    let reference = format!("docker://{registry}/test/busybox:latest");
    let copied = tmp.path().join("copied");
    must(
        skopeo()
            .args(["copy", "--quiet", "--src-cert-dir"])
            .arg(&good)
            .arg(&reference)
            .arg(format!("dir:{}", copied.display())),
    );
    let manifest = std::fs::read(copied.join("manifest.json")).unwrap();
    assert_eq!(sha256_digest(&manifest), digest);
    // ... and refuses a server whose certificate another CA signed.
    let other = Pki::new(tmp.path(), "other");
    let (ok, out) = run(skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(other.cert_dir())
        .arg(&reference));
    assert!(!ok, "skopeo trusted a certificate of an unknown CA: {out}");
    assert!(out.contains("certificate") || out.contains("x509"), "{out}");

    // Docker pulls through the TLS-only port (an HTTP fallback would get 400s).
    let _trust = DockerTrust::new(&registry, &pki.ca());
    let image = format!("{registry}/test/busybox:latest");
    let _ = run(docker().args(["rmi", "-f", &image]));
    must(docker().args(["pull", &image]));
    let repo_digests = must(docker().args([
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &image,
    ]));
    assert!(
        repo_digests.contains(&digest),
        "{repo_digests} lacks {digest}"
    );
    let out = docker_run_cat(&image, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");

    // The pull went through the registry listener and none of it over plain HTTP.
    let m = Metrics::scrape(&s.http, &s.base);
    assert!(
        m.sum(
            "wharf_http_requests_total",
            &[
                ("listener", "registry"),
                ("route", "/v2/*"),
                ("status", "200")
            ]
        ) >= 4.0
    );
    assert!(
        m.sum(
            "wharf_tls_handshake_failures_total",
            &[("listener", "registry")]
        ) >= 3.0
    );
}

#[test]
fn a_replaced_certificate_is_served_to_new_connections_on_sighup_and_on_file_change() {
    let tmp = scratch();
    let pki = Pki::new(tmp.path(), "reload");
    let (first_chain, first_key) = pki.leaf("first");
    // The server reads the files at these paths; the test replaces them.
    let (cert, key) = (tmp.path().join("server.pem"), tmp.path().join("server.key"));
    std::fs::copy(&first_chain, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    let (s, registry) = tls_registry(&cert, &key, &[]);
    assert_eq!(
        served_fingerprint(&registry),
        file_fingerprint(&first_chain)
    );
    let https = tls_client(&pki.ca());

    // A big download in flight across the reloads must not be cut.
    let layer = busybox_layer(&https, &registry);
    let mut in_flight = https
        .get(format!("https://{registry}/v2/test/busybox/blobs/{layer}"))
        .send()
        .unwrap();
    let mut head = [0u8; 1024];
    in_flight.read_exact(&mut head).unwrap();

    // 1. SIGHUP.
    let (second_chain, second_key) = pki.leaf("second");
    std::fs::copy(&second_chain, &cert).unwrap();
    std::fs::copy(&second_key, &key).unwrap();
    must(Command::new("kill").args(["-HUP", &s.pid().to_string()]));
    let want = file_fingerprint(&second_chain);
    wait_for_fingerprint(&registry, &want, Duration::from_secs(5), &s);

    // 2. No signal: the server notices the files changed.
    let (third_chain, third_key) = pki.leaf("third");
    std::fs::copy(&third_key, &key).unwrap();
    std::fs::copy(&third_chain, &cert).unwrap();
    let want = file_fingerprint(&third_chain);
    wait_for_fingerprint(&registry, &want, Duration::from_secs(15), &s);

    // 3. A broken replacement (a key of another certificate) keeps the last
    //    good certificate in service, and says why in the log.
    std::fs::copy(&first_key, &key).unwrap();
    must(Command::new("kill").args(["-HUP", &s.pid().to_string()]));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(served_fingerprint(&registry), want);
    assert!(
        s.log().contains("does not belong to the first certificate"),
        "{}",
        s.log()
    );

    // The download begun under the first certificate completes intact.
    let mut rest = Vec::new();
    in_flight.read_to_end(&mut rest).unwrap();
    let mut whole = head.to_vec();
    whole.extend_from_slice(&rest);
    assert_eq!(sha256_digest(&whole), layer);
    // And new requests work under the current one.
    let r = https
        .get(format!("https://{registry}/v2/test/busybox/tags/list"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn wait_for_fingerprint(addr: &str, want: &str, within: Duration, s: &Server) {
    let start = Instant::now();
    loop {
        let got = served_fingerprint(addr);
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < within,
            "still serving {got}, not {want}, after {within:?}; log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn admin_and_registry_listeners_from_a_config_file_serve_only_their_own_routes() {
    let tmp = scratch();
    let registry = format!("127.0.0.1:{}", free_port());
    let file = tmp.path().join("wharf.toml");
    // `listen` in the file loses to the --listen flag Server::start gives.
    std::fs::write(
        &file,
        format!("listen = \"127.0.0.1:1\"\nworkers = 1\n\n[registry]\nlisten = \"{registry}\"\n"),
    )
    .unwrap();
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--config", file.to_str().unwrap()],
    );
    docker_repo(&s, "busybox", "test/busybox", json!({}));
    s.import_and_publish("busybox", &images_dir().join("busybox.tar"));
    let anon = anonymous_client();
    let get = |url: String| {
        let r = anon
            .get(&url)
            .header("Accept", DOCKER_ACCEPT)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let ct = header_of(&r, "content-type");
        (status, ct, r.text().unwrap())
    };
    let admin = &s.base;
    let reg = format!("http://{registry}");
    // Each side's own routes.
    assert_eq!(get(format!("{admin}/api/v1/status")).0, 200);
    assert_eq!(
        get(format!("{reg}/v2/test/busybox/manifests/latest")).0,
        200
    );
    // Not the other side's: the admin side answers in its JSON error shape...
    let (status, ct, body) = get(format!("{admin}/v2/test/busybox/manifests/latest"));
    assert_eq!(status, 404, "{body}");
    assert!(
        ct.starts_with("application/json") && body.contains("admin API"),
        "{ct} {body}"
    );
    // ... the registry side as a registry does.
    let (status, _, body) = get(format!("{reg}/api/v1/status"));
    assert_eq!(status, 404, "{body}");
    let r = s
        .http
        .get(format!("{reg}/api/v1/repositories"))
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "a token does not open the API on the registry side"
    );
    // The Docker token flow's endpoint is part of the registry protocol.
    assert_eq!(
        get(format!("{reg}/api/v1/registry/token?service=wharf")).0,
        200
    );
    // Operations endpoints on both.
    for base in [admin.as_str(), reg.as_str()] {
        assert_eq!(
            get(format!("{base}/healthz")),
            (200, "text/plain; charset=utf-8".into(), "ok".into())
        );
        let (status, _, body) = get(format!("{base}/readyz"));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ready"], true);
        assert_eq!(v["checks"]["store"]["ok"], true);
        assert_eq!(v["checks"]["blobs"]["ok"], true);
        assert_eq!(v["checks"]["broker"]["state"], "not configured");
        assert_eq!(get(format!("{base}/metrics")).0, 200);
    }
    // A reload signal to a server without certificates does no harm.
    must(Command::new("kill").args(["-HUP", &s.pid().to_string()]));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(format!("{admin}/healthz")).0, 200, "{}", s.log());
    // The file's setting that no flag overrode took effect.
    assert!(
        s.log().contains(&format!("registry http://{registry}")),
        "{}",
        s.log()
    );
}

/// A `docker save` archive of one image with a single `size`-byte layer of
/// incompressible bytes.
fn big_image(reference: &str, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let layer = Tar::new().file("big.bin", &data).finish();
    drop(data);
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&layer)]},
        "history": [{"created_by": "serving test"}],
    })
    .to_string();
    let config_name = format!("{}.json", &sha256_digest(config.as_bytes())[7..]);
    let manifest =
        json!([{"Config": config_name, "RepoTags": [reference], "Layers": ["big/layer.tar"]}]);
    Tar::new()
        .file(&config_name, config.as_bytes())
        .file("big/layer.tar", &layer)
        .file("manifest.json", manifest.to_string().as_bytes())
        .finish()
}

/// A published repository `big` (`test/big`) whose one layer is `size`
/// incompressible bytes: the layer's digest, size and blob URL.
fn big_layer(s: &Server, dir: &Path, size: usize) -> (String, usize, String) {
    docker_repo(s, "big", "test/big", json!({}));
    let archive = dir.join("big.tar");
    std::fs::write(&archive, big_image("test/big:latest", size)).unwrap();
    s.import_and_publish("big", &archive);
    let manifest: Value = s
        .http
        .get(s.url("/v2/test/big/manifests/latest"))
        .header("Accept", DOCKER_MANIFEST)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let size = manifest["layers"][0]["size"].as_u64().unwrap() as usize;
    let url = s.url(&format!("/v2/test/big/blobs/{layer}"));
    (layer, size, url)
}

#[test]
fn sigterm_during_a_large_pull_finishes_it_then_exits_zero_within_the_timeout() {
    let tmp = scratch();
    let mut s =
        Server::start_with_plugin_dir(&env_path("WHARF_PLUGIN_DIR"), &["--shutdown-timeout", "8s"]);
    let (layer, _, blob_url) = big_layer(&s, tmp.path(), 96 << 20);

    // Reader 1 takes ~3 s for its 96 MiB: it must get every byte, right.
    let slow = {
        let url = blob_url.clone();
        std::thread::spawn(move || {
            let mut r = anonymous_client().get(&url).send().unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0usize;
            let start = Instant::now();
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => return Err(format!("cut after {total} bytes: {e}")),
                };
                sha2::Digest::update(&mut hasher, &buf[..n]);
                total += n;
                // ~32 MiB/s.
                let due = Duration::from_secs_f64(total as f64 / (32 << 20) as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(format!(
                "sha256:{}",
                hex::encode(sha2::Digest::finalize(hasher))
            ))
        })
    };
    // Reader 2 stalls after its first bytes: the timeout must cut it.
    let mut stalled = anonymous_client().get(&blob_url).send().unwrap();
    let mut first = [0u8; 4096];
    stalled.read_exact(&mut first).unwrap();

    std::thread::sleep(Duration::from_millis(500));
    let signaled = Instant::now();
    must(Command::new("kill").args(["-TERM", &s.pid().to_string()]));
    // No new connections once shutdown began.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        anonymous_client()
            .get(s.url("/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .is_err(),
        "a new connection was accepted after SIGTERM"
    );

    let status = s
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("wharf still runs 20 s after SIGTERM; log:\n{}", s.log()));
    let took = signaled.elapsed();
    assert_eq!(status.code(), Some(0), "log:\n{}", s.log());
    assert!(
        took < Duration::from_secs(8 + 4),
        "took {took:?} for an 8 s timeout"
    );
    assert!(
        took >= Duration::from_secs(2),
        "exited in {took:?}: it did not wait for the pull"
    );
    assert_eq!(slow.join().unwrap(), Ok(layer.clone()), "log:\n{}", s.log());
    // The stalled one ends cut short, not with wrong bytes passed as whole.
    let mut rest = Vec::new();
    assert!(stalled.read_to_end(&mut rest).is_err() || rest.len() + first.len() < 96 << 20);

    // Nothing stored is damaged.
    let out = must(
        Command::new(env_path("WHARF_BIN"))
            .args(["--output", "json", "fsck", "--data-dir"])
            .arg(s.data_dir()),
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["corrupt"], json!([]), "{out}");
    assert!(report["checked"].as_u64().unwrap() >= 3, "{out}");
    assert!(s.log().contains("shutting down"), "{}", s.log());
}

/// Bytes of `path` on `client`, with a `Range` header when given.
fn get_bytes(client: &Client, url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = client.get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

#[test]
fn blob_bodies_leave_plain_listeners_by_sendfile_and_survive_their_file_being_removed() {
    let tmp = scratch();
    let s = Server::start();
    // Three body frames (zero_copy::FRAME is 16 MiB) and a bit.
    let (layer, size, blob_url) = big_layer(&s, tmp.path(), 40 << 20);
    let sent_by =
        |s: &Server| Metrics::scrape(&s.http, &s.base).sum("wharf_blob_sendfile_bytes_total", &[]);
    let sent = || sent_by(&s);

    // A whole body and a range across a frame boundary, by sendfile: every
    // byte right, and every byte counted once.
    let before = sent();
    let (status, whole) = get_bytes(&anonymous_client(), &blob_url, None);
    assert_eq!((status, whole.len()), (200, size));
    assert_eq!(sha256_digest(&whole), layer);
    let (status, part) = get_bytes(
        &anonymous_client(),
        &blob_url,
        Some("bytes=16000000-17999999"),
    );
    assert_eq!(status, 206);
    assert!(
        part == whole[16_000_000..18_000_000],
        "the range's bytes differ"
    );
    let r = anonymous_client().head(&blob_url).send().unwrap();
    assert_eq!(header_of(&r, "content-length"), size.to_string());
    assert_eq!(sent() - before, (size + 2_000_000) as f64);

    // Over TLS the body is encrypted, so copied: same bytes, no sendfile.
    let pki = Pki::new(tmp.path(), "sendfile");
    let (cert, key) = pki.leaf("registry");
    let (tls, registry) = tls_registry(&cert, &key, &[]);
    let https = tls_client(&pki.ca());
    let small = busybox_layer(&https, &registry);
    let (status, body) = get_bytes(
        &https,
        &format!("https://{registry}/v2/test/busybox/blobs/{small}"),
        None,
    );
    assert_eq!((status, sha256_digest(&body)), (200, small));
    assert_eq!(sent_by(&tls), 0.0, "a TLS body went out by sendfile");
    drop(tls);

    // The blob file removed (as orphan cleanup or fsck would) while a slow
    // client reads it: that response still gets every byte, right; the
    // next request finds the blob gone.
    let mut slow = anonymous_client().get(&blob_url).send().unwrap();
    let mut first = vec![0u8; 1 << 20];
    slow.read_exact(&mut first).unwrap();
    let hex = &layer["sha256:".len()..];
    let file = s.data_dir().join("blobs/sha256").join(&hex[..2]).join(hex);
    std::fs::remove_file(&file).unwrap();
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    assert_eq!(sha256_digest(&first), layer, "log:\n{}", s.log());
    let (status, _) = get_bytes(&anonymous_client(), &blob_url, None);
    assert_eq!(status, 404);
}

#[test]
fn metrics_move_with_requests_tasks_and_plugin_calls_and_request_ids_reach_task_logs() {
    let s = Server::start();
    let before = Metrics::scrape(&s.http, &s.base);
    docker_repo(&s, "busybox", "test/busybox", json!({}));
    let upload = s.upload(&images_dir().join("busybox.tar"), 4 << 20);
    // The client's request id comes back and follows the task it started.
    let r = s
        .http
        .post(s.url("/api/v1/repositories/busybox/import"))
        .header("X-Request-Id", "serving-test-42")
        .json(&json!({"upload_id": upload}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(header_of(&r, "x-request-id"), "serving-test-42");
    let task: Value = r.json().unwrap();
    assert_eq!(s.wait_task(&task)["state"], "finished");
    // The end is recorded, then logged: give the line a moment to land.
    let task_id = task["id"].as_str().unwrap();
    let logged = |log: &str| {
        log.lines().any(|l| {
            l.contains("serving-test-42") && l.contains(task_id) && l.contains("task ended")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logged(&s.log()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = s.log();
    assert!(
        logged(&log),
        "no task log line carries the request id:\n{log}"
    );
    // Without one, the server makes one up.
    let r = s.http.get(s.url("/api/v1/status")).send().unwrap();
    assert_eq!(header_of(&r, "x-request-id").len(), 36);
    // One that could break a log line or a header (spaces, too long, not
    // ASCII) is not taken: the server makes one up instead.
    let long = "x".repeat(129);
    let hostile: [&[u8]; 3] = [b"forged id=1 path=/x", long.as_bytes(), b"caf\xe9-id"];
    for sent in hostile {
        let r = s
            .http
            .get(s.url("/api/v1/status"))
            .header(
                "X-Request-Id",
                reqwest::header::HeaderValue::from_bytes(sent).unwrap(),
            )
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let got = header_of(&r, "x-request-id");
        assert_eq!(got.len(), 36, "{got}");
        assert!(
            got.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "{got}"
        );
    }
    publish(&s, "busybox");

    for _ in 0..10 {
        let r = request(
            &s,
            "GET",
            "/v2/test/busybox/manifests/latest",
            &[("Accept", DOCKER_ACCEPT)],
        );
        assert_eq!(r.status().as_u16(), 200);
    }
    assert_eq!(
        request(&s, "GET", "/v2/test/nothing/manifests/latest", &[])
            .status()
            .as_u16(),
        404
    );
    let after = Metrics::scrape(&s.http, &s.base);
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);

    let manifests = [
        ("listener", "all"),
        ("route", "/v2/*"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(delta("wharf_http_requests_total", &manifests), 10.0);
    assert!(
        delta(
            "wharf_http_requests_total",
            &[("route", "/v2/*"), ("status", "404")]
        ) >= 1.0
    );
    assert!(
        delta(
            "wharf_http_request_duration_seconds_count",
            &[("route", "/v2/*"), ("method", "GET")]
        ) >= 11.0
    );
    assert!(
        delta(
            "wharf_http_response_body_bytes_total",
            &[("route", "/v2/*")]
        ) > 10.0 * 300.0
    );
    // API routes are counted by their template, not their raw path.
    assert!(
        delta(
            "wharf_http_requests_total",
            &[("route", "/api/v1/uploads/{id}"), ("method", "PUT")]
        ) >= 1.0
    );
    assert!(
        delta(
            "wharf_http_requests_total",
            &[("route", "/api/v1/tasks/{id}")]
        ) >= 1.0
    );
    assert_eq!(
        delta(
            "wharf_tasks_ended_total",
            &[("kind", "import"), ("state", "finished")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "wharf_tasks_ended_total",
            &[("kind", "publish"), ("state", "finished")]
        ),
        1.0
    );
    assert_eq!(
        delta("wharf_task_duration_seconds_count", &[("kind", "import")]),
        1.0
    );
    assert_eq!(after.sum("wharf_tasks_running", &[]), 0.0);
    // Ten GETs of one manifest of one publication: the plugin planned the
    // first, and the host gave that plan again for the other nine
    // (http::plan_cache).
    let calls = delta(
        "wharf_plugin_calls_total",
        &[("plugin", "docker"), ("outcome", "ok")],
    );
    let repeated = delta("wharf_plans_repeated_total", &[("plugin", "docker")]);
    assert_eq!(repeated, 9.0, "{calls} calls");
    assert!(
        calls + repeated >= 12.0,
        "{calls} calls, {repeated} repeated"
    );
    // The blob store gauges lag by up to 10 s: a scrape starts a background
    // rescan at most that often, and answers with the last figures.
    let start = Instant::now();
    loop {
        let m = Metrics::scrape(&s.http, &s.base);
        if m.sum("wharf_blob_store_bytes", &[]) > 500_000.0 {
            assert!(m.sum("wharf_blob_store_blobs", &[]) >= 3.0);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "busybox's blobs are not counted"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn traps_and_deadlines_show_in_plugin_call_metrics() {
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_TEST_PLUGIN_DIR"),
        &["--plugin-call-timeout-ms", "300"],
    );
    let before = Metrics::scrape(&s.http, &s.base);
    for path in ["/test/trapping/panic", "/test/looping/spin"] {
        let r = anonymous_client().get(s.url(path)).send().unwrap();
        assert_eq!(r.status().as_u16(), 500, "{path}");
    }
    let r = anonymous_client()
        .get(s.url("/test/trapping/ok/1"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let after = Metrics::scrape(&s.http, &s.base);
    let delta = |plugin: &str, outcome: &str| {
        let l = [("plugin", plugin), ("outcome", outcome)];
        after.sum("wharf_plugin_calls_total", &l) - before.sum("wharf_plugin_calls_total", &l)
    };
    assert_eq!(delta("trapping-test", "plugin-trap"), 1.0);
    assert_eq!(delta("trapping-test", "ok"), 1.0);
    assert_eq!(delta("looping-test", "plugin-deadline"), 1.0);
}

#[test]
fn config_check_prints_a_good_file_masked_and_explains_a_bad_one() {
    let tmp = scratch();
    let good = tmp.path().join("good.toml");
    std::fs::write(
        &good,
        r#"
data_dir = "/var/lib/wharf"
workers = 4
broker = "amqp://wharf:broker-pw-value@127.0.0.1:5672/%2f"
shutdown_timeout = "1m"
log_format = "json"

[admin]
listen = "127.0.0.1:9443"

[registry]
listen = "127.0.0.1:9444"

[tls]
self_signed = true

[ldap]
url = "ldap://127.0.0.1:389"
bind_dn = "cn=admin,dc=example,dc=org"
bind_password = "ldap-pw-value"
group_role = ["cn=ops,dc=example,dc=org=super-users"]

[blobs]
store = "s3://wharf-blobs/prod"
s3_secret_access_key = "s3-pw-value"
"#,
    )
    .unwrap();
    let wharf = || {
        let mut c = Command::new(env_path("WHARF_BIN"));
        // The test environment's own settings must not leak in.
        c.env_remove("WHARF_PLUGIN_DIR").env_remove("WHARF_CONFIG");
        c
    };
    let out = must(wharf().args(["config", "check"]).arg(&good));
    for line in [
        "workers = 4    # file",
        "admin.listen = \"127.0.0.1:9443\"    # file",
        "tls.self_signed = true    # file",
        "plugins.memory_mib = 256    # default",
        "broker = \"amqp://wharf:********@127.0.0.1:5672/%2f\"    # file",
        "ldap.bind_password = \"********\"    # file",
        "blobs.store = \"s3://wharf-blobs/prod\"    # file",
        "blobs.s3_secret_access_key = \"********\"    # file",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    for secret in ["broker-pw-value", "ldap-pw-value", "s3-pw-value"] {
        assert!(!out.contains(secret), "{secret} is printed:\n{out}");
    }
    // `serve --help` shows the file's values as the defaults, secrets aside.
    let help = must(wharf().args(["serve", "--config"]).arg(&good).arg("--help"));
    assert!(help.contains("[default: 4]"), "{help}");
    for secret in ["broker-pw-value", "ldap-pw-value", "s3-pw-value"] {
        assert!(!help.contains(secret), "{secret} is printed:\n{help}");
    }
    // The environment beats the file.
    let out = must(
        wharf()
            .env("WHARF_WORKERS", "9")
            .args(["--output", "json", "config", "check"])
            .arg(&good),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let workers = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "workers")
        .unwrap();
    assert_eq!(
        (&workers["value"], &workers["from"]),
        (&json!(9), &json!("env"))
    );

    for (text, needle) in [
        (
            "[admin]\nlisten_on = \"127.0.0.1:1\"\n",
            "unknown setting `admin.listen_on`",
        ),
        ("workers = \"many\"\n", "--workers"),
        ("listen = \"not an address\"\n", "--listen"),
        ("[tls]\ncert = \"/nowhere.pem\"\n", "without --tls-key"),
        ("workers = [\n", "not valid TOML"),
    ] {
        let bad = tmp.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let (ok, out) = run(wharf().args(["config", "check"]).arg(&bad));
        assert!(!ok, "accepted {text:?}:\n{out}");
        assert!(
            out.contains(needle),
            "{text:?}: error lacks {needle:?}:\n{out}"
        );
    }
    // `wharf serve` refuses the same bad file before doing anything.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[admin]\nlisten_on = \"127.0.0.1:1\"\n").unwrap();
    let (ok, out) = run(wharf()
        .args(["serve", "--config"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(tmp.path().join("d")));
    assert!(!ok && out.contains("admin.listen_on"), "{out}");
    assert!(
        !tmp.path().join("d").exists(),
        "serve touched its data directory"
    );
}

/// A `wharf serve` on one TLS-only listener with `--tls-self-signed`
/// (the `Server` helper speaks plain HTTP), killed on drop.
struct SelfSignedServer {
    child: std::process::Child,
    addr: String,
    data: PathBuf,
    log: PathBuf,
}

impl SelfSignedServer {
    fn start(dir: &Path, addr: &str) -> SelfSignedServer {
        let data = dir.join("data");
        let log = dir.join("server.log");
        let child = Command::new(env_path("WHARF_BIN"))
            .args(["serve", "--tls-self-signed", "--listen", addr, "--data-dir"])
            .arg(&data)
            .arg("--plugin-dir")
            .arg(env_path("WHARF_PLUGIN_DIR"))
            .env("WHARF_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let s = SelfSignedServer {
            child,
            addr: addr.into(),
            data,
            log,
        };
        let start = Instant::now();
        loop {
            let ca = s.ca();
            if ca.exists()
                && tls_client(&ca)
                    .get(format!("https://{addr}/api/v1/status"))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
            {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "not ready:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ca(&self) -> PathBuf {
        self.data.join("tls/ca.crt")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SelfSignedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_self_signed_certificate_is_made_once_and_its_ca_verifies_the_server() {
    let tmp = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let first = {
        let s = SelfSignedServer::start(tmp.path(), &addr);
        // The CA is printed for the operator, and is what the server chains to.
        let ca = std::fs::read_to_string(s.ca()).unwrap();
        assert!(s.log().contains(ca.trim()), "CA not printed:\n{}", s.log());
        let r = tls_client(&s.ca())
            .post(format!("https://{}/api/v1/login", s.addr))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let r = tls_client(&s.ca())
            .get(format!("https://{addr}/healthz"))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        served_fingerprint(&addr)
    };
    // A restart on the same data directory serves the same certificate.
    let s = SelfSignedServer::start(tmp.path(), &addr);
    assert_eq!(served_fingerprint(&addr), first);
    assert!(
        s.log()
            .contains("using the self-signed certificate of an earlier start"),
        "{}",
        s.log()
    );
}

/// The admin client trusts the system's root certificates (here through
/// `SSL_CERT_FILE`, as rustls-native-certs reads it) and the CA given with
/// `--ca-cert` or `WHARF_CA_CERT`; a server it does not trust fails with
/// what to do, at once, not as "unreachable".
#[test]
fn the_client_trusts_a_private_ca_from_ca_cert_wharf_ca_cert_or_the_system_store() {
    let tmp = scratch();
    let addr = format!("127.0.0.1:{}", free_port());
    let s = SelfSignedServer::start(tmp.path(), &addr);
    let ca = s.ca();
    let ca = ca.to_str().unwrap();
    let w = crate::cli::Wharf::new(&format!("https://{addr}"));
    let with_env = |var: &str, args: &[&str]| {
        let mut cmd = w.command(args);
        cmd.env(var, ca);
        crate::cli::run_bounded(cmd, None, Duration::from_secs(60))
    };

    let err = w.fails(&["status"]);
    assert!(
        err.contains(&format!(
            "the Wharf server at https://{addr}/ has a certificate this client does not trust"
        )) && err.contains("--ca-cert FILE (or WHARF_CA_CERT"),
        "{err}"
    );

    let out = w.run(&[
        "--ca-cert",
        ca,
        "login",
        "-u",
        "admin",
        "-p",
        ADMIN_PASSWORD,
    ]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let out = w.run(&["--ca-cert", ca, "repo", "list"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    for var in ["WHARF_CA_CERT", "SSL_CERT_FILE"] {
        let out = with_env(var, &["status"]);
        assert_eq!(out.code, Some(0), "with {var}: {}", out.describe());
        assert!(out.stdout.contains("Plugin contract"), "{}", out.describe());
    }

    // A CA file that is not one: said before any request.
    let err = w.fails(&["--ca-cert", "/nonexistent/ca.crt", "status"]);
    assert!(
        err.contains(
            "cannot read the CA certificate /nonexistent/ca.crt (--ca-cert / WHARF_CA_CERT)"
        ),
        "{err}"
    );
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let err = w.fails(&["--ca-cert", junk.to_str().unwrap(), "status"]);
    assert!(err.contains("holds no PEM certificate"), "{err}");
}

/// A sync from a feed whose certificate a private CA signed: refused
/// (nothing stored) with what to do until the server trusts that CA with
/// `--outbound-ca-cert`, then mirrored.
#[test]
fn a_feed_signed_by_a_private_ca_syncs_once_the_server_trusts_it_with_outbound_ca_cert() {
    let tmp = scratch();
    let pki = Pki::new(tmp.path(), "feed");
    let (cert, key) = pki.leaf("registry");
    let (_parent, registry) = tls_registry(&cert, &key, &[]);
    let importer = json!({"feed": format!("https://{registry}"), "upstream_name": "test/busybox"});

    let child = Server::start();
    docker_repo(&child, "mirror", "mirror/busybox", importer.clone());
    let error = failed_with(&sync(&child, "mirror"));
    assert!(
        error.contains("certificate") && error.contains("--outbound-ca-cert"),
        "{error}"
    );
    assert!(tag_names(&content(&child, "mirror")).is_empty());

    let ca = pki.ca();
    let child = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--outbound-ca-cert", ca.to_str().unwrap()],
    );
    docker_repo(&child, "mirror", "mirror/busybox", importer);
    let t = sync(&child, "mirror");
    assert_eq!(t["state"], "finished", "{t}\n{}", child.log());
    assert_eq!(
        tag_names(&content(&child, "mirror")),
        vec!["latest".to_string()]
    );

    // A file with no certificate stops the start, saying so.
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let mut serve = Command::new(env_path("WHARF_BIN"));
    serve
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--outbound-ca-cert")
        .arg(&junk)
        .env("WHARF_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let out = crate::cli::run_bounded(serve, None, Duration::from_secs(60));
    assert_ne!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!(
            "--outbound-ca-cert {}: holds no certificate",
            junk.display()
        )),
        "{}",
        out.describe()
    );
}
