//! Answering before a request's body is read: a refusal, or an import that
//! ended before its body did. A client still sending that gets its answer
//! and then a reset (a server closing with unread bytes resets the
//! connection) often reports the reset and never shows the answer. So the
//! rest of the body is read and dropped for a while first, and the
//! connection is closed if that did not reach its end.

use axum::body::{Body, BodyDataStream};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures::StreamExt;
use std::time::Duration;

/// How much of an unwanted body is read before giving up on it.
pub struct DrainLimits {
    /// Longest wait for the next piece.
    pub idle: Duration,
    /// Longest drain in all.
    pub total: Duration,
    /// Most bytes read.
    pub bytes: u64,
}

/// After a refusal by the access gate (the caller may not be anyone).
pub const AFTER_REFUSAL: DrainLimits = DrainLimits {
    idle: Duration::from_secs(2),
    total: Duration::from_secs(10),
    bytes: 64 << 20,
};

/// After a streaming import that ended or was refused by its handler (the
/// caller passed the gate).
pub const AFTER_IMPORT: DrainLimits = DrainLimits {
    idle: Duration::from_secs(2),
    total: Duration::from_secs(60),
    bytes: u64::MAX,
};

/// Read and drop what the client still sends, within `limits`; whether the
/// body was read to its end.
pub async fn drain(body: &mut BodyDataStream, limits: &DrainLimits) -> bool {
    let rest = async {
        let mut read = 0u64;
        loop {
            match tokio::time::timeout(limits.idle, body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    read += chunk.len() as u64;
                    if read > limits.bytes {
                        return false;
                    }
                }
                Ok(None) => return true,
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(limits.total, rest)
        .await
        .unwrap_or(false)
}

/// `resp`, closing the connection unless the body was read to its end (the
/// unread rest would be taken for the next request).
pub fn closing_unless(complete: bool, mut resp: Response) -> Response {
    if !complete {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// `resp`, once the rest of `body` is drained within `limits`.
pub async fn answer_after_draining(body: Body, limits: &DrainLimits, resp: Response) -> Response {
    let complete = drain(&mut body.into_data_stream(), limits).await;
    closing_unless(complete, resp)
}
