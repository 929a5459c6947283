//! The web console (`/ui/`) in a real browser: headless Chromium driven
//! through chromedriver (WebDriver) with `fantoccini`. One scenario walks
//! what a user does: log in, find a repository by a note, open an image
//! (tags, platforms, layers and their sizes), create a mirror and watch its
//! sync reach 100 %, copy a tag, delete a repository after a confirmation,
//! log out; then a read-only user sees no delete button and gets 403 when
//! the page's own API call tries. Another follows a sync that never ends
//! and cancels it from its page.
//!
//! Screenshots of the main pages go to `<run dir>/console-screenshots/`,
//! and to `docs/screenshots/` when `WHARF_UPDATE_SCREENSHOTS=1`.

use crate::registry_support::*;
use crate::support::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a page may take to show what the test waits for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a sync may take.
const TASK_TIMEOUT: Duration = Duration::from_secs(120);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, and one headless Chromium session through
/// it. Calls are synchronous (each runs on the browser's own runtime), so
/// a test mixes them freely with the blocking API helpers.
struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    dir: tempfile::TempDir,
    shots: Vec<PathBuf>,
}

impl Browser {
    fn start() -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: apt-get install chromium chromium-driver (scripts/test.sh does)"
            );
        }
        let dir = scratch();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while !anonymous_client()
            .get(format!("{driver_url}/status"))
            .send()
            .and_then(|r| r.json::<Value>())
            .is_ok_and(|v| v["value"]["ready"] == true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = dir.path().join("profile");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = rt
            .block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&driver_url),
            )
            .unwrap_or_else(|e| panic!("no Chromium session: {e}"));
        Browser {
            rt,
            client: Some(client),
            driver,
            dir,
            shots: Vec::new(),
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).unwrap();
    }

    /// Go to a page of the console (`#/...`) without reloading it, and
    /// wait for its heading.
    fn page(&self, hash: &str, heading: &str) {
        self.js(&format!("location.hash = {}", json!(hash)));
        self.heading(heading);
    }

    /// Wait until the page shown is the one with this heading.
    fn heading(&self, heading: &str) {
        self.wait(
            &format!("the page {heading:?}"),
            &format!(
                "document.querySelector('main h1').innerText === {}",
                json!(heading)
            ),
        );
    }

    /// Run a script in the page; its `return` value.
    fn js(&self, script: &str) -> Value {
        self.rt
            .block_on(self.c().execute(script, vec![]))
            .unwrap_or_else(|e| panic!("script {script:?} failed: {e}"))
    }

    /// Wait until `condition` (a JS expression) is true in the page.
    fn wait(&self, what: &str, condition: &str) {
        self.wait_for(what, condition, PAGE_TIMEOUT);
    }

    /// Wait until the page's task notice says a `kind` task finished.
    fn wait_task_notice(&self, kind: &str) {
        self.wait_for(
            &format!("the {kind} to finish"),
            &format!(
                "document.querySelector('#task-notice') \
                 && /^{kind} task .*: finished/.test(document.querySelector('#task-notice').innerText)"
            ),
            TASK_TIMEOUT,
        );
    }

    fn wait_for(&self, what: &str, condition: &str, timeout: Duration) {
        let script = format!("try {{ return !!({condition}); }} catch (e) {{ return false; }}");
        let start = Instant::now();
        while self.js(&script) != json!(true) {
            if start.elapsed() > timeout {
                panic!(
                    "waited {timeout:?} for {what} ({condition}); the page at {} shows:\n{}\nfields: {}",
                    self.js("return location.href"),
                    self.js("return document.body.innerText"),
                    self.js("return [...document.querySelectorAll('input, select, textarea')]\
                        .map(e => `${e.id}=${e.type === 'password' ? '*'.repeat(e.value.length) : e.value}`)")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The text of the first element `css` names (waiting for it).
    fn text(&self, css: &str) -> String {
        self.wait_shown(css);
        self.js(&format!(
            "return document.querySelector({}).innerText",
            json!(css)
        ))
        .as_str()
        .unwrap()
        .to_string()
    }

    fn exists(&self, css: &str) -> bool {
        self.js(&format!(
            "return document.querySelector({}) !== null",
            json!(css)
        )) == json!(true)
    }

    fn click(&self, css: &str) {
        self.wait_shown(css);
        self.rt
            .block_on(async { self.c().find(Locator::Css(css)).await?.click().await })
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Wait until an element matching `css` is on the page.
    fn wait_shown(&self, css: &str) {
        self.wait(
            &format!("{css} to show"),
            &format!("document.querySelector({})", json!(css)),
        );
    }

    /// Type into a field, as a user does (emptied first).
    fn fill(&self, css: &str, text: &str) {
        self.wait_shown(css);
        self.rt
            .block_on(async {
                let e = self.c().find(Locator::Css(css)).await?;
                e.clear().await?;
                e.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Press keys (WebDriver key codes, e.g. `\u{E00C}` Escape) in the
    /// element that has the focus.
    fn keys(&self, keys: &str) {
        self.rt
            .block_on(async { self.c().active_element().await?.send_keys(keys).await })
            .unwrap_or_else(|e| panic!("press {keys:?}: {e}"));
    }

    fn select(&self, css: &str, value: &str) {
        self.wait_shown(css);
        self.rt
            .block_on(async {
                self.c()
                    .find(Locator::Css(css))
                    .await?
                    .select_by_value(value)
                    .await
            })
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    /// Rows of the table `css` names.
    fn rows(&self, css: &str) -> usize {
        self.js(&format!(
            "return document.querySelectorAll({}).length",
            json!(format!("{css} tbody tr"))
        ))
        .as_u64()
        .unwrap() as usize
    }

    fn resize(&self, width: u32, height: u32) {
        self.rt
            .block_on(self.c().set_window_size(width, height))
            .unwrap();
    }

    /// Save a PNG of the window as `name.png`.
    fn screenshot(&mut self, name: &str) {
        // The top of the page, as a reader arriving on it sees it.
        self.js("window.scrollTo(0, 0)");
        let png = self.rt.block_on(self.c().screenshot()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let path = self.dir.path().join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        self.shots.push(path);
    }

    /// Keep the screenshots: in the run directory, and in docs/screenshots
    /// when asked to.
    fn keep_screenshots(&self) {
        let mut targets = vec![env_path("WHARF_TEST_RUN_DIR").join("console-screenshots")];
        if std::env::var("WHARF_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            targets.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"));
        }
        for dir in targets {
            std::fs::create_dir_all(&dir).unwrap();
            for shot in &self.shots {
                std::fs::copy(shot, dir.join(shot.file_name().unwrap())).unwrap();
            }
        }
    }

    /// Form fields without a label, and buttons or links without a name.
    fn unlabelled(&self) -> Value {
        self.js(
            "return [...document.querySelectorAll('input, select, textarea')]
                 .filter(e => e.type !== 'hidden' && (!e.labels || e.labels.length === 0))
                 .map(e => e.outerHTML)
               .concat([...document.querySelectorAll('button, a')]
                 .filter(e => !e.closest('[hidden]') && !(e.getAttribute('aria-label') || e.textContent.trim()))
                 .map(e => e.outerHTML))",
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Sizes as the console prints them (1024-based, two decimals under 10).
fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{n} B"),
        _ if v < 10.0 => format!("{v:.2} {}", units[u]),
        _ => format!("{v:.1} {}", units[u]),
    }
}

/// The two layers of the `v1` image in `app`, with their sizes.
fn layers_of(s: &Server, repo: &str, tag: &str) -> Vec<(String, u64)> {
    let (_, tags) = s.get_json(&format!("/api/v1/repositories/{repo}/content?type=tag"));
    let digest = tags["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["metadata"]["name"] == tag)
        .unwrap()["metadata"]["manifest"]
        .clone();
    let (_, manifests) = s.get_json(&format!(
        "/api/v1/repositories/{repo}/content?type=manifest"
    ));
    let (_, blobs) = s.get_json(&format!("/api/v1/repositories/{repo}/content?type=blob"));
    let manifest = manifests["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == digest)
        .unwrap()
        .clone();
    manifest["metadata"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let size = blobs["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["key"] == *l)
                .unwrap()["metadata"]["size"]
                .as_u64()
                .unwrap();
            (l.as_str().unwrap().to_string(), size)
        })
        .collect()
}

#[test]
fn a_user_finds_an_image_follows_a_sync_copies_a_tag_and_a_reader_may_not_delete() {
    let started = Instant::now();
    // An upstream registry to mirror, and a server with two repositories
    // an operator made: `app` (noted team=payments, published) and `base`
    // (a two-platform index), and two more that a search must leave out.
    let upstream = Distribution::start();
    upstream.push("busybox.tar", "docker-archive", "up/app:1.36");
    let s = Server::start();
    s.create_repo(json!({"id": "app", "content_type": "docker",
        "notes": {"team": "payments", "env": "prod"},
        "distributor_config": {"repo_registry_id": "my/app"}}));
    let t = import(&s, "app", &images_dir().join("two-layer.tar"));
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "app");
    s.create_repo(json!({"id": "base", "content_type": "docker", "notes": {"team": "platform"}}));
    let t = import(&s, "base", &images_dir().join("multi-arch-oci.tar"));
    assert_eq!(t["state"], "finished", "{t}");
    for id in ["web", "tools"] {
        s.create_repo(json!({"id": id, "content_type": "docker", "notes": {"team": "web"}}));
    }
    // A reader: may read repositories, nothing else.
    admin_post(
        &s,
        "/api/v1/roles",
        json!({"id": "readers", "description": "read only"}),
        201,
    );
    admin_post(
        &s,
        "/api/v1/permissions/grant",
        json!({"role_id": "readers", "resource": "/repositories", "operations": ["read"]}),
        200,
    );
    admin_post(
        &s,
        "/api/v1/users",
        json!({"login": "reader", "name": "Read Only", "password": "reader-password-1", "roles": ["readers"]}),
        201,
    );
    let setup = started.elapsed();

    let mut b = Browser::start();

    // `/ui` leads to the console, which asks for a login.
    b.goto(&s.url("/ui"));
    b.wait("the login form", "document.querySelector('#login-form')");
    assert_eq!(b.js("return location.pathname"), json!("/ui/"));
    assert!(
        b.unlabelled().as_array().unwrap().is_empty(),
        "{}",
        b.unlabelled()
    );
    b.screenshot("login");

    // Log in: the token is in session storage, never in the URL.
    b.fill("#login", "admin");
    b.fill("#password", ADMIN_PASSWORD);
    b.click("#login-submit");
    b.wait(
        "the repositories",
        "document.querySelectorAll('#repo-table tbody tr').length === 4",
    );
    let token = b.js("return sessionStorage.getItem('wharf.token')");
    let token = token.as_str().expect("a token in session storage");
    assert!(!token.is_empty());
    let url = b.js("return location.href").as_str().unwrap().to_string();
    assert!(!url.contains(token), "the token is in the URL: {url}");
    assert_eq!(
        b.js("return localStorage.length + document.cookie.length"),
        json!(0)
    );
    assert_eq!(b.text("#who"), "admin (super-user)");
    // Publication state, from each repository's details.
    b.wait(
        "app's publication",
        "document.querySelector('#repo-table').innerText.includes('my/app (v1)')",
    );
    b.screenshot("repositories");
    // Everything the page loaded came from this server (it works offline).
    let elsewhere = b.js(
        "return performance.getEntriesByType('resource').map(e => e.name)\
           .filter(n => !n.startsWith(location.origin + '/'))",
    );
    assert_eq!(elsewhere, json!([]), "loaded from another host");

    // Find a repository by a note (or a part of one), then by its id.
    b.fill("#repo-search", "team=payments");
    b.wait(
        "one match",
        "document.querySelectorAll('#repo-table tbody tr').length === 1",
    );
    assert_eq!(b.text("#repo-table tbody tr a"), "app");
    b.fill("#repo-search", "platform");
    b.wait(
        "base",
        "document.querySelector('#repo-table tbody tr a').innerText === 'base'",
    );
    assert_eq!(b.rows("#repo-table"), 1);
    b.fill("#repo-search", "");
    b.select("#repo-published", "yes");
    b.wait(
        "published ones only",
        "document.querySelectorAll('#repo-table tbody tr').length === 1",
    );
    assert_eq!(b.text("#repo-table tbody tr a"), "app");
    b.select("#repo-published", "");
    b.fill("#repo-search", "payments");
    b.wait(
        "one match",
        "document.querySelectorAll('#repo-table tbody tr').length === 1",
    );

    // Open it: its tag, the pull command, versions; and the image's layers.
    b.click("#repo-table tbody tr a");
    b.heading("app");
    b.wait(
        "app's tags",
        "document.querySelector('#tags-table').innerText.includes('v1')",
    );
    assert_eq!(
        b.text(".pull code"),
        format!("docker pull {}/my/app:v1", s.addr)
    );
    assert!(b.exists("#delete-repository") && b.exists("#publish"));
    b.wait(
        "the versions",
        "document.querySelectorAll('#versions-table tbody tr').length === 2",
    );
    assert!(b.text("#versions-table").contains("published"));
    b.screenshot("repository");

    b.click("#tags-table tbody tr a");
    b.heading("app:v1");
    b.wait("the layers", "document.querySelector('#layers-table')");
    let layers = layers_of(&s, "app", "v1");
    assert_eq!(b.rows("#layers-table"), layers.len());
    let shown = b.text("#layers-table");
    for (digest, size) in &layers {
        assert!(shown.contains(digest.as_str()), "{digest} not in {shown}");
        assert!(
            shown.contains(&human(*size)),
            "{} not in {shown}",
            human(*size)
        );
    }
    let total: u64 = layers.iter().map(|(_, s)| s).sum();
    assert!(
        shown.contains(&format!("{} layers, {} in all", layers.len(), human(total))),
        "{shown}"
    );
    b.screenshot("image");

    // An index shows its platforms.
    b.page("#/repositories/base", "base");
    b.click("#tags-table tbody tr a");
    b.heading("base:latest");
    b.wait(
        "the platforms",
        "document.querySelector('#platforms-table')",
    );
    let platforms = b.text("#platforms-table");
    assert!(
        platforms.contains("linux/amd64") && platforms.contains("linux/arm64"),
        "{platforms}"
    );
    assert_eq!(b.rows("#platforms-table"), 2);

    // Create a mirror of the upstream with the form, sync it, and watch
    // the task reach 100 % on its page without the page being reloaded.
    b.page("#/new-repository", "New repository");
    b.fill("#repo_id", "mirror");
    b.select("#content_type", "docker");
    b.fill("#repo_notes", "team=payments\nsource=upstream");
    b.fill("#feed", &upstream.url());
    b.fill("#upstream_name", "up/app");
    b.fill("#registry_name", "mirror/app");
    assert!(
        b.unlabelled().as_array().unwrap().is_empty(),
        "{}",
        b.unlabelled()
    );
    b.screenshot("new-repository");
    b.click("#create-submit");
    b.heading("mirror");
    assert_eq!(b.js("return location.hash"), json!("#/repositories/mirror"));
    assert!(
        b.exists("#sync"),
        "no Sync button for a repository with a feed"
    );
    b.js("window.notReloaded = true");
    b.click("#sync");
    b.wait(
        "the sync task's page",
        "location.hash.startsWith('#/tasks/') && document.querySelector('#task-progress')",
    );
    b.wait_for(
        "the sync to reach 100 %",
        "document.querySelector('#task-progress .percent').innerText === '100 %' \
         && document.querySelector('#task-state-value').innerText.startsWith('finished')",
        TASK_TIMEOUT,
    );
    // Its log: the plugin's own summary line, kept with the task.
    b.wait(
        "the sync's log line",
        "[...document.querySelectorAll('#task-log li')].some((li) => \
         li.innerText.includes('info: synced up/app from'))",
    );
    assert_eq!(
        b.js("return window.notReloaded === true"),
        json!(true),
        "the page was reloaded"
    );
    let task_id = b.js("return location.hash.slice('#/tasks/'.length)");
    let (_, task) = s.get_json(&format!("/api/v1/tasks/{}", task_id.as_str().unwrap()));
    assert_eq!(
        (task["kind"].as_str(), task["state"].as_str()),
        (Some("sync"), Some("finished")),
        "{task}"
    );
    assert!(
        task["log"]
            .as_array()
            .is_some_and(|lines| lines.iter().any(|l| l["level"] == "info"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("synced up/app from")))),
        "{task}"
    );
    assert!(b.text("#task-result").contains("units_added"));
    b.screenshot("task");

    // The task list updates itself: a publish started elsewhere shows up
    // and ends there, without a reload.
    b.page("#/tasks", "Tasks");
    b.wait(
        "the sync in the list",
        "document.querySelector('table.tasks').innerText.includes('sync')",
    );
    let publish = admin_post(&s, "/api/v1/repositories/mirror/publish", json!({}), 202);
    let short = &publish["id"].as_str().unwrap()[..12];
    b.wait_for(
        "the publish to show up finished",
        &format!(
            "[...document.querySelectorAll('table.tasks tbody tr')].some(r => r.innerText.includes({}) \
             && r.innerText.includes('finished') && r.innerText.includes('100 %'))",
            json!(short)
        ),
        TASK_TIMEOUT,
    );
    assert_eq!(
        b.js("return window.notReloaded === true"),
        json!(true),
        "the page was reloaded"
    );
    b.screenshot("tasks");

    // Publish with the page's button, then copy the mirrored tag into `app`.
    b.page("#/repositories/mirror", "mirror");
    b.click("#publish");
    b.wait_task_notice("publish");
    b.select("#copy-tag", "1.36");
    b.fill("#copy-to", "app");
    b.click("#copy-submit");
    b.wait_task_notice("copy");
    let c = content(&s, "app");
    assert_eq!(tag_names(&c), ["1.36", "v1"]);
    b.page("#/repositories/app", "app");
    b.wait(
        "the copied tag",
        "document.querySelector('#tags-table').innerText.includes('1.36')",
    );

    // Delete a repository, after a confirmation that can be declined.
    b.page("#/repositories/tools", "tools");
    b.click("#delete-repository");
    b.wait("the confirmation", "document.querySelector('dialog[open]')");
    assert!(b.text("dialog[open]").contains("cannot be undone"));
    // The safe choice has the focus, and Escape declines.
    assert_eq!(
        b.js("return document.activeElement.id"),
        json!("confirm-cancel")
    );
    b.keys("\u{E00C}");
    b.wait("the dialog to close", "!document.querySelector('dialog')");
    assert_eq!(
        s.get_json("/api/v1/repositories/tools").0,
        200,
        "deleted without a yes"
    );
    b.click("#delete-repository");
    b.click("#confirm-ok");
    b.wait_for(
        "the delete task to finish",
        "location.hash.startsWith('#/tasks/') && document.querySelector('#task-state-value') \
         && document.querySelector('#task-state-value').innerText.startsWith('finished')",
        TASK_TIMEOUT,
    );
    assert_eq!(
        s.get_json("/api/v1/repositories/tools").0,
        404,
        "tools is still there"
    );

    // Users and roles, plugins, event listeners.
    b.page("#/access", "Users and roles");
    b.wait("the users", "document.querySelector('#users-table') && document.querySelector('#users-table').innerText.includes('reader')");
    b.screenshot("users");
    b.page("#/plugins", "Plugins");
    let plugins = b.text("#plugins-table");
    assert!(
        plugins.contains("docker") && plugins.contains("file"),
        "{plugins}"
    );
    b.page("#/events", "Event listeners");
    b.wait(
        "the listeners page",
        "document.querySelector('main').innerText.includes('No event listeners')",
    );

    // On a phone: one column, nothing wider than the screen.
    b.resize(390, 844);
    b.page("#/repositories/app", "app");
    assert_eq!(
        b.js("return document.documentElement.scrollWidth <= window.innerWidth"),
        json!(true),
        "the page is wider than a phone"
    );
    b.screenshot("phone");
    b.resize(1280, 900);

    // Log out: the token is gone from the browser and revoked.
    b.click("#logout");
    b.wait("the login form", "document.querySelector('#login-form')");
    assert_eq!(
        b.js("return sessionStorage.getItem('wharf.token')"),
        Value::Null
    );
    let (status, _) = send(s.client_with_token(token).get(s.url("/api/v1/me")));
    assert_eq!(status, 401, "the token still works after logging out");

    // A reader logs in with the keyboard only, and sees no action.
    b.fill("#login", "reader");
    b.fill("#password", "reader-password-1\u{E007}");
    b.wait(
        "the repositories",
        "document.querySelectorAll('#repo-table tbody tr').length === 4",
    );
    b.page("#/repositories/app", "app");
    b.wait("app's tags", "document.querySelector('#tags-table')");
    for button in ["#delete-repository", "#publish", "#sync", "#copy-form"] {
        assert!(!b.exists(button), "a reader sees {button}");
    }
    assert!(!b.exists("#new-repository"));
    // The server refuses what the page hides: the page's own API call.
    let refused = b.rt.block_on(b.c().execute_async(
        "const done = arguments[arguments.length - 1];
         fetch('../api/v1/repositories/app', {method: 'DELETE',
             headers: {Authorization: 'Bearer ' + sessionStorage.getItem('wharf.token')}})
           .then(async r => done({status: r.status, body: await r.json()}));",
        vec![],
    ));
    let refused = refused.unwrap();
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["body"]["error"]["code"], "forbidden", "{refused}");
    assert_eq!(
        s.get_json("/api/v1/repositories/app").0,
        200,
        "app was deleted"
    );
    // And a page the reader may not read says so, with the server's words.
    b.page("#/access", "Users and roles");
    b.wait("the refusal", "document.querySelector('.alert') && document.querySelector('.alert').innerText.startsWith('403')");

    b.keep_screenshots();
    eprintln!(
        "console scenario: setup {:.1}s, in the browser {:.1}s",
        setup.as_secs_f64(),
        (started.elapsed() - setup).as_secs_f64()
    );
}

#[test]
fn a_running_sync_is_followed_live_and_canceled_from_its_page() {
    // A feed whose one layer (1 GiB promised) trickles in: the sync runs
    // until it is canceled.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let feed = FakeUpstream::start(
        config.to_vec(),
        (sha256_digest(b"a big layer"), 1 << 30),
        LayerReply::Endless {
            pause: Duration::from_millis(10),
        },
    );
    let s = Server::start();
    docker_repo(
        &s,
        "slow",
        "slow/app",
        json!({"feed": feed.url, "upstream_name": "slow/app"}),
    );
    let mut b = Browser::start();
    b.goto(&s.url("/ui/"));
    b.fill("#login", "admin");
    b.fill("#password", &format!("{ADMIN_PASSWORD}\u{E007}"));
    b.wait("the repositories", "document.querySelector('#repo-table')");
    b.page("#/repositories/slow", "slow");
    b.js("window.notReloaded = true");
    b.click("#sync");
    // The task's page: running (the layer never completes), with Cancel.
    b.wait_for(
        "the sync to run",
        "document.querySelector('#task-state-value').innerText.startsWith('running') \
         && document.querySelector('#cancel-task')",
        TASK_TIMEOUT,
    );
    assert!(!b.text("#task-progress").contains("100 %"));
    b.screenshot("task-running");
    // Cancel it from the page.
    b.click("#cancel-task");
    b.wait_for(
        "the task to be canceled",
        "document.querySelector('#task-state-value').innerText.startsWith('canceled')",
        TASK_TIMEOUT,
    );
    assert!(
        !b.exists("#cancel-task"),
        "an ended task still offers Cancel"
    );
    assert_eq!(
        b.js("return window.notReloaded === true"),
        json!(true),
        "the page was reloaded"
    );
    let id = b.js("return location.hash.slice('#/tasks/'.length)");
    let (_, task) = s.get_json(&format!("/api/v1/tasks/{}", id.as_str().unwrap()));
    assert_eq!(task["state"], "canceled", "{task}");
    b.keep_screenshots();
}

#[test]
fn a_directory_user_logs_in_and_sees_what_their_group_allows() {
    // LDAP (scripts/slapd.sh): ldev is in cn=devs, mapped to the role
    // `contributor`, which may create and read repositories, not delete.
    let url = std::env::var("WHARF_TEST_LDAP_URL")
        .expect("WHARF_TEST_LDAP_URL: run through scripts/test.sh");
    let devs = "cn=devs,ou=groups,dc=example,dc=org=contributor";
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &[
            "--ldap-url",
            &url,
            "--ldap-group-base",
            "ou=groups,dc=example,dc=org",
            "--ldap-group-role",
            devs,
            "--ldap-user-dn-template",
            "uid={login},ou=people,dc=example,dc=org",
        ],
    );
    admin_post(&s, "/api/v1/roles", json!({"id": "contributor"}), 201);
    admin_post(
        &s,
        "/api/v1/permissions/grant",
        json!({"role_id": "contributor", "resource": "/repositories", "operations": ["create", "read"]}),
        200,
    );
    s.create_repo(json!({"id": "app", "content_type": "docker"}));

    let b = Browser::start();
    b.goto(&s.url("/ui/"));
    b.fill("#login", "ldev");
    b.fill("#password", "ldev-password\u{E007}");
    b.wait(
        "the repositories",
        "document.querySelectorAll('#repo-table tbody tr').length === 1",
    );
    assert_eq!(b.text("#who"), "ldev");
    assert!(b.exists("#new-repository"), "ldev may create repositories");
    b.page("#/access", "Users and roles");
    let me = b.text("section[aria-labelledby='s-you']");
    assert!(
        me.contains("directory (LDAP)") && me.contains("contributor"),
        "{me}"
    );
    b.page("#/repositories/app", "app");
    assert!(!b.exists("#delete-repository") && !b.exists("#publish"));
    // A wrong password is refused with a message, and no token is kept.
    b.click("#logout");
    b.fill("#login", "ldev");
    b.fill("#password", "wrong\u{E007}");
    b.wait(
        "the refusal",
        "document.querySelector('#login-error .alert')",
    );
    assert!(b.text("#login-error").contains("Wrong login or password"));
    assert_eq!(
        b.js("return sessionStorage.getItem('wharf.token')"),
        Value::Null
    );
}

#[test]
fn the_console_is_three_files_under_a_strict_policy_on_the_admin_side_only() {
    // One listener for both sides: the built-in files; `/` stays the
    // registry's.
    let s = Server::start();
    let http = no_redirects();
    for (path, content_type, marker) in [
        (
            "/ui/",
            "text/html",
            r#"<script type="module" src="app.js">"#,
        ),
        ("/ui/app.js", "text/javascript", "sessionStorage"),
        ("/ui/app.css", "text/css", "[hidden]"),
    ] {
        let r = http.get(s.url(path)).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(
            header(&r, "content-type").starts_with(content_type),
            "{path}"
        );
        let csp = header(&r, "content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
        assert!(r.text().unwrap().contains(marker), "{path}");
    }
    let r = http.get(s.url("/ui")).send().unwrap();
    assert_eq!(
        (r.status().as_u16(), header(&r, "location")),
        (303, "ui/".into())
    );
    assert_eq!(http.get(s.url("/")).send().unwrap().status().as_u16(), 404);
    // Only the three files: nothing else a request names is read.
    for path in ["/ui/wharf.db", "/ui/..%2fconsole.rs", "/ui/app.js.map"] {
        assert_eq!(
            http.get(s.url(path)).send().unwrap().status().as_u16(),
            404,
            "{path}"
        );
    }

    // The admin side on its own: `/` leads to the console, which the
    // registry side does not serve; --console-dir serves the directory's
    // files as they are at each request.
    let dir = scratch();
    std::fs::write(dir.path().join("index.html"), "<title>draft 1</title>").unwrap();
    let registry = format!("127.0.0.1:{}", free_port());
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &[
            "--registry-listen",
            &registry,
            "--console-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    let r = http.get(s.url("/")).send().unwrap();
    assert_eq!(
        (r.status().as_u16(), header(&r, "location")),
        (303, "ui/".into())
    );
    let page = |s: &Server| http.get(s.url("/ui/")).send().unwrap().text().unwrap();
    assert_eq!(page(&s), "<title>draft 1</title>");
    std::fs::write(dir.path().join("index.html"), "<title>draft 2</title>").unwrap();
    assert_eq!(page(&s), "<title>draft 2</title>");
    let (status, v) = send(http.get(s.url("/ui/app.js")));
    assert_eq!(status, 404);
    assert!(
        message(&v).contains("app.js") && message(&v).contains("--console-dir must hold"),
        "{v}"
    );
    // A name climbing out of the directory reads nothing there: a file
    // beside it stays unread, however the dots are spelled.
    let outside = dir.path().parent().unwrap().join("console-secret.txt");
    std::fs::write(&outside, "not for the console").unwrap();
    for path in [
        "/ui/..%2fconsole-secret.txt",
        "/ui/%2e%2e%2fconsole-secret.txt",
        "/ui/%2e%2e/console-secret.txt",
        "/ui/..%5cconsole-secret.txt",
    ] {
        let r = http.get(s.url(path)).send().unwrap();
        let status = r.status().as_u16();
        let body = r.text().unwrap();
        assert!(
            status == 404 && !body.contains("not for the console"),
            "{path}: {status} {body}"
        );
    }
    std::fs::remove_file(&outside).unwrap();
    let r = http.get(format!("http://{registry}/ui/")).send().unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "the registry side serves the console"
    );
}
