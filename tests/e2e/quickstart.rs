//! `docs/quickstart.md` (the seed's Pulp Docker quickstart, in Wharf's
//! commands) replayed command by command against a real server, a real
//! Docker engine and a real upstream registry (`docker-registry`), so the
//! page and the code cannot drift apart.
//!
//! How the page is read (also written at the end of the page):
//!
//! - Fenced blocks with the info string `sh` are replayed: each line is a
//!   command (a line ending in `\` continues on the next; blank lines and
//!   `#` comment lines are skipped), run in order with
//!   `bash -o pipefail -o nounset -c` in one working directory.
//! - A command must exit 0, except one whose comment says `# fails`: it must
//!   exit non-zero and print an `error:` line.
//! - `sh env` blocks define the placeholders (`export NAME=VALUE`); the test
//!   gives each NAME its own value, and the names must match [`placeholders`].
//! - `sh no-replay` blocks are for the reader only (starting a server,
//!   getting an image); any other `sh ...` info string is a mistake.
//! - Other blocks (`text`: example output) are not run.

use crate::cli::{Wharf, assert_failed, run_bounded};
use crate::registry_support::*;
use crate::support::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One command of the page.
#[derive(Debug, PartialEq)]
struct DocCommand {
    /// 1-based line of the page where it starts.
    line: usize,
    text: String,
    /// Marked `# fails`: must exit non-zero.
    fails: bool,
}

#[derive(Debug, Default, PartialEq)]
struct Doc {
    /// Names the `sh env` blocks export.
    placeholders: BTreeSet<String>,
    commands: Vec<DocCommand>,
}

#[derive(Clone, Copy, PartialEq)]
enum Block {
    Replay,
    Env,
    NoReplay,
    Other,
}

fn parse(markdown: &str) -> Result<Doc, String> {
    let mut doc = Doc::default();
    let mut block: Option<Block> = None;
    // A command continued with `\`: its first line and text so far.
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in markdown.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if let Some(info) = line.strip_prefix("```") {
            match block {
                None => {
                    let words: Vec<&str> = info.split_whitespace().collect();
                    block = Some(match words.as_slice() {
                        ["sh"] => Block::Replay,
                        ["sh", "env"] => Block::Env,
                        ["sh", "no-replay"] => Block::NoReplay,
                        ["sh", ..] => {
                            return Err(format!(
                                "line {n}: unknown block kind {info:?}: use `sh`, `sh env` or `sh no-replay`"
                            ));
                        }
                        _ => Block::Other,
                    });
                }
                Some(_) if info.is_empty() => {
                    if let Some((start, _)) = pending {
                        return Err(format!(
                            "line {start}: the command's last line ends in `\\`"
                        ));
                    }
                    block = None;
                }
                Some(_) => return Err(format!("line {n}: a fence inside a block")),
            }
            continue;
        }
        match block {
            Some(Block::Replay) => {
                let (start, mut text) = match pending.take() {
                    Some((start, text)) => (start, text + " " + line),
                    None if line.is_empty() || line.starts_with('#') => continue,
                    None => (n, line.to_string()),
                };
                if let Some(head) = text.strip_suffix('\\') {
                    text = head.trim_end().to_string();
                    pending = Some((start, text));
                    continue;
                }
                let fails = text.contains("# fails");
                doc.commands.push(DocCommand {
                    line: start,
                    text,
                    fails,
                });
            }
            Some(Block::Env) => {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let name = line
                    .strip_prefix("export ")
                    .and_then(|rest| rest.split_once('='))
                    .map(|(name, _)| name.trim())
                    .filter(|name| {
                        !name.is_empty()
                            && name
                                .chars()
                                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    })
                    .ok_or_else(|| {
                        format!("line {n}: an `sh env` line must be `export NAME=VALUE`: {line:?}")
                    })?;
                doc.placeholders.insert(name.to_string());
            }
            Some(Block::NoReplay) | Some(Block::Other) | None => {}
        }
    }
    if block.is_some() {
        return Err("a fenced block is not closed".into());
    }
    Ok(doc)
}

fn quickstart() -> Doc {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/quickstart.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse(&text).unwrap_or_else(|e| panic!("docs/quickstart.md: {e}"))
}

/// The placeholders and the values the test gives them.
fn placeholders(s: &Server, upstream: &Distribution) -> Vec<(&'static str, String)> {
    vec![
        ("WHARF_SERVER", s.base.clone()),
        ("REGISTRY", s.addr.clone()),
        ("WHARF_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
        (
            "NEW_ADMIN_PASSWORD",
            "quickstart-new-admin-password".to_string(),
        ),
        ("UPSTREAM", upstream.url()),
    ]
}

/// What the seed does, each of which the page must replay: if a section is
/// dropped, this fails instead of the replay passing with less.
const SEED_WORKFLOWS: &[&str] = &[
    "wharf login -u admin",
    "wharf auth user update --login admin -p",
    "docker save my/app | wharf publish-docker --id app --repo my/app --publish",
    "wharf publish-docker --id app --repo my/app --file ",
    "wharf publish-docker --list",
    "docker pull \"$REGISTRY/my/app:latest\"",
    "wharf auth role create --role-id contributor",
    "wharf auth role create --role-id repo_admin",
    "wharf auth permission grant --role-id contributor --resource /repositories",
    "wharf auth permission grant --role-id contributor --resource /content/uploads",
    "wharf auth permission grant --role-id repo_admin --resource /repositories -o create -o read -o update -o delete -o execute",
    "wharf auth user create --login jdev",
    "wharf auth user create --login madmin",
    "wharf auth role user add --role-id contributor --login jdev",
    "wharf auth role user add --role-id repo_admin --login madmin",
    "wharf logout",
    "wharf login -u jdev",
    "wharf login -u madmin",
    "wharf docker repo sync --repo-id busybox --feed \"$UPSTREAM\" --upstream-name ",
    "wharf repo group create --group-id baseos",
    "wharf repo group members add --group-id=baseos --repo-id busybox",
    "wharf repo group update --group-id baseos --note ",
    "wharf docker repo update --repo-id busybox --note environment=test",
    "wharf docker repo create --repo-id busybox-prod --note environment=prod",
    "wharf docker repo images --repo-id busybox",
    "wharf docker repo copy --from-repo-id busybox --to-repo-id busybox-prod",
    "wharf docker repo publish --repo-id busybox-prod",
    "docker pull \"$REGISTRY/busybox-prod:latest\"",
    "wharf task list",
    // Beyond the seed: versions, promotion and rollback.
    "wharf docker repo copy --from-repo-id app-dev --to-repo-id app-prod --tag latest",
    "wharf docker repo tag --repo-id app-dev --tag latest --from-tag 2",
    "wharf repo versions diff --repo-id app-dev --from 1 --to 3",
    "wharf docker repo publish --repo-id app-prod --version 1",
    "wharf repo versions restore --repo-id app-prod --version 1",
    "wharf docker repo remove --repo-id app-dev --tag 2",
    // Beyond the seed: pushing.
    "docker push \"$REGISTRY/team/app:1.0\"",
    "docker pull \"$REGISTRY/team/app:1.0\"",
];

#[test]
fn the_quickstart_parses_by_its_documented_convention() {
    let md = "intro\n\
        ```sh env\nexport A_B=1   # note\n```\n\
        ```sh\n# a comment\n\nwharf one\nwharf two \\\n  --flag x\nwharf three   # fails: why\n```\n\
        ```text\nnot run\n```\n\
        1. a list\n\n   ```sh\n   wharf indented\n   ```\n\
        ```sh no-replay\nmake run\n```\n";
    let doc = parse(md).unwrap();
    assert_eq!(doc.placeholders, BTreeSet::from(["A_B".to_string()]));
    let got: Vec<(usize, &str, bool)> = doc
        .commands
        .iter()
        .map(|c| (c.line, c.text.as_str(), c.fails))
        .collect();
    assert_eq!(
        got,
        [
            (8, "wharf one", false),
            (9, "wharf two --flag x", false),
            (11, "wharf three   # fails: why", true),
            (19, "wharf indented", false),
        ]
    );
    assert!(parse("```sh noreplay\nx\n```\n").is_err(), "a typo'd kind");
    assert!(
        parse("```sh\nwharf x \\\n```\n").is_err(),
        "a dangling `\\`"
    );
    assert!(
        parse("```sh env\nA=1\n```\n").is_err(),
        "an env line without export"
    );
    assert!(parse("```sh\nwharf x\n").is_err(), "an unclosed block");

    let doc = quickstart();
    for step in SEED_WORKFLOWS {
        assert!(
            doc.commands
                .iter()
                .any(|c| !c.fails && c.text.contains(step)),
            "docs/quickstart.md no longer replays {step:?}"
        );
    }
    for refused in ["wharf docker repo delete --repo-id", "wharf auth user list"] {
        assert!(
            doc.commands
                .iter()
                .any(|c| c.fails && c.text.starts_with(refused)),
            "docs/quickstart.md no longer shows jdev refused: {refused:?}"
        );
    }
}

/// Images the replay leaves in the shared Docker engine, removed however
/// the test ends.
struct EngineImages(Vec<String>);

impl Drop for EngineImages {
    fn drop(&mut self) {
        let _ = run(docker().arg("rmi").arg("-f").args(&self.0));
    }
}

#[test]
fn the_quickstart_replays_against_a_real_server_docker_engine_and_upstream_registry() {
    let doc = quickstart();

    // The upstream the page mirrors `library/busybox` from.
    let upstream = Distribution::start();
    upstream.push("busybox.tar", "docker-archive", "library/busybox:latest");
    let s = Server::start();
    let values = placeholders(&s, &upstream);
    let names: BTreeSet<String> = values.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(
        doc.placeholders, names,
        "the `sh env` block of docs/quickstart.md and this test disagree on the placeholders"
    );

    let _images = EngineImages(
        [
            "my/app:latest".to_string(),
            format!("{}/my/app:latest", s.addr),
            format!("{}/jdev/app:latest", s.addr),
            format!("{}/busybox:latest", s.addr),
            format!("{}/busybox-prod:latest", s.addr),
            format!("{}/team/app:1.0", s.addr),
        ]
        .into(),
    );
    // The reader's `my/app`: busybox, under a name of its own.
    docker_load_busybox_as("my/app:latest");
    let work = scratch();

    let client = Wharf::new(&s.base);
    for c in &doc.commands {
        let mut cmd = Command::new("bash");
        cmd.args(["-o", "pipefail", "-o", "nounset", "-c", &c.text])
            .current_dir(work.path());
        client.environment(&mut cmd);
        for (name, value) in &values {
            cmd.env(name, value);
        }
        let out = run_bounded(cmd, None, Duration::from_secs(300));
        let what = format!("docs/quickstart.md:{}: `{}`", c.line, c.text);
        if c.fails {
            assert_failed(&out, &what);
        } else {
            assert_eq!(out.code, Some(0), "{what} failed: {}", out.describe());
        }
    }

    // What the page did, seen from outside.
    let new_password = &values
        .iter()
        .find(|(k, _)| *k == "NEW_ADMIN_PASSWORD")
        .unwrap()
        .1;
    // The password change revoked the harness's admin token too: ask with
    // the new password (HTTP basic) instead.
    let admin = anonymous_client();
    let get = |path: &str| {
        let r = admin
            .get(s.url(path))
            .basic_auth("admin", Some(new_password))
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().unwrap_or_default(),
        )
    };
    assert_eq!(get("/api/v1/repositories/jdev-app").0, 404);
    let (status, g) = get("/api/v1/groups/baseos");
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["members"], serde_json::json!(["busybox"]), "{g}");
    assert_eq!(g["notes"]["owner"], "platform-team", "{g}");
    let (_, r) = get("/api/v1/repositories/busybox-prod");
    assert_eq!(
        r["notes"],
        serde_json::json!({"environment": "prod"}),
        "{r}"
    );
    let r = request(
        &s,
        "GET",
        "/v2/busybox-prod/manifests/latest",
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        header(&r, "docker-content-digest"),
        upstream.manifest("library/busybox", "latest").1,
        "busybox-prod does not serve the upstream's image"
    );
}
