//! Scheduled work (`/api/v1/schedules`): syncs, publishes and orphan
//! cleanups submitted as tasks at the times of an ISO 8601 repeating
//! interval (`2026-12-01T00:00Z/PT1H`, pulp-admin's `sync schedules
//! create -s`), stored in the metadata store.
//!
//! Every `wharf serve` node looks for due schedules every
//! [`TICK`], and each due run is submitted exactly once however many nodes
//! look:
//!
//! 1. **claim**: a compare-and-set in the store (on the schedule's
//!    `revision`) moves its `next_run` from the due time to the following
//!    one and records the claim: the due run and the id its task will have.
//!    One node wins it;
//! 2. **submit**: the winner submits the task under that id;
//! 3. **settle**: the claim is cleared and the run recorded (`last_run`,
//!    `last_task`, `runs`).
//!
//! A node that dies between 1 and 3 leaves its claim; after [`STALE`]
//! another node settles it: it submits the task unless a task of that id
//! exists (the first node got that far), so the run happens once.

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::ApiErrorBody;
use crate::tasks::Job;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wharf_core::ids::TaskId;
use wharf_core::schedule::Recurrence;
use wharf_core::time::Timestamp;
use wharf_store::db::{Operation, Schedule, ScheduleClaim, ScheduledJob, now};

/// How often each node looks for due schedules.
pub const TICK: Duration = Duration::from_millis(500);
/// How old a claim must be before another node settles it.
pub const STALE: Duration = Duration::from_secs(30);

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/schedules", post(create).get(list))
        .route("/schedules/{id}", get(show).patch(update).delete(remove))
}

/// Look for due schedules until the process stops.
pub fn spawn(app: Arc<App>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if app.tasks.is_stopping() {
                return;
            }
            if let Err(e) = run_due(&app).await {
                tracing::warn!("looking for due schedules: {}", e.message);
            }
        }
    });
}

/// Submit every due run this node wins, and settle stale claims.
pub async fn run_due(app: &Arc<App>) -> Result<()> {
    let now = now();
    for s in app.store.list_schedules().await? {
        match (&s.claim, &s.next_run) {
            (Some(claim), _) if claim.at.age() > STALE => settle_stale(app, &s, claim).await?,
            (None, Some(due)) if s.enabled && *due <= now => claim_due(app, &s, due).await?,
            _ => {}
        }
    }
    Ok(())
}

/// Claim the run due at `due`, and if this node won it, submit and settle.
async fn claim_due(app: &Arc<App>, s: &Schedule, due: &Timestamp) -> Result<()> {
    let Ok(recurrence) = Recurrence::parse(&s.interval, SystemTime::now()) else {
        tracing::warn!(schedule = %s.id, interval = %s.interval, "unreadable interval; skipped");
        return Ok(());
    };
    let claim = ScheduleClaim {
        due: due.clone(),
        task: TaskId::new(),
        at: now(),
    };
    let mut claimed = s.clone();
    claimed.next_run = due
        .system_time()
        .and_then(|d| recurrence.next_after(d, SystemTime::now()))
        .map(Timestamp::at);
    claimed.claim = Some(claim.clone());
    claimed.revision += 1;
    if !app.store.swap_schedule(s.revision, &claimed).await? {
        return Ok(()); // Another node won this run.
    }
    tracing::info!(schedule = %s.id, due = %claim.due, task = %claim.task, "scheduled run");
    app.tasks.submit_as(claim.task, job_of(&s.job)).await?;
    settle(app, &s.id, &claim).await
}

/// A claim its node left (it died, or lost the store, between claim and
/// settle): take it over, submit its task unless that was done, settle it.
async fn settle_stale(app: &Arc<App>, s: &Schedule, claim: &ScheduleClaim) -> Result<()> {
    let mut taken = s.clone();
    let mut renewed = claim.clone();
    renewed.at = now();
    taken.claim = Some(renewed.clone());
    taken.revision += 1;
    if !app.store.swap_schedule(s.revision, &taken).await? {
        return Ok(());
    }
    if app.store.get_task(&claim.task).await?.is_none() {
        tracing::warn!(schedule = %s.id, due = %claim.due, "a run claimed by a node that went away; submitting it");
        app.tasks.submit_as(claim.task, job_of(&s.job)).await?;
    }
    settle(app, &s.id, &renewed).await
}

/// Record the claimed run as made and clear the claim (retried while other
/// changes to the schedule come in between).
async fn settle(app: &App, id: &str, claim: &ScheduleClaim) -> Result<()> {
    for _ in 0..10 {
        let Some(cur) = app.store.get_schedule(id).await? else {
            return Ok(()); // Deleted meanwhile.
        };
        if cur.claim.as_ref().map(|c| &c.task) != Some(&claim.task) {
            return Ok(()); // Settled by another node.
        }
        let mut done = cur.clone();
        done.claim = None;
        done.last_run = Some(claim.due.clone());
        done.last_task = Some(claim.task);
        done.runs += 1;
        done.revision += 1;
        if app.store.swap_schedule(cur.revision, &done).await? {
            return Ok(());
        }
    }
    Err(Error::conflict(format!(
        "schedule {id} keeps changing; its run is settled later"
    )))
}

fn job_of(job: &ScheduledJob) -> Job {
    match job {
        ScheduledJob::Sync { repository } => Job::Sync {
            repository: repository.clone(),
        },
        ScheduledJob::Publish { repository } => Job::Publish {
            repository: repository.clone(),
            version: None,
        },
        ScheduledJob::Retain { repository } => Job::Retain {
            repository: repository.clone(),
            dry_run: false,
        },
        ScheduledJob::Orphans { protection_minutes } => Job::Orphans {
            protection_minutes: *protection_minutes,
        },
        ScheduledJob::Fsck { remove_corrupt } => Job::Fsck {
            remove_corrupt: *remove_corrupt,
        },
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateSchedule {
    /// What to run: `{"kind": "sync", "repository": "ID"}`, `{"kind":
    /// "publish", "repository": "ID"}`, `{"kind": "retain", "repository":
    /// "ID"}`, `{"kind": "orphans"}` or `{"kind": "fsck", "remove_corrupt":
    /// false}`.
    job: ScheduledJob,
    /// ISO 8601 repeating interval: `START/DURATION`
    /// (`2026-12-01T00:00Z/PT1H`), `Rn/START/DURATION`, or `DURATION`
    /// (from now). Times are UTC.
    interval: String,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateSchedule {
    interval: Option<String>,
    enabled: Option<bool>,
}

/// The interval as stored (normalised) and its first run at or after now.
fn parse_interval(text: &str) -> Result<(String, Option<Timestamp>)> {
    let now = SystemTime::now();
    let r = Recurrence::parse(text, now).map_err(Error::invalid)?;
    let first = r.next_at_or_after(now).map(Timestamp::at);
    if first.is_none() {
        return Err(Error::invalid(format!(
            "{text:?} has no run left after now; give a later start or more repetitions"
        )));
    }
    Ok((r.to_string(), first))
}

/// A repository job needs `execute` on its repository, as running it by
/// hand does.
async fn check_job(
    app: &App,
    principal: &crate::auth::Principal,
    job: &ScheduledJob,
) -> Result<()> {
    match job.repository() {
        Some(repo) => {
            if app.store.get_repo(repo).await?.is_none() {
                return Err(Error::not_found(format!(
                    "repository {repo} does not exist"
                )));
            }
            if !principal.allows(&format!("/repositories/{repo}/"), Operation::Execute) {
                return Err(Error::forbidden(format!(
                    "user {} may not run tasks on repository {repo} (execute on /repositories/{repo}/)",
                    principal.login
                )));
            }
        }
        // Cleaning up orphans and checking blobs (which may remove them)
        // need what starting them by hand needs.
        None => {
            if !principal.allows("/orphans/", Operation::Delete) {
                return Err(Error::forbidden(format!(
                    "user {} may not clean up orphans or check blobs (delete on /orphans/)",
                    principal.login
                )));
            }
        }
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules", request_body = CreateSchedule,
    responses((status = 201, body = Schedule), (status = 400, body = ApiErrorBody), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn create(
    State(app): State<Arc<App>>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
    body: std::result::Result<Json<CreateSchedule>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Schedule>)> {
    let Json(req) = body?;
    check_job(&app, &principal, &req.job).await?;
    let (interval, next_run) = parse_interval(&req.interval)?;
    let mut s = Schedule::new(TaskId::new().to_string(), req.job, interval, next_run);
    s.enabled = req.enabled;
    app.store.put_schedule(&s).await?;
    tracing::info!(schedule = %s.id, interval = %s.interval, user = %principal.login, "schedule created");
    Ok((StatusCode::CREATED, Json(s)))
}

#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules", responses((status = 200, body = Vec<Schedule>)))]
async fn list(State(app): State<Arc<App>>) -> Result<Json<Vec<Schedule>>> {
    Ok(Json(app.store.list_schedules().await?))
}

async fn get_schedule(app: &App, id: &str) -> Result<Schedule> {
    app.store.get_schedule(id).await?.ok_or_else(|| {
        Error::not_found(format!(
            "no schedule {id}; list them with `wharf schedule list`"
        ))
    })
}

#[utoipa::path(get, path = "/api/v1/schedules/{id}", tag = "schedules", responses((status = 200, body = Schedule), (status = 404, body = ApiErrorBody)))]
async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Schedule>> {
    Ok(Json(get_schedule(&app, &id).await?))
}

#[utoipa::path(patch, path = "/api/v1/schedules/{id}", tag = "schedules", request_body = UpdateSchedule,
    responses((status = 200, body = Schedule), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn update(
    State(app): State<Arc<App>>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
    Path(id): Path<String>,
    body: std::result::Result<Json<UpdateSchedule>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Schedule>> {
    let Json(req) = body?;
    let mut s = get_schedule(&app, &id).await?;
    check_job(&app, &principal, &s.job).await?;
    if let Some(text) = req.interval {
        let (interval, next_run) = parse_interval(&text)?;
        s.interval = interval;
        s.next_run = next_run;
    }
    if let Some(on) = req.enabled {
        s.enabled = on;
    }
    s.updated_at = now();
    s.revision += 1;
    app.store.put_schedule(&s).await?;
    Ok(Json(s))
}

#[utoipa::path(delete, path = "/api/v1/schedules/{id}", tag = "schedules", responses((status = 204), (status = 404, body = ApiErrorBody)))]
async fn remove(
    State(app): State<Arc<App>>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let s = get_schedule(&app, &id).await?;
    check_job(&app, &principal, &s.job).await?;
    app.store.delete_schedule(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
