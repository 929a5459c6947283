//! Every query the MongoDB store makes is answered from an index.
//!
//! The conformance suite drives the store while the driver's command
//! monitor records each command it sends. Every filter of those commands
//! (`find`, `aggregate`'s first `$match`, `count`, `distinct`,
//! `findAndModify`, and each statement of `update` and `delete`) is reduced
//! to its shape: the fields it tests, how (equality, range), and the sort.
//! Each shape must then be served by one of its collection's indexes, in
//! the order a B-tree can use them (equality fields, then the sort, then a
//! range), and a page (a sorted query with a limit) must come in index order
//! rather than from an in-memory sort of every match; each branch of an
//! `$or`, with the fields beside it, must be served so. A filter with no
//! field (a whole collection, as the listener or role listings read it) is
//! the only exception, and is counted. The migrations' one-off reads, made
//! before the store is open, are not recorded.
//!
//! The server's own `explain` is asked too: where its plan for a shape reads
//! the whole collection (`COLLSCAN`), the test fails, unless the server is
//! the test run's secantusdb and the shape has a range, a sort or an `$or`:
//! its planner (0.7) uses indexes for equality and `$in` only, and scans for
//! anything else, even a range on `_id` (a difference from MongoDB, noted
//! in docs/scaling.md); such shapes rest on the index check above.

use super::conformance;
use super::mongo::{MongoStore, tests::test_url};
use mongodb::bson::{Bson, Document, doc};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The commands that read or change documents chosen by a filter.
const FILTERING: [&str; 7] = [
    "find",
    "aggregate",
    "count",
    "distinct",
    "findAndModify",
    "update",
    "delete",
];

/// One filter the store sent, reduced to what an index can serve.
#[derive(Debug, Clone, Default)]
struct Query {
    collection: String,
    command: String,
    /// Fields tested for equality (a value, `$eq`, `$in`, `$all`).
    equal: BTreeSet<String>,
    /// Fields tested for a range (`$gt`, `$gte`, `$lt`, `$lte`).
    range: BTreeSet<String>,
    /// Operators no index serves (`$ne`, `$exists: false`, `$expr`, ...):
    /// fine beside a field an index serves.
    unindexable: Vec<String>,
    /// The branches of an `$or`: each is served on its own.
    branches: Vec<Query>,
    sort: Vec<String>,
    limited: bool,
    /// The command, to ask `explain` about.
    original: Document,
}

impl Query {
    fn shape(&self) -> String {
        let branches: Vec<String> = self
            .branches
            .iter()
            .map(|b| format!("(eq{:?} range{:?})", b.equal, b.range))
            .collect();
        format!(
            "{}.{} eq{:?} range{:?}{} sort{:?}{}{}",
            self.collection,
            self.command,
            self.equal,
            self.range,
            if branches.is_empty() {
                String::new()
            } else {
                format!(" or[{}]", branches.join(", "))
            },
            self.sort,
            if self.limited { " limit" } else { "" },
            if self.unindexable.is_empty() {
                String::new()
            } else {
                format!(" other{:?}", self.unindexable)
            }
        )
    }

    fn whole_collection(&self) -> bool {
        self.equal.is_empty()
            && self.range.is_empty()
            && self.sort.is_empty()
            && self.branches.is_empty()
            && self.unindexable.is_empty()
    }

    /// Whether one of `indexes` serves the query, and each of its `$or`
    /// branches with the fields beside it.
    fn served(&self, indexes: &[Vec<String>]) -> bool {
        if self.branches.is_empty() {
            return indexes.iter().any(|k| self.served_by(k));
        }
        self.branches.iter().all(|b| {
            let mut q = self.clone();
            q.branches.clear();
            q.equal.extend(b.equal.iter().cloned());
            q.range.extend(b.range.iter().cloned());
            indexes.iter().any(|k| q.served_by(k))
        })
    }

    /// Whether an index with these keys serves the query: its leading keys
    /// are equality fields, then the sort, then a range; it must serve at
    /// least one of them, and a limited sorted query must get its order
    /// from the index.
    fn served_by(&self, keys: &[String]) -> bool {
        let mut at = 0;
        while at < keys.len() && self.equal.contains(&keys[at]) {
            at += 1;
        }
        let equal_prefix = at;
        // Sort keys tested for equality come in any order.
        let sort: Vec<&String> = self
            .sort
            .iter()
            .filter(|s| !self.equal.contains(*s))
            .collect();
        let sorted = sort
            .iter()
            .enumerate()
            .all(|(i, s)| keys.get(at + i) == Some(*s));
        if sorted {
            at += sort.len();
        }
        let ranged = keys.get(at).is_some_and(|k| self.range.contains(k));
        let used = equal_prefix > 0 || (sorted && !sort.is_empty()) || ranged;
        used && (!self.limited || sort.is_empty() || sorted)
    }

    fn only_equality(&self) -> bool {
        self.range.is_empty() && self.sort.is_empty() && self.branches.is_empty()
    }
}

/// Fold a filter document into `q`.
fn read_filter(filter: &Document, q: &mut Query) {
    for (field, cond) in filter {
        match field.as_str() {
            "$and" => {
                for part in cond.as_array().into_iter().flatten() {
                    if let Some(d) = part.as_document() {
                        read_filter(d, q);
                    }
                }
            }
            "$or" => {
                for part in cond.as_array().into_iter().flatten() {
                    let mut branch = Query::default();
                    if let Some(d) = part.as_document() {
                        read_filter(d, &mut branch);
                    }
                    q.branches.push(branch);
                }
            }
            f if f.starts_with('$') => q.unindexable.push(f.to_string()),
            f => match cond.as_document() {
                Some(ops) if ops.keys().all(|k| k.starts_with('$')) => {
                    for (op, v) in ops {
                        match op.as_str() {
                            "$eq" | "$in" | "$all" => {
                                q.equal.insert(f.to_string());
                            }
                            "$gt" | "$gte" | "$lt" | "$lte" => {
                                q.range.insert(f.to_string());
                            }
                            "$exists" if v.as_bool() == Some(true) => {
                                q.range.insert(f.to_string());
                            }
                            "$elemMatch" => {
                                q.equal.insert(f.to_string());
                            }
                            other => q.unindexable.push(format!("{f}: {other}")),
                        }
                    }
                }
                _ => {
                    q.equal.insert(f.to_string());
                }
            },
        }
    }
}

fn sort_of(d: Option<&Bson>) -> Vec<String> {
    d.and_then(Bson::as_document)
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default()
}

/// The queries of one command the store sent.
fn queries_of(name: &str, cmd: &Document) -> Vec<Query> {
    let collection = cmd.get_str(name).unwrap_or_default().to_string();
    let base = Query {
        collection,
        command: name.to_string(),
        original: cmd.clone(),
        ..Query::default()
    };
    let one = |filter: Option<&Document>, sort: Vec<String>, limited: bool| {
        let mut q = base.clone();
        if let Some(f) = filter {
            read_filter(f, &mut q);
        }
        q.sort = sort;
        q.limited = limited;
        q
    };
    match name {
        "find" => vec![one(
            cmd.get_document("filter").ok(),
            sort_of(cmd.get("sort")),
            cmd.contains_key("limit"),
        )],
        "aggregate" => {
            let stages = cmd.get_array("pipeline").cloned().unwrap_or_default();
            let first = stages.first().and_then(Bson::as_document);
            let matched = first.and_then(|s| s.get_document("$match").ok());
            // A `$sort` and `$limit` right after the match page it.
            let next = |i: usize, op: &str| {
                stages
                    .get(i)
                    .and_then(Bson::as_document)
                    .and_then(|s| s.get(op))
                    .cloned()
            };
            let sort = sort_of(next(1, "$sort").as_ref());
            let limited = next(2, "$limit").is_some();
            vec![one(matched, sort, limited)]
        }
        "count" | "distinct" => vec![one(cmd.get_document("query").ok(), Vec::new(), false)],
        "findAndModify" => vec![one(
            cmd.get_document("query").ok(),
            sort_of(cmd.get("sort")),
            false,
        )],
        "update" | "delete" => {
            let list = if name == "update" {
                "updates"
            } else {
                "deletes"
            };
            cmd.get_array(list)
                .into_iter()
                .flatten()
                .filter_map(Bson::as_document)
                .map(|s| one(s.get_document("q").ok(), Vec::new(), false))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Whether a plan (or any stage below it) reads the whole collection.
fn scans(plan: &Document) -> bool {
    plan.get_str("stage") == Ok("COLLSCAN")
        || plan.get_document("inputStage").is_ok_and(scans)
        || plan
            .get_array("inputStages")
            .into_iter()
            .flatten()
            .filter_map(Bson::as_document)
            .any(scans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_shape_is_answered_from_an_index() {
    let Some(url) = test_url() else { return };
    let seen: Arc<Mutex<Vec<(String, Document)>>> = Arc::default();
    let mut options = ClientOptions::parse(&url).await.unwrap();
    let recording = Arc::new(AtomicBool::new(false));
    let (record, on) = (seen.clone(), recording.clone());
    options.command_event_handler = Some(EventHandler::callback(move |ev: CommandEvent| {
        if let CommandEvent::Started(s) = ev
            && on.load(Ordering::Acquire)
            && FILTERING.contains(&s.command_name.as_str())
        {
            record.lock().unwrap().push((s.command_name, s.command));
        }
    }));
    let name = format!("wharf_test_indexes_{}", uuid::Uuid::new_v4().simple());
    let store = MongoStore::connect(options, &name, "the test server")
        .await
        .unwrap();
    recording.store(true, Ordering::Release);
    conformance::run_all(&store).await;
    let sent = std::mem::take(&mut *seen.lock().unwrap());

    let mut shapes: BTreeMap<String, Query> = BTreeMap::new();
    for (command, doc) in &sent {
        for q in queries_of(command, doc) {
            shapes.entry(q.shape()).or_insert(q);
        }
    }
    let db = store.database();
    let mut indexes: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for q in shapes.values() {
        if indexes.contains_key(&q.collection) {
            continue;
        }
        let listed = db
            .run_command(doc! {"listIndexes": &q.collection})
            .await
            .map(|r| {
                r.get_document("cursor")
                    .and_then(|c| c.get_array("firstBatch"))
                    .cloned()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let keys = listed
            .iter()
            .filter_map(Bson::as_document)
            .filter_map(|ix| ix.get_document("key").ok())
            .map(|k| k.keys().cloned().collect())
            .collect();
        indexes.insert(q.collection.clone(), keys);
    }
    // secantusdb names itself as the host of its plans.
    let secantus = db
        .run_command(doc! {"explain": {"count": "meta"}, "verbosity": "queryPlanner"})
        .await
        .ok()
        .and_then(|r| r.get_document("serverInfo").ok().cloned())
        .is_some_and(|s| s.get_str("host") == Ok("secantus"));

    let (mut failures, mut whole, mut explained) = (Vec::new(), 0, 0);
    for (shape, q) in &shapes {
        if q.whole_collection() {
            whole += 1;
            continue;
        }
        let keys = indexes.get(&q.collection).cloned().unwrap_or_default();
        if !q.served(&keys) {
            failures.push(format!("{shape}: no index serves it (indexes: {keys:?})"));
            continue;
        }
        if matches!(q.command.as_str(), "update" | "delete") {
            // secantusdb's explain of writes always says COLLSCAN; the
            // index check above covers them.
            continue;
        }
        let mut cmd = q.original.clone();
        for k in [
            "lsid",
            "$db",
            "$clusterTime",
            "txnNumber",
            "autocommit",
            "startTransaction",
            "readConcern",
            "writeConcern",
        ] {
            cmd.remove(k);
        }
        let Ok(plan) = db
            .run_command(doc! {"explain": cmd, "verbosity": "queryPlanner"})
            .await
        else {
            continue;
        };
        explained += 1;
        let winning = plan
            .get_document("queryPlanner")
            .and_then(|p| p.get_document("winningPlan"))
            .cloned()
            .unwrap_or_default();
        if scans(&winning) && (!secantus || q.only_equality()) {
            failures.push(format!(
                "{shape}: the server scans the collection: {winning}"
            ));
        }
    }
    eprintln!(
        "{} commands, {} query shapes: {} whole-collection reads, {} explained, secantusdb: {secantus}",
        sent.len(),
        shapes.len(),
        whole,
        explained
    );
    store.drop_database().await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} query shapes are not answered from an index:\n{}",
        failures.len(),
        shapes.len(),
        failures.join("\n")
    );
}
