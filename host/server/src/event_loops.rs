//! The event loops connections are served on: nginx's worker per core.
//!
//! Each loop is a tokio runtime with one worker thread, waiting in its own
//! epoll. An accepted connection is placed on the loop with the fewest
//! connections and stays there, so its requests never hop between threads:
//! on a runtime whose workers share every connection, a request woke another
//! worker more often than not, and those wake-ups cost about a third of the
//! server's CPU (docs/benchmarks.md). Everything else (tasks, schedules,
//! upkeep, the accept loops) runs on the main runtime.
//!
//! A loop is a multi-thread runtime of one worker, not a current-thread
//! runtime, so that `block_in_place` (a plugin call) still hands the loop's
//! other connections to a fresh thread while the call blocks.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::{Handle, Runtime};

/// Threads for blocking work (file reads and writes, plugin calls handed
/// off by `block_in_place`) of all loops together: tokio's default for one
/// runtime.
const BLOCKING_THREADS: usize = 512;

/// The loops; dropping them stops them (without waiting for what still
/// runs on them: the server has waited for its connections by then).
pub struct EventLoops {
    loops: Vec<Loop>,
    /// Where the search for the least busy loop starts, so that ties are
    /// spread.
    next: AtomicUsize,
}

struct Loop {
    runtime: Option<Runtime>,
    connections: Arc<AtomicUsize>,
}

/// A connection's place on a loop, held for as long as the connection is
/// open.
pub struct Seat(Arc<AtomicUsize>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventLoops {
    /// `count` loops (at least one), their threads named `wharf-http-N`.
    pub fn start(count: usize) -> io::Result<Self> {
        let count = count.max(1);
        let loops = (0..count)
            .map(|i| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    // Together as many blocking threads as one runtime
                    // has, but enough on each for the plugin calls its
                    // connections block in at once.
                    .max_blocking_threads((BLOCKING_THREADS / count).max(64))
                    .thread_name(format!("wharf-http-{i}"))
                    .enable_all()
                    .build()?;
                Ok(Loop {
                    runtime: Some(runtime),
                    connections: Arc::new(AtomicUsize::new(0)),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(EventLoops {
            loops,
            next: AtomicUsize::new(0),
        })
    }

    /// The loop a new connection goes to: the one with the fewest.
    pub fn place(&self) -> (Handle, Seat) {
        let n = self.loops.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let chosen = (0..n)
            .map(|i| &self.loops[(start + i) % n])
            .min_by_key(|l| l.connections.load(Ordering::Relaxed))
            .expect("at least one loop");
        chosen.connections.fetch_add(1, Ordering::Relaxed);
        let runtime = chosen.runtime.as_ref().expect("running until dropped");
        (runtime.handle().clone(), Seat(chosen.connections.clone()))
    }
}

impl Drop for EventLoops {
    fn drop(&mut self) {
        for l in &mut self.loops {
            if let Some(rt) = l.runtime.take() {
                rt.shutdown_background();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_least_busy_loop() {
        let loops = EventLoops::start(3).unwrap();
        assert_eq!(loops.loops.len(), 3);
        let seats: Vec<_> = (0..6).map(|_| loops.place().1).collect();
        let counts = || {
            loops
                .loops
                .iter()
                .map(|l| l.connections.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(), [2, 2, 2]);
        drop(seats);
        assert_eq!(counts(), [0, 0, 0]);
        // A loop whose connections closed gets the next ones.
        let _a = loops.place();
        let _b = loops.place();
        let busy: Vec<_> = (0..4).map(|_| loops.place()).collect();
        drop(busy);
        let c = counts();
        assert_eq!(c.iter().sum::<usize>(), 2);
        assert!(c.iter().all(|&n| n <= 1), "{c:?}");
    }

    #[test]
    fn a_loop_runs_what_is_placed_on_it_on_its_own_thread() {
        let loops = EventLoops::start(2).unwrap();
        let (handle, _seat) = loops.place();
        let name = handle
            .block_on(handle.spawn(async {
                // block_in_place works on a loop (it would panic on a
                // current-thread runtime).
                tokio::task::block_in_place(|| std::thread::current().name().map(String::from))
            }))
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("wharf-http-")));
    }
}
