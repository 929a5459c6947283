//! Access control from the command line: `wharf login`/`logout`, and
//! `wharf auth user|role|permission` as in the seed:
//!
//! ```text
//! wharf login -u admin
//! wharf auth role create --role-id contributor --description "content contributors"
//! wharf auth permission grant --role-id contributor --resource /repositories -o create -o read
//! wharf auth user create --login jdev --name "Joe Developer"
//! wharf auth role user add --role-id contributor --login jdev
//! ```
//!
//! `login` trades a password (HTTP basic, once) for a token, kept in the
//! config file for that server only.

use crate::Session;
use crate::config::{ClientConfig, SavedLogin};
use crate::output::{self, OutputFormat};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, IsTerminal as _};
use wharf_store::db::{Permission, Role};

#[derive(Args)]
pub struct LoginArgs {
    /// The user's login.
    #[arg(short = 'u', long = "username", value_name = "LOGIN")]
    pub login: String,
    /// The password [default: asked on the terminal, or read as one line
    /// from stdin when it is not a terminal].
    #[arg(short = 'p', long)]
    pub password: Option<String>,
}

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Who the saved login is, with roles and permissions.
    Whoami,
    /// Users: create, update (password, roles), list, delete.
    #[command(subcommand)]
    User(UserCommand),
    /// Roles: named sets of users that permissions are granted to.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Operations on resource paths, granted to users or roles.
    #[command(subcommand)]
    Permission(PermissionCommand),
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a local user; the password is asked for unless given.
    Create {
        #[arg(long)]
        login: String,
        /// The user's full name [default: the login].
        #[arg(long)]
        name: Option<String>,
        #[arg(short = 'p', long)]
        password: Option<String>,
        /// A role to put the user in (repeatable).
        #[arg(long = "role-id", value_name = "ROLE_ID")]
        roles: Vec<String>,
    },
    /// Change a user's name, password (`-p` alone asks for it) or roles.
    Update {
        #[arg(long)]
        login: String,
        #[arg(long)]
        name: Option<String>,
        /// The new password; `-p` alone asks for it. Revokes the user's tokens.
        #[arg(short = 'p', long, num_args = 0..=1, default_missing_value = "")]
        password: Option<String>,
        /// Replace the user's roles with these (repeatable).
        #[arg(long = "role-id", value_name = "ROLE_ID")]
        roles: Vec<String>,
    },
    /// List users.
    List,
    /// One user.
    Show {
        #[arg(long)]
        login: String,
    },
    /// Delete a user.
    Delete {
        #[arg(long)]
        login: String,
    },
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Create a role.
    Create {
        #[arg(long)]
        role_id: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List roles and their users.
    List,
    /// One role and its users.
    Show {
        #[arg(long)]
        role_id: String,
    },
    /// Delete a role (its users stay).
    Delete {
        #[arg(long)]
        role_id: String,
    },
    /// A role's users.
    #[command(subcommand)]
    User(RoleUserCommand),
}

#[derive(Subcommand)]
pub enum RoleUserCommand {
    /// Put a user in a role.
    Add {
        #[arg(long)]
        role_id: String,
        #[arg(long)]
        login: String,
    },
    /// Take a user out of a role.
    Remove {
        #[arg(long)]
        role_id: String,
        #[arg(long)]
        login: String,
    },
}

/// To whom a permission is granted: a user or a role.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Grantee {
    /// A role.
    #[arg(long)]
    pub role_id: Option<String>,
    /// A user.
    #[arg(long)]
    pub login: Option<String>,
}

#[derive(Subcommand)]
pub enum PermissionCommand {
    /// Grant operations on a resource path (and everything below it).
    Grant(PermissionArgs),
    /// Take operations on a resource path back.
    Revoke(PermissionArgs),
    /// Permissions, of one user or role or of all.
    List {
        #[arg(long, conflicts_with = "login")]
        role_id: Option<String>,
        #[arg(long)]
        login: Option<String>,
    },
}

#[derive(Args)]
pub struct PermissionArgs {
    #[command(flatten)]
    pub to: Grantee,
    /// A resource path, e.g. /repositories or /repositories/app.
    #[arg(long)]
    pub resource: String,
    /// An operation (repeatable).
    #[arg(short = 'o', long = "operation", value_enum, required = true)]
    pub operations: Vec<OperationArg>,
}

#[derive(Clone, Copy, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationArg {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

/// `POST /login`.
#[derive(Deserialize, Serialize)]
struct LoginResponse {
    token: String,
    expires_at: String,
    login: String,
    roles: Vec<String>,
}

/// A user as the API shows it.
#[derive(Deserialize, Serialize)]
struct User {
    login: String,
    name: String,
    #[serde(default)]
    source: serde_json::Value,
    roles: Vec<String>,
}

/// `GET /me`.
#[derive(Deserialize, Serialize)]
struct Me {
    #[serde(flatten)]
    user: User,
    super_user: bool,
    permissions: Vec<Permission>,
}

/// A password from the terminal (not echoed), or one line of stdin when a
/// script pipes it in.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).context("cannot read the password");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(password)
}

/// A new password, typed twice on a terminal to catch a typo.
fn new_password(login: &str) -> anyhow::Result<String> {
    let first = read_password(&format!("Enter password for user [{login}] : "))?;
    if std::io::stdin().is_terminal() {
        let again = read_password(&format!("Re-enter password for user [{login}] : "))?;
        anyhow::ensure!(first == again, "the passwords differ; nothing was changed");
    }
    Ok(first)
}

pub fn login(s: &Session, a: LoginArgs) -> anyhow::Result<()> {
    let password = match a.password {
        Some(p) => p,
        None => read_password(&format!("Enter password for user [{}] : ", a.login))?,
    };
    let r: LoginResponse = s
        .client
        .login(&a.login, &password)
        .with_context(|| format!("cannot log in to {} as {}", s.client.server(), a.login))?;
    let mut config = ClientConfig::load()?;
    config.set_login(SavedLogin {
        server: s.client.server().to_string(),
        login: r.login.clone(),
        token: r.token.clone(),
        expires_at: r.expires_at.clone(),
    });
    let path = config.save()?;
    match s.output {
        OutputFormat::Json => output::print_json(&serde_json::json!({
            "server": s.client.server().as_str(),
            "login": r.login,
            "roles": r.roles,
            "expires_at": r.expires_at,
            "config_file": path,
        })),
        OutputFormat::Table => output::say(format!(
            "Successfully logged in to {} as {} (roles: {}). The login expires at {}; it is kept in {}.",
            s.client.server(),
            r.login,
            if r.roles.is_empty() {
                "none".into()
            } else {
                r.roles.join(", ")
            },
            r.expires_at,
            path.display()
        )),
    }
    Ok(())
}

/// Revoke the token on the server and forget it here; forgotten even when
/// the server is gone or already dropped it.
pub fn logout(s: &Session) -> anyhow::Result<()> {
    let mut config = ClientConfig::load()?;
    let Some(saved) = config.remove_login(s.client.server()) else {
        output::say(format!("Not logged in to {}.", s.client.server()));
        return Ok(());
    };
    let revoked = s.client.post_no_content("logout", &serde_json::json!({}));
    config.save()?;
    match revoked {
        Ok(()) => output::say(format!(
            "Logged {} out of {}.",
            saved.login,
            s.client.server()
        )),
        Err(e) => eprintln!(
            "The login of {} is forgotten here; the server did not revoke it ({e}), so it stays valid there until {}.",
            saved.login, saved.expires_at
        ),
    }
    Ok(())
}

/// A new password revokes every token of the user, the saved one too when
/// the user changed their own: log in again with it, so the next command
/// works as before (as `pulp-admin auth user update --login admin -p` does).
fn renew_own_login(s: &Session, login: &str, password: &str) -> anyhow::Result<()> {
    let mut config = ClientConfig::load()?;
    if config
        .login_for(s.client.server())
        .is_none_or(|saved| saved.login != login)
    {
        return Ok(());
    }
    match s.client.login::<LoginResponse>(login, password) {
        Ok(r) => config.set_login(SavedLogin {
            server: s.client.server().to_string(),
            login: r.login,
            token: r.token,
            expires_at: r.expires_at,
        }),
        Err(e) => {
            config.remove_login(s.client.server());
            eprintln!(
                "The password change ended the saved login of {login}, and logging in again failed ({e}): run `wharf login -u {login}`."
            );
        }
    }
    config.save()?;
    Ok(())
}

pub fn run(s: &Session, cmd: AuthCommand) -> anyhow::Result<()> {
    match cmd {
        AuthCommand::Whoami => {
            let me: Me = s.client.get("me", &[])?;
            match s.output {
                OutputFormat::Json => output::print_json(&me),
                OutputFormat::Table => output::print_details(&[
                    ("Server", s.client.server().to_string()),
                    ("Login", me.user.login.clone()),
                    ("Name", me.user.name.clone()),
                    ("Roles", me.user.roles.join(", ")),
                    (
                        "Super-user",
                        if me.super_user { "yes" } else { "no" }.into(),
                    ),
                    ("Permissions", permissions_text(&me.permissions)),
                ]),
            }
        }
        AuthCommand::User(c) => user(s, c)?,
        AuthCommand::Role(c) => role(s, c)?,
        AuthCommand::Permission(c) => permission(s, c)?,
    }
    Ok(())
}

fn permissions_text(ps: &[Permission]) -> String {
    ps.iter()
        .map(|p| {
            let ops: Vec<&str> = p.operations.iter().map(|o| o.as_str()).collect();
            format!("{} {}", p.resource, ops.join(","))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn user(s: &Session, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            login,
            name,
            password,
            roles,
        } => {
            let password = match password {
                Some(p) => p,
                None => new_password(&login)?,
            };
            let body = serde_json::json!({
                "login": login,
                "name": name.unwrap_or_default(),
                "password": password,
                "roles": roles,
            });
            let u: User = s
                .client
                .post("users", &body)
                .with_context(|| format!("cannot create user {login}"))?;
            said(s, &u, format!("User [{}] successfully created", u.login));
        }
        UserCommand::Update {
            login,
            name,
            password,
            roles,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(n) = name {
                body.insert("name".into(), n.into());
            }
            let password = match password.as_deref() {
                Some("") => Some(new_password(&login)?),
                Some(p) => Some(p.to_string()),
                None => None,
            };
            if let Some(p) = &password {
                body.insert("password".into(), p.clone().into());
            }
            if !roles.is_empty() {
                body.insert("roles".into(), roles.into());
            }
            anyhow::ensure!(
                !body.is_empty(),
                "nothing to update for user {login}: give --name, -p or --role-id"
            );
            let u: User = s
                .client
                .patch(&format!("users/{login}"), &body)
                .with_context(|| format!("cannot update user {login}"))?;
            said(s, &u, format!("User [{}] successfully updated", u.login));
            if let Some(p) = &password {
                renew_own_login(s, &login, p)?;
            }
        }
        UserCommand::List => {
            let users: Vec<User> = s.client.get("users", &[]).context("cannot list users")?;
            match s.output {
                OutputFormat::Json => output::print_json(&users),
                OutputFormat::Table => output::print_table(
                    &["login", "name", "roles", "source"],
                    users
                        .iter()
                        .map(|u| {
                            vec![
                                u.login.clone(),
                                u.name.clone(),
                                u.roles.join(", "),
                                u.source.as_str().unwrap_or("").to_string(),
                            ]
                        })
                        .collect(),
                ),
            }
        }
        UserCommand::Show { login } => {
            let u: User = s.client.get(&format!("users/{login}"), &[])?;
            match s.output {
                OutputFormat::Json => output::print_json(&u),
                OutputFormat::Table => output::print_details(&[
                    ("Login", u.login.clone()),
                    ("Name", u.name.clone()),
                    ("Roles", u.roles.join(", ")),
                    ("Source", u.source.as_str().unwrap_or("").to_string()),
                ]),
            }
        }
        UserCommand::Delete { login } => {
            s.client
                .delete_empty(&format!("users/{login}"))
                .with_context(|| format!("cannot delete user {login}"))?;
            output::say(format!("User [{login}] successfully deleted"));
        }
    }
    Ok(())
}

fn role(s: &Session, cmd: RoleCommand) -> anyhow::Result<()> {
    let print_roles = |roles: &[Role]| match s.output {
        OutputFormat::Json => output::print_json(&roles),
        OutputFormat::Table => output::print_table(
            &["role", "description", "users"],
            roles
                .iter()
                .map(|r| vec![r.id.clone(), r.description.clone(), r.users.join(", ")])
                .collect(),
        ),
    };
    match cmd {
        RoleCommand::Create {
            role_id,
            description,
        } => {
            let body =
                serde_json::json!({"id": role_id, "description": description.unwrap_or_default()});
            let r: Role = s
                .client
                .post("roles", &body)
                .with_context(|| format!("cannot create role {role_id}"))?;
            said(s, &r, format!("Role [{}] successfully created", r.id));
        }
        RoleCommand::List => {
            let roles: Vec<Role> = s.client.get("roles", &[]).context("cannot list roles")?;
            print_roles(&roles);
        }
        RoleCommand::Show { role_id } => {
            let r: Role = s.client.get(&format!("roles/{role_id}"), &[])?;
            print_roles(std::slice::from_ref(&r));
        }
        RoleCommand::Delete { role_id } => {
            s.client
                .delete_empty(&format!("roles/{role_id}"))
                .with_context(|| format!("cannot delete role {role_id}"))?;
            output::say(format!("Role [{role_id}] successfully deleted"));
        }
        RoleCommand::User(RoleUserCommand::Add { role_id, login }) => {
            let r: Role = s
                .client
                .post(
                    &format!("roles/{role_id}/users"),
                    &serde_json::json!({"login": login}),
                )
                .with_context(|| format!("cannot add user {login} to role {role_id}"))?;
            said(
                s,
                &r,
                format!("User [{login}] successfully added to role [{role_id}]"),
            );
        }
        RoleCommand::User(RoleUserCommand::Remove { role_id, login }) => {
            let r: Role = s
                .client
                .delete(&format!("roles/{role_id}/users/{login}"))
                .with_context(|| format!("cannot remove user {login} from role {role_id}"))?;
            said(
                s,
                &r,
                format!("User [{login}] successfully removed from role [{role_id}]"),
            );
        }
    }
    Ok(())
}

fn permission(s: &Session, cmd: PermissionCommand) -> anyhow::Result<()> {
    match cmd {
        PermissionCommand::Grant(a) => change(s, "grant", a)?,
        PermissionCommand::Revoke(a) => change(s, "revoke", a)?,
        PermissionCommand::List { role_id, login } => {
            let mut q = Vec::new();
            if let Some(r) = role_id {
                q.push(("role_id", r));
            }
            if let Some(l) = login {
                q.push(("login", l));
            }
            let ps: Vec<Permission> = s
                .client
                .get("permissions", &q)
                .context("cannot list permissions")?;
            match s.output {
                OutputFormat::Json => output::print_json(&ps),
                OutputFormat::Table => output::print_table(
                    &["granted to", "resource", "operations"],
                    ps.iter()
                        .map(|p| {
                            vec![
                                subject(p),
                                p.resource.clone(),
                                p.operations
                                    .iter()
                                    .map(|o| o.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            ]
                        })
                        .collect(),
                ),
            }
        }
    }
    Ok(())
}

fn subject(p: &Permission) -> String {
    match &p.subject {
        wharf_store::db::Subject::User(l) => format!("user {l}"),
        wharf_store::db::Subject::Role(r) => format!("role {r}"),
    }
}

fn change(s: &Session, verb: &str, a: PermissionArgs) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "login": a.to.login,
        "role_id": a.to.role_id,
        "resource": a.resource,
        "operations": a.operations,
    });
    let p: Permission = s
        .client
        .post(&format!("permissions/{verb}"), &body)
        .with_context(|| format!("cannot {verb} the permission"))?;
    let ops: Vec<&str> = p.operations.iter().map(|o| o.as_str()).collect();
    said(
        s,
        &p,
        format!(
            "Permission for {} on {} is now: {}",
            subject(&p),
            p.resource,
            if ops.is_empty() {
                "nothing".into()
            } else {
                ops.join(", ")
            }
        ),
    );
    Ok(())
}

/// The changed record as JSON, or a sentence.
fn said(s: &Session, record: &impl Serialize, sentence: String) {
    match s.output {
        OutputFormat::Json => output::print_json(record),
        OutputFormat::Table => output::say(sentence),
    }
}
