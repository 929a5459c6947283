//! Which process a task is bound to, told apart well enough to know, on the
//! same machine, that the process is gone: pids are reused, and a container
//! restarts its server as pid 1 under the same hostname. A streaming import
//! reads the body of a request only its own process has, so no other worker
//! can ever run it; when that process dies, its next start marks it failed.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub host: String,
    /// The kernel's boot id: another one means the machine restarted.
    pub boot: String,
    pub pid: u32,
    /// When the process started, in clock ticks since boot.
    pub started: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        ProcessId {
            host: super::hostname(),
            boot: boot_id(),
            pid,
            started: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether this is a process of this machine that no longer runs. A
    /// process of another machine is never known to be gone.
    pub fn is_gone(&self) -> bool {
        if self.host != super::hostname() {
            return false;
        }
        if self.boot != boot_id() {
            return true;
        }
        start_ticks(self.pid) != Some(self.started)
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Field 22 of `/proc/<pid>/stat`, counted after the command name (which
/// may hold spaces and parentheses, so it is skipped up to the last `)`).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_child_is_gone() {
        let me = ProcessId::current();
        assert!(me.started > 0);
        assert!(!me.is_gone());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let them = ProcessId {
            pid,
            started: start_ticks(pid).unwrap_or(1),
            ..me.clone()
        };
        child.wait().unwrap();
        assert!(them.is_gone());
        // Same pid, another start: a different process.
        let reused = ProcessId {
            started: me.started + 1,
            ..me.clone()
        };
        assert!(reused.is_gone());
        let elsewhere = ProcessId {
            host: "another-machine".into(),
            pid,
            ..me
        };
        assert!(!elsewhere.is_gone(), "unknowable, so not gone");
    }
}
