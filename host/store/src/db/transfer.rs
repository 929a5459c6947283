//! Moving an installation's metadata between stores (e.g. the embedded
//! SQLite file to MongoDB): [`export`] writes every record as JSON lines,
//! [`import`] replays them into an empty store through the same [`Store`]
//! calls the server makes, so the target's own rules (roles before users,
//! repositories before their content) hold.
//!
//! Remotes and schedules are carried too. What is not carried: login
//! tokens (users log in again), unfinished
//! uploads, units no repository holds (orphans), and tasks that had not ended
//! (export with the server stopped). Blobs stay where they are: the data
//! directory is shared, whatever the metadata store.
//!
//! Secrets (password hashes, secrets in repository and publication settings,
//! webhook secrets) are masked by the caller's mapper (the CLI's follows
//! `wharf::secrets`; storage does not know the rule) unless the export is
//! asked to include them; a masked dump is for reading, and [`import`]
//! refuses it.

use super::*;
use anyhow::Context as _;
use std::io::{BufRead, Write};

/// First line of every dump.
pub const FORMAT: &str = "wharf-db-export";
/// 2: repositories carry their versions (`history` and `versions` lines);
/// version 1 dumps (`units` lines) still import.
pub const FORMAT_VERSION: u32 = 2;

/// History entries per `history` line: one transaction each on import.
const UNITS_PER_LINE: u32 = 500;

/// One line of a dump.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "record", rename_all = "snake_case")]
pub enum Record {
    Header {
        format: String,
        version: u32,
        exported_at: Timestamp,
        /// Secrets were replaced by a mask: such a dump cannot be imported.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        secrets_masked: bool,
    },
    Role(Role),
    User(User),
    Permission(Permission),
    Repository(Repository),
    /// Units held by one repository (created if absent, then associated):
    /// what version 1 dumps carry.
    Units {
        repo: RepoId,
        units: Vec<Unit>,
    },
    /// Associations of one repository, current and retired, with their
    /// units (created if absent).
    History {
        repo: RepoId,
        entries: Vec<HistoryEntry>,
    },
    /// Every version one repository keeps.
    Versions {
        repo: RepoId,
        versions: Vec<RepoVersion>,
    },
    Group(Group),
    Publication(Publication),
    Listener(crate::db::Listener),
    Task(Task),
    Plugin(InstalledPlugin),
    Remote(crate::db::Remote),
    Schedule(crate::db::Schedule),
}

impl Record {
    fn kind(&self) -> &'static str {
        match self {
            Record::Header { .. } => "header",
            Record::Role(_) => "roles",
            Record::User(_) => "users",
            Record::Permission(_) => "permissions",
            Record::Repository(_) => "repositories",
            Record::Units { .. } | Record::History { .. } => "unit associations",
            Record::Versions { .. } => "repository versions",
            Record::Group(_) => "groups",
            Record::Publication(_) => "publications",
            Record::Listener(_) => "event listeners",
            Record::Task(_) => "tasks",
            Record::Plugin(_) => "installed plugins",
            Record::Remote(_) => "remotes",
            Record::Schedule(_) => "schedules",
        }
    }

    fn count(&self) -> u64 {
        match self {
            Record::Units { units, .. } => units.len() as u64,
            Record::History { entries, .. } => entries.len() as u64,
            Record::Versions { versions, .. } => versions.len() as u64,
            _ => 1,
        }
    }
}

/// How many records of each kind went through.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub counts: BTreeMap<&'static str, u64>,
    /// Tasks left out because they had not ended.
    pub skipped_unfinished_tasks: u64,
}

impl Summary {
    fn add(&mut self, r: &Record) {
        if !matches!(r, Record::Header { .. }) {
            *self.counts.entry(r.kind()).or_default() += r.count();
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        write!(f, "{}", parts.join(", "))?;
        if self.skipped_unfinished_tasks > 0 {
            write!(
                f,
                " ({} unfinished tasks left out)",
                self.skipped_unfinished_tasks
            )?;
        }
        Ok(())
    }
}

/// What an export does to each record to mask its secrets.
pub type MaskSecrets = fn(Record) -> Record;

struct Writer<'a, W: Write> {
    out: &'a mut W,
    summary: Summary,
    mask: Option<MaskSecrets>,
}

impl<W: Write> Writer<'_, W> {
    fn put(&mut self, r: Record) -> anyhow::Result<()> {
        let r = match self.mask {
            Some(mask) => mask(r),
            None => r,
        };
        serde_json::to_writer(&mut *self.out, &r)?;
        self.out.write_all(b"\n")?;
        self.summary.add(&r);
        Ok(())
    }
}

/// Write every record of `store` to `out`, one JSON document per line,
/// each passed through `mask` if given (the header then says the dump is
/// masked, and [`import`] refuses it); without it, secrets as stored.
pub async fn export(
    store: &dyn Store,
    out: &mut impl Write,
    mask: Option<MaskSecrets>,
) -> anyhow::Result<Summary> {
    let mut w = Writer {
        out,
        summary: Summary::default(),
        mask,
    };
    w.put(Record::Header {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        exported_at: now(),
        secrets_masked: mask.is_some(),
    })?;
    // Roles before users (a user's roles must exist), users before
    // permissions (their subject must exist).
    for r in store.list_roles().await? {
        w.put(Record::Role(r))?;
    }
    for u in store.list_users().await? {
        w.put(Record::User(u))?;
    }
    for p in store.list_permissions(&[]).await? {
        w.put(Record::Permission(p))?;
    }
    let mut after = None;
    loop {
        let page = store
            .list_repos(&RepoQuery {
                after: after.clone(),
                limit: 500,
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.to_string());
        for repo in page {
            let id = repo.id.clone();
            w.put(Record::Repository(repo))?;
            let mut after: Option<(UnitRef, u64)> = None;
            loop {
                let entries = store
                    .list_history(&id, after.as_ref(), UNITS_PER_LINE)
                    .await?;
                let Some(last) = entries.last() else { break };
                after = Some((
                    UnitRef {
                        unit_type: last.unit.unit_type.clone(),
                        key: last.unit.key.clone(),
                    },
                    last.added_in,
                ));
                w.put(Record::History {
                    repo: id.clone(),
                    entries,
                })?;
            }
            let mut versions = Vec::new();
            loop {
                let page = store
                    .list_versions(&id, versions.last().map(|v: &RepoVersion| v.number), 1000)
                    .await?;
                if page.is_empty() {
                    break;
                }
                versions.extend(page);
            }
            w.put(Record::Versions {
                repo: id.clone(),
                versions,
            })?;
        }
    }
    for g in store.list_groups(&Notes::new()).await? {
        w.put(Record::Group(g))?;
    }
    for p in store.list_publications().await? {
        w.put(Record::Publication(p))?;
    }
    for l in store.list_listeners().await? {
        w.put(Record::Listener(l))?;
    }
    let all = TaskQuery {
        limit: u32::MAX,
        ..Default::default()
    };
    // Oldest first, so that the target lists them in the same order.
    for t in store.list_tasks(&all).await?.into_iter().rev() {
        if t.state.is_final() {
            w.put(Record::Task(t))?;
        } else {
            w.summary.skipped_unfinished_tasks += 1;
        }
    }
    for p in store.list_installed_plugins().await? {
        w.put(Record::Plugin(p))?;
    }
    for r in store.list_remotes().await? {
        w.put(Record::Remote(r))?;
    }
    for s in store.list_schedules().await? {
        w.put(Record::Schedule(s))?;
    }
    w.out.flush()?;
    Ok(w.summary)
}

/// Replay a dump into `store`, which must hold no repositories and no users.
pub async fn import(store: &dyn Store, input: impl BufRead) -> anyhow::Result<Summary> {
    let has_repos = !store
        .list_repos(&RepoQuery {
            limit: 1,
            ..Default::default()
        })
        .await?
        .is_empty();
    let has_users = !store.list_users().await?.is_empty();
    anyhow::ensure!(
        !has_repos && !has_users,
        "the target store already holds {}: import into a new, empty database",
        if has_repos { "repositories" } else { "users" }
    );
    let mut summary = Summary::default();
    let mut saw_header = false;
    for (n, line) in input.lines().enumerate() {
        let n = n + 1;
        let line = line.with_context(|| format!("reading line {n} of the dump"))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line)
            .with_context(|| format!("line {n} is not a record of a wharf dump"))?;
        if n == 1 {
            match &record {
                Record::Header {
                    secrets_masked: true,
                    ..
                } => anyhow::bail!(
                    "this dump was exported without --include-secrets: its passwords and secrets \
                     are masked, and importing it would lose them; export again with \
                     `wharf db export --include-secrets`"
                ),
                Record::Header {
                    format, version, ..
                } if format == FORMAT && *version <= FORMAT_VERSION => saw_header = true,
                Record::Header {
                    format, version, ..
                } => anyhow::bail!(
                    "the dump is {format} version {version}; this wharf reads {FORMAT} up to version {FORMAT_VERSION}"
                ),
                _ => anyhow::bail!(
                    "line 1 is not a {FORMAT} header: is this the output of `wharf db export`?"
                ),
            }
        }
        apply(store, &record)
            .await
            .with_context(|| format!("importing line {n} ({})", record.kind()))?;
        summary.add(&record);
    }
    anyhow::ensure!(
        saw_header,
        "the dump is empty: expected a {FORMAT} header line (the output of `wharf db export`)"
    );
    Ok(summary)
}

async fn apply(store: &dyn Store, record: &Record) -> StoreResult<()> {
    match record {
        Record::Header { .. } => Ok(()),
        Record::Role(r) => store.create_role(r).await,
        Record::User(u) => store.create_user(u).await,
        Record::Permission(p) => store
            .grant(&p.subject, &p.resource, &p.operations)
            .await
            .map(drop),
        Record::Repository(r) => store.create_repo(r).await,
        Record::Units { repo, units } => {
            let changes: Vec<UnitChange> = units.iter().cloned().map(UnitChange::Add).collect();
            let origin = VersionOrigin::new(VersionCause::Import, None);
            store.apply_changes(repo, &changes, &origin).await.map(drop)
        }
        Record::History { repo, entries } => store.import_history(repo, entries, &[]).await,
        Record::Versions { repo, versions } => store.import_history(repo, &[], versions).await,
        Record::Group(g) => store.create_group(g).await,
        Record::Publication(p) => store.put_publication(p).await,
        Record::Listener(l) => store.put_listener(l).await,
        Record::Task(t) => store.put_task(t).await,
        Record::Plugin(p) => store.put_installed_plugin(p).await,
        Record::Remote(r) => store.put_remote(r).await,
        Record::Schedule(s) => store.put_schedule(s).await,
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::fill;
    use super::*;

    /// Export a store filled by the conformance-like fixture, import it into
    /// a fresh one, export again: the two dumps hold the same records.
    #[tokio::test]
    async fn export_import_round_trip_between_sqlite_stores() {
        let dir = tempfile::tempdir().unwrap();
        let a = sqlite::SqliteStore::open(&dir.path().join("a.db")).unwrap();
        fill(&a).await;
        let mut dump = Vec::new();
        let s1 = export(&a, &mut dump, None).await.unwrap();
        assert_eq!(s1.counts["unit associations"], 3, "two held, one retired");
        assert_eq!(s1.counts["repository versions"], 3);
        assert_eq!(s1.skipped_unfinished_tasks, 1);
        assert_eq!((s1.counts["remotes"], s1.counts["schedules"]), (1, 1));

        let b = sqlite::SqliteStore::open(&dir.path().join("b.db")).unwrap();
        let s2 = import(&b, &dump[..]).await.unwrap();
        assert_eq!(s1.counts, s2.counts);
        let mut again = Vec::new();
        export(&b, &mut again, None).await.unwrap();
        assert_eq!(records(&dump), records(&again));

        let err = import(&b, &dump[..]).await.unwrap_err();
        assert!(format!("{err:#}").contains("empty database"), "{err:#}");
        let c = sqlite::SqliteStore::open(&dir.path().join("c.db")).unwrap();
        let err = import(&c, &b"{\"kind\":\"role\",\"record\":{}}\n"[..])
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }

    /// The move this module exists for: embedded SQLite to MongoDB, with
    /// records whose plugin JSON has keys MongoDB field names restrict.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_to_mongo_keeps_every_record() {
        let Some(url) = mongo::tests::test_url() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let a = sqlite::SqliteStore::open(&dir.path().join("a.db")).unwrap();
        fill(&a).await;
        let mut dump = Vec::new();
        export(&a, &mut dump, None).await.unwrap();
        let name = format!("wharf_test_transfer_{}", uuid::Uuid::new_v4().simple());
        let m = mongo::MongoStore::open_database(&url, Some(&name))
            .await
            .unwrap();
        import(&m, &dump[..]).await.unwrap();
        let mut again = Vec::new();
        export(&m, &mut again, None).await.unwrap();
        assert_eq!(records(&dump), records(&again));
        m.drop_database().await.unwrap();
    }

    /// The record lines of a dump (its header line, with the time of the
    /// export, left out).
    fn records(dump: &[u8]) -> Vec<String> {
        String::from_utf8(dump.to_vec())
            .unwrap()
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    }
}

/// A store filled with one record of every kind, for round-trip tests.
#[cfg(any(test, feature = "testing"))]
pub mod fixture {
    use super::*;

    /// A bit of everything, as a running server leaves it.
    pub async fn fill(s: &dyn Store) {
        s.create_role(&Role {
            id: "devs".into(),
            description: "developers".into(),
            users: vec![],
        })
        .await
        .unwrap();
        s.create_user(&User {
            login: "ann".into(),
            name: "Ann".into(),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            source: UserSource::Local,
            roles: vec!["devs".into()],
            created_at: now(),
            updated_at: now(),
        })
        .await
        .unwrap();
        s.grant(
            &Subject::Role("devs".into()),
            "/repositories/",
            &[Operation::Read],
        )
        .await
        .unwrap();
        let repo = Repository {
            id: "app".parse().unwrap(),
            content_type: "docker".into(),
            display_name: "App".into(),
            description: String::new(),
            notes: [("env".to_string(), "prod".to_string())].into(),
            importer_config: serde_json::json!({"feed": "http://127.0.0.1:1", "username": "u", "password": "feed-password"}),
            distributor_config: serde_json::json!({"repo-registry-id": "my/app", "token": "publish-token"}),
            retain_versions: None,
            created_at: now(),
            updated_at: now(),
        };
        s.create_repo(&repo).await.unwrap();
        let unit = |t: &str, k: &str| Unit {
            unit_type: t.parse().unwrap(),
            key: k.into(),
            metadata: serde_json::json!({"size": 3, "io.k8s.label": {"$weird": true}}),
            blobs: vec![Digest::of(k.as_bytes())],
        };
        s.apply_changes(
            &repo.id,
            &[
                UnitChange::Add(unit("tag", "latest")),
                UnitChange::Add(unit("manifest", "sha256:1")),
                UnitChange::Add(unit("tag", "old")),
            ],
            &VersionOrigin::new(VersionCause::Import, None),
        )
        .await
        .unwrap();
        // Version 2 drops a tag: the dump must carry both versions.
        s.apply_changes(
            &repo.id,
            &[UnitChange::Remove {
                unit_type: "tag".parse().unwrap(),
                key: "old".into(),
            }],
            &VersionOrigin::new(VersionCause::Remove, None),
        )
        .await
        .unwrap();
        s.create_group(&Group {
            id: "all".parse().unwrap(),
            display_name: "All".into(),
            description: String::new(),
            notes: Notes::new(),
            members: vec![repo.id.clone()],
        })
        .await
        .unwrap();
        s.put_publication(&Publication {
            plugin: "docker".into(),
            name: "my/app".into(),
            repo_id: repo.id.clone(),
            index: Digest::of(b"index"),
            version: Some(2),
            config: serde_json::json!({"token": "publish-token"}),
            published_at: now(),
            blobs: Vec::new(),
        })
        .await
        .unwrap();
        s.put_listener(&crate::db::Listener {
            id: "hook".into(),
            target: crate::db::Target::Http {
                url: "http://127.0.0.1:1/hook".into(),
                secret: "hook-secret".into(),
            },
            events: vec![],
            created_at: now(),
        })
        .await
        .unwrap();
        for state in [TaskState::Finished, TaskState::Running] {
            s.put_task(&Task {
                id: TaskId::new(),
                kind: TaskKind::Publish,
                state,
                locks: vec![TaskLock::Repository("app".parse().unwrap())],
                worker: None,
                created_at: now(),
                started_at: None,
                finished_at: None,
                progress: Progress::default(),
                result: None,
                error: None,
                input: serde_json::json!({"publish": {"repo": "app"}}),
                cancel_requested: false,
                log: Vec::new(),
            })
            .await
            .unwrap();
        }
        s.put_installed_plugin(&InstalledPlugin {
            name: "extra".into(),
            state: PluginState::Installed,
            version: "1.0.0".into(),
            wasm_sha256: Digest::of(b"wasm"),
            changed_at: now(),
        })
        .await
        .unwrap();
        s.put_remote(&crate::db::Remote {
            id: "hub".parse().unwrap(),
            content_type: "docker".into(),
            settings: serde_json::json!({"feed": "https://hub.example", "password": "remote-password"}),
            transport: crate::db::Transport {
                rate_limit: Some(10),
                ..Default::default()
            },
            created_at: now(),
            updated_at: now(),
        })
        .await
        .unwrap();
        s.put_schedule(&crate::db::Schedule::new(
            "nightly".into(),
            crate::db::ScheduledJob::Sync {
                repository: "app".parse().unwrap(),
            },
            "2026-12-01T00:00:00Z/P1D".into(),
            Some(now()),
        ))
        .await
        .unwrap();
    }
}
