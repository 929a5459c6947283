//! Tasks through RabbitMQ: the server publishes each task's id to the durable
//! queue `wharf.tasks` (`--broker-queue`); workers consume with prefetch 1 and acknowledge only
//! after the task ended, so a worker killed mid-task leaves its message
//! unacknowledged and RabbitMQ hands it to another worker, which runs the task
//! again from the start (it committed nothing). Tasks that share a lock wait
//! for every earlier unfinished task holding it, read from the shared store.

use super::Job;
use super::Tasks;
use anyhow::Context as _;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::sync::Arc;
use std::time::Duration;
use wharf_core::ids::TaskId;
use wharf_store::db::{TaskQuery, TaskState};

/// How often a task waiting for a lock held in another process looks again.
const LOCK_POLL: Duration = Duration::from_millis(50);

async fn channel(url: &str, queue: &str) -> anyhow::Result<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| {
            format!("cannot reach the broker at {url}; is RabbitMQ running? (--broker)")
        })?;
    let ch = conn.create_channel().await?;
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    Ok((conn, ch))
}

/// Publishes task ids, persistently, with publisher confirms.
pub struct Publisher {
    _conn: Connection,
    channel: Channel,
    queue: String,
}

impl Publisher {
    pub async fn connect(url: &str, queue: &str) -> anyhow::Result<Self> {
        let (conn, channel) = channel(url, queue).await?;
        channel.confirm_select(Default::default()).await?;
        Ok(Publisher {
            _conn: conn,
            channel,
            queue: queue.to_string(),
        })
    }

    /// Whether the connection to the broker is up (for `/readyz`).
    pub fn connected(&self) -> bool {
        self._conn.status().connected() && self.channel.status().connected()
    }

    pub async fn publish(&self, id: &TaskId) -> anyhow::Result<()> {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                id.to_string().as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await?;
        anyhow::ensure!(!confirm.is_nack(), "the broker refused task {id}");
        Ok(())
    }
}

/// Take tasks from the queue with `workers` consumers until the connection
/// drops.
pub async fn consume(
    tasks: Arc<Tasks>,
    url: &str,
    queue: &str,
    workers: usize,
) -> anyhow::Result<()> {
    let mut handles = Vec::new();
    for n in 0..workers.max(1) {
        let (conn, ch) = channel(url, queue).await?;
        ch.basic_qos(1, BasicQosOptions::default()).await?;
        let consumer = ch
            .basic_consume(
                queue.into(),
                format!("{}-{n}", tasks.worker_name).as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let tasks = tasks.clone();
        handles.push(tokio::spawn(async move {
            let _conn = conn;
            let mut consumer = consumer;
            while let Some(delivery) = consumer.next().await {
                // Shutting down: leave it unacknowledged, the broker hands it
                // to another worker once this connection closes.
                if tasks.is_stopping() {
                    break;
                }
                let delivery = match delivery {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!("broker: {e}");
                        break;
                    }
                };
                let id = std::str::from_utf8(&delivery.data)
                    .ok()
                    .and_then(|s| s.parse::<TaskId>().ok());
                match id {
                    Some(id) => tasks.run_delivered(id).await,
                    None => tracing::error!(
                        "broker delivered a message that is not a task id; dropping it"
                    ),
                }
                if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                    tracing::error!("broker: could not acknowledge: {e}");
                    break;
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    anyhow::bail!("lost the connection to the broker at {url}")
}

impl Tasks {
    /// Run a task taken from the queue, after every earlier unfinished task
    /// that shares one of its locks.
    async fn run_delivered(self: &Arc<Self>, id: TaskId) {
        let task = match self.store.get_task(&id).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return tracing::warn!(task = %id, "queued task not found in the store; dropping it");
            }
            Err(e) => return tracing::error!(task = %id, "cannot read queued task: {e}"),
        };
        if task.state.is_final() {
            return;
        }
        if task.state == TaskState::Running {
            tracing::warn!(task = %id, worker = ?task.worker, "task redelivered: its worker was lost; running it again");
        }
        let job: Job = match serde_json::from_value(task.input.clone()) {
            Ok(j) => j,
            Err(e) => {
                return tracing::error!(task = %id, "task input is not a job this worker knows: {e}");
            }
        };
        self.wait_for_locks(&task).await;
        self.execute(task, |runner, ctx| runner.run(job, ctx)).await;
    }

    /// Wait until no earlier unfinished task shares a lock with `task`.
    pub(super) async fn wait_for_locks(&self, task: &wharf_store::db::Task) {
        loop {
            match self.blocked_by(task).await {
                Ok(None) => break,
                Ok(Some(other)) => {
                    tracing::debug!(task = %task.id, %other, "waiting for an earlier task on the same resource")
                }
                Err(e) => tracing::warn!(task = %task.id, "cannot check task locks: {e}"),
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// An earlier unfinished task sharing a lock with `task`, if any.
    async fn blocked_by(
        &self,
        task: &wharf_store::db::Task,
    ) -> Result<Option<TaskId>, wharf_store::db::StoreError> {
        for lock in &task.locks {
            // Waiting before running: a task only ever moves waiting ->
            // running -> ended, so this order cannot miss one that starts
            // between the two queries (the other order could, and then two
            // workers ran tasks of one repository at once).
            for state in [TaskState::Waiting, TaskState::Running] {
                let q = TaskQuery {
                    state: Some(state),
                    lock: Some(lock.clone()),
                    limit: 10_000,
                    ..Default::default()
                };
                // Task ids are UUIDv7: their order is their submission order.
                if let Some(t) = self
                    .store
                    .list_tasks(&q)
                    .await?
                    .into_iter()
                    .find(|t| t.id < task.id)
                {
                    return Ok(Some(t.id));
                }
            }
        }
        Ok(None)
    }
}
