//! Email listeners: each event as one plain-text message (a readable
//! subject and body per event type, see [`subject`] and [`body`]) sent with
//! `lettre` through the listener's SMTP server, STARTTLS, implicit TLS or
//! (for a relay on the same machine) plain.
//!
//! The SMTP server is an outbound destination like a webhook: its name is
//! resolved here and every address checked against the server's
//! [`OutboundPolicy`] before anything connects, and the connection goes to
//! the checked address (the name is kept for the TLS certificate check), so
//! an internal address the operator did not allow is never reached.

use super::Event;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;
use std::time::Duration;
use wharf_runtime::outbound::{OutboundError, OutboundPolicy};
use wharf_store::db::{EmailTarget, SmtpSecurity};

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why one attempt to mail an event failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The outbound policy refused every address of the SMTP server: no
    /// later attempt will do better.
    #[error("{0}")]
    Refused(OutboundError),
    /// The listener's settings cannot make a message (an address that does
    /// not parse): no later attempt will do better either.
    #[error("{0}")]
    Settings(String),
    /// The SMTP server answered with a permanent refusal (5xx).
    #[error("the SMTP server refused the message: {0}")]
    Permanent(String),
    /// Unreachable, timed out or a transient refusal: worth another try.
    #[error("{0}")]
    Transient(String),
}

impl SendError {
    /// Whether another attempt may succeed.
    pub fn retry(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }
}

/// The message for `event` from `smtp.from` to `smtp.to`.
pub fn message(smtp: &EmailTarget, event: &Event) -> Result<Message, SendError> {
    let mailbox = |what: &str, a: &str| {
        a.parse::<Mailbox>().map_err(|e| {
            SendError::Settings(format!(
                "{what} {a:?} is no email address ({e}); create the listener again with e.g. ops@example.org"
            ))
        })
    };
    let mut b = Message::builder()
        .from(mailbox("from", &smtp.from)?)
        .subject(subject(event))
        .header(ContentType::TEXT_PLAIN)
        .header(XWharfEvent(event.event_type.clone()))
        .header(XWharfDelivery(event.id.clone()))
        .message_id(None);
    for to in &smtp.to {
        b = b.to(mailbox("to", to)?);
    }
    b.body(body(event))
        .map_err(|e| SendError::Settings(format!("cannot make the message: {e}")))
}

/// One attempt: resolve and check the SMTP server, then send `message` to
/// the first of its allowed addresses that answers.
pub async fn send(
    policy: &OutboundPolicy,
    smtp: &EmailTarget,
    message: &Message,
) -> Result<(), SendError> {
    let addrs = policy
        .resolve(&smtp.host, smtp.port())
        .await
        .map_err(|e| match e {
            OutboundError::Refused { .. } => SendError::Refused(e),
            e => SendError::Transient(e.to_string()),
        })?;
    let mut last = None;
    for addr in addrs {
        let tls = |domain: &str| {
            TlsParameters::new(domain.to_string())
                .map_err(|e| SendError::Settings(format!("TLS settings: {e}")))
        };
        let tls = match smtp.security {
            SmtpSecurity::Starttls => Tls::Required(tls(&smtp.host)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls(&smtp.host)?),
            SmtpSecurity::Plain => Tls::None,
        };
        let mut transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
                .port(addr.port())
                .tls(tls)
                .timeout(Some(SMTP_TIMEOUT));
        if !smtp.username.is_empty() {
            transport = transport.credentials(Credentials::new(
                smtp.username.clone(),
                smtp.password.clone(),
            ));
        }
        match transport
            .build::<Tokio1Executor>()
            .send(message.clone())
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_permanent() => {
                return Err(SendError::Permanent(wharf_runtime::outbound::describe(&e)));
            }
            Err(e) => {
                last = Some(SendError::Transient(format!(
                    "{} ({addr}): {}",
                    smtp.host,
                    wharf_runtime::outbound::describe(&e)
                )))
            }
        }
    }
    Err(last.unwrap_or_else(|| SendError::Transient(format!("{} has no address", smtp.host))))
}

/// A header of Wharf's own whose value is a string as given.
macro_rules! text_header {
    ($(#[$doc:meta])* $ty:ident, $name:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        struct $ty(String);

        impl Header for $ty {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok($ty(s.to_string()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

text_header!(
    /// `X-Wharf-Event: task.finished`, to sort mail by event type.
    XWharfEvent,
    "X-Wharf-Event"
);
text_header!(
    /// `X-Wharf-Delivery: <event id>`, as the http listener sends it.
    XWharfDelivery,
    "X-Wharf-Delivery"
);

/// A text field of the event's data, when present and not empty.
fn field<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event.data.get(key)?.as_str().filter(|s| !s.is_empty())
}

/// A value on one line: strings as they are, others as JSON.
fn one_line(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}: {}", one_line(v)))
            .collect::<Vec<_>>()
            .join(", "),
        v => v.to_string(),
    }
    .replace(['\r', '\n'], " ")
}

/// What happened, in words: the subject without its `[wharf] ` prefix.
fn headline(event: &Event) -> String {
    let repo = field(event, "repository");
    let ty = event.event_type.as_str();
    let (family, what) = ty.split_once('.').unwrap_or((ty, ""));
    match family {
        "task" => {
            let kind = field(event, "kind").unwrap_or("?");
            let word = match what {
                "finished" | "failed" | "canceled" => what,
                _ => ty,
            };
            match repo {
                Some(r) => format!("task {kind} of repository {r} {word}"),
                None => format!("task {kind} {word}"),
            }
        }
        "repo" => {
            let r = repo.unwrap_or("?");
            let version = event
                .data
                .get("result")
                .and_then(|r| r.get("version"))
                .and_then(Value::as_u64);
            match (what, version) {
                ("published", Some(v)) => format!("repository {r} published (version {v})"),
                _ => format!("repository {r} {what}"),
            }
        }
        "content" => {
            let r = repo.unwrap_or("?");
            let reference = field(event, "reference")
                .or(field(event, "digest"))
                .unwrap_or("content");
            match what {
                "pushed" => format!("{reference} pushed to repository {r}"),
                "deleted" => format!("{reference} deleted from repository {r}"),
                _ => format!("{reference} {what} in repository {r}"),
            }
        }
        "plugin" => {
            let name = field(event, "plugin").unwrap_or("?");
            let version = field(event, "version").unwrap_or("");
            match (what, field(event, "previous")) {
                ("upgraded", Some(prev)) => {
                    format!("plugin {name} upgraded from {prev} to {version}")
                }
                _ => format!("plugin {name} {version} {what}").replace("  ", " "),
            }
        }
        _ => format!("event {ty}"),
    }
}

/// The subject of an event's message, e.g. `[wharf] task sync of repository
/// app finished`.
pub fn subject(event: &Event) -> String {
    let mut s = format!("[wharf] {}", headline(event).replace(['\r', '\n'], " "));
    if s.chars().count() > 200 {
        s = s.chars().take(199).collect::<String>() + "…";
    }
    s
}

/// The plain-text body of an event's message: what happened in a sentence,
/// the event's fields one per line, when, and the event as JSON.
pub fn body(event: &Event) -> String {
    let mut h = headline(event);
    if let Some(first) = h.get(..1) {
        h = first.to_uppercase() + &h[1..];
    }
    let mut lines: Vec<(String, String)> = Vec::new();
    const LABELS: &[(&str, &str)] = &[
        ("repository", "Repository"),
        ("task", "Task"),
        ("kind", "Kind"),
        ("state", "State"),
        ("plugin", "Plugin"),
        ("version", "Version"),
        ("previous", "Previous"),
        ("reference", "Reference"),
        ("digest", "Digest"),
        ("result", "Result"),
    ];
    let data = event.data.as_object();
    for (key, label) in LABELS {
        if let Some(v) = data.and_then(|d| d.get(*key)).filter(|v| !v.is_null()) {
            lines.push((label.to_string(), one_line(v)));
        }
    }
    if let Some(e) = data.and_then(|d| d.get("error")).filter(|v| !v.is_null()) {
        let message = e.get("message").and_then(Value::as_str);
        let cause = e.get("cause").and_then(Value::as_str);
        let text = match (message, cause) {
            (Some(m), Some(c)) => format!("{m} (cause: {c})").replace(['\r', '\n'], " "),
            _ => one_line(e),
        };
        lines.push(("Error".into(), text));
    }
    // Fields this version does not know of yet, in their order.
    if let Some(d) = data {
        for (k, v) in d {
            let known = LABELS.iter().any(|(key, _)| key == k) || k == "error";
            if !known && !v.is_null() {
                lines.push((k.clone(), one_line(v)));
            }
        }
    }
    lines.push(("Time".into(), event.time.to_string()));
    lines.push(("Event".into(), event.event_type.clone()));
    lines.push(("Event id".into(), event.id.clone()));
    let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    let mut out = format!("{h}.\n\n");
    for (label, value) in &lines {
        out += &format!("{:<width$} {value}\n", format!("{label}:"));
    }
    out += "\nThe event as JSON:\n";
    out += &serde_json::to_string_pretty(event).expect("events serialize");
    out += "\n\n-- \nSent by Wharf to an email listener; `wharf event listener list` shows them.\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(ty: &str, data: Value) -> Event {
        Event {
            id: "0193e0a0-0000-7000-8000-000000000001".into(),
            event_type: ty.into(),
            time: wharf_store::db::Timestamp::at(
                std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            ),
            data,
        }
    }

    fn task(ty: &str, kind: &str, repo: Option<&str>, state: &str) -> Event {
        event(
            ty,
            json!({"task": "t-1", "kind": kind, "state": state, "repository": repo,
                   "result": {"units_added": 3, "version": 2}, "error": null}),
        )
    }

    #[test]
    fn subjects_say_what_happened() {
        for (e, want) in [
            (
                task("task.finished", "sync", Some("app"), "finished"),
                "[wharf] task sync of repository app finished",
            ),
            (
                task("task.failed", "import", Some("app"), "error"),
                "[wharf] task import of repository app failed",
            ),
            (
                task("task.canceled", "orphans", None, "canceled"),
                "[wharf] task orphans canceled",
            ),
            (
                task("repo.published", "publish", Some("app"), "finished"),
                "[wharf] repository app published (version 2)",
            ),
            (
                task("repo.synced", "sync", Some("app"), "finished"),
                "[wharf] repository app synced",
            ),
            (
                event(
                    "content.pushed",
                    json!({"repository": "team-app", "plugin": "docker", "reference": "1.0", "digest": "sha256:ab"}),
                ),
                "[wharf] 1.0 pushed to repository team-app",
            ),
            (
                event(
                    "content.deleted",
                    json!({"repository": "team-app", "plugin": "docker", "reference": null, "digest": "sha256:ab"}),
                ),
                "[wharf] sha256:ab deleted from repository team-app",
            ),
            (
                event(
                    "plugin.installed",
                    json!({"plugin": "file", "version": "0.2.0", "previous": null}),
                ),
                "[wharf] plugin file 0.2.0 installed",
            ),
            (
                event(
                    "plugin.upgraded",
                    json!({"plugin": "file", "version": "0.3.0", "previous": "0.2.0"}),
                ),
                "[wharf] plugin file upgraded from 0.2.0 to 0.3.0",
            ),
            (
                event(
                    "plugin.removed",
                    json!({"plugin": "file", "version": "0.3.0"}),
                ),
                "[wharf] plugin file 0.3.0 removed",
            ),
            (event("other.thing", json!({})), "[wharf] event other.thing"),
        ] {
            assert_eq!(subject(&e), want, "{e:?}");
        }
    }

    #[test]
    fn subjects_are_one_short_line() {
        let e = event(
            "content.pushed",
            json!({"repository": "r", "reference": format!("a\r\nBcc: x@y\n{}", "t".repeat(300))}),
        );
        let s = subject(&e);
        assert!(!s.contains(['\r', '\n']), "{s:?}");
        assert_eq!(s.chars().count(), 200);
    }

    #[test]
    fn bodies_list_the_fields_and_the_time() {
        let b = body(&task("task.finished", "sync", Some("app"), "finished"));
        assert!(
            b.starts_with("Task sync of repository app finished.\n\n"),
            "{b}"
        );
        for line in [
            "Repository: app\n",
            "Task:       t-1\n",
            "Kind:       sync\n",
            "State:      finished\n",
            "Result:     units_added: 3, version: 2\n",
            "Time:       2027-01-15T08:00:00.000Z\n",
            "Event:      task.finished\n",
            "Event id:   0193e0a0-0000-7000-8000-000000000001\n",
            "\"type\": \"task.finished\"",
        ] {
            assert!(b.contains(line), "{line:?} not in\n{b}");
        }
        assert!(!b.contains("Error:"), "{b}");
        let failed = event(
            "task.failed",
            json!({"task": "t-2", "kind": "import", "state": "error", "repository": "app",
                   "result": null, "error": {"message": "not a docker save", "cause": "invalid-content"}}),
        );
        let b = body(&failed);
        assert!(
            b.contains("Error:      not a docker save (cause: invalid-content)\n"),
            "{b}"
        );
        assert!(!b.contains("Result:"), "{b}");
    }

    #[test]
    fn messages_carry_the_event_and_refuse_bad_addresses() {
        let to = vec![
            "ops@example.org".to_string(),
            "Dev <dev@example.org>".into(),
        ];
        let smtp = EmailTarget {
            to,
            from: "wharf@example.org".into(),
            host: "smtp.example.org".into(),
            port: Some(587),
            security: SmtpSecurity::Starttls,
            username: String::new(),
            password: String::new(),
        };
        let e = task("task.finished", "sync", Some("app"), "finished");
        let m = String::from_utf8(message(&smtp, &e).unwrap().formatted()).unwrap();
        for h in [
            "From: wharf@example.org\r\n",
            "To: ops@example.org, Dev <dev@example.org>\r\n",
            "Subject: [wharf] task sync of repository app finished\r\n",
            "X-Wharf-Event: task.finished\r\n",
            "X-Wharf-Delivery: 0193e0a0-0000-7000-8000-000000000001\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
        ] {
            assert!(m.contains(h), "{h:?} not in\n{m}");
        }
        let bad = vec!["not an address".to_string()];
        let e = message(&EmailTarget { to: bad, ..smtp }, &e).unwrap_err();
        assert!(
            !e.retry() && e.to_string().contains("\"not an address\""),
            "{e}"
        );
    }

    #[tokio::test]
    async fn internal_smtp_hosts_are_refused_unless_allowed() {
        let strict = OutboundPolicy::default();
        let e = strict.resolve("127.0.0.1", 25).await.unwrap_err();
        assert!(
            e.to_string().contains("--allow-outbound 127.0.0.1/32"),
            "{e}"
        );
        let e = strict.resolve("localhost", 25).await.unwrap_err();
        assert!(matches!(e, OutboundError::Refused { .. }), "{e}");
        let open = OutboundPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]);
        let kept = open.resolve("localhost", 2525).await.unwrap();
        assert!(
            !kept.is_empty()
                && kept
                    .iter()
                    .all(|a| *a == "127.0.0.1:2525".parse::<std::net::SocketAddr>().unwrap()),
            "only the allowed address of the name is kept: {kept:?}"
        );
    }
}
