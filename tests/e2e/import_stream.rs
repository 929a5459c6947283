//! Streaming imports: the content is the body of
//! `POST /api/v1/repositories/{id}/import` and is imported while it
//! arrives. Bodies cut off, stalled and canceled; parameters; what the
//! endpoint refuses. (Bad archives through this path: `import_bad_input`;
//! the CLI and the quickstart send files this way by default.)

use crate::registry_support::*;
use crate::support::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Open a raw connection and send the head of a streaming import of
/// `declared` bytes into `repo`, then `body`.
fn start_raw_import(s: &Server, repo: &str, declared: usize, body: &[u8]) -> TcpStream {
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        conn,
        "POST /api/v1/repositories/{repo}/import HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         content-type: application/x-tar\r\ncontent-length: {declared}\r\n\r\n",
        s.addr, s.token
    )
    .unwrap();
    conn.write_all(body).unwrap();
    conn.flush().unwrap();
    conn
}

/// The whole answer on `conn` (the server closes the connection after it).
fn read_answer(mut conn: TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The import tasks of the server, newest last.
fn import_tasks(s: &Server) -> Vec<Value> {
    let (status, v) = s.get_json("/api/v1/tasks?limit=1000");
    assert_eq!(status, 200, "{v}");
    let mut tasks: Vec<Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["input"]["job"] == "import-stream")
        .cloned()
        .collect();
    tasks.sort_by_key(|t| t["id"].as_str().unwrap().to_string());
    tasks
}

/// Nothing half-written is left: no temp blob, no spooled body.
fn assert_no_leftovers(s: &Server) {
    for dir in ["blobs/tmp", "spool"] {
        let path = s.data_dir().join(dir);
        let left: Vec<_> = std::fs::read_dir(&path)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{dir} holds {left:?}");
    }
}

#[test]
fn the_file_plugin_takes_its_parameters_from_the_query() {
    let s = Server::start();
    s.create_repo(json!({"id": "files", "content_type": "file"}));
    // Large enough that the host writes it on its pipelined path.
    let bytes: Vec<u8> = (0..9_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let t = s.import_stream("files", "?relative_path=a/streamed.bin", bytes.clone());
    assert_eq!(t["state"], "finished", "{t}\n{}", s.log());
    assert_eq!(t["kind"], "import", "{t}");
    let hex = hex::encode(Sha256::digest(&bytes));
    let blob = s.data_dir().join("blobs/sha256").join(&hex[..2]).join(&hex);
    assert_eq!(std::fs::read(&blob).unwrap(), bytes);
    let (_, units) = s.get_json("/api/v1/repositories/files/content?type=file");
    let text = units.to_string();
    assert!(
        text.contains("a/streamed.bin") && text.contains(&hex),
        "{units}"
    );
    assert_no_leftovers(&s);
}

#[test]
fn a_streaming_import_needs_a_length_and_a_binary_media_type() {
    let s = Server::start();
    docker_repo(&s, "app", "test/app", json!({}));
    // Chunked transfer encoding: no Content-Length.
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(vec![0u8; 4096]));
    let r = s
        .http
        .post(s.url("/api/v1/repositories/app/import"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 411);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "length-required", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resumable upload"),
        "{v}"
    );
    let r = s
        .http
        .post(s.url("/api/v1/repositories/app/import"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // Parameters belong in the JSON body when importing an upload.
    let r = s
        .http
        .post(s.url("/api/v1/repositories/app/import?relative_path=x"))
        .json(&json!({"upload_id": "0190b5a0-0000-7000-8000-000000000000"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(
        import_tasks(&s).is_empty(),
        "refused requests start no task"
    );
}

#[test]
fn a_body_cut_off_midway_fails_the_import_and_changes_nothing() {
    let s = Server::start();
    docker_repo(&s, "app", "test/app", json!({}));
    s.import_and_publish("app", &images_dir().join("busybox.tar"));
    let before = content(&s, "app");

    // Another image, cut off after most of its bytes: several layers may
    // be stored by then, but nothing may become content.
    let archive = std::fs::read(images_dir().join("many-layers.tar")).unwrap();
    let sent = archive.len() * 3 / 4;
    let conn = start_raw_import(&s, "app", archive.len(), &archive[..sent]);
    conn.shutdown(Shutdown::Write).unwrap();
    let answer = read_answer(conn);
    let t = s.wait_task(import_tasks(&s).last().expect("an import task"));
    let message = failed_with(&t);
    assert!(
        message.contains("upload") && message.contains(&format!("after {sent}")),
        "{message}\n{answer}"
    );
    assert_eq!(content(&s, "app"), before);
    assert_no_leftovers(&s);
    // The next import of the same archive, whole, works.
    let t = s.import_stream("app", "", archive);
    assert_eq!(t["state"], "finished", "{t}");
}

#[test]
fn stalled_and_waiting_streaming_imports_can_be_canceled_and_answer_at_once() {
    let s = Server::start();
    docker_repo(&s, "app", "test/app", json!({}));
    let before = content(&s, "app");
    let archive = std::fs::read(images_dir().join("busybox.tar")).unwrap();
    // Part of the body, then nothing: the import waits for the rest.
    let conn = start_raw_import(&s, "app", archive.len(), &archive[..archive.len() / 3]);
    let start = Instant::now();
    let task = loop {
        if let Some(t) = import_tasks(&s).pop()
            && t["state"] == "running"
        {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no running import"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let id = task["id"].as_str().unwrap().to_string();

    // A second import of the same repository waits for the first's lock;
    // canceled there, it answers at once too.
    let second = start_raw_import(&s, "app", archive.len(), &archive[..4096]);
    let waiting = loop {
        let tasks = import_tasks(&s);
        if let Some(t) = tasks.iter().find(|t| t["id"] != id.as_str()) {
            break t.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no second import"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(waiting["state"], "waiting", "{waiting}");
    let waiting_id = waiting["id"].as_str().unwrap();
    let (status, v) = s.post_json(&format!("/api/v1/tasks/{waiting_id}/cancel"), &json!({}));
    assert!(status < 300, "cancel: {v}");
    let asked = Instant::now();
    let answer = read_answer(second);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the waiting import's answer waited for the lock"
    );
    assert!(answer.contains("\"state\":\"canceled\""), "{answer}");

    let (status, v) = s.post_json(&format!("/api/v1/tasks/{id}/cancel"), &json!({}));
    assert!(status < 300, "cancel: {v}");
    let asked = Instant::now();
    let answer = read_answer(conn);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the answer waited for the client"
    );
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(answer.contains("\"state\":\"canceled\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert_eq!(content(&s, "app"), before);
    assert_no_leftovers(&s);
}

#[test]
fn sending_content_needs_the_upload_right_as_well() {
    let s = Server::start();
    docker_repo(&s, "app", "test/app", json!({}));
    let admin = |path: &str, body: Value, want: u16| {
        let (status, v) = s.post_json(path, &body);
        assert_eq!(status, want, "POST {path} {body}: {v}");
    };
    admin("/api/v1/roles", json!({"id": "publisher"}), 201);
    admin(
        "/api/v1/permissions/grant",
        json!({"role_id": "publisher", "resource": "/repositories", "operations": ["read", "execute"]}),
        200,
    );
    admin(
        "/api/v1/users",
        json!({"login": "pub", "name": "P", "password": "pub-password-1", "roles": ["publisher"]}),
        201,
    );
    let publisher = s.client_with_token(&s.login("pub", "pub-password-1"));
    let archive = std::fs::read(images_dir().join("busybox.tar")).unwrap();
    let send = || {
        publisher
            .post(s.url("/api/v1/repositories/app/import"))
            .header("content-type", "application/x-tar")
            .body(archive.clone())
            .send()
            .unwrap()
    };
    let r = send();
    assert_eq!(r.status().as_u16(), 403);
    let v: Value = r.json().unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/content/uploads"),
        "{v}"
    );
    assert!(
        import_tasks(&s).is_empty(),
        "a refused import starts no task"
    );
    admin(
        "/api/v1/permissions/grant",
        json!({"role_id": "publisher", "resource": "/content/uploads", "operations": ["create"]}),
        200,
    );
    let r = send();
    assert_eq!(r.status().as_u16(), 202);
    let t: Value = r.json().unwrap();
    assert_eq!(t["state"], "finished", "{t}");

    // Refused at the gate (no `execute`), the CLI still shows the reason,
    // not a connection reset in the middle of sending.
    admin("/api/v1/roles", json!({"id": "reader"}), 201);
    admin(
        "/api/v1/permissions/grant",
        json!({"role_id": "reader", "resource": "/", "operations": ["read", "create"]}),
        200,
    );
    admin(
        "/api/v1/users",
        json!({"login": "reader", "name": "R", "password": "reader-password-1", "roles": ["reader"]}),
        201,
    );
    let cli = crate::cli::Wharf::new(&s.base);
    cli.login("reader", "reader-password-1");
    let archive = images_dir().join("many-layers.tar");
    let err = cli.fails(&[
        "docker",
        "repo",
        "uploads",
        "upload",
        "--repo-id",
        "app",
        "-f",
        archive.to_str().unwrap(),
    ]);
    assert!(err.contains("lacks 'execute'"), "{err}");
}
