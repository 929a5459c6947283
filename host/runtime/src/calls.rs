//! The typed facade over a plugin's exports: `resolve`, `write`, `upload`,
//! `sync`, `publish`, `select` and `edit` as methods of [`Plugin`], with
//! host-owned types for what crosses the boundary (a [`Request`], the
//! [`Plan`] that answers it, a task's [`Summary`] or [`TaskError`], the
//! [`UnitRef`]s a selection names, an [`Edit`]). The generated bindings stay inside
//! this crate: the conversions from and to them are here, and nothing above
//! the runtime names a WIT type.
//!
//! Two kinds of failure are kept apart: [`PluginError`] says the call itself
//! failed (deadline, trap, busy pool, ...), while a [`TaskError`] is what the
//! plugin answered a task with.

use crate::bindings::exports::wharf::plugin::plugin as wire;
use crate::bindings::wharf::plugin::types as wire_types;
use crate::engine::{Plugin, PluginError};
use crate::host::{CallScope, ResolveCall, SourceHandle, TaskCall};
use crate::wit_repo;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use wharf_core::ids::UnitType;

pub use crate::error_format::{ErrorFormat, Refusal, Rendered};

/// A name/value pair: an HTTP header of a request or of a plan's answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A request on a plugin's routes, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The canonical path the access gate decided on.
    pub path: String,
    pub query: String,
    /// The headers the host forwards (never credentials).
    pub headers: Vec<Header>,
    /// The host pulled for this request already (or decided not to): the
    /// plugin answers from what the repository holds.
    pub pulled: bool,
}

/// What the host does with a request on a plugin's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Serve a stored blob (if the admitted repository serves it).
    Blob(ServeBlob),
    /// Answer with this body.
    Body(Body),
    /// Redirect (302) to this URL.
    Redirect(String),
    /// Answer with an error document.
    Error(Failure),
    /// Carry out a write through the plugin's `write`.
    Write(WritePlan),
    /// Pull this reference (the plugin's words) of a pull-through
    /// repository from its feed, then resolve the request again.
    Pull(String),
}

/// A blob to serve, with Range and ETag handled by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeBlob {
    /// The digest as the plugin wrote it; the host parses and checks it.
    pub digest: String,
    pub media_type: String,
    pub headers: Vec<Header>,
}

/// A complete answer the plugin built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub status: u16,
    /// Empty for none.
    pub content_type: String,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// An error answer in the plugin's content type's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// A request that changes a repository (a push).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePlan {
    /// The repository id the write is for, as the plugin named it.
    pub repository: String,
    pub body: BodyTarget,
    /// The most request-body bytes to accept.
    pub max_body: u64,
}

/// Where the host puts a write's request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyTarget {
    /// The request has no body worth keeping.
    None,
    /// A new upload session of the write's repository.
    NewSession,
    /// Appended to this session of the write's repository.
    Session(String),
}

/// The answer to a write, and whether to publish the repository before
/// answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub plan: Plan,
    pub publish: bool,
    /// What the write changed, for the event listeners.
    pub events: Vec<ContentEvent>,
}

/// Whether a write put content in or took it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentAction {
    Pushed,
    Deleted,
}

impl ContentAction {
    /// The event type listeners receive.
    pub fn event_type(self) -> &'static str {
        match self {
            ContentAction::Pushed => "content.pushed",
            ContentAction::Deleted => "content.deleted",
        }
    }
}

/// One change a write made, as the plugin tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentEvent {
    pub action: ContentAction,
    /// What the client named (a tag or a digest).
    pub reference: String,
    /// The digest it names now (pushed) or named (deleted), as the plugin
    /// wrote it.
    pub digest: Option<String>,
}

/// What an import, sync or publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub units_added: u64,
    pub units_removed: u64,
    pub bytes_stored: u64,
    pub message: String,
}

/// Where the host downloads a blob from: a feed URL, the headers to send
/// (credentials), and the size the blob's descriptor gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDownload {
    pub url: String,
    pub headers: Vec<Header>,
    pub digest: String,
    pub size: Option<u64>,
}

/// What a publish made visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The client-facing name.
    pub name: String,
    /// The index blob's digest as the plugin wrote it; the host checks it.
    pub index: String,
    pub summary: Summary,
}

/// A unit named by its type and key: one of the units a selection of
/// references is made of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitRef {
    pub unit_type: UnitType,
    pub key: String,
}

/// A change to a repository's content, in the content type's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Take these references (tags, digests, ...) out of the repository,
    /// with what only they needed.
    Remove(Vec<String>),
    /// Tag `target` (a reference in the repository) as `name`.
    Tag { name: String, target: String },
    /// These units were just copied in (staged in the same call): make the
    /// repository consistent with them (a copied tag replaces the one of
    /// the same name).
    Adopt(Vec<UnitRef>),
}

/// Why a plugin's task did not do its work: a stable machine word (`fetch`,
/// `invalid-input`, `denied`, ...) and a message for the task record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    pub code: String,
    pub message: String,
}

/// What a task call (`upload`, `sync`, `publish`, `write`) answered, with
/// its view after the call: its staged unit changes (committed by the
/// caller, and only if the answer is a success), the blobs it may name and
/// their leases.
pub struct Staged<R> {
    pub answer: R,
    pub call: Box<TaskCall>,
    /// Bytes the call stored, as the host counted them.
    pub bytes_stored: u64,
}

/// What a task (`upload`, `sync`, `publish`) answers: its result, or the
/// error the plugin reported.
pub type TaskAnswer<T> = Result<T, TaskError>;

impl Plugin {
    /// Ask the plugin how to answer `request`, seeing what `scope` admits,
    /// on a warm instance.
    pub fn resolve(&self, scope: ResolveCall, request: &Request) -> Result<Plan, PluginError> {
        let request = wire::Request::from(request);
        self.call(CallScope::Resolve(Box::new(scope)), None, |p, s| {
            p.wharf_plugin_plugin().call_resolve(s, &request)
        })
        .map(Plan::from)
    }

    /// [`Plugin::resolve`], and whether the plan may be given again for
    /// the same request while the admitted publication stays the same:
    /// the call read nothing else (see [`crate::varies`]).
    pub fn resolve_repeatable(
        &self,
        scope: ResolveCall,
        request: &Request,
    ) -> Result<(Plan, bool), PluginError> {
        let request = wire::Request::from(request);
        self.call(CallScope::Resolve(Box::new(scope)), None, |p, s| {
            // What instantiating a fresh instance read is not this call's.
            s.data().varies.take();
            let plan = p.wharf_plugin_plugin().call_resolve(&mut *s, &request)?;
            Ok((plan, !s.data().varies.take()))
        })
        .map(|(plan, repeatable)| (Plan::from(plan), repeatable))
    }

    /// Whether `name` may name a repository created on a push to it; `Err`
    /// inside says why not, in the plugin's words.
    pub fn valid_name(&self, name: &str) -> Result<Result<(), String>, PluginError> {
        self.call(CallScope::Describe, None, |p, s| {
            p.wharf_plugin_plugin().call_valid_name(s, name)
        })
    }

    /// [`Plugin::resolve`] on a new instance thrown away afterwards
    /// (benchmarks compare it with the warm pool).
    pub fn resolve_fresh(
        &self,
        scope: ResolveCall,
        request: &Request,
    ) -> Result<Plan, PluginError> {
        let request = wire::Request::from(request);
        self.call_fresh(CallScope::Resolve(Box::new(scope)), |p, s| {
            p.wharf_plugin_plugin().call_resolve(s, &request)
        })
        .map(Plan::from)
    }

    /// Carry out a write that `resolve` planned, on the repository of `call`
    /// (an instance of the requests' share); `session` holds the body.
    pub fn write(
        &self,
        call: TaskCall,
        request: &Request,
        session: Option<&str>,
    ) -> Result<Staged<Written>, PluginError> {
        let request = wire::Request::from(request);
        let repo = wit_repo(&call.repo);
        self.call_task(crate::admission::Share::Requests, call, None, |p, s| {
            p.wharf_plugin_plugin()
                .call_write(s, &request, &repo, session)
        })
        .map(|staged| staged.map(Written::from))
    }

    /// Import the bytes of `source` into the repository of `call`; `params`
    /// is the JSON object the client gave with the import.
    pub fn upload(
        &self,
        call: TaskCall,
        cancel: Arc<AtomicBool>,
        source: SourceHandle,
        params: &str,
    ) -> Result<Staged<TaskAnswer<Summary>>, PluginError> {
        self.task(call, cancel, |p, s, repo| {
            let handle = s.data_mut().table.push(source)?;
            p.wharf_plugin_plugin().call_upload(s, repo, handle, params)
        })
    }

    /// Mirror the feed of the repository of `call`.
    pub fn sync(
        &self,
        call: TaskCall,
        cancel: Arc<AtomicBool>,
    ) -> Result<Staged<TaskAnswer<Summary>>, PluginError> {
        self.task(call, cancel, |p, s, repo| {
            p.wharf_plugin_plugin().call_sync(s, repo)
        })
    }

    /// Bring `reference` (as a `pull` plan named it) of the feed of the
    /// repository of `call` into it; the changes are staged, for the caller
    /// to commit if the answer is a success.
    pub fn pull(
        &self,
        call: TaskCall,
        cancel: Arc<AtomicBool>,
        reference: &str,
    ) -> Result<Staged<TaskAnswer<Summary>>, PluginError> {
        self.task(call, cancel, |p, s, repo| {
            p.wharf_plugin_plugin().call_pull(s, repo, reference)
        })
    }

    /// Where to download `digest`, a blob the repository of `call` names
    /// but left on its feed, from now (credentials included).
    pub fn locate(
        &self,
        call: TaskCall,
        cancel: Arc<AtomicBool>,
        digest: &str,
    ) -> Result<Staged<TaskAnswer<BlobDownload>>, PluginError> {
        let digest = digest.to_string();
        self.task(call, cancel, |p, s, repo| {
            p.wharf_plugin_plugin().call_locate(s, repo, &digest)
        })
    }

    /// Make the current content of the repository of `call` visible to
    /// clients.
    pub fn publish(
        &self,
        call: TaskCall,
        cancel: Arc<AtomicBool>,
    ) -> Result<Staged<TaskAnswer<Published>>, PluginError> {
        self.task(call, cancel, |p, s, repo| {
            p.wharf_plugin_plugin().call_publish(s, repo)
        })
    }

    /// The units that make up `references` (tags or digests, in the
    /// content type's words) in the repository of `call`: what copying just
    /// those references associates with another repository. A selection
    /// changes nothing: commit none of what the call staged. An answer
    /// naming an invalid unit type is [`PluginError::Invalid`].
    pub fn select(
        &self,
        call: TaskCall,
        cancel: Arc<AtomicBool>,
        references: &[String],
    ) -> Result<Staged<TaskAnswer<Vec<UnitRef>>>, PluginError> {
        let staged: Staged<TaskAnswer<Vec<wire::UnitRef>>> =
            self.task(call, cancel, |p, s, repo| {
                p.wharf_plugin_plugin().call_select(s, repo, references)
            })?;
        let answer = match staged.answer {
            Ok(units) => Ok(units
                .into_iter()
                .map(|u| unit_ref(&self.name, u))
                .collect::<Result<Vec<_>, _>>()?),
            Err(e) => Err(e),
        };
        Ok(Staged {
            answer,
            call: staged.call,
            bytes_stored: staged.bytes_stored,
        })
    }

    /// Change the content of the repository of `call` as `edit` says; the
    /// changes are staged, for the caller to commit as one new version if
    /// (and only if) the answer is a success.
    pub fn edit(
        &self,
        call: TaskCall,
        cancel: Arc<AtomicBool>,
        edit: &Edit,
    ) -> Result<Staged<TaskAnswer<Summary>>, PluginError> {
        let change = wire::Change::from(edit);
        self.task(call, cancel, |p, s, repo| {
            p.wharf_plugin_plugin().call_edit(s, repo, &change)
        })
    }

    /// One task export on an instance of the tasks' share, on the
    /// repository of `call` as the plugin sees it, its answer converted.
    fn task<W, T: From<W>>(
        &self,
        call: TaskCall,
        cancel: Arc<AtomicBool>,
        f: impl FnOnce(
            &crate::bindings::ContentPlugin,
            &mut wasmtime::Store<crate::host::HostState>,
            &wire_types::Repository,
        ) -> wasmtime::Result<Result<W, wire_types::Error>>,
    ) -> Result<Staged<TaskAnswer<T>>, PluginError> {
        let repo = wit_repo(&call.repo);
        self.call_task(
            crate::admission::Share::Tasks,
            call,
            Some(cancel),
            |p, s| f(p, s, &repo),
        )
        .map(|staged| staged.map(task_answer))
    }
}

impl<R> Staged<R> {
    fn map<T>(self, f: impl FnOnce(R) -> T) -> Staged<T> {
        Staged {
            answer: f(self.answer),
            call: self.call,
            bytes_stored: self.bytes_stored,
        }
    }
}

/// A unit reference the plugin answered, its unit type checked.
fn unit_ref(plugin: &str, u: wire::UnitRef) -> Result<UnitRef, PluginError> {
    let unit_type = u.unit_type.parse().map_err(|e| {
        PluginError::Invalid(format!("plugin {plugin} answered select with an {e}"))
    })?;
    Ok(UnitRef {
        unit_type,
        key: u.key,
    })
}

impl From<&Edit> for wire::Change {
    fn from(e: &Edit) -> Self {
        match e {
            Edit::Remove(references) => wire::Change::Remove(references.clone()),
            Edit::Tag { name, target } => wire::Change::Tag(wire::TagEdit {
                name: name.clone(),
                target: target.clone(),
            }),
            Edit::Adopt(units) => wire::Change::Adopt(
                units
                    .iter()
                    .map(|u| wire::UnitRef {
                        unit_type: u.unit_type.to_string(),
                        key: u.key.clone(),
                    })
                    .collect(),
            ),
        }
    }
}

fn task_answer<W, T: From<W>>(answer: Result<W, wire_types::Error>) -> TaskAnswer<T> {
    answer.map(T::from).map_err(TaskError::from)
}

impl From<&Header> for wire_types::Header {
    fn from(h: &Header) -> Self {
        wire_types::Header {
            name: h.name.clone(),
            value: h.value.clone(),
        }
    }
}

impl From<wire_types::Header> for Header {
    fn from(h: wire_types::Header) -> Self {
        Header {
            name: h.name,
            value: h.value,
        }
    }
}

fn headers(wire: Vec<wire_types::Header>) -> Vec<Header> {
    wire.into_iter().map(Header::from).collect()
}

impl From<&Request> for wire::Request {
    fn from(r: &Request) -> Self {
        wire::Request {
            method: r.method.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            headers: r.headers.iter().map(wire_types::Header::from).collect(),
            pulled: r.pulled,
        }
    }
}

impl From<wire::Plan> for Plan {
    fn from(p: wire::Plan) -> Self {
        match p {
            wire::Plan::Blob(b) => Plan::Blob(ServeBlob {
                digest: b.digest,
                media_type: b.media_type,
                headers: headers(b.headers),
            }),
            wire::Plan::Body(b) => Plan::Body(Body {
                status: b.status,
                content_type: b.content_type,
                headers: headers(b.headers),
                body: b.body,
            }),
            wire::Plan::Redirect(url) => Plan::Redirect(url),
            wire::Plan::Error(f) => Plan::Error(Failure {
                status: f.status,
                code: f.code,
                message: f.message,
            }),
            wire::Plan::Write(w) => Plan::Write(WritePlan {
                repository: w.repository,
                body: match w.body {
                    wire::BodyTarget::None => BodyTarget::None,
                    wire::BodyTarget::NewSession => BodyTarget::NewSession,
                    wire::BodyTarget::Session(id) => BodyTarget::Session(id),
                },
                max_body: w.max_body,
            }),
            wire::Plan::Pull(reference) => Plan::Pull(reference),
        }
    }
}

impl From<wire::Written> for Written {
    fn from(w: wire::Written) -> Self {
        Written {
            plan: w.plan.into(),
            publish: w.publish,
            events: w
                .events
                .into_iter()
                .map(|e| ContentEvent {
                    action: match e.action {
                        wire::ContentAction::Pushed => ContentAction::Pushed,
                        wire::ContentAction::Deleted => ContentAction::Deleted,
                    },
                    reference: e.reference,
                    digest: e.digest,
                })
                .collect(),
        }
    }
}

impl From<wire_types::Summary> for Summary {
    fn from(s: wire_types::Summary) -> Self {
        Summary {
            units_added: s.units_added,
            units_removed: s.units_removed,
            bytes_stored: s.bytes_stored,
            message: s.message,
        }
    }
}

impl From<crate::bindings::wharf::plugin::fetch::BlobDownload> for BlobDownload {
    fn from(d: crate::bindings::wharf::plugin::fetch::BlobDownload) -> Self {
        BlobDownload {
            url: d.url,
            headers: headers(d.headers),
            digest: d.digest,
            size: d.size,
        }
    }
}

impl From<wire::Published> for Published {
    fn from(p: wire::Published) -> Self {
        Published {
            name: p.name,
            index: p.index,
            summary: p.summary.into(),
        }
    }
}

impl From<wire_types::Error> for TaskError {
    fn from(e: wire_types::Error) -> Self {
        TaskError {
            code: e.code,
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_crosses_as_it_is() {
        let request = Request {
            method: "GET".into(),
            path: "/v2/app/manifests/1".into(),
            query: "n=1".into(),
            headers: vec![Header {
                name: "accept".into(),
                value: "application/json".into(),
            }],
            pulled: true,
        };
        let w = wire::Request::from(&request);
        assert_eq!(
            (w.method.as_str(), w.path.as_str(), w.query.as_str()),
            ("GET", "/v2/app/manifests/1", "n=1")
        );
        assert_eq!(w.headers.len(), 1);
        assert_eq!(
            (w.headers[0].name.as_str(), w.headers[0].value.as_str()),
            ("accept", "application/json")
        );
    }

    #[test]
    fn every_plan_comes_back_whole() {
        let header = || wire_types::Header {
            name: "docker-content-digest".into(),
            value: "sha256:00".into(),
        };
        let ours = || Header {
            name: "docker-content-digest".into(),
            value: "sha256:00".into(),
        };
        let cases = [
            (
                wire::Plan::Blob(wire::ServeBlob {
                    digest: "sha256:00".into(),
                    media_type: "application/octet-stream".into(),
                    headers: vec![header()],
                }),
                Plan::Blob(ServeBlob {
                    digest: "sha256:00".into(),
                    media_type: "application/octet-stream".into(),
                    headers: vec![ours()],
                }),
            ),
            (
                wire::Plan::Body(wire::Body {
                    status: 200,
                    content_type: "text/plain".into(),
                    headers: vec![header()],
                    body: b"hi".to_vec(),
                }),
                Plan::Body(Body {
                    status: 200,
                    content_type: "text/plain".into(),
                    headers: vec![ours()],
                    body: b"hi".to_vec(),
                }),
            ),
            (
                wire::Plan::Redirect("https://cdn.example/x".into()),
                Plan::Redirect("https://cdn.example/x".into()),
            ),
            (
                wire::Plan::Error(wire::Failure {
                    status: 404,
                    code: "MANIFEST_UNKNOWN".into(),
                    message: "no such tag".into(),
                }),
                Plan::Error(Failure {
                    status: 404,
                    code: "MANIFEST_UNKNOWN".into(),
                    message: "no such tag".into(),
                }),
            ),
            (
                wire::Plan::Write(wire::WritePlan {
                    repository: "app".into(),
                    body: wire::BodyTarget::Session("s1".into()),
                    max_body: 7,
                }),
                Plan::Write(WritePlan {
                    repository: "app".into(),
                    body: BodyTarget::Session("s1".into()),
                    max_body: 7,
                }),
            ),
            (
                wire::Plan::Write(wire::WritePlan {
                    repository: "app".into(),
                    body: wire::BodyTarget::NewSession,
                    max_body: 0,
                }),
                Plan::Write(WritePlan {
                    repository: "app".into(),
                    body: BodyTarget::NewSession,
                    max_body: 0,
                }),
            ),
            (
                wire::Plan::Write(wire::WritePlan {
                    repository: "app".into(),
                    body: wire::BodyTarget::None,
                    max_body: 0,
                }),
                Plan::Write(WritePlan {
                    repository: "app".into(),
                    body: BodyTarget::None,
                    max_body: 0,
                }),
            ),
            (
                wire::Plan::Pull("library/alpine:3".into()),
                Plan::Pull("library/alpine:3".into()),
            ),
        ];
        for (wire, ours) in cases {
            assert_eq!(Plan::from(wire), ours);
        }
    }

    #[test]
    fn an_edit_crosses_as_it_is() {
        let remove = Edit::Remove(vec!["latest".into(), "sha256:00".into()]);
        match wire::Change::from(&remove) {
            wire::Change::Remove(r) => assert_eq!(r, ["latest", "sha256:00"]),
            other => panic!("{other:?}"),
        }
        let tag = Edit::Tag {
            name: "prod".into(),
            target: "dev".into(),
        };
        match wire::Change::from(&tag) {
            wire::Change::Tag(t) => {
                assert_eq!((t.name.as_str(), t.target.as_str()), ("prod", "dev"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_selected_unit_type_is_checked() {
        let ok = unit_ref(
            "docker",
            wire::UnitRef {
                unit_type: "manifest".into(),
                key: "sha256:00".into(),
            },
        )
        .unwrap();
        assert_eq!(ok.unit_type.as_str(), "manifest");
        assert_eq!(ok.key, "sha256:00");
        let bad = unit_ref(
            "docker",
            wire::UnitRef {
                unit_type: "Not A Type".into(),
                key: "k".into(),
            },
        )
        .unwrap_err();
        assert_eq!(bad.code(), "plugin-invalid");
        assert!(bad.to_string().contains("docker"), "{bad}");
    }

    #[test]
    fn a_task_answer_keeps_its_summary_or_its_error() {
        let published: TaskAnswer<Published> = task_answer(Ok(wire::Published {
            name: "my/app".into(),
            index: "sha256:11".into(),
            summary: wire_types::Summary {
                units_added: 1,
                units_removed: 2,
                bytes_stored: 3,
                message: "done".into(),
            },
        }));
        assert_eq!(
            published,
            Ok(Published {
                name: "my/app".into(),
                index: "sha256:11".into(),
                summary: Summary {
                    units_added: 1,
                    units_removed: 2,
                    bytes_stored: 3,
                    message: "done".into(),
                },
            })
        );
        let failed: TaskAnswer<Summary> =
            task_answer::<wire_types::Summary, _>(Err(crate::err("fetch", "upstream 502")));
        assert_eq!(
            failed,
            Err(TaskError {
                code: "fetch".into(),
                message: "upstream 502".into(),
            })
        );
    }
}
