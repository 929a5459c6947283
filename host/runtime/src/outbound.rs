//! Outbound requests: the one policy every request the server makes on a
//! user's or a plugin's behalf goes through — feeds (`fetch`, `fetch-blobs`),
//! token realms, each redirect hop, webhooks.
//!
//! Loopback, unspecified, link-local, private, shared (CGNAT), unique-local,
//! multicast and broadcast addresses (and IPv4-mapped IPv6 forms of them) are
//! refused unless the operator allows them with `--allow-outbound CIDR,...`.
//! Hostnames are checked **after** DNS resolution, by the resolver of the
//! client [`OutboundPolicy::client_builder`] makes, so a name that resolves to
//! an internal address is refused at connect time (no rebinding window: the
//! checked addresses are the ones connected to). IP-literal hosts bypass the
//! resolver, so [`OutboundPolicy::check_url`] checks them before a request is
//! sent and on every redirect hop. See docs/access.md, "Outbound requests".
//!
//! HTTPS trusts the system's root certificates (`SSL_CERT_FILE` too),
//! Mozilla's, and the operator's `--outbound-ca-cert`
//! ([`OutboundPolicy::trusting`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// Redirect hops followed before a request fails.
pub const MAX_REDIRECTS: usize = 10;

/// An address block, `10.0.0.0/8` or `fd00::/8`; a bare address is a block
/// of one (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block of one address.
    pub fn host(addr: IpAddr) -> Cidr {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    /// Whether `ip` is inside the block. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is compared as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (bytes, bits) = ((prefix / 8) as usize, prefix % 8);
    if a[..bytes] != b[..bytes] {
        return false;
    }
    bits == 0 || {
        let mask = 0xffu8 << (8 - bits);
        a[bytes] & mask == b[bytes] & mask
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let bad = |why: &str| {
            format!(
                "{s:?} is not an address block ({why}); write e.g. 10.0.0.0/8, 127.0.0.1/32 or fd00::/8"
            )
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(&format!("the prefix length must be 0 to {max}")))?,
        };
        // `::ffff:10.0.0.0/104` is the IPv4 block 10.0.0.0/8: addresses are
        // compared in their IPv4 form (see `contains`).
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (canonical(addr), prefix - 96)
            }
            a => (a, prefix),
        };
        let cidr = Cidr { addr, prefix };
        // Host bits set (10.1.2.3/8) usually mean a typo: refuse them.
        let network = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        if network != addr {
            return Err(bad(&format!(
                "host bits are set; the block is {network}/{prefix}"
            )));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it maps; others as they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Why an address is internal (`"a loopback address"`), or `None` for a
/// public one.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if ip.is_loopback() => "a loopback address",
        // 0.0.0.0/8: "this network"; connecting to 0.0.0.0 reaches the host.
        _ if a == 0 => "an unspecified address",
        _ if ip.is_link_local() => "a link-local address",
        _ if ip.is_private() => "a private address",
        _ if a == 100 && (64..128).contains(&b) => "a shared (CGNAT) address",
        _ if ip.is_broadcast() => "a broadcast address",
        _ if ip.is_multicast() => "a multicast address",
        // 240.0.0.0/4: reserved, never routed on the internet.
        _ if a >= 240 => "a reserved address",
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    Some(match () {
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_unspecified() => "an unspecified address",
        _ if ip.is_multicast() => "a multicast address",
        _ if seg[0] & 0xffc0 == 0xfe80 => "a link-local address",
        // fec0::/10: deprecated site-local, still private where used.
        _ if seg[0] & 0xffc0 == 0xfec0 => "a site-local address",
        _ if seg[0] & 0xfe00 == 0xfc00 => "a unique-local address",
        // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form
        // (::a.b.c.d) carry an IPv4 address: judge that one.
        _ if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || seg[..6] == [0; 6] => {
            let v4 = Ipv4Addr::from((u32::from(seg[6]) << 16) | u32::from(seg[7]));
            return classify_v4(v4);
        }
        _ => return None,
    })
}

/// The block of one address an operator would allow to let `ip` through.
fn hint(ip: &IpAddr) -> Cidr {
    Cidr::host(canonical(*ip))
}

/// A refused outbound request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error(
        "request to {host} refused: {ip} is {class}; start the server with \
         --allow-outbound {} to allow it",
        hint(.ip)
    )]
    Refused {
        host: String,
        ip: IpAddr,
        class: &'static str,
    },
    #[error("request to {url} refused: only http and https are allowed")]
    Scheme { url: String },
    #[error("request to {url} refused: it names no host")]
    NoHost { url: String },
    #[error("{host} did not resolve to any address")]
    NoAddress { host: String },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
}

/// Which addresses outbound requests may reach: every public address, and
/// the internal ones the operator allowed.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allow: Vec<Cidr>,
    /// Trusted for HTTPS besides the system's and Mozilla's roots
    /// (`--outbound-ca-cert`): a company CA, a parent node's own.
    roots: Vec<reqwest::Certificate>,
}

impl OutboundPolicy {
    pub fn new(allow: Vec<Cidr>) -> OutboundPolicy {
        OutboundPolicy {
            allow,
            roots: Vec::new(),
        }
    }

    /// The policy, with `roots` trusted by every client it builds.
    pub fn trusting(mut self, roots: Vec<reqwest::Certificate>) -> OutboundPolicy {
        self.roots = roots;
        self
    }

    /// The operator's allow list.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allow
    }

    /// May a request to `host` connect to `ip`?
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), OutboundError> {
        match classify(ip) {
            Some(_) if self.allow.iter().any(|c| c.contains(ip)) => Ok(()),
            Some(class) => Err(OutboundError::Refused {
                host: host.to_string(),
                ip,
                class,
            }),
            None => Ok(()),
        }
    }

    /// Check a URL before a request to it (or a redirect to it) is sent:
    /// http(s) only, and an IP-literal host must pass [`Self::check_ip`].
    /// Hostnames pass here; the client's resolver checks what they resolve to.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), OutboundError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::Scheme { url: shown(url) });
        }
        // The URL parser has already turned every spelling of an IPv4
        // address (`2130706433`, `0x7f.1`) into dotted form; IPv6 is bracketed.
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(OutboundError::NoHost { url: shown(url) });
        };
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) => self.check_ip(host, ip),
            Err(_) => Ok(()),
        }
    }

    /// A client builder whose connections obey the policy: hostnames are
    /// resolved with the system resolver and internal answers dropped (an
    /// error names them when none is left), and each redirect hop is checked
    /// with [`Self::check_url`], at most [`MAX_REDIRECTS`] of them. Callers
    /// still call [`Self::check_url`] before sending (IP literals).
    pub fn client_builder(self: &Arc<Self>) -> reqwest::ClientBuilder {
        let hops = self.clone();
        let builder = self
            .roots
            .iter()
            .fold(reqwest::Client::builder(), |b, cert| {
                b.add_root_certificate(cert.clone())
            });
        builder
            .dns_resolver(Arc::new(PolicyResolver(self.clone())))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(OutboundError::TooManyRedirects);
                }
                match hops.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(e),
                }
            }))
    }
}

impl OutboundPolicy {
    /// The addresses of `host` (a name, or an IP literal) a connection may
    /// reach, each with `port`: resolved with the system resolver (tokio's
    /// `lookup_host`), only those the policy allows; an error names the
    /// first refusal, or that the name has no address.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<std::net::IpAddr>() {
            self.check_ip(host, ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| OutboundError::Resolve {
                host: host.to_string(),
                reason: e.to_string(),
            })?
            .collect();
        let mut refused = None;
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match self.check_ip(host, a.ip()) {
                Ok(()) => true,
                Err(e) => {
                    refused.get_or_insert(e);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            return Err(refused.unwrap_or(OutboundError::NoAddress {
                host: host.to_string(),
            }));
        }
        Ok(allowed)
    }
}

/// Resolves with the system resolver (tokio's `lookup_host`) and keeps only
/// the addresses the policy allows.
struct PolicyResolver(Arc<OutboundPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let allowed = policy
                .resolve(&host, 0)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A URL for a message: no credentials, no query, no fragment (they may
/// carry tokens).
pub fn shown(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// The policy's refusal in `e` or one of its causes.
fn refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a OutboundError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(refused) = err.downcast_ref::<OutboundError>() {
            return Some(refused);
        }
        cur = err.source();
    }
    None
}

/// Whether the outbound policy refused the request `e` is the error of
/// (itself or one of its causes): no later attempt will do better.
pub fn is_refusal(e: &(dyn std::error::Error + 'static)) -> bool {
    refusal(e).is_some()
}

/// Whether the peer closed the connection as the request went out, before
/// any answer (hyper's "connection closed before message completed"): the
/// keep-alive race, where a feed or a proxy drops a pooled connection just
/// as it is reused.
pub fn is_dropped_connection(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Send a GET or HEAD, and once more, on a fresh connection, when the peer
/// dropped the first before answering ([`is_dropped_connection`]). Only
/// for idempotent requests: a dropped request may have reached the peer.
pub async fn send_idempotent(req: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
    let again = req.try_clone();
    match req.send().await {
        Err(e) if is_dropped_connection(&e) => match again {
            Some(again) => again.send().await,
            None => Err(e),
        },
        answered => answered,
    }
}

/// A request error as one line for a user: the policy's refusal alone when
/// that is the cause, else the error and its causes. Never a body.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(refused) = refusal(e) {
        return refused.to_string();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    let mut line = parts.join(": ");
    if wharf_core::tls::is_untrusted_certificate(e) {
        line.push_str(UNTRUSTED_HINT);
    }
    line
}

/// What to do about a peer whose certificate is not trusted.
const UNTRUSTED_HINT: &str = "; the server's certificate is not trusted here: give the CA that \
    signed it to `wharf serve --outbound-ca-cert` (WHARF_OUTBOUND_CA_CERT), or add it to the \
    system's trust store";

/// [`describe`] for a request's error, without its URL (which the caller's
/// message names already, as [`shown`] shows it).
pub fn describe_request(e: reqwest::Error) -> String {
    describe(&e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_internal_addresses() {
        for (a, class) in [
            ("127.0.0.1", "a loopback address"),
            ("127.255.0.9", "a loopback address"),
            ("::1", "a loopback address"),
            ("0.0.0.0", "an unspecified address"),
            ("0.1.2.3", "an unspecified address"),
            ("::", "an unspecified address"),
            ("169.254.169.254", "a link-local address"),
            ("fe80::1", "a link-local address"),
            ("febf::1", "a link-local address"),
            ("10.0.0.1", "a private address"),
            ("172.16.0.1", "a private address"),
            ("172.31.255.255", "a private address"),
            ("192.168.1.1", "a private address"),
            ("100.64.0.1", "a shared (CGNAT) address"),
            ("100.127.255.255", "a shared (CGNAT) address"),
            ("fc00::1", "a unique-local address"),
            ("fd12:3456::1", "a unique-local address"),
            ("224.0.0.1", "a multicast address"),
            ("ff02::1", "a multicast address"),
            ("255.255.255.255", "a broadcast address"),
            ("240.0.0.1", "a reserved address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("::ffff:10.1.2.3", "a private address"),
            ("::ffff:169.254.169.254", "a link-local address"),
            ("::127.0.0.1", "a loopback address"),
            ("64:ff9b::a9fe:a9fe", "a link-local address"),
        ] {
            assert_eq!(classify(ip(a)), Some(class), "{a}");
        }
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "172.15.255.255",
            "100.63.255.255",
            "100.128.0.0",
            "192.169.0.1",
            "2606:4700::1111",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(classify(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn parses_cidrs() {
        assert_eq!(cidr("127.0.0.1/32").to_string(), "127.0.0.1/32");
        assert_eq!(cidr("127.0.0.2").to_string(), "127.0.0.2/32");
        assert_eq!(cidr(" 10.0.0.0/8 ").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("::ffff:127.0.0.1").to_string(), "127.0.0.1/32");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/",
            "10.0.0/8",
            "localhost/32",
            "10.1.2.3/8",
            "fd00::1/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
        let e = "10.1.2.3/8".parse::<Cidr>().unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }

    #[test]
    fn cidr_membership() {
        let c = cidr("172.16.0.0/12");
        assert!(c.contains(ip("172.16.0.0")) && c.contains(ip("172.31.255.255")));
        assert!(!c.contains(ip("172.32.0.0")) && !c.contains(ip("172.15.255.255")));
        assert!(c.contains(ip("::ffff:172.20.1.1")), "mapped IPv4 matches");
        assert!(!c.contains(ip("fd00::1")));
        let c = cidr("127.0.0.2/32");
        assert!(c.contains(ip("127.0.0.2")) && !c.contains(ip("127.0.0.1")));
        let c = cidr("fe80::/10");
        assert!(c.contains(ip("febf::1")) && !c.contains(ip("fec0::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("10.0.0.1")));
        assert!(cidr("::/0").contains(ip("::1")));
    }

    #[test]
    fn policy_refuses_unless_allowed() {
        let strict = OutboundPolicy::default();
        let e = strict.check_ip("x", ip("127.0.0.1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "request to x refused: 127.0.0.1 is a loopback address; start the server with \
             --allow-outbound 127.0.0.1/32 to allow it"
        );
        let e = strict.check_ip("x", ip("::ffff:10.0.0.1")).unwrap_err();
        assert!(
            e.to_string().contains("--allow-outbound 10.0.0.1/32"),
            "{e}"
        );
        assert!(strict.check_ip("x", ip("93.184.216.34")).is_ok());
        let open = OutboundPolicy::new(vec![cidr("127.0.0.2/32"), cidr("10.0.0.0/8")]);
        assert!(open.check_ip("x", ip("127.0.0.2")).is_ok());
        assert!(open.check_ip("x", ip("::ffff:127.0.0.2")).is_ok());
        assert!(open.check_ip("x", ip("10.9.8.7")).is_ok());
        assert!(open.check_ip("x", ip("127.0.0.1")).is_err());
        assert!(open.check_ip("x", ip("192.168.0.1")).is_err());
    }

    #[test]
    fn check_url_sees_ip_literals_in_every_spelling() {
        let strict = OutboundPolicy::default();
        let refused = |u: &str| strict.check_url(&u.parse().unwrap()).is_err();
        for u in [
            "http://127.0.0.1:5000/v2/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0/",
            "file:///etc/passwd",
            "ftp://example.org/",
        ] {
            assert!(refused(u), "{u} passed");
        }
        assert!(!refused("https://registry-1.docker.io/v2/"));
        assert!(
            !refused("http://localhost:5000/"),
            "names are checked on resolve"
        );
        let e = strict
            .check_url(&"http://user:pw@10.0.0.1/x?token=s".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(!e.contains("pw") && !e.contains("token"), "{e}");
    }

    /// A server on `ip` answering every request with a redirect to
    /// `location(path)`.
    fn redirector(ip: &str, location: impl Fn(&str) -> String + Send + 'static) -> SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    location(&path)
                );
            }
        });
        addr
    }

    #[tokio::test]
    async fn every_redirect_hop_is_checked_and_counted() {
        let policy = Arc::new(OutboundPolicy::new(vec![cidr("127.0.0.2/32")]));
        let client = policy.client_builder().build().unwrap();
        let to_loopback = redirector("127.0.0.2", |_| "http://127.0.0.1:9/internal".into());
        let e = client
            .get(format!("http://{to_loopback}/"))
            .send()
            .await
            .unwrap_err();
        let msg = describe(&e);
        assert!(
            msg.starts_with("request to 127.0.0.1 refused: 127.0.0.1 is a loopback address"),
            "{msg}"
        );
        let endless = redirector("127.0.0.2", |p| format!("{p}x"));
        let e = client
            .get(format!("http://{endless}/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(describe(&e), "more than 10 redirects");
    }

    #[tokio::test]
    async fn a_get_the_peer_drops_unanswered_is_sent_once_more() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for (i, mut conn) in listener.incoming().flatten().enumerate() {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // The first two connections are closed with the request
                // unanswered: one for the plain send, one for the first try
                // of `send_idempotent`.
                if i > 1 {
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                }
            }
        });
        let policy = Arc::new(OutboundPolicy::new(vec![cidr("127.0.0.2/32")]));
        let client = policy.client_builder().build().unwrap();
        let url = format!("http://{addr}/");
        let e = client.get(&url).send().await.unwrap_err();
        assert!(is_dropped_connection(&e), "{e:?}");
        let resp = send_idempotent(client.get(&url)).await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "ok");
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 3);
        // A refused connect is not a dropped connection.
        let e = send_idempotent(client.get("http://127.0.0.2:9/"))
            .await
            .unwrap_err();
        assert!(e.is_connect() && !is_dropped_connection(&e), "{e:?}");
    }

    #[tokio::test]
    async fn the_client_refuses_names_that_resolve_inside() {
        let strict = Arc::new(OutboundPolicy::default());
        let client = strict.client_builder().build().unwrap();
        // Nothing listens there; the resolver refuses before any connect.
        let e = client.get("http://localhost:9/").send().await.unwrap_err();
        let msg = describe(&e);
        assert!(
            msg.starts_with("request to localhost refused:") && msg.contains("loopback"),
            "{msg}"
        );
    }
}
