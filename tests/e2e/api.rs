//! The generic host through its REST API: validation, uploads (resume,
//! crash), repositories, notes, groups, copy, orphans.

use crate::support::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an API error: {v}"))
}

#[test]
fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    let s = Server::start();
    // Ids: invalid grammar, `..`, and duplicates.
    for bad in ["", "a/b", "..", "../etc", "x y", "é"] {
        let (code, v) = s.post_json(
            "/api/v1/repositories",
            &json!({"id": bad, "content_type": "docker"}),
        );
        assert_eq!(code, 400, "{bad:?}: {v}");
        assert_eq!(error_code(&v), "invalid-input");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid repository id"),
            "{v}"
        );
    }
    s.create_repo(json!({"id": "ok", "content_type": "docker"}));
    let (code, v) = s.post_json(
        "/api/v1/repositories",
        &json!({"id": "ok", "content_type": "docker"}),
    );
    assert_eq!((code, error_code(&v)), (409, "conflict"), "{v}");
    let (code, v) = s.post_json(
        "/api/v1/repositories",
        &json!({"id": "x", "content_type": "rpm"}),
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown content type \"rpm\""),
        "{v}"
    );
    let (code, v) = s.post_json(
        "/api/v1/repositories",
        &json!({"id": "x", "content_type": "docker", "bogus": 1}),
    );
    assert_eq!(code, 400, "unknown fields are refused: {v}");

    // Paths with `..` never reach the filesystem.
    for path in [
        "/api/v1/repositories/..%2F..%2Fetc",
        "/api/v1/uploads/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/repositories/ok/content?type=../../x",
    ] {
        let r = s.http.get(s.url(path)).send().unwrap();
        assert!(
            [400, 404].contains(&r.status().as_u16()),
            "{path}: {}",
            r.status()
        );
    }
    let r = s
        .http
        .get(s.url("/v2/..%2F..%2Fetc%2Fpasswd/blobs/sha256:00"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "registry path with ..");

    // Unknown repository, unknown endpoint: the one error shape.
    let (code, v) = s.get_json("/api/v1/repositories/nope");
    assert_eq!((code, error_code(&v)), (404, "not-found"));
    let (code, v) = s.get_json("/api/v1/nothing-here");
    assert_eq!((code, error_code(&v)), (404, "not-found"));
    let (_, repos) = s.get_json("/api/v1/repositories");
    assert_eq!(repos["items"].as_array().unwrap().len(), 1);
}

#[test]
fn uploads_resume_refuse_wrong_offsets_and_truncation() {
    let s = Server::start();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (code, up) = s.post_json("/api/v1/uploads", &json!({"size": data.len()}));
    assert_eq!(code, 201);
    let id = up["id"].as_str().unwrap();
    let put = |offset: usize, bytes: &[u8]| {
        let r = s
            .http
            .put(s.url(&format!("/api/v1/uploads/{id}?offset={offset}")))
            .body(bytes.to_vec())
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let (code, v) = put(0, &data[..1_000_000]);
    assert_eq!((code, v["offset"].as_u64()), (200, Some(1_000_000)));
    // A chunk at the wrong offset: 416 naming the right one; nothing stored.
    let (code, v) = put(5, &data[5..10]);
    assert_eq!(code, 416, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("offset 1000000"),
        "{v}"
    );
    // Content-Range works too.
    let r = s
        .http
        .put(s.url(&format!("/api/v1/uploads/{id}")))
        .header(
            "content-range",
            format!("bytes 1000000-1999999/{}", data.len()),
        )
        .body(data[1_000_000..2_000_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Past the declared size: refused, offset unchanged.
    let mut too_much = data[2_000_000..].to_vec();
    too_much.extend_from_slice(b"extra");
    let (code, _) = put(2_000_000, &too_much);
    assert_eq!(code, 400);
    let (_, v) = s.get_json(&format!("/api/v1/uploads/{id}"));
    assert_eq!(v["offset"], 2_000_000);
    // Importing an incomplete upload is refused.
    s.create_repo(json!({"id": "r", "content_type": "docker"}));
    let (code, v) = s.post_json("/api/v1/repositories/r/import", &json!({"upload_id": id}));
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("incomplete"),
        "{v}"
    );
    let (code, v) = put(2_000_000, &data[2_000_000..]);
    assert_eq!((code, v["offset"].as_u64()), (200, Some(data.len() as u64)));
}

/// Hash every blob file under the data directory: each must match its name.
fn assert_all_blobs_intact(data_dir: &std::path::Path) -> usize {
    let mut n = 0;
    let root = data_dir.join("blobs/sha256");
    for shard in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let hex = hex::encode(Sha256::digest(std::fs::read(&p).unwrap()));
            assert_eq!(
                p.file_name().unwrap().to_str().unwrap(),
                hex,
                "corrupt blob {}",
                p.display()
            );
            n += 1;
        }
    }
    n
}

#[test]
fn sigkill_during_upload_then_resume_and_import() {
    let mut s = Server::start();
    let image = images_dir().join("busybox.tar");
    let bytes = std::fs::read(&image).unwrap();
    let (_, up) = s.post_json("/api/v1/uploads", &json!({"size": bytes.len()}));
    let id = up["id"].as_str().unwrap().to_string();
    let half = bytes.len() / 2;
    let r = s
        .http
        .put(s.url(&format!("/api/v1/uploads/{id}?offset=0")))
        .body(bytes[..half].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Kill the server while a chunk is streaming in.
    let addr = s.addr.clone();
    let writer = std::thread::spawn(move || {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!(
            "PUT /api/v1/uploads/{id}?offset={half} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            bytes.len() - half
        );
        conn.write_all(head.as_bytes()).unwrap();
        // Send part of the chunk, then stall until the server dies.
        let _ = conn.write_all(&bytes[half..half + (bytes.len() - half) / 2]);
        let _ = conn.flush();
        std::thread::sleep(std::time::Duration::from_millis(500));
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    s.crash_and_restart();
    writer.join().unwrap();

    // The recorded offset is what was fsynced before the crash: resume there.
    let id = up["id"].as_str().unwrap();
    let (_, v) = s.get_json(&format!("/api/v1/uploads/{id}"));
    let offset = v["offset"].as_u64().unwrap() as usize;
    assert_eq!(offset, half, "the interrupted chunk was not recorded");
    let bytes = std::fs::read(&image).unwrap();
    let r = s
        .http
        .put(s.url(&format!("/api/v1/uploads/{id}?offset={offset}")))
        .body(bytes[offset..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    s.create_repo(json!({"id": "bb", "content_type": "docker"}));
    let t = s.repo_task("bb", "import", json!({"upload_id": id}));
    assert_eq!(t["state"], "finished", "{t}");
    assert!(assert_all_blobs_intact(&s.data_dir()) >= 3);
}

#[test]
fn notes_groups_copy_and_orphans() {
    let s = Server::start();
    for (id, env) in [("a", "prod"), ("b", "dev"), ("c", "prod")] {
        s.create_repo(json!({"id": id, "content_type": "docker", "notes": {"env": env}}));
    }
    let (_, v) = s.get_json("/api/v1/repositories?note=env=prod");
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "c"]);
    // Pagination.
    let (_, v) = s.get_json("/api/v1/repositories?limit=2");
    assert_eq!(
        (v["items"].as_array().unwrap().len(), v["next"].as_str()),
        (2, Some("b"))
    );
    let (_, v) = s.get_json("/api/v1/repositories?limit=2&after=b");
    assert_eq!(
        (v["items"].as_array().unwrap().len(), &v["next"]),
        (1, &Value::Null)
    );
    // Update notes: set and remove.
    let r = s
        .http
        .patch(s.url("/api/v1/repositories/b"))
        .json(&json!({"notes": {"env": null, "team": "x"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, v) = s.get_json("/api/v1/repositories/b");
    assert_eq!(v["notes"], json!({"team": "x"}));

    // Groups.
    let (code, g) = s.post_json(
        "/api/v1/groups",
        &json!({"id": "g", "description": "d", "notes": {"k": "v"}, "members": ["a"]}),
    );
    assert_eq!(code, 201, "{g}");
    let (code, _) = s.post_json("/api/v1/groups/g/members", &json!({"repo_id": "c"}));
    assert_eq!(code, 200);
    let (code, v) = s.post_json("/api/v1/groups/g/members", &json!({"repo_id": "ghost"}));
    assert_eq!(code, 404, "{v}");
    let (_, v) = s.get_json("/api/v1/groups?note=k=v");
    assert_eq!(v[0]["members"], json!(["a", "c"]));
    let r = s
        .http
        .delete(s.url("/api/v1/groups/g/members/a"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, v) = s.get_json("/api/v1/groups/g");
    assert_eq!(v["members"], json!(["c"]));

    // Import into a, copy to b (associations only), publish b, fetch from b.
    s.import_and_publish("a", &images_dir().join("busybox.tar"));
    let blobs_before = std::fs::read_dir(s.data_dir().join("blobs/sha256"))
        .unwrap()
        .count();
    let t = s.repo_task("b", "copy", json!({"from": "a"}));
    assert_eq!(t["state"], "finished", "{t}");
    assert!(t["result"]["units_added"].as_u64().unwrap() >= 3, "{t}");
    let (_, a) = s.get_json("/api/v1/repositories/a");
    let (_, b) = s.get_json("/api/v1/repositories/b");
    assert_eq!(a["content_counts"], b["content_counts"]);
    assert_eq!(
        std::fs::read_dir(s.data_dir().join("blobs/sha256"))
            .unwrap()
            .count(),
        blobs_before,
        "copy moved no bytes"
    );
    let t = s.repo_task("b", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    let r = s.http.get(s.url("/v2/b/tags/list")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Delete a: b still holds everything, so cleanup removes nothing.
    let r = s
        .http
        .delete(s.url("/api/v1/repositories/a"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let t = s.wait_task(&r.json().unwrap());
    assert_eq!(t["state"], "finished", "{t}");
    let cleanup = |s: &Server| {
        let (code, t) = s.post_json("/api/v1/orphans/cleanup?protection_minutes=0", &json!({}));
        assert_eq!(code, 202);
        s.wait_task(&t)
    };
    let t = cleanup(&s);
    assert_eq!(
        (t["state"].as_str(), t["result"]["blobs_removed"].as_u64()),
        (Some("finished"), Some(0)),
        "{t}"
    );
    // Delete b too: now every blob of the image is an orphan.
    let r = s
        .http
        .delete(s.url("/api/v1/repositories/b"))
        .send()
        .unwrap();
    s.wait_task(&r.json().unwrap());
    let on_disk = std::fs::read_dir(s.data_dir().join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|shard| std::fs::read_dir(shard.path()).unwrap().count() as u64)
        .sum::<u64>();
    let t = cleanup(&s);
    assert!(t["result"]["blobs_removed"].as_u64().unwrap() >= 3, "{t}");
    assert!(t["result"]["units_removed"].as_u64().unwrap() >= 3, "{t}");
    // The walk looked at every stored blob once and said so as it went.
    assert_eq!(t["result"]["blobs_seen"].as_u64(), Some(on_disk), "{t}");
    assert_eq!(t["progress"]["items_done"].as_u64(), Some(on_disk), "{t}");
}

#[test]
fn openapi_document_describes_the_api() {
    let s = Server::start();
    let (code, doc) = s.get_json("/api/v1/openapi.json");
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/repositories",
        "/api/v1/repositories/{id}",
        "/api/v1/repositories/{id}/import",
        "/api/v1/repositories/{id}/publish",
        "/api/v1/uploads/{id}",
        "/api/v1/tasks/{id}/cancel",
        "/api/v1/groups/{id}/members",
        "/api/v1/orphans/cleanup",
        "/api/v1/plugins",
        "/api/v1/events/listeners",
        "/api/v1/login",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["ApiErrorBody"].is_object());
}

#[test]
fn a_whole_upload_is_linked_into_the_blob_store_then_frozen() {
    use std::os::unix::fs::MetadataExt;
    let s = Server::start();
    s.create_repo(json!({"id": "files", "content_type": "file"}));
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (_, up) = s.post_json("/api/v1/uploads", &json!({"size": bytes.len()}));
    let id = up["id"].as_str().unwrap().to_string();
    // Two chunks in order: hashed as they arrive.
    for (offset, part) in [(0, &bytes[..1_000_000]), (1_000_000, &bytes[1_000_000..])] {
        let r = s
            .http
            .put(s.url(&format!("/api/v1/uploads/{id}?offset={offset}")))
            .body(part.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let t = s.repo_task(
        "files",
        "import",
        json!({"upload_id": id, "delete_upload": false, "params": {"relative_path": "a/big.bin"}}),
    );
    assert_eq!(t["state"], "finished", "{t}");
    let hex = hex::encode(Sha256::digest(&bytes));
    let blob = s.data_dir().join("blobs/sha256").join(&hex[..2]).join(&hex);
    let upload_file = s.data_dir().join("uploads").join(id.replace('-', ""));
    // The same file, not a copy.
    assert_eq!(
        std::fs::metadata(&blob).unwrap().ino(),
        std::fs::metadata(&upload_file).unwrap().ino()
    );
    assert_all_blobs_intact(&s.data_dir());
    // The upload's bytes are the blob's now: no chunk may change them.
    let r = s
        .http
        .put(s.url(&format!("/api/v1/uploads/{id}?offset={}", bytes.len())))
        .body(b"more".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let v: Value = r.json().unwrap();
    assert_eq!(error_code(&v), "upload-frozen");
    assert_all_blobs_intact(&s.data_dir());
}

// ------------------------------------------------------ the API reference --

/// Runs the reference page's script (argv[2]) in node on a minimal DOM,
/// with the OpenAPI document (argv[3]) as what `fetch` answers, then types
/// argv[4] into the filter box; prints what it rendered as JSON.
const RENDER_CHECK: &str = r##"// Runs the page's script (argv[2]) on a minimal DOM with the OpenAPI
// document (argv[3]) as what fetch answers; prints what it rendered as JSON.
"use strict";
const fs = require("fs");
const vm = require("vm");
const [script, docPath] = process.argv.slice(2);
const docText = fs.readFileSync(docPath, "utf8");
class Text {
  constructor(t) { this.data = t; }
  get textContent() { return this.data; }
}
class El {
  constructor(tag) { this.tagName = tag.toUpperCase(); this.attrs = {}; this.children = []; this.hidden = false; this.listeners = {}; this.value = ""; }
  set className(v) { this.attrs.class = String(v); }
  get className() { return this.attrs.class || ""; }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; }
  appendChild(c) {
    if (!(c instanceof El) && !(c instanceof Text)) throw new Error("appendChild of a non-node: " + String(c));
    this.children.push(c);
    return c;
  }
  get textContent() { return this.children.map((c) => c.textContent).join(""); }
  set textContent(v) { this.children = v ? [new Text(String(v))] : []; }
  addEventListener(type, f) { (this.listeners[type] = this.listeners[type] || []).push(f); }
  dispatch(type) { for (const f of this.listeners[type] || []) f({ type }); }
  all(pred, out = []) {
    for (const c of this.children) if (c instanceof El) { if (pred(c)) out.push(c); c.all(pred, out); }
    return out;
  }
  querySelectorAll(sel) {
    const [tag, cls] = sel.split(".");
    return this.all((e) => e.tagName === tag.toUpperCase() && (!cls || e.className.split(" ").includes(cls)));
  }
  scrollIntoView() {}
}
const el = (tag, id, parent) => { const e = new El(tag); if (id) e.setAttribute("id", id); if (parent) parent.appendChild(e); return e; };
const body = el("body");
body.setAttribute("data-openapi", "openapi.json");
const header = el("header", null, body);
for (const [tag, id] of [["h1", "title"], ["p", "meta"], ["div", "description"], ["input", "filter"]]) el(tag, id, header);
header.children[3].hidden = true;
const layout = el("div", "layout", body);
el("nav", "toc", layout);
el("p", "status", el("main", "content", layout));
const fetched = [];
global.document = {
  body,
  title: "",
  readyState: "complete",
  createElement: (t) => new El(t),
  createTextNode: (t) => new Text(t),
  getElementById: (id) => body.all((e) => e.getAttribute("id") === id)[0] || null,
  addEventListener() {},
};
global.location = { hash: "" };
global.fetch = async (url) => {
  fetched.push(url);
  return { ok: true, status: 200, json: async () => JSON.parse(docText) };
};
vm.runInThisContext(fs.readFileSync(script, "utf8"), { filename: script });
setTimeout(() => {
  const ops = body.querySelectorAll("section.op");
  const filter = document.getElementById("filter");
  filter.value = process.argv[4] || "cancel";
  filter.dispatch("input");
  const shown = ops.filter((o) => !o.hidden).map((o) => o.textContent);
  process.stdout.write(JSON.stringify({
    fetched,
    title: document.title,
    status: (document.getElementById("status") || { textContent: null }).textContent,
    filter_hidden: filter.hidden,
    ops: ops.map((o) => ({ id: o.getAttribute("id"), text: o.textContent })),
    schemas: body.querySelectorAll("section.schema").map((s) => s.getAttribute("id")),
    links: body.all((e) => e.tagName === "A").map((a) => a.getAttribute("href")),
    ids: body.all((e) => e.getAttribute("id") !== null).map((e) => e.getAttribute("id")),
    filtered: shown,
    text: body.textContent,
  }));
}, 50);
"##;

/// The headers and body of an anonymous GET.
fn get_text(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = anonymous_client().get(url).send().unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().unwrap())
}

/// The values of `attr="..."` in an HTML text.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[test]
fn the_api_reference_page_is_public_offline_under_a_strict_csp_and_draws_every_operation() {
    let s = Server::start();
    let page_url = reqwest::Url::parse(&s.url("/api/v1/docs")).unwrap();
    let (status, headers, page) = get_text(page_url.as_str());
    assert_eq!(status, 200, "{page}");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");

    // The page names its script, its style and the document relatively,
    // and each resolves to something this server serves to anyone.
    let srcs = attribute_values(&page, "src");
    let hrefs = attribute_values(&page, "href");
    assert_eq!(srcs, ["docs/app.js"], "{page}");
    assert!(hrefs.contains(&"docs/app.css"), "{page}");
    assert!(hrefs.contains(&"openapi.json"), "{page}");
    assert!(page.contains(r#"data-openapi="openapi.json""#), "{page}");
    let mut served = vec![(page_url.clone(), headers, page.clone())];
    for reference in srcs.iter().chain(&hrefs) {
        let url = page_url.join(reference).unwrap();
        let (status, headers, body) = get_text(url.as_str());
        assert_eq!(status, 200, "{url}: {body}");
        served.push((url, headers, body));
    }
    let find = |path: &str| {
        served
            .iter()
            .find(|(u, _, _)| u.path() == path)
            .unwrap_or_else(|| panic!("the page does not reference {path}"))
    };
    let (_, js_headers, script) = find("/api/v1/docs/app.js");
    assert_eq!(js_headers["content-type"], "text/javascript; charset=utf-8");
    let (_, css_headers, style) = find("/api/v1/docs/app.css");
    assert_eq!(css_headers["content-type"], "text/css; charset=utf-8");
    let (_, _, document) = find("/api/v1/openapi.json");

    // One strict policy on the page and its assets: nothing inline, nothing
    // from another host.
    for (url, headers, _) in served
        .iter()
        .filter(|(u, _, _)| u.path().starts_with("/api/v1/docs"))
    {
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "{url}: {directive} missing from {csp}"
            );
        }
        assert!(
            !csp.contains("unsafe") && !csp.contains('*') && !csp.contains("http"),
            "{url}: {csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{url}");
    }
    assert_eq!(
        page.matches("<script").count(),
        1,
        "an inline script? {page}"
    );
    assert!(
        page.contains(r#"<script src="docs/app.js" defer></script>"#),
        "{page}"
    );
    assert!(
        !page.contains("<style") && !page.contains(" style=\""),
        "{page}"
    );
    for (name, text) in [("page", &page), ("script", script), ("style", style)] {
        for outside in ["http://", "https://", "\"//", "'//", "url(", "@import"] {
            assert!(
                !text.contains(outside),
                "the {name} names {outside}: {text}"
            );
        }
    }

    // The script draws every operation, parameter, body and response of
    // the document, and a section per schema (run in node when there is one).
    let Ok(node) = which_node() else {
        eprintln!("node is not installed: the page's rendering is not checked");
        return;
    };
    let dir = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let paths = [
        ("check.js", RENDER_CHECK),
        ("app.js", script.as_str()),
        ("openapi.json", document.as_str()),
    ];
    for (name, text) in paths {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = std::process::Command::new(node)
        .current_dir(dir.path())
        .args(["check.js", "app.js", "openapi.json", "cancel"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drawn: Value = serde_json::from_slice(&out.stdout).unwrap();
    let doc: Value = serde_json::from_str(document).unwrap();
    assert_eq!(drawn["fetched"], json!(["openapi.json"]));
    assert_eq!(
        drawn["status"],
        Value::Null,
        "the loading line stays: {}",
        drawn["status"]
    );
    let ops = drawn["ops"].as_array().unwrap();
    let mut count = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            count += 1;
            let head = format!("{} {path}", method.to_uppercase());
            let drawn_op = ops
                .iter()
                .find(|o| o["text"].as_str().unwrap().starts_with(&head))
                .unwrap_or_else(|| panic!("{head} is not drawn"));
            let text = drawn_op["text"].as_str().unwrap();
            let id = drawn_op["id"].as_str().unwrap();
            assert!(id.starts_with(&format!("op-{method}-")), "{id}");
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                assert!(
                    text.contains(name),
                    "{head}: parameter {name} not drawn: {text}"
                );
            }
            if op.get("requestBody").is_some() {
                assert!(text.contains("Request body"), "{head}: {text}");
            }
            for (code, _) in op["responses"].as_object().unwrap() {
                assert!(
                    text.contains(code.as_str()),
                    "{head}: response {code} not drawn: {text}"
                );
            }
        }
    }
    assert_eq!(ops.len(), count, "operations drawn");
    assert!(count >= 40, "{count}");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert_eq!(drawn["schemas"].as_array().unwrap().len(), schemas.len());
    // Every in-page link has its target, and the text has no unresolved $ref.
    let ids: Vec<&str> = drawn["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    for link in drawn["links"].as_array().unwrap() {
        let link = link.as_str().unwrap();
        let target = link
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("a link off the page: {link}"));
        assert!(ids.contains(&target), "{link} points nowhere");
    }
    let text = drawn["text"].as_str().unwrap();
    assert!(!text.contains("unresolved reference"), "{text}");
    assert!(
        text.contains("Wharf admin API") && text.contains("ApiErrorBody"),
        "{text}"
    );
    // The filter box keeps what matches.
    let filtered = drawn["filtered"].as_array().unwrap();
    assert!(
        !filtered.is_empty() && filtered.len() < count,
        "{filtered:?}"
    );
    assert!(
        filtered
            .iter()
            .all(|t| t.as_str().unwrap().to_lowercase().contains("cancel"))
    );
}

/// `node` on PATH, if installed.
fn which_node() -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn fsck_runs_as_a_task_that_finds_and_on_request_removes_a_tampered_blob() {
    let s = Server::start();
    s.create_repo(json!({"id": "checked", "content_type": "docker"}));
    s.import_and_publish("checked", &images_dir().join("busybox.tar"));
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(s.data_dir().join("blobs/sha256"))
        .unwrap()
        .flatten()
        .flat_map(|shard| std::fs::read_dir(shard.path()).unwrap().flatten())
        .map(|e| e.path())
        .collect();
    let fsck = |query: &str| {
        let (code, t) = s.post_json(&format!("/api/v1/blobs/fsck{query}"), &json!({}));
        assert_eq!(code, 202, "{t}");
        assert_eq!(t["kind"], "fsck", "{t}");
        s.wait_task(&t)
    };
    let t = fsck("");
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(
        t["result"]["checked"].as_u64(),
        Some(files.len() as u64),
        "{t}"
    );
    assert_eq!(t["result"]["corrupt"], json!([]), "{t}");
    assert_eq!(
        t["progress"]["items_done"].as_u64(),
        Some(files.len() as u64)
    );

    // One blob's bytes changed behind the server's back.
    let tampered = &files[0];
    let name = format!("sha256:{}", tampered.file_name().unwrap().to_str().unwrap());
    std::fs::remove_file(tampered).unwrap();
    std::fs::write(tampered, b"not what the name says").unwrap();
    let t = fsck("");
    assert_eq!(t["result"]["corrupt"], json!([name]), "{t}");
    assert_eq!(t["result"]["removed"], json!([]), "{t}");
    assert!(tampered.exists(), "only reported");
    // The same from the command line: a corrupt blob fails the command.
    let w = crate::cli::admin(&s);
    let err = w.fails(&["check", "blobs"]);
    assert!(
        err.contains("1 corrupt blob(s)") && err.contains("--remove-corrupt"),
        "{err}"
    );
    assert!(tampered.exists(), "only reported");
    let t = fsck("?remove_corrupt=true");
    assert_eq!(t["result"]["removed"], json!([name]), "{t}");
    assert!(!tampered.exists());
    let t = fsck("");
    assert_eq!(
        t["result"]["checked"].as_u64(),
        Some(files.len() as u64 - 1),
        "{t}"
    );
    let out = w.ok(&["check", "blobs"]);
    assert!(out.contains("corrupt: []"), "{out}");

    // On a schedule: its first run is due at once.
    let fscks = || {
        s.get_json("/api/v1/tasks?kind=fsck")
            .1
            .as_array()
            .unwrap()
            .len()
    };
    let before = fscks();
    let out = w.ok(&["schedule", "create", "--kind", "fsck", "-s", "PT1H"]);
    let listed = w.ok(&["schedule", "list"]);
    assert!(listed.contains("blob check"), "{out}\n{listed}");
    let start = std::time::Instant::now();
    while fscks() == before {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the scheduled fsck did not run:\n{}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // It may delete blobs: a caller without `delete` on /orphans may not start it.
    let r = anonymous_client()
        .post(s.url("/api/v1/blobs/fsck"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
