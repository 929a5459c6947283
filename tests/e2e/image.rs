//! Wharf's own image (`make image`, scripts/build-image.sh; docs/packaging.md):
//! it loads into the Docker engine and into podman, runs `wharf serve` as
//! its own user with its data in the volume, turns healthy through its
//! health check (`wharf status --ready`), takes the first administrator's
//! password from the environment, and serves pushes and pulls of those
//! engines; and the image itself goes into a Wharf and comes back out.

use crate::registry_support::*;
use crate::support::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where `make image` wrote the image: `oci/` and `wharf.tar`.
fn image_dir() -> PathBuf {
    env_path("WHARF_TEST_WHARF_IMAGE")
}

/// The version the image was built from (`wharf --version` of the binary
/// under test: the suite builds both from the same tree).
fn version() -> String {
    let out = must(Command::new(env_path("WHARF_BIN")).arg("--version"));
    out.split_whitespace()
        .nth(1)
        .expect("`wharf VERSION`")
        .to_string()
}

/// A container of the image, removed on drop, with its log shown when a
/// wait fails.
struct Container {
    engine: fn() -> Command,
    id: String,
    /// `127.0.0.1:PORT`: it runs in the host's network.
    addr: String,
}

impl Container {
    /// `ENGINE run -d` of `image` on a free loopback port, with the admin
    /// password in the environment; `extra` before the image name.
    fn start(engine: fn() -> Command, extra: &[&str], image: &str) -> Container {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = engine();
        cmd.args(["run", "-d", "--network", "host"])
            .args(["-e", &format!("WHARF_LISTEN={addr}")])
            .args(["-e", &format!("WHARF_SERVER=http://{addr}")])
            .args(["-e", &format!("WHARF_ADMIN_PASSWORD={ADMIN_PASSWORD}")])
            .args(extra)
            .arg(image);
        // The container's id, among whatever else the engine says (podman
        // warns that without systemd it cannot time the health check).
        let out = must(&mut cmd);
        let id = out
            .split_whitespace()
            .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(|| panic!("no container id in {out:?}"))
            .to_string();
        Container { engine, id, addr }
    }

    fn inspect(&self, format: &str) -> String {
        must((self.engine)().args(["inspect", "--format", format, &self.id]))
            .trim()
            .to_string()
    }

    fn logs(&self) -> String {
        run((self.engine)().args(["logs", &self.id])).1
    }

    /// Wait until `ready` says so, at most a minute.
    fn wait_until(&self, what: &str, ready: impl Fn() -> bool) {
        let start = Instant::now();
        while !ready() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the container did not become {what} within a minute:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The user id its main process runs as, read from the host's /proc.
    fn process_uid(&self) -> String {
        let pid = self.inspect("{{.State.Pid}}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("a Uid line");
        line.split_whitespace().nth(1).unwrap().to_string()
    }

    /// The tags of `name` in the container's Wharf, asked as the admin.
    fn tags(&self, name: &str) -> String {
        must(skopeo().args([
            "list-tags",
            "--tls-verify=false",
            "--creds",
            &admin_creds(),
            &format!("docker://{}/{name}", self.addr),
        ]))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run((self.engine)().args(["rm", "-f", "-v", &self.id]));
    }
}

/// `podman run` options this machine needs: runc, and limits no higher
/// than the sandbox allows raising (as in registry_clients.rs).
const PODMAN_RUN: &[&str] = &[
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// `ENGINE load` the image's docker-archive: its name, `wharf:VERSION`.
fn load_image(engine: fn() -> Command) -> String {
    must(
        engine()
            .args(["load", "-i"])
            .arg(image_dir().join("wharf.tar")),
    );
    format!("wharf:{}", version())
}

#[test]
fn the_image_runs_under_docker_healthy_as_its_own_user_and_serves_push_and_pull() {
    let image = load_image(docker);
    // What the image says about itself.
    let config = must(docker().args(["image", "inspect", "--format", "{{json .Config}}", &image]));
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["User"], "10001:10001", "{config}");
    assert!(config["Volumes"]["/var/lib/wharf"].is_object(), "{config}");
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/bin/wharf", "status", "--ready"]),
        "{config}"
    );

    // Docker runs the health check itself (every second here, not 30 s).
    let c = Container::start(docker, &["--health-interval", "1s"], &image);
    c.wait_until("healthy", || {
        c.inspect("{{.State.Health.Status}}") == "healthy"
    });
    assert_eq!(c.process_uid(), "10001", "runs as the wharf user");
    let mounts = c.inspect("{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}");
    assert!(mounts.contains("volume:/var/lib/wharf"), "{mounts}");

    // The admin password came from the environment: a wrong one is refused,
    // the right one logs in, and the engine pushes and pulls through it.
    let tmp = scratch();
    let config = tmp.path().join("docker");
    let docker_cfg = || docker_with_config(&config);
    let login =
        |password: &str| run(docker_cfg().args(["login", &c.addr, "-u", "admin", "-p", password]));
    let (ok, out) = login("not-the-password");
    assert!(!ok, "a wrong password logged in: {out}");
    let (ok, out) = login(ADMIN_PASSWORD);
    assert!(ok, "{out}\n{}", c.logs());
    let name = format!("{}/team/busybox:v1", c.addr);
    docker_load_busybox_as(&name);
    let out = must(docker_cfg().args(["push", &name]));
    assert!(out.contains("digest: sha256:"), "{out}");
    must(docker().args(["rmi", "-f", &name]));
    must(docker_cfg().args(["pull", &name]));
    let out = docker_run_cat(&name, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");

    // The data lives in the volume: restarted, the container still has the tag.
    must(docker().args(["restart", &c.id]));
    c.wait_until("healthy again", || {
        c.inspect("{{.State.Health.Status}}") == "healthy"
    });
    let tags = c.tags("team/busybox");
    assert!(tags.contains("\"v1\""), "{tags}\n{}", c.logs());
}

#[test]
fn the_image_runs_under_podman_with_its_health_check_and_serves_push_and_pull() {
    let image = load_image(podman);
    let c = Container::start(podman, PODMAN_RUN, &image);
    // podman runs the image's health check when asked (its timer needs
    // systemd): exit status 0 once the server is ready.
    c.wait_until("healthy", || {
        run(podman().args(["healthcheck", "run", &c.id])).0
    });
    assert_eq!(c.process_uid(), "10001", "runs as the wharf user");

    let name = format!("{}/team/busybox:v1", c.addr);
    podman_load_as("busybox.tar", "test/busybox", &name);
    let tls = "--tls-verify=false";
    let (ok, out) = run(podman().args(["push", tls, "--creds", "admin:not-the-password", &name]));
    assert!(!ok, "a push with a wrong password worked: {out}");
    must(podman().args(["push", tls, "--creds", &admin_creds(), &name]));
    must(podman().args(["rmi", "-f", &name]));
    must(podman().args(["pull", tls, "--creds", &admin_creds(), &name]));
    let out = must(
        podman()
            .args(["run", "--rm", "--network", "none"])
            .args(PODMAN_RUN)
            .args([&name, "cat", "/etc/hello.txt"]),
    );
    assert!(out.contains("hello from wharf"), "{out}");
    let _ = run(podman().args(["rmi", "-f", &name]));
    assert!(c.tags("team/busybox").contains("\"v1\""));
}

/// The image goes into a Wharf as any image does (skopeo from the OCI
/// layout, byte for byte: the digest is the layout's), and the Docker engine
/// pulls it back out and runs the binary in it.
#[test]
fn the_image_is_pushed_into_wharf_and_pulled_back_by_docker() {
    let s = Server::start();
    let version = version();
    let layout = format!("oci:{}:latest", image_dir().join("oci").display());
    let name = format!("{}/wharf/server:{version}", s.addr);
    must(skopeo().args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-creds",
        &admin_creds(),
        &layout,
        &format!("docker://{name}"),
    ]));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(image_dir().join("oci/index.json")).unwrap())
            .unwrap();
    let built = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let pushed = must(skopeo().args([
        "inspect",
        "--tls-verify=false",
        "--creds",
        &admin_creds(),
        "--format",
        "{{.Digest}}",
        &format!("docker://{name}"),
    ]));
    assert_eq!(pushed.trim(), built);

    let tmp = scratch();
    let config = tmp.path().join("docker");
    let docker_cfg = || docker_with_config(&config);
    must(docker_cfg().args(["login", &s.addr, "-u", "admin", "-p", ADMIN_PASSWORD]));
    must(docker_cfg().args(["pull", &name]));
    let out = must(docker().args(["run", "--rm", "--network", "none", &name, "--version"]));
    assert_eq!(out.trim(), format!("wharf {version}"));
    let _ = run(docker().args(["rmi", "-f", &name]));
}
