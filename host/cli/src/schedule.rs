//! Scheduled syncs, publishes, retention runs, orphan cleanups and blob
//! checks
//! (`/api/v1/schedules`):
//! `wharf schedule ...`, and in pulp-admin's words `wharf docker repo sync
//! schedules create --repo-id ID -s 2026-12-01T00:00Z/PT1H`.

use crate::Session;
use crate::output::{self, OutputFormat};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;
use wharf_core::ids::RepoId;
use wharf_store::db::{Schedule, ScheduledJob};

/// The interval flag, as pulp-admin spells it.
#[derive(Args, Clone)]
pub struct IntervalArg {
    /// When to run, as an ISO 8601 repeating interval in UTC: START/DURATION
    /// (2026-12-01T00:00Z/PT1H: from then, hourly), Rn/START/DURATION (n
    /// times) or DURATION (from now).
    #[arg(short = 's', long = "schedule", value_name = "INTERVAL")]
    pub interval: String,
}

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Schedule a sync, a publish, a retention run, an orphan cleanup or
    /// a blob check (`fsck`, as `wharf check blobs`).
    Create {
        /// What to run.
        #[arg(long, value_parser = ["sync", "publish", "retain", "orphans", "fsck"])]
        kind: String,
        /// The repository (sync, publish, retain).
        #[arg(long)]
        repo_id: Option<RepoId>,
        /// A blob check deletes the blobs whose bytes do not match their
        /// digest (fsck only).
        #[arg(long)]
        remove_corrupt: bool,
        #[command(flatten)]
        interval: IntervalArg,
        /// Create it paused.
        #[arg(long)]
        disabled: bool,
    },
    /// Every schedule: what it runs, when next, its last run.
    List,
    /// One schedule.
    Show { schedule_id: String },
    /// Change a schedule's interval, or pause or resume it.
    Update {
        schedule_id: String,
        #[arg(short = 's', long = "schedule", value_name = "INTERVAL")]
        interval: Option<String>,
        /// Run it (true) or pause it (false).
        #[arg(long, value_name = "BOOL")]
        enabled: Option<bool>,
    },
    /// Delete a schedule (its tasks stay).
    Delete { schedule_id: String },
}

/// `... sync schedules` / `... publish schedules` of one repository.
#[derive(Subcommand)]
pub enum RepoScheduleCommand {
    /// Schedule it (pulp-admin's `schedules create -s`).
    Create {
        #[arg(long)]
        repo_id: RepoId,
        #[command(flatten)]
        interval: IntervalArg,
    },
    /// Its schedules.
    List {
        #[arg(long)]
        repo_id: RepoId,
    },
    /// Delete one of them.
    Delete {
        #[arg(long)]
        repo_id: RepoId,
        #[arg(long)]
        schedule_id: String,
    },
}

pub fn run(s: &Session, cmd: ScheduleCommand) -> anyhow::Result<()> {
    match cmd {
        ScheduleCommand::Create {
            kind,
            repo_id,
            interval,
            disabled,
            remove_corrupt,
        } => {
            let job = match (kind.as_str(), repo_id) {
                ("orphans", _) => json!({"kind": "orphans"}),
                ("fsck", _) => json!({"kind": "fsck", "remove_corrupt": remove_corrupt}),
                (kind, Some(repo)) => json!({"kind": kind, "repository": repo}),
                (kind, None) => anyhow::bail!("a {kind} schedule needs --repo-id"),
            };
            create(s, job, &interval.interval, !disabled)?;
        }
        ScheduleCommand::List => print(s, &list(s)?),
        ScheduleCommand::Show { schedule_id } => {
            let one: Schedule = s
                .client
                .get(&format!("schedules/{schedule_id}"), &[])
                .with_context(|| format!("cannot read schedule {schedule_id}"))?;
            print(s, &[one]);
        }
        ScheduleCommand::Update {
            schedule_id,
            interval,
            enabled,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(i) = interval {
                body.insert("interval".into(), i.into());
            }
            if let Some(e) = enabled {
                body.insert("enabled".into(), e.into());
            }
            let one: Schedule = s
                .client
                .patch(&format!("schedules/{schedule_id}"), &body)
                .with_context(|| format!("cannot update schedule {schedule_id}"))?;
            print(s, &[one]);
        }
        ScheduleCommand::Delete { schedule_id } => delete(s, &schedule_id)?,
    }
    Ok(())
}

/// A repository's `sync schedules` (`kind` "sync"), `retain schedules`
/// ("retain") or `publish schedules`.
pub fn run_for_repo(s: &Session, kind: &str, cmd: RepoScheduleCommand) -> anyhow::Result<()> {
    match cmd {
        RepoScheduleCommand::Create { repo_id, interval } => {
            create(
                s,
                json!({"kind": kind, "repository": repo_id}),
                &interval.interval,
                true,
            )?;
        }
        RepoScheduleCommand::List { repo_id } => {
            let mine: Vec<Schedule> = list(s)?
                .into_iter()
                .filter(|x| is_for(x, kind, &repo_id))
                .collect();
            print(s, &mine);
        }
        RepoScheduleCommand::Delete {
            repo_id,
            schedule_id,
        } => {
            let one: Schedule = s
                .client
                .get(&format!("schedules/{schedule_id}"), &[])
                .with_context(|| format!("cannot read schedule {schedule_id}"))?;
            if !is_for(&one, kind, &repo_id) {
                anyhow::bail!("schedule {schedule_id} is not a {kind} schedule of {repo_id}");
            }
            delete(s, &schedule_id)?;
        }
    }
    Ok(())
}

fn is_for(s: &Schedule, kind: &str, repo: &RepoId) -> bool {
    match &s.job {
        ScheduledJob::Sync { repository } => kind == "sync" && repository == repo,
        ScheduledJob::Publish { repository } => kind == "publish" && repository == repo,
        ScheduledJob::Retain { repository } => kind == "retain" && repository == repo,
        ScheduledJob::Orphans { .. } | ScheduledJob::Fsck { .. } => false,
    }
}

fn create(
    s: &Session,
    job: serde_json::Value,
    interval: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    let made: Schedule = s
        .client
        .post(
            "schedules",
            &json!({"job": job, "interval": interval, "enabled": enabled}),
        )
        .context("cannot create the schedule")?;
    match s.output {
        OutputFormat::Json => output::print_json(&made),
        OutputFormat::Table => output::say(format!(
            "Schedule {} created: {}, next run {}",
            made.id,
            made.interval,
            made.next_run
                .as_ref()
                .map_or("never".into(), |t| t.to_string())
        )),
    }
    Ok(())
}

fn list(s: &Session) -> anyhow::Result<Vec<Schedule>> {
    s.client
        .get("schedules", &[])
        .context("cannot list schedules")
}

fn delete(s: &Session, id: &str) -> anyhow::Result<()> {
    s.client
        .delete_empty(&format!("schedules/{id}"))
        .with_context(|| format!("cannot delete schedule {id}"))?;
    if s.output == OutputFormat::Table {
        output::say(format!("Schedule {id} deleted"));
    }
    Ok(())
}

fn print(s: &Session, schedules: &[Schedule]) {
    if s.output == OutputFormat::Json {
        output::print_json(&schedules);
        return;
    }
    let rows = schedules
        .iter()
        .map(|x| {
            let what = match &x.job {
                ScheduledJob::Sync { repository } => format!("sync {repository}"),
                ScheduledJob::Publish { repository } => format!("publish {repository}"),
                ScheduledJob::Retain { repository } => format!("retain {repository}"),
                ScheduledJob::Orphans { .. } => "orphan cleanup".to_string(),
                ScheduledJob::Fsck {
                    remove_corrupt: false,
                } => "blob check".to_string(),
                ScheduledJob::Fsck {
                    remove_corrupt: true,
                } => "blob check, removing corrupt blobs".to_string(),
            };
            vec![
                x.id.clone(),
                what,
                x.interval.clone(),
                if x.enabled { "yes" } else { "paused" }.to_string(),
                x.next_run
                    .as_ref()
                    .map_or("never".into(), |t| t.to_string()),
                x.runs.to_string(),
                x.last_task
                    .as_ref()
                    .map_or(String::new(), |t| t.to_string()),
            ]
        })
        .collect();
    output::print_table(
        &[
            "id",
            "job",
            "interval",
            "enabled",
            "next run",
            "runs",
            "last task",
        ],
        rows,
    );
}
