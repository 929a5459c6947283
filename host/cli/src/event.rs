//! `wharf event listener create|list|delete`: who hears about tasks,
//! repositories and plugins (a webhook, the broker's exchange, or email).

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
    /// Mail a plain-text message through an SMTP server.
    Email,
}

/// How an email listener reaches its SMTP server.
#[derive(Clone, Copy, ValueEnum)]
pub enum SmtpSecurity {
    /// Upgrade with STARTTLS; refuse a server that does not offer it (port 587).
    Starttls,
    /// TLS from the first byte (implicit TLS, port 465).
    Tls,
    /// No encryption: only for a relay on the same machine (port 25).
    None,
}

impl SmtpSecurity {
    fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::Starttls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        }
    }
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
        /// A recipient of email listeners (`ops@example.org` or
        /// `"Ops <ops@example.org>"`); repeat for more.
        #[arg(long = "to", value_name = "ADDR", required_if_eq("kind", "email"))]
        to: Vec<String>,
        /// The sender of email listeners' messages.
        #[arg(long, value_name = "ADDR", required_if_eq("kind", "email"))]
        from: Option<String>,
        /// The SMTP server email listeners send through (a name or an address).
        #[arg(long, value_name = "HOST", required_if_eq("kind", "email"))]
        smtp_host: Option<String>,
        /// Its port [default: 587 for starttls, 465 for tls, 25 for none].
        #[arg(long, value_name = "PORT")]
        smtp_port: Option<u16>,
        /// How the connection to the SMTP server is protected.
        #[arg(long, value_enum, default_value = "starttls")]
        smtp_security: SmtpSecurity,
        /// SMTP AUTH user; no authentication when absent.
        #[arg(long, value_name = "USER", default_value = "")]
        smtp_username: String,
        /// SMTP AUTH password (write-only: shown back as ********); better
        /// given through the environment than on the command line.
        #[arg(
            long,
            value_name = "PASSWORD",
            env = "WHARF_SMTP_PASSWORD",
            hide_env_values = true,
            default_value = ""
        )]
        smtp_password: String,
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

/// Where a listener's events go, in one line.
fn target(l: &serde_json::Value) -> String {
    let s = |k: &str| l[k].as_str().unwrap_or("").to_string();
    match l["type"].as_str() {
        Some("http") => s("url"),
        Some("amqp") => "exchange wharf.events".into(),
        Some("email") => {
            let to: Vec<&str> = l["to"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let port = l["port"]
                .as_u64()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let user = match s("username") {
                u if u.is_empty() => String::new(),
                u => format!(", user {u}"),
            };
            format!(
                "mail to {} via {}{port} ({}{user})",
                to.join(", "),
                s("host"),
                s("security")
            )
        }
        _ => String::new(),
    }
}

pub fn run(s: &Session, EventCommand::Listener(cmd): EventCommand) -> anyhow::Result<()> {
    match cmd {
        ListenerCommand::Create {
            kind,
            url,
            secret,
            to,
            from,
            smtp_host,
            smtp_port,
            smtp_security,
            smtp_username,
            smtp_password,
            events,
        } => {
            let body = match kind {
                ListenerType::Http => {
                    serde_json::json!({"type": "http", "url": url, "secret": secret, "events": events})
                }
                ListenerType::Amqp => serde_json::json!({"type": "amqp", "events": events}),
                ListenerType::Email => serde_json::json!({
                    "type": "email",
                    "to": to,
                    "from": from,
                    "host": smtp_host,
                    "port": smtp_port,
                    "security": smtp_security.as_str(),
                    "username": smtp_username,
                    "password": smtp_password,
                    "events": events,
                }),
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
                            let events: Vec<&str> = l["events"]
                                .as_array()
                                .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
                                .unwrap_or_default();
                            vec![
                                l["id"].as_str().unwrap_or("").to_string(),
                                l["type"].as_str().unwrap_or("").to_string(),
                                target(l),
                                if events.is_empty() {
                                    "all".into()
                                } else {
                                    events.join(", ")
                                },
                            ]
                        })
                        .collect();
                    output::print_table(&["ID", "TYPE", "TARGET", "EVENTS"], rows);
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
