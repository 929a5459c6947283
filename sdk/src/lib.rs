//! `wharf-sdk`: everything a Wharf content-type plugin depends on.
//!
//! A plugin is a `cdylib` crate that implements [`Guest`] and exports it:
//!
//! ```ignore
//! struct MyType;
//! impl wharf_sdk::Guest for MyType { /* describe, upload, sync, publish, select, edit, resolve, write, pull, locate */ }
//! wharf_sdk::export!(MyType);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the plugin. See `docs/plugin-guide.md`.
//!
//! Besides the bindings, the helpers every plugin needs:
//!
//! - the exports' types, re-exported: [`Guest`], [`Info`], [`Plan`],
//!   [`Written`], and for `select` and `edit` (0.6.0) [`UnitRef`], [`Change`]
//!   and [`TagEdit`], and for `pull` and `locate` (0.7.0) [`BlobDownload`];
//!   [`Error`] has constructors for the codes those calls
//!   answer (`invalid`, `not-found`, `conflict`, `unsupported`);
//! - [`host`]: the [`host::Host`] trait over the imports a task uses (blobs,
//!   units, fetch, progress, log), [`host::Sessions`] and
//!   [`host::UploadSource`], and their real implementations
//!   ([`host::WasmHost`], [`host::WasmUpload`]); logic written against the
//!   traits runs natively in tests;
//! - `testing` (feature `testing`): `FakeHost`, an in-memory host for those
//!   tests;
//! - [`adopt`]: copied units replacing their namesakes (the `adopt` edit);
//! - [`paging`]: whole unit listings and key-prefix listings over `units.list`,
//!   the units naming a blob over `units.naming` (0.7.2), and the units
//!   changed since a version over `units.changes` (0.7.1: a publish that
//!   starts from `publications.previous`);
//! - [`capped`]: reading a source or a stored blob whole, with a size cap;
//! - [`cache`]: a bounded per-instance cache of parsed immutable documents
//!   (publication indexes, manifests) by digest;
//! - [`percent`]: percent-encoding and -decoding of paths and query strings;
//! - [`json`]: repository settings from their JSON text, and versioned JSON
//!   documents (publication indexes).

pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "content-plugin",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "wharf_sdk::bindings",
        generate_all,
    });
}

pub mod adopt;
pub mod cache;
pub mod capped;
pub mod challenge;
pub mod host;
pub mod json;
pub mod paging;
pub mod percent;
mod reader;
#[cfg(feature = "testing")]
pub mod testing;

pub use bindings::exports::wharf::plugin::plugin::{
    Body, BodyTarget, Change, ContentAction, ContentEvent, ContentType, ErrorFormat, Failure,
    Guest, Info, Naming, Plan, Published, Refusal, Request, ServeBlob, TagEdit, UnitRef, WritePlan,
    Written,
};
pub use bindings::wharf::plugin::blobs::{self, Source};
pub use bindings::wharf::plugin::fetch::{self, BlobDownload};
pub use bindings::wharf::plugin::log;
pub use bindings::wharf::plugin::publications;
pub use bindings::wharf::plugin::repositories;
pub use bindings::wharf::plugin::sessions;
pub use bindings::wharf::plugin::types::{Digest, Error, Header, Repository, Summary};
pub use bindings::wharf::plugin::units::{self, Unit};
pub use reader::SourceReader;

/// The WIT package version this SDK was built against.
pub const WIT_VERSION: &str = "0.7.2";

/// Export a type implementing [`Guest`] as the plugin.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ident) => {
        $crate::bindings::export!($ty with_types_in $crate::bindings);
    };
}

impl Error {
    /// The answer of a content type that has no pull-through caches or
    /// on-demand downloads to `pull` and `locate` (code `unsupported`).
    pub fn no_remote_content(what: &str) -> Self {
        Self::unsupported(format!(
            "this content type does not fetch {what} from a feed on demand"
        ))
    }

    /// An error with a stable `code` and a human `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Error {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// The input was malformed or hostile.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid-input", message)
    }

    /// `select` or `edit` named a reference the content type has no words
    /// for (code `invalid`).
    pub fn invalid_reference(message: impl Into<String>) -> Self {
        Self::new("invalid", message)
    }

    /// `select` or `edit` named a reference the repository does not hold
    /// (code `not-found`).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("not-found", message)
    }

    /// An `edit` that would break other content of the repository (code
    /// `conflict`).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new("conflict", message)
    }

    /// An `edit` the content type cannot make (code `unsupported`).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new("unsupported", message)
    }
}

impl UnitRef {
    /// The unit of type `unit_type` with key `key`.
    pub fn new(unit_type: &str, key: impl Into<String>) -> Self {
        UnitRef {
            unit_type: unit_type.to_string(),
            key: key.into(),
        }
    }
}

impl Summary {
    /// What an `edit` did: units added and removed, with a message.
    pub fn edited(units_added: u64, units_removed: u64, message: impl Into<String>) -> Self {
        Summary {
            units_added,
            units_removed,
            bytes_stored: 0,
            message: message.into(),
        }
    }
}

impl ErrorFormat {
    /// Wharf's neutral shape, the admin API's:
    /// `{"error":{"code":"...","message":"..."}}` with each refusal's
    /// kebab-case name as its code. Add codes with [`ErrorFormat::code`].
    pub fn neutral() -> Self {
        Self::json(r#"{"error":{"code":"{code}","message":"{message}"}}"#)
    }

    /// Wharf's own shape with the admin API's codes for the host's
    /// refusals (`unauthenticated`, `forbidden`, `not-found`, `busy`;
    /// `invalid-path` for a path the host cannot canonicalise): for a
    /// content type with no error convention of its own.
    pub fn wharf() -> Self {
        Self::neutral()
            .code(Refusal::NameInvalid, "invalid-path")
            .code(Refusal::Unauthorized, "unauthenticated")
            .code(Refusal::Denied, "forbidden")
            .code(Refusal::NameUnknown, "not-found")
            .code(Refusal::BlobUnknown, "not-found")
            .code(Refusal::TooManyRequests, "busy")
    }

    /// A JSON error body (`application/json`): `{code}` and `{message}` in
    /// `template` are replaced by the host, escaped as inside a JSON string
    /// (so write them between quotes). The template must contain
    /// `{message}` and be at most 4 KiB, or the host refuses the plugin.
    pub fn json(template: &str) -> Self {
        ErrorFormat {
            content_type: "application/json".to_string(),
            template: template.to_string(),
            codes: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// The content type's code for one of the host's refusals.
    pub fn code(mut self, refusal: Refusal, code: &str) -> Self {
        self.codes.retain(|(r, _)| *r != refusal);
        self.codes.push((refusal, code.to_string()));
        self
    }

    /// A header every error answer on the plugin's routes carries.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.to_string(),
            value: value.to_string(),
        });
        self
    }
}

impl Naming {
    /// Repositories named by their ids, in the path up to the last of
    /// `markers`; no creation on push.
    pub fn by_id(markers: &[&str]) -> Self {
        Naming {
            markers: markers.iter().map(|m| m.to_string()).collect(),
            name_setting: None,
            create_on_push: None,
        }
    }
}

impl Default for ErrorFormat {
    fn default() -> Self {
        Self::neutral()
    }
}

impl Written {
    /// An answer that changes nothing (and publishes nothing).
    pub fn answer(plan: Plan) -> Self {
        Written {
            plan,
            publish: false,
            events: Vec::new(),
        }
    }

    /// The answer of a content type that takes no writes: 405.
    pub fn unsupported(req: &Request) -> Self {
        Self::answer(Plan::Error(Failure {
            status: 405,
            code: "UNSUPPORTED".to_string(),
            message: format!("{} {} changes nothing here", req.method, req.path),
        }))
    }
}

/// Log a message through the host, attributed to the current call.
pub fn info(message: impl AsRef<str>) {
    log::log(log::Level::Info, message.as_ref());
}

/// Log a warning through the host.
pub fn warn(message: impl AsRef<str>) {
    log::log(log::Level::Warn, message.as_ref());
}
