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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG").unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(cfg) => rt.block_on(wharf::server::serve(cfg)),
    }
}
