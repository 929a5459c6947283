//! Connections held open as an attacker would, against the real binary
//! (loopback only): slowloris heads, idle connections past the cap, bodies
//! that stall, a client that reads nothing of its responses, stalled TLS
//! handshakes. Each attack must be cut within its timeout while `/healthz`
//! and legitimate requests (slow but steady uploads included) keep working.
//! The limits are in docs/configuration.md ("Connections").

use crate::registry_support::*;
use crate::support::*;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Allowed lateness of a cut past its timeout (a busy test machine).
const SLACK: Duration = Duration::from_secs(2);

/// A client that opens a new connection for every request.
fn fresh_client() -> Client {
    Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

/// `/healthz` asked every 100 ms on a fresh connection until stopped;
/// returns (answered 200, failures with their reasons).
struct Prober {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Prober {
    fn start(url: String, client: Client) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.get(&url).send() {
                    Ok(r) if r.status().as_u16() == 200 => ok += 1,
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(format!("{e:?} after {:?}", started.elapsed())),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (ok, failed)
        });
        Prober { stop, thread }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A raw connection and when the server closed it.
struct Held {
    stream: TcpStream,
    opened: Instant,
    closed: Option<Instant>,
    received: Vec<u8>,
}

impl Held {
    fn open(addr: &str) -> Held {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        Held {
            stream,
            opened: Instant::now(),
            closed: None,
            received: Vec::new(),
        }
    }

    /// Read what arrived; note the close (EOF or reset) if it came.
    fn poll(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let mut buf = [0u8; 16 << 10];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break self.closed = Some(Instant::now()),
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break self.closed = Some(Instant::now()),
            }
        }
    }

    /// Send `bytes` if still open (a refused write means closed).
    fn send(&mut self, bytes: &[u8]) {
        if self.closed.is_none() && self.stream.write(bytes).is_err() {
            self.closed = Some(Instant::now());
        }
    }

    fn lived(&self) -> Duration {
        self.closed.expect("closed") - self.opened
    }
}

/// Poll `held` every 100 ms, sending `trickle(i)` to each open one,
/// until all are closed or `within` has passed.
fn until_closed(held: &mut [Held], within: Duration, trickle: impl Fn(usize) -> Vec<u8>) {
    let start = Instant::now();
    let mut round = 0;
    while held.iter().any(|h| h.closed.is_none()) && start.elapsed() < within {
        for h in held.iter_mut() {
            h.poll();
            let bytes = trickle(round);
            if !bytes.is_empty() {
                h.send(&bytes);
            }
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of one series of `/metrics` (`name{labels}`), 0 if absent.
fn metric(s: &Server, series: &str) -> f64 {
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn closed_by(s: &Server, reason: &str) -> f64 {
    metric(
        s,
        &format!("wharf_connections_closed_total{{listener=\"all\",reason=\"{reason}\"}}"),
    )
}

#[test]
fn slowloris_heads_are_cut_within_the_header_timeout_and_healthz_answers_throughout() {
    let header_timeout = Duration::from_secs(2);
    let idle_timeout = Duration::from_secs(5);
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--header-timeout", "2s", "--idle-timeout", "5s"],
    );
    let prober = Prober::start(s.url("/healthz"), fresh_client());

    // 400 connections, each sending a request head one header line every
    // 100 ms, never finishing it.
    let mut held: Vec<Held> = (0..400).map(|_| Held::open(&s.addr)).collect();
    for h in &mut held {
        h.send(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n");
    }
    // One keep-alive connection after a full request: idle, then a slow
    // second head (the header timeout counts from its first byte).
    let mut keep = Held::open(&s.addr);
    keep.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    // Another one that stays idle: closed at the idle timeout, not before.
    let mut idle = Held::open(&s.addr);
    idle.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");

    let attack = Instant::now();
    until_closed(
        &mut held,
        header_timeout + SLACK + Duration::from_secs(3),
        |round| format!("X-Slow-{round}: 1\r\n").into_bytes(),
    );
    let lived: Vec<Duration> = held
        .iter()
        .filter_map(|h| h.closed.map(|_| h.lived()))
        .collect();
    assert_eq!(
        lived.len(),
        held.len(),
        "some slowloris connections were never cut"
    );
    let longest = lived.iter().max().unwrap();
    assert!(
        *longest <= header_timeout + SLACK,
        "a slowloris connection lived {longest:?} with a 2 s header timeout"
    );
    assert!(
        *lived.iter().min().unwrap() >= header_timeout - Duration::from_millis(100),
        "cut before the header timeout"
    );
    assert!(
        held.iter().all(|h| h.received.is_empty()),
        "no answer to an unfinished head"
    );
    eprintln!(
        "slowloris: 400 connections cut after {:?}..{longest:?} ({:?} after the attack began)",
        lived.iter().min().unwrap(),
        attack.elapsed()
    );

    // The keep-alive connection: its first answer, then a second head that
    // never ends, cut within the header timeout of its first byte.
    keep.poll();
    assert!(
        String::from_utf8_lossy(&keep.received).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&keep.received)
    );
    let second = Instant::now();
    keep.send(b"GET /healthz HTTP/1.1\r\n");
    until_closed(
        std::slice::from_mut(&mut keep),
        header_timeout + SLACK + Duration::from_secs(1),
        |_| b"X: y\r\n".to_vec(),
    );
    let took = keep.closed.expect("the slow second head was never cut") - second;
    assert!(
        took <= header_timeout + SLACK,
        "second head cut after {took:?}"
    );

    // The idle one outlived the header timeout and is closed at the idle timeout.
    until_closed(
        std::slice::from_mut(&mut idle),
        idle_timeout + SLACK,
        |_| Vec::new(),
    );
    let lived = idle.lived();
    assert!(
        lived >= idle_timeout - Duration::from_millis(100) && lived <= idle_timeout + SLACK,
        "an idle keep-alive connection lived {lived:?} with a 5 s idle timeout"
    );

    let (ok, failed) = prober.finish();
    assert!(
        failed.is_empty(),
        "/healthz failed during the attack: {failed:?}"
    );
    assert!(ok >= 20, "only {ok} /healthz answers during the attack");
    // A legitimate request still works, and the cuts are counted.
    let (status, v) = s.get_json("/api/v1/repositories");
    assert_eq!(status, 200, "{v}");
    assert!(closed_by(&s, "header-timeout") >= 401.0);
    assert!(closed_by(&s, "idle-timeout") >= 1.0);
}

#[test]
fn past_the_connection_cap_new_connections_get_503_with_retry_after_until_the_idle_ones_are_cut() {
    let header_timeout = Duration::from_secs(6);
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--max-connections", "20", "--header-timeout", "6s"],
    );
    // 40 connections that send nothing: up to 20 are held (the test
    // client's own kept-alive connection may be one of them), the rest are
    // answered 503 once they have sent their request head, or after 1 s.
    let mut held: Vec<Held> = (0..40).map(|_| Held::open(&s.addr)).collect();
    std::thread::sleep(Duration::from_millis(1500));
    for h in &mut held {
        h.poll();
    }
    let refused: Vec<&Held> = held.iter().filter(|h| !h.received.is_empty()).collect();
    assert!(
        refused.len() >= 20,
        "only {} of 40 refused with a cap of 20",
        refused.len()
    );
    for h in &refused {
        let text = String::from_utf8_lossy(&h.received);
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nRetry-After: 5\r\n"), "{text}");
        assert!(h.closed.is_some(), "a refused connection stays open");
    }

    // Connections the test client closed late (after `Server::ready`) may
    // have freed a slot or two: 5 more silent ones fill them, and some are
    // refused.
    let mut more: Vec<Held> = (0..5).map(|_| Held::open(&s.addr)).collect();
    std::thread::sleep(Duration::from_millis(1300));
    for h in &mut more {
        h.poll();
    }
    assert!(
        more.iter().any(|h| !h.received.is_empty()),
        "5 more connections and the cap of 20 is not reached"
    );
    held.extend(more);
    // A fresh request while the cap is full: the same 503, as documented.
    let r = fresh_client().get(s.url("/healthz")).send().unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(header(&r, "retry-after"), "5");
    assert!(r.text().unwrap().contains("too many open connections"));

    // The held ones are cut at the header timeout; then a fresh request works.
    until_closed(&mut held, header_timeout + SLACK + SLACK, |_| Vec::new());
    assert!(
        held.iter().all(|h| h.closed.is_some()),
        "idle connections were never cut"
    );
    let longest = held.iter().map(Held::lived).max().unwrap();
    assert!(longest <= header_timeout + SLACK, "{longest:?}");
    let start = Instant::now();
    let status = loop {
        let status = fresh_client()
            .get(s.url("/api/v1/status"))
            .send()
            .map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) || start.elapsed() > Duration::from_secs(3) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.unwrap(), 200);
    assert!(closed_by(&s, "over-capacity") >= 21.0);
}

/// A request sent over a raw connection in `pieces`, one every `gap`;
/// returns the answer's status line and body.
fn send_slowly(addr: &str, head: &str, pieces: &[&[u8]], gap: Duration) -> (String, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    for p in pieces {
        std::thread::sleep(gap);
        c.write_all(p).unwrap();
    }
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn slow_but_steady_bodies_succeed_and_stalled_ones_and_non_readers_are_cut() {
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--body-timeout", "2s", "--header-timeout", "2s"],
    );
    let auth = format!("Authorization: Bearer {}\r\n", s.token);

    // A resumable upload's chunk, 64 KiB in 4 KiB pieces 400 ms apart:
    // 6.4 s in all, longer than every timeout, and never cut.
    let (status, up) = s.post_json("/api/v1/uploads", &json!({"size": 65536}));
    assert_eq!(status, 201, "{up}");
    let id = up["id"].as_str().unwrap();
    let piece = vec![b'w'; 4096];
    let pieces: Vec<&[u8]> = (0..16).map(|_| piece.as_slice()).collect();
    let head = format!(
        "PUT /api/v1/uploads/{id}?offset=0 HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 65536\r\nConnection: close\r\n\r\n"
    );
    let started = Instant::now();
    let (status, body) = send_slowly(&s.addr, &head, &pieces, Duration::from_millis(400));
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(started.elapsed() >= Duration::from_secs(6));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["offset"], 65536, "{v}");

    // A streaming import of a docker save, at a steady ~500 KiB/s.
    docker_repo(&s, "slow", "test/busybox", json!({}));
    let archive = std::fs::read(images_dir().join("busybox.tar")).unwrap();
    let pieces: Vec<&[u8]> = archive.chunks(128 << 10).collect();
    let head = format!(
        "POST /api/v1/repositories/slow/import HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        archive.len()
    );
    let (status, body) = send_slowly(&s.addr, &head, &pieces, Duration::from_millis(250));
    assert_eq!(status, "HTTP/1.1 202 Accepted", "{body}");
    let task: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(task["state"], "finished", "{task}");

    // A chunk that stops half-way: failed after the body timeout, closed.
    let (status, up) = s.post_json("/api/v1/uploads", &json!({"size": 8192}));
    assert_eq!(status, 201, "{up}");
    let id = up["id"].as_str().unwrap();
    let head = format!(
        "PUT /api/v1/uploads/{id}?offset=0 HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 8192\r\n\r\n"
    );
    let half = vec![b'h'; 4096];
    let started = Instant::now();
    let (status, body) = send_slowly(&s.addr, &head, &[half.as_slice()], Duration::ZERO);
    let took = started.elapsed();
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{body}");
    assert!(body.contains("--body-timeout"), "{body}");
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(2) + SLACK,
        "a stalled body was cut after {took:?} with a 2 s body timeout"
    );

    // A client that asks for blobs (pipelined) and reads nothing of them:
    // cut once its writes have waited for the body timeout.
    let published = s.repo_task("slow", "publish", json!({}));
    assert_eq!(published["state"], "finished", "{published}");
    let manifest: Value = s
        .http
        .get(s.url("/v2/test/busybox/manifests/latest"))
        .header("Accept", DOCKER_MANIFEST)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let layer_size = manifest["layers"][0]["size"].as_u64().unwrap();
    let get = format!("GET /v2/test/busybox/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut reader = TcpStream::connect(&s.addr).unwrap();
    for _ in 0..256 {
        reader.write_all(get.as_bytes()).unwrap();
    }
    let before = closed_by(&s, "send-timeout");
    std::thread::sleep(Duration::from_secs(2) + SLACK + Duration::from_secs(1));
    assert!(
        closed_by(&s, "send-timeout") > before,
        "a client reading nothing was not cut"
    );
    reader
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    let whole = 256 * layer_size;
    assert!(
        got < whole,
        "got all {got} bytes: the connection was not cut"
    );
    // The server goes on.
    let (status, _) = s.get_json("/api/v1/status");
    assert_eq!(status, 200);
}

#[test]
fn stalled_tls_handshakes_are_cut_and_take_no_slot_while_silent() {
    let tmp = scratch();
    let (cert, key) = (tmp.path().join("c.pem"), tmp.path().join("k.pem"));
    must(
        std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let registry = format!("127.0.0.1:{}", free_port());
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &[
            "--registry-listen",
            &registry,
            "--registry-tls-cert",
            cert.to_str().unwrap(),
            "--registry-tls-key",
            key.to_str().unwrap(),
            "--tls-handshake-timeout",
            "2s",
            "--max-tls-handshakes",
            "4",
        ],
    );
    let https = Client::builder()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let prober = Prober::start(format!("https://{registry}/healthz"), https.clone());
    // 200 connections that send nothing (no handshake slot taken) and 3
    // that start a handshake and stall (3 of the 4 slots).
    let mut held: Vec<Held> = (0..203).map(|_| Held::open(&registry)).collect();
    for h in held.iter_mut().take(3) {
        h.send(&[0x16, 0x03, 0x01, 0x02, 0x00]);
    }
    until_closed(
        &mut held,
        Duration::from_secs(2) + SLACK + Duration::from_secs(2),
        |_| Vec::new(),
    );
    assert!(
        held.iter().all(|h| h.closed.is_some()),
        "stalled handshakes were never cut"
    );
    let longest = held.iter().map(Held::lived).max().unwrap();
    assert!(
        longest <= Duration::from_secs(2) + SLACK,
        "a stalled handshake lived {longest:?}"
    );
    let (ok, failed) = prober.finish();
    assert!(
        failed.is_empty(),
        "https /healthz failed during the attack: {failed:?}"
    );
    assert!(ok >= 10, "only {ok} https /healthz answers");
    let failures = metric(
        &s,
        "wharf_tls_handshake_failures_total{listener=\"registry\"}",
    );
    assert!(failures >= 203.0, "{failures}");
    let r = https.get(format!("https://{registry}/v2/")).send().unwrap();
    assert!(r.status().as_u16() < 500, "{}", r.status());
}

/// An import that holds its slot: the head and the first bytes of
/// `archive` sent, the rest never (until the stream is dropped).
fn held_import(s: &Server, token: &str, repo: &str, archive: &[u8]) -> TcpStream {
    let mut c = TcpStream::connect(&s.addr).unwrap();
    let head = format!(
        "POST /api/v1/repositories/{repo}/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        archive.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&archive[..512]).unwrap();
    c
}

/// A whole streaming import as `token`: (status, Retry-After, body).
fn import_as(s: &Server, token: &str, repo: &str, archive: &[u8]) -> (u16, String, Value) {
    let r = s
        .client_with_token(token)
        .post(s.url(&format!("/api/v1/repositories/{repo}/import")))
        .header("content-type", "application/x-tar")
        .body(archive.to_vec())
        .send()
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), retry, r.json().unwrap_or(Value::Null))
}

#[test]
fn streaming_imports_past_the_per_user_and_per_node_caps_get_429_while_pulls_go_on() {
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &[
            "--max-stream-imports",
            "2",
            "--max-stream-imports-per-user",
            "1",
        ],
    );
    for login in ["jdev", "carol"] {
        let body = json!({"login": login, "name": login, "password": "a-long-password",
            "roles": ["super-users"]});
        let (status, v) = s.post_json("/api/v1/users", &body);
        assert_eq!(status, 201, "{v}");
    }
    let jdev = s.login("jdev", "a-long-password");
    let carol = s.login("carol", "a-long-password");
    let archive = std::fs::read(images_dir().join("busybox.tar")).unwrap();
    // One repository per import: imports of one repository wait for each
    // other whatever their slots.
    for (id, name) in [
        ("held", "test/held"),
        ("jdevs", "test/jdevs"),
        ("carols", "test/carols"),
    ] {
        docker_repo(&s, id, name, json!({}));
    }
    docker_repo(&s, "served", "test/served", json!({}));
    s.import_and_publish("served", &images_dir().join("busybox.tar"));
    let pull = || {
        let r = request(&s, "GET", "/v2/test/served/manifests/latest", &[]);
        r.status().as_u16()
    };

    // admin holds one import: a second one of admin's is refused.
    let admin_held = held_import(&s, &s.token, "held", &archive);
    std::thread::sleep(Duration::from_millis(500));
    let (status, retry, v) = import_as(&s, &s.token, "held", &archive);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (429, Some("too-many-imports")),
        "{v}"
    );
    assert!(
        retry.parse::<u64>().is_ok_and(|n| n >= 1),
        "Retry-After {retry:?}"
    );
    assert!(message(&v).contains("--max-stream-imports-per-user"), "{v}");
    // Another user may still import, and holds the node's second slot.
    let jdev_held = held_import(&s, &jdev, "jdevs", &archive);
    std::thread::sleep(Duration::from_millis(500));
    // The node is full: a third user is refused, saying so.
    let (status, _, v) = import_as(&s, &carol, "carols", &archive);
    assert_eq!(status, 429, "{v}");
    assert!(message(&v).contains("(--max-stream-imports)"), "{v}");
    // Pulls are answered throughout (registry calls have their own share
    // of plugin instances).
    assert_eq!(pull(), 200);

    // A dropped import gives its slot back: carol's import then runs.
    drop(admin_held);
    let started = Instant::now();
    let task = loop {
        let (status, _, v) = import_as(&s, &carol, "carols", &archive);
        if status == 202 {
            break v;
        }
        assert_eq!(status, 429, "{v}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the slot never came back"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(task["state"], "finished", "{task}");
    drop(jdev_held);
    assert_eq!(pull(), 200);
}
