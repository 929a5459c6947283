//! Which tags a repository keeps (importer setting `retention`): the newest
//! N tags matching a pattern, and/or those that got their content within a
//! time; the other matching tags are removed after each sync and when a
//! `retain` task runs, with the images only they pointed at. Tags the
//! pattern does not match are never touched.
//!
//! "Newest" is, by default (`order: pushed`), when a tag got its current
//! content (pushed, synced, pulled or moved): the repository version that
//! added it; tags added by the same version are ordered by name. With
//! `order: name` it is the tag's name in version order (`v1.10` after
//! `v1.9`), Pulp's `retain_package_versions`: the choice for a repository
//! mirrored from a feed, whose syncs bring back old tags (they then stay
//! the oldest, and a sync that brings back only what retention removes
//! changes nothing).

use crate::time::Timestamp;
use std::time::{Duration, SystemTime};

/// The unit type retention weighs: a plugin whose content has tags names
/// their units so, each with its tag in its metadata's `name` and what it
/// points at in its blobs; its `edit` removes a tag when asked to remove
/// that name, and an image (with what only it needed) when asked to
/// remove its digest.
pub const TAG_UNIT: &str = "tag";

/// A repository's retention settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Which tags the rules apply to (shell-style: `*`, `?`, `[a-z]`).
    pub tags: glob::Pattern,
    /// Keep this many of the newest matching tags.
    pub keep_newest: Option<u64>,
    /// Keep every matching tag that got its content within this time.
    pub keep_within: Option<Duration>,
    /// What "newest" means.
    pub order: Order,
}

/// How retention ranks tags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// By when the tag got its content, then by name.
    #[default]
    Pushed,
    /// By name, in version order (runs of digits compared as numbers).
    Name,
}

/// A tag as retention weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagAge {
    pub name: String,
    /// The repository version that gave the tag its content.
    pub version: u64,
    /// When that version was made; `None` when it is no longer kept (the
    /// version limit deleted it), which is older than every kept version.
    pub since: Option<Timestamp>,
}

impl Retention {
    /// The importer setting's name.
    pub const SETTING: &'static str = "retention";

    /// The retention settings of a repository whose importer settings are
    /// `importer`; `None` when it keeps everything.
    pub fn of(importer: &serde_json::Value) -> Result<Option<Self>, String> {
        let Some(v) = importer.get(Self::SETTING).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let Some(m) = v.as_object() else {
            return Err(format!(
                "{} must be an object such as {{\"keep_newest\": 10, \"tags\": \"v*\"}}, not {v}",
                Self::SETTING
            ));
        };
        if let Some(k) = m
            .keys()
            .find(|k| !matches!(k.as_str(), "tags" | "keep_newest" | "keep_within" | "order"))
        {
            return Err(format!(
                "{}.{k} is not a retention setting: use tags, keep_newest, keep_within and order",
                Self::SETTING
            ));
        }
        let number = |name: &str| -> Result<Option<u64>, String> {
            match m.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(n) => n.as_u64().map(Some).ok_or_else(|| {
                    format!(
                        "{}.{name} must be a whole number (0 or more), not {n}",
                        Self::SETTING
                    )
                }),
            }
        };
        let tags = match m.get("tags") {
            None | Some(serde_json::Value::Null) => "*",
            Some(serde_json::Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(format!(
                    "{}.tags must be a pattern such as \"v*\", not {other}",
                    Self::SETTING
                ));
            }
        };
        let tags = glob::Pattern::new(tags)
            .map_err(|e| format!("{}.tags {tags:?} is not a pattern: {e}", Self::SETTING))?;
        let order = match m.get("order").and_then(serde_json::Value::as_str) {
            None if m.get("order").is_none_or(serde_json::Value::is_null) => Order::Pushed,
            Some("pushed") => Order::Pushed,
            Some("name") => Order::Name,
            _ => {
                return Err(format!(
                    "{}.order must be \"pushed\" or \"name\", not {}",
                    Self::SETTING,
                    m["order"]
                ));
            }
        };
        let keep_newest = number("keep_newest")?;
        let keep_within = number("keep_within")?.map(Duration::from_secs);
        if keep_newest.is_none() && keep_within.is_none() {
            return Err(format!(
                "{} keeps everything unless it has keep_newest (a number of tags) or \
                 keep_within (seconds): set one of them, or remove {}",
                Self::SETTING,
                Self::SETTING
            ));
        }
        Ok(Some(Retention {
            tags,
            keep_newest,
            keep_within,
            order,
        }))
    }

    /// The names of the tags of `tags` to remove at `now`: those the
    /// pattern matches that neither rule keeps, oldest first.
    pub fn remove(&self, tags: &[TagAge], now: SystemTime) -> Vec<String> {
        let mut subject: Vec<&TagAge> =
            tags.iter().filter(|t| self.tags.matches(&t.name)).collect();
        // Newest first.
        subject.sort_by(|a, b| match self.order {
            Order::Pushed => b
                .version
                .cmp(&a.version)
                .then_with(|| by_version(&b.name, &a.name)),
            Order::Name => by_version(&b.name, &a.name),
        });
        let recent = |t: &TagAge| {
            let (Some(within), Some(since)) = (self.keep_within, t.since.as_ref()) else {
                return false;
            };
            since
                .system_time()
                .is_some_and(|s| now.duration_since(s).unwrap_or_default() <= within)
        };
        let mut out: Vec<String> = subject
            .iter()
            .enumerate()
            .filter(|(rank, t)| {
                let newest = self.keep_newest.is_some_and(|n| (*rank as u64) < n);
                !newest && !recent(t)
            })
            .map(|(_, t)| t.name.clone())
            .collect();
        out.reverse();
        out
    }
}

/// Names in version order: runs of digits compare as numbers (`v9` <
/// `v10`), the rest as text.
fn by_version(a: &str, b: &str) -> std::cmp::Ordering {
    fn runs(s: &str) -> impl Iterator<Item = (bool, &str)> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digit = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            rest = tail;
            Some((digit, run))
        })
    }
    let (mut x, mut y) = (runs(a), runs(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((true, p)), Some((true, q))) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                let o = p.len().cmp(&q.len()).then_with(|| p.cmp(q));
                if o.is_ne() {
                    return o;
                }
            }
            (Some((_, p)), Some((_, q))) => {
                if p != q {
                    return p.cmp(q);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tag(name: &str, version: u64, secs_ago: Option<u64>, now: SystemTime) -> TagAge {
        TagAge {
            name: name.into(),
            version,
            since: secs_ago.map(|s| Timestamp::at(now - Duration::from_secs(s))),
        }
    }

    #[test]
    fn settings_are_read_and_mistakes_named() {
        assert_eq!(Retention::of(&json!({})), Ok(None));
        let r = Retention::of(&json!({"retention": {"keep_newest": 3}}))
            .unwrap()
            .unwrap();
        assert_eq!((r.keep_newest, r.keep_within), (Some(3), None));
        assert!(r.tags.matches("anything"));
        for (bad, says) in [
            (json!({"retention": {}}), "keep_newest"),
            (json!({"retention": {"keep_newest": -1}}), "whole number"),
            (json!({"retention": {"keep": 1}}), "retention.keep is not"),
            (
                json!({"retention": {"keep_newest": 1, "tags": "[v"}}),
                "not a pattern",
            ),
            (json!({"retention": 5}), "must be an object"),
        ] {
            let e = Retention::of(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_newest_n_matching_tags_are_kept_and_others_untouched() {
        let now = SystemTime::now();
        let tags = [
            tag("v1", 1, Some(400), now),
            tag("v2", 1, Some(400), now),
            tag("v3", 2, Some(300), now),
            tag("latest", 1, Some(400), now),
            tag("v4", 3, None, now),
        ];
        let r = Retention::of(&json!({"retention": {"keep_newest": 2, "tags": "v*"}}))
            .unwrap()
            .unwrap();
        // v4 and v3 are the newest; v1 and v2 share a version, v2 is newer.
        assert_eq!(r.remove(&tags, now), ["v1", "v2"]);
        let r = Retention::of(&json!({"retention": {"keep_newest": 3, "tags": "v*"}}))
            .unwrap()
            .unwrap();
        assert_eq!(r.remove(&tags, now), ["v1"]);
        let r = Retention::of(&json!({"retention": {"keep_newest": 0}}))
            .unwrap()
            .unwrap();
        assert_eq!(r.remove(&tags, now).len(), 5);
    }

    #[test]
    fn by_name_newest_is_the_greatest_version() {
        let now = SystemTime::now();
        let tags = [
            tag("v1.10", 1, None, now),
            tag("v1.9", 5, None, now),
            tag("v1.2", 9, None, now),
            tag("v2.0", 1, None, now),
        ];
        let r = Retention::of(&json!({"retention": {"keep_newest": 2, "order": "name"}}))
            .unwrap()
            .unwrap();
        assert_eq!(r.remove(&tags, now), ["v1.2", "v1.9"]);
        assert!(
            Retention::of(&json!({"retention": {"keep_newest": 2, "order": "date"}}))
                .unwrap_err()
                .contains("\"pushed\" or \"name\"")
        );
        assert_eq!(by_version("v10", "v9"), std::cmp::Ordering::Greater);
        assert_eq!(by_version("1.2", "1.2"), std::cmp::Ordering::Equal);
        assert_eq!(by_version("a", "b"), std::cmp::Ordering::Less);
    }

    #[test]
    fn tags_within_the_time_are_kept_too() {
        let now = SystemTime::now();
        let tags = [
            tag("old", 1, Some(4000), now),
            tag("recent", 2, Some(30), now),
            tag("unknown", 0, None, now),
        ];
        let r = Retention::of(&json!({"retention": {"keep_within": 60}}))
            .unwrap()
            .unwrap();
        assert_eq!(r.remove(&tags, now), ["unknown", "old"]);
        let r = Retention::of(&json!({"retention": {"keep_within": 60, "keep_newest": 2}}))
            .unwrap()
            .unwrap();
        assert_eq!(r.remove(&tags, now), ["unknown"]);
    }
}
