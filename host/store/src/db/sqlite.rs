//! The embedded metadata store: one SQLite file (WAL mode) in the data
//! directory. Several processes on one machine (a server and `wharf worker`s)
//! may share it; SQLite's locking serialises writers.

use super::*;
use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// 2: `installed_plugins`. 3: `repository_settings`. 4: repository
/// versions (`associations.added_in`, `retired_associations`,
/// `repository_versions`). 6: `association_blobs`, `task_locks`,
/// `counters`.
const SCHEMA_VERSION: i64 = 6;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS repositories (
    id TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    doc TEXT NOT NULL
);
-- A filtered listing is driven from one of these, in id order, a page at
-- a time (`list_repos`); schema 4's indexes lacked the id and made SQLite
-- walk every repository.
CREATE INDEX IF NOT EXISTS repositories_by_type ON repositories(content_type, id);
CREATE TABLE IF NOT EXISTS repository_notes (
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (repo_id, name)
);
DROP INDEX IF EXISTS repository_notes_by_value;
CREATE INDEX IF NOT EXISTS repository_notes_by_value_id ON repository_notes(name, value, repo_id);
-- The distributor settings repositories are found by (db::indexed_settings).
CREATE TABLE IF NOT EXISTS repository_settings (
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (repo_id, name)
);
DROP INDEX IF EXISTS repository_settings_by_value;
CREATE INDEX IF NOT EXISTS repository_settings_by_value_id ON repository_settings(name, value, repo_id);
CREATE TABLE IF NOT EXISTS units (
    id INTEGER PRIMARY KEY,
    unit_type TEXT NOT NULL,
    key TEXT NOT NULL,
    metadata TEXT NOT NULL,
    blobs TEXT NOT NULL,
    UNIQUE (unit_type, key)
);
CREATE TABLE IF NOT EXISTS associations (
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    unit_type TEXT NOT NULL,
    key TEXT NOT NULL,
    unit_id INTEGER NOT NULL REFERENCES units(id),
    added_in INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, unit_type, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS associations_by_unit ON associations(unit_id);
CREATE INDEX IF NOT EXISTS associations_by_version ON associations(repo_id, added_in);
-- Each blob a repository's current associations' units name, one row per
-- association: whether a repository holds a blob, and which repositories
-- hold it, are index lookups (`repo_holds_blob`, `repos_holding_blob`).
-- Kept by the triggers below, so every writer keeps it (schema 6). An
-- association's unit never changes: units are unique by type and key, the
-- association's own key.
CREATE TABLE IF NOT EXISTS association_blobs (
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    blob TEXT NOT NULL,
    unit_type TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (repo_id, blob, unit_type, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS association_blobs_by_blob ON association_blobs(blob, repo_id);
CREATE TRIGGER IF NOT EXISTS association_blobs_insert AFTER INSERT ON associations BEGIN
    INSERT OR IGNORE INTO association_blobs (repo_id, blob, unit_type, key)
    SELECT NEW.repo_id, j.value, NEW.unit_type, NEW.key
    FROM units u, json_each(u.blobs) j WHERE u.id = NEW.unit_id;
END;
CREATE TRIGGER IF NOT EXISTS association_blobs_delete AFTER DELETE ON associations BEGIN
    DELETE FROM association_blobs
    WHERE repo_id = OLD.repo_id AND unit_type = OLD.unit_type AND key = OLD.key
      AND blob IN (SELECT j.value FROM units u, json_each(u.blobs) j WHERE u.id = OLD.unit_id);
END;
-- Associations an older version held and a later one removed (db::version).
CREATE TABLE IF NOT EXISTS retired_associations (
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    unit_type TEXT NOT NULL,
    key TEXT NOT NULL,
    unit_id INTEGER NOT NULL REFERENCES units(id),
    added_in INTEGER NOT NULL,
    removed_in INTEGER NOT NULL,
    PRIMARY KEY (repo_id, unit_type, key, added_in)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS retired_by_unit ON retired_associations(unit_id);
CREATE INDEX IF NOT EXISTS retired_by_addition ON retired_associations(repo_id, added_in);
CREATE INDEX IF NOT EXISTS retired_by_removal ON retired_associations(repo_id, removed_in);
CREATE TABLE IF NOT EXISTS repository_versions (
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (repo_id, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS publications (
    plugin TEXT NOT NULL,
    name TEXT NOT NULL,
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    doc TEXT NOT NULL,
    PRIMARY KEY (plugin, name)
);
CREATE UNIQUE INDEX IF NOT EXISTS publications_by_repo ON publications(plugin, repo_id);
-- Deleting a repository cascades to its publications and group
-- memberships: these let the cascade find them without a scan.
CREATE INDEX IF NOT EXISTS publications_by_repo_id ON publications(repo_id);
-- The publications' change feed (`publication_changes`): one row per
-- (plugin, repository) whose publication ever changed, renumbered at each
-- change by the triggers (cascades from a deleted repository included).
CREATE TABLE IF NOT EXISTS publication_feed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin TEXT NOT NULL,
    repo_id TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS publication_feed_by_key ON publication_feed(plugin, repo_id);
CREATE TRIGGER IF NOT EXISTS publication_feed_insert AFTER INSERT ON publications BEGIN
    INSERT OR REPLACE INTO publication_feed (plugin, repo_id) VALUES (NEW.plugin, NEW.repo_id);
END;
CREATE TRIGGER IF NOT EXISTS publication_feed_update AFTER UPDATE ON publications BEGIN
    INSERT OR REPLACE INTO publication_feed (plugin, repo_id) VALUES (OLD.plugin, OLD.repo_id);
    INSERT OR REPLACE INTO publication_feed (plugin, repo_id) VALUES (NEW.plugin, NEW.repo_id);
END;
CREATE TRIGGER IF NOT EXISTS publication_feed_delete AFTER DELETE ON publications BEGIN
    INSERT OR REPLACE INTO publication_feed (plugin, repo_id) VALUES (OLD.plugin, OLD.repo_id);
END;
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    doc TEXT NOT NULL
);
DROP INDEX IF EXISTS tasks_by_state;
CREATE INDEX IF NOT EXISTS tasks_by_state_id ON tasks(state, id);
CREATE INDEX IF NOT EXISTS tasks_by_kind_id ON tasks(kind, id);
-- The locks each task holds, so a repository's tasks (its page in the
-- console, what a new task waits for) are an index range, newest first,
-- not a read of every task ever run (schema 6). A task's locks never
-- change after it is written.
CREATE TABLE IF NOT EXISTS task_locks (
    lock TEXT NOT NULL,
    task_id TEXT NOT NULL,
    PRIMARY KEY (lock, task_id)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS task_locks_insert AFTER INSERT ON tasks BEGIN
    INSERT OR IGNORE INTO task_locks (lock, task_id)
    SELECT j.value, NEW.id FROM json_each(NEW.doc, '$.locks') j;
END;
CREATE TRIGGER IF NOT EXISTS task_locks_delete AFTER DELETE ON tasks BEGIN
    DELETE FROM task_locks WHERE task_id = OLD.id
        AND lock IN (SELECT j.value FROM json_each(OLD.doc, '$.locks') j);
END;
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, repo_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS group_members_by_repo ON group_members(repo_id);
CREATE TABLE IF NOT EXISTS listeners (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS remotes (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    login TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS roles (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS role_members (
    role_id TEXT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    login TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
    PRIMARY KEY (role_id, login)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS role_members_by_login ON role_members(login);
-- subject: 'user:<login>' or 'role:<id>'; operations: a JSON array.
CREATE TABLE IF NOT EXISTS permissions (
    subject TEXT NOT NULL,
    resource TEXT NOT NULL,
    operations TEXT NOT NULL,
    PRIMARY KEY (subject, resource)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_tokens (
    hash TEXT PRIMARY KEY,
    login TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
-- Moves with every change to `permissions` (`permissions_seq`): a
-- permission list read at the same number is current (schema 6).
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES ('permissions', 0);
CREATE TRIGGER IF NOT EXISTS permissions_seq_insert AFTER INSERT ON permissions BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'permissions';
END;
CREATE TRIGGER IF NOT EXISTS permissions_seq_update AFTER UPDATE ON permissions BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'permissions';
END;
CREATE TRIGGER IF NOT EXISTS permissions_seq_delete AFTER DELETE ON permissions BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'permissions';
END;
CREATE INDEX IF NOT EXISTS api_tokens_by_login ON api_tokens(login);
CREATE INDEX IF NOT EXISTS api_tokens_by_expiry ON api_tokens(expires_at);
CREATE TABLE IF NOT EXISTS installed_plugins (
    name TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"#;

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Open (creating if needed) the store at `path`. The file is private
    /// (0600), and so are its `-wal` and `-shm` files, which SQLite creates
    /// with the database file's mode.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        wharf_core::private_files::private_file(path)?;
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            wharf_core::private_files::tighten(
                Path::new(&side),
                wharf_core::private_files::FILE_MODE,
            )?;
        }
        // FULL: a commit that acknowledges a push, an import or a task's
        // end is on disk when it returns (NORMAL in WAL mode may lose the
        // last commits to a power cut).
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 64 MiB of page cache (the default is 2 MiB): the indexes of a
        // hundred thousand repositories stay in memory.
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        anyhow::ensure!(
            version <= SCHEMA_VERSION,
            "{} has schema version {version}, newer than this wharf understands ({SCHEMA_VERSION}); upgrade wharf",
            path.display()
        );
        if (1..4).contains(&version) {
            // Associations from before versions belong to version 0.
            conn.execute_batch(
                "ALTER TABLE associations ADD COLUMN added_in INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        conn.execute_batch(SCHEMA)?;
        if (1..4).contains(&version) {
            initial_versions(&conn)?;
        }
        if (1..3).contains(&version) {
            // Repositories from before the settings index: index them now.
            conn.execute_batch(&format!(
                "INSERT OR IGNORE INTO repository_settings (repo_id, name, value)
                 SELECT r.id, j.key, j.value FROM repositories r,
                     json_each(r.doc, '$.distributor_config') j
                 WHERE j.type = 'text' AND length(j.value) <= {MAX_INDEXED_SETTING};"
            ))?;
        }
        if (1..6).contains(&version) {
            // The blobs of the associations, and the locks of the tasks,
            // written before their indexes.
            conn.execute_batch(
                "INSERT OR IGNORE INTO association_blobs (repo_id, blob, unit_type, key)
                 SELECT a.repo_id, j.value, a.unit_type, a.key
                 FROM associations a JOIN units u ON u.id = a.unit_id, json_each(u.blobs) j;
                 INSERT OR IGNORE INTO task_locks (lock, task_id)
                 SELECT j.value, t.id FROM tasks t, json_each(t.doc, '$.locks') j;",
            )?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` on the connection off the async threads.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.run_then(f, Ok).await
    }

    /// [`Self::run`], then `then` on what it read, on the same blocking
    /// thread but with the connection free for others (parsing a page of
    /// documents, say).
    async fn run_then<R: Send + 'static, T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<R> + Send + 'static,
        then: impl FnOnce(R) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let read = {
                let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut c)?
            };
            then(read)
        })
        .await
        .map_err(|e| StoreError::Backend(anyhow::anyhow!("store worker panicked: {e}")))?
    }
}

fn backend(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Backend(e.into())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        backend(e)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        backend(e)
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// The statement and arguments of one `list_repos` page. It is driven from
/// the narrowest index the filters allow, in repository id order: a
/// setting's `(name, value, repo_id)`, else the first note's, else
/// `(content_type, id)`, else the primary key. The other filters are point
/// lookups on the driving row. `CROSS JOIN` keeps SQLite from reordering
/// the join, so a page costs O(page) however many repositories there are.
fn repo_listing(q: &RepoQuery) -> (String, Vec<String>) {
    let mut args: Vec<String> = vec![q.after.clone().unwrap_or_default()];
    let mut arg = |v: &str| {
        args.push(v.to_string());
        format!("?{}", args.len())
    };
    let mut notes = q.notes.iter();
    let driver = match &q.setting {
        Some((k, v)) => Some(("repository_settings", k, v)),
        None => notes.next().map(|(k, v)| ("repository_notes", k, v)),
    };
    let (mut sql, id) = if let Some((table, k, v)) = driver {
        let (k, v) = (arg(k), arg(v));
        (
            format!(
                "SELECT r.doc FROM {table} d CROSS JOIN repositories r ON r.id = d.repo_id
                 WHERE d.name = {k} AND d.value = {v} AND d.repo_id > ?1"
            ),
            "d.repo_id",
        )
    } else {
        (
            String::from("SELECT r.doc FROM repositories r WHERE r.id > ?1"),
            "r.id",
        )
    };
    if let Some(t) = &q.content_type {
        sql += &format!(" AND r.content_type = {}", arg(t));
    }
    for (k, v) in notes {
        let (k, v) = (arg(k), arg(v));
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM repository_notes n WHERE n.repo_id = r.id AND n.name = {k} AND n.value = {v})"
        );
    }
    sql += &format!(" ORDER BY {id} LIMIT {}", q.limit.max(1));
    (sql, args)
}

/// The statement and arguments of a task listing, newest first: driven
/// from the state's or the kind's index when one is asked for (so waiting
/// tasks are found without reading every finished one), else the primary
/// key.
fn task_listing(q: &TaskQuery) -> (String, Vec<String>) {
    let mut filters = Vec::new();
    let mut args = Vec::new();
    if let Some(state) = q.state {
        args.push(state.as_str().to_string());
        filters.push(format!("t.state = ?{}", args.len()));
    }
    if let Some(kind) = q.kind {
        args.push(kind.as_str().to_string());
        filters.push(format!("t.kind = ?{}", args.len()));
    }
    // A lock drives the listing from `task_locks`, newest first, unless
    // the state asked for is a live one: there are few of those in all,
    // and a repository may have run thousands of tasks, so the state's
    // index drives and each task's lock is a point lookup.
    let live = matches!(q.state, Some(TaskState::Waiting | TaskState::Running));
    let (from, order) = match &q.lock {
        Some(lock) if live => {
            args.push(lock.to_string());
            filters.push(format!(
                "EXISTS (SELECT 1 FROM task_locks l WHERE l.lock = ?{} AND l.task_id = t.id)",
                args.len()
            ));
            ("tasks t", "t.id")
        }
        Some(lock) => {
            // `+`: the state's and kind's indexes must not drive (SQLite
            // would then sort every task in that state).
            for f in filters.iter_mut() {
                f.insert(0, '+');
            }
            args.push(lock.to_string());
            filters.push(format!("l.lock = ?{}", args.len()));
            ("task_locks l JOIN tasks t ON t.id = l.task_id", "l.task_id")
        }
        None => ("tasks t", "t.id"),
    };
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    };
    (
        format!(
            "SELECT t.doc FROM {from}{filter} ORDER BY {order} DESC LIMIT {}",
            q.limit.max(1)
        ),
        args,
    )
}

fn write_notes(tx: &rusqlite::Transaction, repo: &Repository) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM repository_notes WHERE repo_id = ?1",
        [repo.id.as_str()],
    )?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO repository_notes (repo_id, name, value) VALUES (?1, ?2, ?3)",
    )?;
    for (k, v) in &repo.notes {
        ins.execute(params![repo.id.as_str(), k, v])?;
    }
    tx.execute(
        "DELETE FROM repository_settings WHERE repo_id = ?1",
        [repo.id.as_str()],
    )?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO repository_settings (repo_id, name, value) VALUES (?1, ?2, ?3)",
    )?;
    for (k, v) in indexed_settings(repo) {
        ins.execute(params![repo.id.as_str(), k, v])?;
    }
    Ok(())
}

/// Write a group's document and members; a member that is not a repository
/// fails the whole change.
/// Create (`insert`) or update a group, its members too unless `Keep`.
fn write_group(
    tx: &rusqlite::Transaction,
    g: &Group,
    insert: bool,
    members: Members,
) -> StoreResult<()> {
    // Members live in their own table (so deleting a repository removes it
    // from its groups); the document holds the rest.
    let mut doc = g.clone();
    doc.members.clear();
    let doc = serde_json::to_string(&doc)?;
    if insert {
        match tx.execute(
            "INSERT INTO groups (id, doc) VALUES (?1, ?2)",
            params![g.id.as_str(), doc],
        ) {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("group {}", g.id)));
            }
            r => r?,
        };
    } else if tx.execute(
        "UPDATE groups SET doc = ?2 WHERE id = ?1",
        params![g.id.as_str(), doc],
    )? == 0
    {
        return Err(StoreError::NotFound(format!("group {}", g.id)));
    }
    if members == Members::Keep {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM group_members WHERE group_id = ?1",
        [g.id.as_str()],
    )?;
    for m in &g.members {
        if tx
            .query_row(
                "SELECT 1 FROM repositories WHERE id = ?1",
                [m.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_none()
        {
            return Err(StoreError::NotFound(format!("repository {m}")));
        }
        tx.execute(
            "INSERT OR IGNORE INTO group_members (group_id, repo_id) VALUES (?1, ?2)",
            params![g.id.as_str(), m.as_str()],
        )?;
    }
    Ok(())
}

fn read_group(c: &Connection, doc: String) -> StoreResult<Group> {
    let mut g: Group = serde_json::from_str(&doc)?;
    let mut stmt =
        c.prepare_cached("SELECT repo_id FROM group_members WHERE group_id = ?1 ORDER BY repo_id")?;
    for id in stmt.query_map([g.id.as_str()], |r| r.get::<_, String>(0))? {
        g.members.push(id?.parse().map_err(backend)?);
    }
    Ok(g)
}

fn subject_key(s: &Subject) -> String {
    match s {
        Subject::User(login) => format!("user:{login}"),
        Subject::Role(id) => format!("role:{id}"),
    }
}

fn subject_from_key(k: &str) -> StoreResult<Subject> {
    match k.split_once(':') {
        Some(("user", login)) => Ok(Subject::User(login.to_string())),
        Some(("role", id)) => Ok(Subject::Role(id.to_string())),
        _ => Err(backend(anyhow::anyhow!("bad permission subject {k:?}"))),
    }
}

fn subject_exists(c: &Connection, s: &Subject) -> StoreResult<bool> {
    let (sql, key) = match s {
        Subject::User(login) => ("SELECT 1 FROM users WHERE login = ?1", login),
        Subject::Role(id) => ("SELECT 1 FROM roles WHERE id = ?1", id),
    };
    Ok(c.query_row(sql, [key], |_| Ok(())).optional()?.is_some())
}

fn subject_name(s: &Subject) -> String {
    match s {
        Subject::User(login) => format!("user {login}"),
        Subject::Role(id) => format!("role {id}"),
    }
}

fn read_ops(c: &Connection, subject: &str, resource: &str) -> StoreResult<Vec<Operation>> {
    let ops: Option<String> = c
        .query_row(
            "SELECT operations FROM permissions WHERE subject = ?1 AND resource = ?2",
            params![subject, resource],
            |r| r.get(0),
        )
        .optional()?;
    Ok(ops
        .map(|o| serde_json::from_str(&o))
        .transpose()?
        .unwrap_or_default())
}

fn write_ops(
    tx: &rusqlite::Transaction,
    subject: &str,
    resource: &str,
    ops: &[Operation],
) -> StoreResult<()> {
    if ops.is_empty() {
        tx.execute(
            "DELETE FROM permissions WHERE subject = ?1 AND resource = ?2",
            params![subject, resource],
        )?;
    } else {
        tx.execute(
            "INSERT OR REPLACE INTO permissions (subject, resource, operations) VALUES (?1, ?2, ?3)",
            params![subject, resource, serde_json::to_string(ops)?],
        )?;
    }
    Ok(())
}

/// Write a user's document and memberships; a role that does not exist
/// fails the whole change.
fn write_user(tx: &rusqlite::Transaction, u: &User, insert: bool) -> StoreResult<()> {
    let mut doc = u.clone();
    doc.roles.clear();
    let doc = serde_json::to_string(&doc)?;
    if insert {
        match tx.execute(
            "INSERT INTO users (login, doc) VALUES (?1, ?2)",
            params![u.login, doc],
        ) {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("user {}", u.login)));
            }
            r => r?,
        };
    } else if tx.execute(
        "UPDATE users SET doc = ?2 WHERE login = ?1",
        params![u.login, doc],
    )? == 0
    {
        return Err(StoreError::NotFound(format!("user {}", u.login)));
    }
    tx.execute("DELETE FROM role_members WHERE login = ?1", [&u.login])?;
    for role in &u.roles {
        if !subject_exists(tx, &Subject::Role(role.clone()))? {
            return Err(StoreError::NotFound(format!("role {role}")));
        }
        tx.execute(
            "INSERT OR IGNORE INTO role_members (role_id, login) VALUES (?1, ?2)",
            params![role, u.login],
        )?;
    }
    Ok(())
}

fn read_user(c: &Connection, doc: String) -> StoreResult<User> {
    let mut u: User = serde_json::from_str(&doc)?;
    let mut stmt =
        c.prepare_cached("SELECT role_id FROM role_members WHERE login = ?1 ORDER BY role_id")?;
    u.roles = stmt
        .query_map([&u.login], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(u)
}

fn read_role(c: &Connection, doc: String) -> StoreResult<Role> {
    let mut r: Role = serde_json::from_str(&doc)?;
    let mut stmt =
        c.prepare_cached("SELECT login FROM role_members WHERE role_id = ?1 ORDER BY login")?;
    r.users = stmt
        .query_map([&r.id], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(r)
}

/// Version 0, holding its content then, for every repository older than
/// versions (schema 4).
fn initial_versions(c: &Connection) -> anyhow::Result<()> {
    let ids: Vec<String> = c
        .prepare(
            "SELECT id FROM repositories r WHERE NOT EXISTS \
             (SELECT 1 FROM repository_versions v WHERE v.repo_id = r.id)",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        let v = RepoVersion::initial(id.parse()?, unit_counts(c, &id)?);
        put_version(c, &v)?;
    }
    Ok(())
}

fn unit_counts(c: &Connection, repo: &str) -> StoreResult<UnitCounts> {
    let mut stmt = c.prepare_cached(
        "SELECT unit_type, COUNT(*) FROM associations WHERE repo_id = ?1 GROUP BY unit_type",
    )?;
    let rows = stmt.query_map([repo], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
    })?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (t, n) = row?;
        out.insert(t.parse().map_err(backend)?, n);
    }
    Ok(out)
}

fn put_version(c: &Connection, v: &RepoVersion) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO repository_versions (repo_id, number, doc) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        v.repo_id.as_str(),
        v.number,
        serde_json::to_string(v)?
    ])?;
    Ok(())
}

fn read_version(doc: String) -> StoreResult<RepoVersion> {
    Ok(serde_json::from_str(&doc)?)
}

fn read_repo(c: &Connection, id: &RepoId) -> StoreResult<Option<Repository>> {
    let doc: Option<String> = c
        .query_row(
            "SELECT doc FROM repositories WHERE id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
}

/// Start a change to `repo`'s content: its version limit and its latest
/// version, read inside the change's (immediate) transaction so that
/// concurrent changes number their versions without gaps or duplicates.
fn begin_version(c: &Connection, repo: &RepoId) -> StoreResult<(Option<u64>, RepoVersion)> {
    let Some(record) = read_repo(c, repo)? else {
        return Err(StoreError::NotFound(format!("repository {repo}")));
    };
    let retain = record.retain_versions;
    let latest = c
        .query_row(
            "SELECT doc FROM repository_versions WHERE repo_id = ?1 ORDER BY number DESC LIMIT 1",
            [repo.as_str()],
            |r| r.get::<_, String>(0),
        )
        .optional()?;
    let latest = match latest {
        Some(doc) => read_version(doc)?,
        None => RepoVersion::initial(repo.clone(), unit_counts(c, repo.as_str())?),
    };
    Ok((retain, latest))
}

/// End a change begun with [`begin_version`]: record the new version (and
/// drop what the version limit no longer keeps) and commit, or, when
/// nothing changed, roll back and make no version.
fn commit_version(
    tx: rusqlite::Transaction,
    (retain, latest): (Option<u64>, RepoVersion),
    origin: &VersionOrigin,
    added: UnitCounts,
    removed: UnitCounts,
) -> StoreResult<Option<RepoVersion>> {
    if added.is_empty() && removed.is_empty() {
        return Ok(None);
    }
    let v = latest.next(origin, added, removed);
    put_version(&tx, &v)?;
    if let Some(keep) = retain
        && v.number + 1 > keep.max(1)
    {
        let oldest = v.number + 1 - keep.max(1);
        // Versions a publication serves stay, with what they hold: the
        // publication serves them until the next publish.
        tx.execute(
            "DELETE FROM repository_versions WHERE repo_id = ?1 AND number < ?2
             AND number NOT IN (SELECT json_extract(p.doc, '$.version') FROM publications p
                                WHERE p.repo_id = ?1 AND json_extract(p.doc, '$.version') IS NOT NULL)",
            params![v.repo_id.as_str(), oldest],
        )?;
        // Visible only in versions before `oldest`.
        tx.execute(
            "DELETE FROM retired_associations WHERE repo_id = ?1 AND removed_in <= ?2
             AND NOT EXISTS (SELECT 1 FROM publications p WHERE p.repo_id = ?1
                             AND json_extract(p.doc, '$.version') >= retired_associations.added_in
                             AND json_extract(p.doc, '$.version') < retired_associations.removed_in)",
            params![v.repo_id.as_str(), oldest],
        )?;
    }
    tx.commit()?;
    Ok(Some(v))
}

/// The associations version ?2 of repository ?1 holds, as a subquery with
/// the columns of `associations`.
/// A page of publications after a (plugin, name), in the primary key's order.
const PUBLICATIONS_AFTER: &str = "SELECT doc FROM publications WHERE (plugin, name) > (?1, ?2) \
                                  ORDER BY plugin, name LIMIT ?3";

const VERSION_ROWS: &str = "(SELECT repo_id, unit_type, key, unit_id FROM associations \
     WHERE repo_id = ?1 AND added_in <= ?2 \
     UNION ALL SELECT repo_id, unit_type, key, unit_id FROM retired_associations \
     WHERE repo_id = ?1 AND added_in <= ?2 AND removed_in > ?2)";

fn get_version_record(
    c: &Connection,
    repo: &RepoId,
    number: u64,
) -> StoreResult<Option<RepoVersion>> {
    c.query_row(
        "SELECT doc FROM repository_versions WHERE repo_id = ?1 AND number = ?2",
        params![repo.as_str(), number],
        |r| r.get::<_, String>(0),
    )
    .optional()?
    .map(read_version)
    .transpose()
}

fn unit_refs(c: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<Vec<UnitRef>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(p, |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (t, key) = row?;
        out.push(UnitRef {
            unit_type: t.parse().map_err(backend)?,
            key,
        });
    }
    Ok(out)
}

/// Create `u` unless it exists (units are immutable); its row id.
fn put_unit(tx: &rusqlite::Transaction, u: &Unit) -> StoreResult<i64> {
    tx.prepare_cached(
        "INSERT INTO units (unit_type, key, metadata, blobs) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (unit_type, key) DO NOTHING",
    )?
    .execute(params![
        u.unit_type.as_str(),
        u.key,
        serde_json::to_string(&u.metadata)?,
        serde_json::to_string(&u.blobs)?
    ])?;
    Ok(tx
        .prepare_cached("SELECT id FROM units WHERE unit_type = ?1 AND key = ?2")?
        .query_row(params![u.unit_type.as_str(), u.key], |r| r.get(0))?)
}

/// The units a query of `unit_type, key, metadata, blobs` rows answers.
fn query_units(c: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<Vec<Unit>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(p, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (t, k, m, b) = row?;
        out.push(row_unit(t, k, m, b)?);
    }
    Ok(out)
}

fn row_unit(unit_type: String, key: String, metadata: String, blobs: String) -> StoreResult<Unit> {
    Ok(Unit {
        unit_type: unit_type.parse().map_err(backend)?,
        key,
        metadata: serde_json::from_str(&metadata)?,
        blobs: serde_json::from_str(&blobs)?,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

#[async_trait::async_trait]
impl RepositoryStore for SqliteStore {
    async fn create_repo(&self, repo: &Repository) -> StoreResult<()> {
        let repo = repo.clone();
        self.run(move |c| {
            let tx = c.transaction()?;
            let doc = serde_json::to_string(&repo)?;
            match tx.execute(
                "INSERT INTO repositories (id, content_type, doc) VALUES (?1, ?2, ?3)",
                params![repo.id.as_str(), repo.content_type, doc],
            ) {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict(format!("repository {}", repo.id)));
                }
                r => r?,
            };
            write_notes(&tx, &repo)?;
            put_version(
                &tx,
                &RepoVersion::initial(repo.id.clone(), UnitCounts::new()),
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_repo(&self, id: &RepoId) -> StoreResult<Option<Repository>> {
        let id = id.clone();
        self.run(move |c| read_repo(c, &id)).await
    }

    async fn update_repo(&self, repo: &Repository) -> StoreResult<()> {
        let repo = repo.clone();
        self.run(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE repositories SET doc = ?2 WHERE id = ?1",
                params![repo.id.as_str(), serde_json::to_string(&repo)?],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("repository {}", repo.id)));
            }
            write_notes(&tx, &repo)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_repo(&self, id: &RepoId) -> StoreResult<bool> {
        let id = id.clone();
        self.run(move |c| {
            Ok(c.execute("DELETE FROM repositories WHERE id = ?1", [id.as_str()])? > 0)
        })
        .await
    }

    async fn repo_flags(
        &self,
        key: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(RepoId, bool)>> {
        // One value of each document, read by SQLite: no document is
        // turned into a repository.
        let path = format!("$.distributor_config.{}", serde_json::to_string(key)?);
        let after = after.unwrap_or_default().to_string();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, json_type(doc, ?2) = 'true' FROM repositories
                 WHERE id > ?1 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![after, path, limit.max(1)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<bool>>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, on) = row?;
                out.push((id.parse().map_err(backend)?, on == Some(true)));
            }
            Ok(out)
        })
        .await
    }

    async fn list_repos(&self, q: &RepoQuery) -> StoreResult<Vec<Repository>> {
        if !q.setting_is_indexed() {
            return Ok(Vec::new());
        }
        let q = q.clone();
        self.run(move |c| {
            let (sql, args) = repo_listing(&q);
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, String>(0)
            })?;
            let mut out = Vec::new();
            for doc in rows {
                out.push(serde_json::from_str(&doc?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn apply_changes(
        &self,
        repo: &RepoId,
        changes: &[UnitChange],
        origin: &VersionOrigin,
    ) -> StoreResult<Option<RepoVersion>> {
        let (repo, changes, origin) = (repo.clone(), changes.to_vec(), origin.clone());
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let begun = begin_version(&tx, &repo)?;
            let n = begun.1.number + 1;
            let (mut added, mut removed) = (UnitCounts::new(), UnitCounts::new());
            {
                let mut assoc = tx.prepare_cached(
                    "INSERT OR IGNORE INTO associations (repo_id, unit_type, key, unit_id, added_in)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut retire = tx.prepare_cached(
                    "INSERT INTO retired_associations (repo_id, unit_type, key, unit_id, added_in, removed_in)
                     SELECT repo_id, unit_type, key, unit_id, added_in, ?4 FROM associations
                     WHERE repo_id = ?1 AND unit_type = ?2 AND key = ?3",
                )?;
                let mut unassoc = tx.prepare_cached(
                    "DELETE FROM associations WHERE repo_id = ?1 AND unit_type = ?2 AND key = ?3",
                )?;
                for change in last_change_per_unit(&changes) {
                    match change {
                        UnitChange::Add(u) => {
                            let id = put_unit(&tx, u)?;
                            if assoc.execute(params![repo.as_str(), u.unit_type.as_str(), u.key, id, n])? > 0 {
                                *added.entry(u.unit_type.clone()).or_default() += 1;
                            }
                        }
                        UnitChange::Remove { unit_type, key } => {
                            retire.execute(params![repo.as_str(), unit_type.as_str(), key, n])?;
                            if unassoc.execute(params![repo.as_str(), unit_type.as_str(), key])? > 0 {
                                *removed.entry(unit_type.clone()).or_default() += 1;
                            }
                        }
                    }
                }
            }
            commit_version(tx, begun, &origin, added, removed)
        })
        .await
    }

    async fn list_version_units(
        &self,
        repo: &RepoId,
        version: u64,
        unit_type: &UnitType,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Unit>> {
        let (repo, unit_type, after) = (
            repo.clone(),
            unit_type.to_string(),
            after.map(str::to_string),
        );
        self.run(move |c| {
            // Each side walks its primary key in key order and stops at the
            // page's end: a page costs the page, not the repository.
            query_units(
                c,
                "SELECT u.unit_type, u.key, u.metadata, u.blobs FROM (
                     SELECT * FROM (SELECT unit_type, key, unit_id FROM associations
                         WHERE repo_id = ?1 AND unit_type = ?3 AND key > ?4 AND added_in <= ?2
                         ORDER BY key LIMIT ?5)
                     UNION ALL
                     SELECT * FROM (SELECT unit_type, key, unit_id FROM retired_associations
                         WHERE repo_id = ?1 AND unit_type = ?3 AND key > ?4 AND added_in <= ?2 AND removed_in > ?2
                         ORDER BY key LIMIT ?5)
                 ) a JOIN units u ON u.id = a.unit_id ORDER BY a.key LIMIT ?5",
                params![repo.as_str(), version, unit_type, after.unwrap_or_default(), limit.max(1)],
            )
        })
        .await
    }

    async fn get_version_unit(
        &self,
        repo: &RepoId,
        version: u64,
        unit_type: &UnitType,
        key: &str,
    ) -> StoreResult<Option<Unit>> {
        let (repo, unit_type, key) = (repo.clone(), unit_type.to_string(), key.to_string());
        self.run(move |c| {
            let sql = format!(
                "SELECT u.unit_type, u.key, u.metadata, u.blobs FROM {VERSION_ROWS} a JOIN units u ON u.id = a.unit_id
                 WHERE a.unit_type = ?3 AND a.key = ?4"
            );
            let found = query_units(c, &sql, params![repo.as_str(), version, unit_type, key])?;
            Ok(found.into_iter().next())
        })
        .await
    }

    async fn list_versions(
        &self,
        repo: &RepoId,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<RepoVersion>> {
        let repo = repo.clone();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT doc FROM repository_versions WHERE repo_id = ?1 AND number > ?2 ORDER BY number LIMIT ?3",
            )?;
            let after = after.map_or(-1, |n| n as i64);
            let rows = stmt.query_map(params![repo.as_str(), after, limit.max(1)], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for doc in rows {
                out.push(read_version(doc?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_version(&self, repo: &RepoId, number: u64) -> StoreResult<Option<RepoVersion>> {
        let repo = repo.clone();
        self.run(move |c| get_version_record(c, &repo, number))
            .await
    }

    async fn latest_version(&self, repo: &RepoId) -> StoreResult<Option<RepoVersion>> {
        let repo = repo.clone();
        self.run(move |c| {
            c.query_row(
                "SELECT doc FROM repository_versions WHERE repo_id = ?1 ORDER BY number DESC LIMIT 1",
                [repo.as_str()],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(read_version)
            .transpose()
        })
        .await
    }

    async fn diff_versions(&self, repo: &RepoId, from: u64, to: u64) -> StoreResult<VersionDiff> {
        let repo = repo.clone();
        self.run(move |c| {
            let tx = c.transaction()?;
            for n in [from, to] {
                if get_version_record(&tx, &repo, n)?.is_none() {
                    return Err(StoreError::NotFound(format!("version {n} of repository {repo}")));
                }
            }
            let (lo, hi) = (from.min(to), from.max(to));
            let gained = unit_refs(
                &tx,
                "SELECT unit_type, key FROM associations WHERE repo_id = ?1 AND added_in > ?2 AND added_in <= ?3
                 UNION SELECT unit_type, key FROM retired_associations
                 WHERE repo_id = ?1 AND added_in > ?2 AND added_in <= ?3 AND removed_in > ?3",
                params![repo.as_str(), lo, hi],
            )?;
            let lost = unit_refs(
                &tx,
                "SELECT unit_type, key FROM retired_associations
                 WHERE repo_id = ?1 AND removed_in > ?2 AND removed_in <= ?3 AND added_in <= ?2",
                params![repo.as_str(), lo, hi],
            )?;
            Ok(version::diff(from, to, gained, lost))
        })
        .await
    }

    async fn version_blob_refs(
        &self,
        repo: &RepoId,
        version: u64,
    ) -> StoreResult<Vec<(Digest, u32)>> {
        let repo = repo.clone();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT j.value, COUNT(*) FROM {VERSION_ROWS} a JOIN units u ON u.id = a.unit_id, json_each(u.blobs) j GROUP BY j.value"
            ))?;
            let mut out = Vec::new();
            let rows = stmt.query_map(params![repo.as_str(), version], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
            })?;
            for row in rows {
                let (d, n) = row?;
                out.push((d.parse().map_err(backend)?, n));
            }
            Ok(out)
        })
        .await
    }

    async fn list_history(
        &self,
        repo: &RepoId,
        after: Option<&(UnitRef, u64)>,
        limit: u32,
    ) -> StoreResult<Vec<HistoryEntry>> {
        let repo = repo.clone();
        let after = after.map(|(r, n)| (r.unit_type.to_string(), r.key.clone(), *n as i64));
        self.run(move |c| {
            let (t, k, n) = after.unwrap_or_else(|| (String::new(), String::new(), -1));
            let mut stmt = c.prepare_cached(
                "SELECT u.unit_type, u.key, u.metadata, u.blobs, a.added_in, a.removed_in FROM
                 (SELECT unit_type, key, unit_id, added_in, NULL AS removed_in FROM associations WHERE repo_id = ?1
                  UNION ALL SELECT unit_type, key, unit_id, added_in, removed_in FROM retired_associations WHERE repo_id = ?1) a
                 JOIN units u ON u.id = a.unit_id
                 WHERE (a.unit_type, a.key, a.added_in) > (?2, ?3, ?4)
                 ORDER BY a.unit_type, a.key, a.added_in LIMIT ?5",
            )?;
            let rows = stmt.query_map(params![repo.as_str(), t, k, n, limit.max(1)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, u64>(4)?, r.get::<_, Option<u64>>(5)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (t, k, m, b, added_in, removed_in) = row?;
                out.push(HistoryEntry { unit: row_unit(t, k, m, b)?, added_in, removed_in });
            }
            Ok(out)
        })
        .await
    }

    async fn import_history(
        &self,
        repo: &RepoId,
        entries: &[HistoryEntry],
        versions: &[RepoVersion],
    ) -> StoreResult<()> {
        let (repo, entries, versions) = (repo.clone(), entries.to_vec(), versions.to_vec());
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            begin_version(&tx, &repo)?;
            {
                let mut current = tx.prepare_cached(
                    // Not REPLACE: its delete would not fire the triggers
                    // that keep `association_blobs`. The unit is the one
                    // the key names already.
                    "INSERT INTO associations (repo_id, unit_type, key, unit_id, added_in)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (repo_id, unit_type, key)
                     DO UPDATE SET added_in = excluded.added_in",
                )?;
                let mut retired = tx.prepare_cached(
                    "INSERT OR REPLACE INTO retired_associations (repo_id, unit_type, key, unit_id, added_in, removed_in)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for e in &entries {
                    let u = &e.unit;
                    let id = put_unit(&tx, u)?;
                    match e.removed_in {
                        None => current.execute(params![repo.as_str(), u.unit_type.as_str(), u.key, id, e.added_in])?,
                        Some(r) => retired.execute(params![repo.as_str(), u.unit_type.as_str(), u.key, id, e.added_in, r])?,
                    };
                }
            }
            if !versions.is_empty() {
                tx.execute("DELETE FROM repository_versions WHERE repo_id = ?1", [repo.as_str()])?;
            }
            for v in &versions {
                if v.repo_id != repo {
                    return Err(backend(anyhow::anyhow!(
                        "version {} of repository {} given for repository {repo}",
                        v.number, v.repo_id
                    )));
                }
                put_version(&tx, v)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_units(
        &self,
        repo: &RepoId,
        unit_type: &UnitType,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Unit>> {
        let unit_type = unit_type.as_str();
        let (repo, unit_type, after) = (
            repo.clone(),
            unit_type.to_string(),
            after.map(str::to_string),
        );
        self.run(move |c| {
            query_units(
                c,
                "SELECT u.unit_type, u.key, u.metadata, u.blobs FROM associations a JOIN units u ON u.id = a.unit_id
                 WHERE a.repo_id = ?1 AND a.unit_type = ?2 AND a.key > ?3 ORDER BY a.key LIMIT ?4",
                params![repo.as_str(), unit_type, after.unwrap_or_default(), limit.max(1)],
            )
        })
        .await
    }

    async fn list_unit_additions(
        &self,
        repo: &RepoId,
        unit_type: &UnitType,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(String, u64)>> {
        let (repo, unit_type, after) = (
            repo.clone(),
            unit_type.as_str().to_string(),
            after.map(str::to_string).unwrap_or_default(),
        );
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT key, added_in FROM associations
                 WHERE repo_id = ?1 AND unit_type = ?2 AND key > ?3 ORDER BY key LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![repo.as_str(), unit_type, after, limit.max(1)],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn get_unit(
        &self,
        repo: &RepoId,
        unit_type: &UnitType,
        key: &str,
    ) -> StoreResult<Option<Unit>> {
        let unit_type = unit_type.as_str();
        let (repo, unit_type, key) = (repo.clone(), unit_type.to_string(), key.to_string());
        self.run(move |c| {
            let found = query_units(
                c,
                "SELECT u.unit_type, u.key, u.metadata, u.blobs FROM associations a JOIN units u ON u.id = a.unit_id
                 WHERE a.repo_id = ?1 AND a.unit_type = ?2 AND a.key = ?3",
                params![repo.as_str(), unit_type, key],
            )?;
            Ok(found.into_iter().next())
        })
        .await
    }

    async fn count_units(&self, repo: &RepoId) -> StoreResult<BTreeMap<UnitType, u64>> {
        let repo = repo.clone();
        self.run(move |c| unit_counts(c, repo.as_str())).await
    }

    async fn copy_units(
        &self,
        from: &RepoId,
        to: &RepoId,
        unit_types: &[UnitType],
        origin: &VersionOrigin,
    ) -> StoreResult<Option<RepoVersion>> {
        let types: Vec<String> = unit_types.iter().map(|t| t.to_string()).collect();
        let (from, to, origin) = (from.clone(), to.clone(), origin.clone());
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if tx.query_row("SELECT 1 FROM repositories WHERE id = ?1", [from.as_str()], |_| Ok(())).optional()?.is_none() {
                return Err(StoreError::NotFound(format!("repository {from}")));
            }
            let begun = begin_version(&tx, &to)?;
            let n = begun.1.number + 1;
            let mut added = UnitCounts::new();
            let types_json = serde_json::to_string(&types)?;
            let copied = tx.execute(
                "INSERT OR IGNORE INTO associations (repo_id, unit_type, key, unit_id, added_in)
                 SELECT ?2, unit_type, key, unit_id, ?4 FROM associations
                 WHERE repo_id = ?1 AND (?3 = '[]' OR unit_type IN (SELECT value FROM json_each(?3)))",
                params![from.as_str(), to.as_str(), types_json, n],
            )?;
            if copied > 0 {
                let mut stmt = tx.prepare_cached(
                    "SELECT unit_type, COUNT(*) FROM associations WHERE repo_id = ?1 AND added_in = ?2 GROUP BY unit_type",
                )?;
                for row in stmt.query_map(params![to.as_str(), n], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))? {
                    let (t, count) = row?;
                    added.insert(t.parse().map_err(backend)?, count);
                }
            }
            commit_version(tx, begun, &origin, added, UnitCounts::new())
        })
        .await
    }

    async fn remove_orphan_units(&self) -> StoreResult<u64> {
        self.run(|c| {
            Ok(c.execute(
                "DELETE FROM units WHERE NOT EXISTS (SELECT 1 FROM associations a WHERE a.unit_id = units.id)
                 AND NOT EXISTS (SELECT 1 FROM retired_associations r WHERE r.unit_id = units.id)",
                [],
            )? as u64)
        })
        .await
    }

    async fn referenced_blobs(&self) -> StoreResult<DigestSet> {
        self.run(|c| {
            // No DISTINCT: the set drops repeats, without SQLite's sort.
            let mut stmt = c.prepare("SELECT j.value FROM units, json_each(units.blobs) j")?;
            let mut out = DigestSetBuilder::default();
            for d in stmt.query_map([], |r| r.get::<_, String>(0))? {
                out.add(&d?.parse().map_err(backend)?);
            }
            let mut pubs = c.prepare("SELECT doc FROM publications")?;
            for doc in pubs.query_map([], |r| r.get::<_, String>(0))? {
                let p = serde_json::from_str::<Publication>(&doc?)?;
                out.add(&p.index);
                p.blobs.iter().for_each(|b| out.add(b));
            }
            Ok(out.build())
        })
        .await
    }

    async fn repo_blobs(&self, repo: &RepoId) -> StoreResult<Vec<Digest>> {
        let repo = repo.clone();
        self.run(move |c| {
            // In key order: DISTINCT costs no sort.
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT blob FROM association_blobs WHERE repo_id = ?1 ORDER BY blob",
            )?;
            let mut out = Vec::new();
            for d in stmt.query_map([repo.as_str()], |r| r.get::<_, String>(0))? {
                out.push(d?.parse().map_err(backend)?);
            }
            Ok(out)
        })
        .await
    }

    async fn repo_holds_blob(&self, repo: &RepoId, blob: &Digest) -> StoreResult<bool> {
        let (repo, blob) = (repo.clone(), blob.to_string());
        self.run(move |c| {
            Ok(c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM association_blobs WHERE repo_id = ?1 AND blob = ?2)",
            )?
            .query_row(params![repo.as_str(), blob], |r| r.get(0))?)
        })
        .await
    }

    async fn list_units_naming(
        &self,
        repo: &RepoId,
        blob: &Digest,
        unit_type: &UnitType,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Unit>> {
        let (repo, blob, unit_type, after) = (
            repo.clone(),
            blob.to_string(),
            unit_type.as_str().to_string(),
            after.map(str::to_string),
        );
        self.run(move |c| {
            query_units(
                c,
                "SELECT u.unit_type, u.key, u.metadata, u.blobs FROM association_blobs b
                 JOIN units u ON u.unit_type = b.unit_type AND u.key = b.key
                 WHERE b.repo_id = ?1 AND b.blob = ?2 AND b.unit_type = ?3 AND b.key > ?4
                 ORDER BY b.key LIMIT ?5",
                params![
                    repo.as_str(),
                    blob,
                    unit_type,
                    after.unwrap_or_default(),
                    limit.max(1)
                ],
            )
        })
        .await
    }

    async fn repos_holding_blob(&self, blob: &Digest) -> StoreResult<Vec<RepoId>> {
        let blob = blob.to_string();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT repo_id FROM association_blobs WHERE blob = ?1 ORDER BY repo_id",
            )?;
            let mut out = Vec::new();
            for id in stmt.query_map([blob.as_str()], |r| r.get::<_, String>(0))? {
                out.push(id?.parse().map_err(backend)?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_publication(&self, p: &Publication) -> StoreResult<()> {
        let p = p.clone();
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM publications WHERE plugin = ?1 AND (repo_id = ?2 OR name = ?3)",
                params![p.plugin, p.repo_id.as_str(), p.name],
            )?;
            tx.execute(
                "INSERT INTO publications (plugin, name, repo_id, doc) VALUES (?1, ?2, ?3, ?4)",
                params![
                    p.plugin,
                    p.name,
                    p.repo_id.as_str(),
                    serde_json::to_string(&p)?
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn publications_after(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<Publication>> {
        // No publication has an empty plugin: ("", "") is before them all.
        let (plugin, name) = after.unwrap_or(("", ""));
        let (plugin, name) = (plugin.to_string(), name.to_string());
        self.run_then(
            move |c| {
                let mut stmt = c.prepare_cached(PUBLICATIONS_AFTER)?;
                let docs = stmt.query_map(params![plugin, name, limit.max(1)], |r| {
                    r.get::<_, String>(0)
                })?;
                Ok(docs.collect::<Result<Vec<String>, _>>()?)
            },
            |docs| {
                let parsed = docs.iter().map(|d| serde_json::from_str(d));
                Ok(parsed.collect::<Result<_, _>>()?)
            },
        )
        .await
    }

    async fn publication_named(
        &self,
        plugin: &str,
        name: &str,
    ) -> StoreResult<Option<Publication>> {
        let (plugin, name) = (plugin.to_string(), name.to_string());
        self.run(move |c| {
            let doc: Option<String> = c
                .prepare_cached("SELECT doc FROM publications WHERE plugin = ?1 AND name = ?2")?
                .query_row(params![plugin, name], |r| r.get(0))
                .optional()?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn publication_seq(&self) -> StoreResult<u64> {
        self.run(|c| {
            let seq: i64 = c
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM publication_feed")?
                .query_row([], |r| r.get(0))?;
            Ok(seq as u64)
        })
        .await
    }

    async fn publication_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<PublicationChange>> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT f.seq, f.plugin, f.repo_id, p.doc FROM publication_feed f
                 LEFT JOIN publications p ON p.plugin = f.plugin AND p.repo_id = f.repo_id
                 WHERE f.seq > ?1 ORDER BY f.seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after as i64, limit.max(1)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, plugin, repo_id, doc) = row?;
                out.push(PublicationChange {
                    seq: seq as u64,
                    plugin,
                    repo_id: repo_id.parse().map_err(backend)?,
                    publication: doc.map(|d| serde_json::from_str(&d)).transpose()?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn set_publication_setting(
        &self,
        repo: &RepoId,
        key: &str,
        value: &serde_json::Value,
    ) -> StoreResult<usize> {
        let (repo, key, value) = (repo.clone(), key.to_string(), value.clone());
        self.run(move |c| {
            let tx = c.transaction()?;
            let mut changed = Vec::new();
            {
                let mut stmt =
                    tx.prepare("SELECT rowid, doc FROM publications WHERE repo_id = ?1")?;
                let rows = stmt.query_map([repo.as_str()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?;
                for row in rows {
                    let (rowid, doc) = row?;
                    let mut p: Publication = serde_json::from_str(&doc)?;
                    if p.set_setting(&key, &value) {
                        changed.push((rowid, serde_json::to_string(&p)?));
                    }
                }
            }
            for (rowid, doc) in &changed {
                tx.execute(
                    "UPDATE publications SET doc = ?1 WHERE rowid = ?2",
                    params![doc, rowid],
                )?;
            }
            tx.commit()?;
            Ok(changed.len())
        })
        .await
    }

    async fn create_group(&self, g: &Group) -> StoreResult<()> {
        let g = g.clone();
        self.run(move |c| {
            let tx = c.transaction()?;
            write_group(&tx, &g, true, Members::Replace)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_group(&self, id: &RepoId) -> StoreResult<Option<Group>> {
        let id = id.clone();
        self.run(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM groups WHERE id = ?1", [id.as_str()], |r| {
                    r.get(0)
                })
                .optional()?;
            doc.map(|d| read_group(c, d)).transpose()
        })
        .await
    }

    async fn update_group(&self, g: &Group, members: Members) -> StoreResult<()> {
        let g = g.clone();
        self.run(move |c| {
            let tx = c.transaction()?;
            write_group(&tx, &g, false, members)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn set_group_member(
        &self,
        id: &RepoId,
        repo: &RepoId,
        member: bool,
    ) -> StoreResult<bool> {
        let (id, repo) = (id.clone(), repo.clone());
        self.run(move |c| {
            let tx = c.transaction()?;
            let exists = |table: &str, key: &RepoId| {
                tx.query_row(
                    &format!("SELECT 1 FROM {table} WHERE id = ?1"),
                    [key.as_str()],
                    |_| Ok(()),
                )
                .optional()
                .map(|found| found.is_some())
            };
            if !exists("groups", &id)? {
                return Err(StoreError::NotFound(format!("group {id}")));
            }
            if member && !exists("repositories", &repo)? {
                return Err(StoreError::NotFound(format!("repository {repo}")));
            }
            let sql = if member {
                "INSERT OR IGNORE INTO group_members (group_id, repo_id) VALUES (?1, ?2)"
            } else {
                "DELETE FROM group_members WHERE group_id = ?1 AND repo_id = ?2"
            };
            let n = tx.execute(sql, params![id.as_str(), repo.as_str()])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_group(&self, id: &RepoId) -> StoreResult<bool> {
        let id = id.clone();
        self.run(move |c| Ok(c.execute("DELETE FROM groups WHERE id = ?1", [id.as_str()])? > 0))
            .await
    }

    async fn list_groups(&self, notes: &Notes) -> StoreResult<Vec<Group>> {
        let notes = notes.clone();
        self.run(move |c| {
            let docs: Vec<String> = {
                let mut stmt = c.prepare_cached("SELECT doc FROM groups ORDER BY id")?;
                stmt.query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            let mut out = Vec::new();
            for d in docs {
                let g = read_group(c, d)?;
                if notes.iter().all(|(k, v)| g.notes.get(k) == Some(v)) {
                    out.push(g);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait::async_trait]
impl TaskStore for SqliteStore {
    async fn put_task(&self, t: &Task) -> StoreResult<()> {
        let t = t.clone();
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO tasks (id, kind, state, doc) VALUES (?1, ?2, ?3, ?4)",
                params![
                    t.id.to_string(),
                    t.kind.as_str(),
                    t.state.as_str(),
                    serde_json::to_string(&t)?
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn update_live_task(&self, t: &Task) -> StoreResult<bool> {
        let t = t.clone();
        self.run(move |c| {
            let n = c.execute(
                "UPDATE tasks SET state = ?2,
                     doc = json_set(?3, '$.cancel_requested',
                         json(CASE WHEN json_extract(doc, '$.cancel_requested') THEN 'true' ELSE ?4 END))
                 WHERE id = ?1 AND state IN ('waiting', 'running')",
                params![
                    t.id.to_string(),
                    t.state.as_str(),
                    serde_json::to_string(&t)?,
                    if t.cancel_requested { "true" } else { "false" }
                ],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn request_task_cancel(&self, id: &TaskId) -> StoreResult<bool> {
        let id = id.to_string();
        self.run(move |c| {
            let n = c.execute(
                "UPDATE tasks SET doc = json_set(doc, '$.cancel_requested', json('true'))
                 WHERE id = ?1 AND state IN ('waiting', 'running')",
                [id],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn get_task(&self, id: &TaskId) -> StoreResult<Option<Task>> {
        let id = id.to_string();
        self.run(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM tasks WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn list_tasks(&self, q: &TaskQuery) -> StoreResult<Vec<Task>> {
        let q = q.clone();
        self.run(move |c| {
            let (sql, args) = task_listing(&q);
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, String>(0)
            })?;
            let mut out = Vec::new();
            for doc in rows {
                out.push(serde_json::from_str::<Task>(&doc?)?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait::async_trait]
impl UploadStore for SqliteStore {
    async fn put_upload(&self, u: &Upload) -> StoreResult<()> {
        let u = u.clone();
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO uploads (id, doc) VALUES (?1, ?2)",
                params![u.id.to_string(), serde_json::to_string(&u)?],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_upload(&self, id: &UploadId) -> StoreResult<Option<Upload>> {
        let id = id.to_string();
        self.run(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM uploads WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn delete_upload(&self, id: &UploadId) -> StoreResult<bool> {
        let id = id.to_string();
        self.run(move |c| Ok(c.execute("DELETE FROM uploads WHERE id = ?1", [id])? > 0))
            .await
    }
}

#[async_trait::async_trait]
impl AccessStore for SqliteStore {
    async fn create_user(&self, u: &User) -> StoreResult<()> {
        let u = u.clone();
        self.run(move |c| {
            let tx = c.transaction()?;
            write_user(&tx, &u, true)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, login: &str) -> StoreResult<Option<User>> {
        let login = login.to_string();
        self.run(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM users WHERE login = ?1", [login], |r| {
                    r.get(0)
                })
                .optional()?;
            doc.map(|d| read_user(c, d)).transpose()
        })
        .await
    }

    async fn update_user(&self, u: &User) -> StoreResult<()> {
        let u = u.clone();
        self.run(move |c| {
            let tx = c.transaction()?;
            write_user(&tx, &u, false)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_user(&self, login: &str) -> StoreResult<bool> {
        let login = login.to_string();
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM permissions WHERE subject = ?1",
                [subject_key(&Subject::User(login.clone()))],
            )?;
            // Memberships and tokens go by ON DELETE CASCADE.
            let n = tx.execute("DELETE FROM users WHERE login = ?1", [&login])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.run(|c| {
            let docs: Vec<String> = {
                let mut stmt = c.prepare_cached("SELECT doc FROM users ORDER BY login")?;
                stmt.query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            docs.into_iter().map(|d| read_user(c, d)).collect()
        })
        .await
    }

    async fn create_role(&self, r: &Role) -> StoreResult<()> {
        let mut r = r.clone();
        r.users.clear();
        self.run(move |c| {
            match c.execute(
                "INSERT INTO roles (id, doc) VALUES (?1, ?2)",
                params![r.id, serde_json::to_string(&r)?],
            ) {
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::Conflict(format!("role {}", r.id)))
                }
                Err(e) => Err(e.into()),
                Ok(_) => Ok(()),
            }
        })
        .await
    }

    async fn get_role(&self, id: &str) -> StoreResult<Option<Role>> {
        let id = id.to_string();
        self.run(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM roles WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            doc.map(|d| read_role(c, d)).transpose()
        })
        .await
    }

    async fn delete_role(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM permissions WHERE subject = ?1",
                [subject_key(&Subject::Role(id.clone()))],
            )?;
            let n = tx.execute("DELETE FROM roles WHERE id = ?1", [&id])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_roles(&self) -> StoreResult<Vec<Role>> {
        self.run(|c| {
            let docs: Vec<String> = {
                let mut stmt = c.prepare_cached("SELECT doc FROM roles ORDER BY id")?;
                stmt.query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            docs.into_iter().map(|d| read_role(c, d)).collect()
        })
        .await
    }

    async fn set_role_member(&self, role: &str, login: &str, member: bool) -> StoreResult<bool> {
        let (role, login) = (role.to_string(), login.to_string());
        self.run(move |c| {
            let tx = c.transaction()?;
            for s in [Subject::Role(role.clone()), Subject::User(login.clone())] {
                if !subject_exists(&tx, &s)? {
                    return Err(StoreError::NotFound(subject_name(&s)));
                }
            }
            let n = if member {
                tx.execute(
                    "INSERT OR IGNORE INTO role_members (role_id, login) VALUES (?1, ?2)",
                    params![role, login],
                )?
            } else {
                tx.execute(
                    "DELETE FROM role_members WHERE role_id = ?1 AND login = ?2",
                    params![role, login],
                )?
            };
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn grant(
        &self,
        subject: &Subject,
        resource: &str,
        ops: &[Operation],
    ) -> StoreResult<Permission> {
        let (subject, resource, ops) = (subject.clone(), resource.to_string(), ops.to_vec());
        self.run(move |c| {
            let tx = c.transaction()?;
            if !subject_exists(&tx, &subject)? {
                return Err(StoreError::NotFound(subject_name(&subject)));
            }
            let key = subject_key(&subject);
            let mut all = read_ops(&tx, &key, &resource)?;
            all.extend(ops);
            all.sort();
            all.dedup();
            write_ops(&tx, &key, &resource, &all)?;
            tx.commit()?;
            Ok(Permission {
                subject,
                resource,
                operations: all,
            })
        })
        .await
    }

    async fn revoke(
        &self,
        subject: &Subject,
        resource: &str,
        ops: &[Operation],
    ) -> StoreResult<bool> {
        let (subject, resource, ops) = (subject.clone(), resource.to_string(), ops.to_vec());
        self.run(move |c| {
            let tx = c.transaction()?;
            let key = subject_key(&subject);
            let before = read_ops(&tx, &key, &resource)?;
            let after: Vec<Operation> = before
                .iter()
                .copied()
                .filter(|o| !ops.contains(o))
                .collect();
            write_ops(&tx, &key, &resource, &after)?;
            tx.commit()?;
            Ok(after.len() != before.len())
        })
        .await
    }

    async fn permissions_seq(&self) -> StoreResult<u64> {
        self.run(|c| {
            Ok(
                c.prepare_cached("SELECT value FROM counters WHERE name = 'permissions'")?
                    .query_row([], |r| r.get(0))?,
            )
        })
        .await
    }

    async fn list_permissions(&self, subjects: &[Subject]) -> StoreResult<Vec<Permission>> {
        let keys: Vec<String> = subjects.iter().map(subject_key).collect();
        self.run(move |c| {
            let keys_json = serde_json::to_string(&keys)?;
            // Two statements, not one with an OR: each subject's
            // permissions are a search of the primary key, never a scan of
            // every permission.
            let mut stmt = c.prepare_cached(if keys.is_empty() {
                "SELECT subject, resource, operations FROM permissions
                 WHERE ?1 = '[]' ORDER BY subject, resource"
            } else {
                "SELECT subject, resource, operations FROM permissions
                 WHERE subject IN (SELECT value FROM json_each(?1))
                 ORDER BY subject, resource"
            })?;
            let rows = stmt.query_map([keys_json], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (subject, resource, ops) = row?;
                out.push(Permission {
                    subject: subject_from_key(&subject)?,
                    resource,
                    operations: serde_json::from_str(&ops)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn put_token(&self, t: &ApiToken) -> StoreResult<()> {
        let t = t.clone();
        self.run(move |c| {
            let r = c.execute(
                "INSERT INTO api_tokens (hash, login, expires_at, doc) VALUES (?1, ?2, ?3, ?4)",
                params![
                    t.hash,
                    t.login,
                    t.expires_at as i64,
                    serde_json::to_string(&t)?
                ],
            );
            match r {
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    Err(StoreError::NotFound(format!("user {}", t.login)))
                }
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("token".into())),
                Err(e) => Err(e.into()),
                Ok(_) => Ok(()),
            }
        })
        .await
    }

    async fn get_token(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        let hash = hash.to_string();
        self.run(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM api_tokens WHERE hash = ?1", [hash], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn delete_token(&self, hash: &str) -> StoreResult<bool> {
        let hash = hash.to_string();
        self.run(move |c| Ok(c.execute("DELETE FROM api_tokens WHERE hash = ?1", [hash])? > 0))
            .await
    }

    async fn delete_user_tokens(&self, login: &str) -> StoreResult<u64> {
        let login = login.to_string();
        self.run(move |c| Ok(c.execute("DELETE FROM api_tokens WHERE login = ?1", [login])? as u64))
            .await
    }

    async fn delete_expired_tokens(&self, now: u64) -> StoreResult<u64> {
        self.run(move |c| {
            Ok(c.execute("DELETE FROM api_tokens WHERE expires_at < ?1", [now as i64])? as u64)
        })
        .await
    }
}

#[async_trait::async_trait]
impl EventStore for SqliteStore {
    async fn put_listener(&self, l: &crate::db::Listener) -> StoreResult<()> {
        let l = l.clone();
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO listeners (id, doc) VALUES (?1, ?2)",
                params![l.id, serde_json::to_string(&l)?],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_listeners(&self) -> StoreResult<Vec<crate::db::Listener>> {
        self.run(|c| {
            let mut stmt = c.prepare_cached("SELECT doc FROM listeners ORDER BY id")?;
            let mut out = Vec::new();
            for doc in stmt.query_map([], |r| r.get::<_, String>(0))? {
                out.push(serde_json::from_str(&doc?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_listener(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.run(move |c| Ok(c.execute("DELETE FROM listeners WHERE id = ?1", [id])? > 0))
            .await
    }
}

#[async_trait::async_trait]
impl crate::db::RemoteStore for SqliteStore {
    async fn put_remote(&self, r: &crate::db::Remote) -> StoreResult<()> {
        let r = r.clone();
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO remotes (id, doc) VALUES (?1, ?2)",
                params![r.id.as_str(), serde_json::to_string(&r)?],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_remote(
        &self,
        id: &wharf_core::ids::RemoteId,
    ) -> StoreResult<Option<crate::db::Remote>> {
        let id = id.to_string();
        self.run(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM remotes WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn list_remotes(&self) -> StoreResult<Vec<crate::db::Remote>> {
        self.run(|c| {
            let mut stmt = c.prepare_cached("SELECT doc FROM remotes ORDER BY id")?;
            let mut out = Vec::new();
            for doc in stmt.query_map([], |r| r.get::<_, String>(0))? {
                out.push(serde_json::from_str(&doc?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_remote(&self, id: &wharf_core::ids::RemoteId) -> StoreResult<bool> {
        let id = id.to_string();
        self.run(move |c| Ok(c.execute("DELETE FROM remotes WHERE id = ?1", [id])? > 0))
            .await
    }
}

#[async_trait::async_trait]
impl ScheduleStore for SqliteStore {
    async fn put_schedule(&self, s: &crate::db::Schedule) -> StoreResult<()> {
        let s = s.clone();
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO schedules (id, revision, doc) VALUES (?1, ?2, ?3)",
                params![s.id, s.revision as i64, serde_json::to_string(&s)?],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<crate::db::Schedule>> {
        let id = id.to_string();
        self.run(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM schedules WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn list_schedules(&self) -> StoreResult<Vec<crate::db::Schedule>> {
        self.run(|c| {
            let mut stmt = c.prepare_cached("SELECT doc FROM schedules ORDER BY id")?;
            let mut out = Vec::new();
            for doc in stmt.query_map([], |r| r.get::<_, String>(0))? {
                out.push(serde_json::from_str(&doc?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.run(move |c| Ok(c.execute("DELETE FROM schedules WHERE id = ?1", [id])? > 0))
            .await
    }

    async fn swap_schedule(&self, expected: u64, new: &crate::db::Schedule) -> StoreResult<bool> {
        let s = new.clone();
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE schedules SET revision = ?1, doc = ?2 WHERE id = ?3 AND revision = ?4",
                params![
                    s.revision as i64,
                    serde_json::to_string(&s)?,
                    s.id,
                    expected as i64
                ],
            )? == 1)
        })
        .await
    }
}

#[async_trait::async_trait]
impl PluginStore for SqliteStore {
    async fn put_installed_plugin(&self, p: &InstalledPlugin) -> StoreResult<()> {
        let p = p.clone();
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO installed_plugins (name, doc) VALUES (?1, ?2)",
                params![p.name, serde_json::to_string(&p)?],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_installed_plugins(&self) -> StoreResult<Vec<InstalledPlugin>> {
        self.run(|c| {
            let mut stmt = c.prepare_cached("SELECT doc FROM installed_plugins ORDER BY name")?;
            let mut out = Vec::new();
            for doc in stmt.query_map([], |r| r.get::<_, String>(0))? {
                out.push(serde_json::from_str(&doc?)?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait::async_trait]
impl SecretStore for SqliteStore {
    async fn ensure_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        let (name, candidate) = (name.to_string(), candidate.to_vec());
        self.run(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
                params![name, candidate],
            )?;
            Ok(c.query_row(
                "SELECT value FROM secrets WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How SQLite answers `sql`: `EXPLAIN QUERY PLAN`'s detail lines.
    fn plan(c: &Connection, sql: &str, args: &[String]) -> Vec<String> {
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// Every shape of repository listing is a search of an index in id
    /// order: no table scan, no sort of the matches. A scan is what made
    /// a push to a new name and a filtered page cost O(repositories).
    #[tokio::test]
    async fn every_repository_listing_is_answered_from_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("wharf.db")).unwrap();
        let c = store.conn.lock().unwrap();
        let notes = |n: &[(&str, &str)]| -> Notes {
            n.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let setting = Some(("repo_registry_id".to_string(), "team/app".to_string()));
        let mut shapes = Vec::new();
        for content_type in [None, Some("docker".to_string())] {
            for notes in [
                notes(&[]),
                notes(&[("team", "a")]),
                notes(&[("team", "a"), ("env", "b")]),
            ] {
                for setting in [None, setting.clone()] {
                    shapes.push(RepoQuery {
                        after: Some("m".into()),
                        limit: 100,
                        content_type: content_type.clone(),
                        notes: notes.clone(),
                        setting,
                    });
                }
            }
        }
        for q in &shapes {
            let (sql, args) = repo_listing(q);
            let plan = plan(&c, &sql, &args);
            for step in &plan {
                assert!(
                    step.starts_with("SEARCH") || step.starts_with("CORRELATED SCALAR SUBQUERY"),
                    "{q:?} answered with {plan:?}"
                );
            }
            assert!(
                !plan.iter().any(|s| s.contains("TEMP B-TREE")),
                "{q:?}: {plan:?}"
            );
        }
        for q in [
            TaskQuery {
                state: Some(TaskState::Waiting),
                ..Default::default()
            },
            TaskQuery {
                kind: Some(TaskKind::Sync),
                ..Default::default()
            },
            TaskQuery {
                state: Some(TaskState::Running),
                kind: Some(TaskKind::Sync),
                ..Default::default()
            },
            // A repository's tasks: what its console page and a new task
            // waiting for its locks ask.
            TaskQuery {
                lock: Some(TaskLock::Repository("app".parse().unwrap())),
                limit: 20,
                ..Default::default()
            },
            TaskQuery {
                lock: Some(TaskLock::Repository("app".parse().unwrap())),
                state: Some(TaskState::Waiting),
                limit: 20,
                ..Default::default()
            },
            TaskQuery {
                lock: Some(TaskLock::Repository("app".parse().unwrap())),
                state: Some(TaskState::Finished),
                limit: 20,
                ..Default::default()
            },
        ] {
            let (sql, args) = task_listing(&q);
            let plan = plan(&c, &sql, &args);
            assert!(
                plan.iter()
                    .all(|s| s.starts_with("SEARCH") || s.starts_with("CORRELATED")),
                "{q:?}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|s| s.contains("TEMP B-TREE")),
                "{q:?}: {plan:?}"
            );
        }
        for (sql, arg) in [
            (
                "SELECT subject FROM permissions WHERE subject IN (SELECT value FROM json_each(?1)) ORDER BY subject, resource",
                r#"["user:a"]"#,
            ),
            ("DELETE FROM publications WHERE repo_id = ?1", "r"),
            (
                "SELECT doc FROM publications WHERE plugin = 'docker' AND name = ?1",
                "a/b",
            ),
            ("DELETE FROM group_members WHERE repo_id = ?1", "r"),
            ("DELETE FROM api_tokens WHERE expires_at < ?1", "1"),
            (
                "SELECT f.seq, p.doc FROM publication_feed f LEFT JOIN publications p ON p.plugin = f.plugin AND p.repo_id = f.repo_id WHERE f.seq > ?1 ORDER BY f.seq LIMIT 10",
                "1",
            ),
        ] {
            let plan = plan(&c, sql, &[arg.to_string()]);
            assert!(
                !plan.iter().any(|s| s.starts_with("SCAN permissions")
                    || s.starts_with("SCAN publications")
                    || s.starts_with("SCAN group_members")
                    || s.starts_with("SCAN api_tokens")
                    || s.starts_with("SCAN f")
                    || s.starts_with("SCAN p")),
                "{sql}: {plan:?}"
            );
        }
        // The start-up's pages of publications: a range of the primary key,
        // in its order.
        let page = plan(
            &c,
            PUBLICATIONS_AFTER,
            &["docker".into(), "a/b".into(), "1000".into()],
        );
        assert!(
            page.iter()
                .all(|s| !s.starts_with("SCAN") && !s.contains("TEMP B-TREE")),
            "{page:?}"
        );
        // The check sees a scan: a filter on a column no index has.
        let scan = plan(
            &c,
            "SELECT doc FROM repositories WHERE doc = ?1",
            &["x".into()],
        );
        assert!(scan.iter().any(|s| s.starts_with("SCAN")), "{scan:?}");
    }

    /// What a registry write asks of a blob it names, and what the
    /// triggers keeping the blob index run per association, search an
    /// index: none of it grows with the repository or the installation.
    #[tokio::test]
    async fn blob_lookups_are_answered_from_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("wharf.db")).unwrap();
        let c = store.conn.lock().unwrap();
        let d = Digest::of(b"layer").to_string();
        for (sql, args) in [
            (
                "SELECT EXISTS (SELECT 1 FROM association_blobs WHERE repo_id = ?1 AND blob = ?2)",
                vec!["r".to_string(), d.clone()],
            ),
            (
                "SELECT DISTINCT repo_id FROM association_blobs WHERE blob = ?1 ORDER BY repo_id",
                vec![d.clone()],
            ),
            (
                "SELECT DISTINCT blob FROM association_blobs WHERE repo_id = ?1 ORDER BY blob",
                vec!["r".to_string()],
            ),
            (
                "SELECT u.unit_type, u.key, u.metadata, u.blobs FROM association_blobs b
                 JOIN units u ON u.unit_type = b.unit_type AND u.key = b.key
                 WHERE b.repo_id = ?1 AND b.blob = ?2 AND b.unit_type = ?3 AND b.key > ?4
                 ORDER BY b.key LIMIT ?5",
                vec!["r".into(), d.clone(), "tag".into(), "".into(), "10".into()],
            ),
            // The delete trigger's body, OLD given as parameters.
            (
                "DELETE FROM association_blobs
                 WHERE repo_id = ?1 AND unit_type = ?2 AND key = ?3
                   AND blob IN (SELECT j.value FROM units u, json_each(u.blobs) j WHERE u.id = ?4)",
                vec!["r".into(), "tag".into(), "latest".into(), "1".into()],
            ),
        ] {
            let plan = plan(&c, sql, &args);
            assert!(
                !plan.iter().any(|s| s.starts_with("SCAN b")
                    || s.starts_with("SCAN association_blobs")
                    || s.starts_with("SCAN u")),
                "{sql}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|s| s.contains("TEMP B-TREE")),
                "{sql}: {plan:?}"
            );
        }
    }

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("wharf.db")).unwrap();
        let start = std::time::Instant::now();
        super::conformance::run_all(&store).await;
        eprintln!("sqlite conformance suite: {:?}", start.elapsed());
    }
}

#[cfg(test)]
mod upgrade_tests {
    use super::*;

    /// A file written by schema 3 (no versions) opens with every repository
    /// at version 0, holding what it held.
    #[tokio::test]
    async fn a_schema_3_file_gets_version_0_of_each_repository() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE repositories (id TEXT PRIMARY KEY, content_type TEXT NOT NULL, doc TEXT NOT NULL);
                 CREATE TABLE units (id INTEGER PRIMARY KEY, unit_type TEXT NOT NULL, key TEXT NOT NULL,
                     metadata TEXT NOT NULL, blobs TEXT NOT NULL, UNIQUE (unit_type, key));
                 CREATE TABLE associations (repo_id TEXT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
                     unit_type TEXT NOT NULL, key TEXT NOT NULL, unit_id INTEGER NOT NULL REFERENCES units(id),
                     PRIMARY KEY (repo_id, unit_type, key)) WITHOUT ROWID;
                 INSERT INTO units VALUES (1, 'tag', 'latest', '{}',
                     '[\"sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\"]');
                 PRAGMA user_version = 3;",
            )
            .unwrap();
            let repo = serde_json::json!({
                "id": "old", "content_type": "docker", "display_name": "old", "description": "",
                "notes": {}, "importer_config": {}, "distributor_config": {},
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
            });
            c.execute(
                "INSERT INTO repositories VALUES ('old', 'docker', ?1)",
                [repo.to_string()],
            )
            .unwrap();
            c.execute(
                "INSERT INTO associations VALUES ('old', 'tag', 'latest', 1)",
                [],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let id: RepoId = "old".parse().unwrap();
        let tag: UnitType = "tag".parse().unwrap();
        let v0 = s.latest_version(&id).await.unwrap().unwrap();
        assert_eq!((v0.number, v0.content[&tag]), (0, 1));
        let held = s.list_version_units(&id, 0, &tag, None, 10).await.unwrap();
        assert_eq!(held[0].key, "latest");
        // The blob index holds what the associations held.
        let blob: Digest =
            "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
                .parse()
                .unwrap();
        assert!(s.repo_holds_blob(&id, &blob).await.unwrap());
        assert_eq!(s.repos_holding_blob(&blob).await.unwrap(), vec![id.clone()]);
        let origin = VersionOrigin::new(VersionCause::Remove, None);
        let remove = UnitChange::Remove {
            unit_type: tag.clone(),
            key: "latest".into(),
        };
        let v1 = s
            .apply_changes(&id, &[remove], &origin)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((v1.number, v1.removed[&tag]), (1, 1));
        assert!(!s.repo_holds_blob(&id, &blob).await.unwrap());
        drop(s);
        // Opening again changes nothing.
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.latest_version(&id).await.unwrap().unwrap().number, 1);
        assert!(!s.repo_holds_blob(&id, &blob).await.unwrap());
    }
}
