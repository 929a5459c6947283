//! The id of the request a piece of work belongs to, carried on its task
//! (a tokio task-local) so that the tasks a request starts log it too. The
//! HTTP layer sets it for each request (`http::request_id`).

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Run `f` (say, a spawned task) as part of request `id`.
pub async fn scope<F: std::future::Future>(id: Option<String>, f: F) -> F::Output {
    match id {
        Some(id) => CURRENT.scope(id, f).await,
        None => f.await,
    }
}
