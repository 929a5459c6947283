//! How a plugin's content type spells an error ([`ErrorFormat`], from its
//! `describe`): the host renders its own refusals on the plugin's routes
//! ([`Refusal`]) and the plugin's `error` plans with it, so the generic host
//! carries no content type's envelope, codes or headers.
//!
//! A format is checked when the plugin loads ([`ErrorFormat::from_wire`]):
//! one the host cannot send safely (no `{message}`, a template over
//! [`MAX_TEMPLATE`], a content type or header that is not visible ASCII, too
//! many headers, ...) refuses the plugin, like invalid names do. Rendering
//! then cannot fail, and a body is at most the template plus its code and
//! message.

use crate::bindings::exports::wharf::plugin::plugin as wire;

/// Largest error template, in bytes.
pub const MAX_TEMPLATE: usize = 4096;
/// Largest content type, code, header name or header value, in bytes.
const MAX_WORD: usize = 256;
/// Most headers a format may add.
const MAX_HEADERS: usize = 16;
/// Headers the host sets itself (framing, content type, the token
/// challenge): a format may not add them.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "www-authenticate",
    "location",
    "set-cookie",
];

/// A refusal the host makes on a plugin's routes before, or instead of,
/// asking the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The path cannot be canonicalised.
    NameInvalid,
    /// Credentials are needed, or the ones sent are invalid.
    Unauthorized,
    /// The caller may not do this.
    Denied,
    /// A write names a repository that does not exist.
    NameUnknown,
    /// A plan serves a blob the admitted repository does not serve.
    BlobUnknown,
    /// An upload's body or range is wrong.
    UploadInvalid,
    /// An upload session does not exist.
    UploadUnknown,
    /// A body is larger than allowed.
    TooLarge,
    /// Every instance is busy.
    TooManyRequests,
    /// A backend is not answering.
    Unavailable,
    /// The host or the plugin failed.
    Internal,
}

impl Refusal {
    /// The kebab-case name: the code of a format that does not list it.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::NameInvalid => "name-invalid",
            Refusal::Unauthorized => "unauthorized",
            Refusal::Denied => "denied",
            Refusal::NameUnknown => "name-unknown",
            Refusal::BlobUnknown => "blob-unknown",
            Refusal::UploadInvalid => "upload-invalid",
            Refusal::UploadUnknown => "upload-unknown",
            Refusal::TooLarge => "too-large",
            Refusal::TooManyRequests => "too-many-requests",
            Refusal::Unavailable => "unavailable",
            Refusal::Internal => "internal",
        }
    }

    fn from_wire(r: wire::Refusal) -> Self {
        match r {
            wire::Refusal::NameInvalid => Refusal::NameInvalid,
            wire::Refusal::Unauthorized => Refusal::Unauthorized,
            wire::Refusal::Denied => Refusal::Denied,
            wire::Refusal::NameUnknown => Refusal::NameUnknown,
            wire::Refusal::BlobUnknown => Refusal::BlobUnknown,
            wire::Refusal::UploadInvalid => Refusal::UploadInvalid,
            wire::Refusal::UploadUnknown => Refusal::UploadUnknown,
            wire::Refusal::TooLarge => Refusal::TooLarge,
            wire::Refusal::TooManyRequests => Refusal::TooManyRequests,
            wire::Refusal::Unavailable => Refusal::Unavailable,
            wire::Refusal::Internal => Refusal::Internal,
        }
    }
}

/// A plugin's error format, checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFormat {
    content_type: String,
    template: String,
    codes: Vec<(Refusal, String)>,
    headers: Vec<(String, String)>,
    json: bool,
}

impl Default for ErrorFormat {
    fn default() -> Self {
        Self::neutral()
    }
}

/// An error answer rendered in a plugin's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered<'a> {
    pub content_type: &'a str,
    pub body: Vec<u8>,
    /// (name, value), checked to be valid HTTP header names and values.
    pub headers: &'a [(String, String)],
}

fn visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_WORD
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl ErrorFormat {
    /// The host's own shape, the admin API's:
    /// `{"error":{"code":"...","message":"..."}}` with kebab-case codes.
    pub fn neutral() -> Self {
        ErrorFormat {
            content_type: "application/json".into(),
            template: r#"{"error":{"code":"{code}","message":"{message}"}}"#.into(),
            codes: Vec::new(),
            headers: Vec::new(),
            json: true,
        }
    }

    /// Check a format a plugin declared; `Err` says what is wrong.
    pub fn new(
        content_type: String,
        template: String,
        codes: Vec<(Refusal, String)>,
        headers: Vec<(String, String)>,
    ) -> Result<Self, String> {
        if content_type.is_empty() || content_type.len() > 128 || !visible_ascii(&content_type) {
            return Err(format!(
                "error content type {:?} must be 1-128 visible ASCII characters",
                truncated(&content_type)
            ));
        }
        if template.len() > MAX_TEMPLATE {
            return Err(format!(
                "error template of {} bytes is over {MAX_TEMPLATE}",
                template.len()
            ));
        }
        if !template.contains("{message}") {
            return Err("error template has no {message}".into());
        }
        for (r, code) in &codes {
            if code.is_empty() || code.len() > MAX_WORD || !visible_ascii(code) {
                return Err(format!(
                    "error code for {} must be 1-{MAX_WORD} visible ASCII characters",
                    r.name()
                ));
            }
        }
        if headers.len() > MAX_HEADERS {
            return Err(format!(
                "{} error headers, at most {MAX_HEADERS}",
                headers.len()
            ));
        }
        for (name, value) in &headers {
            if !token(name) || value.len() > MAX_WORD || !visible_ascii(value) {
                return Err(format!(
                    "error header {:?} is not a valid header of at most {MAX_WORD} visible ASCII characters",
                    truncated(name)
                ));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(format!("error header {name} is the host's to set"));
            }
        }
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let json = essence == "application/json" || essence.ends_with("+json");
        Ok(ErrorFormat {
            content_type,
            template,
            codes,
            headers,
            json,
        })
    }

    pub(crate) fn from_wire(f: wire::ErrorFormat) -> Result<Self, String> {
        Self::new(
            f.content_type,
            f.template,
            f.codes
                .into_iter()
                .map(|(r, c)| (Refusal::from_wire(r), c))
                .collect(),
            f.headers.into_iter().map(|h| (h.name, h.value)).collect(),
        )
    }

    /// The plugin's code for a refusal.
    pub fn code(&self, r: Refusal) -> &str {
        self.codes
            .iter()
            .find(|(k, _)| *k == r)
            .map(|(_, c)| c.as_str())
            .unwrap_or(r.name())
    }

    /// The headers every error answer carries.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// A host refusal in this format.
    pub fn refusal(&self, r: Refusal, message: &str) -> Rendered<'_> {
        self.render(self.code(r), message)
    }

    /// An error with `code` and `message` in this format (a refusal, or the
    /// plugin's own `error` plan).
    pub fn render(&self, code: &str, message: &str) -> Rendered<'_> {
        let escape = |s: &str| -> String {
            if self.json {
                let quoted = serde_json::to_string(s).expect("a string serialises");
                quoted[1..quoted.len() - 1].to_string()
            } else {
                s.to_string()
            }
        };
        let (code, message) = (escape(code), escape(message));
        // One pass, so a code or message holding `{message}` is not
        // replaced again.
        let mut body = String::with_capacity(self.template.len() + code.len() + message.len());
        let mut rest = self.template.as_str();
        while let Some(i) = rest.find('{') {
            body.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(t) = tail.strip_prefix("{code}") {
                body.push_str(&code);
                rest = t;
            } else if let Some(t) = tail.strip_prefix("{message}") {
                body.push_str(&message);
                rest = t;
            } else {
                body.push('{');
                rest = &tail[1..];
            }
        }
        body.push_str(rest);
        Rendered {
            content_type: &self.content_type,
            body: body.into_bytes(),
            headers: &self.headers,
        }
    }
}

fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker() -> ErrorFormat {
        ErrorFormat::new(
            "application/json".into(),
            r#"{"errors":[{"code":"{code}","message":"{message}","detail":{}}]}"#.into(),
            vec![(Refusal::NameInvalid, "NAME_INVALID".into())],
            vec![(
                "Docker-Distribution-API-Version".into(),
                "registry/2.0".into(),
            )],
        )
        .unwrap()
    }

    #[test]
    fn renders_json_escaped_codes_and_messages() {
        let f = docker();
        let r = f.refusal(Refusal::NameInvalid, "a \"quoted\"\nline {code} \\ \u{1}");
        let body = String::from_utf8(r.body).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "NAME_INVALID");
        assert_eq!(
            v["errors"][0]["message"],
            "a \"quoted\"\nline {code} \\ \u{1}"
        );
        // What the host wrote before formats existed, byte for byte.
        assert_eq!(
            body,
            r#"{"errors":[{"code":"NAME_INVALID","message":"a \"quoted\"\nline {code} \\ \u0001","detail":{}}]}"#
        );
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.headers.len(), 1);
    }

    #[test]
    fn unlisted_refusals_use_their_names_and_the_neutral_shape_is_the_apis() {
        let f = ErrorFormat::neutral();
        let body = f.refusal(Refusal::TooManyRequests, "wait").body;
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"error":{"code":"too-many-requests","message":"wait"}}"#
        );
        assert_eq!(docker().code(Refusal::Denied), "denied");
    }

    #[test]
    fn text_formats_are_not_escaped() {
        let f = ErrorFormat::new(
            "text/plain; charset=utf-8".into(),
            "{code}: {message}\n".into(),
            vec![],
            vec![],
        )
        .unwrap();
        let body = f.render("x", "say \"hi\"").body;
        assert_eq!(body, b"x: say \"hi\"\n");
        let f = ErrorFormat::new(
            "application/problem+json".into(),
            "{\"detail\":\"{message}\"}".into(),
            vec![],
            vec![],
        )
        .unwrap();
        assert_eq!(f.render("c", "\"").body, b"{\"detail\":\"\\\"\"}");
    }

    #[test]
    fn hostile_formats_are_refused() {
        let ok = |ct: &str, t: &str, h: Vec<(String, String)>| {
            ErrorFormat::new(ct.into(), t.into(), vec![], h)
        };
        assert!(
            ok("application/json", "{code}", vec![]).is_err(),
            "no {{message}}"
        );
        let huge = format!("{{message}}{}", " ".repeat(MAX_TEMPLATE));
        assert!(ok("application/json", &huge, vec![]).is_err(), "huge");
        assert!(ok("application/json\r\nX-Evil: 1", "{message}", vec![]).is_err());
        assert!(ok("", "{message}", vec![]).is_err());
        assert!(ok(&"a".repeat(200), "{message}", vec![]).is_err());
        let h = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        assert!(ok("text/plain", "{message}", h("X-A", "1\r\nX-B: 2")).is_err());
        assert!(ok("text/plain", "{message}", h("X A", "1")).is_err());
        assert!(ok("text/plain", "{message}", h("Content-Length", "1")).is_err());
        assert!(ok("text/plain", "{message}", h("www-authenticate", "x")).is_err());
        let many = (0..17).map(|i| (format!("x-{i}"), "1".into())).collect();
        assert!(ok("text/plain", "{message}", many).is_err());
        let bad_code = ErrorFormat::new(
            "text/plain".into(),
            "{message}".into(),
            vec![(Refusal::Denied, "a\nb".into())],
            vec![],
        );
        assert!(bad_code.is_err());
        assert!(ok("text/plain", "{message}", h("X-A", "1")).is_ok());
    }
}
