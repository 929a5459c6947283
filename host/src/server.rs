//! `wharf serve`: open the data directory, load plugins, listen.

use crate::app::App;
use crate::config::ServeConfig;
use anyhow::Context as _;
use axum::serve::ListenerExt as _;

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let listen = config.listen;
    let app = App::open(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let plugins: Vec<String> = app
        .plugins
        .list()
        .iter()
        .map(|p| format!("{}@{}", p.info.name, p.info.version))
        .collect();
    tracing::info!(
        %listen,
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
    if app.tasks.is_brokered() || matches!(app.config.db, Some(crate::db::DbLocation::Mongo(_))) {
        // Publishes run in other processes (workers, other nodes): follow
        // the shared store.
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                match app.store.list_publications().await {
                    Ok(p) => app.publications.replace_all(p),
                    Err(e) => tracing::warn!("cannot refresh publications: {e}"),
                }
            }
        });
    }
    let router = crate::http::router(app);
    // Small responses (manifests, tag lists) must not wait for Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// `wharf worker`: run tasks from RabbitMQ against the shared store and blob
/// directory, without serving HTTP.
pub async fn worker(config: ServeConfig) -> anyhow::Result<()> {
    let url = config
        .broker
        .clone()
        .context("wharf worker needs --broker (or WHARF_BROKER)")?;
    let workers = config.workers.max(1);
    let app = App::open(config).await?;
    tracing::info!(%url, workers, "wharf worker is taking tasks");
    tokio::select! {
        r = crate::tasks::amqp::consume(app.tasks.clone(), &url, &app.config.broker_queue, workers) => r,
        _ = shutdown_signal() => Ok(()),
    }
}
