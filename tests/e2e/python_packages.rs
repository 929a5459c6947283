//! The Python packages content type (plugins/python, written in Python and
//! built with componentize-py), driven by the real clients: pip installs
//! from the simple index, pip downloads an sdist, twine uploads through the
//! write route, a sync mirrors a PEP 503 tree served by `python -m
//! http.server`; hostile uploads and paths fail with clear errors and leave
//! nothing visible; the plugin installs into a running server and upgrades
//! without a restart.
//!
//! Needs `WHARF_TEST_PYTHON_VENV` (pip, twine, build, setuptools) and
//! `WHARF_TEST_PYTHON_PLUGIN` (target/plugins-extra/python.wasm), both set by
//! scripts/test.sh after scripts/build-python-plugins.sh.

use crate::support::*;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn venv() -> PathBuf {
    env_path("WHARF_TEST_PYTHON_VENV")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A command of a Python environment with pip and twine isolated from the
/// machine's settings: no config files, no cache, no proxies, only loopback.
fn py_cmd(program: &Path) -> Command {
    let mut c = Command::new(program);
    for v in [
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_FIND_LINKS",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
        "TWINE_USERNAME",
        "TWINE_PASSWORD",
        "TWINE_REPOSITORY_URL",
    ] {
        c.env_remove(v);
    }
    c.env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .env("PIP_NO_CACHE_DIR", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

fn python() -> Command {
    py_cmd(&venv().join("bin/python"))
}

/// `make_dists.py KIND OUT NAME VERSION [options]`: a wheel or sdist built
/// with the standard library; returns its path.
fn make_dist(kind: &str, out: &Path, name: &str, version: &str, opts: &[&str]) -> PathBuf {
    let text = must(
        python()
            .arg(repo_root().join("plugins/python/tests/make_dists.py"))
            .args([kind, out.to_str().unwrap(), name, version])
            .args(opts),
    );
    PathBuf::from(text.trim())
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// The server's peak and current resident memory, kB (`VmHWM`, `VmRSS`).
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Install a plugin through the API; (status, answer, seconds it took).
fn install(s: &Server, wasm: &Path) -> (u16, Value, f64) {
    let start = Instant::now();
    let (code, answer) = crate::plugins::install(s, wasm);
    (code, answer, start.elapsed().as_secs_f64())
}

/// An anonymous GET: status, content type, body.
fn get(s: &Server, path: &str, accept: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut r = anonymous_client().get(s.url(path));
    if let Some(a) = accept {
        r = r.header("accept", a);
    }
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, r.bytes().unwrap().to_vec())
}

fn text(s: &Server, path: &str) -> String {
    let (status, _, body) = get(s, path, None);
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Import `file` into `repo` through an upload with `params`; the ended task.
fn import(s: &Server, repo: &str, file: &Path, params: Value) -> Value {
    let up = s.upload(file, 1 << 20);
    s.repo_task(repo, "import", json!({"upload_id": up, "params": params}))
}

fn publish(s: &Server, repo: &str) {
    let t = s.repo_task(repo, "publish", json!({}));
    assert_eq!(t["state"], "finished", "publish: {t}");
}

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `python -m http.server` on a free loopback port serving `dir`.
fn http_server(dir: &Path) -> (Guard, String) {
    for _ in 0..5 {
        let port = free_port();
        let port_arg = port.to_string();
        let child = python()
            .args([
                "-m",
                "http.server",
                port_arg.as_str(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut guard = Guard(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = guard.0.try_wait() {
                break; // the port was taken: try another
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (guard, format!("http://127.0.0.1:{port}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = guard.0.kill();
    }
    panic!("python -m http.server did not start");
}

/// A fresh venv (with pip) made by the test venv's interpreter.
fn fresh_venv(dir: &Path) -> PathBuf {
    must(python().args(["-m", "venv"]).arg(dir));
    dir.to_path_buf()
}

fn pip_install(env: &Path, index: &str, what: &str) -> String {
    must(py_cmd(&env.join("bin/python")).args(["-m", "pip", "install", "--index-url", index, what]))
}

/// A multipart/form-data body as twine sends it (fields, then the file).
fn multipart(fields: &[(&str, &str)], filename: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "wharf-e2e-boundary-7d1f0c";
    let mut body = Vec::new();
    for (k, v) in fields {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        )
        .unwrap();
    }
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .unwrap();
    body.extend_from_slice(content);
    write!(body, "\r\n--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// POST a twine-shaped upload as `admin` (HTTP basic, as twine does).
fn upload_raw(
    s: &Server,
    repo: &str,
    name: &str,
    version: &str,
    filename: &str,
    content: &[u8],
    sha256: &str,
) -> (u16, String) {
    let fields = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("name", name),
        ("version", version),
        ("filetype", "bdist_wheel"),
        ("metadata_version", "2.1"),
        ("sha256_digest", sha256),
    ];
    let (ctype, body) = multipart(&fields, filename, content);
    let r = anonymous_client()
        .post(s.url(&format!("/pypi/{repo}/+upload/")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("content-type", ctype)
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().unwrap_or_default())
}

const PIP_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";

#[test]
fn pip_twine_and_sync_with_the_real_clients() {
    let tmp = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let s = Server::start();

    // Hot-load the content type into the running server (the API, as
    // `wharf plugin install` does; its compile takes seconds, longer than
    // the CLI's request timeout allows on a loaded machine), then see it
    // with the CLI.
    let (hwm_before, _) = memory_kb(s.pid());
    let (code, v, install_secs) = install(&s, &env_path("WHARF_TEST_PYTHON_PLUGIN"));
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["name"], "python", "{v}");
    let (hwm_after, rss_after) = memory_kb(s.pid());
    eprintln!(
        "python plugin: install {install_secs:.1} s; server peak RSS {} MiB before, {} MiB after (now {} MiB)",
        hwm_before / 1024,
        hwm_after / 1024,
        rss_after / 1024
    );
    let home = tmp.path().join("home");
    let cli = |args: &[&str]| {
        let mut c = Command::new(env_path("WHARF_BIN"));
        c.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .arg("--server")
            .arg(&s.base)
            .args(args);
        c
    };
    must(&mut cli(&["login", "-u", "admin", "-p", ADMIN_PASSWORD]));
    let out = must(&mut cli(&["plugin", "list"]));
    assert!(out.contains("python"), "{out}");

    s.create_repo(json!({"id": "py", "content_type": "python"}));
    let (status, _, _) = get(&s, "/pypi/py/simple/", None);
    assert_eq!(status, 404, "nothing is visible before a publish");

    // Upload a wheel and an sdist through the admin API; publish.
    let dists = tmp.path().join("dists");
    let wheel = make_dist(
        "wheel",
        &dists,
        "alpha",
        "1.0",
        &["--requires-python", ">=3.8"],
    );
    let sdist = make_dist("sdist", &dists, "alpha", "1.0", &[]);
    let wheel_bytes = std::fs::read(&wheel).unwrap();
    let sdist_bytes = std::fs::read(&sdist).unwrap();
    let t = import(
        &s,
        "py",
        &wheel,
        json!({"filename": "alpha-1.0-py3-none-any.whl", "sha256": sha256_hex(&wheel_bytes)}),
    );
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(
        t["result"]["plugin"],
        format!("python@{}", v["version"].as_str().unwrap())
    );
    let t = import(&s, "py", &sdist, json!({"filename": "alpha-1.0.tar.gz"}));
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "py");

    // The index: PEP 503 HTML, PEP 691 JSON.
    let root = text(&s, "/pypi/py/simple/");
    assert!(root.contains(r#"<a href="alpha/">alpha</a>"#), "{root}");
    let (status, ctype, body) = get(&s, "/pypi/py/simple/alpha/", Some(PIP_ACCEPT));
    assert_eq!(status, 200);
    assert_eq!(ctype, "application/vnd.pypi.simple.v1+json");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        doc["files"][0]["hashes"]["sha256"],
        sha256_hex(&wheel_bytes)
    );
    assert_eq!(doc["files"][0]["requires-python"], ">=3.8");
    let page = text(&s, "/pypi/py/simple/alpha/");
    assert!(
        page.contains(&format!(
            "../../files/alpha-1.0.tar.gz#sha256={}",
            sha256_hex(&sdist_bytes)
        )),
        "{page}"
    );
    let (status, _, got) = get(&s, "/pypi/py/files/alpha-1.0.tar.gz", None);
    assert_eq!((status, got == sdist_bytes), (200, true));

    // pip installs the wheel into a fresh venv, which imports it.
    let index = s.url("/pypi/py/simple/");
    let env = fresh_venv(&tmp.path().join("fresh"));
    pip_install(&env, &index, "alpha");
    let out = must(
        py_cmd(&env.join("bin/python")).args(["-c", "import alpha; print('alpha', alpha.VERSION)"]),
    );
    assert_eq!(out.trim(), "alpha 1.0");

    // pip downloads the sdist, byte for byte.
    let dl = tmp.path().join("download");
    must(python().args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--no-build-isolation",
        "--index-url",
        index.as_str(),
        "-d",
        dl.to_str().unwrap(),
        "alpha==1.0",
    ]));
    assert_eq!(
        std::fs::read(dl.join("alpha-1.0.tar.gz")).unwrap(),
        sdist_bytes
    );

    // twine uploads what `python -m build` made; pip installs it at once
    // (a write publishes the repository).
    let project = tmp.path().join("project");
    std::fs::create_dir_all(project.join("wharf_demo")).unwrap();
    std::fs::write(
        project.join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
         [project]\nname = \"wharf-demo\"\nversion = \"0.3.0\"\ndescription = \"Uploaded with twine\"\n\
         requires-python = \">=3.8\"\n",
    )
    .unwrap();
    std::fs::write(
        project.join("wharf_demo/__init__.py"),
        "GREETING = 'hello from twine'\n",
    )
    .unwrap();
    must(
        python()
            .args(["-m", "build", "--no-isolation", "--outdir"])
            .arg(project.join("dist"))
            .arg(&project),
    );
    let built: Vec<PathBuf> = std::fs::read_dir(project.join("dist"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(built.len(), 2, "{built:?}");
    let upload_url = s.url("/pypi/py/+upload/");
    let twine = |user: &str, password: &str| {
        let mut c = py_cmd(&venv().join("bin/twine"));
        c.args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            upload_url.as_str(),
            "-u",
            user,
            "-p",
            password,
        ])
        .args(&built);
        run(&mut c)
    };
    let (ok, out) = twine("admin", "wrong password");
    assert!(!ok && out.contains("401"), "{out}");
    let (ok, out) = twine("admin", ADMIN_PASSWORD);
    assert!(ok, "twine upload: {out}");
    // The very same files again: accepted, nothing changes.
    let (ok, out) = twine("admin", ADMIN_PASSWORD);
    assert!(ok, "twine upload again: {out}");
    pip_install(&env, &index, "wharf-demo==0.3.0");
    let out = must(
        py_cmd(&env.join("bin/python"))
            .args(["-c", "import wharf_demo; print(wharf_demo.GREETING)"]),
    );
    assert_eq!(out.trim(), "hello from twine");
    let page = text(&s, "/pypi/py/simple/wharf-demo/");
    assert!(page.contains("wharf_demo-0.3.0.tar.gz"), "{page}");

    // ---- attacks: each fails with a clear error and leaves nothing visible.
    let evil_dir = tmp.path().join("evil");
    // A hash mismatch: the form's sha256 is not the file's.
    let gamma = make_dist("wheel", &evil_dir, "gamma", "0.1", &[]);
    let gamma_bytes = std::fs::read(&gamma).unwrap();
    let (status, body) = upload_raw(
        &s,
        "py",
        "gamma",
        "0.1",
        "gamma-0.1-py3-none-any.whl",
        &gamma_bytes,
        &"ab".repeat(32),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("sha256_digest") && body.contains("nothing was stored"),
        "{body}"
    );
    assert!(!stored(&s, &format!("sha256:{}", sha256_hex(&gamma_bytes))));
    // A wheel named after another project (requests) holding "evil".
    let evil = make_dist(
        "wheel",
        &evil_dir,
        "requests",
        "9.0",
        &["--metadata-name", "evil"],
    );
    let evil_bytes = std::fs::read(&evil).unwrap();
    let (status, body) = upload_raw(
        &s,
        "py",
        "requests",
        "9.0",
        "requests-9.0-py3-none-any.whl",
        &evil_bytes,
        &sha256_hex(&evil_bytes),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("but its METADATA says 'evil'"), "{body}");
    // Path traversal in the file name.
    let (status, body) = upload_raw(
        &s,
        "py",
        "gamma",
        "0.1",
        "../../gamma-0.1-py3-none-any.whl",
        &gamma_bytes,
        &sha256_hex(&gamma_bytes),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a distribution file name"), "{body}");
    // A malformed wheel (not a zip), by twine's route and by the API.
    let junk = b"PK\x03\x04 this is not a zip archive".to_vec();
    let (status, body) = upload_raw(
        &s,
        "py",
        "gamma",
        "0.1",
        "gamma-0.1-py3-none-any.whl",
        &junk,
        &sha256_hex(&junk),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not a valid wheel"), "{body}");
    let junk_file = evil_dir.join("junk.whl");
    std::fs::write(&junk_file, &junk).unwrap();
    let t = import(
        &s,
        "py",
        &junk_file,
        json!({"filename": "gamma-0.1-py3-none-any.whl"}),
    );
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        t["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not a valid wheel: not a readable zip archive"),
        "{t}"
    );
    // Anonymous uploads are refused by the host.
    let (ctype, body) = multipart(
        &[(":action", "file_upload")],
        "gamma-0.1-py3-none-any.whl",
        &gamma_bytes,
    );
    let r = anonymous_client()
        .post(s.url("/pypi/py/+upload/"))
        .header("content-type", ctype)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Nothing of that is visible.
    let root = text(&s, "/pypi/py/simple/");
    assert!(
        !root.contains("gamma") && !root.contains("requests") && !root.contains("evil"),
        "{root}"
    );
    for path in [
        "/pypi/py/simple/requests/",
        "/pypi/py/simple/gamma/",
        "/pypi/py/simple/evil/",
    ] {
        assert_eq!(get(&s, path, None).0, 404, "{path}");
    }
    // Encoded slashes and dot segments in names: refused by the host.
    for path in [
        "/pypi/py/simple/alpha%2F..%2F..%2Fetc/",
        "/pypi/py/files/..%2F..%2Fetc%2Fpasswd",
        "/pypi/py%2Fsimple/simple/alpha/",
    ] {
        let (status, _, body) = get(&s, path, None);
        assert!(
            status == 400 || status == 404,
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    // ... and the legitimate paths still work: the same wheel with its own
    // hash goes in and installs.
    let (status, body) = upload_raw(
        &s,
        "py",
        "gamma",
        "0.1",
        "gamma-0.1-py3-none-any.whl",
        &gamma_bytes,
        &sha256_hex(&gamma_bytes),
    );
    assert_eq!(status, 200, "{body}");
    pip_install(&env, &index, "gamma");
    let out =
        must(py_cmd(&env.join("bin/python")).args(["-c", "import gamma; print(gamma.VERSION)"]));
    assert_eq!(out.trim(), "0.1");
    let (status, _, got) = get(&s, "/pypi/py/simple/Alpha/", None);
    assert_eq!(
        status, 200,
        "a non-normalized name redirects to the project"
    );
    assert!(String::from_utf8_lossy(&got).contains("alpha-1.0.tar.gz"));

    // A protected repository: anonymous reads get 401, pip with the
    // credentials in the index URL installs.
    s.create_repo(json!({"id": "sec", "content_type": "python",
        "distributor_config": {"protected": true}}));
    let t = import(
        &s,
        "sec",
        &wheel,
        json!({"filename": "alpha-1.0-py3-none-any.whl"}),
    );
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "sec");
    assert_eq!(get(&s, "/pypi/sec/simple/alpha/", None).0, 401);
    assert_eq!(
        get(&s, "/pypi/sec/files/alpha-1.0-py3-none-any.whl", None).0,
        401
    );
    let secure = tmp.path().join("secure");
    let secure = fresh_venv(&secure);
    let with_login = format!("http://admin:{ADMIN_PASSWORD}@{}/pypi/sec/simple/", s.addr);
    pip_install(&secure, &with_login, "alpha");
    let out =
        must(py_cmd(&secure.join("bin/python")).args(["-c", "import alpha; print(alpha.VERSION)"]));
    assert_eq!(out.trim(), "1.0");

    // ---- sync from a PEP 503 tree served by python -m http.server.
    let tree = tmp.path().join("tree");
    must(
        python()
            .arg(repo_root().join("plugins/python/tests/make_dists.py"))
            .args(["tree", tree.to_str().unwrap()]),
    );
    let (_server, feed) = http_server(&tree);
    s.create_repo(json!({"id": "mirror", "content_type": "python",
        "importer_config": {"feed": format!("{feed}/simple/"), "excludes": ["gamma"]}}));
    let t = s.repo_task("mirror", "sync", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(t["result"]["units_added"], 3, "{t}");
    publish(&s, "mirror");
    let root = text(&s, "/pypi/mirror/simple/");
    assert!(
        root.contains("alpha") && root.contains("Beta.Pkg") && !root.contains("gamma"),
        "{root}"
    );
    let mirror_index = s.url("/pypi/mirror/simple/");
    let dl = tmp.path().join("mirror-dl");
    must(python().args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--index-url",
        mirror_index.as_str(),
        "-d",
        dl.to_str().unwrap(),
        "beta.pkg",
    ]));
    assert_eq!(
        std::fs::read(dl.join("Beta_Pkg-2.0-py3-none-any.whl")).unwrap(),
        std::fs::read(tree.join("files/Beta_Pkg-2.0-py3-none-any.whl")).unwrap()
    );
    // Only the selected projects were asked for their files.
    let t = s.repo_task("mirror", "sync", json!({}));
    assert_eq!(
        (
            t["result"]["units_added"].as_u64(),
            t["result"]["units_removed"].as_u64()
        ),
        (Some(0), Some(0)),
        "{t}"
    );
}

#[test]
fn the_python_plugin_installs_and_upgrades_without_a_restart() {
    let tmp = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let mut s = Server::start();
    let (code, v, secs) = install(&s, &env_path("WHARF_TEST_PYTHON_PLUGIN"));
    assert_eq!(code, 201, "{v}");
    let v1 = v["version"].as_str().unwrap().to_string();
    eprintln!("python plugin: install through the API {secs:.1} s");

    s.create_repo(json!({"id": "pkgs", "content_type": "python"}));
    let dists = tmp.path().join("dists");
    let wheel = make_dist("wheel", &dists, "delta", "1.0", &[]);
    let t = import(
        &s,
        "pkgs",
        &wheel,
        json!({"filename": "delta-1.0-py3-none-any.whl"}),
    );
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "pkgs");
    assert!(text(&s, "/pypi/pkgs/simple/delta/").contains("delta-1.0-py3-none-any.whl"));

    // Warm calls: a project page through the Python plugin, a file through
    // the Rust file plugin, same server, same client.
    s.create_repo(json!({"id": "files", "content_type": "file"}));
    let doc = tmp.path().join("a.txt");
    std::fs::write(&doc, b"a file\n").unwrap();
    let t = import(&s, "files", &doc, json!({"relative_path": "a.txt"}));
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "files");
    let client = anonymous_client();
    let time = |path: &str| {
        let url = s.url(path);
        for _ in 0..20 {
            assert_eq!(client.get(&url).send().unwrap().status().as_u16(), 200);
        }
        let n = 200;
        let start = Instant::now();
        for _ in 0..n {
            let r = client.get(&url).send().unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.bytes().unwrap();
        }
        start.elapsed().as_secs_f64() * 1000.0 / f64::from(n)
    };
    let py_ms = time("/pypi/pkgs/simple/delta/");
    let rust_ms = time("/files/files/a.txt");
    eprintln!(
        "warm GET: python plugin {py_ms:.3} ms, rust file plugin {rust_ms:.3} ms (mean of 200)"
    );

    // A sync from a slow feed runs while the next version is installed.
    let next_wheel = make_dist("wheel", &dists, "epsilon", "2.0", &[]);
    let bytes = std::fs::read(&next_wheel).unwrap();
    let page = format!(
        r#"<a href="../../files/epsilon-2.0-py3-none-any.whl#sha256={}">epsilon-2.0-py3-none-any.whl</a>"#,
        sha256_hex(&bytes)
    );
    let feed = crate::plugins::serve_files_as(
        vec![
            ("/simple/epsilon/".into(), page.into_bytes()),
            ("/files/epsilon-2.0-py3-none-any.whl".into(), bytes),
        ],
        Duration::from_millis(1500),
        Some("text/html"),
    );
    s.create_repo(json!({"id": "slow", "content_type": "python",
        "importer_config": {"feed": format!("{feed}/simple/"), "includes": ["epsilon"]}}));
    let (code, running) = s.post_json("/api/v1/repositories/slow/sync", &json!({}));
    assert_eq!(code, 202, "{running}");
    std::thread::sleep(Duration::from_millis(300));
    let (code, v, secs) = install(
        &s,
        &env_path("WHARF_TEST_PLUGIN_DIR").join("python-next.wasm"),
    );
    assert_eq!(code, 201, "{v}");
    eprintln!("python plugin: upgrade through the API {secs:.1} s");
    assert_eq!(v["upgraded_from"], v1.as_str());
    let v2 = v["version"].as_str().unwrap().to_string();
    assert_eq!(v2, format!("{v1}-next"));
    let t = s.wait_task(&running);
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(
        t["result"]["plugin"],
        format!("python@{v1}"),
        "the running sync finished on the version it started with: {t}"
    );
    let t = s.repo_task("slow", "sync", json!({}));
    assert_eq!(t["result"]["plugin"], format!("python@{v2}"), "{t}");
    // What the old version published is served by the new one.
    assert!(text(&s, "/pypi/pkgs/simple/delta/").contains("delta-1.0-py3-none-any.whl"));
    publish(&s, "slow");
    assert!(text(&s, "/pypi/slow/simple/epsilon/").contains("epsilon-2.0"));

    // A restart brings the installed version back from the compiled cache.
    s.crash_and_restart();
    let (_, plugins) = s.get_json("/api/v1/plugins");
    let python = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "python")
        .unwrap_or_else(|| panic!("python plugin after restart: {plugins}"));
    assert_eq!(python["version"], v2.as_str());
    assert_eq!(python["from_cache"], true, "{plugins}");
    assert!(text(&s, "/pypi/pkgs/simple/delta/").contains("delta-1.0-py3-none-any.whl"));
}

/// Installing the 22 MB Python component compiles it in a child process at
/// a lower priority (`plugins::compiler`): the server answers requests all
/// the while, its own peak memory grows by far less than the compile takes
/// (some 370 MiB when it ran inside the server), and a component that is
/// not valid is refused with the compiler's reason.
#[test]
fn a_large_component_is_compiled_beside_the_server_not_inside_it() {
    let s = Server::start();
    let (hwm_before, _) = memory_kb(s.pid());
    let done = std::sync::atomic::AtomicBool::new(false);
    let (installed, answered) = std::thread::scope(|t| {
        let requests = t.spawn(|| {
            let client = anonymous_client();
            let mut answered = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let start = Instant::now();
                let r = client.get(s.url("/v2/")).send().unwrap();
                answered.push((r.status().as_u16(), start.elapsed()));
                std::thread::sleep(Duration::from_millis(50));
            }
            answered
        });
        let installed = install(&s, &env_path("WHARF_TEST_PYTHON_PLUGIN"));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (installed, requests.join().unwrap())
    });
    let (code, v, secs) = installed;
    assert_eq!(code, 201, "{v}");
    let (hwm_after, _) = memory_kb(s.pid());
    let slowest = answered.iter().map(|(_, took)| *took).max().unwrap();
    eprintln!(
        "python plugin: install {secs:.1} s; {} requests meanwhile, the slowest {slowest:?}; \
         server peak RSS {} -> {} MiB",
        answered.len(),
        hwm_before / 1024,
        hwm_after / 1024
    );
    assert!(answered.len() >= 5, "requests went on during the compile");
    assert!(
        answered.iter().all(|(status, _)| *status < 500),
        "{answered:?}"
    );
    assert!(slowest < Duration::from_secs(1), "{answered:?}");
    assert!(
        hwm_after - hwm_before < 200 << 10,
        "the server's peak grew by {} MiB",
        (hwm_after - hwm_before) / 1024
    );

    // Garbage: the compiler's reason, and the server goes on.
    let r = s
        .http
        .post(s.url("/api/v1/plugins"))
        .header("content-type", "application/wasm")
        .body(b"\0asm\x0d\0\x01\0 not really".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().unwrap();
    assert!(text.contains("not a valid WebAssembly component"), "{text}");
    let (_, plugins) = s.get_json("/api/v1/plugins");
    assert!(plugins.to_string().contains("\"python\""), "{plugins}");
}
