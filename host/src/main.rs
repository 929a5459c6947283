use clap::{Parser, Subcommand};

/// Wharf: a content platform (Docker/OCI registry and more) whose content
/// types are sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(name = "wharf", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: admin API under /api/v1 and the plugins' routes (/v2/ for Docker).
    Serve(wharf::config::ServeConfig),
    /// Measure the plugin runtime and server start (figures for docs/benchmarks.md).
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
enum Bench {
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(cfg) => rt.block_on(wharf::server::serve(cfg)),
        Command::Bench(Bench::Runtime {
            plugin,
            path,
            iterations,
        }) => rt.block_on(wharf::bench::runtime(&plugin, &path, iterations)),
        Command::Bench(Bench::Startup { plugin_dir, runs }) => {
            rt.block_on(wharf::bench::startup(&plugin_dir, runs))
        }
    }
}
