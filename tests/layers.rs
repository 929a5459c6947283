//! The host's layers, as Cargo sees them (docs/architecture.md, "Layers"):
//! every Wharf crate may depend only on the crates below it. `cargo
//! metadata` lists what each one actually depends on; a dependency that
//! points up or sideways fails here, naming the edge.

use std::collections::BTreeMap;
use std::process::Command;

/// Each Wharf crate and the Wharf crates it may depend on (normal, build
/// and dev dependencies alike). A crate missing here fails the test: a new
/// crate gets its place in the layers first.
const ALLOWED: &[(&str, &[&str])] = &[
    ("wharf-core", &[]),
    ("wharf-store", &["wharf-core"]),
    ("wharf-runtime", &["wharf-core", "wharf-store"]),
    // The admin client knows the API's types, not the server.
    ("wharf-cli", &["wharf-core", "wharf-store"]),
    (
        "wharf-server",
        &["wharf-core", "wharf-store", "wharf-runtime", "wharf-fuzz"],
    ),
    // The binary: the server's commands beside the admin client's.
    (
        "wharf",
        &["wharf-core", "wharf-store", "wharf-server", "wharf-cli"],
    ),
    // The guest side: plugins know the SDK and the contract, never the host.
    ("wharf-sdk", &[]),
    ("wharf-plugin-docker", &["wharf-sdk", "wharf-fuzz"]),
    ("wharf-plugin-file", &["wharf-sdk"]),
    ("wharf-test-plugin-looping", &["wharf-sdk"]),
    ("wharf-test-plugin-hungry", &["wharf-sdk"]),
    ("wharf-test-plugin-trapping", &["wharf-sdk"]),
    ("wharf-test-plugin-incompatible", &["wharf-sdk"]),
    ("wharf-test-plugin-snoop", &["wharf-sdk"]),
    // Test drivers: the e2e tests drive the binary from outside.
    ("wharf-fuzz", &[]),
    ("wharf-tests", &[]),
];

/// The edges of `meta` (cargo metadata's JSON) that go against [`ALLOWED`].
fn violations(meta: &serde_json::Value) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let packages = meta["packages"].as_array().unwrap();
    let members: Vec<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let mut wrong = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let Some(may) = allowed.get(name) else {
            wrong.push(format!("{name} has no place in ALLOWED (tests/layers.rs)"));
            continue;
        };
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            if members.contains(&dep) && !may.contains(&dep) {
                wrong.push(format!("{name} -> {dep}"));
            }
        }
    }
    wrong
}

#[test]
fn every_crate_depends_only_on_the_layers_below_it() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "wharf-core",
        "wharf-store",
        "wharf-runtime",
        "wharf-server",
        "wharf-cli",
        "wharf",
        "wharf-sdk",
    ] {
        assert!(names.contains(&name), "{name} is not a workspace member");
    }
    let wrong = violations(&meta);
    assert!(
        wrong.is_empty(),
        "dependencies against the layers: {wrong:?}"
    );
}

#[test]
fn an_upward_dependency_and_an_unplaced_crate_are_caught() {
    let dep = |name: &str| serde_json::json!({ "name": name });
    let meta = serde_json::json!({ "packages": [
        { "name": "wharf-core", "dependencies": [] },
        { "name": "wharf-store", "dependencies": [dep("wharf-core"), dep("wharf-runtime"), dep("serde")] },
        { "name": "wharf-runtime", "dependencies": [dep("wharf-store")] },
        { "name": "wharf-plugin-file", "dependencies": [dep("wharf-sdk"), dep("wharf-core")] },
        { "name": "wharf-sdk", "dependencies": [] },
        { "name": "wharf-newcomer", "dependencies": [] },
    ]});
    assert_eq!(
        violations(&meta),
        [
            "wharf-store -> wharf-runtime",
            "wharf-plugin-file -> wharf-core",
            "wharf-newcomer has no place in ALLOWED (tests/layers.rs)",
        ]
    );
}
