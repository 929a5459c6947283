//! Access control tried as an attacker would, against the real binary:
//! escalation through users, roles and permission grants; secrets read back
//! through every read path (API, CLI, task records, `db export`); and the
//! modes of the data directory's files. Each test asserts that the attack
//! fails and that the legitimate path next to it still works.

use crate::support::*;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The raw text of an answer (what a client could see, all of it).
fn text(r: RequestBuilder) -> (u16, String) {
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn grant(s: &Server, subject: (&str, &str), resource: &str, ops: &[&str]) {
    let mut body = json!({"resource": resource, "operations": ops});
    body[subject.0] = json!(subject.1);
    admin_post(s, "/api/v1/permissions/grant", body, 200);
}

fn role(s: &Server, id: &str) {
    admin_post(s, "/api/v1/roles", json!({"id": id}), 201);
}

fn user(s: &Server, login: &str, roles: &[&str]) -> Client {
    let password = format!("{login}-password");
    admin_post(
        s,
        "/api/v1/users",
        json!({"login": login, "password": password, "roles": roles}),
        201,
    );
    s.client_with_token(&s.login(login, &password))
}

/// Asserts a 403 whose message names what is missing.
fn refused(what: &str, (status, v): (u16, Value), names: &str) {
    assert_eq!(status, 403, "{what} must be refused: {v}");
    assert_eq!(v["error"]["code"], "forbidden", "{what}: {v}");
    assert!(
        message(&v).contains(names),
        "{what}: the message should name {names:?}: {v}"
    );
}

/// A user manager — create, read, update and delete on `/users`, update on
/// `/roles` and `/permissions`, read on `/repositories` — tries to make
/// itself (or an accomplice) more than that.
#[test]
fn a_user_manager_cannot_hand_out_more_than_it_holds() {
    let s = Server::start();
    role(&s, "user_admin");
    grant(
        &s,
        ("role_id", "user_admin"),
        "/users",
        &["create", "read", "update", "delete"],
    );
    grant(&s, ("role_id", "user_admin"), "/roles", &["read", "update"]);
    grant(
        &s,
        ("role_id", "user_admin"),
        "/permissions",
        &["read", "update"],
    );
    grant(&s, ("role_id", "user_admin"), "/repositories", &["read"]);
    role(&s, "repo_admin");
    grant(
        &s,
        ("role_id", "repo_admin"),
        "/repositories",
        &["create", "read", "update", "delete", "execute"],
    );
    role(&s, "repo_reader");
    grant(&s, ("role_id", "repo_reader"), "/repositories", &["read"]);
    let ua = user(&s, "ua", &["user_admin"]);
    user(&s, "madmin", &["repo_admin"]);
    let post = |path: &str, body: Value| send(ua.post(s.url(path)).json(&body));
    let patch = |path: &str, body: Value| send(ua.patch(s.url(path)).json(&body));

    // --- super-users, every way in.
    refused(
        "creating a super-user",
        post(
            "/api/v1/users",
            json!({"login": "evil", "password": "evil-password", "roles": ["super-users"]}),
        ),
        "only a super-user may grant the role super-users",
    );
    assert_eq!(s.get_json("/api/v1/users/evil").0, 404, "not created");
    refused(
        "making oneself a super-user",
        patch(
            "/api/v1/users/ua",
            json!({"roles": ["super-users", "user_admin"]}),
        ),
        "super-users",
    );
    refused(
        "joining super-users through the role",
        post("/api/v1/roles/super-users/users", json!({"login": "ua"})),
        "super-users",
    );
    let (status, plain) = post(
        "/api/v1/users",
        json!({"login": "plain", "password": "plain-password"}),
    );
    assert_eq!(status, 201, "a plain user may be created: {plain}");
    refused(
        "making an accomplice a super-user",
        patch("/api/v1/users/plain", json!({"roles": ["super-users"]})),
        "super-users",
    );
    let (_, me) = send(ua.get(s.url("/api/v1/me")));
    assert_eq!(me["super_user"], false, "{me}");
    assert_eq!(me["roles"], json!(["user_admin"]), "{me}");
    let (_, plain) = s.get_json("/api/v1/users/plain");
    assert_eq!(plain["roles"], json!([]), "{plain}");

    // --- taking over or demoting an administrator.
    refused(
        "resetting the admin's password",
        patch("/api/v1/users/admin", json!({"password": "taken-over-1"})),
        "only a super-user may set the password of the super-user admin",
    );
    s.login("admin", ADMIN_PASSWORD);
    refused(
        "deleting the admin",
        send(ua.delete(s.url("/api/v1/users/admin"))),
        "super-user",
    );
    refused(
        "removing the admin from super-users",
        send(ua.delete(s.url("/api/v1/roles/super-users/users/admin"))),
        "only a super-user may remove admin from super-users",
    );
    refused(
        "resetting the password of a user holding more",
        patch("/api/v1/users/madmin", json!({"password": "taken-over-2"})),
        "lacks 'create' on /repositories/, so may not set the password of madmin",
    );
    s.login("madmin", "madmin-password");

    // --- an ordinary role carrying what the granter lacks.
    refused(
        "creating a user with a stronger role",
        post(
            "/api/v1/users",
            json!({"login": "evil2", "password": "evil-password", "roles": ["repo_admin"]}),
        ),
        "user ua lacks 'create' on /repositories/, so may not grant the role repo_admin",
    );
    assert_eq!(s.get_json("/api/v1/users/evil2").0, 404, "not created");
    refused(
        "giving oneself a stronger role",
        patch(
            "/api/v1/users/ua",
            json!({"roles": ["repo_admin", "user_admin"]}),
        ),
        "may not grant the role repo_admin",
    );
    refused(
        "giving an accomplice a stronger role",
        patch("/api/v1/users/plain", json!({"roles": ["repo_admin"]})),
        "may not grant the role repo_admin",
    );
    refused(
        "joining a stronger role",
        post("/api/v1/roles/repo_admin/users", json!({"login": "ua"})),
        "may not grant the role repo_admin",
    );

    // --- permission grants beyond one's own.
    refused(
        "granting one's own role more",
        post(
            "/api/v1/permissions/grant",
            json!({"role_id": "user_admin", "resource": "/repositories", "operations": ["delete"]}),
        ),
        "user ua lacks 'delete' on /repositories/, so may not grant it to role user_admin",
    );
    refused(
        "granting oneself the root",
        post(
            "/api/v1/permissions/grant",
            json!({"login": "ua", "resource": "/", "operations": ["read"]}),
        ),
        "lacks 'read' on /",
    );
    refused(
        "granting an accomplice a sibling resource",
        post(
            "/api/v1/permissions/grant",
            json!({"login": "plain", "resource": "/plugins", "operations": ["create"]}),
        ),
        "lacks 'create' on /plugins/",
    );
    let (_, perms) = s.get_json("/api/v1/permissions?role_id=user_admin");
    let on_repos = perms
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["resource"] == "/repositories/")
        .unwrap_or_else(|| panic!("{perms}"));
    assert_eq!(
        on_repos["operations"],
        json!(["read"]),
        "unchanged: {perms}"
    );
    let (_, perms) = s.get_json("/api/v1/permissions?login=ua");
    assert_eq!(perms, json!([]), "nothing was granted to ua: {perms}");

    // --- what the user manager holds, it may hand on.
    let (status, v) = post(
        "/api/v1/users",
        json!({"login": "reader1", "password": "reader1-password", "roles": ["repo_reader"]}),
    );
    assert_eq!(status, 201, "a role whose permissions ua holds: {v}");
    let (status, v) = patch("/api/v1/users/plain", json!({"roles": ["repo_reader"]}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["roles"], json!(["repo_reader"]));
    let (status, v) = post("/api/v1/roles/repo_reader/users", json!({"login": "ua"}));
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(
        "/api/v1/permissions/grant",
        json!({"role_id": "repo_reader", "resource": "/repositories/app", "operations": ["read"]}),
    );
    assert_eq!(status, 200, "read below a read ua holds: {v}");
    let (status, v) = patch(
        "/api/v1/users/plain",
        json!({"password": "plain-password-2"}),
    );
    assert_eq!(status, 200, "plain holds nothing ua lacks: {v}");
    s.login("plain", "plain-password-2");
    let (status, v) = send(ua.delete(s.url("/api/v1/users/reader1")));
    assert_eq!(status, 204, "{v}");

    // A super-user still grants everything.
    let (status, v) = s.post_json(
        "/api/v1/users",
        &json!({"login": "admin2", "password": "admin2-password", "roles": ["super-users"]}),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = s.post_json("/api/v1/roles/repo_admin/users", &json!({"login": "ua"}));
    assert_eq!(status, 200, "{v}");
}

/// Records the `Authorization` header of every request and answers each
/// with a Basic challenge: a feed that wants credentials, and tells which it
/// got.
fn challenging_feed() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = v.trim().to_string();
                }
            }
            record.lock().unwrap().push(auth);
            let _ = conn.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"feed\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (url, seen)
}

/// `Authorization: Basic` for `user` and `password` (RFC 4648 base64).
fn basic(user: &str, password: &str) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `wharf` admin client with a home of its own, logged in as `login`.
fn cli(s: &Server, home: &Path, login: &str, password: &str) -> impl Fn(&[&str]) -> String + use<> {
    let base = s.base.clone();
    let home = home.to_path_buf();
    let run = move |args: &[&str]| {
        let out = Command::new(env_path("WHARF_BIN"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("WHARF_SERVER", &base)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "wharf {args:?}: {stdout}\n{stderr}");
        stdout + &stderr
    };
    run(&["login", "-u", login, "-p", password]);
    run
}

fn wharf_db(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env_path("WHARF_BIN"))
        .arg("db")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A reader of a repository whose feed needs a password tries every read
/// path for it; an editor's GET-modify-PATCH round trip keeps it.
#[test]
fn feed_and_webhook_secrets_are_write_only() {
    const PASSWORD: &str = "feed-secret-pw-1";
    const URL_PASSWORD: &str = "url-secret-pw-2";
    const HOOK_SECRET: &str = "hook-secret-3";
    let mut s = Server::start();
    let (feed, seen) = challenging_feed();
    s.create_repo(json!({
        "id": "private-feed",
        "content_type": "docker",
        "importer_config": {"feed": feed, "upstream_name": "team/app", "username": "feeduser", "password": PASSWORD},
        "distributor_config": {"repo_registry_id": "team/app", "protected": true},
    }));
    let (status, created) = s.post_json(
        "/api/v1/repositories",
        &json!({"id": "url-feed", "content_type": "docker",
                "importer_config": {"feed": format!("http://bob:{URL_PASSWORD}@feed.example.invalid:5000"), "upstream_name": "a/b"}}),
    );
    assert_eq!(status, 201, "{created}");
    assert!(!created.to_string().contains(URL_PASSWORD), "{created}");
    assert_eq!(
        created["importer_config"]["feed"], "http://bob:********@feed.example.invalid:5000/",
        "the creator's own answer is masked too"
    );
    // The mask cannot be stored as a secret.
    let (status, v) = s.post_json(
        "/api/v1/repositories",
        &json!({"id": "masked", "content_type": "docker", "importer_config": {"password": "********"}}),
    );
    assert_eq!(status, 400, "{v}");

    role(&s, "readers");
    grant(&s, ("role_id", "readers"), "/repositories", &["read"]);
    let reader = user(&s, "reader", &["readers"]);
    let leaks = |what: &str, body: &str| {
        for secret in [PASSWORD, URL_PASSWORD] {
            assert!(!body.contains(secret), "{what} shows a secret: {body}");
        }
    };

    // The API: one repository, the list.
    let (status, body) = text(reader.get(s.url("/api/v1/repositories/private-feed")));
    assert_eq!(status, 200, "{body}");
    leaks("GET /repositories/{id}", &body);
    let shown: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["importer_config"]["password"], "********", "{shown}");
    assert_eq!(shown["importer_config"]["username"], "feeduser", "{shown}");
    let (_, body) = text(reader.get(s.url("/api/v1/repositories/url-feed")));
    leaks("GET /repositories/{id}", &body);
    let (status, body) = text(reader.get(s.url("/api/v1/repositories")));
    assert_eq!(status, 200, "{body}");
    leaks("GET /repositories", &body);
    assert!(body.contains("private-feed") && body.contains("url-feed"));

    // The CLI, table and JSON.
    let home = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let wharf = cli(&s, home.path(), "reader", "reader-password");
    for args in [
        &["repo", "show", "--repo-id", "private-feed"][..],
        &[
            "repo",
            "show",
            "--repo-id",
            "private-feed",
            "--output",
            "json",
        ],
        &["repo", "show", "--repo-id", "url-feed"],
        &["repo", "list"],
        &["repo", "list", "--output", "json"],
    ] {
        let out = wharf(args);
        leaks(&format!("wharf {args:?}"), &out);
        if args[1] == "show" && args[3] == "private-feed" {
            assert!(out.contains("feeduser"), "the rest is shown: {out}");
        }
    }

    // A sync uses the password; its task record, which the reader may
    // read, does not show it (nor the header it went in).
    let t = s.repo_task("private-feed", "sync", json!({}));
    assert_eq!(t["state"], "error", "the feed refuses everyone: {t}");
    let sent = basic("feeduser", PASSWORD);
    assert!(
        seen.lock().unwrap().contains(&sent),
        "the feed got the stored credentials: {:?}",
        seen.lock().unwrap()
    );
    let (status, body) =
        text(reader.get(s.url(&format!("/api/v1/tasks/{}", t["id"].as_str().unwrap()))));
    assert_eq!(status, 200, "{body}");
    leaks("the sync's task record", &body);
    assert!(!body.contains(&sent[6..]), "{body}");

    // An editor reads the settings (masked), changes one, writes them all
    // back: the password stays. The mask is not a password.
    let editor = user(&s, "editor", &["readers"]);
    grant(
        &s,
        ("login", "editor"),
        "/repositories/private-feed",
        &["update"],
    );
    let (_, repo) = send(editor.get(s.url("/api/v1/repositories/private-feed")));
    let mut importer = repo["importer_config"].clone();
    importer["include_tags"] = json!(["1.*"]);
    let (status, v) = send(
        editor
            .patch(s.url("/api/v1/repositories/private-feed"))
            .json(&json!({"importer_config": importer})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["importer_config"]["password"], "********", "{v}");
    assert_eq!(v["importer_config"]["include_tags"], json!(["1.*"]), "{v}");
    seen.lock().unwrap().clear();
    let t = s.repo_task("private-feed", "sync", json!({}));
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        seen.lock().unwrap().contains(&sent),
        "after the round trip the feed still gets the password: {:?}",
        seen.lock().unwrap()
    );

    // Webhook secrets: never shown back.
    let (status, l) = s.post_json(
        "/api/v1/events/listeners",
        &json!({"type": "http", "url": "http://127.0.0.1:9/hook", "secret": HOOK_SECRET}),
    );
    assert_eq!(status, 201, "{l}");
    assert!(!l.to_string().contains(HOOK_SECRET), "{l}");
    let (status, body) = text(s.http.get(s.url("/api/v1/events/listeners")));
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(HOOK_SECRET), "{body}");
    let admin_home = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let admin = cli(&s, admin_home.path(), "admin", ADMIN_PASSWORD);
    let out = admin(&["event", "listener", "list", "--output", "json"]);
    assert!(!out.contains(HOOK_SECRET), "{out}");

    // `db export`: masked unless asked; a masked dump cannot be imported.
    s.kill();
    let data = s.data_dir();
    let data = data.to_str().unwrap();
    let (ok, dump, err) = wharf_db(&["export", "--data-dir", data]);
    assert!(ok, "{err}");
    for secret in [PASSWORD, URL_PASSWORD, HOOK_SECRET, "$argon2"] {
        assert!(!dump.contains(secret), "the default export shows {secret}");
    }
    assert!(err.contains("--include-secrets"), "{err}");
    let (ok, full, err) = wharf_db(&["export", "--include-secrets", "--data-dir", data]);
    assert!(ok, "{err}");
    for secret in [PASSWORD, URL_PASSWORD, HOOK_SECRET, "$argon2"] {
        assert!(full.contains(secret), "--include-secrets keeps {secret}");
    }
    let target = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let dump_file = target.path().join("dump.jsonl");
    std::fs::write(&dump_file, &dump).unwrap();
    let out = Command::new(env_path("WHARF_BIN"))
        .args(["db", "import", "--data-dir"])
        .arg(target.path())
        .stdin(std::fs::File::open(&dump_file).unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a masked dump is not imported");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--include-secrets"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Another local user looks into the data directory: a new one is 0700, one
/// an older version left open is tightened at start, and the store, the
/// registry key and uploads are 0600.
#[test]
fn the_data_directory_is_private() {
    // A new data directory.
    let s = Server::start();
    let data = s.data_dir();
    assert_eq!(mode(&data), 0o700, "a new data directory");
    assert_eq!(mode(&data.join("wharf.db")), 0o600, "wharf.db");
    for side in ["wharf.db-wal", "wharf.db-shm"] {
        if data.join(side).exists() {
            assert_eq!(mode(&data.join(side)), 0o600, "{side}");
        }
    }
    assert!(
        !data.join("registry-token.key").exists(),
        "the registry token key lives in the metadata store, not in a file"
    );
    let (status, up) = s.post_json("/api/v1/uploads", &json!({"size": 3}));
    assert_eq!(status, 201, "{up}");
    let r = s
        .http
        .put(s.url(&format!(
            "/api/v1/uploads/{}?offset=0",
            up["id"].as_str().unwrap()
        )))
        .body(b"abc".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let uploads: Vec<_> = std::fs::read_dir(data.join("uploads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(mode(&uploads[0]), 0o600, "an upload");
    drop(s);

    // One left readable by everyone (an older version, or by hand).
    let run = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let open = run.path().join("open-data");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut s = Server::start_on_data_dir(Some(&open), &env_path("WHARF_PLUGIN_DIR"), &[]);
    assert_eq!(mode(&open), 0o700, "tightened at start");
    assert_eq!(mode(&open.join("wharf.db")), 0o600);
    s.kill();
    // An older version kept the registry token key in a file: it is adopted.
    std::fs::write(open.join("registry-token.key"), [9u8; 32]).unwrap();
    for f in ["wharf.db", "registry-token.key"] {
        std::fs::set_permissions(open.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = Server::start_on_data_dir(Some(&open), &env_path("WHARF_PLUGIN_DIR"), &[]);
    assert_eq!(mode(&open), 0o700);
    assert_eq!(mode(&open.join("wharf.db")), 0o600);
    assert_eq!(mode(&open.join("registry-token.key")), 0o600);
    assert!(
        s.log().contains("tightened the permissions"),
        "the change is logged: {}",
        s.log()
    );
    // The legitimate path: the server works on it.
    assert_eq!(s.get_json("/api/v1/repositories").0, 200);
}

#[test]
fn a_schedule_cannot_run_what_its_creator_may_not_run_by_hand() {
    let s = Server::start();
    s.create_repo(json!({"id": "theirs", "content_type": "docker"}));
    s.create_repo(json!({"id": "mine", "content_type": "docker"}));
    // May create schedules, and run tasks on `mine` only.
    let eve = user(&s, "eve", &[]);
    grant(
        &s,
        ("login", "eve"),
        "/schedules",
        &["create", "read", "update", "delete"],
    );
    grant(&s, ("login", "eve"), "/repositories/mine/", &["execute"]);
    let create = |repo: &str| {
        text(
            eve.post(s.url("/api/v1/schedules"))
                .json(&json!({"job": {"kind": "sync", "repository": repo}, "interval": "PT1H"})),
        )
    };
    // Someone else's repository: refused, nothing scheduled.
    let (status, body) = create("theirs");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("execute on /repositories/theirs/"), "{body}");
    // An orphan cleanup, and a blob check that may remove blobs, need
    // delete on /orphans.
    for job in [
        json!({"kind": "orphans"}),
        json!({"kind": "fsck", "remove_corrupt": true}),
    ] {
        let (status, body) = text(
            eve.post(s.url("/api/v1/schedules"))
                .json(&json!({"job": job, "interval": "PT1H"})),
        );
        assert_eq!(status, 403, "{job}: {body}");
        assert!(body.contains("delete on /orphans/"), "{body}");
    }
    let (_, listed) = s.get_json("/api/v1/schedules");
    assert_eq!(listed, json!([]), "a refused schedule was stored");
    // Its own repository: scheduled.
    let (status, body) = create("mine");
    assert_eq!(status, 201, "{body}");
    let made: Value = serde_json::from_str(&body).unwrap();
    // The admin's schedule of `theirs` cannot be changed or deleted by eve.
    let (status, theirs) = s.post_json(
        "/api/v1/schedules",
        &json!({"job": {"kind": "sync", "repository": "theirs"}, "interval": "PT1H"}),
    );
    assert_eq!(status, 201, "{theirs}");
    let url = s.url(&format!(
        "/api/v1/schedules/{}",
        theirs["id"].as_str().unwrap()
    ));
    let (status, _) = text(eve.patch(&url).json(&json!({"enabled": false})));
    assert_eq!(status, 403);
    let (status, _) = text(eve.delete(&url));
    assert_eq!(status, 403);
    let (status, _) = text(eve.delete(s.url(&format!(
        "/api/v1/schedules/{}",
        made["id"].as_str().unwrap()
    ))));
    assert_eq!(status, 204);
    // Without the /schedules grant, nothing at all.
    let mallory = user(&s, "mallory", &[]);
    grant(
        &s,
        ("login", "mallory"),
        "/repositories/mine/",
        &["execute"],
    );
    let (status, _) = text(
        mallory
            .post(s.url("/api/v1/schedules"))
            .json(&json!({"job": {"kind": "sync", "repository": "mine"}, "interval": "PT1H"})),
    );
    assert_eq!(status, 403);
}

/// A remote's account works for whoever names the remote: naming one in a
/// repository's settings takes read on it, so a user who may create
/// repositories cannot borrow the admin's upstream credentials.
#[test]
fn a_remote_s_credentials_serve_only_who_may_read_the_remote() {
    let s = Server::start();
    let (status, v) = s.post_json(
        "/api/v1/remotes",
        &json!({"id": "corp", "content_type": "docker",
                "settings": {"feed": "https://registry.example", "username": "ci", "password": "corp-s3cret-pw"}}),
    );
    assert_eq!(status, 201, "{v}");
    let mallory = user(&s, "mallory", &[]);
    grant(
        &s,
        ("login", "mallory"),
        "/repositories",
        &["create", "read", "update"],
    );
    let create = |id: &str, importer: Value| {
        let r = mallory
            .post(s.url("/api/v1/repositories"))
            .json(&json!({"id": id, "content_type": "docker", "importer_config": importer}))
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    refused(
        "naming another's remote",
        create("borrow", json!({"remote": "corp"})),
        "read on /remotes/corp",
    );
    // Nor by adding it to a repository of its own afterwards.
    let (status, v) = create("own", json!({}));
    assert_eq!(status, 201, "{v}");
    let r = mallory
        .patch(s.url("/api/v1/repositories/own"))
        .json(&json!({"importer_config": {"remote": "corp"}}))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    refused(
        "adding another's remote",
        (status, r.json().unwrap()),
        "read on /remotes/corp",
    );
    // The remote's secret never shows, even to whoever may read it.
    grant(&s, ("login", "mallory"), "/remotes/corp", &["read"]);
    let shown = mallory
        .get(s.url("/api/v1/remotes/corp"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        !shown.contains("corp-s3cret-pw") && shown.contains("********"),
        "{shown}"
    );
    // Once allowed, naming it works.
    let (status, v) = create("borrow", json!({"remote": "corp"}));
    assert_eq!(status, 201, "{v}");
}
