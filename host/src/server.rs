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
