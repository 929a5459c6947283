//! `wharf repo versions ...`: a repository's versions (every change to its
//! content makes one): list them, show one, diff two, and restore one as
//! the latest. Publishing a version is `wharf repo publish --version N`.

use crate::Session;
use crate::output::{self, OutputFormat};
use crate::repo::{self, RepoIdArg};
use crate::task::{self, WaitArgs};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use wharf_store::db::{RepoVersion, UnitCounts};

#[derive(Subcommand)]
pub enum VersionsCommand {
    /// The versions a repository keeps, oldest first, and which is published.
    List(RepoIdArg),
    /// One version: when and why it was made, what it added, removed and holds.
    Show(VersionArg),
    /// The units one version holds and another does not, both ways.
    Diff {
        #[command(flatten)]
        repo: RepoIdArg,
        /// The version to compare from.
        #[arg(long, value_name = "N")]
        from: u64,
        /// The version to compare to.
        #[arg(long, value_name = "N")]
        to: u64,
    },
    /// Make a version's content the latest again (as a new version);
    /// publish afterwards for clients to see it.
    Restore {
        #[command(flatten)]
        version: VersionArg,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Args)]
pub struct VersionArg {
    #[command(flatten)]
    pub repo: RepoIdArg,
    /// The version's number.
    #[arg(long, value_name = "N")]
    pub version: u64,
}

pub fn run(s: &Session, cmd: VersionsCommand) -> anyhow::Result<()> {
    match cmd {
        VersionsCommand::List(a) => {
            let id = &a.repo_id;
            let versions = s
                .client
                .versions(id)
                .with_context(|| format!("cannot list the versions of repository {id}"))?;
            if s.output == OutputFormat::Json {
                output::print_json(&versions);
                return Ok(());
            }
            let published: Vec<u64> = s
                .client
                .repo(id)?
                .publications
                .iter()
                .filter_map(|p| p.version)
                .collect();
            let rows = versions
                .iter()
                .map(|v| {
                    vec![
                        v.number.to_string(),
                        v.created_at.to_string(),
                        format!("{:?}", v.cause).to_lowercase(),
                        counts(&v.added),
                        counts(&v.removed),
                        counts(&v.content),
                        if published.contains(&v.number) {
                            "published".into()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            output::print_table(
                &[
                    "version", "created", "cause", "added", "removed", "content", "",
                ],
                rows,
            );
        }
        VersionsCommand::Show(a) => {
            let v = s.client.version(&a.repo.repo_id, a.version)?;
            show(s, &v);
        }
        VersionsCommand::Diff { repo, from, to } => {
            let d = s.client.diff(&repo.repo_id, from, to)?;
            match s.output {
                OutputFormat::Json => output::print_json(&d),
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = d
                        .added
                        .iter()
                        .map(|u| ("+", u))
                        .chain(d.removed.iter().map(|u| ("-", u)))
                        .map(|(sign, u)| vec![sign.into(), u.unit_type.to_string(), u.key.clone()])
                        .collect();
                    if rows.is_empty() {
                        output::say(format!("Versions {from} and {to} hold the same content"));
                    } else {
                        output::print_table(&["", "type", "key"], rows);
                    }
                }
            }
        }
        VersionsCommand::Restore { version, wait } => {
            let (id, n) = (&version.repo.repo_id, version.version);
            let t = s
                .client
                .restore_version(id, n)
                .with_context(|| format!("cannot restore version {n} of repository {id}"))?;
            let done = task::follow(s, t, wait, &format!("Restoring version {n} of [{id}]"))?;
            repo::say_version(s, done.as_ref(), &format!("Made version of [{id}]:"));
        }
    }
    Ok(())
}

fn show(s: &Session, v: &RepoVersion) {
    match s.output {
        OutputFormat::Json => output::print_json(v),
        OutputFormat::Table => output::print_details(&[
            ("Repository", v.repo_id.to_string()),
            ("Version", v.number.to_string()),
            ("Created", v.created_at.to_string()),
            ("Cause", format!("{:?}", v.cause).to_lowercase()),
            (
                "Task",
                v.task.as_ref().map_or("none".into(), |t| t.to_string()),
            ),
            ("Added", counts(&v.added)),
            ("Removed", counts(&v.removed)),
            ("Content", counts(&v.content)),
        ]),
    }
}

/// `manifest: 2, tag: 1`, or `-`.
fn counts(c: &UnitCounts) -> String {
    if c.is_empty() {
        return "-".into();
    }
    c.iter()
        .map(|(t, n)| format!("{t}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
