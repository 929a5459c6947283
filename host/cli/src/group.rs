//! `wharf repo group ...`: named sets of repositories with a description and
//! notes, as in the seed:
//!
//! ```text
//! wharf repo group create --group-id baseos --description "base OS docker images"
//! wharf repo group members add --group-id baseos --repo-id centos
//! ```

use crate::Session;
use crate::output::{self, OutputFormat};
use crate::repo::{DescribeArgs, Note};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use wharf_core::ids::RepoId;
use wharf_store::db::{Group, Notes};

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a repository group.
    Create {
        #[command(flatten)]
        group: GroupIdArg,
        #[command(flatten)]
        describe: DescribeArgs,
        /// A first member (repeatable).
        #[arg(long = "repo-id", value_name = "REPO_ID")]
        members: Vec<RepoId>,
    },
    /// Change a group's display name, description or notes.
    Update {
        #[command(flatten)]
        group: GroupIdArg,
        #[command(flatten)]
        describe: DescribeArgs,
    },
    /// List repository groups.
    List {
        /// Only groups with this note (repeatable: all must match).
        #[arg(long = "note", value_name = "KEY=VALUE")]
        notes: Vec<Note>,
    },
    /// A group's description, notes and members.
    Show(GroupIdArg),
    /// Delete a group (its repositories stay).
    Delete(GroupIdArg),
    /// A group's member repositories.
    #[command(subcommand)]
    Members(MembersCommand),
}

#[derive(Subcommand)]
pub enum MembersCommand {
    /// Add repositories to a group.
    Add(MembersArgs),
    /// Take repositories out of a group (they are not deleted).
    Remove(MembersArgs),
    /// List a group's repositories.
    List(GroupIdArg),
}

#[derive(Args)]
pub struct GroupIdArg {
    /// The group's id (letters, digits, '.', '-', '_').
    #[arg(long)]
    pub group_id: RepoId,
}

#[derive(Args)]
pub struct MembersArgs {
    #[command(flatten)]
    pub group: GroupIdArg,
    /// A repository (repeatable).
    #[arg(long = "repo-id", value_name = "REPO_ID", required = true)]
    pub repos: Vec<RepoId>,
}

pub fn run(s: &Session, cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::Create {
            group,
            describe,
            members,
        } => {
            let id = group.group_id;
            for m in &members {
                s.client.repo(m)?;
            }
            let mut notes = Notes::new();
            for n in describe.notes {
                let v = n.value.with_context(|| {
                    format!("note {:?} has no value; give --note {}=VALUE", n.key, n.key)
                })?;
                notes.insert(n.key, v);
            }
            let body = serde_json::json!({
                "id": id,
                "display_name": describe.display_name,
                "description": describe.description.unwrap_or_default(),
                "notes": notes,
                "members": members,
            });
            let g: Group = s
                .client
                .post("groups", &body)
                .with_context(|| format!("cannot create group {id}"))?;
            said(
                s,
                &g,
                format!("Repository Group [{}] successfully created", g.id),
            );
        }
        GroupCommand::Update { group, describe } => {
            let id = group.group_id;
            let mut body = serde_json::Map::new();
            if let Some(d) = describe.display_name {
                body.insert("display_name".into(), d.into());
            }
            if let Some(d) = describe.description {
                body.insert("description".into(), d.into());
            }
            if !describe.notes.is_empty() {
                let notes: BTreeMap<String, Option<String>> = describe
                    .notes
                    .into_iter()
                    .map(|n| (n.key, n.value))
                    .collect();
                body.insert("notes".into(), serde_json::to_value(notes)?);
            }
            if body.is_empty() {
                anyhow::bail!(
                    "nothing to update in group {id}: give --display-name, --description or --note"
                );
            }
            let g: Group = s
                .client
                .patch(&format!("groups/{id}"), &body)
                .map_err(group_hint)
                .with_context(|| format!("cannot update group {id}"))?;
            said(
                s,
                &g,
                format!("Repository Group [{}] successfully updated", g.id),
            );
        }
        GroupCommand::List { notes } => {
            let mut query = Vec::new();
            if !notes.is_empty() {
                let pairs: Vec<String> = notes
                    .into_iter()
                    .map(|n| format!("{}={}", n.key, n.value.unwrap_or_default()))
                    .collect();
                query.push(("note", pairs.join(",")));
            }
            let groups: Vec<Group> = s
                .client
                .get("groups", &query)
                .context("cannot list groups")?;
            match s.output {
                OutputFormat::Json => output::print_json(&groups),
                OutputFormat::Table if groups.is_empty() => eprintln!("No repository groups."),
                OutputFormat::Table => output::print_table(
                    &["id", "display name", "description", "members", "notes"],
                    groups
                        .iter()
                        .map(|g| {
                            vec![
                                g.id.to_string(),
                                g.display_name.clone(),
                                g.description.clone(),
                                members(g),
                                output::notes(&g.notes),
                            ]
                        })
                        .collect(),
                ),
            }
        }
        GroupCommand::Show(a) => {
            let g = get(s, &a.group_id)?;
            match s.output {
                OutputFormat::Json => output::print_json(&g),
                OutputFormat::Table => output::print_details(&[
                    ("Id", g.id.to_string()),
                    ("Display Name", g.display_name.clone()),
                    ("Description", g.description.clone()),
                    ("Notes", output::notes(&g.notes)),
                    ("Members", members(&g)),
                ]),
            }
        }
        GroupCommand::Delete(a) => {
            let id = a.group_id;
            s.client
                .delete_empty(&format!("groups/{id}"))
                .map_err(group_hint)
                .with_context(|| format!("cannot delete group {id}"))?;
            if s.output == OutputFormat::Table {
                output::say(format!("Repository Group [{id}] successfully deleted"));
            }
        }
        GroupCommand::Members(MembersCommand::Add(a)) => {
            let id = a.group.group_id;
            let mut g = get(s, &id)?;
            for r in &a.repos {
                // The server accepts any well-formed id; catch a typo here.
                s.client.repo(r)?;
                g = s
                    .client
                    .post(
                        &format!("groups/{id}/members"),
                        &serde_json::json!({"repo_id": r}),
                    )
                    .with_context(|| format!("cannot add repository {r} to group {id}"))?;
            }
            said(
                s,
                &g,
                format!("Repository Group [{id}] members: {}", members(&g)),
            );
        }
        GroupCommand::Members(MembersCommand::Remove(a)) => {
            let id = a.group.group_id;
            let mut g = get(s, &id)?;
            for r in &a.repos {
                g = s
                    .client
                    .delete(&format!("groups/{id}/members/{r}"))
                    .with_context(|| format!("cannot remove repository {r} from group {id}"))?;
            }
            said(
                s,
                &g,
                format!("Repository Group [{id}] members: {}", members(&g)),
            );
        }
        GroupCommand::Members(MembersCommand::List(a)) => {
            let g = get(s, &a.group_id)?;
            match s.output {
                OutputFormat::Json => output::print_json(&g.members),
                OutputFormat::Table if g.members.is_empty() => {
                    eprintln!("Group {} has no members.", g.id)
                }
                OutputFormat::Table => {
                    for m in &g.members {
                        output::say(m.to_string());
                    }
                }
            }
        }
    }
    Ok(())
}

fn get(s: &Session, id: &RepoId) -> anyhow::Result<Group> {
    Ok(s.client
        .get(&format!("groups/{id}"), &[])
        .map_err(group_hint)?)
}

/// A group's 404: say where the right one is.
fn group_hint(e: crate::client::ClientError) -> crate::client::ClientError {
    use crate::client::{ApiFailure, ClientError};
    match e {
        ClientError::Api(f) if f.code == "not-found" && f.message.starts_with("group") => {
            ClientError::Api(ApiFailure {
                message: format!("{}; `wharf repo group list` shows the groups", f.message),
                ..f
            })
        }
        e => e,
    }
}

fn members(g: &Group) -> String {
    g.members
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The changed group as JSON, or a sentence.
fn said(s: &Session, g: &Group, sentence: String) {
    match s.output {
        OutputFormat::Json => output::print_json(g),
        OutputFormat::Table => output::say(sentence),
    }
}
