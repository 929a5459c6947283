//! The admin client: `wharf repo`, `wharf docker repo`, `wharf task`, `wharf
//! auth` and the rest, in the spirit of `pulp-admin` and
//! `pulp-publish-docker` (same nouns and flags where they fit).
//!
//! It talks to a server over the REST API only, so it works the same
//! against a local `wharf serve` and a remote one, and it depends on the
//! API's types alone (the records of `wharf-store`, the ids of
//! `wharf-core`), never on the server. The `wharf` binary puts these
//! commands beside `serve`, `worker`, `bench`, `fsck` and `db`. A module
//! per concept:
//!
//! - [`config`]: the client's config file and where the server URL comes from.
//! - [`client`]: HTTP and its failures; [`api`]: the endpoints as typed calls.
//! - [`output`]: tables for people, `--output json` for scripts.
//! - [`progress`]: bars on a terminal, plain lines otherwise.
//! - [`task`]: `wharf task`, and following a task to its end.
//! - [`upload`]: resumable chunked uploads.
//! - [`repo`]: `wharf repo` for every content type; [`group`]: `wharf repo
//!   group`; [`docker`]: `wharf docker repo`, the same with Docker's settings
//!   as flags; [`publish_docker`]: the one-step `docker save | wharf
//!   publish-docker` workflow.
//! - [`orphan`]: `wharf orphan remove`; [`check`]: `wharf check blobs`;
//!   [`schedule`]: `wharf schedule` and
//!   `wharf docker repo sync schedules`; [`plugin`]: `wharf plugin`;
//!   [`event`]: `wharf event listener`; [`status`]: `wharf status`.
//! - [`auth`]: `wharf login`, `wharf logout`, `wharf auth user|role|permission`;
//!   the token lives in the config file, per server ([`config::ClientConfig`]),
//!   or comes from `WHARF_TOKEN` ([`config::env_token`], for CI jobs), and
//!   goes onto every request in [`client::Client`].

pub mod api;
pub mod auth;
pub mod check;
pub mod client;
pub mod config;
pub mod docker;
pub mod event;
pub mod group;
pub mod orphan;
pub mod output;
pub mod plugin;
pub mod progress;
pub mod publish_docker;
pub mod remote;
pub mod repo;
pub mod schedule;
pub mod status;
pub mod task;
pub mod upload;
pub mod version;

use client::{Client, TokenFrom};
use output::OutputFormat;

/// Options of the admin commands (`serve` and `bench` ignore them; the
/// server's own outbound trust is `serve --outbound-ca-cert`).
#[derive(clap::Args)]
pub struct GlobalArgs {
    /// The Wharf server to manage [default: `server` in the config file,
    /// else http://127.0.0.1:8080].
    #[arg(
        long,
        global = true,
        env = "WHARF_SERVER",
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub server: Option<String>,
    /// `table` for people, `json` for scripts (full records, on stdout).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = OutputFormat::Table,
        help_heading = "Global options"
    )]
    pub output: OutputFormat,
    /// A CA certificate (PEM, may hold several) to trust besides the
    /// system's, for a server whose certificate a private CA signed (`wharf
    /// serve --tls-self-signed` writes its CA to <data-dir>/tls/ca.crt).
    #[arg(
        long,
        global = true,
        env = "WHARF_CA_CERT",
        value_name = "PEM",
        help_heading = "Global options"
    )]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// What an admin command works with: the server and how to print.
pub struct Session {
    pub client: Client,
    pub output: OutputFormat,
}

impl Session {
    /// With the token in `WHARF_TOKEN` when it is set, else the login saved
    /// for the server.
    pub fn open(global: &GlobalArgs) -> anyhow::Result<Self> {
        match config::env_token()? {
            Some(token) => Self::open_with(global, Some((token, TokenFrom::Environment))),
            None => Self::open_saved(global),
        }
    }

    /// With the saved login only, whatever `WHARF_TOKEN` says: `wharf
    /// logout` revokes and forgets that one, never a job's token.
    pub fn open_saved(global: &GlobalArgs) -> anyhow::Result<Self> {
        Self::open_with(global, None)
    }

    fn open_with(global: &GlobalArgs, token: Option<(String, TokenFrom)>) -> anyhow::Result<Self> {
        let config = config::ClientConfig::load()?;
        let server = config::resolve_server(global.server.as_deref(), &config)?;
        let token = token.or_else(|| {
            config
                .login_for(&server)
                .map(|l| (l.token.clone(), TokenFrom::SavedLogin))
        });
        let ca_certs = match &global.ca_cert {
            Some(path) => read_ca_certs(path)?,
            None => Vec::new(),
        };
        Ok(Session {
            client: Client::new(server, token, &ca_certs)?,
            output: global.output,
        })
    }
}

/// The certificates of a PEM file given with `--ca-cert`.
fn read_ca_certs(path: &std::path::Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    use anyhow::Context as _;
    let pem = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the CA certificate {} (--ca-cert / WHARF_CA_CERT)",
            path.display()
        )
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
        format!(
            "{} (--ca-cert / WHARF_CA_CERT) is not a PEM certificate",
            path.display()
        )
    })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} (--ca-cert / WHARF_CA_CERT) holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}
