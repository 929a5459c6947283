//! The content side: `GET /files/<base path>/<relative path>` resolved into a
//! plan. The host serves the blob (Range, ETag, HEAD); the plugin only says
//! which one.
//!
//! Base paths may have several components, so the publication is found by
//! trying the path's prefixes, longest first: with publications `isos` and
//! `isos/beta`, `/files/isos/beta/x.iso` is `x.iso` of `isos/beta`.

use crate::index::PublicationIndex;
use crate::manifest;
use crate::paths::{self, MAX_BASE_PATH};
use std::rc::Rc;
use wharf_sdk::publications::Publication;
use wharf_sdk::{Body, ErrorFormat, Failure, Header, Plan, Request, ServeBlob, percent};

/// The URL prefix the plugin answers.
pub const ROUTE: &str = "/files/";

/// What resolving reads: publications, and their parsed indexes.
pub trait Registry {
    fn lookup(&mut self, name: &str) -> Option<Publication>;
    fn index(&mut self, digest: &str) -> Result<Rc<PublicationIndex>, String>;
}

/// Wharf's own error shape and codes (the admin API's,
/// `{"error":{"code":"...","message":"..."}}`), for the host's refusals on
/// `/files/` and this plugin's failures.
pub fn error_format() -> ErrorFormat {
    ErrorFormat::wharf()
}

fn failure(status: u16, code: &str, message: impl Into<String>) -> Plan {
    Plan::Error(Failure {
        status,
        code: code.to_string(),
        message: message.into(),
    })
}

fn not_found(message: impl Into<String>) -> Plan {
    failure(404, "not-found", message)
}

/// 405 with the `Allow` header HTTP asks for (a `failure` cannot carry
/// headers, so this is a body in the host's error shape).
fn method_not_allowed(method: &str) -> Plan {
    let message = format!("{method} is not supported here; use GET or HEAD");
    let body = serde_json::json!({
        "errors": [{"code": "method-not-allowed", "message": message, "detail": {}}]
    });
    Plan::Body(Body {
        status: 405,
        content_type: "application/json".to_string(),
        headers: vec![Header {
            name: "allow".to_string(),
            value: "GET, HEAD".to_string(),
        }],
        body: body.to_string().into_bytes(),
    })
}

fn blob(digest: &str, media_type: &str) -> Plan {
    Plan::Blob(ServeBlob {
        digest: digest.to_string(),
        media_type: media_type.to_string(),
        headers: Vec::new(),
    })
}

/// The decoded components of a request path under [`ROUTE`].
pub fn components(path: &str) -> Result<Vec<String>, Plan> {
    let usage = || {
        not_found(format!(
            "no file at {path}: ask for /files/<base path>/<relative path> or /files/<base path>/{}",
            manifest::FILE_NAME
        ))
    };
    let rest = path.strip_prefix(ROUTE).ok_or_else(usage)?;
    if rest.is_empty() {
        return Err(usage());
    }
    let mut out = Vec::new();
    for raw in rest.split('/') {
        let c = percent::decode_strict(raw).map_err(|e| failure(400, "invalid-path", e))?;
        // An encoded '/' is data, not a separator, and no stored file has
        // one in a component.
        if c.contains('/') {
            return Err(not_found(format!("no file at {path}")));
        }
        out.push(c);
    }
    // Once decoded, the path must be one a file could have been stored at:
    // this refuses `..`, `.`, `//`, trailing `/` and control characters.
    paths::validate(&out.join("/"), "request path", usize::MAX)
        .map_err(|e| not_found(format!("no file at {path}: {e}")))?;
    Ok(out)
}

/// Resolve a request on the plugin's routes.
pub fn resolve<R: Registry>(registry: &mut R, req: &Request) -> Plan {
    if req.method != "GET" && req.method != "HEAD" {
        return method_not_allowed(&req.method);
    }
    let parts = match components(&req.path) {
        Ok(parts) => parts,
        Err(plan) => return plan,
    };
    // The last component is always (part of) the file, so a base path has
    // at most len - 1 components.
    for split in (1..parts.len()).rev() {
        let base = parts[..split].join("/");
        if base.len() > MAX_BASE_PATH {
            continue;
        }
        if let Some(publication) = registry.lookup(&base) {
            return serve(registry, &publication, &parts[split..].join("/"));
        }
    }
    not_found(format!("no publication serves {}", req.path))
}

fn serve<R: Registry>(registry: &mut R, publication: &Publication, file: &str) -> Plan {
    let index = match registry.index(&publication.index) {
        Ok(index) => index,
        Err(e) => {
            return failure(
                500,
                "index-unreadable",
                format!("publication {}: {e}", publication.name),
            );
        }
    };
    if file == manifest::FILE_NAME {
        return blob(&index.manifest.digest, "text/plain");
    }
    match index.files.get(file) {
        Some(stored) => blob(&stored.digest, "application/octet-stream"),
        None => not_found(format!(
            "publication {} has no file {file:?}",
            publication.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Stored;
    use crate::manifest::Entry;
    use std::collections::HashMap;

    use wharf_sdk::testing::digest_of as d;

    /// Publications by name, each with an index listing `files`.
    #[derive(Default)]
    struct FakeRegistry {
        publications: HashMap<String, Rc<PublicationIndex>>,
        lookups: Vec<String>,
    }

    impl FakeRegistry {
        fn publish(&mut self, name: &str, manifest: char, files: &[(&str, char)]) {
            let entries: Vec<Entry> = files
                .iter()
                .map(|(p, c)| Entry {
                    relative_path: p.to_string(),
                    digest: d(*c),
                    size: 1,
                })
                .collect();
            let stored = Stored {
                digest: d(manifest),
                size: 10,
            };
            let index = PublicationIndex::new(stored, &entries);
            self.publications.insert(name.to_string(), Rc::new(index));
        }
    }

    impl Registry for FakeRegistry {
        fn lookup(&mut self, name: &str) -> Option<Publication> {
            self.lookups.push(name.to_string());
            self.publications.contains_key(name).then(|| Publication {
                name: name.to_string(),
                repository_id: "r".to_string(),
                index: name.to_string(),
                config: "{}".to_string(),
            })
        }

        fn index(&mut self, digest: &str) -> Result<Rc<PublicationIndex>, String> {
            match digest {
                "broken" => Err("not valid".to_string()),
                d => Ok(self.publications[d].clone()),
            }
        }
    }

    fn get(r: &mut FakeRegistry, method: &str, path: &str) -> Plan {
        resolve(
            r,
            &Request {
                method: method.to_string(),
                path: path.to_string(),
                query: String::new(),
                headers: Vec::new(),
                pulled: false,
            },
        )
    }

    fn served(plan: Plan) -> (String, String) {
        match plan {
            Plan::Blob(b) => (b.digest, b.media_type),
            other => panic!("expected a blob, got {other:?}"),
        }
    }

    fn status(plan: Plan) -> u16 {
        match plan {
            Plan::Error(f) => f.status,
            Plan::Body(b) => b.status,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn registry() -> FakeRegistry {
        let mut r = FakeRegistry::default();
        r.publish("isos", 'm', &[("a.iso", 'a'), ("dir/b c.iso", 'b')]);
        r.publish("isos/beta", 'n', &[("x.iso", 'x')]);
        r.publish("ü", 'u', &[("ファイル", 'f')]);
        r
    }

    #[test]
    fn serves_manifests_and_files() {
        let mut r = registry();
        assert_eq!(
            served(get(&mut r, "GET", "/files/isos/PULP_MANIFEST")),
            (d('m'), "text/plain".to_string())
        );
        assert_eq!(
            served(get(&mut r, "HEAD", "/files/isos/a.iso")),
            (d('a'), "application/octet-stream".to_string())
        );
        assert_eq!(
            served(get(&mut r, "GET", "/files/isos/dir/b%20c.iso")).0,
            d('b')
        );
        assert_eq!(
            served(get(
                &mut r,
                "GET",
                "/files/%C3%BC/%E3%83%95%E3%82%A1%E3%82%A4%E3%83%AB"
            ))
            .0,
            d('f')
        );
    }

    #[test]
    fn the_longest_base_path_wins() {
        let mut r = registry();
        assert_eq!(
            served(get(&mut r, "GET", "/files/isos/beta/x.iso")).0,
            d('x')
        );
        assert_eq!(
            served(get(&mut r, "GET", "/files/isos/beta/PULP_MANIFEST")).0,
            d('n')
        );
        // Found under the longer base path's publication only.
        assert_eq!(status(get(&mut r, "GET", "/files/isos/beta/a.iso")), 404);
        r.lookups.clear();
        get(&mut r, "GET", "/files/isos/dir/b%20c.iso");
        assert_eq!(r.lookups, ["isos/dir", "isos"]);
    }

    #[test]
    fn unknown_paths_are_404() {
        let mut r = registry();
        for path in [
            "/files/",
            "/files",
            "/files/isos",
            "/files/isos/",
            "/files/isos/missing",
            "/files/nope/a.iso",
            "/files/isos/dir",
            "/files/isos/dir/",
            "/files/isos//a.iso",
            "/files/isos/dir%2Fb%20c.iso",
            "/files/isos/../isos/a.iso",
            "/files/isos/%2E%2E/isos/a.iso",
            "/files/isos/./a.iso",
            "/files/isos/a.iso%00",
        ] {
            assert_eq!(status(get(&mut r, "GET", path)), 404, "{path}");
        }
        assert_eq!(status(get(&mut r, "GET", "/files/isos/a%zz")), 400);
    }

    #[test]
    fn only_get_and_head() {
        let mut r = registry();
        for method in ["POST", "PUT", "DELETE", "get"] {
            match get(&mut r, method, "/files/isos/a.iso") {
                Plan::Body(b) => {
                    assert_eq!(b.status, 405);
                    assert_eq!(b.headers[0].name, "allow");
                    let v: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
                    assert_eq!(v["errors"][0]["code"], "method-not-allowed");
                }
                other => panic!("{method}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unreadable_index_is_a_server_error() {
        let mut r = registry();
        r.publications.insert(
            "broken".into(),
            Rc::new(r.publications["isos"].as_ref().clone()),
        );
        assert_eq!(status(get(&mut r, "GET", "/files/broken/a.iso")), 500);
    }
}
