//! The `wharf` command line: the server's own commands (`serve`,
//! `worker`, `bench`, `fsck`, `blobs`, `db`, `config check`; [`server`],
//! [`blobs`], [`db`]) and
//! the admin client's (crate `wharf-cli`), in one command tree; [`manpages`]
//! writes a man page for each of them.

pub mod blobs;
pub mod db;
pub mod log_lines;
pub mod manpages;
pub mod server;

use wharf_cli::{
    GlobalArgs, Session, auth, check, config, docker, event, orphan, output, plugin,
    publish_docker, repo, schedule, status, task,
};

use clap::{CommandFactory, FromArgMatches as _, Parser, Subcommand};
use std::process::ExitCode;

/// Wharf: a content platform (Docker/OCI registry and more) whose content
/// types are sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about,
    propagate_version = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The end of `wharf --help` (and of `man wharf`): what the admin commands
/// take from the environment, and where the rest of the reference is.
const AFTER_HELP: &str = "\
Environment of the admin commands:
  WHARF_SERVER   The server to manage, as --server.
  WHARF_TOKEN    A login token (the `token` that POST /api/v1/login answers), used
                 instead of the login `wharf login` saved: for CI jobs and scripts.
  WHARF_CA_CERT  A CA certificate to trust besides the system's, as --ca-cert.
  SSL_CERT_FILE  The system's trust store, when not the default one.

Reference: a man page per command (`wharf manpages DIR`), and the API's at
<server>/api/v1/docs.";

#[derive(Subcommand)]
pub enum Command {
    /// Run the server: admin API under /api/v1 and the plugins' routes (/v2/ for Docker).
    Serve(wharf_server::config::ServeConfig),
    /// Run tasks taken from RabbitMQ (--broker) against the shared metadata
    /// store and blob directory, without serving HTTP.
    Worker(wharf_server::config::ServeConfig),
    /// Measure the plugin runtime and server start (figures for docs/benchmarks.md).
    #[command(subcommand)]
    Bench(server::Bench),
    /// Re-hash every blob in a data directory and report (or remove) those
    /// whose bytes do not match their digest.
    Fsck(server::FsckArgs),
    /// The blob store of a data directory, worked on directly: `migrate`
    /// copies it into S3-compatible object storage.
    #[command(subcommand)]
    Blobs(blobs::BlobsCommand),
    /// Export or import the metadata store, e.g. to move from the embedded
    /// SQLite file to MongoDB (works on the store, not through a server).
    #[command(subcommand)]
    Db(db::DbCommand),
    /// The server's version, plugins and storage health; with --ready, the
    /// readiness probe (exit status 0 when ready) for health checks.
    Status(status::StatusArgs),
    /// Log in to the server; the token is kept in the config file (mode
    /// 0600) for that server only. (A token in WHARF_TOKEN, when set, is used
    /// instead of the saved one.)
    Login(auth::LoginArgs),
    /// Revoke the saved login's token and forget it (never WHARF_TOKEN's).
    Logout,
    /// Users, roles and permissions.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Repositories of any content type: create, sync, upload, publish, copy.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Docker repositories, with Docker's settings as flags.
    #[command(subcommand)]
    Docker(docker::DockerCommand),
    /// Long-running work on the server: list, show, cancel.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Content-type plugins: list, install (hot-load, upgrade), remove.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Event notifications (http, amqp).
    #[command(subcommand)]
    Event(event::EventCommand),
    /// Content no repository holds any more (also `wharf orphans remove`).
    #[command(subcommand, visible_alias = "orphans")]
    Orphan(orphan::OrphanCommand),
    /// Checks of a running server's data, as tasks: `wharf check blobs`
    /// re-hashes every blob (`wharf fsck` does it offline).
    #[command(subcommand)]
    Check(check::CheckCommand),
    /// Recurring syncs, publishes, orphan cleanups and blob checks (ISO 8601 intervals:
    /// 2026-12-01T00:00Z/PT1H), each run a task.
    #[command(subcommand, visible_alias = "schedules")]
    Schedule(schedule::ScheduleCommand),
    /// Create a Docker repository if needed, upload a `docker save` archive
    /// (from -f or stdin), import it and publish it, in one step.
    #[command(name = "publish-docker")]
    PublishDocker(publish_docker::PublishDockerArgs),
    /// The admin client's settings file, and a check of a server's.
    #[command(subcommand)]
    Config(server::ConfigCommand),
    /// Print a shell completion script, e.g. `wharf completions bash >
    /// /etc/bash_completion.d/wharf`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write a man page for every command (wharf.1, wharf-repo.1,
    /// wharf-docker-repo-copy.1, ...) into DIR, e.g. /usr/local/share/man/man1.
    Manpages(manpages::ManpagesArgs),
    /// (Run by the server itself.) Compile the plugin component on standard
    /// input into the server's cache file OUT.
    #[command(name = "plugin-compiler", hide = true)]
    PluginCompiler {
        #[arg(long, value_name = "MIB")]
        plugin_memory_mib: usize,
        #[arg(long, value_name = "OUT")]
        out: std::path::PathBuf,
    },
}

/// The command tree. A command with a `--version` of its own (`repo
/// publish --version N`) does not also get the `--version` flag that every
/// command inherits (two arguments of one name: clap refuses the tree).
pub fn command() -> clap::Command {
    fn own_version(cmd: clap::Command) -> clap::Command {
        let own = cmd.get_arguments().any(|a| a.get_id() == "version");
        let subs: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        let mut cmd = if own {
            cmd.disable_version_flag(true)
        } else {
            cmd
        };
        for sub in subs {
            cmd = cmd.mut_subcommand(sub, own_version);
        }
        cmd
    }
    own_version(Cli::command())
}

/// Parse the command line, run it, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let global = cli.global;
    // Each admin command opens a session only when it needs the server.
    let session = || Session::open(&global);
    let outcome = match cli.command {
        // The server keeps its own error format (anyhow's report, as `main`
        // returning a `Result` prints it).
        Command::Serve(cfg) => return server::report(server::serve(cfg)),
        Command::Worker(cfg) => return server::report(server::worker(cfg)),
        Command::Bench(b) => return server::report(server::bench(b)),
        Command::PluginCompiler {
            plugin_memory_mib,
            out,
        } => return wharf_server::plugins::compiler::run(plugin_memory_mib, &out),
        Command::Fsck(a) => server::fsck(a, global.output),
        Command::Blobs(c) => blobs::run(c, global.output),
        Command::Db(c) => db::run(c),
        Command::Status(a) => session().and_then(|s| status::run(&s, a)),
        Command::Login(a) => session().and_then(|s| auth::login(&s, a)).map(|()| {
            if wharf_cli::config::env_token().is_ok_and(|t| t.is_some()) {
                eprintln!(
                    "note: WHARF_TOKEN is set, so the commands use its token, not this login; unset it to use this one"
                );
            }
        }),
        // The saved login only: a job's WHARF_TOKEN is never revoked here.
        Command::Logout => Session::open_saved(&global).and_then(|s| auth::logout(&s)),
        Command::Auth(c) => session().and_then(|s| auth::run(&s, c)),
        Command::Repo(c) => session().and_then(|s| repo::run(&s, c)),
        Command::Docker(c) => session().and_then(|s| docker::run(&s, c)),
        Command::Task(c) => session().and_then(|s| task::run(&s, c)),
        Command::Orphan(c) => session().and_then(|s| orphan::run(&s, c)),
        Command::Check(c) => session().and_then(|s| check::run(&s, c)),
        Command::Schedule(c) => session().and_then(|s| schedule::run(&s, c)),
        Command::Plugin(c) => session().and_then(|s| plugin::run(&s, c)),
        Command::Event(c) => session().and_then(|s| event::run(&s, c)),
        Command::PublishDocker(a) => session().and_then(|s| publish_docker::run(&s, a)),
        Command::Config(server::ConfigCommand::Client(c)) => {
            config::run(c, global.server.as_deref(), global.output)
        }
        Command::Config(server::ConfigCommand::Check { file }) => {
            server::config_check(&file, global.output)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "wharf", &mut script);
            output::emit(&String::from_utf8_lossy(&script));
            Ok(())
        }
        Command::Manpages(a) => manpages::run(a, global.output),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command line, with the server config file (`serve --config FILE` or
/// `WHARF_CONFIG`) layered under flags and environment variables.
fn parse() -> anyhow::Result<Cli> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cmd = command();
    if let Some(sub) = server_subcommand(&args)
        && let Some(file) = wharf_server::config::file_from_args(&args)
    {
        let settings = wharf_server::config::read_file(&file)?;
        let with_file = wharf_server::config::with_file_defaults(
            cmd.find_subcommand(sub).expect("defined above").clone(),
            &settings,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        cmd = cmd.mut_subcommand(sub, |_| with_file);
    }
    let matches = cmd.get_matches_from(args);
    Ok(Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

/// `serve` or `worker` when that is the command: only they read the server
/// config file (an admin command must not fail on a broken server file).
fn server_subcommand(args: &[std::ffi::OsString]) -> Option<&'static str> {
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        match a.as_ref() {
            // Global options that take a value.
            "--server" | "--output" => {
                it.next();
            }
            "serve" => return Some("serve"),
            "worker" => return Some("worker"),
            a if a.starts_with('-') => {}
            _ => return None,
        }
    }
    None
}
