//! An event listener as stored: where events go (`http`, `amqp` or `email`)
//! and which event types it wants. Delivery lives with the events service.

use serde::{Deserialize, Serialize};
use wharf_core::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Target {
    /// POST each event to `url`.
    Http {
        url: String,
        /// HMAC key for `X-Wharf-Signature`; never shown back.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        secret: String,
    },
    /// Publish to the `wharf.events` topic exchange of the server's broker.
    Amqp,
    /// Mail each event, as a plain-text message, through an SMTP server.
    Email(EmailTarget),
}

/// Where and how an email listener mails its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmailTarget {
    /// Recipients: `ops@example.org` or `Ops <ops@example.org>`.
    pub to: Vec<String>,
    /// The sender (`From:`), in the same forms.
    pub from: String,
    /// The SMTP server: a name or an IP address.
    pub host: String,
    /// The SMTP server's port; when absent, 587 for `starttls`, 465 for
    /// `tls` and 25 for `none` (the API stores the default it chose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    /// SMTP AUTH user; no authentication when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// SMTP AUTH password; never shown back.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
}

impl EmailTarget {
    /// The port to connect to: the one given, else the usual one of its
    /// security.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.security.default_port())
    }
}

/// How an email listener's connection to its SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// A plain connection upgraded with STARTTLS; a server that does not
    /// offer it is refused (submission, port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (implicit TLS, port 465).
    Tls,
    /// No encryption at all: only for a relay on the same machine.
    #[serde(rename = "none")]
    Plain,
}

impl SmtpSecurity {
    /// The port a server of this kind usually listens on.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Plain => 25,
        }
    }

    /// The name the API and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::Starttls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::Plain => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Listener {
    pub id: String,
    #[serde(flatten)]
    pub target: Target,
    /// Event types to send (`task.*` style prefixes allowed); all when empty.
    #[serde(default)]
    pub events: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl Listener {
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.is_empty()
            || self.events.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => event_type.starts_with(prefix),
                None => p == event_type,
            })
    }

    /// The listener with its secret (an http listener's HMAC key, an email
    /// listener's SMTP password) replaced by `mask` (the API and exports
    /// show it so; see the server's `secrets`).
    pub fn masked(&self, mask: &str) -> Listener {
        let mut l = self.clone();
        match &mut l.target {
            Target::Http { secret, .. }
            | Target::Email(EmailTarget {
                password: secret, ..
            }) if !secret.is_empty() => *secret = mask.into(),
            _ => {}
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_before_email_listeners_still_read() {
        let http: Listener = serde_json::from_str(
            r#"{"id":"a","type":"http","url":"http://h/x","secret":"k","events":["task.*"],"created_at":"2026-01-01T00:00:00.000Z"}"#,
        )
        .unwrap();
        assert!(matches!(&http.target, Target::Http { secret, .. } if secret == "k"));
        let amqp: Listener = serde_json::from_str(
            r#"{"id":"b","type":"amqp","created_at":"2026-01-01T00:00:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(amqp.target, Target::Amqp);
    }

    #[test]
    fn email_listeners_round_trip_and_mask_their_password() {
        let l: Listener = serde_json::from_str(
            r#"{"id":"m","type":"email","to":["ops@example.org"],"from":"wharf@example.org",
                "host":"smtp.example.org","username":"wharf","password":"pw-1234",
                "created_at":"2026-01-01T00:00:00.000Z"}"#,
        )
        .unwrap();
        let Target::Email(email) = &l.target else {
            panic!("{l:?}")
        };
        assert_eq!((email.port, email.security), (None, SmtpSecurity::Starttls));
        assert_eq!(email.port(), 587);
        let back: Listener = serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        assert_eq!(back, l);
        let shown = serde_json::to_value(l.masked("****")).unwrap();
        assert_eq!(shown["password"], "****");
        assert_eq!(shown["username"], "wharf");
        assert_eq!(shown["security"], "starttls");
        assert!(!shown.to_string().contains("pw-1234"), "{shown}");
        let plain: SmtpSecurity = serde_json::from_str(r#""none""#).unwrap();
        assert_eq!((plain, plain.default_port()), (SmtpSecurity::Plain, 25));
    }
}
