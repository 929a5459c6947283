//! Server settings: one [`ServeConfig`] from, in order of precedence, flags,
//! `WHARF_*` environment variables, the TOML config file (`--config` /
//! `WHARF_CONFIG`) and built-in defaults.
//!
//! The file is layered in as clap *defaults* (see [`with_file_defaults`]), so
//! clap's own precedence (command line > environment > default) gives
//! "flags > env > file > defaults" with one parser and one set of error
//! messages. `docs/configuration.md` lists every setting.

use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wharf_store::blobs::BlobStore;
use wharf_store::blobs::objects::{ObjectHome, ObjectLocation, S3Access};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// TOML file with any of these settings (flags and environment variables
    /// override it); see docs/configuration.md.
    #[arg(long, env = "WHARF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on: the admin API and the registry, unless
    /// --admin-listen / --registry-listen give either its own.
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the admin API (/api/v1) alone [default: --listen].
    #[arg(long, env = "WHARF_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Address of the registry side (/v2/ and other plugin routes) alone
    /// [default: --listen].
    #[arg(long, env = "WHARF_REGISTRY_LISTEN")]
    pub registry_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: TlsConfig,
    /// Connection limits and timeouts of every listener (docs/configuration.md).
    #[command(flatten)]
    pub connections: crate::connections::Limits,
    /// Threads that serve connections, each with its own event loop; a
    /// connection stays on the one it starts on [default: one per core].
    #[arg(long, env = "WHARF_CONNECTION_THREADS",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub connection_threads: Option<u16>,
    /// Log lines as human-readable `text` or one JSON object per line.
    #[arg(long, env = "WHARF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// On SIGTERM or Ctrl-C: how long in-flight requests and running tasks
    /// get to finish before the server exits anyway, e.g. `30s`, `2m`.
    #[arg(long, env = "WHARF_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub shutdown_timeout: Duration,
    /// Uploads (`/api/v1/uploads`) and registry upload sessions nobody has
    /// written to for this long are removed, e.g. `24h`, `90m`.
    #[arg(long, env = "WHARF_UPLOAD_EXPIRY", default_value = "24h", value_parser = parse_positive_duration)]
    pub upload_expiry: Duration,
    /// Where blobs, the metadata store, uploads and the plugin cache live.
    #[arg(long, env = "WHARF_DATA_DIR", default_value = "./wharf-data")]
    pub data_dir: PathBuf,
    /// The metadata store: `mongodb://HOST:PORT/DATABASE` (shared by every
    /// node and worker; see docs/scaling.md) or `sqlite:PATH`
    /// [default: the embedded file <data-dir>/wharf.db].
    #[arg(long, env = "WHARF_DB", value_name = "URL")]
    pub db: Option<wharf_store::db::DbLocation>,
    /// Directory of plugins (`*.wasm`) loaded at start, after those built
    /// into the binary: it adds plugins, or overrides a built-in one of the
    /// same name [default: <data-dir>/plugins].
    #[arg(long, env = "WHARF_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Whether to load the plugins built into the binary (docker, file);
    /// `false` loads only --plugin-dir's and those installed through the API.
    #[arg(long, env = "WHARF_BUILTIN_PLUGINS", value_name = "BOOL", default_value_t = true,
        action = clap::ArgAction::Set)]
    pub builtin_plugins: bool,
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
    /// Internal address blocks (e.g. `10.0.0.0/8,127.0.0.1/32`) that
    /// outbound requests — feeds, token realms, redirects, webhooks — may
    /// reach. Loopback, link-local, private, shared, unique-local, multicast
    /// and broadcast addresses outside them are refused (docs/access.md).
    #[arg(long, env = "WHARF_ALLOW_OUTBOUND", value_name = "CIDR", num_args = 1.., value_delimiter = ',')]
    pub allow_outbound: Vec<wharf_runtime::outbound::Cidr>,
    /// CA certificates (one PEM file, may hold several) that outbound HTTPS
    /// — feeds, parent nodes, token realms, webhooks — trusts besides the
    /// system's root certificates: a company CA, a parent's
    /// `--tls-self-signed` CA (its <data-dir>/tls/ca.crt).
    #[arg(long, env = "WHARF_OUTBOUND_CA_CERT", value_name = "PEM")]
    pub outbound_ca_cert: Option<PathBuf>,
    /// Largest blob a push may send (more gets 413) and a sync may download
    /// (a feed blob whose descriptor gives no size is cut off here), e.g.
    /// `64GiB`, `512MiB` or a number of bytes.
    #[arg(long, env = "WHARF_MAX_BLOB_SIZE", value_name = "SIZE", default_value = "64GiB", value_parser = parse_size)]
    pub max_blob_size: u64,
    /// Whether a push to a name no repository has creates one, for a caller
    /// who may create repositories (docs/registry.md); `false` keeps such
    /// pushes refused with NAME_UNKNOWN.
    #[arg(long, env = "WHARF_CREATE_ON_PUSH", value_name = "BOOL", default_value_t = true,
        action = clap::ArgAction::Set)]
    pub create_on_push: bool,
    /// Streaming imports (`POST /api/v1/repositories/{id}/import` with the
    /// content as the body) this node runs at once; more get 429.
    #[arg(long, env = "WHARF_MAX_STREAM_IMPORTS", default_value_t = 16,
        value_parser = clap::value_parser!(u16).range(1..=MAX_STREAM_IMPORTS))]
    pub max_stream_imports: u16,
    /// Streaming imports one user runs at once on this node; more get 429.
    #[arg(long, env = "WHARF_MAX_STREAM_IMPORTS_PER_USER", default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..=MAX_STREAM_IMPORTS))]
    pub max_stream_imports_per_user: u16,
    /// Serve the web console (`/ui/`) from this directory's `index.html`,
    /// `app.js` and `app.css`, read at each request, instead of the copies
    /// built into the binary: for working on the console without
    /// rebuilding (docs/console.md).
    #[arg(long, env = "WHARF_CONSOLE_DIR", value_name = "DIR")]
    pub console_dir: Option<PathBuf>,
    /// Access control: tokens, LDAP, the registry token realm.
    #[command(flatten)]
    pub auth: crate::auth::config::AuthConfig,
    /// Where blobs live.
    #[command(flatten)]
    pub blobs: BlobArgs,
    /// With blobs in object storage: answer blob GETs with a 307 to a
    /// presigned URL of the object, valid this long (e.g. `5m`), instead of
    /// streaming the bytes through this node. A repository's
    /// `blob_redirect` setting (true/false) overrides it.
    #[arg(long, env = "WHARF_BLOB_REDIRECT", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub blob_redirect: Option<Duration>,
}

/// Where blobs live: `<data-dir>/blobs` (the default), or an S3-compatible
/// bucket (docs/scaling.md, "Blobs in object storage"). With a bucket,
/// `<data-dir>/blobs` still holds this node's temporary files and its cache
/// of verified blobs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BlobArgs {
    /// Keep blobs in S3-compatible object storage: `s3://BUCKET` or
    /// `s3://BUCKET/PREFIX` (the bucket must exist).
    #[arg(long, env = "WHARF_BLOB_STORE", value_name = "s3://BUCKET[/PREFIX]")]
    pub blob_store: Option<ObjectLocation>,
    #[command(flatten)]
    pub s3: S3Args,
}

/// How to reach and sign in to an S3-compatible service; the standard
/// `AWS_*` variables work too.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Args {
    /// The S3 service's URL, for a server other than AWS (MinIO, Ceph RGW,
    /// Garage, ...); `http://` is allowed.
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region (default `us-east-1`).
    #[arg(long, env = "AWS_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// The access key id to sign requests with.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", value_name = "ID")]
    pub s3_access_key_id: Option<String>,
    /// The secret access key (better from the environment or the file than
    /// from the command line, which other users may see).
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub s3_secret_access_key: Option<String>,
}

impl S3Args {
    /// A client of `location` with these settings.
    pub fn open(&self, location: &ObjectLocation) -> anyhow::Result<ObjectHome> {
        let access = S3Access {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
        };
        ObjectHome::new(location.clone(), &access)
            .with_context(|| format!("opening the object storage {location}"))
    }
}

impl BlobArgs {
    /// Open the blob store rooted at `root` (`<data-dir>/blobs`), in the
    /// bucket when one is set.
    pub fn open(&self, root: &Path) -> anyhow::Result<BlobStore> {
        let objects = match &self.blob_store {
            None => None,
            Some(location) => Some(self.s3.open(location)?),
        };
        BlobStore::open_with(root, objects)
            .with_context(|| format!("opening the blob store in {}", root.display()))
    }
}

/// TLS of the listeners. `--tls-*` apply to every listener; `--admin-tls-*`
/// and `--registry-tls-*` override them for one side.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first) served by every listener: TLS only,
    /// plain HTTP is refused. Reloaded on SIGHUP or when the file changes.
    #[arg(long, env = "WHARF_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "WHARF_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a self-signed CA and certificate generated on first
    /// start into <data-dir>/tls (its CA is printed, and kept as ca.crt).
    #[arg(long, env = "WHARF_TLS_SELF_SIGNED")]
    pub tls_self_signed: bool,
    /// PEM certificate chain of the admin listener [default: --tls-cert].
    #[arg(long, env = "WHARF_ADMIN_TLS_CERT", value_name = "PEM")]
    pub admin_tls_cert: Option<PathBuf>,
    /// PEM private key of --admin-tls-cert.
    #[arg(long, env = "WHARF_ADMIN_TLS_KEY", value_name = "PEM")]
    pub admin_tls_key: Option<PathBuf>,
    /// PEM certificate chain of the registry listener [default: --tls-cert].
    #[arg(long, env = "WHARF_REGISTRY_TLS_CERT", value_name = "PEM")]
    pub registry_tls_cert: Option<PathBuf>,
    /// PEM private key of --registry-tls-cert.
    #[arg(long, env = "WHARF_REGISTRY_TLS_KEY", value_name = "PEM")]
    pub registry_tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeConfig {
    pub fn plugin_dir(&self) -> PathBuf {
        self.plugin_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }
}

/// Streaming imports hold a task's plugin instance each: well below the
/// tasks' share of the pool, which task workers use too.
const MAX_STREAM_IMPORTS: i64 = (wharf_runtime::admission::Shares::TASKS / 2) as i64;

fn parse_timeout(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 30s, 2m)"))
}

/// A duration above zero.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_timeout(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be above zero (e.g. 24h, 90m)")),
        d => Ok(d),
    }
}

/// A size in bytes: a number, optionally with a unit (`KiB`, `MiB`, `GiB`,
/// `TiB`, or `K`, `M`, `G`, `T` for the same; `KB`, `MB`, `GB`, `TB` are
/// powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (e.g. 64GiB, 512MiB, 1048576)"
            ));
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 64GiB, 512MiB, 1048576)"))?;
    match n.checked_mul(scale) {
        Some(0) | None => Err(format!("{s:?}: the size must be above 0 and below 16 EiB")),
        Some(v) => Ok(v),
    }
}

/// Each setting of the file (`section.key`) and the flag it stands for (its
/// clap argument id). The file's layout groups what belongs together; the
/// flags stay flat.
pub const FILE_KEYS: &[(&str, &str)] = &[
    ("listen", "listen"),
    ("data_dir", "data_dir"),
    ("plugin_dir", "plugin_dir"),
    ("workers", "workers"),
    ("broker", "broker"),
    ("broker_queue", "broker_queue"),
    // The metadata store URL (`--db`, e.g. mongodb://…); absent means the
    // embedded SQLite store.
    ("db", "db"),
    ("log_format", "log_format"),
    ("shutdown_timeout", "shutdown_timeout"),
    // Idle uploads and upload sessions are removed after this long.
    ("upload_expiry", "upload_expiry"),
    // Internal address blocks outbound requests may reach: an array of
    // strings (or one comma-separated string).
    ("allow_outbound", "allow_outbound"),
    // A PEM file of CA certificates outbound HTTPS trusts besides the system's.
    ("outbound_ca_cert", "outbound_ca_cert"),
    // Largest pushed or synced blob (a size: 64GiB, 512MiB, bytes).
    ("max_blob_size", "max_blob_size"),
    // Whether a push to a new name creates its repository (true/false).
    ("create_on_push", "create_on_push"),
    // Whether the plugins built into the binary are loaded (true/false).
    ("builtin_plugins", "builtin_plugins"),
    // Streaming imports at once, on this node and per user.
    ("max_stream_imports", "max_stream_imports"),
    ("max_stream_imports_per_user", "max_stream_imports_per_user"),
    // The web console's files from a directory instead of the binary.
    ("console_dir", "console_dir"),
    // Blobs in an S3-compatible bucket (s3://BUCKET[/PREFIX]), with its
    // endpoint and credentials; a redirect lifetime for blob GETs.
    ("blobs.store", "blob_store"),
    ("blobs.redirect", "blob_redirect"),
    ("blobs.s3_endpoint", "s3_endpoint"),
    ("blobs.s3_region", "s3_region"),
    ("blobs.s3_access_key_id", "s3_access_key_id"),
    ("blobs.s3_secret_access_key", "s3_secret_access_key"),
    ("connections.header_timeout", "header_timeout"),
    ("connections.idle_timeout", "idle_timeout"),
    ("connections.body_timeout", "body_timeout"),
    ("connections.max", "max_connections"),
    ("connections.threads", "connection_threads"),
    ("connections.max_tls_handshakes", "max_tls_handshakes"),
    ("connections.tls_handshake_timeout", "tls_handshake_timeout"),
    ("tls.cert", "tls_cert"),
    ("tls.key", "tls_key"),
    ("tls.self_signed", "tls_self_signed"),
    ("admin.listen", "admin_listen"),
    ("admin.tls_cert", "admin_tls_cert"),
    ("admin.tls_key", "admin_tls_key"),
    ("registry.listen", "registry_listen"),
    ("registry.tls_cert", "registry_tls_cert"),
    ("registry.tls_key", "registry_tls_key"),
    ("plugins.memory_mib", "plugin_memory_mib"),
    ("plugins.call_timeout_ms", "plugin_call_timeout_ms"),
    ("auth.token_ttl", "token_ttl"),
    ("auth.public_url", "public_url"),
    ("ldap.url", "ldap_url"),
    ("ldap.starttls", "ldap_starttls"),
    ("ldap.user_dn_template", "ldap_user_dn_template"),
    ("ldap.base", "ldap_base"),
    ("ldap.bind_dn", "ldap_bind_dn"),
    ("ldap.bind_password", "ldap_bind_password"),
    ("ldap.user_filter", "ldap_user_filter"),
    ("ldap.group_base", "ldap_group_base"),
    ("ldap.group_filter", "ldap_group_filter"),
    ("ldap.group_role", "ldap_group_role"),
    ("ldap.timeout_secs", "ldap_timeout_secs"),
];

/// Settings (clap argument ids) that take a list: an array in the file.
const LIST_ARGS: &[&str] = &["ldap_group_role", "allow_outbound"];

/// Settings whose values are never printed.
const SECRET_KEYS: &[&str] = &["ldap.bind_password", "blobs.s3_secret_access_key"];
/// Settings that are URLs whose password part is never printed.
const URL_KEYS: &[&str] = &["broker", "db", "ldap.url"];

/// The config file named on the command line (`--config FILE`,
/// `--config=FILE`) or in `WHARF_CONFIG`, read before clap parses anything
/// because its values become clap's defaults.
pub fn file_from_args(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("WHARF_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// One setting read from the file.
#[derive(Debug, Clone)]
pub struct FileSetting {
    pub key: String,
    pub arg: &'static str,
    pub values: Vec<String>,
}

/// Read and check a config file: TOML, known keys only, scalar values (or
/// an array of strings for `ldap.group_role` and `allow_outbound`).
pub fn read_file(path: &Path) -> anyhow::Result<Vec<FileSetting>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{} is not valid TOML: {e}", path.display()))?;
    let mut out = Vec::new();
    flatten(&table, "", &mut out).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(out)
}

fn flatten(table: &toml::Table, prefix: &str, out: &mut Vec<FileSetting>) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let toml::Value::Table(t) = v {
            if !FILE_KEYS
                .iter()
                .any(|(f, _)| f.starts_with(&format!("{key}.")))
            {
                return Err(format!("unknown section [{key}]; {}", known_keys()));
            }
            flatten(t, &key, out)?;
            continue;
        }
        let Some((_, arg)) = FILE_KEYS.iter().find(|(f, _)| *f == key) else {
            return Err(format!("unknown setting `{key}`; {}", known_keys()));
        };
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(format!(
                "`{key}` must be a string, an integer or a boolean, not {}",
                other.type_str()
            )),
        };
        let values = match v {
            toml::Value::Array(items) if LIST_ARGS.contains(arg) => {
                items.iter().map(scalar).collect::<Result<_, _>>()?
            }
            // `allow_outbound = "10.0.0.0/8,127.0.0.1/32"`, as in the environment.
            toml::Value::String(s) if *arg == "allow_outbound" => {
                s.split(',').map(|p| p.trim().to_string()).collect()
            }
            v => vec![scalar(v)?],
        };
        out.push(FileSetting { key, arg, values });
    }
    Ok(())
}

fn known_keys() -> String {
    let keys: Vec<&str> = FILE_KEYS.iter().map(|(k, _)| *k).collect();
    format!(
        "the settings are: {} (see docs/configuration.md)",
        keys.join(", ")
    )
}

/// `cmd` (the arguments of `serve` or `worker`) with the file's settings as
/// defaults: flags and environment variables still win over them.
pub fn with_file_defaults(
    mut cmd: clap::Command,
    settings: &[FileSetting],
) -> anyhow::Result<clap::Command> {
    for s in settings {
        anyhow::ensure!(
            cmd.get_arguments().any(|a| a.get_id() == s.arg),
            "the config file sets `{}`, which this build of wharf does not support",
            s.key
        );
        // clap keeps defaults as `&'static str`; the file is read once per
        // process, so leaking its few values costs nothing.
        let values: Vec<&'static str> =
            s.values.iter().map(|v| &*String::leak(v.clone())).collect();
        // `--help` shows the file's values as defaults; never a secret, nor
        // a URL that may carry a password.
        let secret = SECRET_KEYS.contains(&s.key.as_str()) || URL_KEYS.contains(&s.key.as_str());
        cmd = cmd.mut_arg(s.arg, |a| {
            a.default_values(values).hide_default_value(secret)
        });
    }
    Ok(cmd)
}

/// Where an effective setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

/// One line of `wharf config check`.
#[derive(Debug, serde::Serialize)]
pub struct Effective {
    pub key: &'static str,
    /// `None`: not set.
    pub value: Option<serde_json::Value>,
    pub from: Source,
}

/// `wharf config check [FILE]`: the settings `wharf serve` would run with
/// (this file, the environment, defaults), secrets masked; an error says
/// what is wrong with the file.
pub fn check(file: &Path) -> anyhow::Result<Vec<Effective>> {
    use clap::{Args as _, FromArgMatches as _};
    let settings = read_file(file)?;
    let cmd = with_file_defaults(
        ServeConfig::augment_args(clap::Command::new("serve")),
        &settings,
    )?;
    let matches = cmd.try_get_matches_from(["serve"]).map_err(|e| {
        anyhow::anyhow!(
            "{} (from {} or the environment)",
            e.render().to_string().trim(),
            file.display()
        )
    })?;
    let config = ServeConfig::from_arg_matches(&matches)
        .map_err(|e| anyhow::anyhow!("{}", e.render().to_string().trim()))?;
    // The listener layout and TLS settings must make sense together.
    crate::listeners::plan(&config)?;
    let mut out = Vec::new();
    for (key, arg) in FILE_KEYS {
        let Ok(raw) = matches.try_get_raw(arg) else {
            continue; // Not in this build (e.g. `db`).
        };
        let from = match matches.value_source(arg) {
            Some(clap::parser::ValueSource::CommandLine) => Source::Flag,
            Some(clap::parser::ValueSource::EnvVariable) => Source::Env,
            _ if settings.iter().any(|s| s.key == *key) => Source::File,
            _ => Source::Default,
        };
        let values: Vec<String> = raw
            .into_iter()
            .flatten()
            .map(|v| v.to_string_lossy().into_owned())
            .map(|v| mask(key, v))
            .collect();
        let value = match values.len() {
            0 => None,
            _ if LIST_ARGS.contains(arg) => Some(serde_json::json!(values)),
            _ => Some(typed(&values[0])),
        };
        out.push(Effective { key, value, from });
    }
    Ok(out)
}

/// Numbers and booleans print as such, the rest as strings.
fn typed(v: &str) -> serde_json::Value {
    if let Ok(n) = v.parse::<u64>() {
        return n.into();
    }
    match v {
        "true" => true.into(),
        "false" => false.into(),
        _ => v.into(),
    }
}

fn mask(key: &str, v: String) -> String {
    if SECRET_KEYS.contains(&key) {
        return "********".into();
    }
    if URL_KEYS.contains(&key)
        && let Some((scheme, rest)) = v.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:********@{host}");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets() {
        assert_eq!(
            mask("broker", "amqp://guest:pw@127.0.0.1:5672/%2f".into()),
            "amqp://guest:********@127.0.0.1:5672/%2f"
        );
        assert_eq!(mask("ldap.bind_password", "pw".into()), "********");
        assert_eq!(mask("listen", "127.0.0.1:1".into()), "127.0.0.1:1");
    }

    #[test]
    fn every_file_key_but_db_is_a_flag() {
        use clap::Args as _;
        let cmd = ServeConfig::augment_args(clap::Command::new("serve"));
        for (key, arg) in FILE_KEYS {
            assert!(
                *key == "db" || cmd.get_arguments().any(|a| a.get_id() == arg),
                "{key} -> {arg}"
            );
        }
    }

    #[test]
    fn an_expiry_of_zero_is_refused() {
        assert_eq!(
            parse_positive_duration("90m"),
            Ok(Duration::from_secs(5400))
        );
        assert!(
            parse_positive_duration("0s")
                .unwrap_err()
                .contains("above zero")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64GiB"), Ok(64 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert_eq!(parse_size("3GB"), Ok(3_000_000_000));
        for bad in [
            "",
            "0",
            "MiB",
            "1.5GiB",
            "12 parsecs",
            "99999999999TiB",
            "-1",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn precedence_flag_env_file_default() {
        use clap::{Args as _, FromArgMatches as _};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wharf.toml");
        std::fs::write(
            &file,
            "workers = 7\nbroker_queue = \"from-file\"\n[plugins]\nmemory_mib = 64\n[ldap]\nstarttls = true\ngroup_role = [\"a=b\", \"c=d\"]\n",
        )
        .unwrap();
        let settings = read_file(&file).unwrap();
        let cmd = with_file_defaults(
            ServeConfig::augment_args(clap::Command::new("serve")),
            &settings,
        )
        .unwrap();
        let m = cmd
            .try_get_matches_from(["serve", "--workers", "3"])
            .unwrap();
        let c = ServeConfig::from_arg_matches(&m).unwrap();
        assert_eq!(c.workers, 3, "a flag beats the file");
        assert_eq!(c.broker_queue, "from-file");
        assert_eq!(c.plugin_memory_mib, 64);
        assert!(c.auth.ldap.ldap_starttls);
        assert_eq!(c.auth.ldap.ldap_group_role, ["a=b", "c=d"]);
        assert_eq!(c.plugin_call_timeout_ms, 2000, "untouched defaults stay");
        assert!(
            c.allow_outbound.is_empty(),
            "internal addresses refused by default"
        );
    }

    #[test]
    fn allow_outbound_from_file_env_style_string_and_flags() {
        use clap::{Args as _, FromArgMatches as _};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wharf.toml");
        let parse = |toml: &str, args: &[&str]| {
            std::fs::write(&file, toml).unwrap();
            let cmd = with_file_defaults(
                ServeConfig::augment_args(clap::Command::new("serve")),
                &read_file(&file).unwrap(),
            )
            .unwrap();
            let m = cmd
                .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
            let c = ServeConfig::from_arg_matches(&m).map_err(|e| e.to_string())?;
            Ok::<_, String>(
                c.allow_outbound
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
        };
        let array = "allow_outbound = [\"10.0.0.0/8\", \"127.0.0.1/32\"]\n";
        assert_eq!(parse(array, &[]).unwrap(), ["10.0.0.0/8", "127.0.0.1/32"]);
        let string = "allow_outbound = \"10.0.0.0/8, 127.0.0.2\"\n";
        assert_eq!(parse(string, &[]).unwrap(), ["10.0.0.0/8", "127.0.0.2/32"]);
        assert_eq!(
            parse(array, &["--allow-outbound", "fd00::/8,192.168.0.0/16"]).unwrap(),
            ["fd00::/8", "192.168.0.0/16"],
            "a flag beats the file"
        );
        let e = parse("allow_outbound = [\"10.1.2.3/8\"]\n", &[]).unwrap_err();
        assert!(e.contains("host bits are set"), "{e}");
    }

    #[test]
    fn rejects_unknown_and_mistyped_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[admin]\nlisten_on = \"x\"\n").unwrap();
        let e = read_file(&file).unwrap_err().to_string();
        assert!(e.contains("unknown setting `admin.listen_on`"), "{e}");
        std::fs::write(&file, "workers = 1.5\n").unwrap();
        let e = read_file(&file).unwrap_err().to_string();
        assert!(e.contains("`workers` must be"), "{e}");
        std::fs::write(&file, "[nope]\nx = 1\n").unwrap();
        let e = read_file(&file).unwrap_err().to_string();
        assert!(e.contains("unknown section [nope]"), "{e}");
    }
}
