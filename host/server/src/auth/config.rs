//! Access-control settings of `wharf serve` (flags and `WHARF_*`
//! environment). The first administrator's password is not a flag: it comes
//! from `WHARF_ADMIN_PASSWORD` (see [`super::bootstrap`]), so it never shows
//! in a process list.

use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// How long a login token (`POST /api/v1/login`) stays valid, e.g. `12h`, `30m`.
    #[arg(long, env = "WHARF_TOKEN_TTL", default_value = "12h", value_parser = parse_duration)]
    pub token_ttl: Duration,
    /// The URL clients reach this server at (e.g. https://wharf.example.com),
    /// used for the registry's token realm [default: https://<Host header> on a
    /// TLS listener or behind a proxy sending `X-Forwarded-Proto: https`, else http://].
    #[arg(long, env = "WHARF_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub ldap: LdapConfig,
}

/// LDAP authentication: off unless `--ldap-url` is given. A user is found
/// either by a bind DN template or by a search (then bound as).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LdapConfig {
    /// The directory, e.g. ldap://127.0.0.1:389 or ldaps://ldap.example.org.
    #[arg(long, env = "WHARF_LDAP_URL")]
    pub ldap_url: Option<String>,
    /// Upgrade an ldap:// connection with StartTLS.
    #[arg(long, env = "WHARF_LDAP_STARTTLS")]
    pub ldap_starttls: bool,
    /// Bind DN of a user, `{login}` replaced by the (escaped) login, e.g.
    /// "uid={login},ou=people,dc=example,dc=org". Without it, users are searched for.
    #[arg(long, env = "WHARF_LDAP_USER_DN_TEMPLATE")]
    pub ldap_user_dn_template: Option<String>,
    /// Where to search for users (search-then-bind).
    #[arg(long, env = "WHARF_LDAP_BASE")]
    pub ldap_base: Option<String>,
    /// The DN to bind as for searches [default: anonymous].
    #[arg(long, env = "WHARF_LDAP_BIND_DN")]
    pub ldap_bind_dn: Option<String>,
    /// The password of --ldap-bind-dn (prefer the environment variable).
    #[arg(long, env = "WHARF_LDAP_BIND_PASSWORD", hide_env_values = true)]
    pub ldap_bind_password: Option<String>,
    /// The filter that finds a user, `{login}` replaced by the escaped login.
    #[arg(long, env = "WHARF_LDAP_USER_FILTER", default_value = "(uid={login})")]
    pub ldap_user_filter: String,
    /// Where groups are; without it, LDAP users get no roles.
    #[arg(long, env = "WHARF_LDAP_GROUP_BASE")]
    pub ldap_group_base: Option<String>,
    /// The filter that finds a user's groups; `{dn}` and `{login}` are replaced.
    #[arg(
        long,
        env = "WHARF_LDAP_GROUP_FILTER",
        default_value = "(|(member={dn})(uniqueMember={dn})(memberUid={login}))"
    )]
    pub ldap_group_filter: String,
    /// GROUP_DN=ROLE: members of the group get the role at each login
    /// (repeatable; in the environment, separate pairs with `;`).
    #[arg(long, env = "WHARF_LDAP_GROUP_ROLE", value_delimiter = ';')]
    pub ldap_group_role: Vec<String>,
    /// Seconds to wait for the directory (connect and each operation).
    #[arg(long, env = "WHARF_LDAP_TIMEOUT", default_value_t = 5)]
    pub ldap_timeout_secs: u64,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 12h, 30m)"))?;
    if d < Duration::from_secs(60) {
        return Err(format!("{s:?} is shorter than a minute"));
    }
    Ok(d)
}
