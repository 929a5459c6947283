//! The sandbox holds: plugins that loop, eat memory, trap, or were built
//! against another contract version fail alone; the server goes on.

use crate::support::*;
use std::path::PathBuf;
use std::time::Duration;

/// A plugin directory holding the built-in plugins and the misbehaving ones.
fn plugin_dir_with_test_plugins(dir: &std::path::Path) -> PathBuf {
    let pd = dir.join("plugins");
    std::fs::create_dir_all(&pd).unwrap();
    for src in [
        env_path("WHARF_PLUGIN_DIR"),
        env_path("WHARF_TEST_PLUGIN_DIR"),
    ] {
        for e in std::fs::read_dir(src).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, pd.join(p.file_name().unwrap())).unwrap();
        }
    }
    pd
}

/// A server with the misbehaving plugins loaded, started with `args`; the
/// directory holding its plugins lives as long as the first value.
fn server_with_test_plugins(args: &[&str]) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let pd = plugin_dir_with_test_plugins(tmp.path());
    let s = Server::start_with_plugin_dir(&pd, args);
    (tmp, s)
}

fn registry_alive(s: &Server) {
    let r = s.http.get(s.url("/v2/")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
}

#[test]
fn misbehaving_plugins_fail_alone() {
    let (_plugins, s) = server_with_test_plugins(&[
        "--plugin-call-timeout-ms",
        "500",
        "--plugin-memory-mib",
        "64",
    ]);

    let (_, status) = s.get_json("/api/v1/status");
    let names: Vec<&str> = status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for want in ["docker", "looping-test", "hungry-test", "trapping-test"] {
        assert!(names.contains(&want), "{want} not loaded: {status}");
    }
    // Built against wharf:plugin@1.0.0: refused at load with a clear reason.
    assert!(!names.contains(&"incompatible-test"), "{status}");
    let failures = status["plugin_load_failures"].to_string();
    assert!(
        failures.contains("incompatible.wasm") && failures.contains("incompatible plugin"),
        "{failures}"
    );
    assert!(failures.contains("wharf:plugin@1.0.0"), "{failures}");

    // An endless loop is stopped at the deadline.
    let r = s.http.get(s.url("/test/looping/spin")).send().unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let body = r.text().unwrap();
    assert!(
        body.contains("looping-test") && body.contains("deadline"),
        "{body}"
    );
    registry_alive(&s);

    // Unbounded allocation hits the memory limit.
    let r = s.http.get(s.url("/test/hungry/eat")).send().unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let body = r.text().unwrap();
    assert!(
        body.contains("hungry-test") && body.contains("out of memory"),
        "{body}"
    );
    registry_alive(&s);

    // A panic is a trap; its message reaches the error.
    let r = s.http.get(s.url("/test/trapping/panic")).send().unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let body = r.text().unwrap();
    assert!(
        body.contains("trapping-test") && body.contains("crashed") && body.contains("panicked"),
        "{body}"
    );
    registry_alive(&s);
}

/// With one connection thread, every connection shares one event loop: a
/// plugin call spinning to its deadline there must not hold up the others
/// (the loop hands them to another thread while the call blocks).
#[test]
fn a_spinning_plugin_call_does_not_stall_the_connections_sharing_its_thread() {
    let (_plugins, s) = server_with_test_plugins(&[
        "--connection-threads",
        "1",
        "--plugin-call-timeout-ms",
        "5000",
    ]);
    registry_alive(&s);
    std::thread::scope(|scope| {
        let spins: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let started = std::time::Instant::now();
                    let r = reqwest::blocking::Client::new()
                        .get(s.url("/test/looping/spin"))
                        .send()
                        .unwrap();
                    (r.status().as_u16(), r.text().unwrap(), started.elapsed())
                })
            })
            .collect();
        // The spinning calls are under way: other connections, each new,
        // are answered meanwhile, long before the calls' deadline.
        std::thread::sleep(Duration::from_millis(500));
        // Anonymous: the registry's root answers its challenge.
        for (path, want) in [("/healthz", 200), ("/v2/", 401), ("/api/v1/status", 200)] {
            let started = std::time::Instant::now();
            let r = reqwest::blocking::Client::new()
                .get(s.url(path))
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), want, "{path}");
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(2500),
                "{path} waited {took:?} behind a spinning plugin call"
            );
        }
        for spin in spins {
            let (status, body, took) = spin.join().unwrap();
            assert_eq!(status, 500, "{body}");
            assert!(body.contains("deadline"), "{body}");
            // It did spin to its deadline while the others were answered.
            assert!(took >= Duration::from_millis(4500), "{took:?}");
        }
    });
    registry_alive(&s);
}

#[test]
fn parallel_calls_survive_traps() {
    let (_plugins, s) = server_with_test_plugins(&[]);
    let results: Vec<(usize, u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    let path = if i % 7 == 3 {
                        "/test/trapping/panic".to_string()
                    } else {
                        format!("/test/trapping/ok/{i}")
                    };
                    let r = s.http.get(s.url(&path)).send().unwrap();
                    (i, r.status().as_u16(), r.text().unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, status, body) in results {
        if i % 7 == 3 {
            assert_eq!(status, 500, "call {i}: {body}");
            assert!(body.contains("crashed"), "call {i}: {body}");
        } else {
            assert_eq!(
                (status, body.as_str()),
                (200, format!("ok {i}").as_str()),
                "call {i}"
            );
        }
    }
    registry_alive(&s);
}

#[test]
fn status_reports_plugins_and_storage() {
    let s = Server::start();
    let (code, v) = s.get_json("/api/v1/status");
    assert_eq!(code, 200);
    assert_eq!(v["contract"], "wharf:plugin@0.7.2");
    let docker = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "docker")
        .expect("docker plugin");
    assert_eq!(docker["content_types"][0]["name"], "docker");
    assert_eq!(v["storage"]["db"]["ok"], true);
    assert_eq!(v["storage"]["blobs"]["ok"], true);
    registry_alive(&s);
}
