//! Tasks: long work (import, sync, publish, copy, delete) with a persisted
//! record, live progress, cancel, and per-resource ordering.
//!
//! Tasks that lock the same resource (e.g. `repository:app`) run one at a time
//! in submission order (tokio's `Mutex` is FIFO); others run in parallel up to
//! the worker count.

use crate::db::{Progress, Store, Task, TaskError, TaskQuery, TaskState, now};
use crate::ids::TaskId;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How a task failed.
#[derive(Debug)]
pub struct TaskFailure {
    pub message: String,
    pub cause: String,
}

impl TaskFailure {
    pub fn new(message: impl Into<String>, cause: impl Into<String>) -> Self {
        TaskFailure {
            message: message.into(),
            cause: cause.into(),
        }
    }
}

impl<E: std::fmt::Display> From<E> for TaskFailure {
    fn from(e: E) -> Self {
        TaskFailure {
            message: e.to_string(),
            cause: String::new(),
        }
    }
}

pub type TaskResult = Result<serde_json::Value, TaskFailure>;

/// What a running task sees.
#[derive(Clone)]
pub struct TaskContext {
    pub id: TaskId,
    pub cancel: Arc<AtomicBool>,
    pub progress: Arc<dyn Fn(Progress) + Send + Sync>,
}

pub type Job = Box<dyn FnOnce(TaskContext) -> BoxFuture<'static, TaskResult> + Send>;

/// Minimum time between two persisted progress updates of one task.
const PROGRESS_PERSIST_EVERY: Duration = Duration::from_millis(250);

pub struct Tasks {
    store: Arc<dyn Store>,
    workers: Arc<Semaphore>,
    worker_name: String,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Live records of tasks not yet final, for progress and cancel.
    live: Mutex<HashMap<TaskId, (Arc<Mutex<Task>>, Arc<AtomicBool>)>>,
}

impl Tasks {
    pub fn new(store: Arc<dyn Store>, workers: usize) -> Arc<Self> {
        Arc::new(Tasks {
            store,
            workers: Arc::new(Semaphore::new(workers.max(1))),
            worker_name: format!("{}-{}", hostname(), std::process::id()),
            locks: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
        })
    }

    /// Tasks a previous process left unfinished can never finish: say so.
    pub async fn fail_abandoned(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for state in [TaskState::Waiting, TaskState::Running] {
            let q = TaskQuery {
                state: Some(state),
                limit: 100_000,
                ..Default::default()
            };
            for mut t in self.store.list_tasks(&q).await? {
                t.state = TaskState::Error;
                t.finished_at = Some(now());
                t.error = Some(TaskError {
                    message:
                        "the server stopped before this task finished; nothing it did was committed"
                            .into(),
                    cause: "worker lost".into(),
                });
                self.store.put_task(&t).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Record a task and start it when its locks and a worker are free.
    pub async fn submit(
        self: &Arc<Self>,
        kind: &str,
        locks: Vec<String>,
        input: serde_json::Value,
        job: Job,
    ) -> Result<Task, crate::db::StoreError> {
        let task = Task {
            id: TaskId::new(),
            kind: kind.to_string(),
            state: TaskState::Waiting,
            locks,
            worker: None,
            created_at: now(),
            started_at: None,
            finished_at: None,
            progress: Progress::default(),
            result: None,
            error: None,
            input,
        };
        self.store.put_task(&task).await?;
        let record = Arc::new(Mutex::new(task.clone()));
        let cancel = Arc::new(AtomicBool::new(false));
        self.live
            .lock()
            .unwrap()
            .insert(task.id, (record.clone(), cancel.clone()));
        // Take the lock guards in submission order, before spawning.
        let mut lock_futs = Vec::new();
        {
            let mut locks = self.locks.lock().unwrap();
            let mut names = task.locks.clone();
            names.sort();
            for name in names {
                let m = locks.entry(name).or_default().clone();
                lock_futs.push(m.lock_owned());
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut guards = Vec::new();
            for f in lock_futs {
                guards.push(f.await);
            }
            let permit = this
                .workers
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            this.run(record, cancel, job).await;
            drop(permit);
            drop(guards);
        });
        Ok(task)
    }

    async fn run(self: &Arc<Self>, record: Arc<Mutex<Task>>, cancel: Arc<AtomicBool>, job: Job) {
        let id = record.lock().unwrap().id;
        if cancel.load(Ordering::Relaxed) {
            self.finish(
                &record,
                Err(TaskFailure::new("canceled before it started", "")),
                true,
            )
            .await;
            return;
        }
        let snapshot = {
            let mut t = record.lock().unwrap();
            t.state = TaskState::Running;
            t.started_at = Some(now());
            t.worker = Some(self.worker_name.clone());
            t.clone()
        };
        let _ = self.store.put_task(&snapshot).await;
        let progress = {
            let (record, store, last) = (
                record.clone(),
                self.store.clone(),
                Arc::new(Mutex::new(Instant::now())),
            );
            let rt = tokio::runtime::Handle::current();
            Arc::new(move |p: Progress| {
                let snapshot = {
                    let mut t = record.lock().unwrap();
                    t.progress = p;
                    let mut last = last.lock().unwrap();
                    if last.elapsed() < PROGRESS_PERSIST_EVERY {
                        return;
                    }
                    *last = Instant::now();
                    t.clone()
                };
                let store = store.clone();
                rt.spawn(async move {
                    let _ = store.put_task(&snapshot).await;
                });
            }) as Arc<dyn Fn(Progress) + Send + Sync>
        };
        let ctx = TaskContext {
            id,
            cancel: cancel.clone(),
            progress,
        };
        let result = job(ctx).await;
        self.finish(&record, result, cancel.load(Ordering::Relaxed))
            .await;
    }

    async fn finish(&self, record: &Arc<Mutex<Task>>, result: TaskResult, canceled: bool) {
        let snapshot = {
            let mut t = record.lock().unwrap();
            t.finished_at = Some(now());
            match result {
                Ok(v) => {
                    t.state = TaskState::Finished;
                    t.result = Some(v);
                }
                Err(f) => {
                    t.state = if canceled {
                        TaskState::Canceled
                    } else {
                        TaskState::Error
                    };
                    t.error = Some(TaskError {
                        message: f.message,
                        cause: f.cause,
                    });
                }
            }
            t.clone()
        };
        if let Err(e) = self.store.put_task(&snapshot).await {
            tracing::error!(task = %snapshot.id, "could not record the task's end: {e}");
        }
        tracing::info!(task = %snapshot.id, kind = %snapshot.kind, state = snapshot.state.as_str(), "task ended");
        self.live.lock().unwrap().remove(&snapshot.id);
    }

    /// A task, with live progress if it is running here.
    pub async fn get(&self, id: &TaskId) -> Result<Option<Task>, crate::db::StoreError> {
        if let Some((rec, _)) = self.live.lock().unwrap().get(id) {
            return Ok(Some(rec.lock().unwrap().clone()));
        }
        self.store.get_task(id).await
    }

    pub async fn list(&self, q: &TaskQuery) -> Result<Vec<Task>, crate::db::StoreError> {
        let mut tasks = self.store.list_tasks(q).await?;
        let live = self.live.lock().unwrap();
        for t in &mut tasks {
            if let Some((rec, _)) = live.get(&t.id) {
                *t = rec.lock().unwrap().clone();
            }
        }
        Ok(tasks)
    }

    /// Ask a task to stop. A waiting task never starts; a running one is
    /// interrupted at its next check (plugin calls within one epoch tick).
    pub fn cancel(&self, id: &TaskId) -> bool {
        match self.live.lock().unwrap().get(id) {
            Some((_, flag)) => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub mod api {
    //! `/api/v1/tasks`: list, show, cancel.

    use crate::app::App;
    use crate::db::{Task, TaskQuery, TaskState};
    use crate::http::error::{ApiError, ApiErrorBody, ApiResult};
    use crate::ids::TaskId;
    use axum::Json;
    use axum::extract::{Path, Query, State};
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use std::sync::Arc;

    pub fn routes() -> axum::Router<Arc<App>> {
        axum::Router::new()
            .route("/tasks", get(list))
            .route("/tasks/{id}", get(show))
            .route("/tasks/{id}/cancel", post(cancel))
    }

    #[derive(serde::Deserialize, utoipa::IntoParams)]
    struct ListQuery {
        state: Option<TaskState>,
        kind: Option<String>,
        repository: Option<String>,
        limit: Option<u32>,
    }

    #[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(ListQuery),
        responses((status = 200, body = Vec<Task>)))]
    async fn list(
        State(app): State<Arc<App>>,
        q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    ) -> ApiResult<Json<Vec<Task>>> {
        let Query(q) = q?;
        let query = TaskQuery {
            state: q.state,
            kind: q.kind,
            lock: q.repository.map(|r| format!("repository:{r}")),
            limit: q.limit.unwrap_or(100).clamp(1, 1000),
        };
        Ok(Json(app.tasks.list(&query).await?))
    }

    fn parse(id: &str) -> ApiResult<TaskId> {
        id.parse()
            .map_err(|_| ApiError::bad_request(format!("invalid task id {id:?}")))
    }

    #[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
        responses((status = 200, body = Task), (status = 404, body = ApiErrorBody)))]
    async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult<Json<Task>> {
        let id = parse(&id)?;
        app.tasks
            .get(&id)
            .await?
            .map(Json)
            .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))
    }

    #[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks",
        responses((status = 202, body = Task), (status = 409, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
    async fn cancel(
        State(app): State<Arc<App>>,
        Path(id): Path<String>,
    ) -> ApiResult<(StatusCode, Json<Task>)> {
        let id = parse(&id)?;
        let task = app
            .tasks
            .get(&id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))?;
        if task.state.is_final() || !app.tasks.cancel(&id) {
            return Err(ApiError::conflict(format!(
                "task {id} already ended ({})",
                task.state.as_str()
            )));
        }
        Ok((StatusCode::ACCEPTED, Json(task)))
    }
}
