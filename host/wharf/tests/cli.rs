//! The binary answers `--version` and `--help` (and building this test makes
//! `cargo test --workspace` build `target/release/wharf` with the same features
//! as everything else, so the e2e tests need no second build of wasmtime).

use std::process::Command;

fn wharf(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn version_and_help() {
    let (ok, out) = wharf(&["--version"]);
    assert!(ok);
    assert_eq!(out.trim(), format!("wharf {}", env!("CARGO_PKG_VERSION")));
    let (ok, out) = wharf(&["--help"]);
    assert!(ok);
    assert!(out.contains("serve"), "{out}");
    let (ok, out) = wharf(&["serve", "--help"]);
    assert!(ok);
    for flag in ["--listen", "--data-dir", "--plugin-dir"] {
        assert!(
            out.contains(flag),
            "{flag} missing from serve --help:\n{out}"
        );
    }
}
