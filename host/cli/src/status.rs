//! `wharf status`: is the server up, what does it run, is its storage well;
//! `wharf status --ready`: the readiness probe, for health checks (the
//! image's, a load balancer's script): exit status 0 when `/readyz` says
//! ready, 1 naming the failing checks otherwise.

use crate::Session;
use crate::output::{self, OutputFormat};
use serde::Deserialize;

/// The parts of `GET /api/v1/status` a person reads; `--output json` prints
/// the whole document as the server sent it.
#[derive(Deserialize)]
struct Status {
    version: String,
    /// The rest is only for a logged-in caller.
    #[serde(flatten)]
    details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    contract: String,
    uptime_seconds: u64,
    #[serde(default)]
    plugins: Vec<Plugin>,
    #[serde(default)]
    plugin_load_failures: Vec<LoadFailure>,
    storage: Storage,
}

#[derive(Deserialize)]
struct Plugin {
    name: String,
    version: String,
    #[serde(default)]
    content_types: Vec<ContentType>,
    #[serde(default)]
    routes: Vec<String>,
}

#[derive(Deserialize)]
struct ContentType {
    name: String,
}

#[derive(Deserialize)]
struct LoadFailure {
    file: String,
    error: String,
}

#[derive(Deserialize)]
struct Storage {
    blobs: Health,
    db: Health,
}

#[derive(Deserialize)]
struct Health {
    ok: bool,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl Health {
    fn describe(&self, name: Option<&str>) -> String {
        let state = if self.ok {
            "ok".to_string()
        } else {
            format!(
                "FAILING: {}",
                self.error.as_deref().unwrap_or("unavailable")
            )
        };
        match name {
            Some(n) => format!("{n} ({state})"),
            None => state,
        }
    }
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Only ask whether the server is ready to take work (GET /readyz, no
    /// login needed): exit status 0 if so, 1 with the failing checks if not.
    /// The health check of Wharf's image.
    #[arg(long)]
    pub ready: bool,
}

pub fn run(s: &Session, args: StatusArgs) -> anyhow::Result<()> {
    if args.ready {
        return ready(s);
    }
    let doc = s.client.status()?;
    if s.output == OutputFormat::Json {
        output::print_json(&doc);
        return Ok(());
    }
    let st: Status = serde_json::from_value(doc)?;
    let Some(d) = st.details else {
        output::print_details(&[
            ("Server", s.client.server().to_string()),
            ("Version", st.version),
        ]);
        output::say("(Log in with `wharf login` to see plugins and storage health.)");
        return Ok(());
    };
    let uptime = humantime::format_duration(std::time::Duration::from_secs(d.uptime_seconds));
    output::print_details(&[
        ("Server", s.client.server().to_string()),
        ("Version", st.version),
        ("Plugin contract", d.contract),
        ("Uptime", uptime.to_string()),
        (
            "Metadata store",
            d.storage.db.describe(d.storage.db.backend.as_deref()),
        ),
        (
            "Blob store",
            d.storage.blobs.describe(d.storage.blobs.path.as_deref()),
        ),
    ]);
    output::say("");
    if d.plugins.is_empty() {
        output::say("No plugins loaded: the server has no content types.");
    } else {
        output::print_table(
            &["plugin", "version", "content types", "routes"],
            d.plugins
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.version.clone(),
                        p.content_types
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        p.routes.join(", "),
                    ]
                })
                .collect(),
        );
    }
    for f in &d.plugin_load_failures {
        output::say(format!("Plugin {} failed to load: {}", f.file, f.error));
    }
    Ok(())
}

/// The readiness probe: `ready` (or the whole document with `--output
/// json`) and success, or an error naming each failing check.
fn ready(s: &Session) -> anyhow::Result<()> {
    let (ready, doc) = s.client.readiness()?;
    if s.output == OutputFormat::Json {
        output::print_json(&doc);
    }
    if ready {
        if s.output != OutputFormat::Json {
            output::say(format!("{} is ready", s.client.server()));
        }
        return Ok(());
    }
    let failing: Vec<String> = doc["checks"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, check)| check["ok"] == false)
        .map(|(name, check)| format!("{name}: {}", check["error"].as_str().unwrap_or("failing")))
        .collect();
    anyhow::bail!(
        "{} is not ready ({})",
        s.client.server(),
        if failing.is_empty() {
            "no reason given".to_string()
        } else {
            failing.join("; ")
        }
    )
}
