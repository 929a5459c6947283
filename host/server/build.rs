//! Embeds the built-in plugins in the server, so that one `wharf` binary
//! serves `docker pull` with no other file: `docker.wasm` and `file.wasm`
//! from `WHARF_EMBED_PLUGINS` (a directory), else from the workspace's
//! `target/plugins`, where `scripts/build-plugins.sh` (`make plugins`)
//! writes them. A plugin not built is left out; the server then says so
//! when it starts (see `plugins::builtin`).

use std::path::PathBuf;

const BUILTIN: [&str; 2] = ["docker.wasm", "file.wasm"];

fn main() {
    println!("cargo:rerun-if-env-changed=WHARF_EMBED_PLUGINS");
    let dir = match std::env::var_os("WHARF_EMBED_PLUGINS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
            .join("../../target/plugins"),
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let mut code = String::from(
        "/// The plugins built into this binary: (file name, component).\n\
         pub const BUILTIN: &[(&str, &[u8])] = &[\n",
    );
    for name in BUILTIN {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_file() {
            let copy = out.join(name);
            std::fs::copy(&path, &copy).expect("copy a built-in plugin into OUT_DIR");
            code.push_str(&format!(
                "    ({name:?}, include_bytes!({:?})),\n",
                copy.display().to_string()
            ));
        }
    }
    code.push_str("];\n");
    std::fs::write(out.join("builtin_plugins.rs"), code).expect("write builtin_plugins.rs");
}
