//! The server's sockets: which addresses serve which routes, over plain
//! HTTP or TLS, and their graceful stop.
//!
//! The admin API and the registry side share `--listen` unless
//! `--admin-listen` / `--registry-listen` give either its own address; a
//! listener serves only its side's routes (plus `/healthz`, `/readyz` and
//! `/metrics`, which every listener answers).

use crate::config::ServeConfig;
use crate::tls::{CertFiles, ReloadingCert};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `/api/v1/...`.
    Admin,
    /// The plugins' routes (`/v2/...` for Docker).
    Registry,
    /// Both: the default single `--listen`.
    Both,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Admin => "admin",
            Side::Registry => "registry",
            Side::Both => "all",
        }
    }
}

/// Where a listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    Plain,
    Files(CertFiles),
    /// The generated set in `<data-dir>/tls`.
    SelfSigned,
}

#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub side: Side,
    pub tls: Tls,
}

/// The listeners `config` asks for, checked for consistency.
pub fn plan(config: &ServeConfig) -> anyhow::Result<Vec<ListenerSpec>> {
    let t = &config.tls;
    let pair = |cert: &Option<std::path::PathBuf>,
                key: &Option<std::path::PathBuf>,
                flag: &str|
     -> anyhow::Result<Option<CertFiles>> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None) => Ok(None),
            (Some(_), None) => {
                anyhow::bail!("--{flag}-cert is given without --{flag}-key: give both")
            }
            (None, Some(_)) => {
                anyhow::bail!("--{flag}-key is given without --{flag}-cert: give both")
            }
        }
    };
    let global = pair(&t.tls_cert, &t.tls_key, "tls")?;
    anyhow::ensure!(
        !(t.tls_self_signed && global.is_some()),
        "--tls-self-signed and --tls-cert both say which certificate to serve: choose one"
    );
    let default = match (global, t.tls_self_signed) {
        (Some(files), _) => Tls::Files(files),
        (None, true) => Tls::SelfSigned,
        (None, false) => Tls::Plain,
    };
    let admin_tls = pair(&t.admin_tls_cert, &t.admin_tls_key, "admin-tls")?
        .map(Tls::Files)
        .unwrap_or_else(|| default.clone());
    let registry_tls = pair(&t.registry_tls_cert, &t.registry_tls_key, "registry-tls")?
        .map(Tls::Files)
        .unwrap_or_else(|| default.clone());
    let admin = config.admin_listen.unwrap_or(config.listen);
    let registry = config.registry_listen.unwrap_or(config.listen);
    if admin == registry {
        anyhow::ensure!(
            admin_tls == registry_tls,
            "the admin API and the registry share {admin} but are given different TLS \
             certificates: give one of them its own address (--admin-listen or --registry-listen)"
        );
        return Ok(vec![ListenerSpec {
            addr: admin,
            side: Side::Both,
            tls: admin_tls,
        }]);
    }
    Ok(vec![
        ListenerSpec {
            addr: admin,
            side: Side::Admin,
            tls: admin_tls,
        },
        ListenerSpec {
            addr: registry,
            side: Side::Registry,
            tls: registry_tls,
        },
    ])
}

/// A bound listener, ready to serve.
pub struct Bound {
    pub spec: ListenerSpec,
    tcp: TcpListener,
    tls: Option<Arc<ReloadingCert>>,
    limits: crate::connections::Limits,
}

impl Bound {
    pub fn cert(&self) -> Option<&Arc<ReloadingCert>> {
        self.tls.as_ref()
    }
}

/// Bind every listener and load its certificate, so that a wrong address or
/// certificate stops the start with a clear error before anything is served.
pub async fn bind(config: &ServeConfig, specs: Vec<ListenerSpec>) -> anyhow::Result<Vec<Bound>> {
    crate::connections::raise_open_file_limit(specs.len(), &config.connections);
    let mut self_signed: Option<Arc<ReloadingCert>> = None;
    let mut bound = Vec::new();
    for spec in specs {
        let tls = match &spec.tls {
            Tls::Plain => None,
            Tls::Files(files) => Some(ReloadingCert::open(files.clone()).with_context(|| {
                format!(
                    "cannot serve TLS on {} ({} side)",
                    spec.addr,
                    spec.side.as_str()
                )
            })?),
            Tls::SelfSigned => Some(match &self_signed {
                Some(c) => c.clone(),
                None => {
                    let set = crate::tls::self_signed(
                        &config.data_dir.join("tls"),
                        &self_signed_names(config),
                    )?;
                    let c = ReloadingCert::open(set.files)?;
                    self_signed = Some(c.clone());
                    c
                }
            }),
        };
        let tcp = TcpListener::bind(spec.addr).await.with_context(|| {
            format!(
                "cannot listen on {} ({} side): is another process using it?",
                spec.addr,
                spec.side.as_str()
            )
        })?;
        let limits = config.connections.clone();
        bound.push(Bound {
            spec,
            tcp,
            tls,
            limits,
        });
    }
    Ok(bound)
}

/// The names a generated certificate is valid for: loopback, this host, the
/// listening addresses and the public URL's host.
fn self_signed_names(config: &ServeConfig) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(h.trim().to_string());
    }
    for addr in [
        Some(config.listen),
        config.admin_listen,
        config.registry_listen,
    ]
    .into_iter()
    .flatten()
    {
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
    }
    if let Some(url) = &config.auth.public_url
        && let Some(host) = url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(""))
        && !host.is_empty()
    {
        names.push(host.to_string());
    }
    names.retain(|n| !n.is_empty());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Serve `router` on `bound` until `stop` fires, then stop accepting and let
/// open connections finish their requests (the caller bounds the wait).
/// Connection limits and timeouts: `connections`.
pub async fn serve(
    bound: Bound,
    router: axum::Router,
    loops: Arc<crate::event_loops::EventLoops>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let addr = bound.spec.addr;
    let (router, tls) = match bound.tls {
        None => (router, None),
        Some(cert) => (
            router.layer(axum::middleware::from_fn(mark_https)),
            Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
                cert,
            ))),
        ),
    };
    let on = crate::connections::Listener {
        tcp: bound.tcp,
        tls,
        limits: bound.limits,
        side: bound.spec.side,
    };
    crate::connections::serve(on, router, loops, stop)
        .await
        .with_context(|| format!("serving on {addr}"))
}

/// Requests that came over TLS say so, whatever the client sent: URLs the
/// server hands out (the registry token realm) must be `https://` ones.
async fn mark_https(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    req.headers_mut().insert(
        "x-forwarded-proto",
        axum::http::HeaderValue::from_static("https"),
    );
    next.run(req).await
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// A TLS handshake, done within `timeout` of the connection and once one of
/// the listener's handshake `slots` is free (a client that sends nothing
/// holds no slot). A client speaking plain HTTP gets a short plain-HTTP 400
/// that says to use https (what it would otherwise see is a reset), and is
/// disconnected.
pub(crate) async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    local: SocketAddr,
    timeout: Duration,
    slots: &tokio::sync::Semaphore,
) -> anyhow::Result<TlsStream> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await;
    match peeked {
        Ok(Ok(1)) => {}
        Ok(Ok(_)) => anyhow::bail!("closed before sending anything"),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => anyhow::bail!("sent nothing for {timeout:?}"),
    }
    // 0x16: a TLS handshake record. An ASCII letter: an HTTP method.
    if first[0].is_ascii_uppercase() {
        let mut stream = stream;
        let body = format!(
            "This port speaks HTTPS only: use https://{local}/ (and trust its certificate).\n"
        );
        let reply = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
        anyhow::bail!("plain HTTP sent to a TLS listener");
    }
    let _slot = tokio::time::timeout_at(deadline, slots.acquire())
        .await
        .map_err(|_| anyhow::anyhow!("no free handshake slot within {timeout:?}"))?
        .expect("the semaphore is never closed");
    tokio::time::timeout_at(deadline, acceptor.accept(stream))
        .await
        .map_err(|_| anyhow::anyhow!("handshake not done within {timeout:?}"))?
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args as _, FromArgMatches as _};

    fn config(args: &[&str]) -> ServeConfig {
        let cmd = ServeConfig::augment_args(clap::Command::new("serve"));
        let m = cmd
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap();
        ServeConfig::from_arg_matches(&m).unwrap()
    }

    #[test]
    fn one_shared_listener_by_default() {
        let p = plan(&config(&["--listen", "127.0.0.1:9000"])).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].side, Side::Both);
        assert_eq!(p[0].tls, Tls::Plain);
    }

    #[test]
    fn separate_sides_with_their_own_tls() {
        let p = plan(&config(&[
            "--admin-listen",
            "127.0.0.1:9001",
            "--registry-listen",
            "127.0.0.1:9002",
            "--registry-tls-cert",
            "c.pem",
            "--registry-tls-key",
            "k.pem",
        ]))
        .unwrap();
        assert_eq!((p[0].side, &p[0].tls), (Side::Admin, &Tls::Plain));
        assert_eq!(p[1].side, Side::Registry);
        assert!(matches!(p[1].tls, Tls::Files(_)));
    }

    #[test]
    fn inconsistent_tls_is_refused() {
        let e = plan(&config(&["--tls-cert", "c.pem"])).unwrap_err();
        assert!(e.to_string().contains("without --tls-key"), "{e}");
        let e = plan(&config(&[
            "--tls-self-signed",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("choose one"), "{e}");
        let e = plan(&config(&[
            "--registry-tls-cert",
            "c",
            "--registry-tls-key",
            "k",
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("own address"), "{e}");
    }
}
