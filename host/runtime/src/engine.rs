//! The wasmtime runtime that runs plugins.
//!
//! One [`Engine`] for the process, with the pooling allocator and epoch
//! interruption. Each loaded plugin keeps an `InstancePre` (linking done once)
//! and a pool of warm instances; a call takes an instance, arms its deadline,
//! runs, and returns it unless it trapped. Compiled components are cached on
//! disk keyed by the wasm's sha256 and the engine's compatibility hash.

use crate::admission::{Permit, Refused, Share, Shares};
use crate::bindings::{ContentPlugin, ContentPluginPre};
use crate::calls::Staged;
use crate::host::{CallScope, HostEnv, HostState, Interrupt, TaskCall};
use anyhow::Context as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wharf_core::digest::Digest;

/// The contract this host implements.
pub const CONTRACT_PACKAGE: &str = "wharf:plugin";
pub const CONTRACT_VERSION: (u64, u64, u64) = (0, 7, 2);

/// How often the epoch advances; the granularity of deadlines and cancel.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Warm instances kept per plugin (and [`Shares::IDLE`] over all plugins).
const MAX_IDLE: usize = 32;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory per instance.
    pub memory_bytes: usize,
    /// Deadline of `describe` and `resolve`.
    pub call_timeout: Duration,
    /// Deadline of upload, sync and publish.
    pub task_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            call_timeout: Duration::from_secs(2),
            task_timeout: Duration::from_secs(3600),
        }
    }
}

/// A failed plugin call. The message always names the plugin and the cause.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin} exceeded its {limit:?} deadline and was stopped")]
    Deadline { plugin: String, limit: Duration },
    #[error("plugin {plugin} call was canceled")]
    Canceled { plugin: String },
    #[error("plugin {plugin} ran out of memory (limit {limit_mib} MiB) and was stopped")]
    OutOfMemory { plugin: String, limit_mib: usize },
    #[error("plugin {plugin} crashed: {cause}")]
    Trap { plugin: String, cause: String },
    #[error("{0}")]
    Invalid(String),
    #[error("plugin {plugin}: {message}")]
    Host { plugin: String, message: String },
    #[error("plugin {plugin}: every instance for {share:?} is in use; try again in a moment")]
    Busy { plugin: String, share: Share },
    /// A backend the call needed did not answer (see
    /// [`HostState::unanswered`]): its answer is not used.
    #[error("{message}; try again in a moment")]
    Unavailable { plugin: String, message: String },
}

impl PluginError {
    /// A stable word for metrics and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::Deadline { .. } => "plugin-deadline",
            PluginError::Canceled { .. } => "canceled",
            PluginError::OutOfMemory { .. } => "plugin-out-of-memory",
            PluginError::Trap { .. } => "plugin-trap",
            PluginError::Invalid(_) => "plugin-invalid",
            PluginError::Host { .. } => "plugin-host",
            PluginError::Busy { .. } => "plugin-busy",
            PluginError::Unavailable { .. } => "backend-unavailable",
        }
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
    /// Compiles a component that is not in the cache into a file.
    compiler: Box<Compiler>,
    pub env: Arc<HostEnv>,
    pub limits: Limits,
    /// Who may take an instance of the pool now.
    pub shares: Shares,
    /// Warm instances kept over all plugins (at most [`Shares::IDLE`]).
    idle_total: AtomicUsize,
}

/// Compiles the component `wasm` into the file `out` (a compiled artifact
/// of [`precompile`]); the runtime then maps that file. In this process by
/// default; a server hands the work to a child process
/// ([`Runtime::compile_with`]), so that compiling a large component (a
/// Python interpreter) neither grows the server's memory nor takes the CPU
/// from its requests.
pub type Compiler = dyn Fn(&[u8], &Path) -> Result<(), CompileError> + Send + Sync;

/// Why a component could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The compiler failed (could not start, ran out of memory, ...).
    #[error("compiling the component failed: {0}")]
    Failed(String),
}

/// The engine settings of every runtime: a compiled artifact is usable only
/// by an engine of the same settings, in this process or another.
fn engine_config(limits: &Limits) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    let instances = Shares::POOL as u32;
    pool.total_component_instances(instances);
    pool.total_core_instances(4 * instances);
    pool.total_memories(instances);
    pool.total_tables(2 * instances);
    pool.max_memories_per_component(4);
    pool.max_tables_per_component(8);
    pool.max_component_instance_size(1 << 20);
    pool.max_core_instance_size(1 << 20);
    pool.max_memory_size(limits.memory_bytes);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Compile `wasm` for a runtime with `limits` into the file `out`: what a
/// [`Compiler`] does (in this process, or in a child compiling for a
/// server).
pub fn compile_to(limits: &Limits, wasm: &[u8], out: &Path) -> Result<(), CompileError> {
    let engine =
        Engine::new(&engine_config(limits)).map_err(|e| CompileError::Failed(format!("{e:#}")))?;
    let artifact = engine
        .precompile_component(wasm)
        .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
    std::fs::write(out, artifact)
        .map_err(|e| CompileError::Failed(format!("writing {}: {e}", out.display())))
}

/// What `load` measured, for the status endpoint and benchmarks.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LoadStats {
    pub from_cache: bool,
    pub duration: Duration,
}

impl Runtime {
    pub fn new(env: Arc<HostEnv>, cache_dir: PathBuf, limits: Limits) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&limits)).map_err(anyhow::Error::from)?;

        // The ticker only holds a weak reference, so a dropped engine stops it.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wharf-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from)?;
        ContentPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)?;
        std::fs::create_dir_all(&cache_dir)?;
        Ok(Runtime {
            engine,
            linker,
            cache_dir,
            compiler: Box::new({
                let limits = limits.clone();
                move |wasm, out| compile_to(&limits, wasm, out)
            }),
            env,
            limits,
            shares: Shares::new(),
            idle_total: AtomicUsize::new(0),
        })
    }

    fn cache_path(&self, wasm_digest: &Digest) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        self.cache_dir
            .join(format!("{}-{:016x}.cwasm", wasm_digest.hex(), h.finish()))
    }

    /// Compile (or load from cache), check the contract version, link, and
    /// ask the plugin to describe itself.
    pub fn load(self: &Arc<Self>, wasm: &[u8]) -> Result<(Arc<Plugin>, LoadStats), PluginError> {
        let start = Instant::now();
        let digest = Digest::of(wasm);
        let cached = self.cache_path(&digest);
        let (component, from_cache) = match cached.exists() {
            // SAFETY: the cache directory is written only by Wharf hosts (nodes
            // sharing a data directory included), from `Component::serialize`
            // of the same engine configuration (the file name carries the
            // engine's compatibility hash); a file is complete before it is
            // renamed into place and never written after.
            true => match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(c) => (c, true),
                Err(_) => (self.compile(wasm, &cached)?, false),
            },
            false => (self.compile(wasm, &cached)?, false),
        };
        check_contract(&component, &self.engine)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Invalid(format!("plugin cannot be linked: {e:#}")))?;
        let pre = ContentPluginPre::new(pre).map_err(|e| {
            PluginError::Invalid(format!(
                "plugin does not implement the content-plugin world: {e:#}"
            ))
        })?;
        let mut plugin = Plugin {
            name: "(loading)".into(),
            info: PluginInfo::default(),
            errors: crate::error_format::ErrorFormat::neutral(),
            naming: crate::naming::Naming::default(),
            wasm_digest: digest,
            load: LoadStats {
                from_cache,
                duration: Duration::ZERO,
            },
            content_types: Arc::from([]),
            pre,
            runtime: self.clone(),
            idle: Mutex::new(Vec::new()),
        };
        let info = plugin.call(CallScope::Describe, None, |p, s| {
            p.wharf_plugin_plugin().call_describe(s)
        })?;
        plugin.name = info.name.clone().into();
        plugin.info = PluginInfo {
            name: info.name,
            version: info.version,
            content_types: info
                .content_types
                .into_iter()
                .map(|c| (c.name, c.description))
                .collect(),
            routes: info.routes,
        };
        plugin.validate_info()?;
        plugin.errors = crate::error_format::ErrorFormat::from_wire(info.errors).map_err(|e| {
            PluginError::Invalid(format!(
                "plugin {} declares an error format the host cannot use: {e}",
                plugin.info.name
            ))
        })?;
        plugin.naming = crate::naming::Naming::from_wire(info.naming).map_err(|e| {
            PluginError::Invalid(format!(
                "plugin {} declares naming rules the host cannot use: {e}",
                plugin.info.name
            ))
        })?;
        plugin.content_types = plugin
            .info
            .content_types
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        // The describe instance was created under a placeholder name.
        plugin.idle.get_mut().unwrap().clear();
        Ok((
            Arc::new(plugin),
            LoadStats {
                from_cache,
                duration: start.elapsed(),
            },
        ))
    }

    /// Compile components with `compiler` from now on (see [`Compiler`]).
    pub fn compile_with(&mut self, compiler: Box<Compiler>) {
        self.compiler = compiler;
    }

    /// Compile `wasm` into the cache file `cached`, then map it.
    fn compile(&self, wasm: &[u8], cached: &Path) -> Result<Component, PluginError> {
        // Per process and call: nodes sharing the data directory (and
        // installs on one node) may compile the same plugin at once, and
        // must not write into one another's file.
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let tmp = cached.with_extension(format!("tmp-{}-{call}", std::process::id()));
        let compiled = (self.compiler)(wasm, &tmp).and_then(|()| {
            std::fs::rename(&tmp, cached)
                .map_err(|e| CompileError::Failed(format!("cannot keep {}: {e}", cached.display())))
        });
        if let Err(e) = compiled {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e {
                CompileError::Invalid(_) => PluginError::Invalid(e.to_string()),
                CompileError::Failed(_) => PluginError::Host {
                    plugin: "(loading)".into(),
                    message: e.to_string(),
                },
            });
        }
        // SAFETY: as in `load`: written by a compiler of this engine's
        // settings, complete before it was renamed into place.
        unsafe { Component::deserialize_file(&self.engine, cached) }.map_err(|e| {
            PluginError::Host {
                plugin: "(loading)".into(),
                message: format!("the compiled component cannot be loaded: {e:#}"),
            }
        })
    }

    fn new_store(&self, name: Arc<str>, content_types: Arc<[String]>) -> Store<HostState> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(
                name,
                content_types,
                self.env.clone(),
                self.limits.memory_bytes,
            ),
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|mut ctx| match ctx.data_mut().check_interrupt() {
            Some(_) => Err(wasmtime::Trap::Interrupt.into()),
            None => Ok(UpdateDeadline::Continue(1)),
        });
        store
    }
}

/// Refuse a component built against another major version of the contract
/// before linking, so the error says why instead of "import not found".
fn check_contract(component: &Component, engine: &Engine) -> Result<(), PluginError> {
    let ty = component.component_type();
    let mut found = None;
    let prefix = format!("{CONTRACT_PACKAGE}/plugin@");
    for (name, _) in ty.exports(engine) {
        if let Some(rest) = name.strip_prefix(&prefix) {
            found = Some(rest.to_string());
        }
    }
    let (want_major, want_minor, _) = CONTRACT_VERSION;
    let want = format!("{want_major}.{want_minor}.x");
    let Some(version) = found else {
        return Err(PluginError::Invalid(format!(
            "not a wharf content plugin: it exports no {CONTRACT_PACKAGE}/plugin interface (this host speaks {CONTRACT_PACKAGE}@{want})"
        )));
    };
    let parts: Vec<u64> = version
        .split(['.', '-', '+'])
        .take(3)
        .filter_map(|p| p.parse().ok())
        .collect();
    let compatible = match parts.as_slice() {
        // Semver: below 1.0 the minor version is the breaking one.
        [0, minor, ..] => want_major == 0 && *minor == want_minor,
        [major, ..] => *major == want_major,
        _ => false,
    };
    if !compatible {
        return Err(PluginError::Invalid(format!(
            "incompatible plugin: built against {CONTRACT_PACKAGE}@{version}, but this host speaks {CONTRACT_PACKAGE}@{want}; rebuild the plugin with a wharf-sdk for {want}"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// (name, description)
    pub content_types: Vec<(String, String)>,
    pub routes: Vec<String>,
}

struct Warm {
    store: Store<HostState>,
    bindings: ContentPlugin,
}

pub struct Plugin {
    pub name: Arc<str>,
    pub info: PluginInfo,
    /// How errors on the plugin's routes look (checked at load).
    pub errors: crate::error_format::ErrorFormat,
    /// How its routes name repositories (checked at load).
    pub naming: crate::naming::Naming,
    pub wasm_digest: Digest,
    /// The content types of `info`, shared with every instance.
    content_types: Arc<[String]>,
    /// How this plugin was loaded (compiled now, or from the cache).
    pub load: LoadStats,
    pre: ContentPluginPre<HostState>,
    runtime: Arc<Runtime>,
    idle: Mutex<Vec<Warm>>,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let kept = self.idle.get_mut().map(|idle| idle.len()).unwrap_or(0);
        self.runtime.idle_total.fetch_sub(kept, Ordering::Relaxed);
    }
}

impl Plugin {
    fn validate_info(&self) -> Result<(), PluginError> {
        let i = &self.info;
        let word = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !word(&i.name) || i.content_types.iter().any(|(n, _)| !word(n)) {
            return Err(PluginError::Invalid(format!(
                "plugin {:?} describes itself with invalid names: plugin and content-type names must be 1-64 letters, digits, '-' or '_'",
                i.name
            )));
        }
        for r in &i.routes {
            if !r.starts_with('/')
                || !r.ends_with('/')
                || r.contains("..")
                || r == "/"
                || r.starts_with("/api/")
            {
                return Err(PluginError::Invalid(format!(
                    "plugin {} claims route {r:?}: routes must be absolute prefixes ending in '/', other than '/' and '/api/'",
                    i.name
                )));
            }
        }
        Ok(())
    }

    /// A place for one call in `share` ([`Shares::admit`]).
    fn admit(&self, share: Share, cancel: Option<&AtomicBool>) -> Result<Permit<'_>, PluginError> {
        self.runtime.shares.admit(share, cancel).map_err(|refused| {
            let plugin = self.name.to_string();
            match refused {
                Refused::Busy => PluginError::Busy { plugin, share },
                Refused::Canceled => PluginError::Canceled { plugin },
            }
        })
    }

    /// Run `f` for a request on a warm instance under `scope`. The instance
    /// goes back to the pool unless the call trapped or was interrupted.
    pub(crate) fn call<R>(
        &self,
        scope: CallScope,
        cancel: Option<Arc<AtomicBool>>,
        f: impl FnOnce(&ContentPlugin, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.call_in(Share::Requests, scope, cancel, f)
    }

    /// [`Plugin::call`] drawing an instance from `share` (waiting for one
    /// as [`Shares::admit`] does).
    fn call_in<R>(
        &self,
        share: Share,
        scope: CallScope,
        cancel: Option<Arc<AtomicBool>>,
        f: impl FnOnce(&ContentPlugin, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let rt = &self.runtime;
        let _permit = self.admit(share, cancel.as_deref())?;
        let timeout = match scope {
            CallScope::Task(_) => rt.limits.task_timeout,
            _ => rt.limits.call_timeout,
        };
        let arm = |store: &mut Store<HostState>, scope, cancel| {
            let data = store.data_mut();
            data.scope = scope;
            data.deadline = Instant::now() + timeout;
            data.cancel = cancel;
            data.interrupted = None;
            data.bytes_stored = 0;
            data.unanswered = None;
            store.set_epoch_deadline(1);
        };
        let pooled = self.idle.lock().unwrap().pop();
        if pooled.is_some() {
            rt.idle_total.fetch_sub(1, Ordering::Relaxed);
        }
        let mut warm = match pooled {
            Some(mut w) => {
                arm(&mut w.store, scope, cancel);
                w
            }
            None => {
                // Instantiation runs guest code too: arm the deadline first.
                let mut store = rt.new_store(self.name.clone(), self.content_types.clone());
                arm(&mut store, scope, cancel);
                let bindings = self
                    .pre
                    .instantiate(&mut store)
                    .map_err(|e| self.classify(&mut store, e))?;
                Warm { store, bindings }
            }
        };
        let result = f(&warm.bindings, &mut warm.store);
        match result {
            Ok(r) => {
                let data = warm.store.data_mut();
                let answer = match data.unanswered.take() {
                    Some(message) => Err(PluginError::Unavailable {
                        plugin: self.name.to_string(),
                        message,
                    }),
                    None => Ok(r),
                };
                (rt.env.call_ended)(
                    &self.name,
                    answer.as_ref().map_or_else(|e| e.code(), |_| "ok"),
                );
                data.scope = CallScope::Describe;
                data.cancel = None;
                let mut idle = self.idle.lock().unwrap();
                if idle.len() < MAX_IDLE
                    && rt
                        .idle_total
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            (n < Shares::IDLE).then_some(n + 1)
                        })
                        .is_ok()
                {
                    idle.push(warm);
                }
                answer
            }
            Err(e) => Err(self.classify(&mut warm.store, e)),
        }
    }

    /// Run `f` on a new instance that is thrown away afterwards (benchmarks
    /// compare this with the warm pool).
    pub(crate) fn call_fresh<R>(
        &self,
        scope: CallScope,
        f: impl FnOnce(&ContentPlugin, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let _permit = self.admit(Share::Requests, None)?;
        let mut store = self
            .runtime
            .new_store(self.name.clone(), self.content_types.clone());
        store.data_mut().scope = scope;
        store.data_mut().deadline = Instant::now() + self.runtime.limits.call_timeout;
        store.set_epoch_deadline(1);
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.classify(&mut store, e))?;
        f(&bindings, &mut store).map_err(|e| self.classify(&mut store, e))
    }

    /// Like [`Plugin::call`] with an instance of `share` under the task
    /// scope `call`, handing back that scope (staged changes) with the
    /// result.
    pub(crate) fn call_task<R>(
        &self,
        share: Share,
        call: TaskCall,
        cancel: Option<Arc<AtomicBool>>,
        f: impl FnOnce(&ContentPlugin, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<Staged<R>, PluginError> {
        let (answer, scope, bytes_stored) =
            self.call_in(share, CallScope::Task(Box::new(call)), cancel, |p, s| {
                let r = f(p, s)?;
                let data = s.data_mut();
                let scope = std::mem::replace(&mut data.scope, CallScope::Describe);
                Ok((r, scope, data.bytes_stored))
            })?;
        // The host imports never replace the scope a call was armed with.
        match scope {
            CallScope::Task(call) => Ok(Staged {
                answer,
                call,
                bytes_stored,
            }),
            _ => Err(PluginError::Host {
                plugin: self.name.to_string(),
                message: "the task call lost its scope".into(),
            }),
        }
    }

    fn classify(&self, store: &mut Store<HostState>, e: wasmtime::Error) -> PluginError {
        let error = self.classify_inner(store, e);
        (self.runtime.env.call_ended)(&self.name, error.code());
        error
    }

    fn classify_inner(&self, store: &mut Store<HostState>, e: wasmtime::Error) -> PluginError {
        let plugin = self.name.to_string();
        let data = store.data_mut();
        match data.interrupted {
            Some(Interrupt::Canceled) => return PluginError::Canceled { plugin },
            Some(Interrupt::Deadline) => {
                let limit = match data.scope {
                    CallScope::Task(_) => self.runtime.limits.task_timeout,
                    _ => self.runtime.limits.call_timeout,
                };
                return PluginError::Deadline { plugin, limit };
            }
            None => {}
        }
        if data.limits.hit {
            return PluginError::OutOfMemory {
                plugin,
                limit_mib: data.limits.max_bytes >> 20,
            };
        }
        let stderr = data.stderr.take();
        let trap = e.downcast_ref::<wasmtime::Trap>().map(|t| t.to_string());
        let mut cause = match (trap, stderr.is_empty()) {
            (Some(t), false) => format!("{t}: {}", last_lines(&stderr, 3)),
            (Some(t), true) => t,
            (None, _) => format!("{e:#}"),
        };
        cause.truncate(2000);
        PluginError::Trap { plugin, cause }
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// Read a plugin file, with a clear error.
pub fn read_wasm(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_version_is_the_wit_packages() {
        let wit = include_str!("../../../wit/plugin.wit");
        let (major, minor, patch) = CONTRACT_VERSION;
        let line = format!("package {CONTRACT_PACKAGE}@{major}.{minor}.{patch};");
        assert!(
            wit.lines().any(|l| l.trim() == line),
            "wit/plugin.wit does not declare {line}"
        );
    }
}
