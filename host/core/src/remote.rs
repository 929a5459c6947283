//! How a repository's content arrives from its feed, in Pulp 3's words, and
//! how long a pull-through cache trusts what it pulled: the repository
//! settings the host itself reads (importer `download_policy`, distributor
//! `pull_through` and `tag_freshness`), whatever the content type.

use std::time::Duration;

/// When the bytes of a synced blob are downloaded (importer setting
/// `download_policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DownloadPolicy {
    /// During the sync, every blob (the default).
    #[default]
    Immediate,
    /// The first time a client asks for it: streamed to that client while
    /// it is written and verified, then served from the store.
    OnDemand,
    /// For every request that asks for it, never stored.
    Streamed,
}

impl DownloadPolicy {
    /// The importer setting's name.
    pub const SETTING: &'static str = "download_policy";

    /// The policy of a repository whose importer settings are `importer`.
    pub fn of(importer: &serde_json::Value) -> Result<Self, String> {
        match importer.get(Self::SETTING) {
            None | Some(serde_json::Value::Null) => Ok(Self::default()),
            Some(serde_json::Value::String(s)) => s.parse(),
            Some(other) => Err(format!(
                "{} must be a string (immediate, on_demand or streamed), not {other}",
                Self::SETTING
            )),
        }
    }

    /// Whether a sync leaves blobs on the feed.
    pub fn defers(self) -> bool {
        self != DownloadPolicy::Immediate
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DownloadPolicy::Immediate => "immediate",
            DownloadPolicy::OnDemand => "on_demand",
            DownloadPolicy::Streamed => "streamed",
        }
    }
}

impl std::str::FromStr for DownloadPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "immediate" => Ok(DownloadPolicy::Immediate),
            "on_demand" => Ok(DownloadPolicy::OnDemand),
            "streamed" => Ok(DownloadPolicy::Streamed),
            other => Err(format!(
                "unknown {} {other:?}: use immediate, on_demand or streamed",
                Self::SETTING
            )),
        }
    }
}

impl std::fmt::Display for DownloadPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repository that pulls what clients ask for from its feed (distributor
/// settings `pull_through` and `tag_freshness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullThrough {
    /// How long a pulled tag is served without asking the upstream again.
    pub freshness: Duration,
}

impl PullThrough {
    /// The distributor setting that makes a repository a pull-through cache.
    pub const SETTING: &'static str = "pull_through";
    /// The distributor setting holding the freshness, in seconds.
    pub const FRESHNESS: &'static str = "tag_freshness";
    /// The freshness when none is set: five minutes.
    pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(300);

    /// The pull-through settings of a repository whose distributor settings
    /// are `distributor`; `None` when it is not a pull-through cache.
    pub fn of(distributor: &serde_json::Value) -> Result<Option<Self>, String> {
        match distributor.get(Self::SETTING) {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => {
                return Ok(None);
            }
            Some(serde_json::Value::Bool(true)) => {}
            Some(other) => {
                return Err(format!(
                    "{} must be true or false, not {other}",
                    Self::SETTING
                ));
            }
        }
        let freshness = match distributor.get(Self::FRESHNESS) {
            None | Some(serde_json::Value::Null) => Self::DEFAULT_FRESHNESS,
            Some(v) => Duration::from_secs(v.as_u64().ok_or_else(|| {
                format!(
                    "{} must be a number of seconds (0 or more), not {v}",
                    Self::FRESHNESS
                )
            })?),
        };
        Ok(Some(PullThrough { freshness }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_read_from_settings() {
        assert_eq!(
            DownloadPolicy::of(&json!({})),
            Ok(DownloadPolicy::Immediate)
        );
        assert_eq!(
            DownloadPolicy::of(&json!({"download_policy": "on_demand"})),
            Ok(DownloadPolicy::OnDemand)
        );
        assert_eq!(
            DownloadPolicy::of(&json!({"download_policy": "streamed"})),
            Ok(DownloadPolicy::Streamed)
        );
        assert!(
            DownloadPolicy::of(&json!({"download_policy": "lazy"}))
                .unwrap_err()
                .contains("immediate, on_demand or streamed")
        );
        assert!(DownloadPolicy::of(&json!({"download_policy": 1})).is_err());
        assert!(!DownloadPolicy::Immediate.defers());
        assert!(DownloadPolicy::Streamed.defers());
    }

    #[test]
    fn pull_through_reads_from_settings() {
        assert_eq!(PullThrough::of(&json!({})), Ok(None));
        assert_eq!(PullThrough::of(&json!({"pull_through": false})), Ok(None));
        assert_eq!(
            PullThrough::of(&json!({"pull_through": true})),
            Ok(Some(PullThrough {
                freshness: PullThrough::DEFAULT_FRESHNESS
            }))
        );
        assert_eq!(
            PullThrough::of(&json!({"pull_through": true, "tag_freshness": 2})),
            Ok(Some(PullThrough {
                freshness: Duration::from_secs(2)
            }))
        );
        assert!(PullThrough::of(&json!({"pull_through": "yes"})).is_err());
        assert!(PullThrough::of(&json!({"pull_through": true, "tag_freshness": -1})).is_err());
    }
}
