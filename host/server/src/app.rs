//! The server's shared state, built once at start.

use crate::config::ServeConfig;
use crate::tasks::Job;
use crate::tasks::{JobRunner, TaskContext, TaskResult, Tasks};
use crate::uploads::UploadDir;
use anyhow::Context as _;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use wharf_runtime::engine::{Limits, Runtime};
use wharf_runtime::host::HostEnv;
use wharf_runtime::outbound::OutboundPolicy;
use wharf_runtime::publications::PublicationMap;
use wharf_runtime::{LoadFailure, Plugins};
use wharf_store::blobs::BlobStore;
use wharf_store::db::Task;
use wharf_store::db::{DbLocation, Store};
use wharf_store::sessions::Sessions;

pub struct App {
    pub config: ServeConfig,
    pub store: Arc<dyn Store>,
    pub auth: Arc<crate::auth::Auth>,
    pub blobs: Arc<BlobStore>,
    pub plugins: Arc<Plugins>,
    pub publications: Arc<PublicationMap>,
    /// What each publication serves (the trust rule's check of plans).
    pub served: wharf_runtime::visibility::ServedSets,
    /// Registry plans given again without a plugin call.
    pub plans: crate::http::plan_cache::PlanCache,
    pub tasks: Arc<Tasks>,
    /// One publish on push at a time per repository on this node.
    pub push_publishes: crate::jobs::PublishLocks,
    /// Pull-through pulls: when each reference was last pulled.
    pub pulls: crate::pull_through::Pulls,
    /// Blobs being fetched from feeds on demand.
    pub fills: crate::on_demand::Fills,
    /// The feed transport of each remote, built once per version of it.
    pub transports: crate::remotes::Transports,
    pub events: Arc<crate::events::Events>,
    /// What outbound requests (feeds, token realms, webhooks) may reach.
    pub outbound: Arc<OutboundPolicy>,
    pub uploads: UploadDir,
    /// Streaming imports running on this node.
    pub import_slots: crate::import_slots::ImportSlots,
    pub plugin_failures: Mutex<Vec<LoadFailure>>,
    pub started: Instant,
    /// The main runtime: work that outlives its request (downloads, event
    /// deliveries, tasks) runs there, not on the connection's event loop.
    pub runtime: tokio::runtime::Handle,
}

impl App {
    pub async fn open(config: ServeConfig) -> anyhow::Result<Arc<App>> {
        let started = Instant::now();
        let data = &config.data_dir;
        // Private: the store, keys and uploads inside are for this user only.
        wharf_core::private_files::private_dir(data)
            .with_context(|| format!("creating data directory {}", data.display()))?;
        let db = DbLocation::or_default(config.db.as_ref(), data);
        let store: Arc<dyn Store> = db
            .open()
            .await
            .with_context(|| format!("opening the metadata store {db}"))?;
        tracing::info!(store = %db, "metadata store open");
        let auth = crate::auth::Auth::open(&config.auth, data, store.clone()).await?;
        let blobs = Arc::new(config.blobs.open(&data.join("blobs"))?);
        let sessions = Arc::new(Sessions::open_with(blobs.root(), blobs.objects_shared())?);
        let spool_dir = data.join("spool");
        std::fs::create_dir_all(&spool_dir)?;
        // The feed's position first: a change made while the pages are
        // read is taken in again from the feed. The pages are read while
        // the server starts and answers (see `PublicationMap::load`).
        let seq = store.publication_seq().await?;
        let publications = Arc::new(PublicationMap::loading(seq));
        tokio::spawn({
            let (publications, store) = (publications.clone(), store.clone());
            async move { publications.load(store.as_ref()).await }
        });
        let outbound = Arc::new(
            OutboundPolicy::new(config.allow_outbound.clone())
                .trusting(outbound_roots(config.outbound_ca_cert.as_deref())?),
        );
        if !outbound.allowed().is_empty() {
            let allowed: Vec<String> = outbound.allowed().iter().map(|c| c.to_string()).collect();
            tracing::info!(
                allowed = %allowed.join(","),
                "outbound requests may reach these internal addresses"
            );
        }
        let env = Arc::new(HostEnv {
            blobs: blobs.clone(),
            store: store.clone(),
            publications: publications.clone(),
            sessions,
            outbound: outbound.clone(),
            http: wharf_runtime::transport::FeedTransport::client_builder(&outbound).build()?,
            rt: tokio::runtime::Handle::current(),
            spool_dir,
            max_blob_size: config.max_blob_size,
            call_ended: crate::metrics::plugin_call,
        });
        let limits = Limits {
            memory_bytes: config.plugin_memory_mib << 20,
            call_timeout: Duration::from_millis(config.plugin_call_timeout_ms),
            ..Limits::default()
        };
        let mut runtime = Runtime::new(env, data.join("cache"), limits.clone())?;
        match std::env::current_exe() {
            Ok(exe) => runtime.compile_with(crate::plugins::compiler::child(exe, &limits)),
            Err(e) => {
                tracing::warn!("plugins are compiled in this process (cannot find its binary: {e})")
            }
        }
        let runtime = Arc::new(runtime);
        let plugins = Arc::new(Plugins::new(runtime));
        let plugin_dir = config.plugin_dir();
        // The binary's own plugins first, then the plugin directory's (which
        // may add or override them), then those installed through the API
        // (possibly upgrades).
        let mut failures = if config.builtin_plugins {
            tokio::task::block_in_place(|| crate::plugins::builtin::load(&plugins))
        } else {
            Vec::new()
        };
        failures.extend(tokio::task::block_in_place(|| {
            plugins.load_dir(&plugin_dir)
        })?);
        let installed = data.join("installed-plugins");
        std::fs::create_dir_all(&installed)?;
        failures.extend(tokio::task::block_in_place(|| {
            plugins.load_dir(&installed)
        })?);
        let tasks = match &config.broker {
            Some(url) => Tasks::brokered(
                store.clone(),
                crate::tasks::amqp::Publisher::connect(url, &config.broker_queue).await?,
            ),
            None => Tasks::local(store.clone(), config.workers),
        };
        if matches!(db, DbLocation::Mongo(_)) && config.broker.is_none() {
            // fail_abandoned below assumes this process is alone on its store.
            tracing::warn!(
                "running on a shared MongoDB store without --broker: tasks run in this process only, and \
                 unfinished tasks of other processes on this store are marked failed now; give every node \
                 and worker the same --broker (see docs/scaling.md)"
            );
        }
        let abandoned = tasks.fail_abandoned().await?;
        if abandoned > 0 {
            tracing::warn!(
                abandoned,
                "marked tasks of a previous run as failed (worker lost)"
            );
        }
        let uploads = UploadDir::open(&data.join("uploads"))?;
        let events =
            crate::events::Events::new(store.clone(), config.broker.clone(), outbound.clone())?;
        let import_slots = crate::import_slots::ImportSlots::new(
            config.max_stream_imports.into(),
            config.max_stream_imports_per_user.into(),
        );
        let app = Arc::new(App {
            import_slots,
            events,
            outbound,
            config,
            store,
            auth,
            blobs,
            plugins,
            publications,
            served: Default::default(),
            plans: Default::default(),
            push_publishes: Default::default(),
            pulls: Default::default(),
            fills: Default::default(),
            transports: Default::default(),
            tasks,
            uploads,
            plugin_failures: Mutex::new(failures),
            started,
            runtime: tokio::runtime::Handle::current(),
        });
        app.tasks
            .attach(Arc::downgrade(&app) as Weak<dyn JobRunner>);
        // Installs and removals made on other nodes while this one was down.
        crate::plugins::sync::reconcile(&app).await?;
        crate::plugins::sync::spawn(&app);
        crate::uploads::spawn_expiry(&app);
        Ok(app)
    }
}

/// The application runs the tasks' jobs: a job needs plugins, blobs and the
/// store, which the task scheduler does not know.
impl JobRunner for App {
    fn run(self: Arc<Self>, job: Job, ctx: TaskContext) -> BoxFuture<'static, TaskResult> {
        Box::pin(crate::jobs::run(self, job, ctx))
    }

    fn ended(self: Arc<Self>, task: Task) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            for e in crate::events::for_task(&task) {
                self.events.emit(e).await;
            }
        })
    }
}

/// The certificates of `--outbound-ca-cert`, if given; a file that is
/// missing or holds no certificate stops the start, saying which.
fn outbound_roots(file: Option<&std::path::Path>) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let what = || format!("--outbound-ca-cert {}", file.display());
    let pem = std::fs::read(file).with_context(|| format!("{}: cannot read it", what()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{}: not PEM certificates", what()))?;
    anyhow::ensure!(!roots.is_empty(), "{}: holds no certificate", what());
    tracing::info!(file = %file.display(), certificates = roots.len(), "outbound HTTPS trusts these CAs too");
    Ok(roots)
}
