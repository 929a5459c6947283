//! JSON a plugin reads: the settings and parameters the host hands over as
//! JSON text (`importer_config`, `distributor_config`, upload `params`), and
//! the versioned documents a publish stored (publication indexes).

use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// Settings from JSON text; empty or blank text means "nothing set",
/// `T::default()`. The caller words the error (which settings, what to fix).
pub fn settings<T: DeserializeOwned + Default>(json: &str) -> Result<T, serde_json::Error> {
    if json.trim().is_empty() {
        Ok(T::default())
    } else {
        serde_json::from_str(json)
    }
}

/// A document a publish stores and `resolve` reads back (a publication
/// index): canonical JSON bytes out, and in only at its own format version.
pub trait Versioned: Serialize + DeserializeOwned {
    /// Its name in errors.
    const WHAT: &'static str = "publication index";
    /// The field holding the format version.
    const VERSION_FIELD: &'static str;
    /// The format version this code reads and writes.
    const VERSION: u64;

    /// Canonical bytes: with sorted maps (`BTreeMap`, `BTreeSet`), equal
    /// content gives equal bytes, so equal digests.
    fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a versioned document serializes")
    }

    /// Parse bytes [`Self::to_bytes`] wrote, refusing other versions
    /// ([`versioned`]).
    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        versioned(bytes, Self::WHAT, Self::VERSION_FIELD, Self::VERSION)
    }
}

/// A JSON object whose format version is the number in its field
/// `version_field`, read only if that version is `version`: the version is
/// checked first, so a document of another format says so instead of
/// failing to parse. `what` names the document in errors ("publication
/// index"); another version asks for a new publish.
pub fn versioned<T: DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    version_field: &str,
    version: u64,
) -> Result<T, String> {
    let invalid = |e: serde_json::Error| format!("{what} is not valid: {e}");
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = VersionOf(version_field)
        .deserialize(&mut de)
        .map_err(invalid)?
        .ok_or_else(|| format!("{what} is not valid: it has no `{version_field}`"))?;
    if found != version {
        return Err(format!(
            "{what} version {found} is not {version}: publish the repository again"
        ));
    }
    serde_json::from_slice(bytes).map_err(invalid)
}

/// The number in one field of a JSON object, the rest skipped.
struct VersionOf<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for VersionOf<'_> {
    type Value = Option<u64>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for VersionOf<'_> {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a JSON object with a `{}` number", self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.0 && found.is_none() {
                found = Some(map.next_value::<u64>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    struct Config {
        feed: Option<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Doc {
        v: u32,
        items: Vec<u32>,
    }

    #[test]
    fn blank_settings_are_the_defaults() {
        assert_eq!(settings::<Config>(" \n").unwrap(), Config::default());
        let c: Config = settings(r#"{"feed":"http://x/"}"#).unwrap();
        assert_eq!(c.feed.as_deref(), Some("http://x/"));
        assert!(settings::<Config>("[1]").is_err());
    }

    #[test]
    fn versions_are_checked_before_the_format() {
        let doc: Doc = versioned(br#"{"items":[1],"v":1}"#, "index", "v", 1).unwrap();
        assert_eq!(
            doc,
            Doc {
                v: 1,
                items: vec![1]
            }
        );
        let e = versioned::<Doc>(br#"{"v":2,"whatever":true}"#, "index", "v", 1).unwrap_err();
        assert_eq!(e, "index version 2 is not 1: publish the repository again");
        for bad in [
            &b"nope"[..],
            b"[]",
            br#"{"items":[]}"#,
            br#"{"v":"1"}"#,
            br#"{"v":1}"#,
        ] {
            let e = versioned::<Doc>(bad, "index", "v", 1).unwrap_err();
            assert!(e.starts_with("index is not valid"), "{e}");
        }
    }
}
