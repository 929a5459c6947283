//! The web console, `/ui/`: one page, one ES module script and one style
//! sheet of our own (`console/`, compiled into the binary) that log in with
//! `POST /api/v1/login` and then use the same REST API as the CLI, with the
//! login token kept in the browser's session storage. Pages are addressed
//! by the URL's fragment (`/ui/#/repositories/app`), so the server serves
//! three files and nothing else; no other host is ever named, so it works
//! offline. See docs/console.md.
//!
//! Every answer carries the strict Content-Security-Policy of the API page
//! ([`super::docs::CONTENT_SECURITY_POLICY`]): script, style and fetches
//! from this server only, no inline script or style, no frames. The files
//! are public, like the API page: what they show comes from API calls that
//! are checked as any other.
//!
//! `--console-dir DIR` serves the three files from `DIR`, read at each
//! request, to work on the console without rebuilding the server.

use crate::app::App;
use crate::error::Error;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::sync::Arc;

/// A file of the console: its name under `/ui/` and in `--console-dir`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    built_in: &'static str,
}

const PAGE: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    built_in: include_str!("console/index.html"),
};

const ASSETS: [Asset; 3] = [
    PAGE,
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        built_in: include_str!("console/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        built_in: include_str!("console/app.css"),
    },
];

/// `/ui` (to `/ui/`), `/ui/` (the page) and `/ui/{file}` (its script and
/// style).
pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/ui", get(to_console))
        .route("/ui/", get(page))
        .route("/ui/{file}", get(file))
        .route_layer(axum::middleware::from_fn(crate::metrics::record_route))
}

/// `GET /ui`, and `GET /` on an admin-only listener: to the console's
/// page, relatively, so that it also works behind a path prefix.
pub async fn to_console() -> Redirect {
    Redirect::to("ui/")
}

async fn page(State(app): State<Arc<App>>) -> Response {
    serve(&app, &PAGE).await
}

async fn file(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => serve(&app, asset).await,
        None => Error::not_found(format!(
            "the console has no file {name:?}; open /ui/ for the console"
        ))
        .into_response(),
    }
}

/// The built-in copy, or `--console-dir`'s file as it is now.
async fn serve(app: &App, asset: &Asset) -> Response {
    let body = match &app.config.console_dir {
        None => Body::from(asset.built_in),
        Some(dir) => {
            let path = dir.join(asset.name);
            match tokio::fs::read(&path).await {
                Ok(bytes) => Body::from(bytes),
                Err(e) => {
                    return Error::not_found(format!(
                        "cannot read {} ({e}): --console-dir must hold index.html, app.js \
                         and app.css (host/server/src/http/console/ has them)",
                        path.display()
                    ))
                    .into_response();
                }
            }
        }
    };
    super::docs::asset(asset.content_type, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str) -> &'static str {
        ASSETS.iter().find(|a| a.name == name).unwrap().built_in
    }

    #[test]
    fn the_files_name_no_other_host_and_the_page_no_inline_script_or_style() {
        for asset in &ASSETS {
            for scheme in [
                "http://",
                "https://",
                "src=\"//",
                "href=\"//",
                "url(",
                "@import",
            ] {
                assert!(
                    !asset.built_in.contains(scheme),
                    "{} contains {scheme}",
                    asset.name
                );
            }
        }
        let page = text("index.html");
        assert!(page.contains(r#"<script type="module" src="app.js"></script>"#));
        assert_eq!(page.matches("<script").count(), 1, "one script, by src");
        assert!(!page.contains("<style") && !page.contains("style=\""));
        assert!(page.contains(r#"href="app.css""#));
        assert!(page.contains(r#"<html lang="en">"#));
        assert!(page.contains(r#"name="viewport""#), "readable on a phone");
    }

    #[test]
    fn the_script_never_writes_html_nor_puts_the_token_in_a_url() {
        let script = text("app.js");
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "localStorage",
        ] {
            assert!(!script.contains(sink), "app.js uses {sink}");
        }
        assert!(script.contains("sessionStorage"));
    }
}
