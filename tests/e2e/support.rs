//! Starting servers and talking to them.

use reqwest::blocking::Client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn env_path(var: &str) -> PathBuf {
    PathBuf::from(std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests through scripts/test.sh (make test)")
    }))
}

/// The first administrator's password in every test server
/// (`WHARF_ADMIN_PASSWORD`).
pub const ADMIN_PASSWORD: &str = "admin-test-password";

/// What test servers and workers are started with: the suite's feeds
/// (docker-registry, local listeners) and webhook receivers are on
/// 127.0.0.1, which the outbound policy refuses by default.
pub const ALLOW_LOOPBACK: [&str; 2] = ["--allow-outbound", "127.0.0.1/32"];

/// A `wharf serve` process on a free port with its own data directory, its
/// `admin` logged in.
pub struct Server {
    pub base: String,
    pub addr: String,
    /// Holds the log (and, unless shared with other nodes, the data directory).
    pub data: tempfile::TempDir,
    data_dir: PathBuf,
    child: Child,
    /// Sends the administrator's login token on every request.
    pub http: Client,
    /// The `admin` user's login token (a super-user).
    pub token: String,
    args: Vec<std::ffi::OsString>,
    /// Extra environment variables, on restarts too.
    env: Vec<(String, String)>,
}

/// A client without credentials.
pub fn anonymous_client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// A server with the built-in plugins.
    pub fn start() -> Server {
        Self::start_with_plugin_dir(&env_path("WHARF_PLUGIN_DIR"), &[])
    }

    pub fn start_with_plugin_dir(plugin_dir: &Path, extra_args: &[&str]) -> Server {
        Self::start_on_data_dir(None, plugin_dir, extra_args)
    }

    /// A server on `data_dir` (several nodes may share one), else on a data
    /// directory of its own.
    pub fn start_on_data_dir(
        data_dir: Option<&Path>,
        plugin_dir: &Path,
        extra_args: &[&str],
    ) -> Server {
        let server = Self::spawn(data_dir, plugin_dir, extra_args);
        server.ready()
    }

    /// A server with the built-in plugins that refuses every internal
    /// address outbound (no `--allow-outbound` unless `extra_args` give one).
    pub fn start_strict(extra_args: &[&str]) -> Server {
        Self::spawn_with(None, &env_path("WHARF_PLUGIN_DIR"), extra_args, false, &[]).ready()
    }

    /// Start the process without waiting for it: [`Server::ready`] waits
    /// and logs in (so that several nodes can start at once).
    ///
    /// Test feeds and webhook receivers listen on 127.0.0.1, so the server
    /// gets `--allow-outbound 127.0.0.1/32` ([`ALLOW_LOOPBACK`]) unless
    /// `extra_args` name `--allow-outbound` themselves; [`Server::start_strict`]
    /// starts one without it.
    pub fn spawn(data_dir: Option<&Path>, plugin_dir: &Path, extra_args: &[&str]) -> Server {
        let allow_loopback = !extra_args.contains(&"--allow-outbound");
        Self::spawn_with(data_dir, plugin_dir, extra_args, allow_loopback, &[])
    }

    /// [`Server::spawn`] with the built-in plugins and extra environment
    /// variables (e.g. `NOTIFY_SOCKET`).
    pub fn spawn_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let allow_loopback = !extra_args.contains(&"--allow-outbound");
        let plugin_dir = env_path("WHARF_PLUGIN_DIR");
        Self::spawn_with(None, &plugin_dir, extra_args, allow_loopback, env)
    }

    fn spawn_with(
        data_dir: Option<&Path>,
        plugin_dir: &Path,
        extra_args: &[&str],
        allow_loopback: bool,
        env: &[(&str, &str)],
    ) -> Server {
        let data = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
        let data_dir = data_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| data.path().join("data"));
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(data.path().join("server.log")).unwrap();
        let mut args: Vec<std::ffi::OsString> = ["serve", "--listen", &addr, "--data-dir"]
            .iter()
            .map(Into::into)
            .collect();
        args.push(data_dir.clone().into());
        args.push("--plugin-dir".into());
        args.push(plugin_dir.into());
        if allow_loopback {
            args.extend(ALLOW_LOOPBACK.iter().map(Into::into));
        }
        args.extend(extra_args.iter().map(Into::into));
        let child = Command::new(env_path("WHARF_BIN"))
            .args(&args)
            .env("WHARF_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wharf");
        Server {
            base: format!("http://{addr}"),
            addr,
            data,
            data_dir,
            child,
            http: anonymous_client(),
            token: String::new(),
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Wait until a spawned server answers, then log in as `admin`. A port
    /// that another process took between [`free_port`] and the server's
    /// bind is no failure of the test: the server starts again on another.
    pub fn ready(mut self) -> Server {
        for _ in 0..3 {
            if self.wait_ready() {
                break;
            }
            self.move_to_a_new_port();
        }
        self.token = self.login("admin", ADMIN_PASSWORD);
        self.http = self.client_with_token(&self.token);
        self
    }

    /// Log in (`POST /api/v1/login`); returns the token. Panics on failure.
    pub fn login(&self, login: &str, password: &str) -> String {
        let r = anonymous_client()
            .post(self.url("/api/v1/login"))
            .basic_auth(login, Some(password))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().unwrap_or(Value::Null);
        assert_eq!(status, 200, "login as {login}: {v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// A client that sends `token` on every request.
    pub fn client_with_token(&self, token: &str) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        Client::builder()
            .timeout(Duration::from_secs(600))
            .default_headers(headers)
            .build()
            .unwrap()
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// SIGKILL the server and start it again with the same address, data and
    /// flags. Login tokens are in the store: `http` keeps working.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.respawn();
        assert!(self.wait_ready(), "its port was taken meanwhile");
    }

    /// Start the process again with `args`, its log appended to.
    fn respawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.path().join("server.log"))
            .unwrap();
        self.child = Command::new(env_path("WHARF_BIN"))
            .args(&self.args)
            .env("WHARF_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("restart wharf");
    }

    /// The same server on another free port (its first one was taken).
    fn move_to_a_new_port(&mut self) {
        let addr = format!("127.0.0.1:{}", free_port());
        let at = self.args.iter().position(|a| a == "--listen").unwrap() + 1;
        self.args[at] = addr.clone().into();
        self.base = format!("http://{addr}");
        self.addr = addr;
        self.respawn();
    }

    /// Wait until the server answers (`/api/v1/status` needs no login);
    /// false if it exited because its port was taken.
    fn wait_ready(&mut self) -> bool {
        let start = Instant::now();
        // Generous: a first start compiles every plugin, slow on a busy machine.
        while start.elapsed() < Duration::from_secs(180) {
            if let Ok(Some(_)) = self.child.try_wait()
                && self.log().contains("Address already in use")
            {
                return false;
            }
            // Answered, and by this server: until it logs that it is ready
            // on this address, an answer comes from another test's server
            // that took the port first.
            if self
                .http
                .get(self.url("/api/v1/status"))
                .send()
                .is_ok_and(|r| r.status().is_success())
                && self.serves_here()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("wharf did not become ready; log:\n{}", self.log());
    }

    /// Whether this server's log says it is ready on its address.
    fn serves_here(&self) -> bool {
        let here = format!("://{}", self.addr);
        self.log()
            .lines()
            .any(|l| l.contains("wharf is ready") && l.contains(&here))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.http.post(self.url(path)).json(body).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Create a repository; panics unless it was created.
    pub fn create_repo(&self, body: Value) {
        let (status, v) = self.post_json("/api/v1/repositories", &body);
        assert_eq!(status, 201, "create repository: {v}");
    }

    /// Upload a file in chunks of `chunk` bytes; returns the upload id.
    pub fn upload(&self, path: &Path, chunk: usize) -> String {
        let bytes = std::fs::read(path).unwrap();
        let (status, v) =
            self.post_json("/api/v1/uploads", &serde_json::json!({"size": bytes.len()}));
        assert_eq!(status, 201, "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        let mut offset = 0;
        for part in bytes.chunks(chunk.max(1)) {
            let r = self
                .http
                .put(self.url(&format!("/api/v1/uploads/{id}?offset={offset}")))
                .body(part.to_vec())
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
            offset += part.len();
        }
        id
    }

    /// Wait for a task to end; returns its final record.
    pub fn wait_task(&self, task: &Value) -> Value {
        let id = task["id"]
            .as_str()
            .unwrap_or_else(|| panic!("not a task: {task}"));
        let start = Instant::now();
        loop {
            let (_, t) = self.get_json(&format!("/api/v1/tasks/{id}"));
            if ["finished", "error", "canceled"].contains(&t["state"].as_str().unwrap_or("")) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "task {id} did not end: {t}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run a repository action (`import`, `publish`, ...) and wait for it.
    pub fn repo_task(&self, repo: &str, action: &str, body: Value) -> Value {
        let (status, t) = self.post_json(&format!("/api/v1/repositories/{repo}/{action}"), &body);
        assert_eq!(status, 202, "{action}: {t}");
        self.wait_task(&t)
    }

    /// Send `bytes` as the body of a streaming import (`query` holds the
    /// plugin's parameters); returns the ended task.
    pub fn import_stream(&self, repo: &str, query: &str, bytes: Vec<u8>) -> Value {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/repositories/{repo}/import{query}")))
            .header("content-type", "application/x-tar")
            .body(bytes)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let t: Value = r.json().unwrap_or(Value::Null);
        assert_eq!(status, 202, "streaming import: {t}");
        assert!(
            ["finished", "error", "canceled"].contains(&t["state"].as_str().unwrap_or("")),
            "a streaming import answers when its task has ended: {t}"
        );
        t
    }

    /// Upload and import a file, then publish; asserts both succeed.
    pub fn import_and_publish(&self, repo: &str, file: &Path) {
        let upload = self.upload(file, 4 << 20);
        let t = self.repo_task(repo, "import", serde_json::json!({"upload_id": upload}));
        assert_eq!(t["state"], "finished", "import: {t}\n{}", self.log());
        let t = self.repo_task(repo, "publish", serde_json::json!({}));
        assert_eq!(t["state"], "finished", "publish: {t}\n{}", self.log());
    }

    /// The server's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait up to `timeout` for the server to exit on its own; its exit
    /// status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- wharf log ({}) ---\n{}", self.addr, self.log());
        }
    }
}

/// Send an API request: its status and JSON body (`null` if none).
pub fn send(r: reqwest::blocking::RequestBuilder) -> (u16, Value) {
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// The `error.message` of an API error answer.
pub fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `POST path` as the administrator; asserts the status.
pub fn admin_post(s: &Server, path: &str, body: Value, want: u16) -> Value {
    let (status, v) = s.post_json(path, &body);
    assert_eq!(status, want, "POST {path} {body}: {v}");
    v
}

/// Orphan cleanup with no protection window, as a task; waits for it; returns its result.
pub fn cleanup_now(s: &Server) -> Value {
    let (status, t) = s.post_json(
        "/api/v1/orphans/cleanup?protection_minutes=0",
        &serde_json::json!({}),
    );
    assert_eq!(status, 202, "{t}");
    let t = s.wait_task(&t);
    assert_eq!(t["state"], "finished", "{t}");
    t["result"].clone()
}

/// Run a command, returning (success, stdout+stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Run a command that must succeed.
pub fn must(cmd: &mut Command) -> String {
    let (ok, text) = run(cmd);
    assert!(ok, "{cmd:?} failed:\n{text}");
    text
}

/// The Docker CLI talking to the test engine (`DOCKER_HOST`).
pub fn docker() -> Command {
    let mut c = Command::new("/usr/bin/docker");
    c.env(
        "DOCKER_HOST",
        std::env::var("DOCKER_HOST").expect("DOCKER_HOST: run through scripts/test.sh"),
    );
    c
}

/// Run `image` without a network and return what `cat FILE` prints in it;
/// the image is removed afterwards.
pub fn docker_run_cat(image: &str, file: &str) -> String {
    let out = must(docker().args(["run", "--rm", "--network", "none", image, "cat", file]));
    let _ = run(docker().args(["rmi", "-f", image]));
    out
}

/// `docker pull` `image`, then [`docker_run_cat`].
pub fn docker_pull_run_cat(image: &str, file: &str) -> String {
    must(docker().args(["pull", image]));
    docker_run_cat(image, file)
}

pub fn images_dir() -> PathBuf {
    env_path("WHARF_TEST_IMAGES")
}

/// Whether `s`'s blob store holds `digest` (`<data-dir>/blobs/sha256/xx/…`).
pub fn stored(s: &Server, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let dir = s.data_dir().join("blobs").join("sha256");
    [dir.join(&hex[..2]).join(hex), dir.join(hex)]
        .iter()
        .any(|p| p.exists())
}
