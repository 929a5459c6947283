//! Events: an http listener (signed, retried while it is down) and an amqp
//! listener consumed from the `wharf.events` exchange of a real RabbitMQ.

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
