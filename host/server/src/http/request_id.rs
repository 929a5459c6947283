//! A request id per request: the client's `X-Request-Id` when it is sane,
//! else a new UUIDv7. It is echoed in the response, carried by every log
//! line of the request (a tracing span), and handed to the tasks the request
//! starts (their logs carry it too; see [`crate::request_context`]).

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// At most this long, visible ASCII only: it goes into logs and headers.
const MAX_LEN: usize = 128;

fn accept(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= MAX_LEN && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_string())
}

pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(accept)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let value = HeaderValue::try_from(&id).expect("checked or generated: visible ASCII");
    req.headers_mut().insert(HEADER.clone(), value.clone());
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = crate::request_context::scope(Some(id), next.run(req).instrument(span)).await;
    resp.headers_mut().insert(HEADER.clone(), value);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_only() {
        assert_eq!(
            accept(&HeaderValue::from_static("abc-123")).as_deref(),
            Some("abc-123")
        );
        assert_eq!(accept(&HeaderValue::from_static("a b")), None);
        assert_eq!(accept(&HeaderValue::from_static("")), None);
        let long = "x".repeat(MAX_LEN + 1);
        assert_eq!(accept(&HeaderValue::try_from(long).unwrap()), None);
    }
}
