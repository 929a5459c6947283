//! systemd's readiness protocol (`sd_notify(3)`), for `Type=notify` units
//! (`packaging/wharf.service`): when `NOTIFY_SOCKET` is set, `wharf serve`
//! says `READY=1` once its listeners accept, `RELOADING=1` … `READY=1`
//! around a SIGHUP reload, `STOPPING=1` when shutdown begins, and `STATUS=`
//! text along the way; `wharf worker` says `READY=1` once it takes tasks.
//! Without `NOTIFY_SOCKET` every call here does nothing.
//!
//! Written here rather than taken from the `sd-notify` crate: the protocol
//! is one datagram of `KEY=VALUE` lines sent to the socket `NOTIFY_SOCKET`
//! names (a path, or an abstract name written with a leading `@`), a few
//! lines on std's `UnixDatagram`. A crate would add a dependency to vet and
//! keep up to date for no less code at the call sites, and linking
//! libsystemd is out of the question for a binary that must also run where
//! there is no systemd.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The service manager's socket, from `NOTIFY_SOCKET` (read once).
struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// The last status sent with `READY=1`: said again after a reload.
    serving: Mutex<String>,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET`'s value: a path, or `@name` for an
    /// abstract socket (Linux).
    fn new(value: &str) -> std::io::Result<Notifier> {
        let addr = match value.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None if value.starts_with('/') => SocketAddr::from_pathname(value)?,
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "neither an absolute path nor an abstract name (@name)",
                ));
            }
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            serving: Mutex::new(String::new()),
        })
    }

    fn send(&self, message: &str) -> std::io::Result<()> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.addr)
            .map(|_| ())
    }
}

fn notifier() -> Option<&'static Notifier> {
    static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
    NOTIFIER
        .get_or_init(|| {
            let value = std::env::var("NOTIFY_SOCKET").ok()?;
            match Notifier::new(&value) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(
                        "NOTIFY_SOCKET={value:?} cannot be used, systemd is not told of readiness: {e}"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// A `STATUS=` line's text on one line (a newline would start another key).
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// Send `fields` as `KEY=VALUE` lines. A failure is logged, never fatal:
/// the server serves whether or not anyone listens.
fn send(n: &Notifier, fields: &[(&str, &str)]) {
    let message: String = fields
        .iter()
        .map(|(k, v)| format!("{k}={}\n", one_line(v)))
        .collect();
    match n.send(&message) {
        Ok(()) => tracing::debug!(message = %message.trim_end().replace('\n', "; "), "sd_notify"),
        Err(e) => tracing::warn!("cannot notify the service manager ({message:?}): {e}"),
    }
}

/// `STATUS=…` alone: what the process is doing (`systemctl status` shows it).
pub fn status(status: &str) {
    let Some(n) = notifier() else { return };
    send(n, &[("STATUS", status)]);
}

/// `READY=1`: start-up done (or a reload finished); `status` says what runs.
pub fn ready(status: &str) {
    let Some(n) = notifier() else { return };
    *n.serving.lock().unwrap() = status.to_string();
    send(n, &[("READY", "1"), ("STATUS", status)]);
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd wants with it: a reload
/// starts; [`certificates_reloaded`] ends it.
pub fn reloading(status: &str) {
    let Some(n) = notifier() else { return };
    let now = monotonic_usec().to_string();
    send(
        n,
        &[
            ("RELOADING", "1"),
            ("MONOTONIC_USEC", &now),
            ("STATUS", status),
        ],
    );
}

/// `READY=1` after a SIGHUP reload of `total` TLS certificates, `kept` of
/// which did not load (the previous one stays in service), with the
/// status of the last [`ready`] and what the reload did.
pub fn certificates_reloaded(total: usize, kept: usize) {
    let Some(n) = notifier() else { return };
    let note = certificates_note(total, kept);
    let serving = n.serving.lock().unwrap().clone();
    let status = if serving.is_empty() {
        note
    } else {
        format!("{serving}; {note}")
    };
    send(n, &[("READY", "1"), ("STATUS", &status)]);
}

fn certificates_note(total: usize, kept: usize) -> String {
    let reloaded = total.saturating_sub(kept);
    let s = if reloaded == 1 { "" } else { "s" };
    let mut note = format!("SIGHUP: {reloaded} TLS certificate{s} reloaded");
    if kept > 0 {
        note += &format!(", {kept} kept (the new files did not load, see the log)");
    }
    note
}

/// `STOPPING=1`, asking the service manager to wait `up_to` for the exit
/// (`EXTEND_TIMEOUT_USEC`): a long `--shutdown-timeout` must not be cut
/// short by the unit's `TimeoutStopSec=`.
pub fn stopping(status: &str, up_to: Duration) {
    let Some(n) = notifier() else { return };
    let extend = up_to.as_micros().to_string();
    send(
        n,
        &[
            ("STOPPING", "1"),
            ("EXTEND_TIMEOUT_USEC", &extend),
            ("STATUS", status),
        ],
    );
}

/// `CLOCK_MONOTONIC` in microseconds, as `MONOTONIC_USEC=` wants it.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn receiver(socket: &UnixDatagram) {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        receiver(&socket);
        let n = Notifier::new(path.to_str().unwrap()).unwrap();
        send(&n, &[("READY", "1"), ("STATUS", "serving\nSTOPPING=1")]);
        // The newline in the status does not become a second key.
        assert_eq!(receive(&socket), "READY=1\nSTATUS=serving STOPPING=1\n");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("wharf-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        receiver(&socket);
        let n = Notifier::new(&format!("@{name}")).unwrap();
        send(&n, &[("STOPPING", "1")]);
        assert_eq!(receive(&socket), "STOPPING=1\n");
    }

    #[test]
    fn a_reload_says_what_it_reloaded_and_what_it_kept() {
        assert_eq!(
            certificates_note(0, 0),
            "SIGHUP: 0 TLS certificates reloaded"
        );
        assert_eq!(
            certificates_note(1, 0),
            "SIGHUP: 1 TLS certificate reloaded"
        );
        assert_eq!(
            certificates_note(3, 1),
            "SIGHUP: 2 TLS certificates reloaded, 1 kept (the new files did not load, see the log)"
        );
    }

    #[test]
    fn refuses_a_relative_path() {
        assert!(Notifier::new("notify.sock").is_err());
        assert!(Notifier::new("").is_err());
    }

    #[test]
    fn the_monotonic_clock_counts_microseconds_since_boot() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(20));
        let b = monotonic_usec();
        assert!(a > 0 && b >= a + 20_000, "{a} {b}");
        // Well below the wall clock in microseconds: it is not CLOCK_REALTIME.
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        assert!(b < wall / 2, "{b} vs {wall}");
    }
}
