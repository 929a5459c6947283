//! First start: the built-in `super-users` role, and — when the store has no
//! user at all — the user `admin` in it. Its password is
//! `WHARF_ADMIN_PASSWORD` if set, else generated, logged once and written to
//! `<data-dir>/initial-admin-password` (mode 0600). There is no fixed default.

use super::{SUPER_USERS, passwords};
use anyhow::Context as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use wharf_store::db::{Role, Store, StoreError, User, UserSource, now};

pub const ADMIN: &str = "admin";
pub const PASSWORD_ENV: &str = "WHARF_ADMIN_PASSWORD";
pub const PASSWORD_FILE: &str = "initial-admin-password";

pub async fn first_start(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    first_start_with(store, data_dir, std::env::var(PASSWORD_ENV).ok()).await
}

async fn first_start_with(
    store: &dyn Store,
    data_dir: &Path,
    env_password: Option<String>,
) -> anyhow::Result<()> {
    if store.get_role(SUPER_USERS).await?.is_none() {
        let role = Role {
            id: SUPER_USERS.into(),
            description: "built-in: may do everything".into(),
            users: Vec::new(),
        };
        match store.create_role(&role).await {
            Err(StoreError::Conflict(_)) => {} // another process on the same store
            r => r?,
        }
    }
    if !store.list_users().await?.is_empty() {
        return Ok(());
    }
    let (password, generated) = match env_password {
        Some(p) if !p.is_empty() => {
            passwords::check_policy(&p).map_err(|e| anyhow::anyhow!("{PASSWORD_ENV}: {e}"))?;
            (p, false)
        }
        _ => (passwords::generate(), true),
    };
    let admin = User {
        login: ADMIN.into(),
        name: "Administrator".into(),
        password_hash: Some(passwords::hash(&password).await?),
        source: UserSource::Local,
        roles: vec![SUPER_USERS.into()],
        created_at: now(),
        updated_at: now(),
    };
    match store.create_user(&admin).await {
        Err(StoreError::Conflict(_)) => return Ok(()),
        r => r?,
    }
    if generated {
        let file = data_dir.join(PASSWORD_FILE);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| writeln!(f, "{password}"))
            .with_context(|| format!("writing {}", file.display()))?;
        tracing::warn!(
            login = ADMIN,
            password = %password,
            file = %file.display(),
            "first start: created user admin (super-users) with this generated password, shown \
             only now and kept in the file; log in and change it, then delete the file"
        );
    } else {
        tracing::info!(
            login = ADMIN,
            "first start: created user admin (super-users) with the password from {PASSWORD_ENV}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use wharf_store::db::AccessStore as _;

    #[tokio::test(flavor = "multi_thread")]
    async fn creates_admin_once_with_a_generated_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = wharf_store::db::sqlite::SqliteStore::open(&dir.path().join("db")).unwrap();
        first_start_with(&store, dir.path(), None).await.unwrap();
        let admin = store.get_user(ADMIN).await.unwrap().unwrap();
        assert_eq!(admin.roles, [SUPER_USERS]);
        let file = dir.path().join(PASSWORD_FILE);
        let pw = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            passwords::verify(admin.password_hash.as_deref(), pw.trim()).await,
            Ok(true)
        );
        // A second start changes nothing.
        first_start_with(&store, dir.path(), Some("another password".into()))
            .await
            .unwrap();
        assert_eq!(store.get_user(ADMIN).await.unwrap().unwrap(), admin);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn takes_the_password_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let store = wharf_store::db::sqlite::SqliteStore::open(&dir.path().join("db")).unwrap();
        assert!(
            first_start_with(&store, dir.path(), Some("short".into()))
                .await
                .is_err()
        );
        first_start_with(&store, dir.path(), Some("from the env".into()))
            .await
            .unwrap();
        let admin = store.get_user(ADMIN).await.unwrap().unwrap();
        assert_eq!(
            passwords::verify(admin.password_hash.as_deref(), "from the env").await,
            Ok(true)
        );
        assert!(!dir.path().join(PASSWORD_FILE).exists());
    }
}
