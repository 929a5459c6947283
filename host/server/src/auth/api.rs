//! Access-control endpoints: `/api/v1/login`, `/logout`, `/me`, and the
//! management of users, roles and permissions (in the spirit of
//! `pulp-admin auth user|role|permission`). What each needs is in
//! [`super::rules`]; handlers get the caller as an `Extension<Principal>`.

use super::principal::normalize_resource;
use super::{AuthError, ClientAddr, Credential, Credentials, Principal, SUPER_USERS, check_name};
use super::{passwords, tokens};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::ApiErrorBody;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use wharf_store::db::Timestamp;
use wharf_store::db::{Operation, Permission, Role, Subject, User, UserSource, now};

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/me/password", post(change_own_password))
        .route("/registry/token", get(super::registry_token::token))
        .route("/users", post(create_user).get(list_users))
        .route(
            "/users/{login}",
            get(show_user).patch(update_user).delete(delete_user),
        )
        .route("/roles", post(create_role).get(list_roles))
        .route("/roles/{id}", get(show_role).delete(delete_role))
        .route("/roles/{id}/users", post(add_role_user))
        .route("/roles/{id}/users/{login}", delete(remove_role_user))
        .route("/permissions", get(list_permissions))
        .route("/permissions/grant", post(grant))
        .route("/permissions/revoke", post(revoke))
}

// ------------------------------------------------------------------ login --

#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`. Shown once: only its hash is kept.
    pub token: String,
    pub expires_at: String,
    pub login: String,
    pub roles: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/login", tag = "auth", security(("basic" = [])),
    responses((status = 200, body = LoginResponse, description = "HTTP basic auth in, a token out"),
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody, description = "too many failed logins: see Retry-After")))]
pub async fn login(
    State(app): State<Arc<App>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
) -> Response {
    let (login, password) = match super::parse_authorization(&headers) {
        Ok(Some(Credentials::Basic { login, password })) => (login, password),
        Ok(_) => {
            return AuthError::Unauthenticated(
                "send your login and password with HTTP basic auth (curl -u LOGIN:PASSWORD)".into(),
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let user = match app.auth.check_password(&login, &password, addr).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let (token, record) = tokens::issue(&user.login, app.auth.config.token_ttl);
    if let Err(e) = app.store.put_token(&record).await {
        return Error::from(e).into_response();
    }
    tracing::info!(target: "wharf::audit", user = %user.login, client = ?addr, action = "login", result = "ok", "token issued");
    Json(LoginResponse {
        token,
        expires_at: tokens::rfc3339(record.expires_at),
        login: user.login,
        roles: user.roles,
    })
    .into_response()
}

#[utoipa::path(post, path = "/api/v1/logout", tag = "auth",
    responses((status = 204, description = "the token is revoked"), (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody)))]
pub async fn logout(
    State(app): State<Arc<App>>,
    Extension(p): Extension<Principal>,
) -> Result<StatusCode> {
    match &p.credential {
        Credential::Token(hash) => {
            app.store.delete_token(hash).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Credential::Password => Err(Error::invalid(
            "nothing to log out: this request carried a password, not a token",
        )),
    }
}

/// A user as the API shows it (never the password hash).
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub login: String,
    pub name: String,
    pub source: UserSource,
    pub roles: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            login: u.login,
            name: u.name,
            source: u.source,
            roles: u.roles,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: UserView,
    pub super_user: bool,
    /// Granted to the user and to its roles.
    pub permissions: Vec<Permission>,
}

async fn user_or_404(app: &App, login: &str) -> Result<User> {
    app.store
        .get_user(login)
        .await?
        .ok_or_else(|| Error::not_found(format!("user {login} not found")))
}

// Who may grant what (docs/access.md): nobody hands out more than they hold.

/// Permissions granted to any of `subjects` (none for no subject: the
/// store lists everything for an empty filter).
async fn permissions_of(app: &App, subjects: Vec<Subject>) -> Result<Vec<Permission>> {
    if subjects.is_empty() {
        return Ok(Vec::new());
    }
    Ok(app.store.list_permissions(&subjects).await?)
}

/// Refuse giving `roles` to anyone unless `p` holds every permission each
/// carries; `super-users` only a super-user gives.
async fn require_may_grant_roles(app: &App, p: &Principal, roles: &[String]) -> Result<()> {
    if p.is_super_user() {
        return Ok(());
    }
    for role in roles {
        let perms = permissions_of(app, vec![Subject::Role(role.clone())]).await?;
        p.require_grantable_role(role, &perms)?;
    }
    Ok(())
}

/// Refuse `what` (setting the password of, deleting) on `target` unless
/// `p` holds everything the target holds: whoever sets a user's password
/// can act as that user.
async fn require_outranks(app: &App, p: &Principal, target: &User, what: &str) -> Result<()> {
    if p.is_super_user() || p.login == target.login {
        return Ok(());
    }
    if target.roles.iter().any(|r| r == SUPER_USERS) {
        return Err(Error::forbidden(format!(
            "user {} is not a super-user: only a super-user may {what} the super-user {}",
            p.login, target.login
        )));
    }
    let perms = permissions_of(app, super::subjects_of(target)).await?;
    p.require_all(&perms, &format!("{what} {}, who holds it", target.login))
}

/// Refuse taking `super-users` away from someone unless `p` is a super-user.
fn require_may_demote(p: &Principal, login: &str) -> Result<()> {
    if p.is_super_user() {
        return Ok(());
    }
    Err(Error::forbidden(format!(
        "user {} is not a super-user: only a super-user may remove {login} from {SUPER_USERS}",
        p.login
    )))
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ApiErrorBody)))]
pub async fn me(
    State(app): State<Arc<App>>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Me>> {
    let user = user_or_404(&app, &p.login).await?;
    Ok(Json(Me {
        super_user: p.is_super_user(),
        permissions: p.permissions.list().to_vec(),
        user: user.into(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204, description = "changed; every token of the user is revoked: log in again"),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody)))]
pub async fn change_own_password(
    State(app): State<Arc<App>>,
    ClientAddr(addr): ClientAddr,
    Extension(p): Extension<Principal>,
    body: std::result::Result<Json<PasswordChange>, JsonRejection>,
) -> std::result::Result<StatusCode, Response> {
    let Json(req) = body.map_err(|e| Error::from(e).into_response())?;
    let user = user_or_404(&app, &p.login)
        .await
        .map_err(IntoResponse::into_response)?;
    if user.source != UserSource::Local {
        return Err(Error::invalid(
            "this user's password is kept by the LDAP directory: change it there",
        )
        .into_response());
    }
    app.auth
        .check_password(&p.login, &req.current_password, addr)
        .await
        .map_err(|e| match e {
            AuthError::Unauthenticated(_) => {
                Error::invalid("current_password is wrong").into_response()
            }
            // Throttled or busy: say so, with Retry-After.
            e => e.into_response(),
        })?;
    set_password(&app, user, &req.new_password)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Hash and store a new password, and revoke every token of the user.
async fn set_password(app: &App, mut user: User, password: &str) -> Result<User> {
    passwords::check_policy(password).map_err(Error::invalid)?;
    user.password_hash = Some(passwords::hash(password).await.map_err(Error::internal)?);
    user.updated_at = now();
    app.store.update_user(&user).await?;
    let revoked = app.store.delete_user_tokens(&user.login).await?;
    tracing::info!(target: "wharf::audit", user = %user.login, revoked, action = "password change", "tokens revoked");
    Ok(user)
}

// ------------------------------------------------------------------ users --

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    login: String,
    #[serde(default)]
    name: String,
    password: String,
    /// Role ids; each must exist.
    #[serde(default)]
    roles: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "auth", request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 400, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody, description = "a role carries a permission the caller lacks, or is super-users"),
        (status = 404, body = ApiErrorBody, description = "a role does not exist"), (status = 409, body = ApiErrorBody)))]
pub async fn create_user(
    State(app): State<Arc<App>>,
    Extension(p): Extension<Principal>,
    body: std::result::Result<Json<CreateUser>, JsonRejection>,
) -> Result<(StatusCode, Json<UserView>)> {
    let Json(req) = body?;
    check_name("login", &req.login)?;
    passwords::check_policy(&req.password).map_err(Error::invalid)?;
    let mut roles = req.roles;
    roles.sort();
    roles.dedup();
    require_may_grant_roles(&app, &p, &roles).await?;
    let user = User {
        name: if req.name.is_empty() {
            req.login.clone()
        } else {
            req.name
        },
        login: req.login,
        password_hash: Some(
            passwords::hash(&req.password)
                .await
                .map_err(Error::internal)?,
        ),
        source: UserSource::Local,
        roles,
        created_at: now(),
        updated_at: now(),
    };
    app.store.create_user(&user).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "auth", responses((status = 200, body = Vec<UserView>)))]
pub async fn list_users(State(app): State<Arc<App>>) -> Result<Json<Vec<UserView>>> {
    Ok(Json(
        app.store
            .list_users()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/users/{login}", tag = "auth",
    responses((status = 200, body = UserView), (status = 404, body = ApiErrorBody)))]
pub async fn show_user(
    State(app): State<Arc<App>>,
    Path(login): Path<String>,
) -> Result<Json<UserView>> {
    Ok(Json(user_or_404(&app, &login).await?.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    name: Option<String>,
    /// A new password: every token of the user is revoked.
    password: Option<String>,
    /// Replaces the user's roles. Adding a role needs every permission it
    /// carries (super-users: a super-user); so does setting the password
    /// of another user, for the permissions that user holds.
    roles: Option<Vec<String>>,
}

/// Refuse a change that would leave no member in `super-users`.
async fn keep_a_super_user(app: &App, losing: &str) -> Result<()> {
    let role = app.store.get_role(SUPER_USERS).await?;
    if role.is_some_and(|r| r.users.iter().all(|u| u == losing)) {
        return Err(Error::conflict(format!(
            "{losing} is the last member of {SUPER_USERS}: add another super-user first"
        )));
    }
    Ok(())
}

#[utoipa::path(patch, path = "/api/v1/users/{login}", tag = "auth", request_body = UpdateUser,
    responses((status = 200, body = UserView), (status = 400, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody, description = "a role or the user's permissions are more than the caller holds"),
        (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
pub async fn update_user(
    State(app): State<Arc<App>>,
    Extension(p): Extension<Principal>,
    Path(login): Path<String>,
    body: std::result::Result<Json<UpdateUser>, JsonRejection>,
) -> Result<Json<UserView>> {
    let Json(req) = body?;
    let mut user = user_or_404(&app, &login).await?;
    if req.password.is_some() {
        require_outranks(&app, &p, &user, "set the password of").await?;
    }
    if let Some(name) = req.name {
        user.name = name;
    }
    if let Some(mut roles) = req.roles {
        roles.sort();
        roles.dedup();
        let added: Vec<String> = roles
            .iter()
            .filter(|r| !user.roles.contains(r))
            .cloned()
            .collect();
        require_may_grant_roles(&app, &p, &added).await?;
        if user.roles.iter().any(|r| r == SUPER_USERS) && !roles.iter().any(|r| r == SUPER_USERS) {
            require_may_demote(&p, &login)?;
            keep_a_super_user(&app, &login).await?;
        }
        user.roles = roles;
    }
    user.updated_at = now();
    match req.password {
        Some(pw) => {
            if user.source != UserSource::Local {
                return Err(Error::invalid(format!(
                    "{login} is an LDAP user: its password is kept by the directory"
                )));
            }
            user = set_password(&app, user, &pw).await?;
        }
        None => app.store.update_user(&user).await?,
    }
    Ok(Json(user.into()))
}

#[utoipa::path(delete, path = "/api/v1/users/{login}", tag = "auth",
    responses((status = 204), (status = 403, body = ApiErrorBody, description = "the user holds more than the caller"),
        (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
pub async fn delete_user(
    State(app): State<Arc<App>>,
    Extension(p): Extension<Principal>,
    Path(login): Path<String>,
) -> Result<StatusCode> {
    let user = user_or_404(&app, &login).await?;
    require_outranks(&app, &p, &user, "delete").await?;
    if user.roles.iter().any(|r| r == SUPER_USERS) {
        keep_a_super_user(&app, &login).await?;
    }
    app.store.delete_user(&login).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ roles --

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    id: String,
    #[serde(default)]
    description: String,
}

#[utoipa::path(post, path = "/api/v1/roles", tag = "auth", request_body = CreateRole,
    responses((status = 201, body = Role), (status = 400, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
pub async fn create_role(
    State(app): State<Arc<App>>,
    body: std::result::Result<Json<CreateRole>, JsonRejection>,
) -> Result<(StatusCode, Json<Role>)> {
    let Json(req) = body?;
    check_name("role id", &req.id)?;
    let role = Role {
        id: req.id,
        description: req.description,
        users: Vec::new(),
    };
    app.store.create_role(&role).await?;
    Ok((StatusCode::CREATED, Json(role)))
}

#[utoipa::path(get, path = "/api/v1/roles", tag = "auth", responses((status = 200, body = Vec<Role>)))]
pub async fn list_roles(State(app): State<Arc<App>>) -> Result<Json<Vec<Role>>> {
    Ok(Json(app.store.list_roles().await?))
}

async fn role_or_404(app: &App, id: &str) -> Result<Role> {
    app.store
        .get_role(id)
        .await?
        .ok_or_else(|| Error::not_found(format!("role {id} not found")))
}

#[utoipa::path(get, path = "/api/v1/roles/{id}", tag = "auth",
    responses((status = 200, body = Role), (status = 404, body = ApiErrorBody)))]
pub async fn show_role(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Role>> {
    Ok(Json(role_or_404(&app, &id).await?))
}

#[utoipa::path(delete, path = "/api/v1/roles/{id}", tag = "auth",
    responses((status = 204), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody, description = "super-users is built in")))]
pub async fn delete_role(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if id == SUPER_USERS {
        return Err(Error::conflict(format!(
            "{SUPER_USERS} is built in and cannot be deleted"
        )));
    }
    if !app.store.delete_role(&id).await? {
        return Err(Error::not_found(format!("role {id} not found")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleUser {
    login: String,
}

#[utoipa::path(post, path = "/api/v1/roles/{id}/users", tag = "auth", request_body = RoleUser,
    responses((status = 200, body = Role), (status = 403, body = ApiErrorBody, description = "the role carries a permission the caller lacks, or is super-users"),
        (status = 404, body = ApiErrorBody)))]
pub async fn add_role_user(
    State(app): State<Arc<App>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: std::result::Result<Json<RoleUser>, JsonRejection>,
) -> Result<Json<Role>> {
    let Json(req) = body?;
    require_may_grant_roles(&app, &p, std::slice::from_ref(&id)).await?;
    app.store.set_role_member(&id, &req.login, true).await?;
    Ok(Json(role_or_404(&app, &id).await?))
}

#[utoipa::path(delete, path = "/api/v1/roles/{id}/users/{login}", tag = "auth",
    responses((status = 200, body = Role), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
pub async fn remove_role_user(
    State(app): State<Arc<App>>,
    Extension(p): Extension<Principal>,
    Path((id, login)): Path<(String, String)>,
) -> Result<Json<Role>> {
    if id == SUPER_USERS {
        require_may_demote(&p, &login)?;
        keep_a_super_user(&app, &login).await?;
    }
    app.store.set_role_member(&id, &login, false).await?;
    Ok(Json(role_or_404(&app, &id).await?))
}

// ------------------------------------------------------------ permissions --

#[derive(Deserialize, utoipa::IntoParams)]
pub struct PermissionQuery {
    /// Only the permissions granted to this user (directly).
    login: Option<String>,
    /// Only the permissions granted to this role.
    role_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/permissions", tag = "auth", params(PermissionQuery),
    responses((status = 200, body = Vec<Permission>)))]
pub async fn list_permissions(
    State(app): State<Arc<App>>,
    q: std::result::Result<Query<PermissionQuery>, QueryRejection>,
) -> Result<Json<Vec<Permission>>> {
    let Query(q) = q?;
    let mut subjects = Vec::new();
    subjects.extend(q.login.map(Subject::User));
    subjects.extend(q.role_id.map(Subject::Role));
    Ok(Json(app.store.list_permissions(&subjects).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionChange {
    /// The user to grant to (or revoke from); or give `role_id`.
    login: Option<String>,
    role_id: Option<String>,
    /// A resource path, e.g. `/repositories` or `/repositories/app`; it
    /// covers everything below it.
    resource: String,
    /// Any of `create`, `read`, `update`, `delete`, `execute`.
    operations: Vec<String>,
}

impl PermissionChange {
    fn parse(self) -> Result<(Subject, String, Vec<Operation>)> {
        let subject = match (self.login, self.role_id) {
            (Some(l), None) => Subject::User(l),
            (None, Some(r)) => Subject::Role(r),
            _ => {
                return Err(Error::invalid("give exactly one of login and role_id"));
            }
        };
        let resource = normalize_resource(&self.resource).map_err(Error::invalid)?;
        if self.operations.is_empty() {
            return Err(Error::invalid(
                "operations is empty: give some of create, read, update, delete, execute",
            ));
        }
        let mut ops = Vec::new();
        for o in &self.operations {
            let op = Operation::ALL
                .into_iter()
                .find(|x| x.as_str().eq_ignore_ascii_case(o.trim()))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "unknown operation {o:?}: use create, read, update, delete or execute"
                    ))
                })?;
            ops.push(op);
        }
        Ok((subject, resource, ops))
    }
}

#[utoipa::path(post, path = "/api/v1/permissions/grant", tag = "auth", request_body = PermissionChange,
    responses((status = 200, body = Permission, description = "the permission as it now is"), (status = 400, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody, description = "the caller lacks one of the operations on the resource"), (status = 404, body = ApiErrorBody)))]
pub async fn grant(
    State(app): State<Arc<App>>,
    Extension(p): Extension<Principal>,
    body: std::result::Result<Json<PermissionChange>, JsonRejection>,
) -> Result<Json<Permission>> {
    let Json(req) = body?;
    let (subject, resource, ops) = req.parse()?;
    let to = match &subject {
        Subject::User(l) => format!("user {l}"),
        Subject::Role(r) => format!("role {r}"),
    };
    p.require_ops(&resource, &ops, &format!("grant it to {to}"))?;
    Ok(Json(app.store.grant(&subject, &resource, &ops).await?))
}

#[utoipa::path(post, path = "/api/v1/permissions/revoke", tag = "auth", request_body = PermissionChange,
    responses((status = 200, body = Permission, description = "the permission as it now is (operations may be empty)"), (status = 400, body = ApiErrorBody)))]
pub async fn revoke(
    State(app): State<Arc<App>>,
    body: std::result::Result<Json<PermissionChange>, JsonRejection>,
) -> Result<Json<Permission>> {
    let Json(req) = body?;
    let (subject, resource, ops) = req.parse()?;
    app.store.revoke(&subject, &resource, &ops).await?;
    let now = app
        .store
        .list_permissions(std::slice::from_ref(&subject))
        .await?
        .into_iter()
        .find(|p| p.resource == resource)
        .unwrap_or(Permission {
            subject,
            resource,
            operations: Vec::new(),
        });
    Ok(Json(now))
}
