//! The API reference page, `/api/v1/docs`: a page, a script and a style
//! sheet of our own (`docs/`, compiled into the binary) that fetch
//! `openapi.json` from the same server and render every path, method,
//! parameter, request body and response, grouped by tag, with anchors.
//! Nothing comes from another host, so the page works offline; it is
//! public, like the document it renders.
//!
//! Every asset is served with a strict Content-Security-Policy: script,
//! style and fetches from this server only, no inline script or style, no
//! frames, no forms. The page names its assets relatively (`docs/app.js`,
//! `openapi.json`), so it works behind a path prefix too.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("docs/index.html");
const SCRIPT: &str = include_str!("docs/app.js");
const STYLE: &str = include_str!("docs/app.css");

/// What the page may load and do: only this server's script, style and
/// JSON.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// A file of one of our own pages (this one, the console) with the
/// headers they all carry: its type, [`CONTENT_SECURITY_POLICY`], no
/// sniffing, no referrer, and revalidation at each use.
pub fn asset(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // Small, and must change with the binary: revalidate every time.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body.into()).into_response()
}

/// `GET /api/v1/docs`: the page.
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /api/v1/docs/app.js`: the script that renders the document.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /api/v1/docs/app.css`: the page's style.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_name_no_other_host_and_the_page_no_inline_script() {
        for (name, text) in [("page", PAGE), ("script", SCRIPT), ("style", STYLE)] {
            for scheme in [
                "http://",
                "https://",
                "src=\"//",
                "href=\"//",
                "url(",
                "@import",
            ] {
                assert!(!text.contains(scheme), "the {name} contains {scheme}");
            }
        }
        assert!(PAGE.contains(r#"<script src="docs/app.js" defer></script>"#));
        assert_eq!(PAGE.matches("<script").count(), 1, "one script, by src");
        assert!(!PAGE.contains("<style") && !PAGE.contains("style=\""));
        assert!(PAGE.contains(r#"href="docs/app.css""#));
        assert!(PAGE.contains(r#"data-openapi="openapi.json""#));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }

    #[test]
    fn the_script_never_writes_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "app.js uses {sink}");
        }
    }
}
