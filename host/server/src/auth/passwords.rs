//! Passwords: argon2id with the crate's default parameters, a random salt per
//! hash, stored as a PHC string. Hashing is deliberately slow and memory-hard
//! (19 MiB and tens of milliseconds of a core each), so it runs off the
//! async runtime, on a few threads of its own, at most one per core at once
//! ([`GATE`]): a burst of logins queues instead of taking every core and a
//! gigabyte of memory. A check that cannot start within [`QUEUE_WAIT`] is
//! refused ([`Busy`]).
//!
//! Why threads of its own rather than tokio's blocking pool: the allocator
//! keeps a freed 19 MiB block in the arena of the thread that freed it, and
//! the blocking pool grows to dozens of threads under a burst, so checks
//! spread over it left one block resident per thread (600 MiB after a
//! burst of 30 wrong passwords). One thread per permit bounds that to one
//! block per core.

use argon2::password_hash::phc::{self, Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::Rng as _;
use std::cell::RefCell;
use std::sync::{Arc, LazyLock, Mutex, mpsc};
use std::time::Duration;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

pub const MIN_LEN: usize = 8;
const MAX_LEN: usize = 1024;

/// How long a password check waits for a core before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// The argon2 computations of the process: as many at once as there are
/// cores (`std::thread::available_parallelism`).
static GATE: LazyLock<Gate> = LazyLock::new(|| {
    Gate::new(std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
});

/// No core became free for a password check within [`QUEUE_WAIT`].
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

type Job = Box<dyn FnOnce() + Send>;

/// Runs argon2 computations on `n` threads of its own, admitting at most
/// `n` at once (a semaphore, first come first served). The threads end
/// when the gate is dropped.
pub struct Gate {
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

impl Gate {
    pub fn new(n: usize) -> Gate {
        let n = n.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..n {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("starting a password-check thread");
        }
        Gate {
            permits: Arc::new(Semaphore::new(n)),
            jobs,
        }
    }

    /// Run `f` on the gate's threads once a permit is free, waiting at most
    /// `wait` for it (`None`: as long as it takes). The permit is held until
    /// `f` returns, even if the caller gives up meanwhile. `Ok(None)`: `f`
    /// panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        wait: Option<Duration>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Option<T>, Busy> {
        let acquire = Arc::clone(&self.permits).acquire_owned();
        let permit = match wait {
            Some(wait) => tokio::time::timeout(wait, acquire)
                .await
                .map_err(|_| Busy)?,
            None => acquire.await,
        }
        .expect("the semaphore is never closed");
        let (done, out) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            drop(permit);
            let _ = done.send(result.ok());
        });
        if self.jobs.send(job).is_err() {
            return Ok(None);
        }
        Ok(out.await.ok().flatten())
    }
}

/// A hash no password matches, verified when a login does not exist so that
/// a wrong login costs as much time as a wrong password.
static DUMMY: LazyLock<String> =
    LazyLock::new(|| hash_now("no password matches this").expect("hashing a constant"));

/// Refuse passwords that are too short or absurdly long.
pub fn check_policy(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!(
            "the password is too short: use at least {MIN_LEN} characters"
        ));
    }
    if password.len() > MAX_LEN {
        return Err(format!("the password is too long: at most {MAX_LEN} bytes"));
    }
    Ok(())
}

/// The most argon2 memory a stored hash may ask for (256 MiB; ours take
/// 19 MiB): a hash asking more is refused rather than computed.
const MAX_BLOCKS: usize = 256 * 1024;

thread_local! {
    /// This thread's argon2 working memory, kept from one check to the next.
    /// The crate's own functions allocate (64-byte aligned) 19 MiB per call,
    /// which glibc's allocator does not reliably reuse or give back: the
    /// process grew by 19 MiB per wrong password. Only the gate's threads
    /// compute argon2, so this is at most one buffer per core.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2 of `password` and `salt` into `out`, in this thread's memory.
fn argon2_into(
    argon: &Argon2,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return Err(format!(
            "{blocks} KiB of memory asked, more than {MAX_BLOCKS}"
        ));
    }
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        argon
            .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
            .map_err(|e| e.to_string())
    })
}

/// A PHC string, as `Argon2::default().hash_password` makes it.
fn hash_now(password: &str) -> anyhow::Result<String> {
    let params = Params::default();
    let argon = Argon2::new(Algorithm::default(), Version::default(), params.clone());
    let mut salt = [0u8; Salt::RECOMMENDED_LENGTH];
    rand::rng().fill(&mut salt);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon, &params, password.as_bytes(), &salt, &mut out)
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    let phc = |e: phc::Error| anyhow::anyhow!("hashing a password: {e}");
    Ok(PasswordHash {
        algorithm: Algorithm::default().into(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("{e}"))?,
        salt: Some(Salt::new(&salt).map_err(phc)?),
        hash: Some(Output::new(&out).map_err(phc)?),
    }
    .to_string())
}

fn verify_now(hash: &str, password: &str) -> bool {
    let computed = (|| -> Result<bool, String> {
        let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC string: {e}"))?;
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return Err("no salt or no hash".into());
        };
        let algorithm =
            Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| e.to_string())?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|e| e.to_string())?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
        let argon = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        argon2_into(&argon, &params, password.as_bytes(), salt, &mut out)?;
        // In constant time.
        Ok(out.ct_eq(expected.as_ref()).into())
    })();
    computed.unwrap_or_else(|e| {
        tracing::error!("a stored password hash cannot be checked: {e}");
        false
    })
}

/// Hash a new password (set by a user or an administrator, not guessed by
/// strangers): waits for a core as long as it takes.
pub async fn hash(password: &str) -> anyhow::Result<String> {
    let password = password.to_string();
    GATE.run(None, move || hash_now(&password))
        .await
        .map_err(|Busy| anyhow::anyhow!("no core free to hash a password"))?
        .ok_or_else(|| anyhow::anyhow!("hashing a password panicked"))?
}

/// Whether `password` matches `hash`; `None` verifies against a dummy hash
/// (and fails), taking the same time. `Err(Busy)` when no core became free
/// within [`QUEUE_WAIT`]: nothing was checked.
pub async fn verify(hash: Option<&str>, password: &str) -> Result<bool, Busy> {
    let hash = hash.map(str::to_string);
    let password = password.to_string();
    let matched = GATE
        .run(Some(QUEUE_WAIT), move || match hash {
            Some(h) => verify_now(&h, &password),
            None => {
                let _ = verify_now(&DUMMY, &password);
                false
            }
        })
        .await?;
    Ok(matched.unwrap_or(false))
}

/// A random password of 24 letters and digits (about 142 bits).
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert_eq!(verify(Some(&h), "correct horse").await, Ok(true));
        assert_eq!(verify(Some(&h), "wrong horse").await, Ok(false));
        assert_eq!(verify(None, "correct horse").await, Ok(false));
        assert_ne!(h, hash("correct horse").await.unwrap(), "salted");
    }

    #[test]
    fn hashes_are_the_crates_own_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let ours = hash_now("correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        let theirs = Argon2::default()
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours[..30], theirs[..30], "same algorithm and parameters");
        assert!(verify_now(&theirs, "correct horse"));
        assert!(!verify_now(&theirs, "correct horsE"));
        assert!(!verify_now(
            "$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
            "x"
        ));
        assert!(!verify_now("not a hash", "x"));
        // Memory is reused, not taken again for each check.
        let kept = MEMORY.with_borrow(|m| (m.as_ptr(), m.len()));
        assert!(verify_now(&ours, "correct horse"));
        assert_eq!(MEMORY.with_borrow(|m| (m.as_ptr(), m.len())), kept);
        assert_eq!(kept.1, Params::default().block_count());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_gate_bounds_concurrent_work() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let gate = Arc::new(Gate::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let runs: Vec<_> = (0..12)
            .map(|_| {
                let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    gate.run(None, move || {
                        let now = running.fetch_add(1, SeqCst) + 1;
                        peak.fetch_max(now, SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, SeqCst);
                        std::thread::current().name().map(str::to_string)
                    })
                    .await
                })
            })
            .collect();
        let mut threads = std::collections::BTreeSet::new();
        for r in runs {
            threads.insert(r.await.unwrap().unwrap().unwrap().unwrap());
        }
        assert_eq!(peak.load(SeqCst), 2);
        // Always the gate's own threads, never the runtime's or a growing pool.
        assert!(threads.len() <= 2, "{threads:?}");
        assert!(
            threads.iter().all(|t| t.starts_with("argon2-")),
            "{threads:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_gate_refuses_after_the_wait_and_keeps_the_runtime_free() {
        let gate = Arc::new(Gate::new(1));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.run(None, move || held.recv().is_ok()).await })
        };
        while gate.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        assert_eq!(
            gate.run(Some(Duration::from_millis(100)), || ()).await,
            Err(Busy)
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        // A waiter gets the permit as soon as it is released.
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.run(Some(Duration::from_secs(10)), || 7).await })
        };
        release.send(()).unwrap();
        assert_eq!(holder.await.unwrap(), Ok(Some(true)));
        assert_eq!(waiter.await.unwrap(), Ok(Some(7)));
        // A panic releases the permit too.
        assert_eq!(gate.run(None, || panic!("boom")).await, Ok(None::<()>));
        assert_eq!(gate.permits.available_permits(), 1);
    }

    #[test]
    fn policy_and_generation() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
        let p = generate();
        assert_eq!(p.len(), 24);
        assert!(check_policy(&p).is_ok());
        assert_ne!(p, generate());
    }
}
