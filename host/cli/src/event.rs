//! `wharf event listener create|list|delete`: who hears about tasks,
//! repositories and plugins.

use crate::Session;
use crate::output::{self, OutputFormat};
use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum EventCommand {
    /// Event listeners.
    #[command(subcommand)]
    Listener(ListenerCommand),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ListenerType {
    /// POST a signed JSON document to a URL.
    Http,
    /// Publish to the `wharf.events` topic exchange of the server's broker.
    Amqp,
}

#[derive(Subcommand)]
pub enum ListenerCommand {
    /// Register a listener.
    Create {
        #[arg(long = "type", value_enum)]
        kind: ListenerType,
        /// Where http listeners POST.
        #[arg(long, required_if_eq("kind", "http"))]
        url: Option<String>,
        /// HMAC key for the X-Wharf-Signature header of http deliveries.
        #[arg(long, default_value = "")]
        secret: String,
        /// Event types to send (e.g. task.failed, repo.*); all when absent.
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
    },
    /// The registered listeners.
    List,
    /// Delete a listener.
    Delete {
        #[arg(long)]
        listener_id: String,
    },
}

pub fn run(s: &Session, EventCommand::Listener(cmd): EventCommand) -> anyhow::Result<()> {
    match cmd {
        ListenerCommand::Create {
            kind,
            url,
            secret,
            events,
        } => {
            let body = match kind {
                ListenerType::Http => {
                    serde_json::json!({"type": "http", "url": url, "secret": secret, "events": events})
                }
                ListenerType::Amqp => serde_json::json!({"type": "amqp", "events": events}),
            };
            let l: serde_json::Value = s
                .client
                .post("events/listeners", &body)
                .context("cannot create the listener")?;
            match s.output {
                OutputFormat::Json => output::print_json(&l),
                OutputFormat::Table => output::say(format!(
                    "Listener {} created",
                    l["id"].as_str().unwrap_or("?")
                )),
            }
        }
        ListenerCommand::List => {
            let ls: Vec<serde_json::Value> = s
                .client
                .get("events/listeners", &[])
                .context("cannot list listeners")?;
            match s.output {
                OutputFormat::Json => output::print_json(&ls),
                OutputFormat::Table => {
                    let rows = ls
                        .iter()
                        .map(|l| {
                            vec![
                                l["id"].as_str().unwrap_or("").to_string(),
                                l["type"].as_str().unwrap_or("").to_string(),
                                l["url"].as_str().unwrap_or("").to_string(),
                                l["events"]
                                    .as_array()
                                    .map(|a| a.len())
                                    .filter(|n| *n > 0)
                                    .map_or("all".into(), |_| {
                                        l["events"]
                                            .as_array()
                                            .unwrap()
                                            .iter()
                                            .filter_map(|e| e.as_str())
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    }),
                            ]
                        })
                        .collect();
                    output::print_table(&["ID", "TYPE", "URL", "EVENTS"], rows);
                }
            }
        }
        ListenerCommand::Delete { listener_id } => {
            s.client
                .delete_empty(&format!("events/listeners/{listener_id}"))
                .with_context(|| format!("cannot delete listener {listener_id}"))?;
            output::say(format!("Listener {listener_id} deleted"));
        }
    }
    Ok(())
}
