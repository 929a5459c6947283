//! Identifiers with meaning: repository, remote, task and upload ids.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Defines an id people choose: letters, digits, `.`, `-`, `_`; 1 to 128
/// characters; not `.` or `..`. Safe in URLs and as a lock key.
macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $error:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        #[derive(Debug, thiserror::Error)]
        #[error(
            "invalid {what} id {id:?}: use 1-128 letters, digits, '.', '-' or '_' (and not '.' or '..')",
            what = $what,
            id = .0
        )]
        pub struct $error(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                let ok = !s.is_empty()
                    && s.len() <= 128
                    && s != "."
                    && s != ".."
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
                if ok { Ok($name(s)) } else { Err($error(s)) }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.to_string().try_into()
            }
        }

        impl From<$name> for String {
            fn from(r: $name) -> String {
                r.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_id!(
    /// A repository id: 1-128 letters, digits, `.`, `-` or `_`, not `.` or
    /// `..`; safe in URLs and as a lock key.
    RepoId,
    InvalidRepoId,
    "repository"
);

name_id!(
    /// A remote's id (the upstream settings repositories refer to), spelt
    /// as a repository id.
    RemoteId,
    InvalidRemoteId,
    "remote"
);

/// A unit type name: 1-64 lowercase letters, digits, `-` or `_`.
pub fn is_unit_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A content unit's type as a plugin names it (`manifest`, `blob`, `tag`,
/// `file`, ...): 1-64 lowercase letters, digits, `-` or `_`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UnitType(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid unit type {0:?}: use 1-64 lowercase letters, digits, '-' or '_'")]
pub struct InvalidUnitType(pub String);

impl UnitType {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UnitType {
    type Error = InvalidUnitType;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if is_unit_type(&s) {
            Ok(UnitType(s))
        } else {
            Err(InvalidUnitType(s))
        }
    }
}

impl std::str::FromStr for UnitType {
    type Err = InvalidUnitType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.to_string().try_into()
    }
}

impl From<UnitType> for String {
    fn from(t: UnitType) -> String {
        t.0
    }
}

impl fmt::Display for UnitType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " id (a UUID v7: sortable by creation time).")]
        #[derive(
            Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            pub fn new() -> Self {
                $name(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

uuid_id!(TaskId, "task");
uuid_id!(UploadId, "upload");
uuid_id!(SessionId, "upload session");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        for ok in ["app", "my-app_1.0", "A"] {
            assert!(ok.parse::<RepoId>().is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é", &"x".repeat(129)] {
            assert!(bad.parse::<RepoId>().is_err(), "{bad}");
        }
    }
}
