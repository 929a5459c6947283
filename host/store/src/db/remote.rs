//! A remote as stored (Pulp 3's Remote): where one content type's
//! repositories sync and pull from, with the credentials and the transport
//! settings they share. A repository refers to one with its importer
//! setting `remote`; what the remote says fills in what the repository's
//! own settings leave out ([`Remote::importer_for`]).

use serde::{Deserialize, Serialize};
use wharf_core::ids::RemoteId;
use wharf_core::time::Timestamp;

/// The importer setting naming a repository's remote.
pub const REMOTE_SETTING: &str = "remote";

/// A remote: upstream settings shared by the repositories that refer to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Remote {
    #[schema(value_type = String)]
    pub id: RemoteId,
    /// The content type whose repositories may refer to it (`docker`).
    pub content_type: String,
    /// Importer settings given to every repository that refers to it: the
    /// content type's words (`feed`, `upstream_name`, `username`,
    /// `password`, `download_policy`, `include_names`, ...). Secrets are
    /// write-only, as in a repository's settings.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// How the host connects to the feed.
    #[serde(default)]
    pub transport: Transport,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// How the host reaches a remote's feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transport {
    /// PEM certificates trusted for the feed besides the system's and the
    /// server's `--outbound-ca-cert` (a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// `false` accepts any certificate the feed shows: for a test upstream
    /// only (anyone on the path can then read and change the content, which
    /// digests still verify).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// Every request to the feed goes through this HTTP proxy
    /// (`http://proxy:3128`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Downloads a sync runs at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_concurrency: Option<u32>,
    /// Requests per second at most, across everything that uses the remote
    /// on one node (a rate-limited upstream such as Docker Hub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
}

fn yes() -> bool {
    true
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            ca_cert: None,
            tls_verify: true,
            proxy: None,
            download_concurrency: None,
            rate_limit: None,
        }
    }
}

impl Remote {
    /// The importer settings of a repository whose own are `own`: the
    /// remote's, then the repository's on top (`remote` included, which
    /// still says where the others came from).
    pub fn importer_for(&self, own: &serde_json::Value) -> serde_json::Value {
        let mut merged = self.settings.as_object().cloned().unwrap_or_default();
        if let Some(own) = own.as_object() {
            merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        serde_json::Value::Object(merged)
    }
}

/// The remote a repository's importer settings name, if any (`Err`: a
/// value that is no remote id).
pub fn remote_of(importer: &serde_json::Value) -> Result<Option<RemoteId>, String> {
    match importer.get(REMOTE_SETTING) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => s.parse().map(Some).map_err(|e| format!("{e}")),
        Some(other) => Err(format!("{REMOTE_SETTING} must be a remote id, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_repository_s_own_settings_win_over_its_remote_s() {
        let r = Remote {
            id: "hub".parse().unwrap(),
            content_type: "docker".into(),
            settings: json!({"feed": "https://hub", "username": "u", "password": "p"}),
            transport: Transport::default(),
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        };
        let merged =
            r.importer_for(&json!({"remote": "hub", "upstream_name": "a/b", "username": "v"}));
        assert_eq!(
            merged,
            json!({"feed": "https://hub", "username": "v", "password": "p", "upstream_name": "a/b", "remote": "hub"})
        );
        assert_eq!(
            remote_of(&json!({"remote": "hub"})),
            Ok(Some("hub".parse().unwrap()))
        );
        assert_eq!(remote_of(&json!({})), Ok(None));
        assert!(remote_of(&json!({"remote": "../x"})).is_err());
        assert!(remote_of(&json!({"remote": 1})).is_err());
        let t: Transport = serde_json::from_value(json!({})).unwrap();
        assert!(t.tls_verify, "verification is on unless turned off");
    }
}
