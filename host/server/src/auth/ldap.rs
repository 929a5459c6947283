//! LDAP authentication. A login is checked by binding to the directory as
//! the user: its DN comes from `--ldap-user-dn-template`, or from a search
//! under `--ldap-base` with `--ldap-user-filter` (bound as `--ldap-bind-dn`,
//! or anonymously). The user's groups (under `--ldap-group-base`) give its
//! roles through the `--ldap-group-role GROUP_DN=ROLE` map, at every login.

use super::config::LdapConfig;
use anyhow::{Context as _, bail};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, dn_escape, ldap_escape};
use std::time::Duration;

/// LDAP result code of a bind with a wrong password or an unknown DN.
const INVALID_CREDENTIALS: u32 = 49;

pub struct Ldap {
    cfg: LdapConfig,
    /// (normalised group DN, role id)
    group_roles: Vec<(String, String)>,
}

/// A user the directory vouched for.
#[derive(Debug, Clone, PartialEq)]
pub struct LdapUser {
    pub dn: String,
    pub name: String,
    /// Roles mapped from the user's groups, sorted.
    pub roles: Vec<String>,
}

/// `cn=Devs, ou=Groups,...` and `cn=devs,ou=groups,...` are the same group.
fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| {
            rdn.split('=')
                .map(|p| p.trim().to_lowercase())
                .collect::<Vec<_>>()
                .join("=")
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Ldap {
    /// `None` when LDAP is not configured; an error names the bad setting.
    pub fn from_config(cfg: &LdapConfig) -> anyhow::Result<Option<Ldap>> {
        let Some(url) = &cfg.ldap_url else {
            return Ok(None);
        };
        if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
            bail!("--ldap-url {url:?} must start with ldap:// or ldaps://");
        }
        match (&cfg.ldap_user_dn_template, &cfg.ldap_base) {
            (Some(t), _) if !t.contains("{login}") => {
                bail!("--ldap-user-dn-template {t:?} must contain {{login}}")
            }
            (None, None) => bail!(
                "--ldap-url needs --ldap-user-dn-template (bind as a DN) or --ldap-base \
                 (search for the user, then bind)"
            ),
            _ => {}
        }
        if cfg.ldap_user_dn_template.is_none() && !cfg.ldap_user_filter.contains("{login}") {
            bail!(
                "--ldap-user-filter {:?} must contain {{login}}",
                cfg.ldap_user_filter
            );
        }
        let mut group_roles = Vec::new();
        for pair in &cfg.ldap_group_role {
            let Some((dn, role)) = pair.rsplit_once('=') else {
                bail!("--ldap-group-role {pair:?} is not GROUP_DN=ROLE");
            };
            if dn.trim().is_empty() || role.trim().is_empty() || !dn.contains('=') {
                bail!(
                    "--ldap-group-role {pair:?} is not GROUP_DN=ROLE \
                     (e.g. cn=devs,ou=groups,dc=example,dc=org=contributor)"
                );
            }
            group_roles.push((normalize_dn(dn), role.trim().to_string()));
        }
        if !group_roles.is_empty() && cfg.ldap_group_base.is_none() {
            bail!("--ldap-group-role needs --ldap-group-base (where to look for groups)");
        }
        Ok(Some(Ldap {
            cfg: cfg.clone(),
            group_roles,
        }))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.ldap_timeout_secs.max(1))
    }

    async fn connect(&self) -> anyhow::Result<ldap3::Ldap> {
        let url = self.cfg.ldap_url.as_deref().expect("configured");
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout())
            .set_starttls(self.cfg.ldap_starttls);
        let (conn, ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .with_context(|| format!("cannot reach the LDAP server {url}"))?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// `Ok(None)`: no such user or a wrong password. `Err`: the directory
    /// could not answer (unreachable, misconfigured).
    pub async fn authenticate(
        &self,
        login: &str,
        password: &str,
    ) -> anyhow::Result<Option<LdapUser>> {
        // An empty password is an "unauthenticated bind", which succeeds.
        if password.is_empty() || login.is_empty() {
            return Ok(None);
        }
        let mut ldap = self.connect().await?;
        let outcome = self.authenticate_on(&mut ldap, login, password).await;
        let _ = ldap.unbind().await;
        outcome
    }

    async fn authenticate_on(
        &self,
        ldap: &mut ldap3::Ldap,
        login: &str,
        password: &str,
    ) -> anyhow::Result<Option<LdapUser>> {
        let t = self.timeout();
        let (dn, mut name) = match &self.cfg.ldap_user_dn_template {
            Some(template) => (template.replace("{login}", &dn_escape(login)), None),
            None => match self.find_user(ldap, login).await? {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        let bind = ldap
            .with_timeout(t)
            .simple_bind(&dn, password)
            .await
            .context("LDAP bind")?;
        if bind.rc == INVALID_CREDENTIALS {
            return Ok(None);
        }
        bind.success()
            .with_context(|| format!("LDAP bind as {dn} failed"))?;
        if name.is_none() {
            // Bound as the user: read its own entry for a display name.
            name = ldap
                .with_timeout(t)
                .search(
                    &dn,
                    Scope::Base,
                    "(objectClass=*)",
                    vec!["displayName", "cn"],
                )
                .await
                .ok()
                .and_then(|r| r.success().ok())
                .and_then(|(entries, _)| entries.into_iter().next())
                .map(|e| display_name(&SearchEntry::construct(e)));
        }
        let roles = self.roles_of(ldap, &dn, login).await?;
        Ok(Some(LdapUser {
            name: name.unwrap_or_else(|| login.to_string()),
            dn,
            roles,
        }))
    }

    /// Search-then-bind: the DN and display name of the one entry matching
    /// the user filter.
    async fn find_user(
        &self,
        ldap: &mut ldap3::Ldap,
        login: &str,
    ) -> anyhow::Result<Option<(String, Option<String>)>> {
        let t = self.timeout();
        if let Some(bind_dn) = &self.cfg.ldap_bind_dn {
            let pw = self.cfg.ldap_bind_password.as_deref().unwrap_or("");
            ldap.with_timeout(t)
                .simple_bind(bind_dn, pw)
                .await
                .context("LDAP bind")?
                .success()
                .with_context(|| {
                    format!(
                        "LDAP bind as --ldap-bind-dn {bind_dn} failed: check it and its password"
                    )
                })?;
        }
        let base = self.cfg.ldap_base.as_deref().expect("checked at start");
        let filter = self
            .cfg
            .ldap_user_filter
            .replace("{login}", &ldap_escape(login));
        let (entries, _) = ldap
            .with_timeout(t)
            .search(base, Scope::Subtree, &filter, vec!["displayName", "cn"])
            .await
            .context("LDAP user search")?
            .success()
            .with_context(|| format!("LDAP search under {base} with {filter} failed"))?;
        match entries.len() {
            0 => Ok(None),
            1 => {
                let e = SearchEntry::construct(entries.into_iter().next().expect("one"));
                let name = display_name(&e);
                Ok(Some((e.dn, Some(name))))
            }
            n => {
                tracing::warn!(login, n, %filter, "LDAP user filter matches several entries; refusing the login");
                Ok(None)
            }
        }
    }

    /// Roles mapped from the groups the user is in (searched while bound as
    /// the user). Unmapped groups are ignored.
    async fn roles_of(
        &self,
        ldap: &mut ldap3::Ldap,
        dn: &str,
        login: &str,
    ) -> anyhow::Result<Vec<String>> {
        let Some(base) = &self.cfg.ldap_group_base else {
            return Ok(Vec::new());
        };
        let filter = self
            .cfg
            .ldap_group_filter
            .replace("{dn}", &ldap_escape(dn))
            .replace("{login}", &ldap_escape(login));
        let (entries, _) = ldap
            .with_timeout(self.timeout())
            .search(base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .context("LDAP group search")?
            .success()
            .with_context(|| format!("LDAP group search under {base} with {filter} failed"))?;
        let mut roles: Vec<String> = entries
            .into_iter()
            .map(|e| normalize_dn(&SearchEntry::construct(e).dn))
            .flat_map(|g| {
                self.group_roles
                    .iter()
                    .filter(move |(dn, _)| *dn == g)
                    .map(|(_, role)| role.clone())
            })
            .collect();
        roles.sort();
        roles.dedup();
        Ok(roles)
    }
}

fn display_name(e: &SearchEntry) -> String {
    ["displayName", "cn"]
        .iter()
        .find_map(|a| e.attrs.get(*a).and_then(|v| v.first()).cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LdapConfig {
        LdapConfig {
            ldap_url: Some("ldap://127.0.0.1:1".into()),
            ldap_user_dn_template: Some("uid={login},ou=people,dc=example,dc=org".into()),
            ldap_user_filter: "(uid={login})".into(),
            ldap_group_filter: "(member={dn})".into(),
            ldap_timeout_secs: 1,
            ..Default::default()
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(Ldap::from_config(&LdapConfig::default()).unwrap().is_none());
        assert!(Ldap::from_config(&cfg()).unwrap().is_some());
        let mut c = cfg();
        c.ldap_url = Some("http://x".into());
        assert!(Ldap::from_config(&c).is_err());
        let mut c = cfg();
        c.ldap_group_role = vec!["cn=devs,ou=groups,dc=example,dc=org=contributor".into()];
        let err = Ldap::from_config(&c).err().unwrap().to_string();
        assert!(err.contains("--ldap-group-base"), "{err}");
        c.ldap_group_base = Some("ou=groups,dc=example,dc=org".into());
        let l = Ldap::from_config(&c).unwrap().unwrap();
        assert_eq!(
            l.group_roles,
            [(
                "cn=devs,ou=groups,dc=example,dc=org".to_string(),
                "contributor".to_string()
            )]
        );
        c.ldap_group_role = vec!["contributor".into()];
        assert!(Ldap::from_config(&c).is_err());
        let mut c = cfg();
        c.ldap_user_dn_template = None;
        assert!(Ldap::from_config(&c).is_err(), "needs a template or a base");
    }

    #[test]
    fn dns_compare_loosely() {
        assert_eq!(
            normalize_dn("CN=Devs, ou=Groups ,dc=example,dc=org"),
            "cn=devs,ou=groups,dc=example,dc=org"
        );
    }

    #[tokio::test]
    async fn empty_passwords_never_reach_the_directory() {
        let l = Ldap::from_config(&cfg()).unwrap().unwrap();
        assert_eq!(l.authenticate("jdev", "").await.unwrap(), None);
    }
}
