//! HTTP to the Wharf admin API (`<server>/api/v1/...`), and what its failures
//! mean to the person at the keyboard. A failure on the server's side (5xx)
//! carries the answer's `X-Request-Id`, which the server's log lines of that
//! request carry too, so the operator can find what happened.
//!
//! Calls are synchronous, since a command does one thing after another, but
//! underneath is reqwest's async client on a single-threaded tokio runtime
//! that the client owns and the calling thread drives (`block_on`). A
//! streamed body (an upload, [`SizedBody`]) thus goes to the socket in the
//! chunks it comes in, 1 MiB from the uploader's reader thread; reqwest's
//! blocking client would read it 8 KiB at a time and hand each piece to its
//! own runtime thread, which made an upload slower than curl (issue #24).

use reqwest::{Body, Method, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long to wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary API call may take: they are all quick on the server
/// (long work is a task), so anything slower is a stuck server or network.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a readiness probe waits: a health check must answer well inside
/// its own deadline (the image's is 10 s).
const READINESS_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Client {
    /// Ends in `/`, so `api/v1/...` joins under a path prefix too.
    base: Url,
    http: reqwest::Client,
    /// Runs `http`'s requests; its connections live here between calls.
    runtime: tokio::runtime::Runtime,
    /// From `wharf login` or `WHARF_TOKEN`, sent as `Authorization: Bearer`.
    token: Option<(String, TokenFrom)>,
}

/// Where the client's token came from, so that a refusal of it says what
/// to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFrom {
    /// The login `wharf login` saved in the config file.
    SavedLogin,
    /// The `WHARF_TOKEN` environment variable.
    Environment,
}

/// The server's answer to a request it refused: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    /// A machine word: `not-found`, `conflict`, `invalid-input`, ...
    pub code: String,
    pub message: String,
    /// The answer's `X-Request-Id`, shown with a server error.
    pub request_id: Option<String>,
}

/// The message, and with a server error (5xx) the status and request id
/// to give whoever reads the server's log.
impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if self.status.is_server_error() {
            write!(
                f,
                " ({})",
                server_error_note(self.status, self.request_id.as_deref())
            )?;
        }
        Ok(())
    }
}

/// `server error 500; request id ID; the server's log has the details`.
fn server_error_note(status: StatusCode, request_id: Option<&str>) -> String {
    match request_id {
        Some(id) => format!(
            "server error {}; request id {id}; the server's log has the details",
            status.as_u16()
        ),
        None => format!(
            "server error {}; the server's log has the details",
            status.as_u16()
        ),
    }
}

/// `; request id ID` when the answer had one (for an answer not in the
/// API's shape).
fn request_id_note(request_id: &Option<String>) -> String {
    request_id
        .as_deref()
        .map(|id| format!("; request id {id}"))
        .unwrap_or_default()
}

/// A request body streamed as it is sent, and its length, sent as
/// `Content-Length` (the server takes an upload chunk or an import of a
/// known size, not a chunked one).
pub struct SizedBody {
    pub body: Body,
    pub len: u64,
}

/// An answer, read to its end.
struct Answer {
    status: StatusCode,
    /// The answer's `X-Request-Id`, when it is printable.
    request_id: Option<String>,
    body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the Wharf server at {server}: {reason}; is `wharf serve` running? (--server / WHARF_SERVER)"
    )]
    Unreachable { server: Url, reason: String },
    #[error(
        "the Wharf server at {server} has a certificate this client does not trust ({reason}); pass the CA that signed it with --ca-cert FILE (or WHARF_CA_CERT; `wharf serve --tls-self-signed` writes its CA to <data-dir>/tls/ca.crt), or add that CA to the system's trust store"
    )]
    Untrusted { server: Url, reason: String },
    #[error(
        "the Wharf server at {server} did not answer in time ({reason}); try again, or look at the server's log"
    )]
    Timeout { server: Url, reason: String },
    #[error("the connection to the Wharf server at {server} failed: {reason}")]
    Transport { server: Url, reason: String },
    /// The server understood and refused, or failed; its message says why.
    #[error("{0}")]
    Api(ApiFailure),
    #[error(
        "{server} answered {method} {path} with HTTP {status} and a body that is not the Wharf API's ({detail}{}); is --server / WHARF_SERVER the address of a Wharf server of this version?",
        request_id_note(.request_id)
    )]
    NotWharf {
        server: String,
        method: Method,
        path: String,
        status: StatusCode,
        detail: String,
        request_id: Option<String>,
    },
}

impl ClientError {
    /// The server's refusal, if that is what this is.
    pub fn api(&self) -> Option<&ApiFailure> {
        match self {
            ClientError::Api(f) => Some(f),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.api()
            .is_some_and(|f| f.status == StatusCode::NOT_FOUND)
    }

    /// Worth trying again: the request may not have reached the server, or
    /// the server failed on its side.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. } => true,
            ClientError::Api(f) => {
                f.status.is_server_error()
                    || f.status == StatusCode::REQUEST_TIMEOUT
                    || f.status == StatusCode::TOO_MANY_REQUESTS
            }
            ClientError::NotWharf { status, .. } => status.is_server_error(),
            ClientError::Untrusted { .. } => false,
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

impl Client {
    /// A client of the server at `base`, trusting the system's root
    /// certificates (and `SSL_CERT_FILE`), Mozilla's, and `ca_certs`.
    pub fn new(
        base: Url,
        token: Option<(String, TokenFrom)>,
        ca_certs: &[reqwest::Certificate],
    ) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("wharf-cli/", env!("CARGO_PKG_VERSION")));
        for cert in ca_certs {
            builder = builder.add_root_certificate(cert.clone());
        }
        Ok(Client {
            base,
            http: builder.build()?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            token,
        })
    }

    pub fn server(&self) -> &Url {
        &self.base
    }

    /// A request to `api/v1/<path>`.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = self
            .base
            .join(&format!("api/v1/{path}"))
            .expect("API paths are relative URLs");
        let req = self.http.request(method, url);
        match &self.token {
            Some((t, _)) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `POST /login` with a password (HTTP basic), never a token.
    pub fn login<T: DeserializeOwned>(&self, login: &str, password: &str) -> ClientResult<T> {
        let url = self.base.join("api/v1/login").expect("a relative URL");
        let req = self.http.post(url).basic_auth(login, Some(password));
        self.send(Method::POST, "login", req)
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> ClientResult<T> {
        self.send(
            Method::GET,
            path,
            self.request(Method::GET, path).query(query),
        )
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> ClientResult<T> {
        self.send(
            Method::POST,
            path,
            self.request(Method::POST, path).json(body),
        )
    }

    /// POST to an endpoint that answers with no body.
    pub fn post_no_content(&self, path: &str, body: &impl Serialize) -> ClientResult<()> {
        let answer = self.execute(self.request(Method::POST, path).json(body))?;
        if answer.status.is_success() {
            return Ok(());
        }
        Err(self.refusal(&Method::POST, path, answer))
    }

    pub fn post_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &impl Serialize,
    ) -> ClientResult<T> {
        let req = self.request(Method::POST, path).query(query).json(body);
        self.send(Method::POST, path, req)
    }

    pub fn patch<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> ClientResult<T> {
        self.send(
            Method::PATCH,
            path,
            self.request(Method::PATCH, path).json(body),
        )
    }

    /// POST a plugin's bytes.
    pub fn post_wasm<T: DeserializeOwned>(&self, path: &str, wasm: Vec<u8>) -> ClientResult<T> {
        let req = self
            .request(Method::POST, path)
            .header("content-type", "application/wasm")
            .body(wasm);
        self.send(Method::POST, path, req)
    }

    /// DELETE a resource that answers with a record (a task).
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        self.send(Method::DELETE, path, self.request(Method::DELETE, path))
    }

    /// DELETE a resource that answers with no body.
    pub fn delete_empty(&self, path: &str) -> ClientResult<()> {
        let answer = self.execute(self.request(Method::DELETE, path))?;
        if answer.status.is_success() {
            return Ok(());
        }
        Err(self.refusal(&Method::DELETE, path, answer))
    }

    /// Send a streamed body of known length (an upload chunk, a streaming
    /// import) with its own deadline: a big body on a slow link
    /// legitimately takes long.
    pub fn send_body<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: SizedBody,
        timeout: Duration,
    ) -> ClientResult<T> {
        let req = self
            .request(method.clone(), path)
            .query(query)
            .timeout(timeout)
            .header("content-type", "application/octet-stream")
            .header("content-length", body.len)
            .body(body.body);
        self.send(method, path, req)
    }

    /// `GET /readyz`, served beside the API (not under `api/v1`) and to
    /// anyone: whether the server can take work (`true` on 200, `false` on
    /// 503), with the state of each check as the server wrote it.
    pub fn readiness(&self) -> ClientResult<(bool, serde_json::Value)> {
        let url = self.base.join("readyz").expect("a relative URL");
        let Answer {
            status,
            request_id,
            body,
        } = self.execute(self.http.get(url).timeout(READINESS_TIMEOUT))?;
        let not_wharf = |detail: String| ClientError::NotWharf {
            server: self.base.to_string(),
            method: Method::GET,
            path: "/readyz".into(),
            status,
            detail,
            request_id: request_id.clone(),
        };
        if status != StatusCode::OK && status != StatusCode::SERVICE_UNAVAILABLE {
            return Err(not_wharf(snippet(&body)));
        }
        let doc = serde_json::from_slice(&body).map_err(|e| not_wharf(e.to_string()))?;
        Ok((status == StatusCode::OK, doc))
    }

    /// Send the request and read the answer to its end.
    fn execute(&self, req: RequestBuilder) -> ClientResult<Answer> {
        self.runtime
            .block_on(async {
                let resp = req.send().await?;
                let status = resp.status();
                let request_id = resp
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = match resp.bytes().await {
                    Ok(body) => body.into(),
                    // A refusal cut short is still a refusal: its status
                    // says what happened, the body only adds words.
                    Err(_) if !status.is_success() => Vec::new(),
                    Err(e) => return Err(e),
                };
                Ok(Answer {
                    status,
                    request_id,
                    body,
                })
            })
            .map_err(|e: reqwest::Error| self.transport_error(&e))
    }

    fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        req: RequestBuilder,
    ) -> ClientResult<T> {
        let answer = self.execute(req)?;
        if !answer.status.is_success() {
            return Err(self.refusal(&method, path, answer));
        }
        serde_json::from_slice(&answer.body).map_err(|e| ClientError::NotWharf {
            server: self.base.to_string(),
            method,
            path: format!("/api/v1/{path}"),
            status: answer.status,
            detail: e.to_string(),
            request_id: answer.request_id,
        })
    }

    /// The error of a non-2xx answer: the API's own, or a sign that this is
    /// not a Wharf server at all.
    fn refusal(&self, method: &Method, path: &str, answer: Answer) -> ClientError {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        let Answer {
            status,
            request_id,
            body,
        } = answer;
        match serde_json::from_slice::<Envelope>(&body) {
            // The server's words are for any client (curl); say what to run.
            Ok(Envelope { error }) if status == StatusCode::UNAUTHORIZED && path != "login" => {
                let message = match &self.token {
                    Some((_, TokenFrom::SavedLogin)) => format!(
                        "the server at {} did not accept the saved login (expired or revoked: {}); run `wharf login` again",
                        self.base, error.message
                    ),
                    Some((_, TokenFrom::Environment)) => format!(
                        "the server at {} did not accept the token in WHARF_TOKEN (expired, revoked or not a token: {}); set WHARF_TOKEN to the `token` a new POST /api/v1/login answers, or unset it to use the login `wharf login` saved",
                        self.base, error.message
                    ),
                    None => format!(
                        "the server at {} wants a login: run `wharf login -u LOGIN`, or set WHARF_TOKEN to the `token` POST /api/v1/login answers (or pass --server for another server)",
                        self.base
                    ),
                };
                ClientError::Api(ApiFailure {
                    status,
                    code: error.code,
                    message,
                    request_id,
                })
            }
            Ok(Envelope { error }) if status == StatusCode::FORBIDDEN => {
                ClientError::Api(ApiFailure {
                    status,
                    code: error.code,
                    message: grant_hint(&error.message).unwrap_or(error.message),
                    request_id,
                })
            }
            Ok(Envelope { error }) => ClientError::Api(ApiFailure {
                status,
                code: error.code,
                message: error.message,
                request_id,
            }),
            Err(_) => ClientError::NotWharf {
                server: self.base.to_string(),
                method: method.clone(),
                path: format!("/api/v1/{path}"),
                status,
                detail: snippet(&body),
                request_id,
            },
        }
    }

    fn transport_error(&self, e: &reqwest::Error) -> ClientError {
        let server = self.base.clone();
        let reason = root_cause(e);
        if wharf_core::tls::is_untrusted_certificate(e) {
            ClientError::Untrusted { server, reason }
        } else if e.is_connect() {
            ClientError::Unreachable { server, reason }
        } else if e.is_timeout() {
            ClientError::Timeout { server, reason }
        } else {
            ClientError::Transport { server, reason }
        }
    }
}

/// The server's 403 names what is missing and the API call that grants it
/// (`user jdev lacks 'delete' on /repositories/app/; a super-user can grant
/// it: POST ...`); at the command line, say the command instead. `None`
/// when the message is not of that form.
fn grant_hint(message: &str) -> Option<String> {
    let (missing, _) = message.split_once("; a super-user can grant it")?;
    let rest = missing.strip_prefix("user ")?;
    let (login, rest) = rest.split_once(" lacks '")?;
    let (op, resource) = rest.split_once("' on ")?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-@".contains(c))
    };
    if !(plain(login) && plain(op) && plain(resource)) {
        return None;
    }
    Some(format!(
        "{missing}; a super-user can grant it: wharf auth permission grant --login {login} --resource {resource} -o {op}"
    ))
}

/// The innermost error: reqwest's own message only repeats the URL, while
/// the cause ("Connection refused") is what the user can act on.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// The start of a body, printable, for an error message.
fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "empty body".into();
    }
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(80) {
        Some((i, _)) => format!("{:?}...", &one_line[..i]),
        None => format!("{one_line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, request_id: Option<&str>) -> ClientError {
        ClientError::Api(ApiFailure {
            status: StatusCode::from_u16(status).unwrap(),
            code: "internal".into(),
            message: "cannot read the metadata store".into(),
            request_id: request_id.map(str::to_string),
        })
    }

    #[test]
    fn a_server_error_names_its_request_id_and_a_refusal_does_not() {
        assert_eq!(
            failure(500, Some("0193a2c4-aa")).to_string(),
            "cannot read the metadata store (server error 500; request id 0193a2c4-aa; the server's log has the details)"
        );
        assert_eq!(
            failure(503, None).to_string(),
            "cannot read the metadata store (server error 503; the server's log has the details)"
        );
        assert_eq!(
            failure(404, Some("0193a2c4-aa")).to_string(),
            "cannot read the metadata store"
        );
        let e = ClientError::NotWharf {
            server: "http://h/".into(),
            method: Method::GET,
            path: "/api/v1/status".into(),
            status: StatusCode::BAD_GATEWAY,
            detail: "\"<html>\"".into(),
            request_id: Some("r-1".into()),
        };
        assert!(
            e.to_string()
                .contains("HTTP 502 Bad Gateway and a body that is not the Wharf API's (\"<html>\"; request id r-1)"),
            "{e}"
        );
    }

    #[test]
    fn a_refusal_names_the_command_that_grants_what_is_missing() {
        let m = "user jdev lacks 'delete' on /repositories/app/; a super-user can grant it: POST /api/v1/permissions/grant";
        assert_eq!(
            grant_hint(m).as_deref(),
            Some(
                "user jdev lacks 'delete' on /repositories/app/; a super-user can grant it: wharf auth permission grant --login jdev --resource /repositories/app/ -o delete"
            )
        );
        assert_eq!(grant_hint("only super-users may do that"), None);
        assert_eq!(
            grant_hint("user a b lacks 'read' on /x/; a super-user can grant it: POST"),
            None
        );
    }
}
