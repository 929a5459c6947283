//! The scale-out metadata store: a MongoDB database (replica set; a
//! single-node one is enough) that several `wharf serve` nodes and `wharf
//! worker`s share. Selected with `--db mongodb://HOST:PORT/DATABASE`.
//!
//! Layout: one collection per record kind. Each document carries the fields
//! Wharf queries on (indexed, see [`MIGRATIONS`]) and the record itself as
//! JSON in `doc`: repository configs, unit metadata and task inputs are
//! plugin-owned JSON whose keys may hold `.` or start with `$`, which MongoDB
//! field names restrict, so they are never spread into BSON fields.
//!
//! Changes that span documents run in one multi-document transaction
//! (retried by the driver on transient conflicts). A change that depends on
//! another document existing (a unit added to a repository, a user given a
//! role) first "claims" that document with a write (`$inc` of `claims`):
//! MongoDB's snapshot isolation only detects write-write conflicts, so the
//! claim makes a concurrent delete of the same document conflict instead of
//! leaving a dangling reference.
//!
//! Schema versions: `meta` holds `{_id: "schema", version}`; migrations newer
//! than the stored version run at open, in order, and are idempotent (two
//! nodes starting at once may both run them).

use super::*;
use anyhow::Context as _;
use futures::TryStreamExt as _;
use futures::future::{BoxFuture, FutureExt as _};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, ClientSession, Collection, Database, IndexModel};
use std::collections::HashMap;
use std::time::Duration;

/// Every document of `coll` matching `filter`, in `_id` order.
async fn all_by_id(coll: &Collection<Document>, filter: Document) -> StoreResult<Vec<Document>> {
    Ok(coll
        .find(filter)
        .sort(doc! {"_id": 1})
        .await?
        .try_collect()
        .await?)
}

/// The schema this build writes; a database with a newer one is refused.
pub const SCHEMA_VERSION: i64 = 6;

/// The database used when the URL names none.
pub const DEFAULT_DATABASE: &str = "wharf";

/// Schema migrations: (version, what it does). [`migrate`] applies each.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "collections and an index for every query path (repositories by content type and notes, associations by repository/type/key and by unit, publications by plugin and name, tasks by state, lock and kind, role members, tokens by login and expiry, installed plugins)",
    ),
    (
        2,
        "repositories found by distributor setting: a `settings` field on every repository and its index",
    ),
    (
        3,
        "repository versions: `added_in` on associations, `retired_associations`, `repository_versions`, a `version` field on every repository, and version 0 of every repository",
    ),
    (
        4,
        "the publications' change feed (`publication_feed` by position, its counter in `meta`), and repositories by setting or note in id order (a filtered page reads only its page)",
    ),
    (
        5,
        "a repository's history in order from an index (associations by repository, type, key and version added), so a page of it reads only its page",
    ),
    (
        6,
        "the blobs of each association's unit on the association (`blobs`), indexed with the repository, so whether a repository holds a blob is one lookup; a repository's tasks newest first from an index (tasks by lock and id)",
    ),
];

mod coll {
    pub const META: &str = "meta";
    pub const REPOS: &str = "repositories";
    pub const UNITS: &str = "units";
    pub const ASSOCS: &str = "associations";
    pub const RETIRED: &str = "retired_associations";
    pub const VERSIONS: &str = "repository_versions";
    pub const PUBS: &str = "publications";
    pub const TASKS: &str = "tasks";
    pub const GROUPS: &str = "groups";
    pub const LISTENERS: &str = "listeners";
    pub const UPLOADS: &str = "uploads";
    pub const USERS: &str = "users";
    pub const ROLES: &str = "roles";
    pub const PERMS: &str = "permissions";
    pub const TOKENS: &str = "api_tokens";
    pub const PLUGINS: &str = "installed_plugins";
    pub const SECRETS: &str = "secrets";
    pub const SCHEDULES: &str = "schedules";
    pub const REMOTES: &str = "remotes";
    pub const PUB_FEED: &str = "publication_feed";
}

/// The `meta` document counting the publications' changes.
const FEED_COUNTER: &str = "publication_seq";

/// Handles on every collection (cheap to clone: they share the client).
#[derive(Clone)]
struct Colls {
    repos: Collection<Document>,
    units: Collection<Document>,
    assocs: Collection<Document>,
    retired: Collection<Document>,
    versions: Collection<Document>,
    pubs: Collection<Document>,
    tasks: Collection<Document>,
    groups: Collection<Document>,
    listeners: Collection<Document>,
    uploads: Collection<Document>,
    users: Collection<Document>,
    roles: Collection<Document>,
    perms: Collection<Document>,
    tokens: Collection<Document>,
    plugins: Collection<Document>,
    secrets: Collection<Document>,
    schedules: Collection<Document>,
    remotes: Collection<Document>,
    meta: Collection<Document>,
    /// One document per (plugin, repository) whose publication changed, at
    /// the position of its last change: `{_id, plugin, repo, seq}`.
    feed: Collection<Document>,
}

pub struct MongoStore {
    client: Client,
    db: Database,
    c: Colls,
}

/// Why a transaction gave up on purpose (carried through the driver's
/// error as a custom payload, so the driver does not retry it).
#[derive(Debug, Clone)]
enum Abort {
    Conflict(String),
    NotFound(String),
    Corrupt(String),
}

type MResult<T> = mongodb::error::Result<T>;

fn abort(a: Abort) -> mongodb::error::Error {
    mongodb::error::Error::custom(a)
}

impl From<mongodb::error::Error> for StoreError {
    fn from(e: mongodb::error::Error) -> Self {
        match e.get_custom::<Abort>() {
            Some(Abort::Conflict(what)) => StoreError::Conflict(what.clone()),
            Some(Abort::NotFound(what)) => StoreError::NotFound(what.clone()),
            Some(Abort::Corrupt(msg)) => StoreError::Backend(anyhow::anyhow!("{msg}")),
            None => StoreError::Backend(anyhow::Error::new(e).context("MongoDB")),
        }
    }
}

/// A duplicate `_id` or unique-index key (server error 11000).
fn is_duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|w| w.iter().any(|w| w.code == 11000)),
        _ => false,
    }
}

/// `mongodb://user:secret@host/db` without the secret, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.into()))
}

/// The record a document holds in `doc`.
fn from_doc<T: serde::de::DeserializeOwned>(d: &Document) -> MResult<T> {
    let json = d.get_str("doc").map_err(|_| {
        abort(Abort::Corrupt(format!(
            "document {:?} has no doc",
            d.get("_id")
        )))
    })?;
    serde_json::from_str(json).map_err(|e| {
        abort(Abort::Corrupt(format!(
            "document {:?} does not hold a valid record: {e}",
            d.get("_id")
        )))
    })
}

/// Notes as strings that match exactly (`$all` of them selects by notes);
/// a JSON pair cannot be ambiguous whatever the note holds.
fn notes_index(notes: &Notes) -> Vec<String> {
    notes
        .iter()
        .map(|(k, v)| serde_json::to_string(&(k, v)).expect("strings serialize"))
        .collect()
}

/// The indexed distributor settings of a repository, one string per
/// `(key, value)`, as `notes_index` does for notes.
fn settings_index(repo: &Repository) -> Vec<String> {
    indexed_settings(repo)
        .into_iter()
        .map(|kv| serde_json::to_string(&kv).expect("strings serialize"))
        .collect()
}

fn notes_filter(notes: &Notes) -> Option<Document> {
    (!notes.is_empty()).then(|| doc! {"$all": notes_index(notes)})
}

fn unit_id(unit_type: &str, key: &str) -> String {
    serde_json::to_string(&(unit_type, key)).expect("strings serialize")
}

fn assoc_id(repo: &RepoId, unit_type: &str, key: &str) -> String {
    serde_json::to_string(&(repo.as_str(), unit_type, key)).expect("strings serialize")
}

/// A retired association: added in `added_in`, so unique per repository
/// and unit.
fn retired_id(repo: &RepoId, unit_type: &str, key: &str, added_in: i64) -> String {
    serde_json::to_string(&(repo.as_str(), unit_type, key, added_in)).expect("strings serialize")
}

fn version_id(repo: &str, number: u64) -> String {
    serde_json::to_string(&(repo, number)).expect("strings serialize")
}

fn version_doc(v: &RepoVersion) -> MResult<Document> {
    let json = serde_json::to_string(v).map_err(|e| abort(Abort::Corrupt(e.to_string())))?;
    Ok(doc! {
        "_id": version_id(v.repo_id.as_str(), v.number),
        "repo": v.repo_id.as_str(),
        "number": v.number as i64,
        "doc": json,
    })
}

/// An integer field (MongoDB may hand back any integer width).
fn int(d: &Document, field: &str) -> MResult<i64> {
    match d.get(field) {
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        Some(Bson::Double(n)) => Ok(*n as i64),
        other => Err(abort(Abort::Corrupt(format!(
            "{field} of {:?} is {other:?}, not a number",
            d.get("_id")
        )))),
    }
}

/// Unit references of association documents.
fn refs_of(assocs: &[Document]) -> StoreResult<Vec<UnitRef>> {
    assocs
        .iter()
        .map(|a| {
            Ok(UnitRef {
                unit_type: a.get_str("unit_type").unwrap_or_default().parse().map_err(
                    |e: wharf_core::ids::InvalidUnitType| {
                        StoreError::Backend(anyhow::anyhow!("an association: {e}"))
                    },
                )?,
                key: a.get_str("key").unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// The filter of a repository's associations that version `v` holds:
/// for `associations` (`retired` false) or `retired_associations`.
fn held_in(repo: &RepoId, v: u64, retired: bool) -> Document {
    let mut f = doc! {"repo": repo.as_str(), "added_in": {"$lte": v as i64}};
    if retired {
        f.insert("removed_in", doc! {"$gt": v as i64});
    }
    f
}

/// Start a change to a repository's content inside a transaction: claim
/// the repository (so that concurrent changes conflict and retry, and
/// number versions without gaps) and read its version limit and latest
/// version.
async fn begin_version(
    c: &Colls,
    repo: &RepoId,
    s: &mut ClientSession,
) -> MResult<(Option<u64>, RepoVersion)> {
    if !claim(&c.repos, repo.as_str(), s).await? {
        return Err(abort(Abort::NotFound(format!("repository {repo}"))));
    }
    let d = c
        .repos
        .find_one(doc! {"_id": repo.as_str()})
        .session(&mut *s)
        .await?
        .ok_or_else(|| abort(Abort::NotFound(format!("repository {repo}"))))?;
    let retain = from_doc::<Repository>(&d)?.retain_versions;
    let n = int(&d, "version")? as u64;
    let latest = c
        .versions
        .find_one(doc! {"_id": version_id(repo.as_str(), n)})
        .session(&mut *s)
        .await?
        .ok_or_else(|| {
            abort(Abort::Corrupt(format!(
                "repository {repo} is at version {n}, whose record is missing"
            )))
        })?;
    Ok((retain, from_doc(&latest)?))
}

/// Create a unit unless it exists (units are immutable once created); the
/// `$inc` is the claim that makes a concurrent orphan removal of it
/// conflict with this transaction. Returns the blobs the stored unit names
/// (those of the unit created first under its key), which its associations
/// carry for [`RepositoryStore::repo_holds_blob`]: never what a later
/// writer claims.
async fn put_unit(
    c: &Colls,
    uid: &str,
    (unit_type, key): (&str, &str),
    metadata: &str,
    blobs: &[String],
    s: &mut ClientSession,
) -> MResult<Bson> {
    let stored = c
        .units
        .find_one_and_update(
            doc! {"_id": uid},
            doc! {
                "$setOnInsert": {"unit_type": unit_type, "key": key, "doc": metadata, "blobs": blobs},
                "$inc": {"claims": 1_i64},
            },
        )
        .upsert(true)
        .return_document(mongodb::options::ReturnDocument::After)
        .projection(doc! {"blobs": 1})
        .session(&mut *s)
        .await?
        .ok_or_else(|| abort(Abort::Corrupt(format!("unit {uid} vanished as it was written"))))?;
    Ok(stored
        .get("blobs")
        .cloned()
        .unwrap_or_else(|| Bson::Array(Vec::new())))
}

/// Move `permissions_seq` on, inside the transaction that changes a
/// permission.
async fn permissions_changed(c: &Colls, s: &mut ClientSession) -> MResult<()> {
    c.meta
        .update_one(doc! {"_id": "permissions"}, doc! {"$inc": {"seq": 1_i64}})
        .upsert(true)
        .session(&mut *s)
        .await?;
    Ok(())
}

/// Move the association `aid` of `repo` to the retired ones, removed in
/// version `n`; false if the repository did not hold it.
async fn retire(
    c: &Colls,
    repo: &RepoId,
    aid: &str,
    n: i64,
    s: &mut ClientSession,
) -> MResult<bool> {
    let Some(mut a) = c
        .assocs
        .find_one(doc! {"_id": aid})
        .session(&mut *s)
        .await?
    else {
        return Ok(false);
    };
    c.assocs
        .delete_one(doc! {"_id": aid})
        .session(&mut *s)
        .await?;
    let added_in = int(&a, "added_in")?;
    let id = retired_id(
        repo,
        a.get_str("unit_type").unwrap_or_default(),
        a.get_str("key").unwrap_or_default(),
        added_in,
    );
    a.insert("_id", id);
    a.insert("removed_in", n);
    c.retired.insert_one(a).session(&mut *s).await?;
    Ok(true)
}

/// End a change begun with [`begin_version`]: record the new version, move
/// the repository to it and drop what its version limit no longer keeps;
/// `None` (nothing written) when nothing changed.
async fn commit_version(
    c: &Colls,
    (retain, latest): (Option<u64>, RepoVersion),
    origin: &VersionOrigin,
    added: UnitCounts,
    removed: UnitCounts,
    s: &mut ClientSession,
) -> MResult<Option<RepoVersion>> {
    if added.is_empty() && removed.is_empty() {
        return Ok(None);
    }
    let v = latest.next(origin, added, removed);
    let repo = v.repo_id.as_str();
    c.versions
        .insert_one(version_doc(&v)?)
        .session(&mut *s)
        .await?;
    c.repos
        .update_one(
            doc! {"_id": repo},
            doc! {"$set": {"version": v.number as i64}},
        )
        .session(&mut *s)
        .await?;
    if let Some(keep) = retain
        && v.number + 1 > keep.max(1)
    {
        let oldest = (v.number + 1 - keep.max(1)) as i64;
        // Versions a publication serves stay, with what they hold: the
        // publication serves them until the next publish.
        let mut published: Vec<i64> = Vec::new();
        for p in find_all(&c.pubs, doc! {"repo": repo}, doc! {}, s).await? {
            published.extend(from_doc::<Publication>(&p)?.version.map(|n| n as i64));
        }
        c.versions
            .delete_many(doc! {"repo": repo, "number": {"$lt": oldest, "$nin": published.clone()}})
            .session(&mut *s)
            .await?;
        let mut retired = doc! {"repo": repo, "removed_in": {"$lte": oldest}};
        if !published.is_empty() {
            let seen_in: Vec<Document> = published
                .iter()
                .map(|n| doc! {"added_in": {"$lte": *n}, "removed_in": {"$gt": *n}})
                .collect();
            retired.insert("$nor", seen_in);
        }
        c.retired.delete_many(retired).session(&mut *s).await?;
    }
    Ok(Some(v))
}

fn pub_id(plugin: &str, name: &str) -> String {
    serde_json::to_string(&(plugin, name)).expect("strings serialize")
}

fn subject_key(s: &Subject) -> String {
    match s {
        Subject::User(login) => format!("user:{login}"),
        Subject::Role(id) => format!("role:{id}"),
    }
}

fn subject_name(s: &Subject) -> String {
    match s {
        Subject::User(login) => format!("user {login}"),
        Subject::Role(id) => format!("role {id}"),
    }
}

fn strings(d: &Document, field: &str) -> MResult<Vec<String>> {
    match d.get(field) {
        None => Ok(Vec::new()),
        Some(Bson::Array(a)) => a
            .iter()
            .map(|b| {
                b.as_str().map(str::to_string).ok_or_else(|| {
                    abort(Abort::Corrupt(format!(
                        "{field} of {:?} holds a non-string",
                        d.get("_id")
                    )))
                })
            })
            .collect(),
        Some(_) => Err(abort(Abort::Corrupt(format!(
            "{field} of {:?} is not an array",
            d.get("_id")
        )))),
    }
}

fn operations(d: &Document) -> MResult<Vec<Operation>> {
    strings(d, "operations")?
        .into_iter()
        .map(|o| {
            serde_json::from_value(serde_json::Value::String(o.clone()))
                .map_err(|_| abort(Abort::Corrupt(format!("unknown operation {o:?}"))))
        })
        .collect()
}

/// Tell the publications' change feed, in the transaction `s`, that the
/// publication of `repo` for `plugin` changed: the counter moves and the
/// pair takes its new position. Two such transactions write the same
/// counter and so conflict: one commits first, and the feed's order is the
/// order of the commits.
async fn feed_publication(
    c: &Colls,
    plugin: &str,
    repo: &str,
    s: &mut ClientSession,
) -> MResult<()> {
    c.meta
        .update_one(doc! {"_id": FEED_COUNTER}, doc! {"$inc": {"value": 1_i64}})
        .upsert(true)
        .session(&mut *s)
        .await?;
    let counter = c
        .meta
        .find_one(doc! {"_id": FEED_COUNTER})
        .session(&mut *s)
        .await?
        .ok_or_else(|| {
            abort(Abort::Corrupt(
                "the publication feed's counter vanished".into(),
            ))
        })?;
    let seq = int(&counter, "value")?;
    c.feed
        .replace_one(
            doc! {"_id": pub_id(plugin, repo)},
            doc! {"plugin": plugin, "repo": repo, "seq": seq},
        )
        .upsert(true)
        .session(&mut *s)
        .await?;
    Ok(())
}

/// Claim a document for this transaction (see the module docs); false if
/// it does not exist.
async fn claim(c: &Collection<Document>, id: &str, s: &mut ClientSession) -> MResult<bool> {
    let r = c
        .update_one(doc! {"_id": id}, doc! {"$inc": {"claims": 1_i64}})
        .session(&mut *s)
        .await?;
    Ok(r.matched_count > 0)
}

async fn find_all(
    c: &Collection<Document>,
    filter: Document,
    sort: Document,
    s: &mut ClientSession,
) -> MResult<Vec<Document>> {
    let mut cursor = c.find(filter).sort(sort).session(&mut *s).await?;
    cursor.stream(&mut *s).try_collect().await
}

fn task_doc(t: &Task) -> StoreResult<Document> {
    Ok(doc! {
        "_id": t.id.to_string(),
        "kind": t.kind.as_str(),
        "state": t.state.as_str(),
        "locks": t.locks.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        "cancel_requested": t.cancel_requested,
        "doc": to_json(t)?,
    })
}

fn read_task(d: &Document) -> MResult<Task> {
    let mut t: Task = from_doc(d)?;
    // Cancel requests are written to the field alone (see request_task_cancel).
    t.cancel_requested |= d.get_bool("cancel_requested").unwrap_or(false);
    Ok(t)
}

fn read_group(d: &Document) -> MResult<Group> {
    let mut g: Group = from_doc(d)?;
    let mut members = Vec::new();
    for m in strings(d, "members")? {
        members.push(
            m.parse()
                .map_err(|e| abort(Abort::Corrupt(format!("group member {m:?}: {e}"))))?,
        );
    }
    members.sort();
    g.members = members;
    Ok(g)
}

fn read_user(d: &Document) -> MResult<User> {
    let mut u: User = from_doc(d)?;
    let mut roles = strings(d, "roles")?;
    roles.sort();
    u.roles = roles;
    Ok(u)
}

/// The `unit` ids association documents point at, in their order.
fn unit_ids(assocs: &[Document]) -> Vec<&str> {
    assocs
        .iter()
        .filter_map(|a| a.get_str("unit").ok())
        .collect()
}

fn read_unit(d: &Document) -> MResult<Unit> {
    let unit_type = d.get_str("unit_type").unwrap_or_default().parse().map_err(
        |e: wharf_core::ids::InvalidUnitType| {
            mongodb::error::Error::custom(format!("a stored unit: {e}"))
        },
    )?;
    let key = d.get_str("key").unwrap_or_default().to_string();
    let metadata: serde_json::Value = from_doc(d)?;
    Ok(Unit {
        unit_type,
        key,
        metadata,
        blobs: unit_blobs(d)?,
    })
}

/// The `blobs` of a unit document.
fn unit_blobs(d: &Document) -> MResult<Vec<Digest>> {
    let mut blobs = Vec::new();
    for b in strings(d, "blobs")? {
        blobs.push(
            b.parse()
                .map_err(|e| abort(Abort::Corrupt(format!("unit blob {b:?}: {e}"))))?,
        );
    }
    Ok(blobs)
}

fn index(keys: Document, unique: bool) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().unique(unique).build())
        .build()
}

/// Bring the database from schema `from` to `to`.
async fn migrate(db: &Database, version: i64) -> anyhow::Result<()> {
    let c = |n: &str| db.collection::<Document>(n);
    match version {
        1 => {
            let plan: &[(&str, Vec<IndexModel>)] = &[
                (
                    coll::REPOS,
                    vec![
                        index(doc! {"content_type": 1, "_id": 1}, false),
                        index(doc! {"notes": 1}, false),
                    ],
                ),
                (
                    coll::ASSOCS,
                    vec![
                        index(doc! {"repo": 1, "unit_type": 1, "key": 1}, true),
                        index(doc! {"unit": 1}, false),
                    ],
                ),
                (coll::UNITS, vec![index(doc! {"blobs": 1}, false)]),
                (
                    coll::PUBS,
                    vec![
                        index(doc! {"plugin": 1, "name": 1}, true),
                        index(doc! {"plugin": 1, "repo": 1}, true),
                        index(doc! {"repo": 1}, false),
                    ],
                ),
                (
                    coll::TASKS,
                    vec![
                        index(doc! {"state": 1, "_id": -1}, false),
                        index(doc! {"locks": 1, "state": 1}, false),
                        index(doc! {"kind": 1, "_id": -1}, false),
                    ],
                ),
                (
                    coll::GROUPS,
                    vec![
                        index(doc! {"members": 1}, false),
                        index(doc! {"notes": 1}, false),
                    ],
                ),
                (coll::USERS, vec![index(doc! {"roles": 1}, false)]),
                (
                    coll::PERMS,
                    vec![index(doc! {"subject": 1, "resource": 1}, true)],
                ),
                (
                    coll::TOKENS,
                    vec![
                        index(doc! {"login": 1}, false),
                        index(doc! {"expires_at": 1}, false),
                    ],
                ),
            ];
            for (name, indexes) in plan {
                c(name)
                    .create_indexes(indexes.clone())
                    .await
                    .with_context(|| format!("creating the indexes of {name}"))?;
            }
            // Collections without secondary indexes exist from the start too,
            // so that the first transaction never has to create one.
            let existing = db.list_collection_names().await?;
            for name in [
                coll::LISTENERS,
                coll::UPLOADS,
                coll::ROLES,
                coll::PLUGINS,
                coll::SECRETS,
                coll::META,
            ] {
                if !existing.iter().any(|e| e == name) {
                    match db.create_collection(name).await {
                        Err(e) if !is_namespace_exists(&e) => {
                            return Err(e).with_context(|| format!("creating {name}"));
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        }
        2 => {
            c(coll::REPOS)
                .create_indexes(vec![index(doc! {"settings": 1}, false)])
                .await
                .context("creating the settings index of repositories")?;
            // Index the repositories written before: idempotent, so a node
            // that runs it again (or at once) rewrites the same values.
            let mut cursor = c(coll::REPOS)
                .find(doc! {"settings": {"$exists": false}})
                .await?;
            while let Some(d) = cursor.try_next().await? {
                let repo: Repository = from_doc(&d)?;
                c(coll::REPOS)
                    .update_one(
                        doc! {"_id": repo.id.as_str()},
                        doc! {"$set": {"settings": settings_index(&repo)}},
                    )
                    .await?;
            }
            Ok(())
        }
        3 => {
            let plan: &[(&str, Vec<IndexModel>)] = &[
                (
                    coll::ASSOCS,
                    vec![index(doc! {"repo": 1, "added_in": 1}, false)],
                ),
                (
                    coll::RETIRED,
                    vec![
                        index(
                            doc! {"repo": 1, "unit_type": 1, "key": 1, "added_in": 1},
                            true,
                        ),
                        index(doc! {"repo": 1, "added_in": 1}, false),
                        index(doc! {"repo": 1, "removed_in": 1}, false),
                        index(doc! {"unit": 1}, false),
                    ],
                ),
                (
                    coll::VERSIONS,
                    vec![index(doc! {"repo": 1, "number": 1}, true)],
                ),
            ];
            for (name, indexes) in plan {
                c(name)
                    .create_indexes(indexes.clone())
                    .await
                    .with_context(|| format!("creating the indexes of {name}"))?;
            }
            // Associations from before versions belong to version 0, which
            // holds each repository's content then. Idempotent.
            c(coll::ASSOCS)
                .update_many(
                    doc! {"added_in": {"$exists": false}},
                    doc! {"$set": {"added_in": 0_i64}},
                )
                .await?;
            let mut cursor = c(coll::REPOS)
                .find(doc! {"version": {"$exists": false}})
                .await?;
            while let Some(d) = cursor.try_next().await? {
                let repo: Repository = from_doc(&d)?;
                let counts = count_assocs(&c(coll::ASSOCS), &repo.id).await?;
                let v0 = RepoVersion::initial(repo.id.clone(), counts);
                c(coll::VERSIONS)
                    .replace_one(
                        doc! {"_id": version_id(repo.id.as_str(), 0)},
                        version_doc(&v0)?,
                    )
                    .upsert(true)
                    .await?;
                c(coll::REPOS)
                    .update_one(
                        doc! {"_id": repo.id.as_str(), "version": {"$exists": false}},
                        doc! {"$set": {"version": 0_i64}},
                    )
                    .await?;
            }
            Ok(())
        }
        4 => {
            c(coll::PUB_FEED)
                .create_indexes(vec![index(doc! {"seq": 1}, true)])
                .await
                .context("creating the index of publication_feed")?;
            c(coll::REPOS)
                .create_indexes(vec![
                    index(doc! {"settings": 1, "_id": 1}, false),
                    index(doc! {"notes": 1, "_id": 1}, false),
                ])
                .await
                .context("creating the filtered listing indexes of repositories")?;
            Ok(())
        }
        5 => {
            c(coll::ASSOCS)
                .create_indexes(vec![index(
                    doc! {"repo": 1, "unit_type": 1, "key": 1, "added_in": 1},
                    false,
                )])
                .await
                .context("creating the history index of associations")?;
            Ok(())
        }
        6 => {
            c(coll::ASSOCS)
                .create_indexes(vec![index(
                    doc! {"repo": 1, "blobs": 1, "unit_type": 1, "key": 1},
                    false,
                )])
                .await
                .context("creating the blob index of associations")?;
            c(coll::TASKS)
                .create_indexes(vec![
                    index(doc! {"locks": 1, "_id": -1}, false),
                    index(doc! {"locks": 1, "state": 1, "_id": -1}, false),
                ])
                .await
                .context("creating the lock indexes of tasks")?;
            // Associations (current and retired) written before carry their
            // unit's blobs now, a batch of units at a time. Idempotent.
            for name in [coll::ASSOCS, coll::RETIRED] {
                let coll = c(name);
                let mut cursor = coll
                    .find(doc! {"blobs": {"$exists": false}})
                    .projection(doc! {"unit": 1})
                    .await?;
                let mut batch: Vec<(Bson, String)> = Vec::new();
                loop {
                    let next = cursor.try_next().await?;
                    if let Some(a) = &next {
                        let unit = a.get_str("unit").unwrap_or_default().to_string();
                        batch.push((a.get("_id").cloned().unwrap_or(Bson::Null), unit));
                    }
                    if batch.len() < 500 && next.is_some() {
                        continue;
                    }
                    let ids: Vec<&str> = batch.iter().map(|(_, u)| u.as_str()).collect();
                    let mut blobs: HashMap<String, Bson> = HashMap::new();
                    let mut units = c(coll::UNITS)
                        .find(doc! {"_id": {"$in": &ids}})
                        .projection(doc! {"blobs": 1})
                        .await?;
                    while let Some(u) = units.try_next().await? {
                        let id = u.get_str("_id").unwrap_or_default().to_string();
                        blobs.insert(
                            id,
                            u.get("blobs").cloned().unwrap_or(Bson::Array(Vec::new())),
                        );
                    }
                    for (id, unit) in batch.drain(..) {
                        let held = blobs.get(&unit).cloned().unwrap_or(Bson::Array(Vec::new()));
                        coll.update_one(doc! {"_id": id}, doc! {"$set": {"blobs": held}})
                            .await?;
                    }
                    if next.is_none() {
                        break;
                    }
                }
            }
            Ok(())
        }
        v => anyhow::bail!("no migration to schema version {v}"),
    }
}

/// Units per type a repository's associations hold.
async fn count_assocs(assocs: &Collection<Document>, repo: &RepoId) -> StoreResult<UnitCounts> {
    let rows: Vec<Document> = assocs
        .aggregate([
            doc! {"$match": {"repo": repo.as_str()}},
            doc! {"$group": {"_id": "$unit_type", "n": {"$sum": 1_i64}}},
        ])
        .await?
        .try_collect()
        .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        let t = r.get_str("_id").unwrap_or_default().to_string();
        let n = int(&r, "n")? as u64;
        let t = t.parse().map_err(|e: wharf_core::ids::InvalidUnitType| {
            StoreError::Backend(anyhow::anyhow!("a stored unit count: {e}"))
        })?;
        out.insert(t, n);
    }
    Ok(out)
}

/// Another node created the collection first (server error 48).
fn is_namespace_exists(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == 48)
}

impl MongoStore {
    /// Connect to `url`; the database is the URL's path, else
    /// [`DEFAULT_DATABASE`]. Applies pending migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_database(url, None).await
    }

    /// Connect to `url` and use `database` (over the URL's).
    pub async fn open_database(url: &str, database: Option<&str>) -> anyhow::Result<Self> {
        let shown = redact(url);
        let mut options = ClientOptions::parse(url)
            .await
            .with_context(|| format!("--db {shown} is not a valid MongoDB URL"))?;
        // Fail a start against an unreachable server in seconds, not 30.
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(10));
        options.app_name.get_or_insert_with(|| "wharf".into());
        // An acknowledged write (a push, an import, a task's end) survives
        // the loss of a node: it is on a majority of the replica set, in its
        // journal. A URL's own `w=`/`journal=` wins.
        options.write_concern.get_or_insert_with(|| {
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build()
        });
        let name = database
            .map(str::to_string)
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        Self::connect(options, &name, &shown).await
    }

    /// Connect with `options` to database `name` (`shown`: the server, as
    /// errors name it). Applies pending migrations.
    pub(crate) async fn connect(
        options: ClientOptions,
        name: &str,
        shown: &str,
    ) -> anyhow::Result<Self> {
        let client = Client::with_options(options)?;
        let db = client.database(name);
        db.run_command(doc! {"ping": 1}).await.with_context(|| {
            format!("cannot reach MongoDB at {shown}: is the server running and the URL (--db / WHARF_DB) right?")
        })?;
        let c = |n: &str| db.collection::<Document>(n);
        let store = MongoStore {
            c: Colls {
                repos: c(coll::REPOS),
                units: c(coll::UNITS),
                assocs: c(coll::ASSOCS),
                retired: c(coll::RETIRED),
                versions: c(coll::VERSIONS),
                pubs: c(coll::PUBS),
                tasks: c(coll::TASKS),
                groups: c(coll::GROUPS),
                listeners: c(coll::LISTENERS),
                uploads: c(coll::UPLOADS),
                users: c(coll::USERS),
                roles: c(coll::ROLES),
                perms: c(coll::PERMS),
                tokens: c(coll::TOKENS),
                plugins: c(coll::PLUGINS),
                secrets: c(coll::SECRETS),
                schedules: c(coll::SCHEDULES),
                remotes: c(coll::REMOTES),
                meta: c(coll::META),
                feed: c(coll::PUB_FEED),
            },
            client,
            db,
        };
        store
            .upgrade_schema()
            .await
            .with_context(|| format!("MongoDB database {name} at {shown}"))?;
        Ok(store)
    }

    /// Unit documents by id, in no particular order; only the fields of
    /// `projection` when given.
    async fn units_by_id(
        &self,
        ids: &[&str],
        projection: Option<Document>,
    ) -> StoreResult<Vec<Document>> {
        Ok(self
            .c
            .units
            .find(doc! {"_id": {"$in": ids}})
            .with_options(
                mongodb::options::FindOptions::builder()
                    .projection(projection)
                    .build(),
            )
            .await?
            .try_collect()
            .await?)
    }

    /// The units association documents of `repo` point at, in their order.
    async fn units_in_order(&self, repo: &RepoId, assocs: &[Document]) -> StoreResult<Vec<Unit>> {
        let ids = unit_ids(assocs);
        let units = self.units_by_id(&ids, None).await?;
        let by_id: BTreeMap<&str, &Document> = units
            .iter()
            .filter_map(|u| Some((u.get_str("_id").ok()?, u)))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let u = by_id.get(id).ok_or_else(|| {
                StoreError::Backend(anyhow::anyhow!(
                    "repository {repo} is associated with unit {id}, which does not exist"
                ))
            })?;
            out.push(read_unit(u)?);
        }
        Ok(out)
    }

    /// The schema version recorded in the database (0: empty database).
    pub async fn schema_version(&self) -> anyhow::Result<i64> {
        let meta = self.db.collection::<Document>(coll::META);
        Ok(meta
            .find_one(doc! {"_id": "schema"})
            .await?
            .and_then(|d| d.get_i64("version").ok())
            .unwrap_or(0))
    }

    async fn upgrade_schema(&self) -> anyhow::Result<()> {
        let version = self.schema_version().await?;
        anyhow::ensure!(
            version <= SCHEMA_VERSION,
            "the database has schema version {version}, newer than this wharf understands ({SCHEMA_VERSION}); upgrade wharf"
        );
        let meta = self.db.collection::<Document>(coll::META);
        for (v, what) in MIGRATIONS.iter().filter(|(v, _)| *v > version) {
            tracing::info!(version = v, "migrating the MongoDB schema: {what}");
            migrate(&self.db, *v)
                .await
                .with_context(|| format!("migration to schema version {v}"))?;
            // $max: a node that ran an older migration late never lowers it.
            meta.update_one(
                doc! {"_id": "schema"},
                doc! {"$max": {"version": *v}, "$set": {"updated_at": now().as_str()}},
            )
            .upsert(true)
            .await?;
        }
        Ok(())
    }

    /// Drop the whole database (tests clean up with it).
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        Ok(self.db.drop().await?)
    }

    /// The database, for tests that look at it directly.
    #[cfg(test)]
    pub(crate) fn database(&self) -> &mongodb::Database {
        &self.db
    }

    /// Run `f` in a transaction with `ctx` (owned data it needs), retrying on
    /// transient conflicts.
    async fn txn<C, R, F>(&self, ctx: C, f: F) -> StoreResult<R>
    where
        C: Send,
        R: Send,
        F: for<'b> FnMut(&'b mut ClientSession, &'b mut C) -> BoxFuture<'b, MResult<R>> + Send,
    {
        let mut session = self.client.start_session().await?;
        Ok(session.start_transaction().and_run(ctx, f).await?)
    }
}

#[async_trait::async_trait]
impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.run_command(doc! {"ping": 1}).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl RepositoryStore for MongoStore {
    async fn create_repo(&self, repo: &Repository) -> StoreResult<()> {
        let d = doc! {
            "_id": repo.id.as_str(),
            "content_type": &repo.content_type,
            "notes": notes_index(&repo.notes),
            "settings": settings_index(repo),
            "version": 0_i64,
            "doc": to_json(repo)?,
        };
        let v0 = version_doc(&RepoVersion::initial(repo.id.clone(), UnitCounts::new()))?;
        self.txn((self.c.clone(), d, v0), |s, (c, d, v0)| {
            async move {
                match c.repos.insert_one(&*d).session(&mut *s).await {
                    Err(e) if is_duplicate(&e) => {
                        let id = d.get_str("_id").unwrap_or_default();
                        return Err(abort(Abort::Conflict(format!("repository {id}"))));
                    }
                    r => r?,
                };
                // A repository of this id deleted before may have left none;
                // replace rather than insert to be sure.
                c.versions
                    .replace_one(doc! {"_id": v0.get_str("_id").unwrap_or_default()}, &*v0)
                    .upsert(true)
                    .session(&mut *s)
                    .await?;
                Ok(())
            }
            .boxed()
        })
        .await
    }

    async fn get_repo(&self, id: &RepoId) -> StoreResult<Option<Repository>> {
        let d = self.c.repos.find_one(doc! {"_id": id.as_str()}).await?;
        Ok(d.map(|d| from_doc(&d)).transpose()?)
    }

    async fn update_repo(&self, repo: &Repository) -> StoreResult<()> {
        let r = self
            .c
            .repos
            .update_one(
                doc! {"_id": repo.id.as_str()},
                doc! {"$set": {
                    "content_type": &repo.content_type,
                    "notes": notes_index(&repo.notes),
                    "settings": settings_index(repo),
                    "doc": to_json(repo)?,
                }},
            )
            .await?;
        if r.matched_count == 0 {
            return Err(StoreError::NotFound(format!("repository {}", repo.id)));
        }
        Ok(())
    }

    async fn delete_repo(&self, id: &RepoId) -> StoreResult<bool> {
        self.txn((self.c.clone(), id.to_string()), |s, (c, id)| {
            async move {
                let id = id.as_str();
                for coll in [&c.assocs, &c.retired, &c.versions] {
                    coll.delete_many(doc! {"repo": id}).session(&mut *s).await?;
                }
                for p in find_all(&c.pubs, doc! {"repo": id}, doc! {}, s).await? {
                    feed_publication(c, p.get_str("plugin").unwrap_or_default(), id, s).await?;
                }
                c.pubs
                    .delete_many(doc! {"repo": id})
                    .session(&mut *s)
                    .await?;
                c.groups
                    .update_many(doc! {"members": id}, doc! {"$pull": {"members": id}})
                    .session(&mut *s)
                    .await?;
                let r = c
                    .repos
                    .delete_one(doc! {"_id": id})
                    .session(&mut *s)
                    .await?;
                Ok(r.deleted_count > 0)
            }
            .boxed()
        })
        .await
    }

    async fn list_repos(&self, q: &RepoQuery) -> StoreResult<Vec<Repository>> {
        let mut filter = doc! {"_id": {"$gt": q.after.clone().unwrap_or_default()}};
        if let Some(t) = &q.content_type {
            filter.insert("content_type", t);
        }
        if let Some(n) = notes_filter(&q.notes) {
            filter.insert("notes", n);
        }
        if !q.setting_is_indexed() {
            return Ok(Vec::new());
        }
        if let Some(kv) = &q.setting {
            let key = serde_json::to_string(kv).expect("strings serialize");
            filter.insert("settings", key);
        }
        let docs: Vec<Document> = self
            .c
            .repos
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(i64::from(q.limit.max(1)))
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().map(from_doc).collect::<MResult<_>>()?)
    }

    async fn apply_changes(
        &self,
        repo: &RepoId,
        changes: &[UnitChange],
        origin: &VersionOrigin,
    ) -> StoreResult<Option<RepoVersion>> {
        // Serialized before the transaction: a retry reuses them.
        let mut staged = Vec::with_capacity(changes.len());
        for ch in last_change_per_unit(changes) {
            staged.push(match ch {
                UnitChange::Add(u) => (
                    u.unit_type.clone(),
                    u.key.clone(),
                    Some((
                        to_json(&u.metadata)?,
                        u.blobs.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
                    )),
                ),
                UnitChange::Remove { unit_type, key } => (unit_type.clone(), key.clone(), None),
            });
        }
        let ctx = (self.c.clone(), repo.clone(), staged, origin.clone());
        self.txn(ctx, |s, (c, repo, staged, origin)| {
            async move {
                let begun = begin_version(c, repo, s).await?;
                let n = (begun.1.number + 1) as i64;
                let (mut added, mut removed) = (UnitCounts::new(), UnitCounts::new());
                for (unit_type, key, add) in staged.iter() {
                    let uid = unit_id(unit_type.as_str(), key);
                    let aid = assoc_id(repo, unit_type.as_str(), key);
                    match add {
                        Some((metadata, blobs)) => {
                            let held = put_unit(c, &uid, (unit_type.as_str(), key), metadata, blobs, s).await?;
                            let r = c
                                .assocs
                                .update_one(
                                    doc! {"_id": &aid},
                                    doc! {"$setOnInsert": {"repo": repo.as_str(), "unit_type": unit_type.as_str(), "key": key, "unit": &uid, "added_in": n, "blobs": held}},
                                )
                                .upsert(true)
                                .session(&mut *s)
                                .await?;
                            if r.upserted_id.is_some() {
                                *added.entry(unit_type.clone()).or_default() += 1;
                            }
                        }
                        None => {
                            if retire(c, repo, &aid, n, s).await? {
                                *removed.entry(unit_type.clone()).or_default() += 1;
                            }
                        }
                    }
                }
                commit_version(c, begun.clone(), origin, added, removed, s).await
            }
            .boxed()
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
        let limit = limit.max(1) as usize;
        let mut rows = Vec::new();
        for (coll, retired) in [(&self.c.assocs, false), (&self.c.retired, true)] {
            let mut f = held_in(repo, version, retired);
            f.insert("unit_type", unit_type.as_str());
            f.insert("key", doc! {"$gt": after.unwrap_or_default()});
            let found: Vec<Document> = coll
                .find(f)
                .sort(doc! {"key": 1})
                .limit(limit as i64)
                .projection(doc! {"key": 1, "unit": 1})
                .await?
                .try_collect()
                .await?;
            rows.extend(found);
        }
        rows.sort_by(|a, b| a.get_str("key").ok().cmp(&b.get_str("key").ok()));
        rows.truncate(limit);
        self.units_in_order(repo, &rows).await
    }

    async fn get_version_unit(
        &self,
        repo: &RepoId,
        version: u64,
        unit_type: &UnitType,
        key: &str,
    ) -> StoreResult<Option<Unit>> {
        for (coll, retired) in [(&self.c.assocs, false), (&self.c.retired, true)] {
            let mut f = held_in(repo, version, retired);
            f.insert("unit_type", unit_type.as_str());
            f.insert("key", key);
            if coll.find_one(f).await?.is_some() {
                let u = self
                    .c
                    .units
                    .find_one(doc! {"_id": unit_id(unit_type.as_str(), key)})
                    .await?;
                return Ok(u.map(|u| read_unit(&u)).transpose()?);
            }
        }
        Ok(None)
    }

    async fn list_versions(
        &self,
        repo: &RepoId,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<RepoVersion>> {
        let after = after.map_or(-1, |n| n as i64);
        let docs: Vec<Document> = self
            .c
            .versions
            .find(doc! {"repo": repo.as_str(), "number": {"$gt": after}})
            .sort(doc! {"number": 1})
            .limit(i64::from(limit.max(1)))
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().map(from_doc).collect::<MResult<_>>()?)
    }

    async fn get_version(&self, repo: &RepoId, number: u64) -> StoreResult<Option<RepoVersion>> {
        let d = self
            .c
            .versions
            .find_one(doc! {"_id": version_id(repo.as_str(), number)})
            .await?;
        Ok(d.map(|d| from_doc(&d)).transpose()?)
    }

    async fn latest_version(&self, repo: &RepoId) -> StoreResult<Option<RepoVersion>> {
        let d = self
            .c
            .versions
            .find_one(doc! {"repo": repo.as_str()})
            .sort(doc! {"number": -1})
            .await?;
        Ok(d.map(|d| from_doc(&d)).transpose()?)
    }

    async fn diff_versions(&self, repo: &RepoId, from: u64, to: u64) -> StoreResult<VersionDiff> {
        for n in [from, to] {
            if self.get_version(repo, n).await?.is_none() {
                return Err(StoreError::NotFound(format!(
                    "version {n} of repository {repo}"
                )));
            }
        }
        let (lo, hi) = (from.min(to) as i64, from.max(to) as i64);
        let proj = doc! {"unit_type": 1, "key": 1};
        let find = |coll: &Collection<Document>, f: Document| {
            let coll = coll.clone();
            let proj = proj.clone();
            async move {
                let d: Vec<Document> = coll.find(f).projection(proj).await?.try_collect().await?;
                refs_of(&d)
            }
        };
        let added_in = doc! {"$gt": lo, "$lte": hi};
        let mut gained = find(
            &self.c.assocs,
            doc! {"repo": repo.as_str(), "added_in": added_in.clone()},
        )
        .await?;
        gained.extend(
            find(
                &self.c.retired,
                doc! {"repo": repo.as_str(), "added_in": added_in, "removed_in": {"$gt": hi}},
            )
            .await?,
        );
        let lost = find(
            &self.c.retired,
            doc! {"repo": repo.as_str(), "removed_in": {"$gt": lo, "$lte": hi}, "added_in": {"$lte": lo}},
        )
        .await?;
        Ok(super::version::diff(from, to, gained, lost))
    }

    async fn version_blob_refs(
        &self,
        repo: &RepoId,
        version: u64,
    ) -> StoreResult<Vec<(Digest, u32)>> {
        let mut rows = Vec::new();
        for (coll, retired) in [(&self.c.assocs, false), (&self.c.retired, true)] {
            let found: Vec<Document> = coll
                .find(held_in(repo, version, retired))
                .projection(doc! {"unit": 1})
                .await?
                .try_collect()
                .await?;
            rows.extend(found);
        }
        let units = self
            .units_by_id(&unit_ids(&rows), Some(doc! {"blobs": 1}))
            .await?;
        let mut out: std::collections::BTreeMap<Digest, u32> = std::collections::BTreeMap::new();
        for u in &units {
            for d in unit_blobs(u)? {
                *out.entry(d).or_default() += 1;
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn list_history(
        &self,
        repo: &RepoId,
        after: Option<&(UnitRef, u64)>,
        limit: u32,
    ) -> StoreResult<Vec<HistoryEntry>> {
        let limit = limit.max(1) as usize;
        let mut f = doc! {"repo": repo.as_str()};
        if let Some((r, n)) = after {
            let t = r.unit_type.as_str();
            f.insert(
                "$or",
                vec![
                    doc! {"unit_type": {"$gt": t}},
                    doc! {"unit_type": t, "key": {"$gt": &r.key}},
                    doc! {"unit_type": t, "key": &r.key, "added_in": {"$gt": *n as i64}},
                ],
            );
        }
        let mut rows = Vec::new();
        for coll in [&self.c.assocs, &self.c.retired] {
            let found: Vec<Document> = coll
                .find(f.clone())
                .sort(doc! {"unit_type": 1, "key": 1, "added_in": 1})
                .limit(limit as i64)
                .await?
                .try_collect()
                .await?;
            rows.extend(found);
        }
        let order = |d: &Document| {
            (
                d.get_str("unit_type").unwrap_or_default().to_string(),
                d.get_str("key").unwrap_or_default().to_string(),
                int(d, "added_in").unwrap_or_default(),
            )
        };
        rows.sort_by_key(order);
        rows.truncate(limit);
        let units = self.units_in_order(repo, &rows).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (unit, row) in units.into_iter().zip(&rows) {
            out.push(HistoryEntry {
                unit,
                added_in: int(row, "added_in")? as u64,
                removed_in: match row.get("removed_in") {
                    None => None,
                    Some(_) => Some(int(row, "removed_in")? as u64),
                },
            });
        }
        Ok(out)
    }

    async fn import_history(
        &self,
        repo: &RepoId,
        entries: &[HistoryEntry],
        versions: &[RepoVersion],
    ) -> StoreResult<()> {
        let mut staged = Vec::with_capacity(entries.len());
        for e in entries {
            let u = &e.unit;
            staged.push((
                u.unit_type.to_string(),
                u.key.clone(),
                to_json(&u.metadata)?,
                u.blobs.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
                e.added_in as i64,
                e.removed_in.map(|r| r as i64),
            ));
        }
        let mut vdocs = Vec::with_capacity(versions.len());
        for v in versions {
            if v.repo_id != *repo {
                return Err(StoreError::Backend(anyhow::anyhow!(
                    "version {} of repository {} given for repository {repo}",
                    v.number,
                    v.repo_id
                )));
            }
            vdocs.push(version_doc(v)?);
        }
        let latest = versions.iter().map(|v| v.number as i64).max();
        let ctx = (self.c.clone(), repo.clone(), staged, vdocs, latest);
        self.txn(ctx, |s, (c, repo, staged, vdocs, latest)| {
            async move {
                if !claim(&c.repos, repo.as_str(), s).await? {
                    return Err(abort(Abort::NotFound(format!("repository {repo}"))));
                }
                for (t, k, metadata, blobs, added_in, removed_in) in staged.iter() {
                    let uid = unit_id(t, k);
                    let held = put_unit(c, &uid, (t, k), metadata, blobs, s).await?;
                    let row = doc! {"repo": repo.as_str(), "unit_type": t, "key": k, "unit": &uid, "added_in": *added_in, "blobs": held};
                    match removed_in {
                        None => {
                            c.assocs
                                .replace_one(doc! {"_id": assoc_id(repo, t, k)}, row)
                                .upsert(true)
                                .session(&mut *s)
                                .await?
                        }
                        Some(r) => {
                            let mut row = row;
                            row.insert("removed_in", *r);
                            c.retired
                                .replace_one(doc! {"_id": retired_id(repo, t, k, *added_in)}, row)
                                .upsert(true)
                                .session(&mut *s)
                                .await?
                        }
                    };
                }
                if !vdocs.is_empty() {
                    c.versions
                        .delete_many(doc! {"repo": repo.as_str()})
                        .session(&mut *s)
                        .await?;
                }
                for d in vdocs.iter() {
                    c.versions.insert_one(d).session(&mut *s).await?;
                }
                if let Some(n) = latest {
                    c.repos
                        .update_one(doc! {"_id": repo.as_str()}, doc! {"$set": {"version": *n}})
                        .session(&mut *s)
                        .await?;
                }
                Ok(())
            }
            .boxed()
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
        let assocs: Vec<Document> = self
            .c
            .assocs
            .find(doc! {"repo": repo.as_str(), "unit_type": unit_type, "key": {"$gt": after.unwrap_or_default()}})
            .sort(doc! {"key": 1})
            .limit(i64::from(limit.max(1)))
            .projection(doc! {"unit": 1})
            .await?
            .try_collect()
            .await?;
        self.units_in_order(repo, &assocs).await
    }

    async fn list_unit_additions(
        &self,
        repo: &RepoId,
        unit_type: &UnitType,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(String, u64)>> {
        let assocs: Vec<Document> = self
            .c
            .assocs
            .find(doc! {"repo": repo.as_str(), "unit_type": unit_type.as_str(), "key": {"$gt": after.unwrap_or_default()}})
            .sort(doc! {"key": 1})
            .limit(i64::from(limit.max(1)))
            .projection(doc! {"key": 1, "added_in": 1})
            .await?
            .try_collect()
            .await?;
        Ok(assocs
            .iter()
            .map(|a| {
                let key = a
                    .get_str("key")
                    .map_err(|e| abort(Abort::Corrupt(e.to_string())))?;
                Ok((key.to_string(), int(a, "added_in")?.max(0) as u64))
            })
            .collect::<MResult<_>>()?)
    }

    async fn get_unit(
        &self,
        repo: &RepoId,
        unit_type: &UnitType,
        key: &str,
    ) -> StoreResult<Option<Unit>> {
        let unit_type = unit_type.as_str();
        if self
            .c
            .assocs
            .find_one(doc! {"_id": assoc_id(repo, unit_type, key)})
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let u = self
            .c
            .units
            .find_one(doc! {"_id": unit_id(unit_type, key)})
            .await?;
        Ok(u.map(|u| read_unit(&u)).transpose()?)
    }

    async fn count_units(&self, repo: &RepoId) -> StoreResult<BTreeMap<UnitType, u64>> {
        count_assocs(&self.c.assocs, repo).await
    }

    async fn copy_units(
        &self,
        from: &RepoId,
        to: &RepoId,
        unit_types: &[UnitType],
        origin: &VersionOrigin,
    ) -> StoreResult<Option<RepoVersion>> {
        let types: Vec<String> = unit_types.iter().map(|t| t.to_string()).collect();
        let ctx = (
            self.c.clone(),
            from.clone(),
            to.clone(),
            types,
            origin.clone(),
        );
        self.txn(ctx, |s, (c, from, to, types, origin)| {
            async move {
                if !claim(&c.repos, from.as_str(), s).await? {
                    return Err(abort(Abort::NotFound(format!("repository {from}"))));
                }
                let begun = begin_version(c, to, s).await?;
                let n = (begun.1.number + 1) as i64;
                let mut filter = doc! {"repo": from.as_str()};
                if !types.is_empty() {
                    filter.insert("unit_type", doc! {"$in": &*types});
                }
                let assocs = find_all(&c.assocs, filter, doc! {"_id": 1}, s).await?;
                let mut added = UnitCounts::new();
                for a in assocs {
                    let (t, k, u) = (
                        a.get_str("unit_type").unwrap_or_default(),
                        a.get_str("key").unwrap_or_default(),
                        a.get_str("unit").unwrap_or_default(),
                    );
                    let held = a.get("blobs").cloned().unwrap_or_else(|| Bson::Array(Vec::new()));
                    let r = c
                        .assocs
                        .update_one(
                            doc! {"_id": assoc_id(to, t, k)},
                            doc! {"$setOnInsert": {"repo": to.as_str(), "unit_type": t, "key": k, "unit": u, "added_in": n, "blobs": held}},
                        )
                        .upsert(true)
                        .session(&mut *s)
                        .await?;
                    if r.upserted_id.is_some() {
                        let t = t.parse().map_err(|e: wharf_core::ids::InvalidUnitType| {
                            abort(Abort::Corrupt(format!("an association: {e}")))
                        })?;
                        *added.entry(t).or_default() += 1;
                    }
                }
                commit_version(c, begun, origin, added, UnitCounts::new(), s).await
            }
            .boxed()
        })
        .await
    }

    async fn remove_orphan_units(&self) -> StoreResult<u64> {
        // Candidates first, outside the transaction (a scan); each is then
        // deleted only if, inside the transaction, still nothing references it.
        let candidates: Vec<String> = self
            .c
            .units
            .aggregate([
                doc! {"$project": {"_id": 1}},
                doc! {"$lookup": {"from": coll::ASSOCS, "localField": "_id", "foreignField": "unit", "as": "refs"}},
                doc! {"$match": {"refs": {"$size": 0}}},
                doc! {"$lookup": {"from": coll::RETIRED, "localField": "_id", "foreignField": "unit", "as": "history"}},
                doc! {"$match": {"history": {"$size": 0}}},
                doc! {"$project": {"_id": 1}},
            ])
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_string))
            .collect();
        let mut removed = 0;
        // Bounded transactions: a huge cleanup must not hit the server's
        // transaction size and time limits.
        for batch in candidates.chunks(500) {
            removed += self
                .txn((self.c.clone(), batch.to_vec()), |s, (c, batch)| {
                    async move {
                        let mut referenced: Vec<String> = Vec::new();
                        for coll in [&c.assocs, &c.retired] {
                            referenced.extend(
                                find_all(coll, doc! {"unit": {"$in": &*batch}}, doc! {"_id": 1}, s)
                                    .await?
                                    .iter()
                                    .filter_map(|a| a.get_str("unit").ok().map(str::to_string)),
                            );
                        }
                        let orphans: Vec<&String> =
                            batch.iter().filter(|u| !referenced.contains(u)).collect();
                        let r = c
                            .units
                            .delete_many(doc! {"_id": {"$in": orphans}})
                            .session(&mut *s)
                            .await?;
                        Ok(r.deleted_count)
                    }
                    .boxed()
                })
                .await?;
        }
        Ok(removed)
    }

    async fn referenced_blobs(&self) -> StoreResult<DigestSet> {
        // A cursor, not `distinct`: a million digests would pass the 16 MB
        // limit of one answer.
        let mut out = DigestSetBuilder::default();
        let mut units = self
            .c
            .units
            .find(doc! {})
            .projection(doc! {"blobs": 1})
            .await?;
        while let Some(u) = units.try_next().await? {
            for b in unit_blobs(&u)? {
                out.add(&b);
            }
        }
        let mut pubs = self.c.pubs.find(doc! {}).await?;
        while let Some(p) = pubs.try_next().await? {
            let p = from_doc::<Publication>(&p)?;
            out.add(&p.index);
            p.blobs.iter().for_each(|b| out.add(b));
        }
        Ok(out.build())
    }

    async fn repo_blobs(&self, repo: &RepoId) -> StoreResult<Vec<Digest>> {
        let assocs: Vec<Document> = self
            .c
            .assocs
            .find(doc! {"repo": repo.as_str()})
            .projection(doc! {"unit": 1})
            .await?
            .try_collect()
            .await?;
        let units = self
            .units_by_id(&unit_ids(&assocs), Some(doc! {"blobs": 1}))
            .await?;
        let mut out = std::collections::BTreeSet::new();
        for u in &units {
            out.extend(unit_blobs(u)?);
        }
        Ok(out.into_iter().collect())
    }

    async fn repo_holds_blob(&self, repo: &RepoId, blob: &Digest) -> StoreResult<bool> {
        Ok(self
            .c
            .assocs
            .find_one(doc! {"repo": repo.as_str(), "blobs": blob.to_string()})
            .projection(doc! {"_id": 1})
            .await?
            .is_some())
    }

    async fn list_units_naming(
        &self,
        repo: &RepoId,
        blob: &Digest,
        unit_type: &UnitType,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Unit>> {
        let assocs: Vec<Document> = self
            .c
            .assocs
            .find(doc! {
                "repo": repo.as_str(),
                "blobs": blob.to_string(),
                "unit_type": unit_type.as_str(),
                "key": {"$gt": after.unwrap_or_default()},
            })
            .sort(doc! {"key": 1})
            .limit(i64::from(limit.max(1)))
            .projection(doc! {"unit": 1})
            .await?
            .try_collect()
            .await?;
        self.units_in_order(repo, &assocs).await
    }

    async fn repos_holding_blob(&self, blob: &Digest) -> StoreResult<Vec<RepoId>> {
        let units: Vec<Document> = self
            .c
            .units
            .find(doc! {"blobs": blob.to_string()})
            .projection(doc! {"_id": 1})
            .await?
            .try_collect()
            .await?;
        let ids: Vec<&str> = units.iter().filter_map(|u| u.get_str("_id").ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let assocs: Vec<Document> = self
            .c
            .assocs
            .find(doc! {"unit": {"$in": &ids}})
            .projection(doc! {"repo": 1})
            .await?
            .try_collect()
            .await?;
        let mut out = std::collections::BTreeSet::new();
        for a in &assocs {
            let repo = a
                .get_str("repo")
                .map_err(|e| StoreError::Backend(e.into()))?;
            out.insert(repo.parse::<RepoId>().map_err(|e| {
                StoreError::Backend(anyhow::anyhow!("association of {repo:?}: {e}"))
            })?);
        }
        Ok(out.into_iter().collect())
    }

    async fn put_publication(&self, p: &Publication) -> StoreResult<()> {
        let d = doc! {
            "_id": pub_id(&p.plugin, &p.name),
            "plugin": &p.plugin,
            "name": &p.name,
            "repo": p.repo_id.as_str(),
            "doc": to_json(p)?,
        };
        self.txn((self.c.clone(), d, p.repo_id.clone()), |s, (c, d, repo)| {
            async move {
                if !claim(&c.repos, repo.as_str(), s).await? {
                    return Err(abort(Abort::NotFound(format!("repository {repo}"))));
                }
                let plugin = d.get_str("plugin").unwrap_or_default();
                let name = d.get_str("name").unwrap_or_default();
                // What this one replaces: the repository's publication and
                // the name's (each found by its own unique index).
                let replaced = [
                    doc! {"plugin": plugin, "repo": repo.as_str()},
                    doc! {"plugin": plugin, "name": name},
                ];
                // A repository that loses its name to this one is in the feed too.
                for gone in find_all(&c.pubs, replaced[1].clone(), doc! {}, s).await? {
                    let gone = gone.get_str("repo").unwrap_or_default();
                    if gone != repo.as_str() {
                        feed_publication(c, plugin, gone, s).await?;
                    }
                }
                for filter in replaced {
                    c.pubs.delete_many(filter).session(&mut *s).await?;
                }
                c.pubs.insert_one(d.clone()).session(&mut *s).await?;
                feed_publication(c, plugin, repo.as_str(), s).await?;
                Ok(())
            }
            .boxed()
        })
        .await
    }

    async fn publications_after(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<Publication>> {
        let filter = match after {
            Some((plugin, name)) => doc! {"$or": [
                {"plugin": plugin, "name": {"$gt": name}},
                {"plugin": {"$gt": plugin}},
            ]},
            None => doc! {},
        };
        let docs: Vec<Document> = self
            .c
            .pubs
            .find(filter)
            .sort(doc! {"plugin": 1, "name": 1})
            .limit(i64::from(limit.max(1)))
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().map(from_doc).collect::<MResult<_>>()?)
    }

    async fn publication_named(
        &self,
        plugin: &str,
        name: &str,
    ) -> StoreResult<Option<Publication>> {
        let found = self
            .c
            .pubs
            .find_one(doc! {"plugin": plugin, "name": name})
            .await?;
        Ok(found.as_ref().map(from_doc).transpose()?)
    }

    async fn publication_seq(&self) -> StoreResult<u64> {
        let counter = self.c.meta.find_one(doc! {"_id": FEED_COUNTER}).await?;
        Ok(counter.map(|d| int(&d, "value")).transpose()?.unwrap_or(0) as u64)
    }

    async fn publication_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<PublicationChange>> {
        let entries: Vec<Document> = self
            .c
            .feed
            .find(doc! {"seq": {"$gt": after as i64}})
            .sort(doc! {"seq": 1})
            .limit(i64::from(limit.max(1)))
            .await?
            .try_collect()
            .await?;
        // The publications as they are now, in one read (by repository).
        let repos: Vec<&str> = entries
            .iter()
            .map(|e| e.get_str("repo").unwrap_or_default())
            .collect();
        let mut current: HashMap<(String, String), Document> = HashMap::new();
        let mut pubs = self.c.pubs.find(doc! {"repo": {"$in": repos}}).await?;
        while let Some(p) = pubs.try_next().await? {
            let key = (
                p.get_str("plugin").unwrap_or_default().to_string(),
                p.get_str("repo").unwrap_or_default().to_string(),
            );
            current.insert(key, p);
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in &entries {
            let (plugin, repo) = (
                e.get_str("plugin").unwrap_or_default(),
                e.get_str("repo").unwrap_or_default(),
            );
            let now = current.get(&(plugin.to_string(), repo.to_string()));
            out.push(PublicationChange {
                seq: int(e, "seq")? as u64,
                plugin: plugin.to_string(),
                repo_id: repo.parse().map_err(|e| {
                    StoreError::Backend(anyhow::anyhow!(
                        "publication feed repository {repo:?}: {e}"
                    ))
                })?,
                publication: now.map(from_doc).transpose()?,
            });
        }
        Ok(out)
    }

    async fn set_publication_setting(
        &self,
        repo: &RepoId,
        key: &str,
        value: &serde_json::Value,
    ) -> StoreResult<usize> {
        let ctx = (self.c.clone(), repo.clone(), key.to_string(), value.clone());
        self.txn(ctx, |s, (c, repo, key, value)| {
            async move {
                let docs = find_all(&c.pubs, doc! {"repo": repo.as_str()}, doc! {}, s).await?;
                let mut changed = 0;
                for d in docs {
                    let mut p: Publication = from_doc(&d)?;
                    if !p.set_setting(key, value) {
                        continue;
                    }
                    let json = serde_json::to_string(&p)
                        .map_err(|e| abort(Abort::Corrupt(e.to_string())))?;
                    c.pubs
                        .update_one(
                            doc! {"_id": d.get("_id").cloned().unwrap_or(Bson::Null)},
                            doc! {"$set": {"doc": json}},
                        )
                        .session(&mut *s)
                        .await?;
                    feed_publication(c, &p.plugin, repo.as_str(), s).await?;
                    changed += 1;
                }
                Ok(changed)
            }
            .boxed()
        })
        .await
    }

    async fn create_group(&self, g: &Group) -> StoreResult<()> {
        self.write_group(g, true).await
    }

    async fn get_group(&self, id: &RepoId) -> StoreResult<Option<Group>> {
        let d = self.c.groups.find_one(doc! {"_id": id.as_str()}).await?;
        Ok(d.map(|d| read_group(&d)).transpose()?)
    }

    async fn update_group(&self, g: &Group, members: Members) -> StoreResult<()> {
        if members == Members::Replace {
            return self.write_group(g, false).await;
        }
        let mut record = g.clone();
        record.members.clear();
        let r = self
            .c
            .groups
            .update_one(
                doc! {"_id": g.id.as_str()},
                doc! {"$set": {"notes": notes_index(&g.notes), "doc": to_json(&record)?}},
            )
            .await?;
        if r.matched_count == 0 {
            return Err(StoreError::NotFound(format!("group {}", g.id)));
        }
        Ok(())
    }

    async fn set_group_member(
        &self,
        id: &RepoId,
        repo: &RepoId,
        member: bool,
    ) -> StoreResult<bool> {
        let ctx = (self.c.clone(), id.to_string(), repo.to_string());
        self.txn(ctx, move |s, (c, id, repo)| {
            async move {
                // Claimed, so that a delete of it at once conflicts
                // rather than leaving a member that is gone.
                if member && !claim(&c.repos, repo, s).await? {
                    return Err(abort(Abort::NotFound(format!("repository {repo}"))));
                }
                let change = if member {
                    doc! {"$addToSet": {"members": &*repo}}
                } else {
                    doc! {"$pull": {"members": &*repo}}
                };
                let r = c
                    .groups
                    .update_one(doc! {"_id": &*id}, change)
                    .session(&mut *s)
                    .await?;
                if r.matched_count == 0 {
                    return Err(abort(Abort::NotFound(format!("group {id}"))));
                }
                Ok(r.modified_count > 0)
            }
            .boxed()
        })
        .await
    }

    async fn delete_group(&self, id: &RepoId) -> StoreResult<bool> {
        let r = self.c.groups.delete_one(doc! {"_id": id.as_str()}).await?;
        Ok(r.deleted_count > 0)
    }

    async fn list_groups(&self, notes: &Notes) -> StoreResult<Vec<Group>> {
        let mut filter = doc! {};
        if let Some(n) = notes_filter(notes) {
            filter.insert("notes", n);
        }
        let docs = all_by_id(&self.c.groups, filter).await?;
        Ok(docs.iter().map(read_group).collect::<MResult<_>>()?)
    }
}

#[async_trait::async_trait]
impl TaskStore for MongoStore {
    async fn put_task(&self, t: &Task) -> StoreResult<()> {
        self.c
            .tasks
            .replace_one(doc! {"_id": t.id.to_string()}, task_doc(t)?)
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn update_live_task(&self, t: &Task) -> StoreResult<bool> {
        let mut set = doc! {
            "kind": t.kind.as_str(),
            "state": t.state.as_str(),
            "locks": t.locks.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            "doc": to_json(t)?,
        };
        // Never clear a cancel request recorded meanwhile.
        if t.cancel_requested {
            set.insert("cancel_requested", true);
        }
        let r = self
            .c
            .tasks
            .update_one(
                doc! {"_id": t.id.to_string(), "state": {"$in": ["waiting", "running"]}},
                doc! {"$set": set},
            )
            .await?;
        Ok(r.matched_count > 0)
    }

    async fn request_task_cancel(&self, id: &TaskId) -> StoreResult<bool> {
        let r = self
            .c
            .tasks
            .update_one(
                doc! {"_id": id.to_string(), "state": {"$in": ["waiting", "running"]}},
                doc! {"$set": {"cancel_requested": true}},
            )
            .await?;
        Ok(r.matched_count > 0)
    }

    async fn get_task(&self, id: &TaskId) -> StoreResult<Option<Task>> {
        let d = self.c.tasks.find_one(doc! {"_id": id.to_string()}).await?;
        Ok(d.map(|d| read_task(&d)).transpose()?)
    }

    async fn list_tasks(&self, q: &TaskQuery) -> StoreResult<Vec<Task>> {
        let mut filter = doc! {};
        if let Some(s) = q.state {
            filter.insert("state", s.as_str());
        }
        if let Some(k) = &q.kind {
            filter.insert("kind", k.as_str());
        }
        if let Some(l) = &q.lock {
            filter.insert("locks", l.to_string());
        }
        let docs: Vec<Document> = self
            .c
            .tasks
            .find(filter)
            // Task ids are UUIDv7: newest first.
            .sort(doc! {"_id": -1})
            .limit(i64::from(q.limit.max(1)))
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().map(read_task).collect::<MResult<_>>()?)
    }
}

#[async_trait::async_trait]
impl UploadStore for MongoStore {
    async fn put_upload(&self, u: &Upload) -> StoreResult<()> {
        let id = u.id.to_string();
        self.c
            .uploads
            .replace_one(doc! {"_id": &id}, doc! {"_id": &id, "doc": to_json(u)?})
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &UploadId) -> StoreResult<Option<Upload>> {
        let d = self
            .c
            .uploads
            .find_one(doc! {"_id": id.to_string()})
            .await?;
        Ok(d.map(|d| from_doc(&d)).transpose()?)
    }

    async fn delete_upload(&self, id: &UploadId) -> StoreResult<bool> {
        Ok(self
            .c
            .uploads
            .delete_one(doc! {"_id": id.to_string()})
            .await?
            .deleted_count
            > 0)
    }
}

#[async_trait::async_trait]
impl AccessStore for MongoStore {
    async fn create_user(&self, u: &User) -> StoreResult<()> {
        self.write_user(u, true).await
    }

    async fn get_user(&self, login: &str) -> StoreResult<Option<User>> {
        let d = self.c.users.find_one(doc! {"_id": login}).await?;
        Ok(d.map(|d| read_user(&d)).transpose()?)
    }

    async fn update_user(&self, u: &User) -> StoreResult<()> {
        self.write_user(u, false).await
    }

    async fn delete_user(&self, login: &str) -> StoreResult<bool> {
        let subject = subject_key(&Subject::User(login.to_string()));
        self.txn(
            (self.c.clone(), login.to_string(), subject),
            |s, (c, login, subject)| {
                async move {
                    c.perms
                        .delete_many(doc! {"subject": &*subject})
                        .session(&mut *s)
                        .await?;
                    permissions_changed(c, s).await?;
                    c.tokens
                        .delete_many(doc! {"login": &*login})
                        .session(&mut *s)
                        .await?;
                    let r = c
                        .users
                        .delete_one(doc! {"_id": &*login})
                        .session(&mut *s)
                        .await?;
                    Ok(r.deleted_count > 0)
                }
                .boxed()
            },
        )
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let docs = all_by_id(&self.c.users, doc! {}).await?;
        Ok(docs.iter().map(read_user).collect::<MResult<_>>()?)
    }

    async fn create_role(&self, r: &Role) -> StoreResult<()> {
        let mut r = r.clone();
        // Members are the users whose `roles` name this one.
        r.users.clear();
        match self
            .c
            .roles
            .insert_one(doc! {"_id": &r.id, "doc": to_json(&r)?})
            .await
        {
            Err(e) if is_duplicate(&e) => Err(StoreError::Conflict(format!("role {}", r.id))),
            res => res.map(|_| ()).map_err(Into::into),
        }
    }

    async fn get_role(&self, id: &str) -> StoreResult<Option<Role>> {
        let Some(d) = self.c.roles.find_one(doc! {"_id": id}).await? else {
            return Ok(None);
        };
        let mut r: Role = from_doc(&d)?;
        r.users = self.role_members(id).await?;
        Ok(Some(r))
    }

    async fn delete_role(&self, id: &str) -> StoreResult<bool> {
        let subject = subject_key(&Subject::Role(id.to_string()));
        self.txn(
            (self.c.clone(), id.to_string(), subject),
            |s, (c, id, subject)| {
                async move {
                    c.perms
                        .delete_many(doc! {"subject": &*subject})
                        .session(&mut *s)
                        .await?;
                    permissions_changed(c, s).await?;
                    c.users
                        .update_many(doc! {"roles": &*id}, doc! {"$pull": {"roles": &*id}})
                        .session(&mut *s)
                        .await?;
                    let r = c
                        .roles
                        .delete_one(doc! {"_id": &*id})
                        .session(&mut *s)
                        .await?;
                    Ok(r.deleted_count > 0)
                }
                .boxed()
            },
        )
        .await
    }

    async fn list_roles(&self) -> StoreResult<Vec<Role>> {
        let docs = all_by_id(&self.c.roles, doc! {}).await?;
        let mut out = Vec::with_capacity(docs.len());
        for d in docs {
            let mut r: Role = from_doc(&d)?;
            r.users = self.role_members(&r.id).await?;
            out.push(r);
        }
        Ok(out)
    }

    async fn set_role_member(&self, role: &str, login: &str, member: bool) -> StoreResult<bool> {
        let ctx = (self.c.clone(), role.to_string(), login.to_string());
        self.txn(ctx, move |s, (c, role, login)| {
            async move {
                if !claim(&c.roles, role, s).await? {
                    return Err(abort(Abort::NotFound(format!("role {role}"))));
                }
                let Some(user) = c
                    .users
                    .find_one_and_update(doc! {"_id": &*login}, doc! {"$inc": {"claims": 1_i64}})
                    .session(&mut *s)
                    .await?
                else {
                    return Err(abort(Abort::NotFound(format!("user {login}"))));
                };
                let mut roles = strings(&user, "roles")?;
                let had = roles.contains(role);
                if had == member {
                    return Ok(false);
                }
                if member {
                    roles.push(role.clone());
                    roles.sort();
                } else {
                    roles.retain(|r| r != role);
                }
                c.users
                    .update_one(doc! {"_id": &*login}, doc! {"$set": {"roles": roles}})
                    .session(&mut *s)
                    .await?;
                Ok(true)
            }
            .boxed()
        })
        .await
    }

    async fn grant(
        &self,
        subject: &Subject,
        resource: &str,
        ops: &[Operation],
    ) -> StoreResult<Permission> {
        let ctx = (
            self.c.clone(),
            subject.clone(),
            resource.to_string(),
            ops.to_vec(),
        );
        let all = self
            .txn(ctx, |s, (c, subject, resource, ops)| {
                async move {
                    let (owner, id) = match &*subject {
                        Subject::User(login) => (&c.users, login),
                        Subject::Role(role) => (&c.roles, role),
                    };
                    if !claim(owner, id, s).await? {
                        return Err(abort(Abort::NotFound(subject_name(subject))));
                    }
                    let key = subject_key(subject);
                    let pid = serde_json::to_string(&(&key, &*resource)).expect("strings serialize");
                    let mut all = match c.perms.find_one(doc! {"_id": &pid}).session(&mut *s).await? {
                        Some(d) => operations(&d)?,
                        None => Vec::new(),
                    };
                    all.extend(ops.iter().copied());
                    all.sort();
                    all.dedup();
                    let names: Vec<&str> = all.iter().map(|o| o.as_str()).collect();
                    c.perms
                        .replace_one(
                            doc! {"_id": &pid},
                            doc! {"_id": &pid, "subject": &key, "resource": &*resource, "operations": names},
                        )
                        .upsert(true)
                        .session(&mut *s)
                        .await?;
                    permissions_changed(c, s).await?;
                    Ok(all)
                }
                .boxed()
            })
            .await?;
        Ok(Permission {
            subject: subject.clone(),
            resource: resource.to_string(),
            operations: all,
        })
    }

    async fn revoke(
        &self,
        subject: &Subject,
        resource: &str,
        ops: &[Operation],
    ) -> StoreResult<bool> {
        let key = subject_key(subject);
        let pid = serde_json::to_string(&(&key, resource)).expect("strings serialize");
        self.txn((self.c.clone(), pid, ops.to_vec()), |s, (c, pid, ops)| {
            async move {
                let Some(d) = c
                    .perms
                    .find_one(doc! {"_id": &*pid})
                    .session(&mut *s)
                    .await?
                else {
                    return Ok(false);
                };
                let before = operations(&d)?;
                let after: Vec<&str> = before
                    .iter()
                    .filter(|o| !ops.contains(o))
                    .map(|o| o.as_str())
                    .collect();
                if after.len() == before.len() {
                    return Ok(false);
                }
                if after.is_empty() {
                    c.perms
                        .delete_one(doc! {"_id": &*pid})
                        .session(&mut *s)
                        .await?;
                } else {
                    c.perms
                        .update_one(doc! {"_id": &*pid}, doc! {"$set": {"operations": after}})
                        .session(&mut *s)
                        .await?;
                }
                permissions_changed(c, s).await?;
                Ok(true)
            }
            .boxed()
        })
        .await
    }

    async fn permissions_seq(&self) -> StoreResult<u64> {
        let d = self.c.meta.find_one(doc! {"_id": "permissions"}).await?;
        Ok(d.and_then(|d| d.get_i64("seq").ok()).unwrap_or(0) as u64)
    }

    async fn list_permissions(&self, subjects: &[Subject]) -> StoreResult<Vec<Permission>> {
        let mut filter = doc! {};
        if !subjects.is_empty() {
            let keys: Vec<String> = subjects.iter().map(subject_key).collect();
            filter.insert("subject", doc! {"$in": keys});
        }
        let docs: Vec<Document> = self
            .c
            .perms
            .find(filter)
            .sort(doc! {"subject": 1, "resource": 1})
            .await?
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(docs.len());
        for d in docs {
            let key = d.get_str("subject").unwrap_or_default();
            let subject = match key.split_once(':') {
                Some(("user", login)) => Subject::User(login.to_string()),
                Some(("role", id)) => Subject::Role(id.to_string()),
                _ => {
                    return Err(StoreError::Backend(anyhow::anyhow!(
                        "bad permission subject {key:?}"
                    )));
                }
            };
            out.push(Permission {
                subject,
                resource: d.get_str("resource").unwrap_or_default().to_string(),
                operations: operations(&d)?,
            });
        }
        Ok(out)
    }

    async fn put_token(&self, t: &ApiToken) -> StoreResult<()> {
        let d = doc! {
            "_id": &t.hash,
            "login": &t.login,
            "expires_at": i64::try_from(t.expires_at).unwrap_or(i64::MAX),
            "doc": to_json(t)?,
        };
        self.txn((self.c.clone(), d, t.login.clone()), |s, (c, d, login)| {
            async move {
                // Claimed so that a concurrent delete_user cannot miss this token.
                if !claim(&c.users, login, s).await? {
                    return Err(abort(Abort::NotFound(format!("user {login}"))));
                }
                match c.tokens.insert_one(d.clone()).session(&mut *s).await {
                    Err(e) if is_duplicate(&e) => Err(abort(Abort::Conflict("token".into()))),
                    r => r.map(|_| ()),
                }
            }
            .boxed()
        })
        .await
    }

    async fn get_token(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        let d = self.c.tokens.find_one(doc! {"_id": hash}).await?;
        Ok(d.map(|d| from_doc(&d)).transpose()?)
    }

    async fn delete_token(&self, hash: &str) -> StoreResult<bool> {
        Ok(self
            .c
            .tokens
            .delete_one(doc! {"_id": hash})
            .await?
            .deleted_count
            > 0)
    }

    async fn delete_user_tokens(&self, login: &str) -> StoreResult<u64> {
        Ok(self
            .c
            .tokens
            .delete_many(doc! {"login": login})
            .await?
            .deleted_count)
    }

    async fn delete_expired_tokens(&self, now: u64) -> StoreResult<u64> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        Ok(self
            .c
            .tokens
            .delete_many(doc! {"expires_at": {"$lt": now}})
            .await?
            .deleted_count)
    }
}

#[async_trait::async_trait]
impl EventStore for MongoStore {
    async fn put_listener(&self, l: &crate::db::Listener) -> StoreResult<()> {
        self.c
            .listeners
            .replace_one(doc! {"_id": &l.id}, doc! {"_id": &l.id, "doc": to_json(l)?})
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn list_listeners(&self) -> StoreResult<Vec<crate::db::Listener>> {
        let docs = all_by_id(&self.c.listeners, doc! {}).await?;
        Ok(docs.iter().map(from_doc).collect::<MResult<_>>()?)
    }

    async fn delete_listener(&self, id: &str) -> StoreResult<bool> {
        Ok(self
            .c
            .listeners
            .delete_one(doc! {"_id": id})
            .await?
            .deleted_count
            > 0)
    }
}

#[async_trait::async_trait]
impl crate::db::RemoteStore for MongoStore {
    async fn put_remote(&self, r: &crate::db::Remote) -> StoreResult<()> {
        self.c
            .remotes
            .replace_one(
                doc! {"_id": r.id.as_str()},
                doc! {"_id": r.id.as_str(), "doc": to_json(r)?},
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn get_remote(
        &self,
        id: &wharf_core::ids::RemoteId,
    ) -> StoreResult<Option<crate::db::Remote>> {
        match self.c.remotes.find_one(doc! {"_id": id.as_str()}).await? {
            Some(d) => Ok(Some(from_doc(&d)?)),
            None => Ok(None),
        }
    }

    async fn list_remotes(&self) -> StoreResult<Vec<crate::db::Remote>> {
        let docs = all_by_id(&self.c.remotes, doc! {}).await?;
        Ok(docs.iter().map(from_doc).collect::<MResult<_>>()?)
    }

    async fn delete_remote(&self, id: &wharf_core::ids::RemoteId) -> StoreResult<bool> {
        Ok(self
            .c
            .remotes
            .delete_one(doc! {"_id": id.as_str()})
            .await?
            .deleted_count
            > 0)
    }
}

#[async_trait::async_trait]
impl ScheduleStore for MongoStore {
    async fn put_schedule(&self, s: &crate::db::Schedule) -> StoreResult<()> {
        self.c
            .schedules
            .replace_one(
                doc! {"_id": &s.id},
                doc! {"_id": &s.id, "revision": s.revision as i64, "doc": to_json(s)?},
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<crate::db::Schedule>> {
        match self.c.schedules.find_one(doc! {"_id": id}).await? {
            Some(d) => Ok(Some(from_doc(&d)?)),
            None => Ok(None),
        }
    }

    async fn list_schedules(&self) -> StoreResult<Vec<crate::db::Schedule>> {
        let docs = all_by_id(&self.c.schedules, doc! {}).await?;
        Ok(docs.iter().map(from_doc).collect::<MResult<_>>()?)
    }

    async fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
        Ok(self
            .c
            .schedules
            .delete_one(doc! {"_id": id})
            .await?
            .deleted_count
            > 0)
    }

    async fn swap_schedule(&self, expected: u64, new: &crate::db::Schedule) -> StoreResult<bool> {
        // One document, matched on its revision: atomic on the server.
        let r = self
            .c
            .schedules
            .update_one(
                doc! {"_id": &new.id, "revision": expected as i64},
                doc! {"$set": {"revision": new.revision as i64, "doc": to_json(new)?}},
            )
            .await?;
        Ok(r.modified_count == 1)
    }
}

#[async_trait::async_trait]
impl PluginStore for MongoStore {
    async fn put_installed_plugin(&self, p: &InstalledPlugin) -> StoreResult<()> {
        self.c
            .plugins
            .replace_one(
                doc! {"_id": &p.name},
                doc! {"_id": &p.name, "doc": to_json(p)?},
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn list_installed_plugins(&self) -> StoreResult<Vec<InstalledPlugin>> {
        let docs = all_by_id(&self.c.plugins, doc! {}).await?;
        Ok(docs.iter().map(from_doc).collect::<MResult<_>>()?)
    }
}

#[async_trait::async_trait]
impl SecretStore for MongoStore {
    async fn ensure_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        let value = mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes: candidate.to_vec(),
        };
        // An upsert that only sets on insert: the first node's value stays.
        self.c
            .secrets
            .update_one(doc! {"_id": name}, doc! {"$setOnInsert": {"value": value}})
            .upsert(true)
            .await?;
        let stored = self
            .c
            .secrets
            .find_one(doc! {"_id": name})
            .await?
            .ok_or_else(|| {
                StoreError::Backend(anyhow::anyhow!("secret {name} vanished after its upsert"))
            })?;
        match stored.get("value") {
            Some(mongodb::bson::Bson::Binary(b)) => Ok(b.bytes.clone()),
            _ => Err(StoreError::Backend(anyhow::anyhow!(
                "secret {name} is not binary in the store: remove it from the `secrets` collection to make a new one"
            ))),
        }
    }
}

impl MongoStore {
    async fn role_members(&self, role: &str) -> StoreResult<Vec<String>> {
        let docs: Vec<Document> = self
            .c
            .users
            .find(doc! {"roles": role})
            .sort(doc! {"_id": 1})
            .projection(doc! {"_id": 1})
            .await?
            .try_collect()
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_string))
            .collect())
    }

    /// Create (`insert`) or replace a group; every member must be a repository.
    async fn write_group(&self, g: &Group, insert: bool) -> StoreResult<()> {
        let mut record = g.clone();
        record.members.clear();
        let mut members: Vec<String> = g.members.iter().map(|m| m.to_string()).collect();
        members.sort();
        members.dedup();
        let d = doc! {
            "_id": g.id.as_str(),
            "notes": notes_index(&g.notes),
            "members": &members,
            "doc": to_json(&record)?,
        };
        let c = &self.c;
        self.write_claiming(
            &c.groups,
            "group",
            d,
            insert,
            &c.repos,
            "repository",
            members,
        )
        .await
    }

    /// Create (`insert`) or replace a user; every role must exist.
    async fn write_user(&self, u: &User, insert: bool) -> StoreResult<()> {
        let mut record = u.clone();
        record.roles.clear();
        let mut roles = u.roles.clone();
        roles.sort();
        roles.dedup();
        let d = doc! {
            "_id": &u.login,
            "roles": &roles,
            "doc": to_json(&record)?,
        };
        let c = &self.c;
        self.write_claiming(&c.users, "user", d, insert, &c.roles, "role", roles)
            .await
    }

    /// Create (`insert`) or replace document `d` of `target` in one
    /// transaction that first claims every id of `refs` in `referenced`: a
    /// missing one is not found, and a concurrent delete of one conflicts
    /// instead of leaving a dangling reference.
    #[allow(clippy::too_many_arguments)]
    async fn write_claiming(
        &self,
        target: &Collection<Document>,
        kind: &'static str,
        d: Document,
        insert: bool,
        referenced: &Collection<Document>,
        ref_kind: &'static str,
        refs: Vec<String>,
    ) -> StoreResult<()> {
        let ctx = (target.clone(), referenced.clone(), d, refs);
        self.txn(ctx, move |s, (target, referenced, d, refs)| {
            async move {
                let id = d.get_str("_id").unwrap_or_default().to_string();
                for r in refs.iter() {
                    if !claim(referenced, r, s).await? {
                        return Err(abort(Abort::NotFound(format!("{ref_kind} {r}"))));
                    }
                }
                if insert {
                    match target.insert_one(d.clone()).session(&mut *s).await {
                        Err(e) if is_duplicate(&e) => {
                            return Err(abort(Abort::Conflict(format!("{kind} {id}"))));
                        }
                        r => r?,
                    };
                } else if target
                    .replace_one(doc! {"_id": &id}, d.clone())
                    .session(&mut *s)
                    .await?
                    .matched_count
                    == 0
                {
                    return Err(abort(Abort::NotFound(format!("{kind} {id}"))));
                }
                Ok(())
            }
            .boxed()
        })
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// `WHARF_TEST_MONGO_URL`, or None (skip) when it is unset and services
    /// are not required.
    pub fn test_url() -> Option<String> {
        match std::env::var("WHARF_TEST_MONGO_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var("WHARF_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => panic!(
                "WHARF_TEST_MONGO_URL is not set but WHARF_TEST_REQUIRE_SERVICES=1: start a MongoDB-compatible server \
                 (scripts/mongo.sh start DIR PORT prints its URL) and export WHARF_TEST_MONGO_URL, or run scripts/test.sh"
            ),
            _ => {
                eprintln!(
                    "note: skipping the MongoDB store test: WHARF_TEST_MONGO_URL is not set \
                     (scripts/test.sh starts a server; or scripts/mongo.sh start DIR PORT)"
                );
                None
            }
        }
    }

    /// A docker repository with nothing set.
    fn plain_repo(id: &str) -> super::super::Repository {
        use super::super::*;
        Repository {
            id: id.parse().unwrap(),
            content_type: "docker".into(),
            display_name: id.into(),
            description: String::new(),
            notes: Notes::new(),
            importer_config: serde_json::json!({}),
            distributor_config: serde_json::json!({}),
            retain_versions: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    /// A database of its own per test run, dropped at the end.
    async fn fresh(url: &str, what: &str) -> super::MongoStore {
        let name = format!("wharf_test_{what}_{}", uuid::Uuid::new_v4().simple());
        super::MongoStore::open_database(url, Some(&name))
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let Some(url) = test_url() else { return };
        let store = fresh(&url, "conformance").await;
        let start = std::time::Instant::now();
        super::super::conformance::run_all(&store).await;
        eprintln!("mongo conformance suite: {:?}", start.elapsed());
        store.drop_database().await.unwrap();
    }

    /// Changes to one repository claim its document, so concurrent ones
    /// conflict; the driver retries them and none is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_changes_to_one_repository_all_land() {
        use super::super::*;
        let Some(url) = test_url() else { return };
        let store = std::sync::Arc::new(fresh(&url, "concurrent").await);
        let repo = plain_repo("busy");
        store.create_repo(&repo).await.unwrap();
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let (store, id) = (store.clone(), repo.id.clone());
                tokio::spawn(async move {
                    let key = format!("k{i}");
                    let unit = Unit {
                        unit_type: "blob".parse().unwrap(),
                        key: key.clone(),
                        metadata: serde_json::json!({}),
                        blobs: vec![Digest::of(key.as_bytes())],
                    };
                    let origin = VersionOrigin::new(VersionCause::Push, None);
                    store
                        .apply_changes(&id, &[UnitChange::Add(unit)], &origin)
                        .await
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        assert_eq!(
            store.count_units(&repo.id).await.unwrap()[&"blob".parse::<UnitType>().unwrap()],
            8
        );
        store.drop_database().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schema_is_recorded_and_a_newer_one_refused() {
        use mongodb::bson::doc;
        let Some(url) = test_url() else { return };
        let store = fresh(&url, "schema").await;
        let name = store.db.name().to_string();
        assert_eq!(store.schema_version().await.unwrap(), super::SCHEMA_VERSION);
        // Opening again is a no-op.
        drop(
            super::MongoStore::open_database(&url, Some(&name))
                .await
                .unwrap(),
        );
        store
            .db
            .collection::<mongodb::bson::Document>("meta")
            .update_one(
                doc! {"_id": "schema"},
                doc! {"$set": {"version": super::SCHEMA_VERSION + 1}},
            )
            .await
            .unwrap();
        let err = super::MongoStore::open_database(&url, Some(&name))
            .await
            .err()
            .expect("a newer schema is refused");
        assert!(format!("{err:#}").contains("upgrade wharf"), "{err:#}");
        store.drop_database().await.unwrap();
    }

    /// Associations written before schema 6 carry no `blobs`: the
    /// migration gives them their unit's, current and retired alike.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn associations_from_schema_5_get_their_units_blobs() {
        use super::super::*;
        use mongodb::bson::doc;
        let Some(url) = test_url() else { return };
        let store = fresh(&url, "schema6").await;
        let name = store.db.name().to_string();
        let id: RepoId = "old".parse().unwrap();
        store.create_repo(&plain_repo("old")).await.unwrap();
        let unit = |key: &str| Unit {
            unit_type: "blob".parse().unwrap(),
            key: key.into(),
            metadata: serde_json::json!({}),
            blobs: vec![Digest::of(key.as_bytes())],
        };
        let origin = VersionOrigin::new(VersionCause::Push, None);
        store
            .apply_changes(
                &id,
                &[UnitChange::Add(unit("kept")), UnitChange::Add(unit("gone"))],
                &origin,
            )
            .await
            .unwrap();
        let remove = UnitChange::Remove {
            unit_type: "blob".parse().unwrap(),
            key: "gone".into(),
        };
        store.apply_changes(&id, &[remove], &origin).await.unwrap();
        for name in ["associations", "retired_associations"] {
            store
                .db
                .collection::<mongodb::bson::Document>(name)
                .update_many(doc! {}, doc! {"$unset": {"blobs": ""}})
                .await
                .unwrap();
        }
        assert!(
            !store
                .repo_holds_blob(&id, &Digest::of(b"kept"))
                .await
                .unwrap()
        );
        store
            .db
            .collection::<mongodb::bson::Document>("meta")
            .update_one(doc! {"_id": "schema"}, doc! {"$set": {"version": 5_i64}})
            .await
            .unwrap();
        let store = super::MongoStore::open_database(&url, Some(&name))
            .await
            .unwrap();
        assert_eq!(store.schema_version().await.unwrap(), super::SCHEMA_VERSION);
        assert!(
            store
                .repo_holds_blob(&id, &Digest::of(b"kept"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .repo_holds_blob(&id, &Digest::of(b"gone"))
                .await
                .unwrap()
        );
        let retired = store
            .db
            .collection::<mongodb::bson::Document>("retired_associations")
            .find_one(doc! {"repo": "old"})
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            retired.get_array("blobs").unwrap(),
            &vec![mongodb::bson::Bson::String(Digest::of(b"gone").to_string())]
        );
        store.drop_database().await.unwrap();
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            super::redact("mongodb://u:secret@db1:27017/wharf"),
            "mongodb://***@db1:27017/wharf"
        );
        assert_eq!(super::redact("mongodb://db1/wharf"), "mongodb://db1/wharf");
    }
}
