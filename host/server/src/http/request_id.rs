//! A request id per request: the client's `X-Request-Id` when it is sane,
//! else a new UUIDv7. It is echoed in the response, carried by every log
//! line of the request, and handed to the tasks the request starts (their
//! logs carry it too; see [`crate::request_context`]).

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// At most this long, visible ASCII only: it goes into logs and headers.
const MAX_LEN: usize = 128;

fn accept(v: &HeaderValue) -> bool {
    let s = v.as_bytes();
    !s.is_empty() && s.len() <= MAX_LEN && s.iter().all(|b| b.is_ascii_graphic())
}

/// A new id: a UUIDv7, in its hyphenated lowercase form.
fn generate() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a UUID is visible ASCII")
}

pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(&HEADER).filter(|v| accept(v)) {
        Some(id) => id.clone(),
        None => {
            let id = generate();
            req.headers_mut().insert(HEADER.clone(), id.clone());
            id
        }
    };
    let request = crate::request_context::RequestScope {
        id: id.clone(),
        method: req.method().clone(),
        uri: req.uri().clone(),
    };
    let mut resp = crate::request_context::scope(Some(request), next.run(req)).await;
    resp.headers_mut().insert(HEADER.clone(), id);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_only() {
        assert!(accept(&HeaderValue::from_static("abc-123")));
        assert!(!accept(&HeaderValue::from_static("a b")));
        assert!(!accept(&HeaderValue::from_static("")));
        let long = "x".repeat(MAX_LEN + 1);
        assert!(!accept(&HeaderValue::try_from(long).unwrap()));
        assert!(accept(&HeaderValue::try_from("x".repeat(MAX_LEN)).unwrap()));
        // Not UTF-8 (obs-text): refused, never echoed.
        assert!(!accept(&HeaderValue::from_bytes(b"caf\xe9").unwrap()));
    }

    #[test]
    fn generated_ids_are_uuids_in_time_order() {
        let (a, b) = (generate(), generate());
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        assert_eq!(uuid::Uuid::parse_str(a).unwrap().get_version_num(), 7);
        assert_eq!(a.len(), 36);
        assert!(a < b, "{a} then {b}");
    }
}
