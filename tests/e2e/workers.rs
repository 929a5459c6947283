//! Tasks through RabbitMQ: separate `wharf worker` processes, per-repository
//! ordering across processes, and a worker killed mid-task.

use crate::support::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn amqp_url() -> String {
    std::env::var("WHARF_TEST_AMQP_URL").expect("WHARF_TEST_AMQP_URL: run through scripts/test.sh")
}

/// A queue of its own, so tests running in parallel never take each
/// other's tasks.
fn queue(name: &str) -> String {
    format!("wharf.test.{name}.{}", std::process::id())
}

struct Worker(Child);

impl Worker {
    fn start(server: &Server, queue: &str) -> Worker {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(server.data.path().join("worker.log"))
            .unwrap();
        let child = Command::new(env_path("WHARF_BIN"))
            .args([
                "worker",
                "--workers",
                "1",
                "--broker",
                &amqp_url(),
                "--broker-queue",
                queue,
                "--data-dir",
            ])
            .arg(server.data_dir())
            .arg("--plugin-dir")
            .arg(env_path("WHARF_PLUGIN_DIR"))
            .args(ALLOW_LOOPBACK)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wharf worker");
        Worker(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn brokered_server(queue: &str) -> Server {
    Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &[
            "--broker",
            &amqp_url(),
            "--broker-queue",
            queue,
            "--workers",
            "0",
        ],
    )
}

/// An upstream that answers every request with 404 after `delay`: a sync
/// against it takes at least that long, then fails.
fn slow_feed(delay: Duration) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(1000) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                std::thread::sleep(delay);
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    format!("http://{addr}")
}

fn submit(s: &Server, repo: &str, action: &str) -> Value {
    let (code, t) = s.post_json(&format!("/api/v1/repositories/{repo}/{action}"), &json!({}));
    assert_eq!(code, 202, "{t}");
    t
}

#[test]
fn a_separate_worker_process_runs_the_tasks() {
    let q = queue("separate");
    let s = brokered_server(&q);
    let w = Worker::start(&s, &q);
    s.create_repo(json!({"id": "bb", "content_type": "docker"}));
    s.import_and_publish("bb", &images_dir().join("busybox.tar"));
    let (_, tasks) = s.get_json("/api/v1/tasks?repository=bb");
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    for t in tasks {
        assert_eq!(t["state"], "finished", "{t}");
        let worker = t["worker"].as_str().unwrap();
        assert!(
            worker.ends_with(&format!("-{}", w.pid())),
            "task ran on {worker}, not the worker process"
        );
    }
    // The server sees the worker's publish.
    let start = Instant::now();
    while s
        .http
        .get(s.url("/v2/bb/tags/list"))
        .send()
        .unwrap()
        .status()
        != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "publication never reached the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interval(t: &Value) -> (String, String) {
    (
        t["started_at"].as_str().unwrap().to_string(),
        t["finished_at"].as_str().unwrap().to_string(),
    )
}

fn overlap(a: &(String, String), b: &(String, String)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn same_repository_tasks_never_overlap_across_workers() {
    let q = queue("order");
    let s = brokered_server(&q);
    let _w1 = Worker::start(&s, &q);
    let _w2 = Worker::start(&s, &q);
    let feed = slow_feed(Duration::from_millis(400));
    for id in ["a", "b"] {
        s.create_repo(json!({"id": id, "content_type": "docker", "importer_config": {"feed": feed, "upstream_name": "x"}}));
    }
    let submitted: Vec<(&str, Value)> = ["a", "a", "b", "b"]
        .into_iter()
        .map(|r| (r, submit(&s, r, "sync")))
        .collect();
    let done: Vec<(&str, Value)> = submitted
        .iter()
        .map(|(r, t)| (*r, s.wait_task(t)))
        .collect();
    for (_, t) in &done {
        assert_eq!(t["state"], "error", "the slow feed answers 404: {t}");
    }
    let (a1, a2, b1, b2) = (
        interval(&done[0].1),
        interval(&done[1].1),
        interval(&done[2].1),
        interval(&done[3].1),
    );
    assert!(
        !overlap(&a1, &a2),
        "two tasks on repository a overlapped: {a1:?} {a2:?}"
    );
    assert!(
        !overlap(&b1, &b2),
        "two tasks on repository b overlapped: {b1:?} {b2:?}"
    );
    assert!(
        a1.1 <= a2.0,
        "tasks on one repository ran out of submission order"
    );
    let cross = [(&a1, &b1), (&a1, &b2), (&a2, &b1), (&a2, &b2)]
        .iter()
        .any(|(x, y)| overlap(x, y));
    assert!(
        cross,
        "tasks on different repositories never ran in parallel: a {a1:?} {a2:?} b {b1:?} {b2:?}"
    );
}

#[test]
fn a_worker_killed_mid_task_loses_nothing() {
    let q = queue("kill");
    let s = brokered_server(&q);
    let mut w1 = Worker::start(&s, &q);
    let feed = slow_feed(Duration::from_secs(2));
    s.create_repo(json!({"id": "k", "content_type": "docker", "importer_config": {"feed": feed, "upstream_name": "x"}}));
    let t = submit(&s, "k", "sync");
    let id = t["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let (_, t) = s.get_json(&format!("/api/v1/tasks/{id}"));
        if t["state"] == "running" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "task never started: {t}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    w1.kill();
    // Another worker gets the unacknowledged task and runs it to its end.
    let w2 = Worker::start(&s, &q);
    let t = s.wait_task(&t);
    assert!(
        t["worker"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-{}", w2.pid())),
        "{t}"
    );
    assert_eq!(t["state"], "error", "{t}");
    // The repository is not left locked, and nothing partial is visible.
    s.import_and_publish("k", &images_dir().join("busybox.tar"));
    let (_, repo) = s.get_json("/api/v1/repositories/k");
    assert!(
        repo["content_counts"]["tag"].as_u64().unwrap() >= 1,
        "{repo}"
    );
}

#[test]
fn cancel_stops_waiting_and_running_tasks_and_commits_nothing() {
    let s = Server::start_with_plugin_dir(&env_path("WHARF_PLUGIN_DIR"), &["--workers", "1"]);
    let feed = slow_feed(Duration::from_millis(1500));
    s.create_repo(json!({"id": "c", "content_type": "docker", "importer_config": {"feed": feed, "upstream_name": "x"}}));
    let running = submit(&s, "c", "sync");
    let waiting = submit(&s, "c", "publish");
    let start = Instant::now();
    while s
        .get_json(&format!(
            "/api/v1/tasks/{}",
            running["id"].as_str().unwrap()
        ))
        .1["state"]
        != "running"
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "sync never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for t in [&waiting, &running] {
        let (code, v) = s.post_json(
            &format!("/api/v1/tasks/{}/cancel", t["id"].as_str().unwrap()),
            &json!({}),
        );
        assert_eq!(code, 202, "{v}");
    }
    let (w, r) = (s.wait_task(&waiting), s.wait_task(&running));
    assert_eq!(w["state"], "canceled", "{w}");
    assert!(
        w["started_at"].is_null()
            || w["error"]["message"]
                .as_str()
                .unwrap()
                .contains("before it started"),
        "{w}"
    );
    assert_eq!(r["state"], "canceled", "{r}");
    let (_, repo) = s.get_json("/api/v1/repositories/c");
    assert_eq!(
        repo["content_counts"],
        json!({}),
        "nothing committed: {repo}"
    );
    let (code, _) = s.post_json(
        &format!("/api/v1/tasks/{}/cancel", r["id"].as_str().unwrap()),
        &json!({}),
    );
    assert_eq!(code, 409, "an ended task cannot be canceled");
}
