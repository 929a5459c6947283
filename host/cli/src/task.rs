//! `wharf task list|show|cancel`, and following a task the server started
//! (import, sync, publish, copy, delete) to its end.

use crate::Session;
use crate::output::{self, OutputFormat};
use crate::progress::Progress;
use anyhow::Context as _;
use clap::Subcommand;
use std::time::{Duration, Instant};
use wharf_core::ids::{RepoId, TaskId};
use wharf_store::db::{Task, TaskState};

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Recent tasks, newest first.
    List {
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Only tasks working on this repository.
        #[arg(long)]
        repo_id: Option<RepoId>,
        /// Only tasks of this kind (import, sync, publish, copy, delete, orphans).
        #[arg(long)]
        kind: Option<wharf_store::db::TaskKind>,
        /// At most this many (the server caps it at 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One task: state, progress, result or error.
    Show {
        #[arg(value_parser = parse_task_id)]
        id: TaskId,
    },
    /// Ask a waiting or running task to stop; nothing it did is committed.
    Cancel {
        #[arg(value_parser = parse_task_id)]
        id: TaskId,
    },
}

fn parse_task_id(s: &str) -> Result<TaskId, String> {
    s.parse()
        .map_err(|_| format!("a task id is a UUID (as `wharf task list` shows them), not {s:?}"))
}

/// Task states, as `--state` spells them.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StateArg {
    Waiting,
    Running,
    Finished,
    Error,
    Canceled,
}

impl From<StateArg> for TaskState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Waiting => TaskState::Waiting,
            StateArg::Running => TaskState::Running,
            StateArg::Finished => TaskState::Finished,
            StateArg::Error => TaskState::Error,
            StateArg::Canceled => TaskState::Canceled,
        }
    }
}

/// `--no-wait`, for every command that starts a task.
#[derive(clap::Args, Clone, Copy)]
pub struct WaitArgs {
    /// Print the task id and return at once instead of waiting for the
    /// task (follow it with `wharf task show ID`). A streaming import ends
    /// with its request: its outcome is shown either way.
    #[arg(long)]
    pub no_wait: bool,
}

pub fn run(s: &Session, cmd: TaskCommand) -> anyhow::Result<()> {
    match cmd {
        TaskCommand::List {
            state,
            repo_id,
            kind,
            limit,
        } => {
            let filter = crate::api::TaskFilter {
                state: state.map(Into::into),
                kind,
                repository: repo_id,
                limit,
            };
            let tasks = s.client.tasks(&filter).context("cannot list tasks")?;
            match s.output {
                OutputFormat::Json => output::print_json(&tasks),
                OutputFormat::Table if tasks.is_empty() => eprintln!("No tasks."),
                OutputFormat::Table => output::print_table(
                    &["id", "kind", "state", "repository", "created", "detail"],
                    tasks
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.to_string(),
                                t.kind.to_string(),
                                t.state.as_str().to_string(),
                                repositories(t),
                                output::time(t.created_at.as_str()),
                                detail(t),
                            ]
                        })
                        .collect(),
                ),
            }
            Ok(())
        }
        TaskCommand::Show { id } => {
            let task = s.client.task(&id)?;
            match s.output {
                OutputFormat::Json => output::print_json(&task),
                OutputFormat::Table => print_task(&task),
            }
            Ok(())
        }
        TaskCommand::Cancel { id } => {
            let task = s
                .client
                .cancel_task(&id)
                .with_context(|| format!("cannot cancel task {id}"))?;
            match s.output {
                OutputFormat::Json => output::print_json(&task),
                OutputFormat::Table => output::say(format!(
                    "Cancel requested for task {id} ({} of {}, {}); `wharf task show {id}` shows when it stops",
                    task.kind,
                    repositories(&task),
                    task.state.as_str()
                )),
            }
            Ok(())
        }
    }
}

/// The repositories a task works on, from its locks (`repository:ID`).
fn repositories(t: &Task) -> String {
    t.locks
        .iter()
        .filter_map(|l| l.repository())
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// One cell on how a task is doing: its progress while it runs, then what
/// it concluded.
fn detail(t: &Task) -> String {
    let text = match (&t.error, &t.result) {
        (Some(e), _) => e.message.clone(),
        (None, Some(r)) => r
            .get("message")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string(),
        (None, None) => progress_text(t),
    };
    match text.char_indices().nth(70) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

fn progress_text(t: &Task) -> String {
    let p = &t.progress;
    let mut parts = Vec::new();
    if p.items_total > 0 {
        parts.push(format!("{}/{} items", p.items_done, p.items_total));
    }
    if p.bytes_total > 0 {
        parts.push(format!(
            "{}/{}",
            output::bytes(p.bytes_done),
            output::bytes(p.bytes_total)
        ));
    }
    if !p.message.is_empty() {
        parts.push(p.message.clone());
    }
    parts.join(", ")
}

/// A task's result, one `key: value` per line, byte counts readable.
fn result_lines(result: &serde_json::Value) -> Vec<(String, String)> {
    let Some(obj) = result.as_object() else {
        return vec![("result".into(), result.to_string())];
    };
    // The plugin's message first: it is the sentence; the figures follow.
    let message = obj.get_key_value("message").into_iter();
    message
        .chain(obj.iter().filter(|(k, _)| *k != "message"))
        .filter(|(_, v)| !(v.is_null() || v.as_str() == Some("")))
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::Number(n) if k.starts_with("bytes") => {
                    output::bytes(n.as_u64().unwrap_or(0))
                }
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            (k.replace('_', " "), value)
        })
        .collect()
}

fn print_task(t: &Task) {
    let mut rows: Vec<(&str, String)> = vec![
        ("Task", t.id.to_string()),
        ("Kind", t.kind.to_string()),
        ("State", t.state.as_str().to_string()),
        ("Repository", repositories(t)),
        ("Worker", t.worker.clone().unwrap_or_default()),
        ("Created", t.created_at.to_string()),
        (
            "Started",
            t.started_at
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ),
        (
            "Finished",
            t.finished_at
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ),
        ("Progress", progress_text(t)),
    ];
    let result = t
        .result
        .as_ref()
        .map(|r| {
            result_lines(r)
                .into_iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    rows.push(("Result", result));
    if let Some(e) = &t.error {
        rows.push(("Error", e.message.clone()));
        rows.push(("Cause", e.cause.clone()));
    }
    rows.push(("Input", t.input.to_string()));
    if !t.log.is_empty() {
        let lines: Vec<String> = t
            .log
            .iter()
            .map(|l| format!("{} {:?} {}", l.at, l.level, l.message))
            .collect();
        rows.push(("Log", lines.join("\n")));
    }
    output::print_details(&rows);
}

/// How often to ask about a task: quickly at first (most finish in well
/// under a second), then at a pace a busy server does not notice.
fn poll_interval(waited: Duration) -> Duration {
    if waited < Duration::from_secs(2) {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(500)
    }
}

/// How long the server may be unreachable while we wait before giving up.
const LOST_CONTACT_AFTER: Duration = Duration::from_secs(30);

/// A task that did not finish.
#[derive(Debug, thiserror::Error)]
#[error(
    "task {id} ({kind}) {verb}: {message}{cause}; details: `wharf task show {id}`",
    id = .0.id,
    kind = .0.kind,
    verb = if .0.state == TaskState::Canceled { "was canceled" } else { "failed" },
    message = .0.error.as_ref().map_or("", |e| e.message.as_str()),
    cause = .0.error.as_ref().filter(|e| !e.cause.is_empty()).map_or(String::new(), |e| format!(" (cause: {})", e.cause))
)]
pub struct TaskFailed(pub Box<Task>);

/// Follow `task` to its end with progress on stderr, and return it if it
/// finished; a task that failed or was canceled is an error.
pub fn wait(s: &Session, task: Task, label: &str) -> anyhow::Result<Task> {
    let id = task.id;
    let progress = Progress::task(label);
    let started = Instant::now();
    let mut task = task;
    let mut trouble_since: Option<Instant> = None;
    while !task.state.is_final() {
        // A task waits a moment even on an idle server; only a real wait
        // (behind other work on the repository) is worth saying.
        if task.state != TaskState::Waiting || started.elapsed() > Duration::from_secs(1) {
            progress.show_task(task.state, &task.progress);
        }
        std::thread::sleep(poll_interval(started.elapsed()));
        match s.client.task(&id) {
            Ok(t) => {
                task = t;
                trouble_since = None;
            }
            Err(e) if e.is_transient() => {
                let since = *trouble_since.get_or_insert_with(Instant::now);
                if since.elapsed() > LOST_CONTACT_AFTER {
                    progress.abandon();
                    return Err(anyhow::Error::new(e).context(format!(
                        "lost contact with the server while waiting for task {id}; it may still be running: `wharf task show {id}`"
                    )));
                }
            }
            Err(e) => {
                progress.abandon();
                return Err(anyhow::Error::new(e).context(format!("cannot follow task {id}")));
            }
        }
    }
    progress.show_task(task.state, &task.progress);
    if task.state == TaskState::Finished {
        progress.finish("Task Succeeded");
        Ok(task)
    } else {
        progress.abandon();
        Err(TaskFailed(Box::new(task)).into())
    }
}

/// Start-and-follow for the commands that start a task: with `--no-wait`
/// print the task (its id, or JSON) and return; otherwise wait, then print
/// the finished task (JSON) or its result lines (table), and return it.
pub fn follow(
    s: &Session,
    task: Task,
    wait_args: WaitArgs,
    label: &str,
) -> anyhow::Result<Option<Task>> {
    // An ended task (a streaming import answers with one) is reported as
    // such, failure included, whatever --no-wait says.
    if wait_args.no_wait && !task.state.is_final() {
        match s.output {
            OutputFormat::Json => output::print_json(&task),
            OutputFormat::Table => output::say(task.id.to_string()),
        }
        return Ok(None);
    }
    if s.output == OutputFormat::Table && !task.state.is_final() {
        eprintln!(
            "Task {} started; ctrl+c stops waiting, not the task.",
            task.id
        );
    }
    let task = match wait(s, task, label) {
        Ok(t) => t,
        Err(e) => {
            // Scripts get the failed task's record too, not only a message.
            if let (OutputFormat::Json, Some(TaskFailed(t))) = (s.output, e.downcast_ref()) {
                output::print_json(t);
            }
            return Err(e);
        }
    };
    match s.output {
        OutputFormat::Json => output::print_json(&task),
        OutputFormat::Table => print_result(&task),
    }
    Ok(Some(task))
}

/// A finished task's result as `  key: value` lines.
pub fn print_result(task: &Task) {
    if let Some(r) = &task.result {
        for (k, v) in result_lines(r) {
            output::say(format!("  {k}: {v}"));
        }
    }
}
