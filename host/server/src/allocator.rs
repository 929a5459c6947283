//! How the server asks the C allocator (glibc's malloc) for memory.
//!
//! Large buffers, the 8 MiB parts of an object storage upload above all,
//! are allocated on one thread and freed on another. glibc's default raises
//! its mmap threshold to the size of the first such buffer freed, so the
//! ones after it come from per-thread arenas, and their memory stays with
//! the process once the transfer is over: a 512 MiB streaming import into
//! a bucket left the server 76 MiB larger than it started and peaked 20 MiB
//! higher than with a fixed threshold (docs/benchmarks.md, "Object
//! storage"). A fixed threshold of 1 MiB maps every larger buffer on its
//! own and returns it when freed. `MALLOC_MMAP_THRESHOLD_` in the
//! environment still decides, if set.

/// The threshold above which a buffer is mapped on its own.
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Fix the allocator's mmap threshold (see the module's documentation).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt changes a setting of the allocator, under the
        // allocator's own lock; no memory is touched.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}
