//! Events: what happened (a task ended, a repository was synced or published,
//! a plugin was installed), told to listeners registered through
//! `/api/v1/events/listeners`:
//!
//! - `http`: a JSON POST to a URL, signed with `X-Wharf-Signature:
//!   sha256=<hex HMAC-SHA256 of the body with the listener's secret>`, retried
//!   with exponential backoff while the receiver is down;
//! - `amqp`: published to the topic exchange `wharf.events` of the server's
//!   broker, with the event type as routing key (`task.finished`, ...);
//! - `email`: a plain-text message with a readable subject and body per
//!   event type, sent through the listener's SMTP server (`email`), retried
//!   like `http`.
//!
//! `http` and `email` destinations go through the server's outbound policy:
//! an internal address the operator did not allow is never connected to.
//!
//! Delivery runs on its own tasks with bounded queues: a slow or failing
//! listener never fails a task and never blocks a worker.
//!
//! The listeners are read from the store at most every [`LISTENERS_FRESH`],
//! not on every event: a change through this node's API takes effect at
//! once ([`Events::listeners_changed`]), one made on another node within
//! that time.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use wharf_runtime::outbound::OutboundPolicy;
use wharf_store::db::{EmailTarget, Store, now};
pub use wharf_store::db::{Listener, Target};

pub mod email;

pub const EXCHANGE: &str = "wharf.events";
/// Events waiting per listener before the oldest are dropped (and logged).
const QUEUE_DEPTH: usize = 1024;
/// Delivery attempts of one event to an http or email listener; the waits
/// between them start at 0.5 s and double up to 60 s.
const ATTEMPTS: u32 = 10;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long the listeners read from the store are used before being read
/// again (a change another node made takes this long to be seen).
pub const LISTENERS_FRESH: Duration = Duration::from_secs(5);

/// Every delivery's attempts, each with the pause that follows it when it
/// fails: 0.5 s, doubling up to a minute.
fn attempts() -> impl Iterator<Item = (u32, Duration)> {
    (1..=ATTEMPTS).scan(FIRST_BACKOFF, |next, attempt| {
        let pause = *next;
        *next = (*next * 2).min(MAX_BACKOFF);
        Some((attempt, pause))
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: String,
    /// `task.finished`, `task.failed`, `task.canceled`, `repo.imported`,
    /// `repo.synced`, `repo.published`, `repo.copied`, `repo.deleted`,
    /// `content.pushed`, `content.deleted` (a registry push or delete:
    /// `{repository, plugin, reference, digest}`), `plugin.installed`,
    /// `plugin.upgraded`, `plugin.removed`.
    #[serde(rename = "type")]
    pub event_type: String,
    #[schema(value_type = String, format = DateTime)]
    pub time: wharf_store::db::Timestamp,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(event_type: &str, data: serde_json::Value) -> Self {
        Event {
            id: uuid::Uuid::now_v7().to_string(),
            event_type: event_type.into(),
            time: now(),
            data,
        }
    }
}

/// One delivery queue per listener, created on first use.
struct Delivery {
    listener: Listener,
    tx: mpsc::Sender<Event>,
}

pub struct Events {
    store: Arc<dyn Store>,
    /// The outbound policy's client: a listener may not reach internal
    /// addresses the operator did not allow, not even through a redirect.
    http: reqwest::Client,
    outbound: Arc<OutboundPolicy>,
    broker: Option<String>,
    deliveries: Mutex<Vec<Delivery>>,
    /// The listeners as last read, and when.
    listeners: Mutex<Option<(std::time::Instant, Arc<Vec<Listener>>)>>,
    /// Where deliveries run: the runtime this was made on (the main one),
    /// whichever connection's event loop emits.
    runtime: tokio::runtime::Handle,
}

impl Events {
    pub fn new(
        store: Arc<dyn Store>,
        broker: Option<String>,
        outbound: Arc<OutboundPolicy>,
    ) -> anyhow::Result<Arc<Self>> {
        let http = outbound
            .client_builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Arc::new(Events {
            store,
            http,
            outbound,
            broker,
            deliveries: Mutex::new(Vec::new()),
            listeners: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// A listener was added, changed or removed: read them again for the
    /// next event.
    pub fn listeners_changed(&self) {
        *self.listeners.lock().unwrap() = None;
    }

    /// The listeners, from the store when the last read is older than
    /// [`LISTENERS_FRESH`] or a change was made here since.
    async fn listeners(&self) -> wharf_store::db::StoreResult<Arc<Vec<Listener>>> {
        if let Some((at, l)) = &*self.listeners.lock().unwrap()
            && at.elapsed() < LISTENERS_FRESH
        {
            return Ok(l.clone());
        }
        let read = std::time::Instant::now();
        let l = Arc::new(self.store.list_listeners().await?);
        let mut cached = self.listeners.lock().unwrap();
        // A change made while reading wins: keep nothing older than it.
        if cached.as_ref().is_none_or(|(at, _)| *at < read) {
            *cached = Some((read, l.clone()));
        }
        Ok(l)
    }

    /// Tell every interested listener. Never fails and never waits on a
    /// listener: events are queued for the delivery tasks.
    pub async fn emit(self: &Arc<Self>, event: Event) {
        tracing::debug!(event = %event.event_type, "event");
        let listeners = match self.listeners().await {
            Ok(l) => l,
            Err(e) => return tracing::warn!("cannot read event listeners: {e}"),
        };
        let mut deliveries = self.deliveries.lock().unwrap();
        // Forget queues of listeners that were deleted or changed.
        deliveries.retain(|d| listeners.contains(&d.listener));
        for l in listeners.iter().filter(|l| l.wants(&event.event_type)) {
            let tx = match deliveries.iter().find(|d| &d.listener == l) {
                Some(d) => d.tx.clone(),
                None => {
                    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                    self.runtime.spawn(self.clone().deliver(l.clone(), rx));
                    deliveries.push(Delivery {
                        listener: l.clone(),
                        tx: tx.clone(),
                    });
                    tx
                }
            };
            if tx.try_send(event.clone()).is_err() {
                tracing::warn!(listener = %l.id, event = %event.event_type, "listener queue full; event dropped");
            }
        }
    }

    async fn deliver(self: Arc<Self>, listener: Listener, mut rx: mpsc::Receiver<Event>) {
        let mut amqp: Option<(lapin::Connection, lapin::Channel)> = None;
        while let Some(event) = rx.recv().await {
            let body = serde_json::to_vec(&event).expect("events serialize");
            match &listener.target {
                Target::Http { url, secret } => {
                    self.post(&listener.id, url, secret, &event, &body).await
                }
                Target::Email(smtp) => self.mail(&listener.id, smtp, &event).await,
                Target::Amqp => {
                    if let Err(e) = self.publish(&mut amqp, &event, &body).await {
                        amqp = None;
                        tracing::warn!(listener = %listener.id, event = %event.event_type, "amqp delivery failed: {e:#}");
                    }
                }
            }
        }
    }

    async fn post(&self, listener: &str, url: &str, secret: &str, event: &Event, body: &[u8]) {
        let signature = format!(
            "sha256={}",
            hex::encode(hmac_sha256(secret.as_bytes(), body))
        );
        // Listeners are checked when created; the allow list may have
        // shrunk since (IP literals bypass the client's resolver check).
        if let Err(e) = url
            .parse::<reqwest::Url>()
            .map_err(|e| e.to_string())
            .and_then(|u| self.outbound.check_url(&u).map_err(|e| e.to_string()))
        {
            return tracing::error!(listener, event = %event.event_type, "event not delivered: {e}");
        }
        for (attempt, pause) in attempts() {
            let sent = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header("x-wharf-event", &event.event_type)
                .header("x-wharf-delivery", &event.id)
                .header("x-wharf-signature", &signature)
                .body(body.to_vec())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => {
                    tracing::warn!(listener, attempt, status = %r.status(), "http listener refused the event")
                }
                Err(e) => {
                    let why = wharf_runtime::outbound::describe(&e.without_url());
                    tracing::warn!(listener, attempt, "http listener unreachable: {why}")
                }
            }
            tokio::time::sleep(pause).await;
        }
        tracing::error!(listener, event = %event.event_type, "event not delivered after {ATTEMPTS} attempts");
    }

    /// Mail `event` through the listener's SMTP server, retried like an
    /// http delivery while the server is unreachable or answers with a
    /// transient error; a refusal by the outbound policy, a permanent SMTP
    /// refusal or an address that does not parse ends it at once.
    async fn mail(&self, listener: &str, smtp: &EmailTarget, event: &Event) {
        let message = match email::message(smtp, event) {
            Ok(m) => m,
            Err(e) => {
                return tracing::error!(listener, event = %event.event_type, "event not mailed: {e}");
            }
        };
        for (attempt, pause) in attempts() {
            match email::send(&self.outbound, smtp, &message).await {
                Ok(()) => return,
                Err(e) if !e.retry() => {
                    return tracing::error!(listener, event = %event.event_type, "event not mailed: {e}");
                }
                Err(e) => {
                    tracing::warn!(
                        listener,
                        attempt,
                        "email listener's SMTP server failed: {e}"
                    )
                }
            }
            tokio::time::sleep(pause).await;
        }
        tracing::error!(listener, event = %event.event_type, "event not mailed after {ATTEMPTS} attempts");
    }

    async fn publish(
        &self,
        conn: &mut Option<(lapin::Connection, lapin::Channel)>,
        event: &Event,
        body: &[u8],
    ) -> anyhow::Result<()> {
        use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
        if conn.is_none() {
            let url = self
                .broker
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("amqp listeners need the server's --broker"))?;
            let c = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
            let ch = c.create_channel().await?;
            ch.exchange_declare(
                EXCHANGE.into(),
                lapin::ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await?;
            *conn = Some((c, ch));
        }
        let (_, ch) = conn.as_ref().expect("connected above");
        ch.basic_publish(
            EXCHANGE.into(),
            event.event_type.as_str().into(),
            BasicPublishOptions::default(),
            body,
            lapin::BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2),
        )
        .await?
        .await?;
        Ok(())
    }
}

/// HMAC-SHA256 of `msg` with `key`, to sign http deliveries.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn listener_filters() {
        let l = Listener {
            id: "l".into(),
            target: Target::Amqp,
            events: vec!["task.*".into(), "repo.published".into()],
            created_at: now(),
        };
        assert!(l.wants("task.failed") && l.wants("repo.published"));
        assert!(!l.wants("repo.synced"));
    }
}

pub mod api {
    //! `/api/v1/events/listeners`: register, list and delete listeners.

    use super::{Listener, Target};
    use crate::app::App;
    use crate::error::{Error, Result};
    use crate::http::ApiErrorBody;
    use axum::Json;
    use axum::extract::rejection::JsonRejection;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::{delete, post};
    use std::sync::Arc;
    use wharf_store::db::{EmailTarget, SmtpSecurity};

    pub fn routes() -> axum::Router<Arc<App>> {
        axum::Router::new()
            .route("/events/listeners", post(create).get(list))
            .route("/events/listeners/{id}", delete(remove))
    }

    // No deny_unknown_fields: serde cannot combine it with `flatten`.
    #[derive(serde::Deserialize, utoipa::ToSchema)]
    pub struct CreateListener {
        #[serde(flatten)]
        target: Target,
        /// Event types (or `prefix.*`); all when empty.
        #[serde(default)]
        events: Vec<String>,
    }

    #[utoipa::path(post, path = "/api/v1/events/listeners", tag = "events", request_body = CreateListener,
        responses((status = 201, body = Listener), (status = 400, body = ApiErrorBody)))]
    async fn create(
        State(app): State<Arc<App>>,
        body: std::result::Result<Json<CreateListener>, JsonRejection>,
    ) -> Result<(StatusCode, Json<Listener>)> {
        let Json(mut req) = body?;
        match &mut req.target {
            Target::Http { url, .. } => {
                let u: reqwest::Url = url
                    .parse()
                    .map_err(|e| Error::invalid(format!("listener url {url:?}: {e}")))?;
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(Error::invalid(
                        "http listeners need an http:// or https:// url",
                    ));
                }
                // An internal IP literal is refused now; a hostname is
                // checked on every delivery, after it resolves.
                app.outbound
                    .check_url(&u)
                    .map_err(|e| Error::invalid(format!("listener url: {e}")))?;
            }
            Target::Amqp if app.config.broker.is_none() => {
                return Err(Error::invalid(
                    "amqp listeners publish to the server's broker; start wharf with --broker",
                ));
            }
            Target::Amqp => {}
            Target::Email(email) => {
                check_email(&app, email)?;
                if email.port == Some(0) {
                    return Err(Error::invalid(
                        "email listener port 0: give the SMTP server's port, or none for the default",
                    ));
                }
                email.port = Some(email.port());
            }
        }
        let l = Listener {
            id: uuid::Uuid::now_v7().to_string(),
            target: req.target,
            events: req.events,
            created_at: wharf_store::db::now(),
        };
        app.store.put_listener(&l).await?;
        app.events.listeners_changed();
        Ok((StatusCode::CREATED, Json(crate::secrets::mask_listener(&l))))
    }

    /// An email listener's settings as the API takes them: addresses that
    /// parse, an SMTP host that is no internal address the operator did not
    /// allow (a name is checked when it resolves, at each delivery), and
    /// credentials that never cross the network in clear.
    fn check_email(app: &App, email: &EmailTarget) -> Result<()> {
        let EmailTarget {
            to,
            from,
            host,
            security,
            username,
            password,
            ..
        } = email;
        let (from, host, security) = (from.as_str(), host.as_str(), *security);
        if to.is_empty() {
            return Err(Error::invalid(
                "email listeners need at least one recipient: \"to\": [\"ops@example.org\"]",
            ));
        }
        for (what, a) in to
            .iter()
            .map(|a| ("to", a.as_str()))
            .chain([("from", from)])
        {
            a.parse::<lettre::message::Mailbox>().map_err(|e| {
                Error::invalid(format!(
                    "email listener {what} {a:?} is no email address ({e}); write e.g. ops@example.org or \"Ops <ops@example.org>\""
                ))
            })?;
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let ip = literal.parse::<std::net::IpAddr>().ok();
        let bad_name = host.is_empty()
            || host.len() > 253
            || host
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'));
        if ip.is_none() && bad_name {
            return Err(Error::invalid(format!(
                "email listener host {host:?} is neither a host name nor an IP address; write e.g. smtp.example.org"
            )));
        }
        if let Some(ip) = ip {
            app.outbound
                .check_ip(host, ip)
                .map_err(|e| Error::invalid(format!("email listener host: {e}")))?;
        }
        if password == crate::secrets::MASK {
            return Err(Error::invalid(format!(
                "email listener password is {:?}, which stands for a stored secret: send the real password",
                crate::secrets::MASK
            )));
        }
        if !password.is_empty() && username.is_empty() {
            return Err(Error::invalid(
                "email listener password without a username: give \"username\" too",
            ));
        }
        let loopback =
            host.eq_ignore_ascii_case("localhost") || ip.is_some_and(|ip| ip.is_loopback());
        if security == SmtpSecurity::Plain && !username.is_empty() && !loopback {
            return Err(Error::invalid(format!(
                "email listener security \"none\" would send the SMTP password to {host} in clear; \
                 use \"starttls\" or \"tls\" (or a relay on this machine)"
            )));
        }
        Ok(())
    }

    #[utoipa::path(get, path = "/api/v1/events/listeners", tag = "events", responses((status = 200, body = Vec<Listener>)))]
    async fn list(State(app): State<Arc<App>>) -> Result<Json<Vec<Listener>>> {
        Ok(Json(
            app.store
                .list_listeners()
                .await?
                .iter()
                .map(crate::secrets::mask_listener)
                .collect(),
        ))
    }

    #[utoipa::path(delete, path = "/api/v1/events/listeners/{id}", tag = "events",
        responses((status = 204), (status = 404, body = ApiErrorBody)))]
    async fn remove(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<StatusCode> {
        let removed = app.store.delete_listener(&id).await?;
        app.events.listeners_changed();
        match removed {
            true => Ok(StatusCode::NO_CONTENT),
            false => Err(Error::not_found(format!("listener {id} not found"))),
        }
    }
}

/// The events a task's end means.
pub fn for_task(t: &wharf_store::db::Task) -> Vec<Event> {
    use wharf_store::db::TaskState;
    let repository = t
        .locks
        .iter()
        .find_map(|l| l.repository())
        .map(|r| r.to_string());
    let data = serde_json::json!({
        "task": t.id,
        "kind": t.kind,
        "state": t.state.as_str(),
        "repository": repository,
        "result": t.result,
        "error": t.error,
    });
    let mut events = vec![Event::new(
        match t.state {
            TaskState::Finished => "task.finished",
            TaskState::Canceled => "task.canceled",
            _ => "task.failed",
        },
        data.clone(),
    )];
    let repo_event = match t.kind.as_str() {
        "import" => Some("repo.imported"),
        "sync" => Some("repo.synced"),
        "publish" => Some("repo.published"),
        "copy" => Some("repo.copied"),
        "delete" => Some("repo.deleted"),
        _ => None,
    };
    if let (TaskState::Finished, Some(kind)) = (t.state, repo_event) {
        events.push(Event::new(kind, data));
    }
    events
}
