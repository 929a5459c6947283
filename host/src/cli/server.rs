//! `wharf serve` and `wharf bench`: this process is the server (or measures
//! it), unlike the admin commands, which talk to one over HTTP.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum Bench {
    /// Compile, cached load, warm-call and fresh-instance costs of a plugin.
    Runtime {
        /// The plugin to measure.
        #[arg(long, default_value = "target/plugins/docker.wasm")]
        plugin: std::path::PathBuf,
        /// The request path `resolve` is called with.
        #[arg(long, default_value = "/v2/")]
        path: String,
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
    },
    /// Time from `wharf serve` to ready, with a warm plugin cache.
    Startup {
        #[arg(long, default_value = "target/plugins")]
        plugin_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
}

pub fn serve(cfg: crate::config::ServeConfig) -> anyhow::Result<()> {
    runtime()?.block_on(crate::server::serve(cfg))
}

pub fn bench(bench: Bench) -> anyhow::Result<()> {
    let rt = runtime()?;
    match bench {
        Bench::Runtime {
            plugin,
            path,
            iterations,
        } => rt.block_on(crate::bench::runtime(&plugin, &path, iterations)),
        Bench::Startup { plugin_dir, runs } => {
            rt.block_on(crate::bench::startup(&plugin_dir, runs))
        }
    }
}

/// Logging (`WHARF_LOG`, to stderr) and the async runtime the server runs on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Report a server failure exactly as `fn main() -> anyhow::Result<()>` does
/// (`Error: ` and anyhow's debug report), which scripts and tests may read.
pub fn report(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}
