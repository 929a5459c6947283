//! Who is asking, and what they may do: a [`Principal`] carries a user's
//! roles and the permissions granted to the user and to those roles; a
//! permission on a resource path covers everything below it.

use crate::error::Error;
use std::collections::HashMap;
use std::sync::Arc;
use wharf_runtime::publications::{Granted, GrantedRepos};
use wharf_store::db::{Operation, Permission, User};

/// The built-in role whose members may do everything.
pub const SUPER_USERS: &str = "super-users";

/// An authenticated user.
#[derive(Debug, Clone)]
pub struct Principal {
    pub login: String,
    pub roles: Vec<String>,
    /// Granted to the user and to its roles.
    pub permissions: Arc<Permissions>,
    /// How the request authenticated.
    pub credential: Credential,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// A login token; holds its SHA-256 (hex), so logout can revoke it.
    Token(String),
    /// HTTP basic: login and password on this request.
    Password,
}

/// A principal's permissions, indexed by resource: whether they cover a
/// resource is a lookup per segment of its path, however many there are (a
/// user that created thousands of repositories by pushing holds a grant
/// on each).
#[derive(Debug, Default)]
pub struct Permissions {
    list: Vec<Permission>,
    /// Operations granted on each stored resource (always `/a/b/`).
    by_resource: HashMap<String, Vec<Operation>>,
    /// Resources stored some other way (written before normalisation):
    /// tested one by one, as a prefix.
    irregular: Vec<usize>,
    /// The repositories they grant read on, for the catalog.
    readable: Granted,
}

impl Permissions {
    pub fn new(list: Vec<Permission>) -> Self {
        let mut by_resource: HashMap<String, Vec<Operation>> = HashMap::new();
        let mut irregular = Vec::new();
        for (i, p) in list.iter().enumerate() {
            if p.resource.starts_with('/') && p.resource.ends_with('/') {
                by_resource
                    .entry(p.resource.clone())
                    .or_default()
                    .extend(p.operations.iter().copied());
            } else {
                irregular.push(i);
            }
        }
        let readable = readable_repositories(&by_resource, !irregular.is_empty());
        Permissions {
            list,
            by_resource,
            irregular,
            readable,
        }
    }

    /// The repositories these permissions grant read on: each
    /// `/repositories/<id>/` granted, or perhaps any (read on `/` or
    /// `/repositories/`, or a resource in a form from before
    /// normalisation).
    pub fn readable_repositories(&self) -> &Granted {
        &self.readable
    }

    /// Every permission, by subject and resource.
    pub fn list(&self) -> &[Permission] {
        &self.list
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether a permission on `resource` or a path above it grants `op`:
    /// a stored resource covers `resource` when it is a prefix of it,
    /// and stored resources end with `/`, so only the prefixes ending at a
    /// `/` can.
    fn covers(&self, resource: &str, op: Operation) -> bool {
        let granted = |r: &str| self.by_resource.get(r).is_some_and(|ops| ops.contains(&op));
        resource
            .match_indices('/')
            .any(|(i, _)| granted(&resource[..=i]))
            || self.irregular.iter().any(|&i| {
                let p = &self.list[i];
                resource.starts_with(&p.resource) && p.operations.contains(&op)
            })
    }
}

fn readable_repositories(
    by_resource: &HashMap<String, Vec<Operation>>,
    irregular: bool,
) -> Granted {
    let reads = |ops: &Vec<Operation>| ops.contains(&Operation::Read);
    let all = ["/", REPOSITORIES];
    if irregular || all.iter().any(|r| by_resource.get(*r).is_some_and(reads)) {
        return Granted::Any;
    }
    let ids = by_resource
        .iter()
        .filter(|(_, ops)| reads(ops))
        .filter_map(|(r, _)| {
            let id = r.strip_prefix(REPOSITORIES)?.strip_suffix('/')?;
            (!id.is_empty() && !id.contains('/')).then(|| id.to_string())
        });
    let repos = GrantedRepos::new(ids);
    if repos.is_empty() {
        Granted::Nothing
    } else {
        Granted::Repos(Arc::new(repos))
    }
}

/// The resource above every repository's (`/repositories/<id>/`).
const REPOSITORIES: &str = "/repositories/";

impl Principal {
    pub fn new(user: &User, permissions: Arc<Permissions>, credential: Credential) -> Self {
        Principal {
            login: user.login.clone(),
            roles: user.roles.clone(),
            permissions,
            credential,
        }
    }

    pub fn is_super_user(&self) -> bool {
        self.roles.iter().any(|r| r == SUPER_USERS)
    }

    /// Whether some permission covers `op` on `resource` (normalised).
    pub fn allows(&self, resource: &str, op: Operation) -> bool {
        self.is_super_user() || self.permissions.covers(resource, op)
    }

    /// `Ok` if allowed, else the 403 that names what is missing.
    pub fn require(&self, resource: &str, op: Operation) -> Result<(), Error> {
        if self.allows(resource, op) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "user {} lacks '{}' on {resource}; a super-user can grant it: \
                 POST /api/v1/permissions/grant",
                self.login,
                op.as_str()
            )))
        }
    }
}

/// Who may grant what: nobody hands out more than they hold. Granting
/// operations on a resource (to a user or a role), or a role carrying them,
/// needs the granter to hold each of them, by the same covering rule as
/// [`Principal::allows`]; the role `super-users` only a super-user grants.
impl Principal {
    /// The first of `ops` on `resource` this principal does not hold.
    pub fn missing(&self, resource: &str, ops: &[Operation]) -> Option<Operation> {
        ops.iter().copied().find(|&op| !self.allows(resource, op))
    }

    /// `Ok` if this principal holds every permission in `perms`, so that it
    /// may hand them on; else the 403 naming the first one missing and
    /// `what` it was trying to do (e.g. "grant the role repo_admin").
    pub fn require_all(&self, perms: &[Permission], what: &str) -> Result<(), Error> {
        for p in perms {
            self.require_ops(&p.resource, &p.operations, what)?;
        }
        Ok(())
    }

    /// [`Self::require_all`] for `ops` on one `resource`.
    pub fn require_ops(&self, resource: &str, ops: &[Operation], what: &str) -> Result<(), Error> {
        match self.missing(resource, ops) {
            None => Ok(()),
            Some(op) => Err(Error::forbidden(format!(
                "user {} lacks '{}' on {resource}, so may not {what}: only permissions one holds can be handed on (or by a super-user)",
                self.login,
                op.as_str(),
            ))),
        }
    }

    /// `Ok` if this principal may grant `role`, which carries `perms`.
    pub fn require_grantable_role(&self, role: &str, perms: &[Permission]) -> Result<(), Error> {
        if role == SUPER_USERS && !self.is_super_user() {
            return Err(Error::forbidden(format!(
                "user {} is not a super-user: only a super-user may grant the role {SUPER_USERS}",
                self.login
            )));
        }
        self.require_all(perms, &format!("grant the role {role}"))
    }
}

/// A resource path in its one stored form: `/a/b/` (leading and trailing
/// slash, no empty, `.` or `..` segments), so that "covers" is a prefix test
/// and `/repositories/app/` never covers `/repositories/app2/`.
pub fn normalize_resource(path: &str) -> Result<String, String> {
    let mut out = String::from("/");
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let ok = seg != "."
            && seg != ".."
            && seg.len() <= 128
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'));
        if !ok {
            return Err(format!(
                "invalid resource path {path:?}: segments are letters, digits, '.', '-', '_' or '@' \
                 (e.g. /repositories or /repositories/app)"
            ));
        }
        out.push_str(seg);
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use wharf_store::db::{Subject, UserSource};

    fn principal(roles: &[&str], perms: &[(&str, &[Operation])]) -> Principal {
        let user = User {
            login: "u".into(),
            name: String::new(),
            password_hash: None,
            source: UserSource::Local,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            created_at: wharf_store::db::now(),
            updated_at: wharf_store::db::now(),
        };
        let permissions = perms
            .iter()
            .map(|(r, ops)| Permission {
                subject: Subject::User("u".into()),
                resource: normalize_resource(r).unwrap(),
                operations: ops.to_vec(),
            })
            .collect();
        Principal::new(
            &user,
            Arc::new(Permissions::new(permissions)),
            Credential::Password,
        )
    }

    #[test]
    fn grants_cover_what_is_below() {
        use Operation::*;
        let p = principal(
            &[],
            &[("/repositories", &[Read]), ("/repositories/app", &[Delete])],
        );
        assert!(p.allows("/repositories/", Read));
        assert!(p.allows("/repositories/x/", Read));
        assert!(p.allows("/repositories/app/", Delete));
        assert!(!p.allows("/repositories/app2/", Delete));
        assert!(!p.allows("/repositories/", Delete));
        assert!(!p.allows("/users/", Read));
        let err = p.require("/repositories/x/", Delete).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Forbidden);
        assert!(
            err.message
                .contains("user u lacks 'delete' on /repositories/x/")
        );
        assert!(principal(&[SUPER_USERS], &[]).allows("/anything/", Execute));
    }

    /// The index answers what testing every permission as a prefix
    /// answers, for stored resources of either form and any query.
    #[test]
    fn the_index_covers_what_a_prefix_test_covers() {
        use Operation::*;
        let stored = [
            "/",
            "/repositories/",
            "/repositories/app/",
            "/repositories/a/b/",
            "/users/",
            // Written before normalisation: prefixes, not paths.
            "/repositories/ap",
            "repositories/x/",
        ];
        let queries = [
            "/",
            "/repositories/",
            "/repositories/app/",
            "/repositories/app2/",
            "/repositories/a/",
            "/repositories/a/b/c/",
            "/users",
            "/users/x/",
            "/content/",
            "/repositories/apple/",
            "repositories/x/y/",
        ];
        for mask in 0u32..(1 << stored.len()) {
            let list: Vec<Permission> = stored
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(i, r)| Permission {
                    subject: Subject::User("u".into()),
                    resource: r.to_string(),
                    operations: if i % 2 == 0 {
                        vec![Read]
                    } else {
                        vec![Read, Delete]
                    },
                })
                .collect();
            let index = Permissions::new(list.clone());
            for q in queries {
                for op in [Read, Delete] {
                    let linear = list
                        .iter()
                        .any(|p| q.starts_with(&p.resource) && p.operations.contains(&op));
                    assert_eq!(index.covers(q, op), linear, "{q} {op:?} with {mask:b}");
                }
            }
        }
    }

    #[test]
    fn only_what_one_holds_can_be_granted() {
        use Operation::*;
        let p = principal(
            &[],
            &[("/repositories", &[Read, Update]), ("/users", &[Create])],
        );
        let perm = |r: &str, ops: &[Operation]| Permission {
            subject: Subject::Role("r".into()),
            resource: normalize_resource(r).unwrap(),
            operations: ops.to_vec(),
        };
        assert!(
            p.require_grantable_role("readers", &[perm("/repositories/app", &[Read])])
                .is_ok()
        );
        let err = p
            .require_grantable_role("repo_admin", &[perm("/repositories", &[Read, Delete])])
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Forbidden);
        assert!(
            err.message.contains(
                "user u lacks 'delete' on /repositories/, so may not grant the role repo_admin"
            ),
            "{}",
            err.message
        );
        let err = p.require_grantable_role(SUPER_USERS, &[]).unwrap_err();
        assert!(err.message.contains("only a super-user"), "{}", err.message);
        assert_eq!(p.missing("/", &[Read]), Some(Read));
        let admin = principal(&[SUPER_USERS], &[]);
        assert!(admin.require_grantable_role(SUPER_USERS, &[]).is_ok());
        assert!(
            admin
                .require_all(&[perm("/", &[Delete])], "grant it")
                .is_ok()
        );
    }

    #[test]
    fn resources_normalise() {
        assert_eq!(
            normalize_resource("/repositories").unwrap(),
            "/repositories/"
        );
        assert_eq!(
            normalize_resource("repositories//app/").unwrap(),
            "/repositories/app/"
        );
        assert_eq!(normalize_resource("/").unwrap(), "/");
        assert!(normalize_resource("/repositories/../users").is_err());
        assert!(normalize_resource("/a b").is_err());
    }
}
