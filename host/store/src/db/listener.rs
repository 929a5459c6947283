//! An event listener as stored: where events go (`http` or `amqp`) and which
//! event types it wants. Delivery lives with the events service.

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

    /// The listener with its secret replaced by `mask` (the API and exports
    /// show it so; see the server's `secrets`).
    pub fn masked(&self, mask: &str) -> Listener {
        let mut l = self.clone();
        if let Target::Http { secret, .. } = &mut l.target
            && !secret.is_empty()
        {
            *secret = mask.into();
        }
        l
    }
}
