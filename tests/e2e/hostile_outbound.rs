//! SSRF, tried as an attacker would: a repository feed, a redirect hop, a
//! token realm or a webhook aimed at the server's own network (here:
//! loopback listeners standing in for internal services), an upstream
//! error page carrying something it should not, and a plugin's `locate`
//! pointing an on-demand download off its repository's feed. Each attack
//! must fail with nothing reaching the internal listener, and the
//! legitimate path — the operator allowing the address with
//! `--allow-outbound`, the plugin locating on the feed — must still work.

use crate::support::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Status, extra headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// A tiny HTTP server on a loopback address that records every connection
/// it accepts (the request line, or `<no request>`).
struct Internal {
    addr: std::net::SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Internal {
    fn start(ip: &str, answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Internal {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let answer = Arc::new(answer);
        let (h, st) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let mut conn = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let (h, answer) = (h.clone(), answer.clone());
                std::thread::spawn(move || {
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let line = head.lines().next().unwrap_or("").to_string();
                    h.lock().unwrap().push(if line.is_empty() {
                        "<no request>".into()
                    } else {
                        line.clone()
                    });
                    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                    let (status, headers, body) = answer(&path);
                    let mut out = format!(
                        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        reason(status),
                        body.len()
                    );
                    for (k, v) in headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let _ = conn.write_all(out.as_bytes());
                    if !line.starts_with("HEAD ") {
                        let _ = conn.write_all(&body);
                    }
                });
            }
        });
        Internal { addr, hits, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Internal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn ok(body: &[u8]) -> Answer {
    (200, vec![], body.to_vec())
}

fn redirect(to: String) -> Answer {
    (302, vec![("Location".into(), to)], vec![])
}

fn not_found() -> Answer {
    (404, vec![], b"no such thing".to_vec())
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// The bytes of one file and the PULP_MANIFEST that lists it as `a.txt`.
fn one_file() -> (Vec<u8>, Vec<u8>) {
    let data = b"bytes an internal service would serve".to_vec();
    let manifest = format!("a.txt,{},{}\n", sha256_hex(&data), data.len());
    (data, manifest.into_bytes())
}

/// A file feed serving one file under `/m/`.
fn file_feed(ip: &str) -> Internal {
    let (data, manifest) = one_file();
    Internal::start(ip, move |path| match path {
        "/m/PULP_MANIFEST" => ok(&manifest),
        "/m/a.txt" => ok(&data),
        _ => not_found(),
    })
}

/// Create a file repository syncing from `feed` and run its sync.
fn sync_file_repo(s: &Server, id: &str, feed: &str) -> Value {
    s.create_repo(json!({"id": id, "content_type": "file", "importer_config": {"feed": feed}}));
    s.repo_task(id, "sync", json!({}))
}

fn error_message(t: &Value) -> String {
    t["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn assert_refused(t: &Value, ip: &str, class: &str) {
    let msg = error_message(t);
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        msg.contains("refused")
            && msg.contains(&format!("{ip} is {class}"))
            && msg.contains(&format!("--allow-outbound {ip}/32")),
        "the task says what was refused and how to allow it: {t}"
    );
}

/// The sync mirrored the feed's one file.
fn assert_synced(s: &Server, t: &Value) {
    assert_eq!(t["state"], "finished", "{t}\n{}", s.log());
    assert_eq!(t["result"]["units_added"], 1, "{t}");
}

#[test]
fn a_feed_on_an_internal_address_is_refused_unless_allowed() {
    let internal = file_feed("127.0.0.1");
    let s = Server::start_strict(&[]);
    // The plain address and other spellings of it.
    for (i, feed) in [
        internal.url("/m/PULP_MANIFEST"),
        format!("http://2130706433:{}/m/PULP_MANIFEST", internal.port()),
        format!("http://0x7f.1:{}/m/PULP_MANIFEST", internal.port()),
        format!(
            "http://[::ffff:127.0.0.1]:{}/m/PULP_MANIFEST",
            internal.port()
        ),
    ]
    .iter()
    .enumerate()
    {
        let t = sync_file_repo(&s, &format!("probe{i}"), feed);
        assert_refused(&t, "127.0.0.1", "a loopback address");
    }
    // A metadata-service address is refused the same way (nothing listens
    // there; the policy refuses before any connect).
    let t = sync_file_repo(
        &s,
        "metadata",
        "http://169.254.169.254/latest/PULP_MANIFEST",
    );
    assert_refused(&t, "169.254.169.254", "a link-local address");
    assert!(
        internal.hits().is_empty(),
        "the internal listener was reached: {:?}",
        internal.hits()
    );

    // The operator allows it: the same sync works.
    let allowed = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--allow-outbound", "127.0.0.1/32"],
    );
    let t = sync_file_repo(&allowed, "mirror", &internal.url("/m/PULP_MANIFEST"));
    assert_synced(&allowed, &t);
    assert!(!internal.hits().is_empty());
}

#[test]
fn a_redirect_hop_to_an_internal_address_is_refused() {
    let (data, manifest) = one_file();
    // The internal service the attacker wants: on 127.0.0.1, not allowed.
    let internal = file_feed("127.0.0.1");
    let target = internal.url("/m/PULP_MANIFEST");
    // The attacker's feed, on an allowed address (127.0.0.2/32 only).
    let feed = Internal::start("127.0.0.2", move |path| match path {
        "/evil/PULP_MANIFEST" => redirect(target.clone()),
        // A legitimate redirect within the allowed address.
        "/good/PULP_MANIFEST" => redirect("/real/PULP_MANIFEST".into()),
        "/real/PULP_MANIFEST" => ok(&manifest),
        "/good/a.txt" => ok(&data),
        p if p.starts_with("/loop/") => {
            let n: u32 = p["/loop/".len()..].parse().unwrap_or(0);
            redirect(format!("/loop/{}", n + 1))
        }
        _ => not_found(),
    });
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--allow-outbound", "127.0.0.2/32"],
    );
    let t = sync_file_repo(&s, "evil", &feed.url("/evil/PULP_MANIFEST"));
    assert_refused(&t, "127.0.0.1", "a loopback address");
    assert!(
        internal.hits().is_empty(),
        "the redirect reached the internal listener: {:?}",
        internal.hits()
    );
    assert!(feed.hits().iter().any(|h| h.contains("/evil/")));

    // Endless redirects stop after ten hops.
    let t = sync_file_repo(&s, "loop", &feed.url("/loop/0"));
    assert_eq!(t["state"], "error", "{t}");
    assert!(error_message(&t).contains("more than 10 redirects"), "{t}");

    // Redirects that stay on allowed addresses are followed.
    let t = sync_file_repo(&s, "good", &feed.url("/good/PULP_MANIFEST"));
    assert_synced(&s, &t);
}

#[test]
fn a_feed_by_a_name_that_resolves_inside_is_refused_after_dns() {
    let internal = file_feed("127.0.0.1");
    let feed = format!("http://localhost:{}/m/PULP_MANIFEST", internal.port());
    let s = Server::start_strict(&[]);
    let t = sync_file_repo(&s, "byname", &feed);
    assert_refused(&t, "127.0.0.1", "a loopback address");
    assert!(
        error_message(&t).contains("request to localhost refused"),
        "{t}"
    );
    assert!(
        internal.hits().is_empty(),
        "the name's address was reached: {:?}",
        internal.hits()
    );

    let allowed = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--allow-outbound", "127.0.0.1/32"],
    );
    let t = sync_file_repo(&allowed, "byname", &feed);
    assert_synced(&allowed, &t);
}

#[test]
fn a_token_realm_on_an_internal_address_is_not_learned() {
    // The "token service" the attacker wants the server to call.
    let internal = Internal::start("127.0.0.1", |_| ok(br#"{"token":"t"}"#));
    let realm = internal.url("/token");
    // An allowed registry whose challenge names that realm.
    let feed = Internal::start("127.0.0.2", move |_| {
        (
            401,
            vec![(
                "WWW-Authenticate".into(),
                format!(r#"Bearer realm="{realm}",service="registry""#),
            )],
            b"{}".to_vec(),
        )
    });
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--allow-outbound", "127.0.0.2/32"],
    );
    s.create_repo(
        json!({"id": "realm", "content_type": "docker", "importer_config": {
        "feed": feed.url(""), "upstream_name": "library/busybox"}}),
    );
    let t = s.repo_task("realm", "sync", json!({}));
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        error_message(&t).contains("127.0.0.1 is a loopback address"),
        "{t}"
    );
    assert!(
        internal.hits().is_empty(),
        "the realm was called: {:?}",
        internal.hits()
    );
    assert!(!feed.hits().is_empty(), "the feed itself was asked");
}

#[test]
fn a_webhook_to_an_internal_address_is_refused() {
    let hook = Internal::start("127.0.0.1", |_| ok(b""));
    let s = Server::start_strict(&[]);
    for url in [
        hook.url("/hook"),
        format!("http://[::ffff:127.0.0.1]:{}/hook", hook.port()),
        "http://169.254.169.254/hook".to_string(),
        "http://10.0.0.1/hook".to_string(),
    ] {
        let (code, v) = s.post_json(
            "/api/v1/events/listeners",
            &json!({"type": "http", "url": url}),
        );
        assert_eq!(code, 400, "{url}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("refused") && msg.contains("--allow-outbound"),
            "{v}"
        );
    }
    let (_, listeners) = s.get_json("/api/v1/events/listeners");
    assert_eq!(listeners, json!([]), "nothing was registered");

    // A name that resolves inside is accepted (names are checked when they
    // resolve) but never delivered to.
    let by_name = format!("http://localhost:{}/hook", hook.port());
    let (code, v) = s.post_json(
        "/api/v1/events/listeners",
        &json!({"type": "http", "url": by_name}),
    );
    assert_eq!(code, 201, "{v}");
    s.create_repo(json!({"id": "ev", "content_type": "docker"}));
    let t = s.repo_task("ev", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    let start = Instant::now();
    while !s.log().contains("request to localhost refused") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no refusal logged:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        hook.hits().is_empty(),
        "the webhook reached the internal listener: {:?}",
        hook.hits()
    );

    // Allowed by the operator: created and delivered.
    let allowed = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--allow-outbound", "127.0.0.1/32"],
    );
    let (code, v) = allowed.post_json(
        "/api/v1/events/listeners",
        &json!({"type": "http", "url": hook.url("/hook"), "events": ["repo.published"]}),
    );
    assert_eq!(code, 201, "{v}");
    allowed.create_repo(json!({"id": "ev", "content_type": "docker"}));
    let t = allowed.repo_task("ev", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    let start = Instant::now();
    while !hook.hits().iter().any(|h| h.starts_with("POST /hook")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the allowed webhook was not delivered:\n{}",
            allowed.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_upstream_error_body_never_reaches_the_task_record() {
    const MARKER: &str = "SECRET-INTERNAL-MARKER-7f3a";
    let body = format!("<html>internal admin console: {MARKER}</html>").into_bytes();
    let upstream = Internal::start("127.0.0.1", move |_| (500, vec![], body.clone()));
    let s = Server::start();

    // The file plugin's sync.
    let t = sync_file_repo(&s, "files", &upstream.url("/m/PULP_MANIFEST"));
    assert_eq!(t["state"], "error", "{t}");
    assert!(error_message(&t).contains("500"), "{t}");
    assert!(!t.to_string().contains(MARKER), "the body leaked: {t}");

    // The docker plugin's sync.
    s.create_repo(
        json!({"id": "images", "content_type": "docker", "importer_config": {
        "feed": upstream.url(""), "upstream_name": "library/busybox"}}),
    );
    let t = s.repo_task("images", "sync", json!({}));
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        error_message(&t).contains("upstream answered 500 Internal Server Error"),
        "{t}"
    );
    assert!(!t.to_string().contains(MARKER), "the body leaked: {t}");
    let (_, tasks) = s.get_json("/api/v1/tasks");
    assert!(
        !tasks.to_string().contains(MARKER),
        "the body leaked: {tasks}"
    );
    assert!(upstream.hits().len() >= 2, "both syncs asked the upstream");
}

/// Install the test plugin `snoop` (content type `snoop-test`).
fn install_snoop(s: &Server) {
    let wasm = std::fs::read(env_path("WHARF_TEST_PLUGIN_DIR").join("snoop.wasm")).unwrap();
    let (code, v) = send(
        s.http
            .post(s.url("/api/v1/plugins"))
            .header("content-type", "application/wasm")
            .body(wasm),
    );
    assert_eq!(code, 201, "install snoop: {v}");
}

/// A listener holding every blob of `blobs` (by digest) at any path that
/// ends in its digest, counting its connections.
fn blob_server(blobs: &[(String, Vec<u8>)]) -> Internal {
    let blobs = blobs.to_vec();
    Internal::start("127.0.0.1", move |path| {
        match blobs.iter().find(|(d, _)| path.ends_with(d.as_str())) {
            Some((_, b)) => ok(b),
            None => not_found(),
        }
    })
}

#[test]
fn a_plugin_locating_an_on_demand_blob_off_its_feed_gets_nothing_fetched() {
    // One blob per case, each its own bytes: a blob fetched once would be
    // stored for every repository, hiding a later case.
    let cases = [
        "legit", "port", "userinfo", "alias", "scheme", "metadata", "file", "streamed",
    ];
    let blobs: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|c| {
            let bytes = format!("on-demand blob {c}: the right bytes").into_bytes();
            (format!("sha256:{}", sha256_hex(&bytes)), bytes)
        })
        .collect();
    let blob = |case: &str| {
        let i = cases.iter().position(|c| *c == case).unwrap();
        blobs[i].clone()
    };
    // The repository's feed, and the server the plugin points at instead:
    // both on 127.0.0.1 (which the outbound policy allows), both holding
    // the right bytes, so that a download from either would verify.
    let feed = blob_server(&blobs);
    let off = blob_server(&blobs);
    let tmp = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let (file_digest, file_bytes) = blob("file");
    let on_disk = tmp.path().join("blob");
    std::fs::write(&on_disk, &file_bytes).unwrap();

    // Where the plugin's `locate` says each blob is (none: on the feed).
    let located = |case: &str| -> Option<String> {
        let d = blob(case).0;
        let (fp, op) = (feed.port(), off.port());
        match case {
            "legit" => None,
            // Another port of the same host.
            "port" | "streamed" => Some(off.url(&format!("/blobs/{d}"))),
            // The feed's host:port as userinfo, the other port as the host.
            "userinfo" => Some(format!("http://127.0.0.1:{fp}@127.0.0.1:{op}/blobs/{d}")),
            // A name for the same address.
            "alias" => Some(format!("http://localhost:{op}/blobs/{d}")),
            // The feed's host and port in another scheme.
            "scheme" => Some(format!("https://127.0.0.1:{fp}/blobs/{d}")),
            // A metadata service (refused before any connection).
            "metadata" => Some(format!("http://169.254.169.254/latest/meta-data/{d}")),
            // A local file holding the right bytes.
            "file" => Some(format!("file://{}", on_disk.display())),
            _ => unreachable!(),
        }
    };
    let listed = |names: &[&str]| -> Value {
        names
            .iter()
            .map(|c| {
                let (d, b) = blob(c);
                let mut v = json!({"digest": d, "size": b.len()});
                if let Some(url) = located(c) {
                    v["locate"] = url.into();
                }
                v
            })
            .collect()
    };

    let s = Server::start();
    install_snoop(&s);
    let on_demand = [
        "legit", "port", "userinfo", "alias", "scheme", "metadata", "file",
    ];
    for (id, policy, names) in [
        ("lazy", "on_demand", &on_demand[..]),
        ("stream", "streamed", &["streamed"][..]),
    ] {
        s.create_repo(
            json!({"id": id, "content_type": "snoop-test", "importer_config": {
            "feed": feed.url("/"), "download_policy": policy, "blobs": listed(names)}}),
        );
        let t = s.repo_task(id, "sync", json!({}));
        assert_eq!(t["state"], "finished", "sync {id}: {t}\n{}", s.log());
        assert_eq!(t["result"]["units_added"], names.len(), "{t}");
        let t = s.repo_task(id, "publish", json!({}));
        assert_eq!(t["state"], "finished", "publish {id}: {t}\n{}", s.log());
    }
    // The syncs left every blob on the feed, fetching nothing.
    assert!(feed.hits().is_empty(), "{:?}", feed.hits());
    for (d, _) in &blobs {
        assert!(!stored(&s, d), "{d} stored by the sync");
    }

    let get = |repo: &str, d: &str| {
        let r = anonymous_client()
            .get(s.url(&format!("/test/snoop/{repo}/blobs/{d}")))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.bytes().unwrap().to_vec())
    };
    let off_feed = on_demand[1..]
        .iter()
        .map(|c| ("lazy", *c))
        .chain([("stream", "streamed")]);
    for (repo, case) in off_feed {
        let (d, bytes) = blob(case);
        // A HEAD asks the plugin for the blob's size only, must not reach
        // the located URL either (the hit counts below), and says what a
        // GET says: the blob is not to be had.
        let head = anonymous_client()
            .head(s.url(&format!("/test/snoop/{repo}/blobs/{d}")))
            .send()
            .unwrap()
            .status()
            .as_u16();
        assert!(head == 404 || head >= 500, "{case}: HEAD answered {head}");
        // Twice: a refusal leaves nothing behind that a retry would use.
        for _ in 0..2 {
            let (status, body) = get(repo, &d);
            assert!(
                status == 404 || status >= 500,
                "{case}: the off-feed blob was answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            assert_ne!(body, bytes, "{case}: the off-feed bytes were served");
        }
        assert!(!stored(&s, &d), "{case}: the off-feed blob was stored");
        assert!(
            s.log()
                .contains(&format!("located {d} off the repository's feed")),
            "{case}: the log does not say why:\n{}",
            s.log()
        );
    }
    // A connection would be counted before its answer: give a stray one
    // time to show.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        off.hits().is_empty(),
        "the off-feed server was reached: {:?}",
        off.hits()
    );
    assert!(
        feed.hits().is_empty(),
        "the feed was reached by an off-feed location: {:?}",
        feed.hits()
    );
    assert!(std::fs::read(&on_disk).is_ok_and(|b| b == file_bytes));
    assert!(!stored(&s, &file_digest));

    // The legitimate path: the blob the plugin locates on the feed serves,
    // verified and stored, with the feed asked once.
    let (d, bytes) = blob("legit");
    assert_eq!(get("lazy", &d), (200, bytes.clone()));
    assert!(stored(&s, &d), "the legitimate blob was not kept");
    assert_eq!(feed.hits(), vec![format!("GET /blobs/{d} HTTP/1.1")]);
    assert_eq!(get("lazy", &d), (200, bytes));
    assert_eq!(
        feed.hits().len(),
        1,
        "served from the store the second time"
    );
    assert!(off.hits().is_empty(), "{:?}", off.hits());
}
