//! Resumable uploads under hostile load (issue 16): a writer that stalls
//! mid-chunk must not let other requests to the same upload park server
//! threads on its lock; they are refused at once, and the server keeps
//! answering.

use crate::support::*;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn many_concurrent_chunks_to_one_upload_are_refused_at_once() {
    let s = Server::start();
    let size = 4 << 20;
    let (status, v) = s.post_json("/api/v1/uploads", &json!({"size": size}));
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    // A writer that sends a few bytes of its chunk and then stalls.
    let mut stalled = std::net::TcpStream::connect(&s.addr).unwrap();
    write!(
        stalled,
        "PUT /api/v1/uploads/{id}?offset=0 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n",
        s.addr, s.token
    )
    .unwrap();
    stalled.write_all(&[7u8; 1024]).unwrap();
    stalled.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // 600 more writers of the same upload, 40 at a time.
    let started = Instant::now();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..40)
            .map(|_| {
                let (s, id) = (&s, &id);
                scope.spawn(move || {
                    (0..15)
                        .map(|_| {
                            s.http
                                .put(s.url(&format!("/api/v1/uploads/{id}?offset=0")))
                                .timeout(Duration::from_secs(30))
                                .body(vec![1u8; 1024])
                                .send()
                                .map(|r| r.status().as_u16())
                                .unwrap_or(0)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let took = started.elapsed();
    assert_eq!(statuses.len(), 600);
    assert!(
        statuses.iter().all(|&c| c == 409),
        "every concurrent writer is refused: {:?}",
        statuses.iter().filter(|&&c| c != 409).collect::<Vec<_>>()
    );
    // The server kept answering throughout.
    let r = anonymous_client().get(s.url("/healthz")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    eprintln!("600 refused writers in {took:?}");

    // Once the stalled writer goes, the upload resumes where it stands.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (_, v) = s.get_json(&format!("/api/v1/uploads/{id}"));
        let offset = v["offset"].as_u64().unwrap();
        let r = s
            .http
            .put(s.url(&format!("/api/v1/uploads/{id}?offset={offset}")))
            .body(vec![2u8; size - offset as usize])
            .send()
            .unwrap();
        if r.status().as_u16() != 409 || Instant::now() > deadline {
            break r.status().as_u16();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 200);
    let (_, v) = s.get_json(&format!("/api/v1/uploads/{id}"));
    assert_eq!(v["offset"].as_u64().unwrap(), size as u64, "{v}");
}

#[test]
fn abandoned_uploads_and_upload_sessions_expire_while_live_ones_stay() {
    let s =
        Server::start_with_plugin_dir(&env_path("WHARF_PLUGIN_DIR"), &["--upload-expiry", "3s"]);
    s.create_repo(json!({"id": "exp", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "exp/app"}}));
    let new_upload = || {
        let (status, v) = s.post_json("/api/v1/uploads", &json!({"size": 10}));
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    };
    let chunk = |id: &str, offset: u64| {
        s.http
            .put(s.url(&format!("/api/v1/uploads/{id}?offset={offset}")))
            .body(vec![1u8])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let abandoned = new_upload();
    assert_eq!(chunk(&abandoned, 0), 200);
    let live = new_upload();
    let r = s
        .http
        .post(s.url("/v2/exp/app/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let session = r.headers()["location"].to_str().unwrap().to_string();
    let r = s.http.get(s.url(&session)).send().unwrap();
    assert_eq!(r.status().as_u16(), 204, "the session exists");
    // The live upload gets a byte a second; the others nothing.
    for offset in 0..7 {
        assert_eq!(chunk(&live, offset), 200, "a live upload was removed");
        std::thread::sleep(Duration::from_secs(1));
    }
    let (status, _) = s.get_json(&format!("/api/v1/uploads/{abandoned}"));
    assert_eq!(status, 404, "an abandoned upload stayed");
    let r = s.http.get(s.url(&session)).send().unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "an abandoned upload session stayed"
    );
    let (status, v) = s.get_json(&format!("/api/v1/uploads/{live}"));
    assert_eq!(status, 200);
    assert_eq!(v["offset"], 7);
}
