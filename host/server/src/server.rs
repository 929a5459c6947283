//! `wharf serve`: open the data directory, load plugins, listen; on SIGTERM
//! or Ctrl-C stop gracefully within `--shutdown-timeout`.

use crate::app::App;
use crate::config::ServeConfig;
use crate::event_loops::EventLoops;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// After the shutdown timeout, how long canceled tasks get to record it.
const CANCEL_GRACE: Duration = Duration::from_secs(3);

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    crate::notify::status("starting: opening the store, loading the plugins");
    // Check the listener layout before the (slower) start of everything else.
    let specs = crate::listeners::plan(&config)?;
    let app = App::open(config).await?;
    let bound = crate::listeners::bind(&app.config, specs).await?;
    crate::tls::watch(bound.iter().filter_map(|b| b.cert().cloned()).collect())?;
    let plugins: Vec<String> = app
        .plugins
        .list()
        .iter()
        .map(|p| format!("{}@{}", p.info.name, p.info.version))
        .collect();
    let listeners: Vec<String> = bound
        .iter()
        .map(|b| {
            let scheme = if b.cert().is_some() { "https" } else { "http" };
            format!("{} {scheme}://{}", b.spec.side.as_str(), b.spec.addr)
        })
        .collect();
    tracing::info!(
        listeners = %listeners.join(", "),
        plugins = %plugins.join(","),
        ready_ms = app.started.elapsed().as_secs_f64() * 1000.0,
        "wharf is ready"
    );
    if let Some(url) = app.config.broker.clone()
        && app.config.workers > 0
    {
        let (tasks, workers, queue) = (
            app.tasks.clone(),
            app.config.workers,
            app.config.broker_queue.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = crate::tasks::amqp::consume(tasks, &url, &queue, workers).await {
                tracing::error!("task workers stopped: {e:#}");
            }
        });
    }
    if app.tasks.is_brokered()
        || matches!(app.config.db, Some(wharf_store::db::DbLocation::Mongo(_)))
    {
        // Publishes run in other processes (workers, other nodes): follow
        // the shared store's publication feed.
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if let Err(e) = follow_publications(&app).await {
                    tracing::warn!("cannot follow the publications: {e}");
                }
            }
        });
    }
    // Every node looks for due schedules; each run is claimed by one.
    crate::schedules::spawn(app.clone());
    let stop = CancellationToken::new();
    let loops = Arc::new(EventLoops::start(connection_threads(&app.config))?);
    let mut servers = tokio::task::JoinSet::new();
    for b in bound {
        let router = crate::http::router(app.clone(), b.spec.side);
        servers.spawn(crate::listeners::serve(
            b,
            router,
            loops.clone(),
            stop.clone(),
        ));
    }
    let shutdown = shutdown_signal();
    // Every listener is bound (the kernel queues connections from here on)
    // and its accept loop spawned: a service manager may send traffic.
    crate::notify::ready(&format!("serving: {}", listeners.join(", ")));
    // A listener that fails ends the server; a signal starts the graceful stop.
    tokio::select! {
        r = servers.join_next() => {
            let r = r.expect("at least one listener");
            return r.context("listener task panicked")?.context("a listener stopped");
        }
        _ = shutdown => {}
    }
    let timeout = app.config.shutdown_timeout;
    tracing::info!(
        ?timeout,
        "shutting down: no new connections or tasks; waiting for requests and running tasks"
    );
    crate::health::mark_stopping();
    // Ask for the whole graceful stop, whatever TimeoutStopSec= says; the
    // runtime's own shutdown after `serve` takes up to a second more.
    crate::notify::stopping(
        &format!(
            "stopping: waiting up to {} for requests and running tasks",
            humantime::format_duration(timeout)
        ),
        timeout + CANCEL_GRACE + Duration::from_secs(5),
    );
    stop.cancel();
    let deadline = tokio::time::Instant::now() + timeout;
    let requests = async {
        while let Some(r) = servers.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!("{e:#}");
            }
        }
    };
    let (finished, canceled) = tokio::join!(
        tokio::time::timeout_at(deadline, requests),
        app.tasks.drain(deadline, CANCEL_GRACE)
    );
    if finished.is_err() {
        tracing::warn!(
            ?timeout,
            "requests still in flight after the shutdown timeout: closing their connections"
        );
    }
    tracing::info!(canceled_tasks = canceled, "stopped");
    Ok(())
}

/// `--connection-threads`, else one per core.
fn connection_threads(config: &ServeConfig) -> usize {
    config.connection_threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    )
}

/// Changes read from the publication feed at a time.
const FEED_PAGE: u32 = 1000;

/// Bring this node's publications up to the store's: an idle poll is one
/// indexed read that finds nothing, and each change moves one entry,
/// whatever the number of publications.
async fn follow_publications(app: &App) -> wharf_store::db::StoreResult<()> {
    // From where the start-up load began, once it is done.
    let mut after = app.publications.whole().await.seq();
    loop {
        let changes = app.store.publication_changes(after, FEED_PAGE).await?;
        let Some(last) = changes.last() else {
            return Ok(());
        };
        // Repositories other nodes made or changed: read their protection
        // before serving them (until then a new one counts as protected).
        app.auth
            .protection
            .follow(app.store.as_ref(), &app.publications, &changes)
            .await?;
        for c in &changes {
            app.publications.apply(c);
        }
        // What this node serves of them moves now, not on a request.
        for p in changes.iter().filter_map(|c| c.publication.as_ref()) {
            crate::jobs::advance_served(app, p).await;
        }
        after = last.seq;
        if changes.len() < FEED_PAGE as usize {
            return Ok(());
        }
    }
}

/// SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled: call it before telling a
/// service manager READY, or a SIGTERM sent right after READY would meet
/// the default action and kill the process without its graceful stop.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
    }
}

/// `wharf worker`: run tasks from RabbitMQ against the shared store and blob
/// directory, without serving HTTP.
pub async fn worker(config: ServeConfig) -> anyhow::Result<()> {
    let url = config
        .broker
        .clone()
        .context("wharf worker needs --broker (or WHARF_BROKER)")?;
    let workers = config.workers.max(1);
    crate::notify::status("starting: opening the store, loading the plugins");
    let app = App::open(config).await?;
    tracing::info!(%url, workers, "wharf worker is taking tasks");
    let shutdown = shutdown_signal();
    // `App::open` connected to the broker; the consumers start at once.
    crate::notify::ready(&format!(
        "taking tasks from the queue {} ({workers} at a time)",
        app.config.broker_queue
    ));
    tokio::select! {
        r = crate::tasks::amqp::consume(app.tasks.clone(), &url, &app.config.broker_queue, workers) => r,
        _ = shutdown => {
            crate::notify::stopping("stopping: taking no more tasks", Duration::from_secs(10));
            Ok(())
        }
    }
}
