//! Whether a plugin call's answer rests on more than its inputs. A
//! registry `resolve` that read only the request and the publication the
//! gate admitted answers the same plan for the same request as long as
//! that publication stays: the host may give that plan again without a
//! call (`Plugin::resolve_repeatable`, the server's plan cache).
//!
//! A call *varies* when it reads anything else: every host import marks
//! it, but for reads of blobs the admitted publication serves (content
//! addressed, immutable) and its own lookup of that publication; so do the
//! WASI clocks and random generators, wrapped here. Logging marks nothing:
//! it is output, and a plan given again logs nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, Rng};

/// The flag of one instance: set by what makes its call vary, taken (and
/// cleared) by whoever asks about the call.
#[derive(Debug, Clone, Default)]
pub struct Varies(Arc<AtomicBool>);

impl Varies {
    /// The current call read something beyond its inputs.
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the call marked since the last take; clears the flag.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// The wall clock a guest reads, marking its call.
pub struct WallClock(pub Varies);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.0.mark();
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// The monotonic clock a guest reads (nanoseconds since the instance
/// began), marking its call.
pub struct MonotonicClock {
    pub varies: Varies,
    pub since: Instant,
}

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.varies.mark();
        self.since.elapsed().as_nanos() as u64
    }
}

/// A random generator a guest draws from, marking its call.
pub struct Random {
    pub varies: Varies,
    pub inner: Box<dyn Rng + Send>,
}

impl rand_core::TryRng for Random {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.varies.mark();
        Ok(self.inner.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.varies.mark();
        Ok(self.inner.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.varies.mark();
        self.inner.fill_bytes(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_and_random_mark_their_call() {
        let v = Varies::default();
        assert!(!v.take());
        let _ = WallClock(v.clone()).resolution();
        assert!(!v.take(), "a resolution is no reading");
        let _ = WallClock(v.clone()).now();
        assert!(v.take() && !v.take(), "taken once");
        let m = MonotonicClock {
            varies: v.clone(),
            since: Instant::now(),
        };
        let _ = m.now();
        assert!(v.take());
        let mut r = Random {
            varies: v.clone(),
            inner: wasmtime_wasi::thread_rng(),
        };
        let mut buf = [0u8; 8];
        rand_core::TryRng::try_fill_bytes(&mut r, &mut buf).unwrap();
        assert!(v.take());
    }
}
