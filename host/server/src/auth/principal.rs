//! Who is asking, and what they may do: a [`Principal`] carries a user's
//! roles and the permissions granted to the user and to those roles; a
//! permission on a resource path covers everything below it.

use crate::error::Error;
use wharf_store::db::{Operation, Permission, User};

/// The built-in role whose members may do everything.
pub const SUPER_USERS: &str = "super-users";

/// An authenticated user.
#[derive(Debug, Clone)]
pub struct Principal {
    pub login: String,
    pub roles: Vec<String>,
    /// Granted to the user and to its roles.
    pub permissions: Vec<Permission>,
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

impl Principal {
    pub fn new(user: &User, permissions: Vec<Permission>, credential: Credential) -> Self {
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
        self.is_super_user()
            || self
                .permissions
                .iter()
                .any(|p| resource.starts_with(&p.resource) && p.operations.contains(&op))
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
        Principal::new(&user, permissions, Credential::Password)
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
