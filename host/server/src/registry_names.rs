//! Which repository a name on a plugin's routes means, published or not,
//! and the repository a push to a new name creates.
//!
//! A plugin declares how its routes name repositories
//! (`wharf_runtime::naming::Naming`): the access gate takes the name from the
//! canonical path, and this module finds its repository: the one published
//! under it, else the one whose name setting (e.g. Docker's
//! `repo_registry_id`) holds it, else the one whose id it is and that has
//! no other name. Lookups go to the store's settings index, never a scan.
//! A read of a name no repository has, below a published pull-through
//! repository's name, is about that repository (`pull_through_base`).

use crate::app::App;
use sha2::Digest as _;
use std::sync::Arc;
use wharf_core::ids::RepoId;
use wharf_runtime::engine::Plugin;
use wharf_store::db::{Operation, RepoQuery, Repository, StoreError, Subject, now};

/// Why a name cannot be mapped to one repository.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error(
        "several repositories are registered under the name {name}: {}; give each its own name",
        ids.join(", ")
    )]
    Ambiguous { name: String, ids: Vec<String> },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The repository of `plugin` that clients reach as `name`, if any.
pub async fn repository_named(
    app: &App,
    plugin: &Plugin,
    name: &str,
) -> Result<Option<RepoId>, NameError> {
    let published = app
        .publications
        .find(app.store.as_ref(), &plugin.info.name, name)
        .await?;
    if let Some(p) = published {
        return Ok(Some(p.repo_id.clone()));
    }
    let naming = &plugin.naming;
    let mut found: Vec<RepoId> = Vec::new();
    if let Some(key) = &naming.name_setting {
        for (content_type, _) in &plugin.info.content_types {
            let q = RepoQuery {
                limit: 2,
                content_type: Some(content_type.clone()),
                setting: Some((key.clone(), name.to_string())),
                ..Default::default()
            };
            found.extend(app.store.list_repos(&q).await?.into_iter().map(|r| r.id));
        }
    }
    match found.len() {
        0 => {}
        1 => return Ok(found.pop()),
        _ => {
            return Err(NameError::Ambiguous {
                name: name.to_string(),
                ids: found.iter().map(|r| r.to_string()).collect(),
            });
        }
    }
    let Ok(id) = name.parse::<RepoId>() else {
        return Ok(None);
    };
    Ok(app
        .store
        .get_repo(&id)
        .await?
        .filter(|r| is_of(plugin, r))
        .filter(|r| naming.name_of(r.id.as_str(), &r.distributor_config) == name)
        .map(|r| r.id))
}

/// The repositories of any plugin that clients reach as `name`.
pub async fn repositories_named(app: &App, name: &str) -> Result<Vec<RepoId>, NameError> {
    let mut out = Vec::new();
    for plugin in app.plugins.list() {
        if let Some(id) = repository_named(app, &plugin, name).await? {
            out.push(id);
        }
    }
    Ok(out)
}

/// The pull-through repository of `plugin` a read of `name`, a name no
/// repository has, is about: the one published under the longest name
/// that `name` continues below (`hub` for `hub/library/alpine`). Reads
/// only: a push to such a name is a push to a new name.
pub fn pull_through_base(app: &App, plugin: &Plugin, name: &str) -> Option<RepoId> {
    app.publications
        .pull_through_base(&plugin.info.name, name)
        .map(|p| p.repo_id.clone())
}

/// [`pull_through_base`] for every plugin.
pub fn pull_through_bases(app: &App, name: &str) -> Vec<RepoId> {
    app.plugins
        .list()
        .iter()
        .filter_map(|plugin| pull_through_base(app, plugin, name))
        .collect()
}

fn is_of(plugin: &Plugin, repo: &Repository) -> bool {
    plugin
        .info
        .content_types
        .iter()
        .any(|(t, _)| *t == repo.content_type)
}

/// Whether a push to a name no repository has may create one on `plugin`:
/// the server allows it and the plugin says how.
pub fn creates_on_push(app: &App, plugin: &Plugin) -> bool {
    app.config.create_on_push
        && plugin.naming.create_on_push.is_some()
        && !plugin.info.content_types.is_empty()
}

/// The id a repository created for `name` gets: the name with `/` as `-`
/// (`team/app` → `team-app`), or, when that is not a valid id or is taken,
/// that followed by 8 hex digits of the name's digest.
fn ids_for(name: &str) -> [String; 2] {
    let plain: String = name
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .take(100)
        .collect();
    let hash = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..4]);
    [plain.clone(), format!("{plain}-{hash}")]
}

/// Create the repository a push to `name` asked for (see
/// [`creates_on_push`]), or find the one a concurrent push created. The
/// plugin checks the name first (`valid-name`); the creator is granted
/// `read` and `update` on the new repository, which is published at once,
/// empty, so that it is listed and answers as one.
pub async fn create_for_push(
    app: &Arc<App>,
    plugin: &Plugin,
    name: &str,
    login: &str,
) -> Result<RepoId, NameError> {
    match tokio::task::block_in_place(|| plugin.valid_name(name)) {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return Err(NameError::Invalid(why)),
        Err(e) => {
            return Err(NameError::Invalid(format!(
                "the plugin could not check the name {name}: {e}"
            )));
        }
    }
    let id = create(app, plugin, name, login).await?;
    if let Err(e) = crate::jobs::publish_on_push(app, &id).await {
        tracing::warn!(repo = %id, "publishing the repository a push created: {}", e.message);
    }
    Ok(id)
}

async fn create(app: &App, plugin: &Plugin, name: &str, login: &str) -> Result<RepoId, NameError> {
    let settings = plugin
        .naming
        .settings_for(name)
        .expect("checked by creates_on_push");
    let content_type = plugin.info.content_types[0].0.clone();
    for id in ids_for(name) {
        let Ok(id) = id.parse::<RepoId>() else {
            continue;
        };
        let repo = Repository {
            id: id.clone(),
            display_name: name.to_string(),
            content_type: content_type.clone(),
            description: format!("created by a push of {login}"),
            notes: Default::default(),
            importer_config: serde_json::json!({}),
            distributor_config: settings.clone(),
            retain_versions: None,
            created_at: now(),
            updated_at: now(),
        };
        match app.store.create_repo(&repo).await {
            Ok(()) => {
                app.auth.protection.refresh(app.store.as_ref(), &id).await?;
                tracing::info!(repo = %id, name, user = login, "repository created by a push");
                // Its creator may go on pushing to it (and pull it), as
                // the owner of what it made; deleting it stays a grant.
                if !login.is_empty() {
                    let resource = format!("/repositories/{id}/");
                    let owner = Subject::User(login.to_string());
                    app.store
                        .grant(&owner, &resource, &[Operation::Read, Operation::Update])
                        .await?;
                }
                return Ok(id);
            }
            Err(StoreError::Conflict(_)) => {
                // Another push of the same name won the race: use its repository.
                if let Some(existing) = repository_named(app, plugin, name).await? {
                    return Ok(existing);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(NameError::Store(StoreError::Conflict(format!(
        "a repository for {name} (its ids {} are taken by other repositories)",
        ids_for(name).join(" and ")
    ))))
}

#[cfg(test)]
mod tests {
    use super::ids_for;

    #[test]
    fn ids_follow_the_name() {
        let [plain, hashed] = ids_for("team/app");
        assert_eq!(plain, "team-app");
        assert!(hashed.starts_with("team-app-") && hashed.len() == "team-app-".len() + 8);
        assert_ne!(ids_for("team/app")[1], ids_for("team-app")[1]);
    }
}
