//! Tasks: long work (import, sync, publish, copy, delete, orphan cleanup)
//! with a persisted record, live progress, cancel, and per-resource ordering.
//!
//! A task is a [`Job`] (plain data) plus its record. Two ways to run them:
//! - in-process (default): up to `--workers` at once; tasks sharing a lock
//!   (e.g. `repository:app`) run one at a time in submission order (tokio's
//!   `Mutex` is FIFO);
//! - through RabbitMQ (`--broker`): [`amqp`] publishes task ids to a durable
//!   queue; any `wharf worker` (or server with workers) takes them, one at a
//!   time per worker, ordering tasks that share a lock through the shared
//!   metadata store.
//!
//! Either way a job commits its changes only at its end, so a task that dies
//! midway leaves nothing behind.

pub mod amqp;
pub mod api;
mod job;
pub mod process;

use futures::future::BoxFuture;
pub use job::Job;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::Instrument as _;
use wharf_core::ids::TaskId;
use wharf_store::db::{
    Progress, Store, Task, TaskError, TaskLock, TaskLogLevel, TaskQuery, TaskState, now,
};

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

/// What runs a task's job and hears of its end: the application, handed to
/// [`Tasks::attach`] once it is built. Tasks know a job as data; what it
/// needs to run (plugins, blobs, the store) stays on the other side of this
/// trait.
pub trait JobRunner: Send + Sync + 'static {
    /// Run `job` to its end.
    fn run(self: Arc<Self>, job: Job, ctx: TaskContext) -> BoxFuture<'static, TaskResult>;
    /// The task's final record is stored (events go out from here).
    fn ended(self: Arc<Self>, task: Task) -> BoxFuture<'static, ()>;
}

/// What a running task sees.
#[derive(Clone)]
pub struct TaskContext {
    pub id: TaskId,
    pub cancel: Arc<AtomicBool>,
    pub progress: Arc<dyn Fn(Progress) + Send + Sync>,
    /// A line for the task's log (kept in its record, persisted with the
    /// next progress write or at the end).
    pub log: Arc<dyn Fn(TaskLogLevel, String) + Send + Sync>,
}

/// Minimum time between two persisted progress updates of one task; also how
/// often a running task looks for a cancel request from another process.
const PERSIST_EVERY: Duration = Duration::from_millis(250);

enum Dispatch {
    /// Run here: the worker limit and FIFO lock queues live in memory.
    Local {
        workers: Arc<Semaphore>,
        locks: LockQueues,
    },
    /// Publish to RabbitMQ; workers take it from there.
    Broker(Box<amqp::Publisher>),
}

/// A running task's record (with live progress) and its cancel flag.
type LiveTask = (Arc<Mutex<Task>>, Arc<AtomicBool>);

pub struct Tasks {
    store: Arc<dyn Store>,
    runner: OnceLock<Weak<dyn JobRunner>>,
    dispatch: Dispatch,
    worker_name: String,
    /// Tasks running in this process, for live progress and cancel.
    live: Mutex<HashMap<TaskId, LiveTask>>,
    /// Set at shutdown: no task starts any more.
    stopping: AtomicBool,
    /// Where tasks run: the main runtime, whichever connection's event
    /// loop submits them.
    runtime: tokio::runtime::Handle,
}

impl Tasks {
    /// Tasks run by `workers` in-process workers, on the runtime this is
    /// called on.
    pub fn local(store: Arc<dyn Store>, workers: usize) -> Arc<Self> {
        let dispatch = Dispatch::Local {
            workers: Arc::new(Semaphore::new(workers.max(1))),
            locks: Mutex::default(),
        };
        Self::with_dispatch(store, dispatch)
    }

    /// Tasks published to RabbitMQ.
    pub fn brokered(store: Arc<dyn Store>, publisher: amqp::Publisher) -> Arc<Self> {
        Self::with_dispatch(store, Dispatch::Broker(Box::new(publisher)))
    }

    fn with_dispatch(store: Arc<dyn Store>, dispatch: Dispatch) -> Arc<Self> {
        Arc::new(Tasks {
            store,
            runner: OnceLock::new(),
            dispatch,
            worker_name: format!("{}-{}", hostname(), std::process::id()),
            live: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Who runs the jobs (held weakly: the runner owns these tasks).
    pub fn attach(&self, runner: Weak<dyn JobRunner>) {
        let _ = self.runner.set(runner);
    }

    fn runner(&self) -> Option<Arc<dyn JobRunner>> {
        self.runner.get().and_then(Weak::upgrade)
    }

    pub fn is_brokered(&self) -> bool {
        matches!(self.dispatch, Dispatch::Broker(_))
    }

    /// `None` without a broker; else whether its connection is up.
    pub fn broker_connected(&self) -> Option<bool> {
        match &self.dispatch {
            Dispatch::Broker(p) => Some(p.connected()),
            Dispatch::Local { .. } => None,
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Shutdown: start no more tasks and wait until the running ones end,
    /// at most until `deadline`; then ask those still running to cancel
    /// (they stop at their next check and commit nothing) and give them
    /// `grace` to record it. Tasks that never started stay `waiting`: the
    /// next start marks them failed (in-process) or the broker redelivers
    /// them. Returns how many were canceled.
    pub async fn drain(&self, deadline: tokio::time::Instant, grace: Duration) -> usize {
        self.stopping.store(true, Ordering::Relaxed);
        let running = || self.live.lock().unwrap().len();
        while running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left: Vec<Arc<AtomicBool>> = self
            .live
            .lock()
            .unwrap()
            .values()
            .map(|(_, c)| c.clone())
            .collect();
        if left.is_empty() {
            return 0;
        }
        tracing::warn!(
            tasks = left.len(),
            "shutdown timeout: canceling the tasks still running"
        );
        for c in &left {
            c.store(true, Ordering::Relaxed);
        }
        let end = tokio::time::Instant::now() + grace;
        while running() > 0 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        left.len()
    }

    /// Mark failed the tasks that can never finish. In-process: every task a
    /// previous process left unfinished. With a broker (which redelivers
    /// unacknowledged tasks to other workers), only tasks bound to a process
    /// of this machine that is gone (streaming imports, see
    /// [`Tasks::run_here`]).
    pub async fn fail_abandoned(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for state in [TaskState::Waiting, TaskState::Running] {
            let q = TaskQuery {
                state: Some(state),
                // With a broker only streaming imports can be bound.
                kind: self
                    .is_brokered()
                    .then_some(wharf_store::db::TaskKind::Import),
                limit: 100_000,
                ..Default::default()
            };
            for mut t in self.store.list_tasks(&q).await? {
                if self.is_brokered() && !bound_to_a_process_that_is_gone(&t) {
                    continue;
                }
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

    /// A new task's record, stored as waiting; `worker` when it is bound to
    /// one from the start.
    async fn record(
        &self,
        id: TaskId,
        job: &Job,
        worker: Option<String>,
    ) -> Result<Task, wharf_store::db::StoreError> {
        let task = Task {
            id,
            kind: job.kind(),
            state: TaskState::Waiting,
            locks: job.locks(),
            worker,
            created_at: now(),
            started_at: None,
            finished_at: None,
            progress: Progress::default(),
            result: None,
            error: None,
            input: serde_json::to_value(job)
                .map_err(|e| wharf_store::db::StoreError::Backend(e.into()))?,
            cancel_requested: false,
            log: Vec::new(),
        };
        self.store.put_task(&task).await?;
        Ok(task)
    }

    /// Record a task and start it (here or through the broker).
    pub async fn submit(self: &Arc<Self>, job: Job) -> Result<Task, wharf_store::db::StoreError> {
        self.submit_as(TaskId::new(), job).await
    }

    /// [`Self::submit`] as task `id`, chosen beforehand (a schedule's run
    /// names its task when it is claimed).
    pub async fn submit_as(
        self: &Arc<Self>,
        id: TaskId,
        job: Job,
    ) -> Result<Task, wharf_store::db::StoreError> {
        let task = self.record(id, &job, None).await?;
        // The request that started it, in the task's log lines.
        let request_id = crate::request_context::current_id().unwrap_or_default();
        tracing::info!(task = %task.id, kind = %task.kind, request_id = %request_id, "task queued");
        let span = tracing::info_span!("task", id = %task.id, request_id = %request_id);
        match &self.dispatch {
            Dispatch::Broker(publisher) => {
                if let Err(e) = publisher.publish(&task.id).await {
                    let mut failed = task.clone();
                    failed.state = TaskState::Error;
                    failed.finished_at = Some(now());
                    failed.error = Some(TaskError {
                        message: format!("could not queue the task: {e:#}"),
                        cause: "broker".into(),
                    });
                    self.store.put_task(&failed).await?;
                    return Ok(failed);
                }
            }
            Dispatch::Local { workers, locks } => {
                // Queue on the lock mutexes now, in submission order.
                let waits = queue_on(locks, &task.locks);
                let (this, workers, t) = (self.clone(), workers.clone(), task.clone());
                // Its log lines name the request that started it, as the
                // lines written while it is queued do.
                let request = crate::request_context::current();
                self.runtime.spawn(crate::request_context::scope(
                    request,
                    async move {
                        let mut guards = Vec::new();
                        for w in waits {
                            guards.push(w.await);
                        }
                        let permit = workers
                            .acquire_owned()
                            .await
                            .expect("semaphore never closed");
                        if this.is_stopping() {
                            return; // Left waiting; see `drain`.
                        }
                        this.execute(t, |runner, ctx| runner.run(job, ctx)).await;
                        drop(permit);
                        drop(guards);
                    }
                    .instrument(span),
                ));
            }
        }
        Ok(task)
    }

    /// Record a task and run it here, now, whatever the dispatch, returning
    /// its final record: for work bound to this process, like a streaming
    /// import that reads the body of the request that started it. It still
    /// waits for earlier tasks sharing one of its locks, but not for a free
    /// worker: the client sending the body is what drives it.
    pub async fn run_here<F, Fut>(
        self: &Arc<Self>,
        job: Job,
        run: F,
    ) -> Result<Task, wharf_store::db::StoreError>
    where
        F: FnOnce(Arc<dyn JobRunner>, TaskContext) -> Fut,
        Fut: std::future::Future<Output = TaskResult>,
    {
        let task = self
            .record(TaskId::new(), &job, Some(self.worker_name.clone()))
            .await?;
        let id = task.id;
        let request_id = crate::request_context::current_id().unwrap_or_default();
        tracing::info!(task = %id, kind = %task.kind, request_id = %request_id, "task running here");
        let span = tracing::info_span!("task", id = %id, request_id = %request_id);
        async {
            let locked = async {
                let mut guards = Vec::new();
                match &self.dispatch {
                    Dispatch::Local { locks, .. } => {
                        for w in queue_on(locks, &task.locks) {
                            guards.push(w.await);
                        }
                    }
                    Dispatch::Broker(_) => self.wait_for_locks(&task).await,
                }
                guards
            };
            // A cancel while it waits ends it at once (the client is
            // waiting too); `execute` then records it canceled unrun.
            let guards = tokio::select! {
                guards = locked => Some(guards),
                () = cancel_requested(&*self.store, id) => None,
            };
            if self.is_stopping() {
                let _ = self.store.request_task_cancel(&id).await;
            }
            self.execute(task, run).await;
            drop(guards);
        }
        .instrument(span)
        .await;
        Ok(self.get(&id).await?.expect("the task was recorded above"))
    }

    /// Run a task here to its end and record the outcome.
    pub(crate) async fn execute<F, Fut>(self: &Arc<Self>, mut task: Task, run: F)
    where
        F: FnOnce(Arc<dyn JobRunner>, TaskContext) -> Fut,
        Fut: std::future::Future<Output = TaskResult>,
    {
        let Some(runner) = self.runner() else {
            tracing::error!(task = %task.id, "task runner not attached to the application");
            return;
        };
        // A cancel may have been asked while it waited.
        if let Ok(Some(stored)) = self.store.get_task(&task.id).await {
            task.cancel_requested |= stored.cancel_requested;
        }
        let cancel = Arc::new(AtomicBool::new(task.cancel_requested));
        task.state = TaskState::Running;
        task.started_at = Some(now());
        task.worker = Some(self.worker_name.clone());
        let record = Arc::new(Mutex::new(task.clone()));
        self.live
            .lock()
            .unwrap()
            .insert(task.id, (record.clone(), cancel.clone()));
        let _ = self.store.update_live_task(&task).await;
        crate::metrics::task_started(task.kind.as_str());
        let started = Instant::now();
        let result = if cancel.load(Ordering::Relaxed) {
            Err(TaskFailure::new("canceled before it started", "canceled"))
        } else {
            let ctx = TaskContext {
                id: task.id,
                cancel: cancel.clone(),
                progress: self.progress_sink(record.clone()),
                log: log_sink(record.clone()),
            };
            let watcher = self.watch_cancel(task.id, cancel.clone());
            let r = run(runner.clone(), ctx).await;
            watcher.abort();
            r
        };
        self.finish(&record, result, cancel.load(Ordering::Relaxed))
            .await;
        let state = record.lock().unwrap().state;
        crate::metrics::task_ended(task.kind.as_str(), state.as_str(), started.elapsed());
    }

    /// Progress from the job updates the live record and, at most every
    /// [`PERSIST_EVERY`], the stored one (so other processes see it).
    fn progress_sink(&self, record: Arc<Mutex<Task>>) -> Arc<dyn Fn(Progress) + Send + Sync> {
        let (store, last) = (self.store.clone(), Arc::new(Mutex::new(Instant::now())));
        let rt = tokio::runtime::Handle::current();
        Arc::new(move |p: Progress| {
            let snapshot = {
                let mut t = record.lock().unwrap();
                t.progress = p;
                let mut last = last.lock().unwrap();
                if last.elapsed() < PERSIST_EVERY {
                    return;
                }
                *last = Instant::now();
                t.clone()
            };
            let store = store.clone();
            rt.spawn(async move {
                // Conditional: a write that lands after the task ended is dropped.
                let _ = store.update_live_task(&snapshot).await;
            });
        })
    }

    /// A cancel may be asked through another process: look for it in the
    /// store while the task runs.
    fn watch_cancel(&self, id: TaskId, flag: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        tokio::spawn(async move {
            cancel_requested(&*store, id).await;
            flag.store(true, Ordering::Relaxed);
        })
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
        // The stored record may carry a cancel request made meanwhile.
        let mut stored = snapshot.clone();
        if let Ok(Some(t)) = self.store.get_task(&snapshot.id).await {
            stored.cancel_requested |= t.cancel_requested;
        }
        if let Err(e) = self.store.put_task(&stored).await {
            tracing::error!(task = %snapshot.id, "could not record the task's end: {e}");
        }
        tracing::info!(task = %snapshot.id, kind = %snapshot.kind, state = snapshot.state.as_str(), "task ended");
        self.live.lock().unwrap().remove(&snapshot.id);
        if let Some(runner) = self.runner() {
            runner.ended(snapshot).await;
        }
    }

    /// A task, with live progress if it is running here.
    pub async fn get(&self, id: &TaskId) -> Result<Option<Task>, wharf_store::db::StoreError> {
        if let Some((rec, _)) = self.live.lock().unwrap().get(id) {
            return Ok(Some(rec.lock().unwrap().clone()));
        }
        self.store.get_task(id).await
    }

    pub async fn list(&self, q: &TaskQuery) -> Result<Vec<Task>, wharf_store::db::StoreError> {
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
    /// Returns false when the task already ended.
    pub async fn cancel(&self, id: &TaskId) -> Result<bool, wharf_store::db::StoreError> {
        if let Some((_, flag)) = self.live.lock().unwrap().get(id) {
            flag.store(true, Ordering::Relaxed);
        }
        self.store.request_task_cancel(id).await
    }
}

/// In-process lock queues, one FIFO mutex per lock name.
type LockQueues = Mutex<HashMap<TaskLock, Arc<tokio::sync::Mutex<()>>>>;

/// Join the queues of `names` now (in sorted order, so two tasks never wait
/// for each other crosswise); await the returned guards in order.
fn queue_on(
    queues: &LockQueues,
    names: &[TaskLock],
) -> Vec<impl std::future::Future<Output = tokio::sync::OwnedMutexGuard<()>> + use<>> {
    let mut names = names.to_vec();
    names.sort();
    let mut queues = queues.lock().unwrap();
    names
        .into_iter()
        .map(|name| queues.entry(name).or_default().clone().lock_owned())
        .collect()
}

/// Resolves once a cancel of task `id` is recorded in the store (where a
/// cancel asked through any process lands).
async fn cancel_requested(store: &dyn Store, id: TaskId) {
    loop {
        tokio::time::sleep(PERSIST_EVERY).await;
        if let Ok(Some(t)) = store.get_task(&id).await
            && t.cancel_requested
        {
            return;
        }
    }
}

/// A task only its own process can run (a streaming import), whose process
/// no longer exists.
fn bound_to_a_process_that_is_gone(t: &Task) -> bool {
    match serde_json::from_value::<Job>(t.input.clone()) {
        Ok(Job::ImportStream { process, .. }) => process.is_gone(),
        _ => false,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Log lines go into the live record; the next progress write or the end
/// of the task stores them.
fn log_sink(record: Arc<Mutex<Task>>) -> Arc<dyn Fn(TaskLogLevel, String) + Send + Sync> {
    Arc::new(move |level, line| record.lock().unwrap().push_log(level, line))
}
