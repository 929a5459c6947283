//! Repository versions and image lifecycle (Pulp 3's model, pulp-admin's
//! words): every change makes a numbered version; publishing an older one
//! rolls back what clients pull; tags are copied, removed and retagged as
//! tasks; a version limit drops old versions and orphan cleanup then frees
//! only what nothing else holds. Checked through the API, the registry and
//! a real Docker engine.

use crate::registry_support::*;
use crate::support::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const BUSYBOX: &str = "busybox.tar";
const TWO: &str = "two-layer.tar";

/// The manifest `tag` points at in `repo` (an import writes its own
/// manifest of a `docker save` archive, so its digest is the repository's
/// to tell).
fn tagged(s: &Server, repo: &str, tag: &str) -> String {
    let c = content(s, repo);
    let prefix = format!("{tag}@");
    c.tags
        .iter()
        .find_map(|k| k.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no tag {tag} in {repo}: {c:?}"))
        .to_string()
}

fn config_of(file: &str) -> String {
    image_info(file)["config_digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Run a repository task that must finish; returns its result.
fn done(s: &Server, repo: &str, action: &str, body: Value) -> Value {
    let t = s.repo_task(repo, action, body);
    assert_eq!(t["state"], "finished", "{action}: {t}\n{}", s.log());
    t["result"].clone()
}

fn import_file(s: &Server, repo: &str, file: &str) -> Value {
    let t = import(s, repo, &images_dir().join(file));
    assert_eq!(t["state"], "finished", "import {file}: {t}");
    t
}

fn versions(s: &Server, repo: &str) -> Vec<Value> {
    let (status, page) = s.get_json(&format!("/api/v1/repositories/{repo}/versions"));
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

fn numbers(vs: &[Value]) -> Vec<u64> {
    vs.iter().map(|v| v["number"].as_u64().unwrap()).collect()
}

/// `type key` of every unit a version holds.
fn held(s: &Server, repo: &str, version: u64) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in ["tag", "manifest", "blob"] {
        let (status, page) = s.get_json(&format!(
            "/api/v1/repositories/{repo}/content?type={t}&version={version}&limit=1000"
        ));
        assert_eq!(status, 200, "{page}");
        for u in page["items"].as_array().unwrap() {
            out.insert(format!("{t} {}", u["key"].as_str().unwrap()));
        }
    }
    out
}

fn diff(s: &Server, repo: &str, from: u64, to: u64) -> (BTreeSet<String>, BTreeSet<String>) {
    let (status, d) = s.get_json(&format!(
        "/api/v1/repositories/{repo}/diff?from={from}&to={to}"
    ));
    assert_eq!(status, 200, "{d}");
    let side = |k: &str| {
        d[k].as_array()
            .unwrap()
            .iter()
            .map(|u| {
                format!(
                    "{} {}",
                    u["unit_type"].as_str().unwrap(),
                    u["key"].as_str().unwrap()
                )
            })
            .collect::<BTreeSet<_>>()
    };
    (side("added"), side("removed"))
}

/// The digest the registry serves for `name:reference`, or its status.
fn served(s: &Server, name: &str, reference: &str) -> Result<String, u16> {
    let r = request(
        s,
        "GET",
        &format!("/v2/{name}/manifests/{reference}"),
        &[("Accept", DOCKER_ACCEPT)],
    );
    match r.status().as_u16() {
        200 => Ok(header(&r, "docker-content-digest")),
        status => Err(status),
    }
}

/// `docker pull` then `cat` a file in the image; `None` if the file is not
/// there (the pull itself must work).
fn pull_and_cat(image: &str, file: &str) -> Option<String> {
    let _ = run(docker().args(["rmi", "-f", image]));
    must(docker().args(["pull", image]));
    let (ok, out) = run(docker().args(["run", "--rm", image, "cat", file]));
    ok.then_some(out)
}

#[test]
fn imports_make_versions_and_publishing_an_older_one_rolls_back() {
    let s = Server::start();
    docker_repo(&s, "app", "versions/app", json!({}));

    // Version 0 is the repository as created; each import makes one more,
    // recording its task.
    let first = import_file(&s, "app", BUSYBOX);
    let second = import_file(&s, "app", TWO);
    let (m1, m2) = (tagged(&s, "app", "latest"), tagged(&s, "app", "v1"));
    assert_eq!(first["result"]["version"], 1, "{first}");
    assert_eq!(second["result"]["version"], 2, "{second}");
    let vs = versions(&s, "app");
    assert_eq!(numbers(&vs), [0, 1, 2]);
    assert_eq!(vs[0]["cause"], "created");
    assert_eq!(vs[1]["cause"], "import");
    assert_eq!(vs[1]["task"], first["id"]);
    assert_eq!(vs[2]["task"], second["id"]);
    assert_eq!(vs[2]["content"]["manifest"], 2);
    assert_eq!(vs[2]["added"]["manifest"], 1);

    // The diff is exactly the second image's own units: its tag, manifest,
    // config and the layer busybox does not have (the busybox layer is
    // shared, so not added).
    let (added, removed) = diff(&s, "app", 1, 2);
    assert!(removed.is_empty(), "{removed:?}");
    let expected_known = [
        format!("tag v1@{m2}"),
        format!("manifest {m2}"),
        format!("blob {}", config_of(TWO)),
    ];
    for k in &expected_known {
        assert!(added.contains(k), "{k} missing from {added:?}");
    }
    assert_eq!(added.len(), 4, "one more: the second layer: {added:?}");
    assert_eq!(
        added,
        held(&s, "app", 2)
            .difference(&held(&s, "app", 1))
            .cloned()
            .collect(),
        "the diff and the two versions' content agree"
    );
    assert_eq!(diff(&s, "app", 2, 1), (removed.clone(), added.clone()));

    // Retag: `latest` moves from busybox to the second image (version 3).
    let tagged = done(&s, "app", "tag", json!({"tag": "latest", "target": m2}));
    assert_eq!(tagged["version"], 3, "{tagged}");
    let (added, removed) = diff(&s, "app", 2, 3);
    assert_eq!(added, BTreeSet::from([format!("tag latest@{m2}")]));
    assert_eq!(removed, BTreeSet::from([format!("tag latest@{m1}")]));

    // Publishing the latest serves the second image as latest...
    let p = done(&s, "app", "publish", json!({}));
    assert_eq!(p["version"], 3, "{p}");
    assert_eq!(served(&s, "versions/app", "latest"), Ok(m2.clone()));
    let image = format!("{}/versions/app:latest", s.addr);
    assert!(pull_and_cat(&image, "/etc/second.txt").is_some());

    // ...and publishing version 1 rolls back: busybox is latest again, and
    // `v1` (not in version 1) is gone.
    let p = done(&s, "app", "publish", json!({"version": 1}));
    assert_eq!(p["version"], 1, "{p}");
    assert_eq!(served(&s, "versions/app", "latest"), Ok(m1.clone()));
    assert_eq!(served(&s, "versions/app", "v1"), Err(404));
    assert!(
        pull_and_cat(&image, "/etc/second.txt").is_none(),
        "the rolled-back image has no second layer"
    );
    assert!(
        pull_and_cat(&image, "/etc/hello.txt")
            .unwrap()
            .contains("hello from wharf")
    );
    let (_, detail) = s.get_json("/api/v1/repositories/app");
    assert_eq!(detail["latest_version"], 3);
    assert_eq!(detail["publications"][0]["version"], 1, "{detail}");

    // Restoring version 1 makes its content the latest again, as version 4.
    let (status, t) = s.post_json("/api/v1/repositories/app/versions/1/restore", &json!({}));
    assert_eq!(status, 202, "{t}");
    let t = s.wait_task(&t);
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(t["result"]["version"], 4, "{t}");
    assert_eq!(held(&s, "app", 4), held(&s, "app", 1));
    assert_eq!(versions(&s, "app")[4]["cause"], "restore");

    // A version that does not exist: a clear 404, nothing queued.
    let (status, v) = s.post_json("/api/v1/repositories/app/publish", &json!({"version": 99}));
    assert_eq!(status, 404, "{v}");
    assert!(message(&v).contains("no version 99"), "{v}");
    let (status, _) = s.get_json("/api/v1/repositories/app/diff?from=0&to=99");
    assert_eq!(status, 404);
}

#[test]
fn a_tag_copied_from_dev_to_prod_brings_that_image_only() {
    let s = Server::start();
    docker_repo(&s, "dev", "lifecycle/dev", json!({}));
    docker_repo(&s, "prod", "lifecycle/prod", json!({}));
    import_file(&s, "dev", BUSYBOX); // latest -> m1
    import_file(&s, "dev", TWO); // v1 -> m2
    let (m1, m2) = (tagged(&s, "dev", "latest"), tagged(&s, "dev", "v1"));

    let copied = done(
        &s,
        "prod",
        "copy",
        json!({"from": "dev", "references": ["v1"]}),
    );
    assert_eq!(copied["version"], 1, "{copied}");
    let prod = content(&s, "prod");
    assert_eq!(tag_names(&prod), ["v1"]);
    assert_eq!(prod.manifests, std::slice::from_ref(&m2));
    assert_eq!(prod.blobs.len(), 3, "config and both layers: {prod:?}");
    assert_eq!(versions(&s, "prod")[1]["cause"], "copy");
    done(&s, "prod", "publish", json!({}));
    assert_eq!(served(&s, "lifecycle/prod", "v1"), Ok(m2.clone()));
    assert_eq!(served(&s, "lifecycle/prod", "latest"), Err(404));
    let image = format!("{}/lifecycle/prod:v1", s.addr);
    assert!(pull_and_cat(&image, "/etc/second.txt").is_some());
    let (ok, out) = run(docker().args(["pull", &format!("{}/lifecycle/prod:latest", s.addr)]));
    assert!(!ok, "only the copied tag is in prod: {out}");

    // Promote `latest` (busybox), then move latest in dev and promote it
    // again: prod's latest is replaced, never doubled.
    done(
        &s,
        "prod",
        "copy",
        json!({"from": "dev", "references": ["latest"]}),
    );
    done(&s, "dev", "tag", json!({"tag": "latest", "target": m2}));
    let again = done(
        &s,
        "prod",
        "copy",
        json!({"from": "dev", "references": ["latest"]}),
    );
    assert_eq!(
        (
            again["units_added"].as_u64(),
            again["units_removed"].as_u64()
        ),
        (Some(1), Some(1)),
        "{again}"
    );
    let prod = content(&s, "prod");
    assert_eq!(tag_names(&prod), ["latest", "v1"]);
    assert!(prod.tags.contains(&format!("latest@{m2}")), "{prod:?}");
    // Copying what prod holds already changes nothing: no version.
    let same = done(
        &s,
        "prod",
        "copy",
        json!({"from": "dev", "references": ["latest"]}),
    );
    assert_eq!(same["version"], Value::Null, "{same}");
    // By digest: the manifest and what it needs, no tag.
    done(
        &s,
        "prod",
        "copy",
        json!({"from": "dev", "references": [m1]}),
    );
    let prod = content(&s, "prod");
    assert!(prod.manifests.contains(&m1));
    assert_eq!(tag_names(&prod), ["latest", "v1"]);

    // Bad references: refused before a task, or failed with nothing copied.
    let before = versions(&s, "prod").len();
    let (status, v) = s.post_json(
        "/api/v1/repositories/prod/copy",
        &json!({"from": "dev", "references": [""]}),
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = s.post_json(
        "/api/v1/repositories/prod/copy",
        &json!({"from": "dev", "references": ["latest"], "unit_types": ["tag"]}),
    );
    assert_eq!(status, 400, "{v}");
    for (reference, code) in [
        ("nope", "not-found"),
        ("../etc/passwd", "invalid"),
        ("sha256:zz", "invalid"),
    ] {
        let t = s.repo_task(
            "prod",
            "copy",
            json!({"from": "dev", "references": [reference]}),
        );
        assert_eq!(t["state"], "error", "{reference}: {t}");
        assert_eq!(t["error"]["cause"], code, "{reference}: {t}");
    }
    assert_eq!(
        versions(&s, "prod").len(),
        before,
        "no version from a failed copy"
    );
}

#[test]
fn removing_a_tag_or_an_image_makes_a_version_without_it() {
    let s = Server::start();
    docker_repo(&s, "rm", "lifecycle/rm", json!({}));
    import_file(&s, "rm", BUSYBOX);
    import_file(&s, "rm", TWO);
    let (m1, m2) = (tagged(&s, "rm", "latest"), tagged(&s, "rm", "v1"));
    done(&s, "rm", "publish", json!({}));
    let image = format!("{}/lifecycle/rm:v1", s.addr);
    assert!(pull_and_cat(&image, "/etc/second.txt").is_some());

    // The tag alone goes; its manifest stays.
    let r = done(&s, "rm", "remove", json!({"references": ["v1"]}));
    assert_eq!(
        (r["version"].as_u64(), r["units_removed"].as_u64()),
        (Some(3), Some(1)),
        "{r}"
    );
    let c = content(&s, "rm");
    assert_eq!(tag_names(&c), ["latest"]);
    assert!(c.manifests.contains(&m2));
    assert_eq!(
        served(&s, "lifecycle/rm", "v1"),
        Ok(m2.clone()),
        "clients see it until the next publish"
    );
    done(&s, "rm", "publish", json!({}));
    assert_eq!(served(&s, "lifecycle/rm", "v1"), Err(404));
    let _ = run(docker().args(["rmi", "-f", &image]));
    let (ok, out) = run(docker().args(["pull", &image]));
    assert!(!ok, "a removed tag cannot be pulled after publish: {out}");

    // The image by digest: its manifest and what only it needed; the
    // layer busybox shares stays.
    let r = done(&s, "rm", "remove", json!({"references": [m2]}));
    assert_eq!(r["version"], 4, "{r}");
    let c = content(&s, "rm");
    assert_eq!(c.manifests, std::slice::from_ref(&m1));
    assert_eq!(c.blobs.len(), 2, "busybox's config and layer: {c:?}");
    done(&s, "rm", "publish", json!({}));
    let latest = format!("{}/lifecycle/rm:latest", s.addr);
    assert!(pull_and_cat(&latest, "/etc/hello.txt").is_some());

    // Unknown: an error, and no version.
    let t = s.repo_task("rm", "remove", json!({"references": ["gone"]}));
    assert_eq!(t["error"]["cause"], "not-found", "{t}");
    assert_eq!(numbers(&versions(&s, "rm")), [0, 1, 2, 3, 4]);
    let (status, v) = s.post_json("/api/v1/repositories/rm/remove", &json!({"references": []}));
    assert_eq!(status, 400, "{v}");
}

#[test]
fn a_version_limit_drops_the_oldest_and_cleanup_frees_only_what_nothing_holds() {
    let s = Server::start();
    docker_repo(&s, "lim", "lifecycle/lim", json!({}));
    docker_repo(&s, "keep", "lifecycle/keep", json!({}));
    import_file(&s, "lim", BUSYBOX); // 1
    import_file(&s, "lim", TWO); // 2
    done(
        &s,
        "keep",
        "copy",
        json!({"from": "lim", "references": ["v1"]}),
    );
    let (m1, m2) = (tagged(&s, "lim", "latest"), tagged(&s, "lim", "v1"));
    let (c1, c2) = (config_of(BUSYBOX), config_of(TWO));

    // With every version kept, removing content frees nothing.
    done(&s, "lim", "remove", json!({"references": [m1]})); // 3
    cleanup_now(&s);
    assert!(stored(&s, &c1), "version 1 still holds busybox's config");

    let patch = |body: Value| {
        let r = s
            .http
            .patch(s.url("/api/v1/repositories/lim"))
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let (status, v) = patch(json!({"retain_versions": 0}));
    assert_eq!(status, 400, "{v}");
    let (status, v) = patch(json!({"retain_versions": 1}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["retain_versions"], 1);

    // The next version drops every older one.
    done(&s, "lim", "remove", json!({"references": [m2]})); // 4
    assert_eq!(numbers(&versions(&s, "lim")), [4]);
    let (status, _) = s.get_json("/api/v1/repositories/lim/versions/3");
    assert_eq!(status, 404);
    cleanup_now(&s);
    assert!(!stored(&s, &c1), "busybox's config: nothing holds it now");
    assert!(!stored(&s, &m1), "busybox's manifest: nothing holds it now");
    assert!(stored(&s, &c2), "keep holds the second image");
    assert!(stored(&s, &m2), "keep holds the second image");
    done(&s, "keep", "publish", json!({}));
    let image = format!("{}/lifecycle/keep:v1", s.addr);
    assert!(pull_and_cat(&image, "/etc/second.txt").is_some());

    // `null` keeps every version again.
    let (status, v) = patch(json!({"retain_versions": null}));
    assert_eq!(status, 200, "{v}");
    assert!(v.get("retain_versions").is_none(), "{v}");
}

/// Tag `m` as each of `tags`, one version each.
fn tag_each(s: &Server, repo: &str, tags: &[&str], m: &str) {
    for t in tags {
        done(s, repo, "tag", json!({"tag": t, "target": m}));
    }
}

fn set_importer(s: &Server, repo: &str, importer: Value) -> (u16, Value) {
    let r = s
        .http
        .patch(s.url(&format!("/api/v1/repositories/{repo}")))
        .json(&json!({"importer_config": importer}))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json::<Value>().unwrap())
}

#[test]
fn retention_keeps_exactly_the_newest_n_tags_and_what_it_drops_goes_to_cleanup() {
    let s = Server::start();
    docker_repo(&s, "ret", "lifecycle/ret", json!({}));
    import_file(&s, "ret", BUSYBOX); // 1: latest
    import_file(&s, "ret", TWO); // 2: v1
    let (m1, m2) = (tagged(&s, "ret", "latest"), tagged(&s, "ret", "v1"));
    let (c1, c2) = (config_of(BUSYBOX), config_of(TWO));
    tag_each(&s, "ret", &["v2", "v3"], &m1); // 3, 4
    tag_each(&s, "ret", &["v4", "v5"], &m2); // 5, 6

    // Mistakes are refused when written, and retain without rules says how.
    let (status, v) = s.post_json("/api/v1/repositories/ret/retain", &json!({}));
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--retain-newest"),
        "{v}"
    );
    let (status, v) = set_importer(&s, "ret", json!({"retention": {"keep": 2}}));
    assert_eq!(status, 400, "{v}");

    // The CLI writes the rule: the two newest tags of all.
    let w = crate::cli::admin(&s);
    w.ok(&[
        "docker",
        "repo",
        "update",
        "--repo-id",
        "ret",
        "--retain-newest",
        "2",
        "--retain-versions",
        "1",
    ]);
    let (_, detail) = s.get_json("/api/v1/repositories/ret");
    assert_eq!(
        detail["importer_config"]["retention"],
        json!({"keep_newest": 2}),
        "{detail}"
    );

    // A dry run names what would go, oldest first, and changes nothing.
    let before = numbers(&versions(&s, "ret"));
    assert_eq!(before.last(), Some(&6));
    let out = w.ok(&["docker", "repo", "retain", "--repo-id", "ret", "--dry-run"]);
    assert!(
        out.contains("Would remove 4 tags of [ret]: latest, v1, v2, v3; 2 kept"),
        "{out}"
    );
    let r = done(&s, "ret", "retain", json!({"dry_run": true}));
    assert_eq!(r["removed"], json!(["latest", "v1", "v2", "v3"]), "{r}");
    assert_eq!(
        r["images_removed"],
        json!([m1]),
        "only removed tags point at busybox: {r}"
    );
    assert_eq!(tag_names(&content(&s, "ret")).len(), 6);
    assert_eq!(numbers(&versions(&s, "ret")), before);

    // The real run: exactly the newest two are left, with busybox's image
    // gone in a version made for retention.
    let out = w.ok(&["docker", "repo", "retain", "--repo-id", "ret"]);
    assert!(out.contains("Removed 4 tags of [ret]"), "{out}");
    let c = content(&s, "ret");
    assert_eq!(tag_names(&c), ["v4", "v5"]);
    assert_eq!(c.manifests, std::slice::from_ref(&m2));
    let vs = versions(&s, "ret");
    assert_eq!(
        (numbers(&vs), &vs[0]["cause"]),
        (vec![7], &json!("retention"))
    );
    // Run again: nothing left to remove, no version.
    let r = done(&s, "ret", "retain", json!({}));
    assert_eq!(
        (r["removed"].clone(), r["kept"].clone()),
        (json!([]), json!(2)),
        "{r}"
    );
    assert_eq!(numbers(&versions(&s, "ret")), [7]);

    // What it dropped goes to orphan cleanup; what the kept tags need stays.
    cleanup_now(&s);
    assert!(!stored(&s, &c1), "busybox's config: nothing holds it now");
    assert!(stored(&s, &c2));
    done(&s, "ret", "publish", json!({}));
    assert_eq!(served(&s, "lifecycle/ret", "v5"), Ok(m2.clone()));
    assert_eq!(served(&s, "lifecycle/ret", "latest"), Err(404));

    // It runs on a schedule too, as any repository task.
    let (status, v) = s.post_json(
        "/api/v1/schedules",
        &json!({"job": {"kind": "retain", "repository": "ret"}, "interval": "PT1H"}),
    );
    assert_eq!(status, 201, "{v}");
    let out = w.ok(&[
        "docker",
        "repo",
        "retain",
        "schedules",
        "list",
        "--repo-id",
        "ret",
    ]);
    assert!(out.contains("retain ret"), "{out}");
}

#[test]
fn a_sync_applies_retention_in_its_own_version_and_brings_back_nothing_it_removed() {
    let s = Server::start();
    let upstream = Distribution::start();
    for tag in ["1.8", "1.9", "1.10", "edge"] {
        upstream.push(BUSYBOX, "docker-archive", &format!("ret/app:{tag}"));
    }
    let retention = json!({"keep_newest": 2, "tags": "1.*", "order": "name"});
    docker_repo(
        &s,
        "mirror",
        "lifecycle/mirror",
        json!({"feed": upstream.url(), "upstream_name": "ret/app", "retention": retention}),
    );
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(t["result"]["retention"]["removed"], json!(["1.8"]), "{t}");
    assert_eq!(tag_names(&content(&s, "mirror")), ["1.10", "1.9", "edge"]);
    assert_eq!(
        numbers(&versions(&s, "mirror")),
        [0, 1],
        "one version for both"
    );

    // The feed still has 1.8: the next sync brings it and retention takes
    // it away in the same call, so nothing changes.
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(t["result"]["version"], Value::Null, "{t}");
    assert_eq!(numbers(&versions(&s, "mirror")), [0, 1]);

    // A newer tag upstream pushes out the oldest kept one.
    upstream.push(BUSYBOX, "docker-archive", "ret/app:1.11");
    let t = sync(&s, "mirror");
    assert_eq!(
        t["result"]["retention"]["removed"],
        json!(["1.8", "1.9"]),
        "{t}"
    );
    assert_eq!(tag_names(&content(&s, "mirror")), ["1.10", "1.11", "edge"]);
    assert_eq!(numbers(&versions(&s, "mirror")), [0, 1, 2]);
}
