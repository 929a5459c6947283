//! Events: an http listener (signed, retried while it is down), an amqp
//! listener consumed from the `wharf.events` exchange of a real RabbitMQ, and
//! email listeners delivering to a real SMTP server (aiosmtpd) started here:
//! the message read back from its maildir, the SMTP password write-only, and
//! an internal SMTP host the operator did not allow never connected to.

use crate::support::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

/// A received POST: its headers (lowercase names) and body.
type Post = (Vec<(String, String)>, Vec<u8>);

/// Accept POSTs on `listener`, answer 200, and pass each on.
fn receive_posts(listener: std::net::TcpListener, tx: mpsc::Sender<Post>) {
    std::thread::spawn(move || {
        for conn in listener.incoming().take(200) {
            let Ok(conn) = conn else { continue };
            let mut reader = BufReader::new(conn);
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            let mut conn = reader.into_inner();
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx.send((headers, body)).is_err() {
                return;
            }
        }
    });
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

#[test]
fn http_listener_gets_signed_events_even_after_being_down() {
    let s = Server::start();
    // Reserve a port, then leave it closed: the listener is down.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (code, l) = s.post_json("/api/v1/events/listeners", &json!({"type": "http", "url": url, "secret": "s3cret", "events": ["task.*", "repo.published"]}));
    assert_eq!(code, 201, "{l}");
    assert_eq!(l["secret"], "********", "secrets are never shown back");

    s.create_repo(json!({"id": "ev", "content_type": "docker"}));
    let t = s.repo_task("ev", "publish", json!({}));
    assert_eq!(
        t["state"], "finished",
        "the task does not wait for the listener: {t}"
    );

    // The receiver comes back; retries deliver what was missed.
    std::thread::sleep(Duration::from_millis(700));
    let (tx, rx) = mpsc::channel();
    receive_posts(
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
        tx,
    );
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (h, body) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("events were not delivered after the listener came back");
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(&body);
        assert_eq!(
            header(&h, "x-wharf-signature"),
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(header(&h, "x-wharf-event"), e["type"].as_str().unwrap());
        seen.push(e["type"].as_str().unwrap().to_string());
        assert_eq!(e["data"]["repository"], "ev", "{e}");
    }
    seen.sort();
    assert_eq!(seen, ["repo.published", "task.finished"]);
    // Filters hold: an import failure sends task.failed but no repo event.
    let (_, listeners) = s.get_json("/api/v1/events/listeners");
    assert_eq!(listeners.as_array().unwrap().len(), 1);
    let r = s
        .http
        .delete(s.url(&format!(
            "/api/v1/events/listeners/{}",
            l["id"].as_str().unwrap()
        )))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

#[test]
fn amqp_listener_publishes_to_the_topic_exchange() {
    let url = std::env::var("WHARF_TEST_AMQP_URL").expect("WHARF_TEST_AMQP_URL");
    let queue = format!("wharf.test.events.{}", std::process::id());
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--broker", &url, "--broker-queue", &queue],
    );
    let (code, l) = s.post_json("/api/v1/events/listeners", &json!({"type": "amqp"}));
    assert_eq!(code, 201, "{l}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let consumer = rt.block_on(async {
        use lapin::options::*;
        let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.exchange_declare(
            "wharf.events".into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        ch.queue_bind(
            q.name().clone(),
            "wharf.events".into(),
            "repo.*".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        let c = ch
            .basic_consume(
                q.name().clone(),
                "test".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        (conn, ch, c)
    });

    s.create_repo(json!({"id": "amq", "content_type": "docker"}));
    s.import_and_publish("amq", &images_dir().join("busybox.tar"));
    let keys = rt.block_on(async {
        use futures::StreamExt;
        let (_conn, _ch, mut c) = consumer;
        let mut keys = Vec::new();
        while keys.len() < 2 {
            let d = tokio::time::timeout(Duration::from_secs(30), c.next())
                .await
                .expect("no event on wharf.events")
                .unwrap()
                .unwrap();
            let e: Value = serde_json::from_slice(&d.data).unwrap();
            assert_eq!(e["type"].as_str().unwrap(), d.routing_key.as_str());
            keys.push(d.routing_key.to_string());
        }
        keys
    });
    assert_eq!(
        keys,
        ["repo.imported", "repo.published"],
        "only repo.* was bound"
    );
}

/// A real SMTP server (Debian's python3-aiosmtpd) on 127.0.0.1 that keeps
/// every message it accepts in a maildir.
struct Smtpd {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Smtpd {
    fn start() -> Smtpd {
        let dir = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("aiosmtpd.log")).unwrap();
            let mut child = std::process::Command::new("/usr/bin/python3")
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(dir.path().join("mail"))
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .expect(
                    "start aiosmtpd (Debian package python3-aiosmtpd; scripts/test.sh installs it)",
                );
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Smtpd { child, port, dir };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "aiosmtpd did not start: {}",
            std::fs::read_to_string(dir.path().join("aiosmtpd.log")).unwrap_or_default()
        );
    }

    /// The messages delivered so far, as text.
    fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("mail").join("new");
        let mut files: Vec<_> = std::fs::read_dir(&new)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    }

    /// Wait for `n` messages.
    fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} messages arrived",
                m.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message's header `name` (unfolded), or "".
fn mail_header(message: &str, name: &str) -> String {
    let head = message.split("\n\n").next().unwrap_or("");
    let mut value: Option<String> = None;
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
            Some(_) => break,
            None => {
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case(name)
                {
                    value = Some(v.trim().to_string());
                }
            }
        }
    }
    value.unwrap_or_default()
}

/// A message's body, decoded from its `Content-Transfer-Encoding` (lettre
/// picks quoted-printable for lines past 76 characters).
fn mail_body(message: &str) -> String {
    let m = message.replace("\r\n", "\n");
    let raw = m
        .split_once("\n\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    match mail_header(message, "Content-Transfer-Encoding")
        .to_ascii_lowercase()
        .as_str()
    {
        "quoted-printable" => {
            let joined = raw.replace("=\n", "");
            let b = joined.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (b[i], hex) {
                    (b'=', Some(byte)) => {
                        out.push(byte);
                        i += 3;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        "base64" => {
            use base64::Engine as _;
            let compact: String = raw.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap();
            String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
        }
        _ => raw,
    }
}

/// `wharf ARGS` against `s` with the config home `home`; its standard output.
fn wharf_cli(s: &Server, home: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env_path("WHARF_BIN"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("WHARF_SERVER", &s.base)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wharf {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn email_listener_mails_events_through_a_real_smtp_server() {
    let smtpd = Smtpd::start();
    let s = Server::start();
    let (code, l) = s.post_json(
        "/api/v1/events/listeners",
        &json!({"type": "email", "to": ["ops@example.org", "Dev Team <dev@example.org>"],
                "from": "Wharf <wharf@example.org>", "host": "127.0.0.1", "port": smtpd.port,
                "security": "none", "events": ["repo.published", "task.failed"]}),
    );
    assert_eq!(code, 201, "{l}");
    assert_eq!(l["type"], "email", "{l}");
    assert_eq!(l["port"], smtpd.port, "{l}");
    assert_eq!(l["security"], "none", "{l}");

    s.create_repo(json!({"id": "mail-ev", "content_type": "docker"}));
    let t = s.repo_task("mail-ev", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    let messages = smtpd.wait_for(1);
    let m = &messages[0];
    let subject = mail_header(m, "Subject");
    let version = &t["result"]["version"];
    let want = match version.as_u64() {
        Some(v) => format!("[wharf] repository mail-ev published (version {v})"),
        None => "[wharf] repository mail-ev published".into(),
    };
    assert_eq!(subject, want, "{m}");
    assert_eq!(
        mail_header(m, "X-RcptTo"),
        "ops@example.org, dev@example.org",
        "the envelope has both recipients: {m}"
    );
    let to = mail_header(m, "To");
    assert!(
        to.contains("ops@example.org") && to.contains("\"Dev Team\" <dev@example.org>"),
        "{m}"
    );
    assert_eq!(mail_header(m, "X-MailFrom"), "wharf@example.org", "{m}");
    assert_eq!(mail_header(m, "X-Wharf-Event"), "repo.published", "{m}");
    assert!(!mail_header(m, "Date").is_empty(), "{m}");
    let body = mail_body(m);
    let task_id = t["id"].as_str().unwrap();
    for line in [
        "Repository mail-ev published".to_string(),
        "Repository: mail-ev\n".into(),
        format!("Task:       {task_id}\n"),
        "Kind:       publish\n".into(),
        "State:      finished\n".into(),
        "Event:      repo.published\n".into(),
    ] {
        assert!(body.contains(&line), "{line:?} not in the body:\n{m}");
    }
    assert!(body.contains("\nTime:       20"), "{m}");

    // A failed task: its error in the body, "failed" in the subject.
    let failed = s.import_stream("mail-ev", "", b"not a docker save".to_vec());
    assert_eq!(failed["state"], "error", "{failed}");
    let messages = smtpd.wait_for(2);
    let m = messages
        .iter()
        .find(|m| mail_header(m, "X-Wharf-Event") == "task.failed")
        .unwrap_or_else(|| panic!("no task.failed message: {messages:?}"));
    assert_eq!(
        mail_header(m, "Subject"),
        "[wharf] task import of repository mail-ev failed",
        "{m}"
    );
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        mail_body(m).contains(&format!(
            "Error:      {}",
            message.chars().take(40).collect::<String>()
        )),
        "{m}"
    );
    assert_eq!(smtpd.messages().len(), 2, "only the filtered events");
}

/// The SMTP password is write-only: masked in the API's answers, the CLI's
/// list and `wharf db export`, kept by `--include-secrets`.
#[test]
fn email_listener_password_is_write_only() {
    const PASSWORD: &str = "smtp-secret-pw-5";
    let mut s = Server::start();
    let home = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    wharf_cli(
        &s,
        home.path(),
        &["login", "-u", "admin", "-p", ADMIN_PASSWORD],
    );
    let out = wharf_cli(
        &s,
        home.path(),
        &[
            "event",
            "listener",
            "create",
            "--type",
            "email",
            "--to",
            "ops@example.org",
            "--to",
            "dev@example.org",
            "--from",
            "wharf@example.org",
            "--smtp-host",
            "smtp.example.invalid",
            "--smtp-security",
            "tls",
            "--smtp-username",
            "wharf",
            "--smtp-password",
            PASSWORD,
            "--event",
            "plugin.removed",
            "--output",
            "json",
        ],
    );
    assert!(!out.contains(PASSWORD), "{out}");
    let created: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(created["password"], "********", "{created}");
    assert_eq!(
        created["port"], 465,
        "the default port of implicit TLS: {created}"
    );
    let table = wharf_cli(&s, home.path(), &["event", "listener", "list"]);
    for part in [
        "TARGET",
        "mail to ops@example.org, dev@example.org",
        "via smtp.example.invalid:465 (tls, user wharf)",
        "plugin.removed",
    ] {
        assert!(table.contains(part), "{part:?} not in\n{table}");
    }
    assert!(!table.contains(PASSWORD), "{table}");
    let (code, body) = s.get_json("/api/v1/events/listeners");
    assert_eq!(code, 200);
    assert!(!body.to_string().contains(PASSWORD), "{body}");
    assert_eq!(body[0]["password"], "********", "{body}");
    assert_eq!(body[0]["username"], "wharf", "{body}");
    let json = wharf_cli(
        &s,
        home.path(),
        &["event", "listener", "list", "--output", "json"],
    );
    assert!(
        !json.contains(PASSWORD) && json.contains("********"),
        "{json}"
    );

    // The mask is not a password; credentials never go out in clear.
    for (body, why) in [
        (
            json!({"type": "email", "to": ["a@example.org"], "from": "w@example.org",
                   "host": "smtp.example.invalid", "username": "u", "password": "********"}),
            "the mask as a password",
        ),
        (
            json!({"type": "email", "to": ["a@example.org"], "from": "w@example.org",
                   "host": "smtp.example.invalid", "security": "none", "username": "u", "password": "p"}),
            "credentials without TLS to another host",
        ),
        (
            json!({"type": "email", "to": ["not an address"], "from": "w@example.org",
                   "host": "smtp.example.invalid"}),
            "a recipient that is no address",
        ),
        (
            json!({"type": "email", "to": [], "from": "w@example.org", "host": "smtp.example.invalid"}),
            "no recipient",
        ),
    ] {
        let (code, v) = s.post_json("/api/v1/events/listeners", &body);
        assert_eq!(code, 400, "{why}: {v}");
    }

    // The OpenAPI document describes the new type.
    let (_, doc) = s.get_json("/api/v1/openapi.json");
    let text = doc.to_string();
    assert!(
        text.contains("\"email\"") && text.contains("starttls"),
        "the listener schema names email listeners"
    );

    s.kill();
    let data = s.data_dir();
    let export = |extra: &[&str]| {
        let out = std::process::Command::new(env_path("WHARF_BIN"))
            .args(["db", "export", "--data-dir"])
            .arg(&data)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dump = export(&[]);
    assert!(
        !dump.contains(PASSWORD),
        "the default export shows the password"
    );
    assert!(dump.contains("smtp.example.invalid"), "{dump}");
    assert!(export(&["--include-secrets"]).contains(PASSWORD));
}

/// An SMTP host on an internal address the operator did not allow is never
/// connected to: refused when created as an IP literal, and at delivery when
/// a name resolves to it. Allowed, the same listener delivers.
#[test]
fn email_listener_never_reaches_internal_smtp_hosts_not_allowed() {
    // Something listens where the listener points: it must see no connection.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let strict = Server::start_strict(&[]);
    let listener = |host: &str, port: u16| {
        json!({"type": "email", "to": ["ops@example.org"], "from": "wharf@example.org",
               "host": host, "port": port, "security": "none", "events": ["repo.published"]})
    };
    for host in [
        "127.0.0.1",
        "::1",
        "[::ffff:127.0.0.1]",
        "10.0.0.1",
        "169.254.169.254",
    ] {
        let (code, v) = strict.post_json("/api/v1/events/listeners", &listener(host, trap_port));
        assert_eq!(code, 400, "{host}: {v}");
        assert!(message(&v).contains("--allow-outbound"), "{host}: {v}");
    }
    // A name is checked when it resolves, at each delivery.
    let (code, v) = strict.post_json(
        "/api/v1/events/listeners",
        &listener("localhost", trap_port),
    );
    assert_eq!(code, 201, "{v}");
    strict.create_repo(json!({"id": "trap", "content_type": "docker"}));
    let t = strict.repo_task("trap", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !strict.log().contains("request to localhost refused") {
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal logged:\n{}",
            strict.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        matches!(trap.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the refused SMTP host was connected to"
    );

    // Allowed (--allow-outbound 127.0.0.1/32), the same listener delivers.
    let smtpd = Smtpd::start();
    let allowed = Server::start();
    let (code, v) = allowed.post_json(
        "/api/v1/events/listeners",
        &listener("localhost", smtpd.port),
    );
    assert_eq!(code, 201, "{v}");
    allowed.create_repo(json!({"id": "trap", "content_type": "docker"}));
    allowed.repo_task("trap", "publish", json!({}));
    let m = smtpd.wait_for(1);
    assert!(
        mail_header(&m[0], "Subject").starts_with("[wharf] repository trap published"),
        "{}",
        m[0]
    );
}
