//! Server settings.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on (admin API and registry).
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where blobs, the metadata store, uploads and the plugin cache live.
    #[arg(long, env = "WHARF_DATA_DIR", default_value = "./wharf-data")]
    pub data_dir: PathBuf,
    /// The metadata store: `mongodb://HOST:PORT/DATABASE` (shared by every
    /// node and worker; see docs/scaling.md) or `sqlite:PATH`
    /// [default: the embedded file <data-dir>/wharf.db].
    #[arg(long, env = "WHARF_DB", value_name = "URL")]
    pub db: Option<crate::db::DbLocation>,
    /// Directory of built-in plugins (`*.wasm`) loaded at start
    /// [default: <data-dir>/plugins].
    #[arg(long, env = "WHARF_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Task workers in this process. With `--broker` they take tasks from
    /// RabbitMQ like `wharf worker` does; 0 makes an API-only node.
    #[arg(long, env = "WHARF_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// RabbitMQ URL (e.g. amqp://guest:guest@127.0.0.1:5672/%2f): tasks go to
    /// its `wharf.tasks` queue for any worker to run, instead of in-process.
    #[arg(long, env = "WHARF_BROKER")]
    pub broker: Option<String>,
    /// The durable queue tasks go through; every server and worker of one
    /// installation must use the same name.
    #[arg(long, env = "WHARF_BROKER_QUEUE", default_value = "wharf.tasks")]
    pub broker_queue: String,
    /// Linear memory limit per plugin instance, in MiB.
    #[arg(long, env = "WHARF_PLUGIN_MEMORY_MIB", default_value_t = 256)]
    pub plugin_memory_mib: usize,
    /// Deadline of a registry request's plugin call, in milliseconds.
    #[arg(long, env = "WHARF_PLUGIN_CALL_TIMEOUT_MS", default_value_t = 2000)]
    pub plugin_call_timeout_ms: u64,
    /// Access control: tokens, LDAP, the registry token realm.
    #[command(flatten)]
    pub auth: crate::auth::config::AuthConfig,
}

impl ServeConfig {
    pub fn plugin_dir(&self) -> PathBuf {
        self.plugin_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }
}
