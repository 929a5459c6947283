//! The `wharf` admin client end to end, as a person and a script use it:
//! the seed's roles and permissions (jdev may create, upload and publish but
//! not delete or manage users; madmin may delete), groups, notes, copy and
//! publish of the copy pulled by a real Docker engine, a progress bar drawn
//! on a real terminal (a pty from util-linux `script`), password prompts,
//! the failures people meet (wrong password, unknown repository, server
//! down) with their messages and exit codes, `--output json` and shell
//! completion.
//!
//! Each client has its own `HOME` (config file, saved login), so clients of
//! different users run side by side. The helpers here are also what
//! `quickstart.rs` replays `docs/quickstart.md` with.

use crate::registry_support::*;
use crate::support::*;
use serde_json::Value;
use std::io::{Read, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long an ordinary admin command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// What a finished command left behind.
pub struct Outcome {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn describe(&self) -> String {
        format!(
            "exit status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `cmd` with `input` on stdin (else nothing), in a process group of its
/// own that is killed if it is still running after `limit`.
pub fn run_bounded(mut cmd: Command, input: Option<&str>, limit: Duration) -> Outcome {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(text) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let status = wait_bounded(&mut child, limit);
    let outcome = Outcome {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        status.is_some(),
        "{cmd:?} did not finish within {limit:?}; killed. {}",
        outcome.describe()
    );
    outcome
}

/// Wait for a child that leads its own process group; after `limit`, kill
/// the whole group and return `None`.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `'text'` for a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The `wharf` admin client of one person: a private `HOME` (and so config
/// file and saved login), pointed at one server with `WHARF_SERVER`.
pub struct Wharf {
    pub home: tempfile::TempDir,
    pub server: String,
}

impl Wharf {
    pub fn new(server: &str) -> Wharf {
        Wharf {
            home: scratch(),
            server: server.to_string(),
        }
    }

    /// The environment every command gets, and nothing else: `PATH` with
    /// the `wharf` binary's directory first, the test Docker engine, the
    /// private home and the server.
    pub fn environment(&self, cmd: &mut Command) {
        let bin = env_path("WHARF_BIN");
        let path = format!(
            "{}:{}",
            bin.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("TMPDIR", self.home.path())
            .env("LANG", "C.UTF-8")
            .env("WHARF_SERVER", &self.server)
            .env(
                "DOCKER_HOST",
                std::env::var("DOCKER_HOST").expect("DOCKER_HOST: run through scripts/test.sh"),
            );
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env_path("WHARF_BIN"));
        cmd.args(args);
        self.environment(&mut cmd);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Outcome {
        run_bounded(self.command(args), None, COMMAND_LIMIT)
    }

    pub fn run_with_input(&self, args: &[&str], input: &str) -> Outcome {
        run_bounded(self.command(args), Some(input), COMMAND_LIMIT)
    }

    /// A command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, Some(0), "wharf {args:?}: {}", out.describe());
        out.stdout
    }

    /// A command that must fail the way every failure does: exit status 1
    /// and an `error:` message on stderr, no panic. Returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_failed(&out, &format!("wharf {args:?}"));
        out.stderr
    }

    /// `--output json`: stdout must parse.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("wharf {all:?} printed no JSON ({e}):\n{out}"))
    }

    pub fn login(&self, login: &str, password: &str) {
        let out = self.ok(&["login", "-u", login, "-p", password]);
        assert!(out.contains(&format!("as {login}")), "{out}");
    }

    /// The config file `wharf login` writes.
    pub fn config_file(&self) -> PathBuf {
        self.home.path().join(".config/wharf/config.toml")
    }
}

/// Exit status 1, an `error:` line, no panic.
pub fn assert_failed(out: &Outcome, what: &str) {
    assert_eq!(out.code, Some(1), "{what} should fail: {}", out.describe());
    assert!(
        out.stderr.starts_with("error: ") || out.stderr.contains("\nerror: "),
        "{what}: no `error:` message: {}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("panicked"),
        "{what} panicked: {}",
        out.describe()
    );
}

/// A command on a terminal of its own: `script` (util-linux) runs it on a
/// pty of 120x40 and records the whole session, as a person would see it.
pub struct Terminal {
    child: Child,
    transcript: PathBuf,
    _dir: tempfile::TempDir,
}

impl Terminal {
    pub fn start(w: &Wharf, args: &[&str]) -> Terminal {
        let dir = scratch();
        let transcript = dir.path().join("typescript");
        let line = format!(
            "stty cols 120 rows 40 && exec wharf {}",
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let log = std::fs::File::create(dir.path().join("script.log")).unwrap();
        let mut cmd = Command::new("script");
        cmd.args(["--quiet", "--return", "--flush", "--command", &line])
            .arg(&transcript);
        w.environment(&mut cmd);
        cmd.env("SHELL", "/bin/bash")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().expect("start script (util-linux)");
        Terminal {
            child,
            transcript,
            _dir: dir,
        }
    }

    /// Everything the terminal showed so far.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.transcript).unwrap_or_default()).into_owned()
    }

    /// Wait until the terminal shows `text`.
    pub fn wait_for(&mut self, text: &str, limit: Duration) {
        let start = Instant::now();
        while !self.transcript().contains(text) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the command ended ({status}) without showing {text:?}:\n{}",
                    self.transcript()
                );
            }
            assert!(
                start.elapsed() < limit,
                "{text:?} did not show within {limit:?}:\n{}",
                self.transcript()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Type a line, as at the keyboard.
    pub fn type_line(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{text}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Wait for the command to end: its exit status and the transcript.
    pub fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let status = wait_bounded(&mut self.child, limit);
        let transcript = self.transcript();
        let status =
            status.unwrap_or_else(|| panic!("not finished within {limit:?}:\n{transcript}"));
        (status.code(), transcript)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Only a group whose leader has not been reaped is still ours: once
        // waited for, its id may already belong to some other process group.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// Log `admin` in on a client of its own.
pub fn admin(s: &Server) -> Wharf {
    let w = Wharf::new(&s.base);
    w.login("admin", ADMIN_PASSWORD);
    w
}

fn busybox_tar() -> String {
    images_dir().join("busybox.tar").display().to_string()
}

/// The seed's roles, permissions and users, given through the CLI.
fn seed_access(admin: &Wharf) {
    for (role, description) in [
        ("contributor", "content contributors"),
        ("repo_admin", "Repository management"),
    ] {
        let out = admin.ok(&[
            "auth",
            "role",
            "create",
            "--role-id",
            role,
            "--description",
            description,
        ]);
        assert!(
            out.contains(&format!("Role [{role}] successfully created")),
            "{out}"
        );
    }
    let grant = |role: &str, resource: &str, ops: &[&str]| {
        let mut args = vec![
            "auth",
            "permission",
            "grant",
            "--role-id",
            role,
            "--resource",
            resource,
        ];
        for op in ops {
            args.extend(["-o", op]);
        }
        admin.ok(&args);
    };
    grant(
        "contributor",
        "/repositories",
        &["create", "read", "update", "execute"],
    );
    grant("contributor", "/content/uploads", &["create", "update"]);
    grant(
        "repo_admin",
        "/repositories",
        &["create", "read", "update", "delete", "execute"],
    );
    grant("repo_admin", "/content/uploads", &["create", "update"]);

    // Without -p the password comes from stdin when it is not a terminal.
    let out = admin.run_with_input(
        &[
            "auth",
            "user",
            "create",
            "--login",
            "jdev",
            "--name",
            "Joe Developer",
        ],
        "jdev-password\n",
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout.contains("User [jdev] successfully created"));
    admin.ok(&[
        "auth",
        "user",
        "create",
        "--login",
        "madmin",
        "--name",
        "Mary Admin",
        "-p",
        "madmin-password",
    ]);
    admin.ok(&[
        "auth",
        "role",
        "user",
        "add",
        "--role-id",
        "contributor",
        "--login",
        "jdev",
    ]);
    admin.ok(&[
        "auth",
        "role",
        "user",
        "add",
        "--role-id",
        "repo_admin",
        "--login",
        "madmin",
    ]);
    let roles = admin.json(&["auth", "role", "list"]);
    let users_of = |role: &str| {
        roles
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == role)
            .unwrap_or_else(|| panic!("no role {role}: {roles}"))["users"]
            .clone()
    };
    assert_eq!(users_of("contributor"), serde_json::json!(["jdev"]));
    assert_eq!(users_of("repo_admin"), serde_json::json!(["madmin"]));
}

#[test]
fn a_contributor_creates_uploads_and_publishes_but_only_a_repo_admin_deletes_and_neither_manages_users()
 {
    let s = Server::start();
    let admin = admin(&s);
    seed_access(&admin);

    let jdev = Wharf::new(&s.base);
    jdev.login("jdev", "jdev-password");
    let me = jdev.json(&["auth", "whoami"]);
    assert_eq!(me["login"], "jdev", "{me}");
    assert_eq!(me["name"], "Joe Developer", "{me}");
    assert_eq!(me["super_user"], false, "{me}");

    // Create, upload, publish: all allowed.
    jdev.ok(&[
        "docker",
        "repo",
        "create",
        "--repo-id",
        "jdev-app",
        "--repo-registry-id",
        "jdev/app",
    ]);
    let out = jdev.ok(&[
        "docker",
        "repo",
        "uploads",
        "upload",
        "--repo-id",
        "jdev-app",
        "--file",
        &busybox_tar(),
    ]);
    assert!(out.contains("tags latest"), "{out}");
    let out = jdev.ok(&["docker", "repo", "publish", "--repo-id", "jdev-app"]);
    assert!(
        out.contains(&format!("docker pull {}/jdev/app:TAG", s.addr)),
        "{out}"
    );
    let r = request(&s, "GET", "/v2/jdev/app/tags/list", &[]);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().unwrap()["tags"],
        serde_json::json!(["latest"])
    );

    // Deleting is refused, clearly, and nothing is deleted.
    let err = jdev.fails(&["docker", "repo", "delete", "--repo-id", "jdev-app"]);
    assert!(
        err.contains(
            "cannot delete repository jdev-app: user jdev lacks 'delete' on /repositories/jdev-app/"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "wharf auth permission grant --login jdev --resource /repositories/jdev-app/ -o delete"
        ),
        "the refusal should name the command that grants it: {err}"
    );
    assert_eq!(s.get_json("/api/v1/repositories/jdev-app").0, 200);

    // So is managing users, roles and permissions.
    let err = jdev.fails(&["auth", "user", "list"]);
    assert!(err.contains("user jdev lacks 'read' on /users/"), "{err}");
    let err = jdev.fails(&[
        "auth",
        "user",
        "create",
        "--login",
        "eve",
        "-p",
        "eve-password",
    ]);
    assert!(err.contains("user jdev lacks 'create' on /users/"), "{err}");
    assert_eq!(s.get_json("/api/v1/users/eve").0, 404, "eve was created");
    let err = jdev.fails(&[
        "auth",
        "role",
        "user",
        "add",
        "--role-id",
        "super-users",
        "--login",
        "jdev",
    ]);
    assert!(
        err.contains("user jdev lacks 'update' on /roles/super-users/"),
        "{err}"
    );
    let err = jdev.fails(&[
        "auth",
        "permission",
        "grant",
        "--login",
        "jdev",
        "--resource",
        "/",
        "-o",
        "delete",
    ]);
    assert!(
        err.contains("user jdev lacks 'update' on /permissions/"),
        "{err}"
    );
    assert_eq!(
        jdev.json(&["auth", "whoami"])["roles"],
        serde_json::json!(["contributor"])
    );

    // A repository admin may delete.
    let madmin = Wharf::new(&s.base);
    madmin.login("madmin", "madmin-password");
    let out = madmin.ok(&["docker", "repo", "delete", "--repo-id", "jdev-app"]);
    assert!(
        out.contains("Repository [jdev-app] successfully deleted"),
        "{out}"
    );
    assert_eq!(s.get_json("/api/v1/repositories/jdev-app").0, 404);
    let r = request(&s, "GET", "/v2/jdev/app/tags/list", &[]);
    assert_eq!(
        r.status().as_u16(),
        404,
        "a deleted repository is still served"
    );
    let err = madmin.fails(&["docker", "repo", "show", "--repo-id", "jdev-app"]);
    assert!(err.contains("repository jdev-app not found"), "{err}");

    // Logging out revokes the token on the server, not only here.
    let token = saved_token(&jdev);
    jdev.ok(&["logout"]);
    assert!(!jdev.config_file().exists() || saved_token(&jdev).is_empty());
    let r = anonymous_client()
        .get(s.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "the token still works after logout"
    );
}

/// The token `wharf login` saved (empty when none).
fn saved_token(w: &Wharf) -> String {
    let text = std::fs::read_to_string(w.config_file()).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("token = "))
        .map(|t| t.trim_matches('"').to_string())
        .unwrap_or_default()
}

#[test]
fn groups_and_notes_organise_repositories_and_a_published_copy_is_pullable() {
    let s = Server::start();
    let w = admin(&s);
    w.ok(&[
        "docker",
        "repo",
        "create",
        "--repo-id",
        "base",
        "--repo-registry-id",
        "cli/base",
    ]);
    w.ok(&[
        "docker",
        "repo",
        "uploads",
        "upload",
        "--repo-id",
        "base",
        "-f",
        &busybox_tar(),
    ]);

    // Notes on a repository, and finding repositories by note.
    w.ok(&[
        "docker",
        "repo",
        "update",
        "--repo-id",
        "base",
        "--note",
        "environment=test",
    ]);
    let shown = w.json(&["docker", "repo", "show", "--repo-id", "base"]);
    assert_eq!(shown["notes"], serde_json::json!({"environment": "test"}));

    // A group with a description, a note and a member.
    let out = w.ok(&[
        "repo",
        "group",
        "create",
        "--group-id",
        "baseos",
        "--description",
        "base OS docker images",
    ]);
    assert!(
        out.contains("Repository Group [baseos] successfully created"),
        "{out}"
    );
    w.ok(&[
        "repo",
        "group",
        "members",
        "add",
        "--group-id=baseos",
        "--repo-id",
        "base",
    ]);
    w.ok(&[
        "repo",
        "group",
        "update",
        "--group-id",
        "baseos",
        "--note",
        "owner=platform",
    ]);
    let g = w.json(&["repo", "group", "show", "--group-id", "baseos"]);
    assert_eq!(g["description"], "base OS docker images", "{g}");
    assert_eq!(g["members"], serde_json::json!(["base"]), "{g}");
    assert_eq!(g["notes"], serde_json::json!({"owner": "platform"}), "{g}");
    let found = w.json(&["repo", "group", "list", "--note", "owner=platform"]);
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let found = w.json(&["repo", "group", "list", "--note", "owner=nobody"]);
    assert_eq!(found, serde_json::json!([]));
    // A typo in a member is caught, not recorded.
    let err = w.fails(&[
        "repo",
        "group",
        "members",
        "add",
        "--group-id",
        "baseos",
        "--repo-id",
        "bsae",
    ]);
    assert!(err.contains("repository bsae not found"), "{err}");

    // Copy into a production repository: references only, then publish.
    w.ok(&[
        "docker",
        "repo",
        "create",
        "--repo-id",
        "base-prod",
        "--repo-registry-id",
        "cli/base-prod",
        "--note",
        "environment=prod",
    ]);
    let prod = w.json(&["docker", "repo", "list", "--note", "environment=prod"]);
    let ids: Vec<&str> = prod
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["base-prod"]);
    w.ok(&[
        "docker",
        "repo",
        "copy",
        "--from-repo-id",
        "base",
        "--to-repo-id",
        "base-prod",
    ]);
    let from = w.json(&["docker", "repo", "images", "--repo-id", "base"]);
    let to = w.json(&["docker", "repo", "images", "--repo-id", "base-prod"]);
    assert_eq!(from["manifests"], to["manifests"]);
    assert_eq!(to["tags"].as_array().unwrap().len(), 1, "{to}");

    // Copied is not published: invisible until the publish.
    let r = request(&s, "GET", "/v2/cli/base-prod/tags/list", &[]);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["tags"],
        serde_json::json!([]),
        "served before its publish"
    );
    w.ok(&["docker", "repo", "publish", "--repo-id", "base-prod"]);
    let digest = |name: &str| {
        let r = request(
            &s,
            "GET",
            &format!("/v2/{name}/manifests/latest"),
            &[("Accept", DOCKER_ACCEPT)],
        );
        assert_eq!(r.status().as_u16(), 200, "{name}");
        header(&r, "docker-content-digest")
    };
    let prod_digest = digest("cli/base-prod");
    assert_eq!(
        format!("\"{prod_digest}\""),
        to["manifests"][0]["key"].to_string()
    );

    let name = format!("{}/cli/base-prod:latest", s.addr);
    let out = docker_pull_run_cat(&name, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");

    // `KEY=` removes a note.
    w.ok(&[
        "docker",
        "repo",
        "update",
        "--repo-id",
        "base",
        "--note",
        "environment=",
    ]);
    let shown = w.json(&["docker", "repo", "show", "--repo-id", "base"]);
    assert_eq!(shown["notes"], serde_json::json!({}), "{shown}");
}

/// A file of `size` bytes that is not all zeros.
fn big_file(dir: &Path, name: &str, size: usize) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut left = size;
    let mut n = 0u8;
    while left > 0 {
        let mut chunk = block[..left.min(block.len())].to_vec();
        chunk[0] = n;
        n = n.wrapping_add(1);
        f.write_all(&chunk).unwrap();
        left -= chunk.len();
    }
    f.flush().unwrap();
    path
}

/// The figures of each frame of the bar labelled `label`: for
/// `Uploading: x [===>   ] 16.00 MiB/200.00 MiB (...)`, "16.00 MiB".
fn bar_frames(transcript: &str, label: &str, total: &str) -> Vec<String> {
    let mut frames: Vec<String> = Vec::new();
    for (i, _) in transcript.match_indices(&format!("{label} [")) {
        let rest = &transcript[i..];
        let Some(close) = rest.find("] ") else {
            continue;
        };
        let Some(end) = rest[close..].find(&format!("/{total}")) else {
            continue;
        };
        let figure = rest[close + 2..close + end].to_string();
        if frames.last() != Some(&figure) {
            frames.push(figure);
        }
    }
    frames
}

#[test]
fn an_upload_on_a_terminal_draws_a_live_progress_bar_and_plain_lines_elsewhere() {
    let s = Server::start();
    let w = admin(&s);
    w.ok(&["repo", "create", "--type", "file", "--repo-id", "files"]);
    let dir = scratch();
    let size = 200 << 20;
    let file = big_file(dir.path(), "big.bin", size);
    let file = file.to_str().unwrap();

    let term = Terminal::start(
        &w,
        &[
            "repo",
            "uploads",
            "upload",
            "--repo-id",
            "files",
            "-f",
            file,
            "--param",
            "relative_path=big.bin",
        ],
    );
    let (code, shown) = term.finish(Duration::from_secs(300));
    assert_eq!(code, Some(0), "{shown}");
    // One bar redrawn in place (cursor movement, line clearing), moving
    // through several positions to the full size.
    assert!(shown.contains("\x1b[2K"), "no redraw in place:\n{shown}");
    let frames = bar_frames(&shown, "Uploading: big.bin", "200.00 MiB");
    assert!(
        frames.len() >= 3,
        "the bar did not move through the upload: {frames:?}\n{shown}"
    );
    assert_eq!(
        frames.last().map(String::as_str),
        Some("200.00 MiB"),
        "{frames:?}"
    );
    assert!(
        shown.contains(&format!(
            "Uploading: big.bin [{}] 200.00 MiB/200.00 MiB",
            "=".repeat(40)
        )),
        "no full bar:\n{shown}"
    );
    // Drawn in Wharf's style from the first frame, not indicatif's default.
    assert!(
        !shown.contains('░'),
        "a frame in the default style:\n{shown}"
    );
    for text in [
        "... completed",
        "Task Succeeded",
        "added big.bin (209715200 bytes)",
    ] {
        assert!(shown.contains(text), "{text:?} missing:\n{shown}");
    }

    // Not on a terminal (a log, CI): plain lines, no control characters.
    let small = big_file(dir.path(), "small.bin", 20 << 20);
    let out = w.run(&[
        "repo",
        "uploads",
        "upload",
        "--repo-id",
        "files",
        "-f",
        small.to_str().unwrap(),
        "--param",
        "relative_path=small.bin",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        !out.stderr.contains('\x1b') && !out.stderr.contains('\r'),
        "control characters in a log:\n{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Uploading: small.bin: 20.00 MiB of 20.00 MiB (100%)"),
        "{}",
        out.stderr
    );

    let units = w.json(&["repo", "content", "--repo-id", "files", "--type", "file"]);
    let mut sizes: Vec<(String, u64)> = units
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["metadata"]["relative_path"].as_str().unwrap().to_string(),
                u["metadata"]["size"].as_u64().unwrap(),
            )
        })
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [
            ("big.bin".to_string(), size as u64),
            ("small.bin".to_string(), 20 << 20)
        ]
    );
}

#[test]
fn passwords_are_asked_on_a_terminal_without_echo_and_a_mistyped_one_changes_nothing() {
    let s = Server::start();
    let w = Wharf::new(&s.base);

    let mut term = Terminal::start(&w, &["login", "-u", "admin"]);
    term.wait_for("Enter password for user [admin] :", Duration::from_secs(60));
    term.type_line(ADMIN_PASSWORD);
    let (code, shown) = term.finish(COMMAND_LIMIT);
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("Successfully logged in"), "{shown}");
    assert!(
        !shown.contains(ADMIN_PASSWORD),
        "the password was echoed:\n{shown}"
    );

    // Typed twice, differently: refused, nothing changed.
    let mut term = Terminal::start(&w, &["auth", "user", "update", "--login", "admin", "-p"]);
    term.wait_for("Enter password for user [admin] :", Duration::from_secs(60));
    term.type_line("first-new-password");
    term.wait_for(
        "Re-enter password for user [admin] :",
        Duration::from_secs(60),
    );
    term.type_line("other-new-password");
    let (code, shown) = term.finish(COMMAND_LIMIT);
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("the passwords differ; nothing was changed"),
        "{shown}"
    );
    s.login("admin", ADMIN_PASSWORD);

    // Typed twice the same: changed, and the client logs in again with it.
    let mut term = Terminal::start(&w, &["auth", "user", "update", "--login", "admin", "-p"]);
    term.wait_for("Enter password for user [admin] :", Duration::from_secs(60));
    term.type_line("the-new-admin-password");
    term.wait_for(
        "Re-enter password for user [admin] :",
        Duration::from_secs(60),
    );
    term.type_line("the-new-admin-password");
    let (code, shown) = term.finish(COMMAND_LIMIT);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("User [admin] successfully updated"),
        "{shown}"
    );
    let me = w.json(&["auth", "whoami"]);
    assert_eq!(
        me["login"], "admin",
        "the saved login was not renewed: {me}"
    );
    s.login("admin", "the-new-admin-password");
    let r = anonymous_client()
        .post(s.url("/api/v1/login"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "the old password still works");
}

#[test]
fn wrong_password_unknown_repository_and_a_stopped_server_fail_with_clear_messages() {
    let mut s = Server::start();
    let w = Wharf::new(&s.base);
    let server = format!("{}/", s.base);

    let err = w.fails(&["repo", "list"]);
    assert!(
        err.contains(&format!(
            "the server at {server} wants a login: run `wharf login -u LOGIN`"
        )),
        "{err}"
    );

    let out = w.run(&["login", "-u", "admin", "-p", "not-the-password"]);
    assert_failed(&out, "login with a wrong password");
    assert!(
        out.stderr.contains(&format!(
            "cannot log in to {server} as admin: wrong login or password"
        )),
        "{}",
        out.describe()
    );
    assert!(out.stdout.is_empty(), "{}", out.describe());
    let shown = w.json(&["config", "show"]);
    assert_eq!(
        shown["login"],
        Value::Null,
        "a failed login was saved: {shown}"
    );

    w.login("admin", ADMIN_PASSWORD);
    for args in [
        &["docker", "repo", "show", "--repo-id", "nope"][..],
        &["repo", "sync", "--repo-id", "nope"],
        &["repo", "publish", "--repo-id", "nope"],
        &["docker", "repo", "images", "--repo-id", "nope"],
        &[
            "docker",
            "repo",
            "uploads",
            "upload",
            "--repo-id",
            "nope",
            "-f",
            &busybox_tar(),
        ],
    ] {
        let err = w.fails(args);
        assert!(
            err.contains("repository nope not found; `wharf repo list` shows the repositories"),
            "wharf {args:?}: {err}"
        );
    }
    let err = w.fails(&["docker", "repo", "sync", "--repo-id", "nope"]);
    assert!(
        err.contains("repository nope does not exist; to create it and sync in one step, give --feed URL and --upstream-name NAME"),
        "{err}"
    );
    let err = w.fails(&["task", "show", "01234567-89ab-7def-8123-456789abcdef"]);
    assert!(
        err.contains("not found; `wharf task list` shows recent tasks"),
        "{err}"
    );

    // The server stops: every command says so at once.
    s.kill();
    for args in [
        &["repo", "list"][..],
        &["status"],
        &["login", "-u", "admin", "-p", ADMIN_PASSWORD],
    ] {
        let start = Instant::now();
        let err = w.fails(args);
        assert!(
            err.contains(&format!("cannot reach the Wharf server at {server}"))
                && err.contains("Connection refused")
                && err.contains("is `wharf serve` running?"),
            "wharf {args:?}: {err}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "wharf {args:?} took {:?} to notice",
            start.elapsed()
        );
    }
}

/// `wharf status --ready`, the image's health check: no login needed, exit
/// status 0 while `/readyz` says ready, 1 naming the failing check when a
/// part of the server is not usable, 1 saying so when it is down.
#[test]
fn the_readiness_probe_exits_0_when_ready_and_1_naming_what_fails() {
    let mut s = Server::start();
    let w = Wharf::new(&s.base);
    let out = w.run(&["status", "--ready"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout.contains("is ready"), "{}", out.describe());
    let doc = w.json(&["status", "--ready"]);
    assert_eq!(doc["ready"], true, "{doc}");
    assert_eq!(doc["checks"]["blobs"]["ok"], true, "{doc}");

    // The blob directory goes away: not ready, and the probe says which
    // check fails (`--output json` still prints the document, then fails).
    let blobs = s.data_dir().join("blobs");
    let aside = s.data_dir().join("blobs-aside");
    std::fs::rename(&blobs, &aside).unwrap();
    let out = w.run(&["status", "--ready"]);
    assert_failed(&out, "the probe with no blob directory");
    assert!(
        out.stderr.contains("is not ready (blobs: cannot write in"),
        "{}",
        out.describe()
    );
    let out = w.run(&["--output", "json", "status", "--ready"]);
    assert_failed(&out, "the JSON probe with no blob directory");
    let doc: Value = serde_json::from_str(&out.stdout).expect("the document on stdout");
    assert_eq!(doc["ready"], false, "{doc}");
    assert_eq!(doc["checks"]["blobs"]["ok"], false, "{doc}");

    // Back: ready again, with nothing restarted.
    std::fs::rename(&aside, &blobs).unwrap();
    assert_eq!(w.run(&["status", "--ready"]).code, Some(0));

    s.kill();
    let err = w.fails(&["status", "--ready"]);
    assert!(err.contains("cannot reach the Wharf server at"), "{err}");
}

#[test]
fn json_output_parses_for_scripts_even_when_a_task_fails() {
    let s = Server::start();
    let w = admin(&s);

    let repo = w.json(&[
        "docker",
        "repo",
        "create",
        "--repo-id",
        "app",
        "--repo-registry-id",
        "json/app",
        "--description",
        "for scripts",
    ]);
    assert_eq!(repo["id"], "app", "{repo}");
    assert_eq!(repo["description"], "for scripts", "{repo}");
    let archive = busybox_tar();
    let upload = [
        "docker",
        "repo",
        "uploads",
        "upload",
        "--repo-id",
        "app",
        "-f",
        &archive,
    ];
    let task = w.json(&upload);
    assert_eq!(task["state"], "finished", "{task}");
    assert_eq!(task["kind"], "import", "{task}");
    assert_eq!(
        task["input"]["job"], "import-stream",
        "sent as the body: {task}"
    );
    let task_id = task["id"].as_str().unwrap().to_string();
    // The other way: a resumable upload, imported once complete.
    let resumable = w.json(&[&upload[..], &["--resumable"]].concat());
    assert_eq!(resumable["state"], "finished", "{resumable}");
    assert_eq!(resumable["input"]["job"], "import", "{resumable}");

    let shown = w.json(&["repo", "show", "--repo-id", "app"]);
    assert_eq!(shown["content_counts"]["tag"], 1, "{shown}");
    let task = w.json(&["task", "show", &task_id]);
    assert_eq!(task["id"], task_id.as_str(), "{task}");
    let tasks = w.json(&["task", "list", "--repo-id", "app"]);
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == task_id.as_str()),
        "{tasks}"
    );
    let listed = w.json(&["publish-docker", "--list"]);
    assert_eq!(listed[0]["id"], "app", "{listed}");
    let status = w.json(&["status"]);
    assert!(status["version"].is_string(), "{status}");
    let me = w.json(&["auth", "whoami"]);
    assert_eq!(me["super_user"], true, "{me}");
    for args in [
        &["repo", "list"][..],
        &["repo", "group", "list"],
        &["auth", "user", "list"],
        &["auth", "role", "list"],
        &["auth", "permission", "list"],
        &["docker", "repo", "images", "--repo-id", "app"],
        &["config", "show"],
    ] {
        let v = w.json(args);
        assert!(v.is_array() || v.is_object(), "wharf {args:?}: {v}");
    }

    // --no-wait: the task record at once.
    let started = w.json(&["docker", "repo", "publish", "--repo-id", "app", "--no-wait"]);
    assert_eq!(started["kind"], "publish", "{started}");
    s.wait_task(&started);

    // A failed import: exit status 1, and still the task's record on stdout.
    let dir = scratch();
    let junk = dir.path().join("not-an-archive.tar");
    std::fs::write(&junk, b"this is not a docker save archive").unwrap();
    let out = w.run(&[
        "docker",
        "repo",
        "uploads",
        "upload",
        "--repo-id",
        "app",
        "-f",
        junk.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_failed(&out, "importing junk");
    let task: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON for the failed task ({e}): {}", out.describe()));
    assert_eq!(task["state"], "error", "{task}");
    assert!(task["error"]["message"].is_string(), "{task}");
}

#[test]
fn bash_completion_script_completes_the_commands() {
    let w = Wharf::new("http://127.0.0.1:9");
    let script = w.ok(&["completions", "bash"]);
    assert!(script.contains("_wharf()"), "{script}");
    assert!(script.contains("complete -F _wharf"), "{script}");

    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        r#"source <(wharf completions bash)
           COMP_WORDS=(wharf docker repo s); COMP_CWORD=3; _wharf wharf s repo
           echo "${COMPREPLY[@]}""#,
    ]);
    w.environment(&mut cmd);
    let out = run_bounded(cmd, None, COMMAND_LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(words, ["show", "sync"], "{}", out.describe());
}

// ------------------------------------------------------------ man pages --

/// The subcommands `wharf ARGS --help` lists (not `help`).
fn listed_subcommands(w: &Wharf, args: &[&str]) -> Vec<String> {
    let mut all = args.to_vec();
    all.push("--help");
    let help = w.ok(&all);
    let Some((_, rest)) = help.split_once("\nCommands:\n") else {
        return Vec::new();
    };
    rest.lines()
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a wrapped description
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// What `man -l` shows of a page, as plain text: no bold or underline,
/// ASCII hyphens.
fn man_text(page: &Path) -> Option<String> {
    // No hyphenation or justification: words stay whole.
    let out = Command::new("man")
        .args(["--nh", "--nj", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "200")
        .env("LANG", "C.UTF-8")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let raw = String::from_utf8_lossy(&out.stdout);
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // Overstrike: `X\bX` (bold) and `_\bX` (underline) keep X.
            '\u{8}' => {
                text.pop();
            }
            '\u{1b}' => {
                // An SGR sequence: ESC [ ... m
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            }
            '\u{2010}' | '\u{2212}' => text.push('-'),
            c => text.push(c),
        }
    }
    Some(text)
}

#[test]
fn man_pages_cover_every_command_with_its_about_and_flags() {
    let w = Wharf::new("http://127.0.0.1:9");
    let dir = scratch();
    let pages = dir.path().join("man1");
    let out = w.ok(&["manpages", pages.to_str().unwrap()]);
    assert!(out.contains("man pages into"), "{out}");

    // Every command `--help` lists, at every level, has its page, and no
    // page is for a command that does not exist.
    let mut want = vec!["wharf".to_string()];
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = queue.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in listed_subcommands(&w, &args) {
            let mut deeper = path.clone();
            deeper.push(sub);
            want.push(format!("wharf-{}", deeper.join("-")));
            queue.push(deeper);
        }
    }
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .map(|f| {
            f.strip_suffix(".1")
                .unwrap_or_else(|| panic!("{f}: not a section-1 page"))
                .to_string()
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    for must in [
        "wharf-repo",
        "wharf-docker-repo-copy",
        "wharf-task-list",
        "wharf-manpages",
        "wharf-serve",
    ] {
        assert!(got.iter().any(|g| g == must), "no page {must}: {got:?}");
    }

    // A page says what its command does and lists its flags.
    let copy_help = w.ok(&["docker", "repo", "copy", "--help"]);
    let about = copy_help.lines().next().unwrap().trim().to_string();
    let copy = pages.join("wharf-docker-repo-copy.1");
    let roff = std::fs::read_to_string(&copy).unwrap();
    assert!(roff.contains(".TH wharf-docker-repo-copy 1"), "{roff}");
    assert!(
        roff.contains(r"\-\-from\-repo\-id") && roff.contains(r"\-\-to\-repo\-id"),
        "{roff}"
    );
    match man_text(&copy) {
        Some(text) => {
            let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let about = about.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(flat.contains(&about), "{about:?} not in:\n{text}");
            for flag in ["--from-repo-id", "--to-repo-id", "--server", "--output"] {
                assert!(flat.contains(flag), "{flag} not in:\n{text}");
            }
            assert!(flat.contains("wharf docker repo copy"), "synopsis:\n{text}");
        }
        None => eprintln!("man is not installed: the pages are checked as roff only"),
    }
    let top = std::fs::read_to_string(pages.join("wharf.1")).unwrap();
    assert!(
        top.contains("WHARF_TOKEN") && top.contains("manpages"),
        "{top}"
    );

    // A directory that cannot be made: a clear error.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = w.fails(&["manpages", file.join("man1").to_str().unwrap()]);
    assert!(err.contains("cannot create"), "{err}");
}

// ------------------------------------------------ WHARF_TOKEN, request ids --

/// `wharf ARGS` with `WHARF_TOKEN` set to `token`.
fn with_token(w: &Wharf, token: &str, args: &[&str]) -> Outcome {
    let mut cmd = w.command(args);
    cmd.env("WHARF_TOKEN", token);
    run_bounded(cmd, None, COMMAND_LIMIT)
}

#[test]
fn a_token_in_wharf_token_is_used_before_the_saved_login_and_a_bad_one_fails_clearly() {
    let s = Server::start();
    let w = Wharf::new(&s.base);
    let help = w.ok(&["--help"]);
    assert!(help.contains("WHARF_TOKEN"), "{help}");
    let err = w.fails(&["repo", "list"]);
    assert!(
        err.contains("WHARF_TOKEN"),
        "the refusal does not say how a job logs in: {err}"
    );

    // A token from POST /api/v1/login, as a CI job has it: no `wharf login`.
    let token = s.login("admin", ADMIN_PASSWORD);
    let out = with_token(&w, &token, &["repo", "list", "--output", "json"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let repos: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(repos.is_array(), "{repos}");
    let out = with_token(&w, &token, &["auth", "whoami", "--output", "json"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let me: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(me["login"], "admin", "{me}");
    assert!(
        !w.config_file().exists(),
        "a token from the environment was saved"
    );
    let shown = with_token(&w, &token, &["config", "show", "--output", "json"]);
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["token_from"], "WHARF_TOKEN", "{shown}");

    // A bad one fails, naming the variable; it is used even when a saved
    // login would work.
    w.login("admin", ADMIN_PASSWORD);
    for bad in ["not-a-token", "wharf_0000000000000000"] {
        let out = with_token(&w, bad, &["repo", "list"]);
        assert_failed(&out, "a bad WHARF_TOKEN");
        assert!(
            out.stderr.contains(&format!(
                "the server at {}/ did not accept the token in WHARF_TOKEN",
                s.base
            )),
            "{}",
            out.describe()
        );
    }
    let out = with_token(&w, "two\nlines", &["repo", "list"]);
    assert_failed(&out, "a WHARF_TOKEN with a line break");
    assert!(out.stderr.contains("WHARF_TOKEN"), "{}", out.describe());
    // Empty is unset: the saved login.
    let out = with_token(&w, "", &["repo", "list"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());

    // `wharf logout` forgets and revokes the saved login, never the job's token.
    let out = with_token(&w, &token, &["logout"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let out = with_token(&w, &token, &["repo", "list"]);
    assert_eq!(
        out.code,
        Some(0),
        "the job's token was revoked: {}",
        out.describe()
    );
    let shown = w.json(&["config", "show"]);
    assert_eq!(shown["login"], Value::Null, "{shown}");
}

#[test]
fn a_server_error_shows_the_request_id_that_the_server_log_has() {
    // A server whose LDAP directory does not answer: a login that is not
    // local gets 503 from the server itself.
    let closed = free_port();
    let ldap = format!("ldap://127.0.0.1:{closed}");
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &[
            "--ldap-url",
            &ldap,
            "--ldap-user-dn-template",
            "uid={login},ou=people,dc=example,dc=org",
            "--ldap-timeout-secs",
            "2",
        ],
    );
    let w = Wharf::new(&s.base);
    let err = w.fails(&["login", "-u", "lea", "-p", "some-password"]);
    assert!(err.contains("LDAP directory did not answer"), "{err}");
    let (_, rest) = err
        .split_once("(server error 503; request id ")
        .unwrap_or_else(|| panic!("no request id: {err}"));
    let (id, tail) = rest.split_once(';').unwrap();
    assert!(
        tail.starts_with(" the server's log has the details)"),
        "{err}"
    );
    assert!(
        id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        "not a request id: {id:?}"
    );
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains(id) && l.contains("LDAP")),
        "{id} is not in the server's log:\n{log}"
    );
    // A refusal (4xx) is the person's to fix: no request id.
    let err = w.fails(&["login", "-u", "admin", "-p", "not-the-password"]);
    assert!(!err.contains("request id"), "{err}");
}

#[test]
fn sync_schedules_are_created_listed_and_deleted_in_pulp_admins_words() {
    let s = Server::start();
    let w = admin(&s);
    w.ok(&["docker", "repo", "create", "--repo-id", "nightly"]);
    fn sched<'a>(args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["docker", "repo", "sync", "schedules"];
        all.extend_from_slice(args);
        all
    }
    // An interval that is not one says what one looks like.
    let err = w.fails(&sched(&["create", "--repo-id", "nightly", "-s", "hourly"]));
    assert!(err.contains("2026-12-01T00:00Z/PT1H"), "{err}");
    let out = w.ok(&sched(&[
        "create",
        "--repo-id",
        "nightly",
        "-s",
        "2030-01-01T00:00Z/P1D",
    ]));
    assert!(out.contains("next run 2030-01-01T00:00:00.000Z"), "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    let listed = w.ok(&sched(&["list", "--repo-id", "nightly"]));
    assert!(
        listed.contains(&id) && listed.contains("sync nightly"),
        "{listed}"
    );
    // Paused, then deleted.
    w.ok(&["schedule", "update", &id, "--enabled", "false"]);
    let shown = w.ok(&["--output", "json", "schedule", "show", &id]);
    assert!(shown.contains("\"enabled\": false"), "{shown}");
    w.ok(&sched(&[
        "delete",
        "--repo-id",
        "nightly",
        "--schedule-id",
        &id,
    ]));
    let listed = w.ok(&["schedule", "list"]);
    assert!(!listed.contains(&id), "{listed}");
    // A schedule of a repository that does not exist is refused.
    let err = w.fails(&sched(&["create", "--repo-id", "ghost", "-s", "PT1H"]));
    assert!(err.contains("ghost"), "{err}");
}
