//! HTTP to the Wharf admin API (`<server>/api/v1/...`), and what its failures
//! mean to the person at the keyboard.
//!
//! Blocking on purpose: a command does one thing after another, and the
//! uploader streams a file region as a request body without an async runtime.

use reqwest::blocking::{Body, RequestBuilder, Response};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long to wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary API call may take: they are all quick on the server
/// (long work is a task), so anything slower is a stuck server or network.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Client {
    /// Ends in `/`, so `api/v1/...` joins under a path prefix too.
    base: Url,
    http: reqwest::blocking::Client,
    /// From `wharf login`, sent as `Authorization: Bearer`.
    token: Option<String>,
}

/// The server's answer to a request it refused: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    /// A machine word: `not-found`, `conflict`, `invalid-input`, ...
    pub code: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the Wharf server at {server}: {reason}; is `wharf serve` running? (--server / WHARF_SERVER)"
    )]
    Unreachable { server: Url, reason: String },
    #[error(
        "the Wharf server at {server} did not answer in time ({reason}); try again, or look at the server's log"
    )]
    Timeout { server: Url, reason: String },
    #[error("the connection to the Wharf server at {server} failed: {reason}")]
    Transport { server: Url, reason: String },
    /// The server understood and refused; its message says why.
    #[error("{}", .0.message)]
    Api(ApiFailure),
    #[error(
        "{server} answered {method} {path} with HTTP {status} and a body that is not the Wharf API's ({detail}); is --server / WHARF_SERVER the address of a Wharf server of this version?"
    )]
    NotWharf {
        server: String,
        method: Method,
        path: String,
        status: StatusCode,
        detail: String,
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
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

impl Client {
    pub fn new(base: Url, token: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("wharf-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client { base, http, token })
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
            Some(t) => req.bearer_auth(t),
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
        let resp = self.execute(self.request(Method::POST, path).json(body))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(self.refusal(&Method::POST, path, status, resp))
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
        let resp = self.execute(self.request(Method::DELETE, path))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(self.refusal(&Method::DELETE, path, status, resp))
    }

    /// Send a streamed body of known length (an upload chunk, a streaming
    /// import) with its own deadline: a big body on a slow link
    /// legitimately takes long.
    pub fn send_body<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
        timeout: Duration,
    ) -> ClientResult<T> {
        let req = self
            .request(method.clone(), path)
            .query(query)
            .timeout(timeout)
            .header("content-type", "application/octet-stream")
            .body(body);
        self.send(method, path, req)
    }

    fn execute(&self, req: RequestBuilder) -> ClientResult<Response> {
        req.send().map_err(|e| self.transport_error(&e))
    }

    fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        req: RequestBuilder,
    ) -> ClientResult<T> {
        let resp = self.execute(req)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.refusal(&method, path, status, resp));
        }
        let body = resp.bytes().map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&body).map_err(|e| ClientError::NotWharf {
            server: self.base.to_string(),
            method,
            path: format!("/api/v1/{path}"),
            status,
            detail: e.to_string(),
        })
    }

    /// The error of a non-2xx answer: the API's own, or a sign that this is
    /// not a Wharf server at all.
    fn refusal(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        resp: Response,
    ) -> ClientError {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        let body = resp.bytes().unwrap_or_default();
        match serde_json::from_slice::<Envelope>(&body) {
            // The server's words are for any client (curl); say what to run.
            Ok(Envelope { error }) if status == StatusCode::UNAUTHORIZED && path != "login" => {
                let message = match &self.token {
                    Some(_) => format!(
                        "the server at {} did not accept the saved login (expired or revoked: {}); run `wharf login` again",
                        self.base, error.message
                    ),
                    None => format!(
                        "the server at {} wants a login: run `wharf login -u LOGIN` (or pass --server for another server)",
                        self.base
                    ),
                };
                ClientError::Api(ApiFailure {
                    status,
                    code: error.code,
                    message,
                })
            }
            Ok(Envelope { error }) if status == StatusCode::FORBIDDEN => {
                ClientError::Api(ApiFailure {
                    status,
                    code: error.code,
                    message: grant_hint(&error.message).unwrap_or(error.message),
                })
            }
            Ok(Envelope { error }) => ClientError::Api(ApiFailure {
                status,
                code: error.code,
                message: error.message,
            }),
            Err(_) => ClientError::NotWharf {
                server: self.base.to_string(),
                method: method.clone(),
                path: format!("/api/v1/{path}"),
                status,
                detail: snippet(&body),
            },
        }
    }

    fn transport_error(&self, e: &reqwest::Error) -> ClientError {
        let server = self.base.clone();
        let reason = root_cause(e);
        if e.is_connect() {
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
    use super::grant_hint;

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
