//! The access table: what every admin API route needs. One row per
//! (method, route); a route with no row is refused to everyone (default
//! deny), so a new endpoint must be added here. `{name}` in a resource is
//! the route's path parameter of that name.
//!
//! Choices: long operations on a repository (import, sync, publish, copy,
//! remove, tag, restore, retain) need `execute` on it (a streaming import, which sends content, also
//! `create` on `/content/uploads`: its handler checks that); creating and changing need `create` and `update`;
//! listing and showing need `read`. A task may be read (or canceled) by who
//! may read (or execute on) every repository it locks, or with `read`
//! (`delete`) on the task itself.

use wharf_store::db::Operation::{self, *};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    /// Anyone; the handler checks what it needs itself (login checks the
    /// password it is given).
    Public,
    /// Any authenticated user, about themselves.
    Authenticated,
    /// `op` on the resource path.
    Permission(&'static str, Operation),
    /// A task: `op` on `/tasks/{id}/`, or `repo_op` on every repository the
    /// task locks.
    Task { op: Operation, repo_op: Operation },
}

#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    /// The route as registered under `/api/v1`.
    pub route: &'static str,
    pub access: Access,
    /// Also `read` on the repository this JSON body field names (a copy's source).
    pub body_repository: Option<&'static str>,
}

const fn rule(method: &'static str, route: &'static str, access: Access) -> Rule {
    Rule {
        method,
        route,
        access,
        body_repository: None,
    }
}

const fn perm(
    method: &'static str,
    route: &'static str,
    resource: &'static str,
    op: Operation,
) -> Rule {
    rule(method, route, Access::Permission(resource, op))
}

#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    // Open to anyone.
    rule("GET",    "/status",                              Access::Public), // details only when authenticated
    rule("GET",    "/openapi.json",                        Access::Public),
    rule("GET",    "/docs",                                Access::Public), // the API reference page
    rule("GET",    "/docs/app.js",                         Access::Public),
    rule("GET",    "/docs/app.css",                        Access::Public),
    rule("POST",   "/login",                               Access::Public), // checks HTTP basic itself
    rule("GET",    "/registry/token",                      Access::Public), // Docker token flow; see registry_token
    // About oneself.
    rule("POST",   "/logout",                              Access::Authenticated),
    rule("GET",    "/me",                                  Access::Authenticated),
    rule("POST",   "/me/password",                         Access::Authenticated),
    // Repositories.
    perm("POST",   "/repositories",                        "/repositories",                Create),
    perm("GET",    "/repositories",                        "/repositories",                Read),
    perm("GET",    "/repositories/{id}",                   "/repositories/{id}",           Read),
    perm("PATCH",  "/repositories/{id}",                   "/repositories/{id}",           Update),
    perm("DELETE", "/repositories/{id}",                   "/repositories/{id}",           Delete),
    perm("GET",    "/repositories/{id}/content",           "/repositories/{id}",           Read),
    perm("POST",   "/repositories/{id}/import",            "/repositories/{id}",           Execute),
    perm("POST",   "/repositories/{id}/sync",              "/repositories/{id}",           Execute),
    perm("POST",   "/repositories/{id}/publish",           "/repositories/{id}",           Execute),
    Rule { body_repository: Some("from"),
      ..perm("POST", "/repositories/{id}/copy",            "/repositories/{id}",           Execute) },
    perm("POST",   "/repositories/{id}/remove",            "/repositories/{id}",           Execute),
    perm("POST",   "/repositories/{id}/tag",               "/repositories/{id}",           Execute),
    perm("POST",   "/repositories/{id}/retain",            "/repositories/{id}",           Execute),
    perm("GET",    "/repositories/{id}/versions",          "/repositories/{id}",           Read),
    perm("GET",    "/repositories/{id}/versions/{number}", "/repositories/{id}",           Read),
    perm("POST",   "/repositories/{id}/versions/{number}/restore", "/repositories/{id}",   Execute),
    perm("GET",    "/repositories/{id}/diff",              "/repositories/{id}",           Read),
    // Uploads.
    perm("POST",   "/uploads",                             "/content/uploads",             Create),
    perm("GET",    "/uploads/{id}",                        "/content/uploads/{id}",        Read),
    perm("PUT",    "/uploads/{id}",                        "/content/uploads/{id}",        Update),
    perm("DELETE", "/uploads/{id}",                        "/content/uploads/{id}",        Delete),
    // Tasks.
    perm("GET",    "/tasks",                               "/tasks",                       Read),
    rule("GET",    "/tasks/{id}",                          Access::Task { op: Read, repo_op: Read }),
    rule("POST",   "/tasks/{id}/cancel",                   Access::Task { op: Delete, repo_op: Execute }),
    // Repository groups.
    perm("POST",   "/groups",                              "/groups",                      Create),
    perm("GET",    "/groups",                              "/groups",                      Read),
    perm("GET",    "/groups/{id}",                         "/groups/{id}",                 Read),
    perm("PATCH",  "/groups/{id}",                         "/groups/{id}",                 Update),
    perm("DELETE", "/groups/{id}",                         "/groups/{id}",                 Delete),
    perm("POST",   "/groups/{id}/members",                 "/groups/{id}",                 Update),
    perm("DELETE", "/groups/{id}/members/{repo_id}",       "/groups/{id}",                 Update),
    // Orphan cleanup deletes content.
    perm("POST",   "/orphans/cleanup",                     "/orphans",                     Delete),
    // So may a check of the stored blobs (it may delete corrupt ones).
    perm("POST",   "/blobs/fsck",                          "/orphans",                     Delete),
    // Remotes (naming one in a repository's settings also needs read on it).
    perm("POST",   "/remotes",                             "/remotes",                     Create),
    perm("GET",    "/remotes",                             "/remotes",                     Read),
    perm("GET",    "/remotes/{id}",                        "/remotes/{id}",                Read),
    perm("PATCH",  "/remotes/{id}",                        "/remotes/{id}",                Update),
    perm("DELETE", "/remotes/{id}",                        "/remotes/{id}",                Delete),
    // Schedules (a repository's also need execute on it: `schedules`).
    perm("POST",   "/schedules",                           "/schedules",                   Create),
    perm("GET",    "/schedules",                           "/schedules",                   Read),
    perm("GET",    "/schedules/{id}",                      "/schedules",                   Read),
    perm("PATCH",  "/schedules/{id}",                      "/schedules",                   Update),
    perm("DELETE", "/schedules/{id}",                      "/schedules",                   Delete),
    // Event listeners.
    perm("POST",   "/events/listeners",                    "/events",                      Create),
    perm("GET",    "/events/listeners",                    "/events",                      Read),
    perm("DELETE", "/events/listeners/{id}",               "/events",                      Delete),
    // Content-type plugins.
    perm("GET",    "/plugins",                             "/plugins",                     Read),
    perm("POST",   "/plugins",                             "/plugins",                     Create),
    perm("DELETE", "/plugins/{name}",                      "/plugins/{name}",              Delete),
    // Users, roles, permissions.
    perm("POST",   "/users",                               "/users",                       Create),
    perm("GET",    "/users",                               "/users",                       Read),
    perm("GET",    "/users/{login}",                       "/users/{login}",               Read),
    perm("PATCH",  "/users/{login}",                       "/users/{login}",               Update),
    perm("DELETE", "/users/{login}",                       "/users/{login}",               Delete),
    perm("POST",   "/roles",                               "/roles",                       Create),
    perm("GET",    "/roles",                               "/roles",                       Read),
    perm("GET",    "/roles/{id}",                          "/roles/{id}",                  Read),
    perm("DELETE", "/roles/{id}",                          "/roles/{id}",                  Delete),
    perm("POST",   "/roles/{id}/users",                    "/roles/{id}",                  Update),
    perm("DELETE", "/roles/{id}/users/{login}",            "/roles/{id}",                  Update),
    perm("GET",    "/permissions",                         "/permissions",                 Read),
    perm("POST",   "/permissions/grant",                   "/permissions",                 Update),
    perm("POST",   "/permissions/revoke",                  "/permissions",                 Update),
];

/// The rule for a request, by method and route (`/api/v1` stripped).
pub fn find(method: &str, route: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.method.eq_ignore_ascii_case(method) && r.route == route)
}

/// The values of a route's `{name}` parameters in `path`, undecoded:
/// `("/repositories/{id}/publish", "/repositories/app/publish")` → `[("id", "app")]`.
pub fn params<'a>(route: &'a str, path: &'a str) -> Option<Vec<(&'a str, &'a str)>> {
    let (r, p): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), path.split('/').collect());
    if r.len() != p.len() {
        return None;
    }
    let mut out = Vec::new();
    for (rs, ps) in r.into_iter().zip(p) {
        match rs.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => out.push((name, ps)),
            None if rs == ps => {}
            None => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi as _;

    /// Every documented endpoint has a row, so none is denied by oversight.
    #[test]
    fn every_documented_route_has_a_rule() {
        let doc = crate::http::openapi::ApiDoc::openapi();
        let mut missing = Vec::new();
        for (path, item) in &doc.paths.paths {
            let route = path.strip_prefix("/api/v1").unwrap_or(path);
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
            ];
            for (m, present) in methods {
                if present && find(m, route).is_none() {
                    missing.push(format!("{m} {path}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "routes without an access rule: {missing:?}"
        );
    }

    #[test]
    fn rows_are_unique_and_resources_use_route_params() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                RULES[..i]
                    .iter()
                    .all(|o| !(o.method == r.method && o.route == r.route)),
                "duplicate rule {} {}",
                r.method,
                r.route
            );
            if let Access::Permission(res, _) = r.access {
                for part in res.split('/').filter(|s| s.starts_with('{')) {
                    assert!(
                        r.route.contains(part),
                        "{} uses {part} not in {}",
                        res,
                        r.route
                    );
                }
            }
        }
    }

    #[test]
    fn params_align_with_the_route() {
        assert_eq!(
            params("/repositories/{id}/publish", "/repositories/app/publish").unwrap(),
            [("id", "app")]
        );
        assert!(params("/repositories/{id}", "/repositories/a/b").is_none());
        assert_eq!(
            find("delete", "/repositories/{id}").unwrap().access,
            Access::Permission("/repositories/{id}", Delete)
        );
        assert!(find("PUT", "/repositories/{id}").is_none());
    }
}
