//! `wharf serve`, `wharf bench` and `wharf fsck`: this process is the server,
//! measures it, or works on its data directory directly, unlike the admin
//! commands, which talk to a server over HTTP.

use super::output::{self, OutputFormat};
use clap::Subcommand;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// `wharf fsck`: offline, on the data directory, so it also works when the
/// server does not start.
#[derive(clap::Args)]
pub struct FsckArgs {
    /// The server's data directory.
    #[arg(long, env = "WHARF_DATA_DIR", default_value = "./wharf-data")]
    pub data_dir: PathBuf,
    /// Delete the blobs whose bytes do not match their digest (a later sync
    /// or upload stores them again).
    #[arg(long)]
    pub remove_corrupt: bool,
    /// Where the blobs are, when in a bucket (as `wharf serve`'s settings).
    #[command(flatten)]
    pub blobs: wharf_server::config::BlobArgs,
}

/// Re-hash every blob; corrupt blobs are a failure (exit status 1) even when
/// removed, so a script notices.
pub fn fsck(args: FsckArgs, format: OutputFormat) -> anyhow::Result<()> {
    let report = wharf_server::fsck::run(&args.data_dir, &args.blobs, args.remove_corrupt)?;
    match format {
        OutputFormat::Json => output::print_json(&report),
        OutputFormat::Table => {
            output::say(format!(
                "Checked {} blobs ({}) in {}",
                report.checked,
                output::bytes(report.bytes),
                match &args.blobs.blob_store {
                    Some(bucket) => bucket.to_string(),
                    None => args.data_dir.display().to_string(),
                }
            ));
            for d in &report.corrupt {
                let fate = if report.removed.contains(d) {
                    "removed"
                } else {
                    "kept"
                };
                output::say(format!("corrupt: {d} ({fate})"));
            }
        }
    }
    if report.corrupt.is_empty() {
        return Ok(());
    }
    let hint = if args.remove_corrupt {
        "they were removed; sync or upload the affected content again"
    } else {
        "rerun with --remove-corrupt to delete them, then sync or upload the affected content again"
    };
    anyhow::bail!("{} corrupt blob(s); {hint}", report.corrupt.len())
}

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
    /// Copy of many units and listing of many repositories on the embedded store.
    Store {
        #[arg(long, default_value_t = 10_000)]
        units: usize,
        #[arg(long, default_value_t = 10_000)]
        repos: usize,
    },
    /// What a one-unit change (a new version), a diff and a page of an older
    /// version cost as a repository grows.
    Versions {
        /// The store to measure [default: a fresh embedded SQLite file];
        /// e.g. mongodb://127.0.0.1:27017/wharf_bench (left with the
        /// repositories it made).
        #[arg(long, value_name = "URL")]
        db: Option<wharf_store::db::DbLocation>,
        /// Repository sizes, in units.
        #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
        units: Vec<usize>,
    },
    /// Upload a file to an S3 bucket as the blob store writes a blob (the
    /// plain-upload bound scripts/bench-s3.sh compares with).
    ObjectPut {
        /// The bytes to upload.
        #[arg(long)]
        file: std::path::PathBuf,
        /// Where: s3://BUCKET[/PREFIX].
        #[arg(long, value_name = "s3://BUCKET[/PREFIX]")]
        to: wharf_store::blobs::ObjectLocation,
        #[command(flatten)]
        s3: wharf_server::config::S3Args,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Time from `wharf serve` to ready, with a warm plugin cache.
    Startup {
        #[arg(long, default_value = "target/plugins")]
        plugin_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
}

pub fn serve(cfg: wharf_server::config::ServeConfig) -> anyhow::Result<()> {
    wharf_server::allocator::tune();
    let rt = runtime(cfg.log_format)?;
    let outcome = rt.block_on(wharf_server::server::serve(cfg));
    // Connections still open after the shutdown timeout and blocking work
    // (a plugin call, a blob write) must not hold the exit up.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}

pub fn worker(cfg: wharf_server::config::ServeConfig) -> anyhow::Result<()> {
    wharf_server::allocator::tune();
    runtime(cfg.log_format)?.block_on(wharf_server::server::worker(cfg))
}

pub fn bench(bench: Bench) -> anyhow::Result<()> {
    let rt = runtime(wharf_server::config::LogFormat::Text)?;
    match bench {
        Bench::Runtime {
            plugin,
            path,
            iterations,
        } => rt.block_on(wharf_server::bench::runtime(&plugin, &path, iterations)),
        Bench::Startup { plugin_dir, runs } => {
            rt.block_on(wharf_server::bench::startup(&plugin_dir, runs))
        }
        Bench::Store { units, repos } => rt.block_on(wharf_server::bench::store(units, repos)),
        Bench::Versions { db, units } => rt.block_on(wharf_server::bench::versions(db, &units)),
        Bench::ObjectPut { file, to, s3, runs } => {
            wharf_server::bench::object_put(&file, &to, &s3, runs)
        }
    }
}

/// Logging (`WHARF_LOG` filter, to stderr, as text or JSON lines) and the
/// async runtime the server runs on.
fn runtime(format: wharf_server::config::LogFormat) -> anyhow::Result<tokio::runtime::Runtime> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into());
    // Colours only for a terminal: a log file or journal gets plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        wharf_server::config::LogFormat::Text => logs.event_format(super::log_lines::Text).init(),
        wharf_server::config::LogFormat::Json => logs
            .json()
            .event_format(super::log_lines::JsonLines(
                tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(true),
            ))
            .init(),
    }
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

/// `wharf config`: the admin client's settings, and `check` of a server's
/// config file (which needs the server's settings parser).
#[derive(Subcommand)]
pub enum ConfigCommand {
    #[command(flatten)]
    Client(wharf_cli::config::ConfigCommand),
    /// Validate a *server* config file (TOML, see docs/configuration.md) and
    /// print the settings `wharf serve` would run with (file, environment
    /// and defaults; secrets masked). Exits non-zero if the file is wrong.
    Check {
        /// The file [default: $WHARF_CONFIG].
        #[arg(env = "WHARF_CONFIG")]
        file: PathBuf,
    },
}

/// `wharf config check FILE`.
pub fn config_check(file: &std::path::Path, format: OutputFormat) -> anyhow::Result<()> {
    let settings = wharf_server::config::check(file)?;
    match format {
        OutputFormat::Json => output::print_json(&settings),
        OutputFormat::Table => {
            output::say(format!("{}: OK. Effective settings:", file.display()));
            for s in settings {
                let value = match &s.value {
                    None => "(not set)".to_string(),
                    Some(v) => v.to_string(),
                };
                let from = serde_json::to_value(s.from).unwrap_or_default();
                output::emit(&format!(
                    "{} = {value}    # {}\n",
                    s.key,
                    from.as_str().unwrap_or("")
                ));
            }
        }
    }
    Ok(())
}
