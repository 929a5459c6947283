//! Packaging: `wharf serve` and `wharf worker` tell a service manager their
//! state through `NOTIFY_SOCKET` (READY after the listeners accept,
//! RELOADING … READY around a SIGHUP reload, STOPPING at shutdown), the
//! systemd units in `packaging/` pass `systemd-analyze verify` as shipped
//! and keep their sandbox, and the several-node compose example has the
//! shape docs/scaling.md describes. See docs/packaging.md.

use crate::support::*;
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A datagram socket standing in for systemd's notification socket.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        // Under /tmp: a socket path must stay within 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("wharf-notify")
            .tempdir_in("/tmp")
            .unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            _dir: dir,
            path,
            socket,
        }
    }

    /// The next message, as its `KEY=VALUE` lines, if one comes within `within`.
    fn receive(&self, within: Duration) -> std::io::Result<Vec<String>> {
        self.socket.set_read_timeout(Some(within))?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = self.socket.recv(&mut buf)?;
        Ok(String::from_utf8(buf[..n].to_vec())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// The next message; panics, with the log, after `within`.
    fn next(&self, within: Duration, what: &str, log: &dyn Fn() -> String) -> Vec<String> {
        self.receive(within).unwrap_or_else(|e| {
            panic!("no notification ({what}) within {within:?}: {e}\n{}", log())
        })
    }
}

fn field<'a>(message: &'a [String], key: &str) -> Option<&'a str> {
    message
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn kill(signal: &str, pid: u32) {
    must(Command::new("kill").args([signal, &pid.to_string()]));
}

/// A self-signed certificate and its key, made with openssl.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    must(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    (cert, key)
}

/// `wharf serve` with a plain API listener and a TLS registry listener,
/// notifying `notify`, once it said `READY=1`: the server, the registry
/// address and the READY message. A port taken meanwhile by another
/// process (see [`free_port`]) means another try on new ports.
fn serve_until_ready(
    notify: &NotifySocket,
    cert: &Path,
    key: &Path,
) -> (Server, String, Vec<String>) {
    for _ in 0..3 {
        let registry = format!("127.0.0.1:{}", free_port());
        let mut s = Server::spawn_with_env(
            &[
                "--registry-listen",
                &registry,
                "--registry-tls-cert",
                cert.to_str().unwrap(),
                "--registry-tls-key",
                key.to_str().unwrap(),
            ],
            &[("NOTIFY_SOCKET", notify.path.to_str().unwrap())],
        );
        let start = Instant::now();
        loop {
            if let Ok(m) = notify.receive(Duration::from_millis(200)) {
                if m.iter().any(|l| l == "READY=1") {
                    return (s, registry, m);
                }
                // Nothing before it says ready, or stopping.
                assert!(
                    !m.iter()
                        .any(|l| l.starts_with("READY=") || l.starts_with("STOPPING=")),
                    "{m:?}"
                );
                continue;
            }
            if s.wait_exit(Duration::from_millis(10)).is_some() {
                assert!(
                    s.log().contains("Address already in use"),
                    "exited before READY=1:\n{}",
                    s.log()
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no READY=1 within 120 s:\n{}",
                s.log()
            );
        }
    }
    panic!("three tries, every one on a port taken meanwhile");
}

#[test]
fn serve_notifies_ready_after_its_listeners_accept_then_reloading_ready_on_sighup_and_stopping() {
    let notify = NotifySocket::new();
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(tls.path());
    let status = |s: &Server| {
        anonymous_client()
            .get(s.url("/api/v1/status"))
            .timeout(Duration::from_secs(10))
            .send()
            .map(|r| r.status().as_u16())
    };

    // READY=1, and by then the API answers at once.
    let (mut s, registry, ready) = serve_until_ready(&notify, &cert, &key);
    assert_eq!(status(&s).ok(), Some(200), "{}", s.log());
    let log = || s.log();
    let serving = field(&ready, "STATUS").expect("a STATUS with READY=1");
    assert!(serving.starts_with("serving: "), "{serving}");
    assert!(serving.contains(&s.addr), "{serving}");
    assert!(
        serving.contains(&format!("https://{registry}")),
        "{serving}"
    );

    // SIGHUP: RELOADING=1 with the monotonic time, then READY=1 once the
    // certificate is reloaded (its log line is written before READY=1).
    kill("-HUP", s.pid());
    let reloading = notify.next(Duration::from_secs(10), "RELOADING=1", &log);
    assert!(
        reloading.iter().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    let usec: u64 = field(&reloading, "MONOTONIC_USEC")
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .unwrap();
    assert!(usec > 0);
    let reloaded = notify.next(Duration::from_secs(10), "READY=1 after the reload", &log);
    assert!(reloaded.iter().any(|l| l == "READY=1"), "{reloaded:?}");
    assert!(s.log().contains("TLS certificate reloaded"), "{}", s.log());
    let after = field(&reloaded, "STATUS").unwrap();
    assert!(
        after.contains(serving) && after.contains("1 TLS certificate reloaded"),
        "{after}"
    );
    assert_eq!(status(&s).ok(), Some(200));

    // A reload that fails (the key of another certificate) still ends with
    // READY=1 (the previous certificate serves on), and says so.
    let other = tempfile::tempdir().unwrap();
    let (_, other_key) = certificate(other.path());
    std::fs::copy(&other_key, &key).unwrap();
    kill("-HUP", s.pid());
    let m = notify.next(Duration::from_secs(10), "RELOADING=1", &log);
    assert!(m.iter().any(|l| l == "RELOADING=1"), "{m:?}");
    let m = notify.next(Duration::from_secs(10), "READY=1", &log);
    assert!(m.iter().any(|l| l == "READY=1"), "{m:?}");
    let after = field(&m, "STATUS").unwrap();
    assert!(after.contains("1 kept"), "{after}");

    // SIGTERM: STOPPING=1, with time for the shutdown timeout, then exit 0.
    kill("-TERM", s.pid());
    let stopping = notify.next(Duration::from_secs(10), "STOPPING=1", &log);
    assert!(stopping.iter().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let extend: u64 = field(&stopping, "EXTEND_TIMEOUT_USEC")
        .expect("EXTEND_TIMEOUT_USEC with STOPPING=1")
        .parse()
        .unwrap();
    // The default --shutdown-timeout is 30 s.
    assert!(extend >= 30_000_000, "{extend}");
    let exit = s.wait_exit(Duration::from_secs(40)).expect("exited");
    assert!(exit.success(), "{exit:?}\n{}", s.log());
}

#[test]
fn a_notify_socket_nobody_listens_on_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nobody-here");
    let s = Server::spawn_with_env(&[], &[("NOTIFY_SOCKET", nowhere.to_str().unwrap())]).ready();
    let (code, _) = s.get_json("/api/v1/status");
    assert_eq!(code, 200);
    assert!(
        s.log().contains("cannot notify the service manager"),
        "{}",
        s.log()
    );
}

#[test]
fn a_worker_notifies_ready_once_it_takes_tasks_and_stopping_on_sigterm() {
    let amqp = std::env::var("WHARF_TEST_AMQP_URL")
        .expect("WHARF_TEST_AMQP_URL: run through scripts/test.sh");
    let notify = NotifySocket::new();
    let data = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let log_path = data.path().join("worker.log");
    let queue = format!("wharf.packaging.{}", std::process::id());
    let mut child = Command::new(env_path("WHARF_BIN"))
        .args(["worker", "--broker", &amqp, "--broker-queue", &queue])
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .arg("--plugin-dir")
        .arg(env_path("WHARF_PLUGIN_DIR"))
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let ready = loop {
        let m = notify.next(Duration::from_secs(120), "READY=1", &log);
        if m.iter().any(|l| l == "READY=1") {
            break m;
        }
    };
    let status = field(&ready, "STATUS").unwrap();
    assert!(status.contains(&queue), "{status}");
    kill("-TERM", child.id());
    let m = notify.next(Duration::from_secs(10), "STOPPING=1", &log);
    assert!(m.iter().any(|l| l == "STOPPING=1"), "{m:?}");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(40), "{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `systemd-analyze verify` on `unit`: its output (warnings and errors
/// both), empty when the unit is clean.
fn verify(unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze (systemd) is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

/// Where `make install` puts the binary, which the units run.
const INSTALLED: &str = "/usr/local/bin/wharf";

/// The unit with its ExecStart pointing at the binary under test: verify
/// checks that the program exists, and this machine need not have Wharf
/// installed. Nothing else of the unit changes.
fn with_built_binary(unit: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_file(&format!("packaging/{unit}"))).unwrap();
    let exec = format!("ExecStart={INSTALLED} ");
    assert_eq!(text.matches(&exec).count(), 1, "{unit}: one `{exec}…`");
    let bin = env_path("WHARF_BIN");
    let copy = dir.join(unit);
    std::fs::write(
        &copy,
        text.replace(&exec, &format!("ExecStart={} ", bin.display())),
    )
    .unwrap();
    copy
}

fn directives(unit: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(repo_file(&format!("packaging/{unit}")))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_units_as_shipped_verify_with_no_warning_and_keep_their_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    for unit in ["wharf.service", "wharf-worker.service"] {
        let copy = with_built_binary(unit, dir.path());
        let (ok, out) = verify(&copy);
        assert!(
            ok && out.is_empty(),
            "{unit}: systemd-analyze verify:\n{out}"
        );

        // As shipped, the only possible complaint is a missing binary.
        let (_, out) = verify(&repo_file(&format!("packaging/{unit}")));
        for line in out.lines() {
            assert!(
                line.contains(&format!("Command {INSTALLED} is not executable")),
                "{unit}: {line}"
            );
        }

        // The hardening the unit promises (docs/packaging.md).
        let d = directives(unit);
        let has = |k: &str, v: &str| d.iter().any(|(dk, dv)| dk == k && dv == v);
        for (k, v) in [
            ("Type", "notify"),
            ("User", "wharf"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("StateDirectory", "wharf"),
            ("ReadWritePaths", "/var/lib/wharf"),
            ("SystemCallFilter", "@system-service"),
            ("LockPersonality", "yes"),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
            ("EnvironmentFile", "-/etc/wharf/wharf.env"),
            ("Restart", "on-failure"),
        ] {
            assert!(has(k, v), "{unit}: no {k}={v}");
        }
        // wasmtime compiles plugins to machine code at run time.
        assert!(
            !d.iter().any(|(k, _)| k == "MemoryDenyWriteExecute"),
            "{unit}: MemoryDenyWriteExecute= stops every plugin from loading"
        );

        // systemd's own exposure score (0 = fully sandboxed, 10 = not at
        // all; 2.0 and below is "OK").
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20"])
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{unit}: exposure above 2.0:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let d = directives("wharf.service");
    assert!(d.contains(&("ExecReload".into(), "/bin/kill -HUP $MAINPID".into())));
    // A worker takes no SIGHUP (its default action would stop it).
    assert!(
        !directives("wharf-worker.service")
            .iter()
            .any(|(k, _)| k == "ExecReload")
    );
}

#[test]
fn verify_reports_a_mistyped_directive() {
    // The test above relies on verify's output being empty only for a
    // clean unit: a misspelt key must show.
    let dir = tempfile::tempdir().unwrap();
    let copy = with_built_binary("wharf.service", dir.path());
    let text = std::fs::read_to_string(&copy)
        .unwrap()
        .replace("ProtectSystem=strict", "ProtectSystm=strict");
    std::fs::write(&copy, text).unwrap();
    let (_, out) = verify(&copy);
    assert!(out.contains("ProtectSystm"), "{out}");
}

/// `packaging/compose.yaml` as JSON (python3-yaml: the workspace has no
/// YAML crate, and compose itself is not installed here).
fn compose() -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(repo_file("packaging/compose.yaml"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "packaging/compose.yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_compose_example_runs_the_topology_of_docs_scaling() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    let env = |name: &str, key: &str| -> Option<String> {
        let e = &services[name]["environment"];
        e[key].as_str().map(str::to_string)
    };
    let command = |name: &str| -> Vec<String> {
        // `command:` as a list, e.g. ["serve"].
        services[name]["command"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let wharf: Vec<&String> = services
        .keys()
        .filter(|k| env(k, "WHARF_DB").is_some())
        .collect();
    let runs = |k: &str, what: &str| command(k).first().map(String::as_str) == Some(what);
    let nodes: Vec<&&String> = wharf.iter().filter(|k| runs(k, "serve")).collect();
    let workers: Vec<&&String> = wharf.iter().filter(|k| runs(k, "worker")).collect();
    assert!(nodes.len() >= 2, "two API nodes at least: {wharf:?}");
    assert!(!workers.is_empty(), "a worker: {wharf:?}");

    // Every Wharf process: the same store, broker and data directory.
    let first = wharf[0];
    for k in &wharf {
        for key in ["WHARF_DB", "WHARF_BROKER", "WHARF_DATA_DIR"] {
            assert_eq!(env(k, key), env(first, key), "{k}: {key}");
        }
        let data_dir = env(k, "WHARF_DATA_DIR").unwrap();
        let volumes: Vec<&str> = services[k.as_str()]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            volumes.contains(&format!("wharf-data:{data_dir}").as_str()),
            "{k}: {volumes:?}"
        );
    }
    for n in &nodes {
        assert_eq!(env(n, "WHARF_WORKERS").as_deref(), Some("0"), "{n}");
    }
    assert!(c["volumes"]["wharf-data"].is_object() || c["volumes"]["wharf-data"].is_null());
    assert!(c["volumes"].as_object().unwrap().contains_key("wharf-data"));

    // MongoDB as a replica set (transactions), RabbitMQ.
    let db = env(first, "WHARF_DB").unwrap();
    assert!(
        db.starts_with("mongodb://") && db.contains("replicaSet=rs0"),
        "{db}"
    );
    let mongo = db["mongodb://".len()..].split([':', '/']).next().unwrap();
    assert!(command(mongo).contains(&"--replSet".to_string()), "{mongo}");
    let broker = env(first, "WHARF_BROKER").unwrap();
    let mq = broker
        .rsplit('@')
        .next()
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    assert!(services.contains_key(mq), "{broker}");
}
