//! `wharf bench`: the plugin runtime, the store and object storage uploads, measured here and now.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf_runtime::calls::Request;
use wharf_runtime::engine::{Limits, Runtime};
use wharf_runtime::host::{HostEnv, ResolveCall};
use wharf_runtime::publications::PublicationMap;
use wharf_store::blobs::BlobStore;
use wharf_store::db::sqlite::SqliteStore;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Measure a plugin (a `resolve` of `GET path`) and the server's start.
pub async fn runtime(plugin_file: &Path, path: &str, iterations: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("wharf.db"))?);
    let blobs = Arc::new(BlobStore::open(&dir.path().join("blobs"))?);
    let env = Arc::new(HostEnv {
        sessions: Arc::new(wharf_store::sessions::Sessions::open_with(
            blobs.root(),
            blobs.objects_shared(),
        )?),
        blobs,
        store,
        publications: Arc::new(PublicationMap::default()),
        outbound: Arc::new(wharf_runtime::outbound::OutboundPolicy::default()),
        http: Arc::new(wharf_runtime::outbound::OutboundPolicy::default())
            .client_builder()
            .build()?,
        rt: tokio::runtime::Handle::current(),
        spool_dir: dir.path().to_path_buf(),
        max_blob_size: u64::MAX,
        call_ended: crate::metrics::plugin_call,
    });
    let wasm = std::fs::read(plugin_file)?;
    println!(
        "plugin: {} ({} KiB)",
        plugin_file.display(),
        wasm.len() / 1024
    );

    let rt = Arc::new(Runtime::new(
        env.clone(),
        dir.path().join("cache"),
        Limits::default(),
    )?);
    let (_, stats) = tokio::task::block_in_place(|| rt.load(&wasm))?;
    println!("component compile + describe: {}", ms(stats.duration));
    // A new runtime (fresh engine) on the same cache directory: the cached path.
    let mut cached = Vec::new();
    for _ in 0..10 {
        let rt2 = Arc::new(Runtime::new(
            env.clone(),
            dir.path().join("cache"),
            Limits::default(),
        )?);
        let (_, s) = tokio::task::block_in_place(|| rt2.load(&wasm))?;
        assert!(s.from_cache);
        cached.push(s.duration);
    }
    cached.sort();
    println!(
        "cached load + describe: p50 {}",
        ms(percentile(&cached, 0.5))
    );

    let (plugin, _) = tokio::task::block_in_place(|| rt.load(&wasm))?;
    let req = Request {
        method: "GET".into(),
        path: path.into(),
        query: String::new(),
        headers: vec![],
        pulled: false,
    };
    let call = || plugin.resolve(ResolveCall::nothing(), &req);
    for _ in 0..1000 {
        call()?;
    }
    let mut warm = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        call()?;
        warm.push(t.elapsed());
    }
    warm.sort();
    println!(
        "warm call (resolve {path}, pool included): p50 {}  p99 {}",
        us(percentile(&warm, 0.5)),
        us(percentile(&warm, 0.99))
    );
    let mut fresh = Vec::new();
    for _ in 0..(iterations / 10).max(100) {
        let t = Instant::now();
        plugin.resolve_fresh(ResolveCall::nothing(), &req)?;
        fresh.push(t.elapsed());
    }
    fresh.sort();
    println!(
        "fresh instance + call: p50 {}  p99 {}",
        us(percentile(&fresh, 0.5)),
        us(percentile(&fresh, 0.99))
    );
    Ok(())
}

/// Time from spawning `wharf serve` to its first successful status answer.
pub async fn startup(plugin_dir: &Path, runs: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    for run in 0..=runs {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let start = Instant::now();
        let mut child = tokio::process::Command::new(&exe)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path())
            .arg("--plugin-dir")
            .arg(plugin_dir)
            .env("WHARF_LOG", "warn")
            .kill_on_drop(true)
            .spawn()?;
        let url = format!("http://127.0.0.1:{port}/api/v1/status");
        loop {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = start.elapsed();
        child.kill().await?;
        // The first run fills the compiled-plugin cache.
        if run == 0 {
            println!("start to ready, cold cache: {}", ms(took));
        } else {
            times.push(took);
        }
    }
    times.sort();
    println!(
        "start to ready, warm cache: p50 {}  max {}",
        ms(percentile(&times, 0.5)),
        ms(*times.last().unwrap())
    );
    Ok(())
}

/// Copy of 10,000 units between repositories and listing 10,000
/// repositories, on the embedded store.
pub async fn store(units: usize, repos: usize) -> anyhow::Result<()> {
    use wharf_store::db::{
        RepoQuery, Repository, RepositoryStore as _, Unit, UnitChange, VersionCause, VersionOrigin,
        now,
    };
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("wharf.db"))?;
    let repo = |id: String| Repository {
        id: id.parse().unwrap(),
        content_type: "docker".into(),
        display_name: String::new(),
        description: String::new(),
        notes: [("env".to_string(), "bench".to_string())].into(),
        importer_config: serde_json::json!({}),
        distributor_config: serde_json::json!({}),
        retain_versions: None,
        created_at: now(),
        updated_at: now(),
    };
    store.create_repo(&repo("src".into())).await?;
    store.create_repo(&repo("dst".into())).await?;
    let changes: Vec<UnitChange> = (0..units)
        .map(|i| {
            let key = format!("sha256:{:064x}", i);
            UnitChange::Add(Unit {
                unit_type: "blob".parse().expect("a unit type"),
                key: key.clone(),
                metadata: serde_json::json!({"size": i}),
                blobs: vec![wharf_core::digest::Digest::of(key.as_bytes())],
            })
        })
        .collect();
    let t = Instant::now();
    let import = VersionOrigin::new(VersionCause::Import, None);
    store
        .apply_changes(&"src".parse()?, &changes, &import)
        .await?;
    println!("add {units} units in one transaction: {}", ms(t.elapsed()));
    let t = Instant::now();
    let copy = VersionOrigin::new(VersionCause::Copy, None);
    let copied: u64 = store
        .copy_units(&"src".parse()?, &"dst".parse()?, &[], &copy)
        .await?
        .map_or(0, |v| v.added.values().sum());
    println!(
        "copy {copied} units (associations only): {}",
        ms(t.elapsed())
    );

    for i in 0..repos {
        store.create_repo(&repo(format!("repo-{i:05}"))).await?;
    }
    let mut page = Vec::new();
    let mut all = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        store
            .list_repos(&RepoQuery {
                limit: 100,
                ..Default::default()
            })
            .await?;
        page.push(t.elapsed());
        let t = Instant::now();
        let mut after = None;
        let mut n = 0;
        loop {
            let got = store
                .list_repos(&RepoQuery {
                    after: after.clone(),
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            n += got.len();
            match got.last() {
                Some(r) if got.len() == 1000 => after = Some(r.id.to_string()),
                _ => break,
            }
        }
        all.push(t.elapsed());
        anyhow::ensure!(n == repos + 2, "listed {n} repositories");
    }
    page.sort();
    all.sort();
    println!(
        "list repositories ({repos} stored), first page of 100: p50 {}",
        ms(percentile(&page, 0.5))
    );
    println!(
        "list all {repos} repositories in pages of 1000: p50 {}",
        ms(percentile(&all, 0.5))
    );
    Ok(())
}

/// What one version costs as a repository grows: for each size, a
/// repository of that many units, then one-unit changes (each a new
/// version), a diff of the last two versions and a page of the latest
/// version, on the store at `db` (a fresh SQLite file when `None`; a
/// MongoDB database is used as given and its repositories are left).
pub async fn versions(
    db: Option<wharf_store::db::DbLocation>,
    sizes: &[usize],
) -> anyhow::Result<()> {
    use wharf_store::db::{Repository, Unit, UnitChange, VersionCause, VersionOrigin, now};
    let dir = tempfile::tempdir()?;
    let location =
        db.unwrap_or_else(|| wharf_store::db::DbLocation::Sqlite(dir.path().join("wharf.db")));
    let store = location.open().await?;
    println!("store: {location}");
    let unit = |i: usize| {
        let key = format!("sha256:{i:064x}");
        Unit {
            unit_type: "blob".parse().expect("a unit type"),
            key: key.clone(),
            metadata: serde_json::json!({"size": i}),
            blobs: vec![wharf_core::digest::Digest::of(key.as_bytes())],
        }
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let import = VersionOrigin::new(VersionCause::Import, None);
    for &size in sizes {
        let id: wharf_core::ids::RepoId = format!("bench-{size}-{}", &run[..8]).parse()?;
        store
            .create_repo(&Repository {
                id: id.clone(),
                content_type: "docker".into(),
                display_name: String::new(),
                description: String::new(),
                notes: Default::default(),
                importer_config: serde_json::json!({}),
                distributor_config: serde_json::json!({}),
                retain_versions: None,
                created_at: now(),
                updated_at: now(),
            })
            .await?;
        let t = Instant::now();
        for chunk in (0..size).collect::<Vec<_>>().chunks(5000) {
            let changes: Vec<UnitChange> =
                chunk.iter().map(|&i| UnitChange::Add(unit(i))).collect();
            store.apply_changes(&id, &changes, &import).await?;
        }
        let fill = t.elapsed();
        let mut one = Vec::new();
        for i in 0..30 {
            let change = if i % 2 == 0 {
                UnitChange::Add(unit(size + i))
            } else {
                let u = unit(i);
                UnitChange::Remove {
                    unit_type: u.unit_type,
                    key: u.key,
                }
            };
            let t = Instant::now();
            let made = store.apply_changes(&id, &[change], &import).await?;
            one.push(t.elapsed());
            anyhow::ensure!(made.is_some_and(|v| v.changed() == 1), "a one-unit version");
        }
        one.sort();
        let latest = store
            .latest_version(&id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no versions"))?
            .number;
        let t = Instant::now();
        let d = store.diff_versions(&id, latest - 1, latest).await?;
        let diff = t.elapsed();
        anyhow::ensure!(d.added.len() + d.removed.len() == 1, "a one-unit diff");
        let blob = "blob".parse()?;
        let t = Instant::now();
        store.list_units(&id, &blob, None, 100).await?;
        let latest_page = t.elapsed();
        let t = Instant::now();
        store
            .list_version_units(&id, latest - 10, &blob, None, 100)
            .await?;
        let page = t.elapsed();
        println!(
            "{size:>7} units: fill {}; one-unit change (a version) p50 {} p90 {}; diff of two versions {}; first 100 units of the latest {} / of an older version {}",
            ms(fill),
            ms(percentile(&one, 0.5)),
            ms(percentile(&one, 0.9)),
            ms(diff),
            ms(latest_page),
            ms(page)
        );
    }
    Ok(())
}

/// Upload `file` to the bucket `to` the way the blob store writes a blob
/// (one PutObject up to 8 MiB, else a multipart upload of 8 MiB parts, four
/// in flight), `runs` times: the plain-upload figure the object storage
/// benchmark (scripts/bench-s3.sh) compares pushes and imports with.
pub fn object_put(
    file: &Path,
    to: &wharf_store::blobs::ObjectLocation,
    s3: &crate::config::S3Args,
    runs: usize,
) -> anyhow::Result<()> {
    let home = s3.open(to)?;
    let f = std::fs::File::open(file)?;
    let len = f.metadata()?.len();
    let digest = wharf_store::blobs::hash_file_range(&f, 0, len)?;
    let mib = len as f64 / (1 << 20) as f64;
    let mut best = f64::MAX;
    for _ in 0..runs.max(1) {
        home.remove(&digest)?;
        let t = Instant::now();
        home.upload(&digest, &f, len)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "object-put: {mib:.0} MiB in {best:.2} s ({:.0} MiB/s), best of {runs}",
        mib / best
    );
    Ok(())
}
