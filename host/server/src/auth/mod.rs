//! Access control: who is asking ([`Auth::authenticate`]: a login token,
//! HTTP basic against a local argon2 hash, or LDAP) and what they may do
//! ([`Principal::allows`]: operations on resource paths, granted to users
//! and roles; `super-users` may do all; default deny).
//!
//! - [`rules`]: the table mapping each admin API route to the permission it
//!   needs, enforced by the one [`middleware`] on `/api/v1`.
//! - [`api`]: login, logout, users, roles and permissions endpoints.
//! - [`registry_gate`] and [`registry_token`]: the registry side (anonymous
//!   pulls of unprotected repositories, the Docker token flow for
//!   protected ones; [`protection`] knows which are).
//! - [`bootstrap`]: the first administrator at first start.
//!
//! `docs/access.md` is the user-facing description.

pub mod api;
pub mod bootstrap;
pub mod canonical;
pub mod config;
pub mod ldap;
pub mod middleware;
pub mod passwords;
pub use wharf_core::percent;
pub mod principal;
pub mod protection;
pub mod ratelimit;
pub mod registry_gate;
pub mod registry_token;
pub mod rules;
pub mod tokens;
pub mod verified;

pub use principal::{Credential, Principal, SUPER_USERS};

use crate::error::{Error, ErrorKind};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wharf_store::db::{Store, StoreError, Subject, User, UserSource, now};

pub struct Auth {
    store: Arc<dyn Store>,
    pub config: config::AuthConfig,
    limiter: ratelimit::LoginLimiter,
    /// Local users' passwords checked lately (not hashed again).
    verified: verified::Verified,
    ldap: Option<ldap::Ldap>,
    pub registry_key: registry_token::SigningKey,
    pub protection: protection::Protection,
    /// Large permission sets, kept while the store's permission number
    /// stands still.
    permission_sets: PermissionSets,
}

/// The permissions of subject sets that hold many (a CI user holds a grant
/// on each repository its pushes created), kept with the store's
/// [`Store::permissions_seq`] at their read: a request reads that number
/// (one lookup) instead of every permission, and any grant or revoke, on
/// any node, moves it. Small sets are read each time, as cheap as the
/// number.
#[derive(Default)]
struct PermissionSets {
    by_subjects: std::sync::Mutex<HashMap<Vec<Subject>, KeptSet>>,
}

/// A set and the number read before it; `None`: found large without the
/// number read first (the next read keeps it under one).
type KeptSet = (Option<u64>, Arc<principal::Permissions>);

impl PermissionSets {
    /// Sets smaller than this are not kept.
    const FROM: usize = 64;
    /// At most this many sets; past it, all are dropped at once.
    const MAX: usize = 1024;

    /// Whether `subjects` hold a large set: read the number first.
    fn large(&self, subjects: &[Subject]) -> bool {
        self.by_subjects.lock().unwrap().contains_key(subjects)
    }

    /// The set kept for `subjects` when it was read at `seq`.
    fn get(&self, subjects: &[Subject], seq: u64) -> Option<Arc<principal::Permissions>> {
        let sets = self.by_subjects.lock().unwrap();
        sets.get(subjects)
            .filter(|(at, _)| *at == Some(seq))
            .map(|(_, p)| p.clone())
    }

    /// Keep (or forget, when small) what was read for `subjects`, at
    /// `seq` when the number was read before the list.
    fn put(&self, subjects: Vec<Subject>, seq: Option<u64>, p: &Arc<principal::Permissions>) {
        let mut sets = self.by_subjects.lock().unwrap();
        if p.len() < Self::FROM {
            sets.remove(&subjects);
            return;
        }
        if sets.len() >= Self::MAX {
            sets.clear();
        }
        sets.insert(subjects, (seq, p.clone()));
    }
}

/// Why a request is not authenticated.
#[derive(Debug)]
pub enum AuthError {
    /// Missing, malformed or wrong credentials (401).
    Unauthenticated(String),
    /// Too many failed password checks from this address (429).
    RateLimited(Duration),
    /// Too many password checks at once: none was free within
    /// [`passwords::QUEUE_WAIT`] (429, retry after [`BUSY_RETRY`]).
    Busy,
    /// The store or the directory failed.
    Unavailable(String),
}

/// When a client refused with [`AuthError::Busy`] is told to try again.
pub const BUSY_RETRY: Duration = Duration::from_secs(1);

impl AuthError {
    /// For a 429: the whole seconds to send as `Retry-After` (at least 1).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AuthError::RateLimited(wait) => Some(wait.as_secs().max(1)),
            AuthError::Busy => Some(BUSY_RETRY.as_secs().max(1)),
            AuthError::Unauthenticated(_) | AuthError::Unavailable(_) => None,
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!("authentication: {e}");
        AuthError::Unavailable(e.to_string())
    }
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) => {
                Error::new(ErrorKind::Unauthenticated, "unauthenticated", m)
            }
            AuthError::RateLimited(_) | AuthError::Busy => {
                let secs = e.retry_after().expect("a 429 has a Retry-After");
                let (code, why) = match e {
                    AuthError::Busy => ("busy", "too many password checks at once"),
                    _ => (
                        "too-many-failures",
                        "too many failed logins from this address",
                    ),
                };
                Error::new(
                    ErrorKind::TooManyRequests,
                    code,
                    format!("{why}; try again in {secs} s"),
                )
                .retry_after(Duration::from_secs(secs))
            }
            AuthError::Unavailable(m) => Error::new(
                ErrorKind::Unavailable,
                "auth-unavailable",
                format!("cannot check credentials now: {m}"),
            ),
        }
    }
}

/// The error's answer; a 401 also names the scheme to authenticate with.
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let challenge = matches!(self, AuthError::Unauthenticated(_));
        let mut r = Error::from(self).into_response();
        if challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"wharf\", charset=\"UTF-8\""),
            );
        }
        r
    }
}

/// What an `Authorization` header carries.
pub enum Credentials {
    Basic { login: String, password: String },
    Bearer(String),
}

/// `Ok(None)` without an `Authorization` header; `Err` when it is malformed.
pub fn parse_authorization(headers: &HeaderMap) -> Result<Option<Credentials>, AuthError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = |what: &str| {
        AuthError::Unauthenticated(format!(
            "malformed Authorization header ({what}): send `Basic base64(login:password)` or `Bearer <token>`"
        ))
    };
    let v = v.to_str().map_err(|_| bad("not ASCII"))?;
    let (scheme, rest) = v.trim().split_once(' ').ok_or_else(|| bad("no scheme"))?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(Credentials::Bearer(rest.to_string())));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad("unknown scheme"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .map_err(|_| bad("not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad("not UTF-8"))?;
    let (login, password) = decoded.split_once(':').ok_or_else(|| bad("no ':'"))?;
    Ok(Some(Credentials::Basic {
        login: login.to_string(),
        password: password.to_string(),
    }))
}

/// The client's address (from the listener), for throttling failed logins.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Logins and role ids: safe in resource paths and URLs.
pub fn check_name(what: &str, s: &str) -> Result<(), Error> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid {what} {s:?}: use 1-128 letters, digits, '.', '-', '_' or '@'"
        )))
    }
}

/// Whom the permissions `user` holds are granted to: the user and its roles.
pub fn subjects_of(user: &User) -> Vec<Subject> {
    let mut subjects = vec![Subject::User(user.login.clone())];
    subjects.extend(user.roles.iter().cloned().map(Subject::Role));
    subjects
}

impl Auth {
    /// Load or create what access control keeps in the data directory and
    /// the store (first administrator, registry signing key).
    pub async fn open(
        config: &config::AuthConfig,
        data_dir: &Path,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Arc<Auth>> {
        let ldap = ldap::Ldap::from_config(&config.ldap)?;
        bootstrap::first_start(store.as_ref(), data_dir).await?;
        let registry_key =
            registry_token::SigningKey::load_or_create(data_dir, store.as_ref()).await?;
        // Loaded by the upkeep, at once and in the background.
        let protection = protection::Protection::default();
        let auth = Arc::new(Auth {
            store,
            config: config.clone(),
            limiter: ratelimit::LoginLimiter::default(),
            verified: verified::Verified::default(),
            ldap,
            registry_key,
            protection,
            permission_sets: PermissionSets::default(),
        });
        auth.spawn_upkeep();
        Ok(auth)
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Load every repository's protection now, then every 30 s pick up
    /// changes made through other hosts; every 10 min forget expired tokens.
    fn spawn_upkeep(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let Some(auth) = weak.upgrade() else { return };
                if let Err(e) = auth.protection.reload(auth.store()).await {
                    tracing::warn!("reloading repository protection: {e}");
                }
                if n.is_multiple_of(20)
                    && let Err(e) = auth.store.delete_expired_tokens(tokens::unix_now()).await
                {
                    tracing::warn!("removing expired tokens: {e}");
                }
                n += 1;
            }
        });
    }

    /// The principal behind a request's `Authorization` header, `None` when
    /// it has none.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        addr: Option<IpAddr>,
    ) -> Result<Option<Principal>, AuthError> {
        match parse_authorization(headers)? {
            None => Ok(None),
            Some(Credentials::Basic { login, password }) => {
                let user = self.check_password(&login, &password, addr).await?;
                Ok(Some(self.principal(&user, Credential::Password).await?))
            }
            Some(Credentials::Bearer(token)) => Ok(Some(self.check_token(&token).await?)),
        }
    }

    async fn check_token(&self, token: &str) -> Result<Principal, AuthError> {
        let invalid = || {
            AuthError::Unauthenticated(
                "the token is expired, revoked or unknown: log in again (POST /api/v1/login)"
                    .into(),
            )
        };
        if !tokens::looks_like_token(token) {
            return Err(invalid());
        }
        let hash = tokens::hash(token);
        let record = self.store.get_token(&hash).await?.ok_or_else(invalid)?;
        if !tokens::is_valid(&record, token) {
            return Err(invalid());
        }
        let user = self
            .store
            .get_user(&record.login)
            .await?
            .ok_or_else(invalid)?;
        self.principal(&user, Credential::Token(hash)).await
    }

    /// A user with the permissions granted to it and to its roles.
    pub async fn principal(
        &self,
        user: &User,
        credential: Credential,
    ) -> Result<Principal, AuthError> {
        let subjects = subjects_of(user);
        // For a large set, the number is read before the list: a change
        // between the two leaves the set kept under an older number, so
        // it is read again next time.
        let seq = if self.permission_sets.large(&subjects) {
            Some(self.store.permissions_seq().await?)
        } else {
            None
        };
        if let Some(p) = seq.and_then(|seq| self.permission_sets.get(&subjects, seq)) {
            return Ok(Principal::new(user, p, credential));
        }
        let permissions = Arc::new(principal::Permissions::new(
            self.store.list_permissions(&subjects).await?,
        ));
        if seq.is_some() || permissions.len() >= PermissionSets::FROM {
            self.permission_sets.put(subjects, seq, &permissions);
        }
        Ok(Principal::new(user, permissions, credential))
    }

    /// Check a login and password (throttled per login and address and per
    /// address, see [`ratelimit`]; argon2 bounded by [`passwords`]' gate):
    /// a local user's argon2 hash, else the LDAP directory, which creates or
    /// refreshes the user. Every path that takes a password comes here.
    pub async fn check_password(
        &self,
        login: &str,
        password: &str,
        addr: Option<IpAddr>,
    ) -> Result<User, AuthError> {
        // Checked lately (and not locked out since): no second argon2, and
        // no count against the burst limit.
        if self.limiter.locked_out(login, addr).is_none()
            && let Some(u) = self.verified_lately(login, password).await
        {
            return Ok(u);
        }
        // Reserved before anything is checked: a burst cannot pass together.
        let attempt = self
            .limiter
            .begin(login, addr)
            .map_err(AuthError::RateLimited)?;
        let user = match self.store.get_user(login).await {
            Ok(u) => u,
            Err(e) => {
                attempt.not_tried();
                return Err(e.into());
            }
        };
        let outcome = match (&user, &self.ldap) {
            (Some(u), _) if u.source == UserSource::Local => {
                match passwords::verify(u.password_hash.as_deref(), password).await {
                    Ok(true) => {
                        if let Some(hash) = &u.password_hash {
                            self.verified.insert(login, password, hash);
                        }
                        Ok(u.clone())
                    }
                    Ok(false) => Err(None),
                    Err(passwords::Busy) => Err(Some(AuthError::Busy)),
                }
            }
            (_, Some(ldap)) => match ldap.authenticate(login, password).await {
                Ok(Some(found)) => match self.ldap_user(login, found, user).await {
                    Ok(u) => Ok(u),
                    Err(e) => Err(Some(e)),
                },
                Ok(None) => Err(None),
                Err(e) => {
                    tracing::error!("LDAP: {e:#}");
                    Err(Some(AuthError::Unavailable(format!(
                        "the LDAP directory did not answer ({e:#}); local users can still log in"
                    ))))
                }
            },
            (_, None) => {
                // Same cost as a wrong password: logins cannot be probed by timing.
                match passwords::verify(None, password).await {
                    Ok(_) => Err(None),
                    Err(passwords::Busy) => Err(Some(AuthError::Busy)),
                }
            }
        };
        match outcome {
            Ok(u) => {
                attempt.succeeded();
                Ok(u)
            }
            Err(None) => {
                attempt.failed();
                tracing::info!(target: "wharf::audit", user = login, client = ?addr, action = "login", result = "denied", "wrong login or password");
                Err(AuthError::Unauthenticated("wrong login or password".into()))
            }
            Err(Some(e)) => {
                attempt.not_tried();
                Err(e)
            }
        }
    }

    /// A local user whose password was checked lately with these exact
    /// credentials (see [`verified`]); `None` sends them through the check.
    async fn verified_lately(&self, login: &str, password: &str) -> Option<User> {
        let user = self.store.get_user(login).await.ok()??;
        let hash = user.password_hash.as_deref()?;
        (user.source == UserSource::Local && self.verified.contains(login, password, hash))
            .then_some(user)
    }

    /// Create or refresh the record of a user the directory vouched for:
    /// its name, and its roles from its groups (roles that do not exist
    /// here are skipped).
    async fn ldap_user(
        &self,
        login: &str,
        found: ldap::LdapUser,
        existing: Option<User>,
    ) -> Result<User, AuthError> {
        let mut roles = Vec::new();
        for r in found.roles {
            if self.store.get_role(&r).await?.is_some() {
                roles.push(r);
            } else {
                tracing::warn!(login, role = %r, "an LDAP group maps to a role that does not exist; create it");
            }
        }
        let user = match existing {
            Some(mut user) => {
                if user.name != found.name || user.roles != roles {
                    user.name = found.name;
                    user.roles = roles;
                    user.updated_at = now();
                    self.store.update_user(&user).await?;
                }
                user
            }
            None => {
                let user = User {
                    login: login.to_string(),
                    name: found.name,
                    password_hash: None,
                    source: UserSource::Ldap,
                    roles,
                    created_at: now(),
                    updated_at: now(),
                };
                match self.store.create_user(&user).await {
                    // Created meanwhile by a concurrent login: same data.
                    Err(StoreError::Conflict(_)) => self.store.update_user(&user).await?,
                    r => r?,
                }
                user
            }
        };
        tracing::info!(target: "wharf::audit", user = login, dn = %found.dn, roles = ?user.roles, "LDAP login");
        Ok(user)
    }
}

#[cfg(test)]
mod permission_set_tests {
    use super::*;
    use wharf_store::db::{Operation, Permission};

    fn set(n: usize) -> Arc<principal::Permissions> {
        Arc::new(principal::Permissions::new(
            (0..n)
                .map(|i| Permission {
                    subject: Subject::User("bot".into()),
                    resource: format!("/repositories/r{i}/"),
                    operations: vec![Operation::Read],
                })
                .collect(),
        ))
    }

    /// A large set is kept only under the number read before it, and only
    /// while that number stands; a small one is never kept.
    #[test]
    fn large_sets_are_kept_under_the_number_read_before_them() {
        let sets = PermissionSets::default();
        let bot = vec![Subject::User("bot".into())];
        assert!(!sets.large(&bot));
        sets.put(bot.clone(), None, &set(PermissionSets::FROM));
        assert!(sets.large(&bot), "found large: read the number next time");
        assert!(sets.get(&bot, 0).is_none(), "not read under a number yet");
        sets.put(bot.clone(), Some(7), &set(PermissionSets::FROM));
        assert_eq!(
            sets.get(&bot, 7).map(|p| p.len()),
            Some(PermissionSets::FROM)
        );
        assert!(sets.get(&bot, 8).is_none(), "a permission changed since");
        sets.put(bot.clone(), Some(8), &set(3));
        assert!(!sets.large(&bot), "small again: read each time");
        let other = vec![Subject::User("other".into())];
        assert!(sets.get(&other, 7).is_none());
    }
}
