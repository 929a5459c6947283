//! The request a piece of work belongs to, carried on its task (a tokio
//! task-local): every log line written while it runs names the request
//! (the server's log formatter reads [`with_current`]), and the tasks it
//! starts log its id. The HTTP layer sets it for each request
//! (`http::request_id`).
//!
//! A task-local costs nothing until a line is logged, where a tracing span
//! per request had its fields formatted for every request, logged or not
//! (about 5 % of a manifest GET's CPU).

use axum::http::{HeaderValue, Method, Uri};

/// The request: its id (the `X-Request-Id` it is answered with), method
/// and path.
#[derive(Clone, Debug)]
pub struct RequestScope {
    pub id: HeaderValue,
    pub method: Method,
    pub uri: Uri,
}

impl RequestScope {
    /// The id as text (visible ASCII, checked when it was made).
    pub fn id(&self) -> &str {
        self.id.to_str().unwrap_or_default()
    }
}

tokio::task_local! {
    static CURRENT: RequestScope;
}

/// The request being handled on this task, if any.
pub fn current() -> Option<RequestScope> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The id of the request being handled on this task, if any.
pub fn current_id() -> Option<String> {
    with_current(|r| r.id().to_string())
}

/// `f` of the request being handled on this task, if any, without a copy.
pub fn with_current<R>(f: impl FnOnce(&RequestScope) -> R) -> Option<R> {
    CURRENT.try_with(f).ok()
}

/// Run `f` (a request's handling, or a task it spawned) as part of `request`.
pub async fn scope<F: std::future::Future>(request: Option<RequestScope>, f: F) -> F::Output {
    match request {
        Some(request) => CURRENT.scope(request, f).await,
        None => f.await,
    }
}
