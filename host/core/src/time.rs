//! Points in time as records keep them: RFC 3339 in UTC with milliseconds
//! (`2026-12-04T03:41:47.123Z`), which sorts as text in time order.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime};

/// When something happened. Made by [`Timestamp::now`] (or read back from a
/// record); serialised as its RFC 3339 text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(String);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Self::at(SystemTime::now())
    }

    pub fn at(t: SystemTime) -> Self {
        Timestamp(humantime::format_rfc3339_millis(t).to_string())
    }

    /// The time this names; `None` for a text that is no RFC 3339 time
    /// (a record written by hand).
    pub fn system_time(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(&self.0).ok()
    }

    /// How long ago this was; zero for a time in the future or unreadable.
    pub fn age(&self) -> Duration {
        self.system_time()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Self::at(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_back_and_sort_in_time_order() {
        let a = Timestamp::at(SystemTime::UNIX_EPOCH + Duration::from_millis(1_500));
        assert_eq!(a.as_str(), "1970-01-01T00:00:01.500Z");
        assert_eq!(
            a.system_time(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_500))
        );
        let b = Timestamp::at(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400));
        assert!(a < b);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            "1970-01-01T00:00:01.500Z"
        );
        let back: Timestamp = serde_json::from_value(serde_json::json!("t")).unwrap();
        assert_eq!(back.system_time(), None);
        assert_eq!(back.age(), Duration::ZERO);
    }
}
