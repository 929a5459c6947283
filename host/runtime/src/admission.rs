//! Admission to plugin instances. The engine's instance pool has a fixed
//! size; requests and tasks each draw from their own [`Share`] of it, so
//! long tasks (syncs, streaming imports fed by slow clients) can never
//! leave registry requests without an instance, nor a burst of requests
//! starve the tasks. Instances kept warm between calls have their own
//! allowance ([`Shares::IDLE`]), so the three add up to the pool.
//!
//! A request that finds its share taken waits briefly ([`REQUEST_WAIT`]),
//! then is refused as [`Refused::Busy`] (503 with Retry-After); a task
//! waits for its turn until it is canceled ([`Refused::Canceled`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Which share of the instance pool a call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// Registry and API requests, plugin loading: short calls a client waits for.
    Requests,
    /// Tasks (sync, import, publish): long calls.
    Tasks,
}

/// How long a request waits for an instance of its share.
pub const REQUEST_WAIT: Duration = Duration::from_secs(1);
/// How often a waiting task looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// Why a call got no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every instance of the share was in use for all of [`REQUEST_WAIT`].
    Busy,
    /// The call was canceled while it waited.
    Canceled,
}

/// The shares of one engine's pool.
pub struct Shares {
    requests: Gate,
    tasks: Gate,
}

impl Shares {
    /// Concurrent calls for requests.
    pub const REQUESTS: usize = 128;
    /// Concurrent calls for tasks (more than a node's streaming imports
    /// and task workers together, which are capped well below it).
    pub const TASKS: usize = 64;
    /// Warm instances kept between calls, over all plugins.
    pub const IDLE: usize = 64;
    /// The engine's pool: every share and the warm instances.
    pub const POOL: usize = Self::REQUESTS + Self::TASKS + Self::IDLE;

    pub fn new() -> Shares {
        Shares {
            requests: Gate::new(Self::REQUESTS),
            tasks: Gate::new(Self::TASKS),
        }
    }

    /// A place in `share` for one call, held until the permit is dropped.
    /// A task gives up only when `cancel` is set.
    pub fn admit(&self, share: Share, cancel: Option<&AtomicBool>) -> Result<Permit<'_>, Refused> {
        match share {
            Share::Requests => self.requests.take(Some(REQUEST_WAIT), None),
            Share::Tasks => self.tasks.take(None, cancel),
        }
    }

    /// Calls in progress per share (requests, tasks), for status and tests.
    pub fn in_use(&self) -> (usize, usize) {
        (self.requests.in_use(), self.tasks.in_use())
    }
}

impl Default for Shares {
    fn default() -> Self {
        Self::new()
    }
}

/// A counting semaphore for threads that may block (plugin calls run on
/// blocking threads).
struct Gate {
    size: usize,
    taken: Mutex<usize>,
    freed: Condvar,
}

impl Gate {
    fn new(size: usize) -> Gate {
        Gate {
            size,
            taken: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Wait for a free place: at most `wait` if given, and only while
    /// `cancel` is unset.
    fn take(
        &self,
        wait: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<Permit<'_>, Refused> {
        let until = wait.map(|w| Instant::now() + w);
        let mut taken = self.taken.lock().unwrap();
        while *taken >= self.size {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Refused::Canceled);
            }
            let step = match until {
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Refused::Busy);
                    }
                    left.min(CANCEL_POLL)
                }
                None => CANCEL_POLL,
            };
            taken = self.freed.wait_timeout(taken, step).unwrap().0;
        }
        *taken += 1;
        Ok(Permit { gate: self })
    }

    fn in_use(&self) -> usize {
        *self.taken.lock().unwrap()
    }
}

/// One call's place in its share.
pub struct Permit<'a> {
    gate: &'a Gate,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.gate.taken.lock().unwrap() -= 1;
        self.gate.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_share_refuses_requests_after_the_wait_and_leaves_the_other_share_free() {
        let shares = Shares::new();
        let held: Vec<_> = (0..Shares::REQUESTS)
            .map(|_| shares.admit(Share::Requests, None).unwrap())
            .collect();
        let start = Instant::now();
        assert_eq!(
            shares.admit(Share::Requests, None).err(),
            Some(Refused::Busy)
        );
        assert!(start.elapsed() >= REQUEST_WAIT);
        let task = shares
            .admit(Share::Tasks, None)
            .expect("tasks have their own share");
        assert_eq!(shares.in_use(), (Shares::REQUESTS, 1));
        drop(held);
        drop(task);
        assert_eq!(shares.in_use(), (0, 0));
        assert!(shares.admit(Share::Requests, None).is_ok());
    }

    #[test]
    fn a_waiting_task_gets_the_place_a_finished_one_frees_or_stops_when_canceled() {
        let shares = Arc::new(Shares::new());
        let held: Vec<_> = (0..Shares::TASKS)
            .map(|_| shares.admit(Share::Tasks, None).unwrap())
            .collect();
        let cancel = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiting = s.spawn(|| shares.admit(Share::Tasks, Some(&cancel)).err());
            std::thread::sleep(Duration::from_millis(50));
            cancel.store(true, Ordering::Relaxed);
            assert_eq!(
                waiting.join().unwrap(),
                Some(Refused::Canceled),
                "a canceled task stops waiting"
            );
        });
        let cancel = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiting = s.spawn(|| shares.admit(Share::Tasks, Some(&cancel)).map(drop).is_ok());
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
            assert!(
                waiting.join().unwrap(),
                "a freed place goes to the waiting task"
            );
        });
    }
}
