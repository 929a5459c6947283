//! Access control end to end: the seed's roles and users through the API,
//! login tokens (logout, password change), failed-login throttling, LDAP
//! against a real slapd, and protected repositories with the Docker token
//! flow, pulled by a real Docker engine and podman.

use crate::registry_support::*;
use crate::support::*;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::path::Path;

fn create_user(s: &Server, login: &str, password: &str, roles: &[&str]) {
    admin_post(
        s,
        "/api/v1/users",
        json!({"login": login, "name": login.to_uppercase(), "password": password, "roles": roles}),
        201,
    );
}

fn grant_role(s: &Server, role: &str, resource: &str, ops: &[&str]) {
    admin_post(
        s,
        "/api/v1/permissions/grant",
        json!({"role_id": role, "resource": resource, "operations": ops}),
        200,
    );
}

/// The seed's roles and users: contributor (jdev) may create, upload and
/// publish; repo_admin (madmin) may also delete.
fn seed_roles(s: &Server) {
    admin_post(
        s,
        "/api/v1/roles",
        json!({"id": "contributor", "description": "content contributors"}),
        201,
    );
    admin_post(
        s,
        "/api/v1/roles",
        json!({"id": "repo_admin", "description": "Repository management"}),
        201,
    );
    grant_role(
        s,
        "contributor",
        "/repositories",
        &["create", "read", "update", "execute"],
    );
    grant_role(s, "contributor", "/content/uploads", &["create", "update"]);
    grant_role(
        s,
        "repo_admin",
        "/repositories",
        &["create", "read", "update", "delete", "execute"],
    );
    grant_role(s, "repo_admin", "/content/uploads", &["create", "update"]);
    create_user(s, "jdev", "jdev-password", &[]);
    create_user(s, "madmin", "madmin-password", &[]);
    admin_post(
        s,
        "/api/v1/roles/contributor/users",
        json!({"login": "jdev"}),
        200,
    );
    admin_post(
        s,
        "/api/v1/roles/repo_admin/users",
        json!({"login": "madmin"}),
        200,
    );
}

/// Upload a file as the user behind `c`; returns the upload id.
fn upload_as(s: &Server, c: &Client, file: &Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    let (status, v) = send(
        c.post(s.url("/api/v1/uploads"))
            .json(&json!({"size": bytes.len()})),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let mut offset = 0;
    for part in bytes.chunks(4 << 20) {
        let (status, v) = send(
            c.put(s.url(&format!("/api/v1/uploads/{id}?offset={offset}")))
                .body(part.to_vec()),
        );
        assert_eq!(status, 200, "{v}");
        offset += part.len();
    }
    id
}

/// Run a repository action as the user behind `c` and follow its task (as
/// that user too).
fn task_as(s: &Server, c: &Client, repo: &str, action: &str, body: Value) -> Value {
    let (status, t) = send(
        c.post(s.url(&format!("/api/v1/repositories/{repo}/{action}")))
            .json(&body),
    );
    assert_eq!(status, 202, "{action}: {t}");
    let id = t["id"].as_str().unwrap();
    loop {
        let (status, t) = send(c.get(s.url(&format!("/api/v1/tasks/{id}"))));
        assert_eq!(status, 200, "the submitter follows its task: {t}");
        if ["finished", "error", "canceled"].contains(&t["state"].as_str().unwrap_or("")) {
            return t;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn seed_roles_let_jdev_publish_but_not_delete_and_madmin_delete() {
    let s = Server::start();
    seed_roles(&s);
    let jdev = s.client_with_token(&s.login("jdev", "jdev-password"));
    let madmin = s.client_with_token(&s.login("madmin", "madmin-password"));

    // Joe Developer can create, upload and publish a repository...
    let (status, v) = send(jdev.post(s.url("/api/v1/repositories")).json(&json!({
        "id": "app", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "team/app"}
    })));
    assert_eq!(status, 201, "{v}");
    let upload = upload_as(&s, &jdev, &images_dir().join("busybox.tar"));
    let t = task_as(&s, &jdev, "app", "import", json!({"upload_id": upload}));
    assert_eq!(t["state"], "finished", "{t}");
    let t = task_as(&s, &jdev, "app", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    let r = request(&s, "GET", "/v2/team/app/tags/list", &[]);
    assert_eq!(r.status().as_u16(), 200, "published and public");

    // ...but cannot delete repositories or manage users.
    let (status, v) = send(jdev.delete(s.url("/api/v1/repositories/app")));
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    assert!(
        message(&v).contains("user jdev lacks 'delete' on /repositories/app/"),
        "{v}"
    );
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/users",
            json!({"login": "x", "password": "password-x"}),
        ),
        ("GET", "/api/v1/users", Value::Null),
        (
            "PATCH",
            "/api/v1/users/madmin",
            json!({"roles": ["contributor"]}),
        ),
        (
            "POST",
            "/api/v1/roles/repo_admin/users",
            json!({"login": "jdev"}),
        ),
        (
            "POST",
            "/api/v1/permissions/grant",
            json!({"login": "jdev", "resource": "/", "operations": ["delete"]}),
        ),
        ("GET", "/api/v1/tasks", Value::Null),
        ("POST", "/api/v1/orphans/cleanup", Value::Null),
        // A check that may delete blobs is as guarded as a cleanup.
        (
            "POST",
            "/api/v1/blobs/fsck?remove_corrupt=true",
            Value::Null,
        ),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = jdev.request(m, s.url(path));
        if !body.is_null() {
            req = req.json(&body);
        }
        let (status, v) = send(req);
        assert_eq!(status, 403, "{method} {path}: {v}");
        assert!(message(&v).starts_with("user jdev lacks '"), "{v}");
    }
    let (status, me) = send(jdev.get(s.url("/api/v1/me")));
    assert_eq!(status, 200);
    assert_eq!(me["roles"], json!(["contributor"]));

    // A user without roles may do nothing (default deny).
    create_user(&s, "nobody", "nobody-password", &[]);
    let nobody = s.client_with_token(&s.login("nobody", "nobody-password"));
    let (status, v) = send(nobody.get(s.url("/api/v1/repositories")));
    assert_eq!(status, 403, "{v}");
    assert!(
        message(&v).contains("lacks 'read' on /repositories/"),
        "{v}"
    );

    // Copy needs read on the source too.
    admin_post(
        &s,
        "/api/v1/repositories",
        json!({"id": "mine", "content_type": "docker"}),
        201,
    );
    admin_post(
        &s,
        "/api/v1/permissions/grant",
        json!({"login": "nobody", "resource": "/repositories/mine", "operations": ["execute"]}),
        200,
    );
    let (status, v) = send(
        nobody
            .post(s.url("/api/v1/repositories/mine/copy"))
            .json(&json!({"from": "app"})),
    );
    assert_eq!(status, 403, "{v}");
    assert!(
        message(&v).contains("lacks 'read' on /repositories/app/"),
        "{v}"
    );

    // Mary Admin can delete.
    let t = task_as(&s, &madmin, "app", "publish", json!({}));
    assert_eq!(t["state"], "finished");
    let (status, t) = send(madmin.delete(s.url("/api/v1/repositories/app")));
    assert_eq!(status, 202, "{t}");
    assert_eq!(s.wait_task(&t)["state"], "finished");
    let (status, _) = s.get_json("/api/v1/repositories/app");
    assert_eq!(status, 404);

    // Every write is in the audit log, refusals included.
    let log = s.log();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("wharf::audit")).collect();
    let has = |needles: &[&str]| audit.iter().any(|l| needles.iter().all(|n| l.contains(n)));
    assert!(
        has(&["jdev", "DELETE /api/v1/repositories/app", "403", "denied"]),
        "{}",
        audit.join("\n")
    );
    assert!(
        has(&[
            "madmin",
            "DELETE /api/v1/repositories/app",
            "/repositories/app/",
            "202",
            "ok"
        ]),
        "{}",
        audit.join("\n")
    );
    assert!(
        has(&["jdev", "POST /api/v1/repositories/app/publish", "202"]),
        "{}",
        audit.join("\n")
    );
}

#[test]
fn roles_users_and_permissions_are_managed_through_the_api() {
    let s = Server::start();
    seed_roles(&s);
    let (_, roles) = s.get_json("/api/v1/roles");
    let ids: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["contributor", "repo_admin", "super-users"]);
    let (_, role) = s.get_json("/api/v1/roles/super-users");
    assert_eq!(role["users"], json!(["admin"]));
    let (_, perms) = s.get_json("/api/v1/permissions?role_id=contributor");
    assert_eq!(
        perms,
        json!([
            {"role_id": "contributor", "resource": "/content/uploads/", "operations": ["create", "update"]},
            {"role_id": "contributor", "resource": "/repositories/", "operations": ["create", "read", "update", "execute"]},
        ])
    );
    let v = admin_post(
        &s,
        "/api/v1/permissions/revoke",
        json!({"role_id": "contributor", "resource": "/repositories/", "operations": ["update"]}),
        200,
    );
    assert_eq!(v["operations"], json!(["create", "read", "execute"]));
    let (_, user) = s.get_json("/api/v1/users/jdev");
    assert_eq!(user["roles"], json!(["contributor"]));
    assert!(user.get("password_hash").is_none(), "{user}");
    // Bad input is refused with a clear message.
    let (status, v) = s.post_json(
        "/api/v1/permissions/grant",
        &json!({"login": "jdev", "resource": "/repositories", "operations": ["fly"]}),
    );
    assert_eq!(status, 400);
    assert!(message(&v).contains("unknown operation"), "{v}");
    let (status, v) = s.post_json(
        "/api/v1/users",
        &json!({"login": "short", "password": "abc"}),
    );
    assert_eq!(status, 400);
    assert!(message(&v).contains("too short"), "{v}");
    // The last super-user stays.
    let (status, v) = send(s.http.delete(s.url("/api/v1/users/admin")));
    assert_eq!(status, 409, "{v}");
    let (status, _) = send(s.http.delete(s.url("/api/v1/roles/super-users")));
    assert_eq!(status, 409);
    // Removing a role removes its grants and memberships.
    let (status, _) = send(s.http.delete(s.url("/api/v1/roles/contributor")));
    assert_eq!(status, 204);
    let (_, user) = s.get_json("/api/v1/users/jdev");
    assert_eq!(user["roles"], json!([]));
    let (_, perms) = s.get_json("/api/v1/permissions?role_id=contributor");
    assert_eq!(perms, json!([]));
}

#[test]
fn tokens_end_at_logout_and_at_a_password_change() {
    let s = Server::start();
    create_user(&s, "jdev", "jdev-password", &[]);
    let anon = anonymous_client();

    // No credentials: 401 that says how to log in.
    let (status, v) = send(anon.get(s.url("/api/v1/repositories")));
    assert_eq!(status, 401);
    assert!(message(&v).contains("POST /api/v1/login"), "{v}");
    // Status and the OpenAPI document are open; status details are not.
    let (status, v) = send(anon.get(s.url("/api/v1/status")));
    assert_eq!(status, 200);
    assert!(v.get("plugins").is_none() && v["ok"] == true, "{v}");
    let (status, _) = send(anon.get(s.url("/api/v1/openapi.json")));
    assert_eq!(status, 200);
    // HTTP basic works on every request.
    let (status, me) = send(
        anon.get(s.url("/api/v1/me"))
            .basic_auth("jdev", Some("jdev-password")),
    );
    assert_eq!((status, me["login"].as_str()), (200, Some("jdev")));

    let me = |token: &str| send(s.client_with_token(token).get(s.url("/api/v1/me"))).0;
    let t1 = s.login("jdev", "jdev-password");
    assert_eq!(me(&t1), 200);
    let (status, _) = send(s.client_with_token(&t1).post(s.url("/api/v1/logout")));
    assert_eq!(status, 204);
    assert_eq!(me(&t1), 401, "a token is dead after logout");
    let (status, v) = send(s.client_with_token(&t1).get(s.url("/api/v1/me")));
    assert!(message(&v).contains("log in again"), "{status} {v}");
    assert_eq!(me("not-a-token"), 401);

    // An administrator changes the password: every token of the user dies.
    let (t2, t3) = (
        s.login("jdev", "jdev-password"),
        s.login("jdev", "jdev-password"),
    );
    let (status, v) = send(
        s.http
            .patch(s.url("/api/v1/users/jdev"))
            .json(&json!({"password": "jdev-new-password"})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!((me(&t2), me(&t3)), (401, 401));
    let (status, _) = send(
        anon.post(s.url("/api/v1/login"))
            .basic_auth("jdev", Some("jdev-password")),
    );
    assert_eq!(status, 401, "the old password is gone");

    // The user changes its own password: same.
    let t4 = s.login("jdev", "jdev-new-password");
    let c4 = s.client_with_token(&t4);
    let (status, _) = send(
        c4.post(s.url("/api/v1/me/password"))
            .json(&json!({"current_password": "wrong", "new_password": "jdev-third-password"})),
    );
    assert_eq!(status, 400);
    assert_eq!(me(&t4), 200);
    let (status, _) = send(c4.post(s.url("/api/v1/me/password")).json(
        &json!({"current_password": "jdev-new-password", "new_password": "jdev-third-password"}),
    ));
    assert_eq!(status, 204);
    assert_eq!(me(&t4), 401);
    s.login("jdev", "jdev-third-password");
    // Deleting the user ends its tokens too.
    let t5 = s.login("jdev", "jdev-third-password");
    let (status, _) = send(s.http.delete(s.url("/api/v1/users/jdev")));
    assert_eq!(status, 204);
    assert_eq!(me(&t5), 401);
}

#[test]
fn failed_logins_are_throttled_per_login_and_per_address() {
    let s = Server::start();
    create_user(&s, "jdev", "jdev-password", &[]);
    let anon = anonymous_client();
    let login = |user: &str, pw: &str| {
        let r = anon
            .post(s.url("/api/v1/login"))
            .basic_auth(user, Some(pw))
            .send()
            .unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        (r.status().as_u16(), retry)
    };
    for i in 0..10 {
        assert_eq!(login("jdev", "wrong").0, 401, "failure {i}");
    }
    // The 11th attempt is not even tried, right password or not.
    let (status, retry) = login("jdev", "jdev-password");
    assert_eq!(status, 429);
    let retry = retry.expect("Retry-After");
    assert!((1..=300).contains(&retry), "{retry}");
    let (_, v) = send(
        anon.post(s.url("/api/v1/login"))
            .basic_auth("jdev", Some("jdev-password")),
    );
    assert!(message(&v).contains("too many failed logins"), "{v}");
    // Basic auth on other endpoints is throttled the same way.
    let (status, _) = send(
        anon.get(s.url("/api/v1/me"))
            .basic_auth("jdev", Some("jdev-password")),
    );
    assert_eq!(status, 429);
    // Per login and address, not per login: jdev from another address (all
    // of 127/8 is loopback) logs in.
    let elsewhere = Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let (status, v) = send(
        elsewhere
            .post(s.url("/api/v1/login"))
            .basic_auth("jdev", Some("jdev-password")),
    );
    assert_eq!(status, 200, "{v}");
    // Per address: other logins from the same address work until the
    // address has failed 30 times, whatever the logins; then they are
    // refused too...
    assert_eq!(login("admin", ADMIN_PASSWORD).0, 200);
    for i in 0..20 {
        assert_eq!(login(&format!("nobody{i}"), "wrong").0, 401, "failure {i}");
    }
    assert_eq!(login("admin", ADMIN_PASSWORD).0, 429);
    // ...but tokens issued before still work.
    let (status, _) = s.get_json("/api/v1/me");
    assert_eq!(status, 200);
}

// ------------------------------------------------------------------ LDAP --

fn ldap_url() -> String {
    std::env::var("WHARF_TEST_LDAP_URL").expect("WHARF_TEST_LDAP_URL: run through scripts/test.sh")
}

const GROUPS: &str = "ou=groups,dc=example,dc=org";

fn ldap_server(find_user: &[&str]) -> Server {
    let url = ldap_url();
    let devs = format!("cn=devs,{GROUPS}=contributor");
    let ops = format!("cn=ops,{GROUPS}=operators");
    let mut args = vec![
        "--ldap-url",
        &url,
        "--ldap-group-base",
        GROUPS,
        "--ldap-group-role",
        &devs,
        "--ldap-group-role",
        &ops,
    ];
    args.extend_from_slice(find_user);
    let s = Server::start_with_plugin_dir(&env_path("WHARF_PLUGIN_DIR"), &args);
    admin_post(&s, "/api/v1/roles", json!({"id": "contributor"}), 201);
    grant_role(&s, "contributor", "/repositories", &["create", "read"]);
    s
}

fn try_login(s: &Server, user: &str, pw: &str) -> (u16, Value) {
    send(
        anonymous_client()
            .post(s.url("/api/v1/login"))
            .basic_auth(user, Some(pw)),
    )
}

#[test]
fn ldap_users_log_in_and_get_roles_from_their_groups() {
    let s = ldap_server(&[
        "--ldap-user-dn-template",
        "uid={login},ou=people,dc=example,dc=org",
    ]);
    let (status, v) = try_login(&s, "ldev", "ldev-password");
    assert_eq!(status, 200, "{v}\n{}", s.log());
    assert_eq!(v["roles"], json!(["contributor"]), "devs → contributor");
    let ldev = s.client_with_token(v["token"].as_str().unwrap());
    let (status, v) = send(
        ldev.post(s.url("/api/v1/repositories"))
            .json(&json!({"id": "lrepo", "content_type": "docker"})),
    );
    assert_eq!(status, 201, "{v}");
    let (_, user) = s.get_json("/api/v1/users/ldev");
    assert_eq!(
        (user["source"].as_str(), user["name"].as_str()),
        (Some("ldap"), Some("Lea Developer"))
    );

    // Wrong password, unknown user, empty password: refused.
    for (user, pw) in [("ldev", "wrong"), ("ghost", "ghost-password"), ("ldev", "")] {
        let (status, v) = try_login(&s, user, pw);
        assert_eq!(status, 401, "{user}/{pw}: {v}");
    }
    // A group mapped to a role that does not exist gives nothing; no group, no role.
    let (status, v) = try_login(&s, "lops", "lops-password");
    assert_eq!((status, v["roles"].clone()), (200, json!([])), "{v}");
    let (status, v) = try_login(&s, "lnone", "lnone-password");
    assert_eq!(status, 200);
    let lnone = s.client_with_token(v["token"].as_str().unwrap());
    assert_eq!(send(lnone.get(s.url("/api/v1/repositories"))).0, 403);

    // Roles follow the groups at every login.
    let (status, _) = send(
        s.http
            .patch(s.url("/api/v1/users/ldev"))
            .json(&json!({"roles": []})),
    );
    assert_eq!(status, 200);
    let (_, v) = try_login(&s, "ldev", "ldev-password");
    assert_eq!(v["roles"], json!(["contributor"]));

    // A local user of the same login takes precedence over the directory.
    let (status, _) = send(s.http.delete(s.url("/api/v1/users/lops")));
    assert_eq!(status, 204);
    create_user(&s, "lops", "local-lops-password", &[]);
    assert_eq!(
        try_login(&s, "lops", "lops-password").0,
        401,
        "the LDAP password is not asked"
    );
    assert_eq!(try_login(&s, "lops", "local-lops-password").0, 200);
}

#[test]
fn ldap_search_then_bind_finds_users_with_a_service_account() {
    let s = ldap_server(&[
        "--ldap-base",
        "ou=people,dc=example,dc=org",
        "--ldap-bind-dn",
        "cn=reader,dc=example,dc=org",
        "--ldap-bind-password",
        "reader-password",
    ]);
    let (status, v) = try_login(&s, "ldev", "ldev-password");
    assert_eq!(status, 200, "{v}\n{}", s.log());
    assert_eq!(v["roles"], json!(["contributor"]));
    assert_eq!(try_login(&s, "ldev", "wrong").0, 401);
    // A filter-injection attempt finds nobody.
    assert_eq!(try_login(&s, "*", "ldev-password").0, 401);
}

// ------------------------------------------------------ registry access --

/// A server with `secret/app` (protected) and `public/app` published from
/// the busybox archive, and the seed's users.
fn protected_and_public() -> Server {
    let s = Server::start();
    s.create_repo(json!({"id": "secret", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "secret/app", "protected": true}}));
    s.create_repo(json!({"id": "public", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "public/app"}}));
    let archive = images_dir().join("busybox.tar");
    s.import_and_publish("secret", &archive);
    s.import_and_publish("public", &archive);
    seed_roles(&s);
    create_user(&s, "nobody", "nobody-password", &[]);
    s
}

/// A registry token for `scope` from `s`'s token endpoint, as `user`.
pub(crate) fn registry_token(s: &Server, scope: &str, user: Option<(&str, &str)>) -> (u16, Value) {
    let mut r = anonymous_client()
        .get(s.url("/api/v1/registry/token"))
        .query(&[("service", "wharf"), ("scope", scope)]);
    if let Some((u, p)) = user {
        r = r.basic_auth(u, Some(p));
    }
    send(r)
}

/// A token taken for a name before any repository has it grants no pull
/// there: else it would hold, for its 300 s, for a protected repository
/// created under that name afterwards.
#[test]
fn a_token_for_a_name_nobody_has_yet_does_not_open_a_protected_repository_made_later() {
    let s = protected_and_public();
    let (status, early) = registry_token(&s, "repository:later/app:pull", None);
    assert_eq!(status, 200, "{early}");
    let early = early["token"].as_str().unwrap().to_string();
    // An unknown name still answers 404 with that token, as anonymously.
    let manifest = "/v2/later/app/manifests/latest";
    let r = manifest_with_token(&s, manifest, &early);
    assert_eq!(r.status().as_u16(), 404);

    s.create_repo(json!({"id": "later", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "later/app", "protected": true}}));
    s.import_and_publish("later", &images_dir().join("busybox.tar"));
    let r = manifest_with_token(&s, manifest, &early);
    assert_eq!(
        r.status().as_u16(),
        401,
        "the early token opened a protected repository"
    );
    // Who may read it gets in; a pusher of new names got pull with push.
    let (_, v) = registry_token(
        &s,
        "repository:later/app:pull",
        Some(("admin", ADMIN_PASSWORD)),
    );
    let r = manifest_with_token(&s, manifest, v["token"].as_str().unwrap());
    assert_eq!(r.status().as_u16(), 200);
    let (_, v) = registry_token(
        &s,
        "repository:new/name:pull,push",
        Some(("admin", ADMIN_PASSWORD)),
    );
    assert_eq!(access_of(&v)[0]["actions"], json!(["pull", "push"]), "{v}");
    let (_, v) = registry_token(&s, "repository:new/name:pull", None);
    assert_eq!(access_of(&v)[0]["actions"], json!([]), "{v}");
}

/// A GET of the manifest at `path`, with Docker's Accept header and `token`
/// as the bearer.
fn manifest_with_token(s: &Server, path: &str, token: &str) -> reqwest::blocking::Response {
    let bearer = format!("Bearer {token}");
    request(
        s,
        "GET",
        path,
        &[("Accept", DOCKER_ACCEPT), ("Authorization", &bearer)],
    )
}

/// The `access` claim of a registry token answer.
fn access_of(answer: &Value) -> Value {
    use base64::Engine as _;
    let payload = answer["token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["access"].clone()
}

#[test]
fn protected_repositories_need_a_token_with_pull() {
    let s = protected_and_public();
    let manifest = "/v2/secret/app/manifests/latest";
    let accept = ("Accept", DOCKER_ACCEPT);

    // Anonymous: 401 with the challenge naming the realm, service and scope.
    let r = request(&s, "GET", manifest, &[accept]);
    assert_eq!(r.status().as_u16(), 401);
    let challenge = header(&r, "www-authenticate");
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"http://{}/api/v1/registry/token\",service=\"wharf\",scope=\"repository:secret/app:pull\"",
            s.addr
        )
    );
    assert_eq!(error_code(r), "UNAUTHORIZED");
    // Unprotected: anonymous, no token needed; the API root challenges.
    let r = request(&s, "GET", "/v2/public/app/manifests/latest", &[accept]);
    assert_eq!(r.status().as_u16(), 200);
    let r = request(&s, "GET", "/v2/", &[]);
    assert_eq!(r.status().as_u16(), 401);
    assert!(header(&r, "www-authenticate").starts_with("Bearer realm="));

    // An anonymous token grants nothing on the protected name.
    let (status, v) = registry_token(&s, "repository:secret/app:pull", None);
    assert_eq!(status, 200, "{v}");
    let anon_token = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["expires_in"], 300);
    let bearer = |t: &str| format!("Bearer {t}");
    let r = manifest_with_token(&s, manifest, &anon_token);
    assert_eq!(r.status().as_u16(), 401);
    assert!(header(&r, "www-authenticate").contains("error=\"insufficient_scope\""));
    // ...but is enough for /v2/ and for public names.
    let r = request(
        &s,
        "GET",
        "/v2/",
        &[("Authorization", &bearer(&anon_token))],
    );
    assert_eq!(r.status().as_u16(), 200);
    let (_, v) = registry_token(&s, "repository:public/app:pull", None);
    assert_eq!(
        v["token"].as_str().map(|t| t.split('.').count()),
        Some(3),
        "a JWT"
    );

    // jdev (read on /repositories) gets pull, not push.
    let (status, v) = registry_token(
        &s,
        "repository:secret/app:pull,push",
        Some(("jdev", "jdev-password")),
    );
    assert_eq!(status, 200);
    let jdev_token = v["token"].as_str().unwrap().to_string();
    let r = manifest_with_token(&s, manifest, &jdev_token);
    assert_eq!(r.status().as_u16(), 200);
    let digest = header(&r, "docker-content-digest");
    let m: Value = r.json().unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let r = request(
        &s,
        "GET",
        &format!("/v2/secret/app/blobs/{layer}"),
        &[("Authorization", &bearer(&jdev_token))],
    );
    assert_eq!(r.status().as_u16(), 200, "blobs are protected the same way");
    let r = request(&s, "GET", &format!("/v2/secret/app/blobs/{layer}"), &[]);
    assert_eq!(r.status().as_u16(), 401);
    assert!(!digest.is_empty());
    // A token is bound to its name.
    let (_, v) = registry_token(
        &s,
        "repository:public/app:pull",
        Some(("jdev", "jdev-password")),
    );
    let public_only = v["token"].as_str().unwrap().to_string();
    let r = manifest_with_token(&s, manifest, &public_only);
    assert_eq!(r.status().as_u16(), 401);
    // Basic auth also works directly; a user without read is denied.
    let basic = |u: &str, p: &str| {
        no_redirects()
            .get(s.url(manifest))
            .header("Accept", DOCKER_ACCEPT)
            .basic_auth(u, Some(p))
            .send()
            .unwrap()
    };
    assert_eq!(basic("jdev", "jdev-password").status().as_u16(), 200);
    let r = basic("nobody", "nobody-password");
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(error_code(r), "DENIED");
    // Wrong credentials at the token endpoint: 401, registry-style.
    let (status, v) = registry_token(&s, "repository:secret/app:pull", Some(("jdev", "wrong")));
    assert_eq!(status, 401);
    assert_eq!(v["errors"][0]["message"], "incorrect username or password");
    // A forged or foreign token is refused.
    let mut forged = jdev_token.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let r = manifest_with_token(&s, manifest, &forged);
    assert_eq!(r.status().as_u16(), 401);

    // Protection follows the repository's setting at once, without a publish.
    let (status, _) = send(
        s.http
            .patch(s.url("/api/v1/repositories/secret"))
            .json(&json!({"distributor_config": {"protected": false}})),
    );
    assert_eq!(status, 200);
    assert_eq!(
        request(&s, "GET", manifest, &[accept]).status().as_u16(),
        200
    );
    let (status, _) = send(
        s.http
            .patch(s.url("/api/v1/repositories/secret"))
            .json(&json!({"distributor_config": {"protected": true}})),
    );
    assert_eq!(status, 200);
    assert_eq!(
        request(&s, "GET", manifest, &[accept]).status().as_u16(),
        401
    );
}

#[test]
fn docker_pulls_a_protected_repository_after_login_only() {
    let s = protected_and_public();
    let tmp = scratch();
    let (anon_cfg, jdev_cfg, nobody_cfg) = (
        tmp.path().join("anon"),
        tmp.path().join("jdev"),
        tmp.path().join("nobody"),
    );
    let secret = format!("{}/secret/app:latest", s.addr);
    let public = format!("{}/public/app:latest", s.addr);
    let _ = run(docker().args(["rmi", "-f", &secret, &public]));

    // Anonymous: the unprotected one pulls, the protected one does not.
    must(docker_with_config(&anon_cfg).args(["pull", &public]));
    let (ok, out) = run(docker_with_config(&anon_cfg).args(["pull", &secret]));
    assert!(
        !ok,
        "anonymous pull of a protected repository worked: {out}"
    );
    let lower = out.to_lowercase();
    assert!(
        lower.contains("unauthorized")
            || lower.contains("denied")
            || lower.contains("authentication required"),
        "not an authentication error: {out}"
    );

    // A wrong password does not log in.
    let (ok, out) =
        run(docker_with_config(&jdev_cfg).args(["login", &s.addr, "-u", "jdev", "-p", "wrong"]));
    assert!(!ok, "{out}");
    assert!(
        out.to_lowercase().contains("unauthorized") || out.contains("incorrect"),
        "{out}"
    );
    // jdev logs in and pulls, and the image runs.
    let out = must(docker_with_config(&jdev_cfg).args([
        "login",
        &s.addr,
        "-u",
        "jdev",
        "-p",
        "jdev-password",
    ]));
    assert!(out.contains("Login Succeeded"), "{out}");
    must(docker_with_config(&jdev_cfg).args(["pull", &secret]));
    let out = docker_run_cat(&secret, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");

    // A valid user without read on the repository logs in but cannot pull.
    must(docker_with_config(&nobody_cfg).args([
        "login",
        &s.addr,
        "-u",
        "nobody",
        "-p",
        "nobody-password",
    ]));
    let (ok, out) = run(docker_with_config(&nobody_cfg).args(["pull", &secret]));
    assert!(!ok, "{out}");
    must(docker_with_config(&jdev_cfg).args(["logout", &s.addr]));
    let _ = run(docker().args(["rmi", "-f", &secret, &public]));
}

#[test]
fn podman_pulls_a_protected_repository_after_login_only() {
    let s = protected_and_public();
    let tmp = scratch();
    let authfile = tmp.path().join("auth.json");
    let none = tmp.path().join("none.json");
    std::fs::write(&none, "{}").unwrap();
    let secret = format!("{}/secret/app:latest", s.addr);
    let public = format!("{}/public/app:latest", s.addr);
    let _ = run(podman().args(["rmi", "-f", &secret, &public]));
    let authfile_arg = format!("--authfile={}", authfile.display());
    let none_arg = format!("--authfile={}", none.display());

    must(podman().args(["pull", "--tls-verify=false", &none_arg, &public]));
    let (ok, out) = run(podman().args(["pull", "--tls-verify=false", &none_arg, &secret]));
    assert!(
        !ok,
        "anonymous pull of a protected repository worked: {out}"
    );
    assert!(
        out.to_lowercase().contains("unauthorized") || out.contains("authentication required"),
        "{out}"
    );

    let (ok, out) = run(podman().args([
        "login",
        "--tls-verify=false",
        &authfile_arg,
        "-u",
        "jdev",
        "-p",
        "wrong",
        &s.addr,
    ]));
    assert!(!ok, "{out}");
    let out = must(podman().args([
        "login",
        "--tls-verify=false",
        &authfile_arg,
        "-u",
        "jdev",
        "-p",
        "jdev-password",
        &s.addr,
    ]));
    assert!(out.contains("Login Succeeded"), "{out}");
    must(podman().args(["pull", "--tls-verify=false", &authfile_arg, &secret]));
    let _ = run(podman().args(["rmi", "-f", &secret, &public]));
}
