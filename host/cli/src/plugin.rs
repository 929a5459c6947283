//! `wharf plugin list|install|remove`: content types, hot-loaded.

use crate::Session;
use crate::output::{self, OutputFormat};
use anyhow::Context as _;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// The loaded content-type plugins.
    List,
    /// Install a plugin (.wasm) while the server runs; a plugin of the same
    /// name is upgraded (tasks already running finish on the old version).
    Install {
        /// The plugin's .wasm component.
        file: PathBuf,
    },
    /// Unload a plugin and forget it.
    Remove {
        name: String,
        /// Even if repositories of its content types exist.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(s: &Session, cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::List => {
            let plugins: Vec<serde_json::Value> = s
                .client
                .get("plugins", &[])
                .context("cannot list plugins")?;
            match s.output {
                OutputFormat::Json => output::print_json(&plugins),
                OutputFormat::Table => {
                    let rows = plugins
                        .iter()
                        .map(|p| {
                            let list = |k: &str| {
                                p[k].as_array()
                                    .map(|a| {
                                        a.iter()
                                            .filter_map(|v| v.as_str())
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    })
                                    .unwrap_or_default()
                            };
                            vec![
                                p["name"].as_str().unwrap_or("").to_string(),
                                p["version"].as_str().unwrap_or("").to_string(),
                                list("content_types"),
                                list("routes"),
                            ]
                        })
                        .collect();
                    output::print_table(&["NAME", "VERSION", "CONTENT TYPES", "ROUTES"], rows);
                }
            }
        }
        PluginCommand::Install { file } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let installed: serde_json::Value = s
                .client
                .post_wasm("plugins", wasm)
                .with_context(|| format!("cannot install {}", file.display()))?;
            match s.output {
                OutputFormat::Json => output::print_json(&installed),
                OutputFormat::Table => {
                    let what = match installed["upgraded_from"].as_str() {
                        Some(old) => format!("upgraded from {old}"),
                        None => "installed".to_string(),
                    };
                    output::say(format!(
                        "Plugin {} {} {what} ({:.0} ms)",
                        installed["name"].as_str().unwrap_or("?"),
                        installed["version"].as_str().unwrap_or("?"),
                        installed["load_ms"].as_f64().unwrap_or(0.0)
                    ));
                }
            }
        }
        PluginCommand::Remove { name, force } => {
            let path = if force {
                format!("plugins/{name}?force=true")
            } else {
                format!("plugins/{name}")
            };
            s.client
                .delete_empty(&path)
                .with_context(|| format!("cannot remove plugin {name}"))?;
            output::say(format!("Plugin {name} removed"));
        }
    }
    Ok(())
}
