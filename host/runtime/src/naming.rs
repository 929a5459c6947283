//! How a plugin's routes name repositories (its `describe` says so): which
//! part of a request path is the repository name, which distributor setting
//! holds a repository's client-facing name, and what a repository created
//! on first push looks like. The host's access gate decides on the name
//! found here, the same string the plugin parses, so a repository that is
//! not published yet is guarded as one that is.

use crate::bindings::exports::wharf::plugin::plugin as wire;

/// Markers a plugin may declare, at most.
const MAX_MARKERS: usize = 16;
/// The longest create-on-push settings document.
const MAX_CREATE_SETTINGS: usize = 4096;

/// A plugin's naming rules, checked at load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Naming {
    markers: Vec<String>,
    /// The distributor setting holding a repository's name; else its id.
    pub name_setting: Option<String>,
    /// Distributor settings (a JSON object) of a repository created on
    /// first push; `None`: no creation on push.
    pub create_on_push: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Naming {
    /// Check what a plugin declared; `Err` says what is wrong.
    pub(crate) fn from_wire(n: wire::Naming) -> Result<Self, String> {
        if n.markers.len() > MAX_MARKERS {
            return Err(format!("more than {MAX_MARKERS} name markers"));
        }
        for m in &n.markers {
            if m.len() < 2
                || m.len() > 64
                || !m.starts_with('/')
                || !m.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!(
                    "name marker {m:?} must be 2-64 visible ASCII characters starting with '/'"
                ));
            }
        }
        if let Some(s) = &n.name_setting
            && (s.is_empty()
                || s.len() > 64
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            return Err(format!(
                "name setting {s:?} must be 1-64 letters, digits, '-' or '_'"
            ));
        }
        let create_on_push = match n.create_on_push {
            None => None,
            Some(doc) if doc.len() > MAX_CREATE_SETTINGS => {
                return Err(format!(
                    "create-on-push settings are longer than {MAX_CREATE_SETTINGS} bytes"
                ));
            }
            Some(doc) => match serde_json::from_str::<serde_json::Value>(&doc) {
                Ok(serde_json::Value::Object(map)) => Some(map),
                _ => return Err("create-on-push settings must be a JSON object".to_string()),
            },
        };
        Ok(Naming {
            markers: n.markers,
            name_setting: n.name_setting,
            create_on_push,
        })
    }

    /// The repository name in `rest`, the path after the route prefix: up to
    /// the last occurrence of a marker. `None` for a path naming none.
    pub fn name_in<'a>(&self, rest: &'a str) -> Option<&'a str> {
        let at = self
            .markers
            .iter()
            .filter_map(|m| rest.rfind(m.as_str()))
            .max()?;
        Some(&rest[..at]).filter(|n| !n.is_empty())
    }

    /// The client-facing name of a repository with these distributor
    /// settings and this id.
    pub fn name_of<'a>(&self, id: &'a str, settings: &'a serde_json::Value) -> &'a str {
        self.name_setting
            .as_deref()
            .and_then(|k| settings.get(k))
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .unwrap_or(id)
    }

    /// Distributor settings for a repository created on a push to `name`.
    pub fn settings_for(&self, name: &str) -> Option<serde_json::Value> {
        let mut settings = self.create_on_push.clone()?;
        if let Some(k) = &self.name_setting {
            settings.insert(k.clone(), serde_json::Value::String(name.to_string()));
        }
        Some(serde_json::Value::Object(settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker() -> Naming {
        Naming::from_wire(wire::Naming {
            markers: vec![
                "/manifests/".into(),
                "/blobs/".into(),
                "/tags/list".into(),
                "/referrers/".into(),
            ],
            name_setting: Some("repo_registry_id".into()),
            create_on_push: Some(r#"{"auto_publish":true}"#.into()),
        })
        .unwrap()
    }

    #[test]
    fn names_end_at_the_last_marker() {
        let n = docker();
        assert_eq!(n.name_in("my/app/manifests/latest"), Some("my/app"));
        assert_eq!(n.name_in("a/blobs/b/manifests/x"), Some("a/blobs/b"));
        assert_eq!(
            n.name_in("a/manifests/b/blobs/sha256:x"),
            Some("a/manifests/b")
        );
        assert_eq!(n.name_in("a/b/tags/list"), Some("a/b"));
        assert_eq!(n.name_in("a/blobs/uploads/"), Some("a"));
        assert_eq!(n.name_in("_catalog"), None);
        assert_eq!(n.name_in(""), None);
        assert_eq!(n.name_in("/manifests/x"), None);
    }

    #[test]
    fn created_repositories_carry_their_name() {
        let n = docker();
        let s = n.settings_for("team/app").unwrap();
        assert_eq!(s["repo_registry_id"], "team/app");
        assert_eq!(s["auto_publish"], true);
        assert_eq!(n.name_of("team-app", &s), "team/app");
        assert_eq!(n.name_of("plain", &serde_json::json!({})), "plain");
    }

    #[test]
    fn hostile_declarations_are_refused() {
        let bad = |markers: Vec<&str>, setting: Option<&str>, create: Option<&str>| {
            Naming::from_wire(wire::Naming {
                markers: markers.into_iter().map(String::from).collect(),
                name_setting: setting.map(String::from),
                create_on_push: create.map(String::from),
            })
            .is_err()
        };
        assert!(bad(vec!["manifests/"], None, None));
        assert!(bad(vec!["/"], None, None));
        assert!(bad(vec!["/a b/"], None, None));
        assert!(bad(vec![], Some("a.b"), None));
        assert!(bad(vec![], None, Some("[1]")));
        assert!(bad(vec![], None, Some(&"x".repeat(5000))));
        assert!(!bad(vec!["/x/"], Some("name"), Some("{}")));
    }
}
