//! `wharf docker remote ...`: remotes (`/api/v1/remotes`, Pulp 3's
//! Remote), the upstream settings Docker repositories share by naming one
//! with `--remote`: feed, account, download policy, and how to reach the
//! feed (a CA certificate, the TLS switch, a proxy, download concurrency,
//! a rate limit).

use crate::Session;
use crate::output::{self, OutputFormat};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use wharf_core::ids::RemoteId;
use wharf_store::db::{Remote, Transport};

#[derive(Subcommand)]
pub enum RemoteCommand {
    /// Create a remote.
    Create(RemoteArgs),
    /// Change a remote: the settings given are set ('' removes one); the
    /// transport flags given replace the transport.
    Update(RemoteArgs),
    /// Every remote.
    List,
    /// One remote (secrets shown as ********).
    Show {
        #[arg(long)]
        remote_id: RemoteId,
    },
    /// Delete a remote (repositories naming it then fail to sync until
    /// they name another).
    Delete {
        #[arg(long)]
        remote_id: RemoteId,
    },
}

#[derive(Args)]
pub struct RemoteArgs {
    /// The remote's id (letters, digits, '.', '-', '_').
    #[arg(long)]
    pub remote_id: RemoteId,
    /// The registry to sync from, e.g. https://registry-1.docker.io.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The account the feed knows this server as.
    #[arg(long, value_name = "USER")]
    pub upstream_username: Option<String>,
    /// That account's password or token: write-only, shown back as ********.
    #[arg(
        long,
        env = "WHARF_UPSTREAM_PASSWORD",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub upstream_password: Option<String>,
    /// `immediate`, `on_demand` or `streamed` (see `wharf docker repo create --help`).
    #[arg(long, value_name = "POLICY", value_parser = ["immediate", "on_demand", "streamed"])]
    pub download_policy: Option<String>,
    /// A CA certificate file (PEM, may hold several) trusted for the feed,
    /// besides the system's: an upstream signed by a company CA.
    #[arg(long, value_name = "PEM")]
    pub ca_cert_file: Option<PathBuf>,
    /// `false` accepts any certificate the feed shows: for a test upstream
    /// only [default: true].
    #[arg(long, value_name = "BOOL")]
    pub tls_verify: Option<bool>,
    /// Reach the feed through this HTTP proxy, e.g. http://proxy:3128.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Downloads a sync runs at once [default: 4].
    #[arg(long, value_name = "N")]
    pub download_concurrency: Option<u32>,
    /// At most this many requests a second to the feed, per node.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate_limit: Option<u32>,
}

impl RemoteArgs {
    fn settings(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut set = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                let v = if v.is_empty() {
                    Value::Null
                } else {
                    Value::String(v.clone())
                };
                m.insert(k.into(), v);
            }
        };
        set("feed", &self.url.clone().map(crate::repo::feed_url));
        set("username", &self.upstream_username);
        set("password", &self.upstream_password);
        set("download_policy", &self.download_policy);
        m
    }

    fn has_transport(&self) -> bool {
        self.ca_cert_file.is_some()
            || self.tls_verify.is_some()
            || self.proxy.is_some()
            || self.download_concurrency.is_some()
            || self.rate_limit.is_some()
    }

    fn transport(&self) -> anyhow::Result<Transport> {
        let ca_cert = match &self.ca_cert_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read --ca-cert-file {}", f.display()))?,
            ),
            None => None,
        };
        Ok(Transport {
            ca_cert,
            tls_verify: self.tls_verify.unwrap_or(true),
            proxy: self.proxy.clone(),
            download_concurrency: self.download_concurrency,
            rate_limit: self.rate_limit,
        })
    }
}

pub fn run(s: &Session, content_type: &str, cmd: RemoteCommand) -> anyhow::Result<()> {
    match cmd {
        RemoteCommand::Create(a) => {
            let mut settings = a.settings();
            settings.retain(|_, v| !v.is_null());
            let body = json!({
                "id": a.remote_id,
                "content_type": content_type,
                "settings": settings,
                "transport": a.transport()?,
            });
            let made: Remote = s
                .client
                .post("remotes", &body)
                .with_context(|| format!("cannot create remote {}", a.remote_id))?;
            print(s, &[made]);
        }
        RemoteCommand::Update(a) => {
            let mut body = Map::new();
            let settings = a.settings();
            if !settings.is_empty() {
                body.insert("settings".into(), Value::Object(settings));
            }
            if a.has_transport() {
                body.insert("transport".into(), serde_json::to_value(a.transport()?)?);
            }
            if body.is_empty() {
                anyhow::bail!(
                    "nothing to change: give --url, --upstream-username, --ca-cert-file, ..."
                );
            }
            let id = &a.remote_id;
            let changed: Remote = s
                .client
                .patch(&format!("remotes/{id}"), &body)
                .with_context(|| format!("cannot update remote {id}"))?;
            print(s, &[changed]);
        }
        RemoteCommand::List => {
            let all: Vec<Remote> = s
                .client
                .get("remotes", &[])
                .context("cannot list remotes")?;
            let mine: Vec<Remote> = all
                .into_iter()
                .filter(|r| r.content_type == content_type)
                .collect();
            print(s, &mine);
        }
        RemoteCommand::Show { remote_id } => {
            let one: Remote = s
                .client
                .get(&format!("remotes/{remote_id}"), &[])
                .with_context(|| format!("cannot read remote {remote_id}"))?;
            // Its settings are the content type's: shown whole, as JSON.
            output::print_json(&one);
        }
        RemoteCommand::Delete { remote_id } => {
            s.client
                .delete_empty(&format!("remotes/{remote_id}"))
                .with_context(|| format!("cannot delete remote {remote_id}"))?;
            if s.output == OutputFormat::Table {
                output::say(format!("Remote {remote_id} deleted"));
            }
        }
    }
    Ok(())
}

fn print(s: &Session, remotes: &[Remote]) {
    if s.output == OutputFormat::Json {
        output::print_json(&remotes);
        return;
    }
    let rows = remotes
        .iter()
        .map(|r| {
            let t = &r.transport;
            vec![
                r.id.to_string(),
                r.settings["feed"].as_str().unwrap_or_default().to_string(),
                r.settings["username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                if t.ca_cert.is_some() { "own CA" } else { "" }.to_string()
                    + if t.tls_verify {
                        ""
                    } else {
                        "NO TLS VERIFICATION"
                    },
                t.proxy.clone().unwrap_or_default(),
                t.rate_limit.map_or(String::new(), |r| format!("{r}/s")),
            ]
        })
        .collect();
    output::print_table(&["id", "feed", "user", "tls", "proxy", "rate limit"], rows);
}
