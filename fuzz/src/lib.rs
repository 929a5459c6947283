//! The fuzz driver of Wharf's parser fuzz targets (docs/fuzzing.md).
//!
//! A target is an ordinary `#[test]` next to the parser it attacks. It calls
//! [`run`] with its name, a few tokens worth splicing in, a generator of
//! inputs of its own, and a property: what must hold for *any* input
//! ([`run_matching`] when that generator is a regular expression). The
//! driver then
//!
//! 1. runs the property on every file of `fuzz/corpus/<target>/` as it is
//!    (real inputs, and every input that once broke the target);
//! 2. until the time budget is spent, runs it on proptest-generated inputs:
//!    corpus files mutated by a list of edits, and the target's own inputs;
//! 3. on a failure, lets proptest shrink the input and fails the test with
//!    the smallest one, the seed that found it and where to keep it.
//!
//! The budget is `WHARF_FUZZ_SECONDS` per target ([`DEFAULT_SECONDS`] when
//! unset); `WHARF_FUZZ_SEED` replays the run a failure names.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

pub use proptest;

/// Seconds each target runs when `WHARF_FUZZ_SECONDS` is not set.
pub const DEFAULT_SECONDS: f64 = 3.0;

/// Cases per proptest run; the deadline is checked between runs.
const BATCH: u32 = 64;

/// Bytes of a failing input quoted in the failure message.
const SHOWN: usize = 512;

/// Edits applied to one corpus input, at most.
const MAX_EDITS: usize = 8;

/// Where a target keeps its seeds.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// The files of a target's corpus, sorted by name. A target without seeds
/// is a mistake, so a missing or empty directory panics.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus directory entry").path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, bytes)
        })
        .filter(|(name, _)| name != "README.md")
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz corpus {} is empty", dir.display());
    files
}

/// How long each target runs: `WHARF_FUZZ_SECONDS` or [`DEFAULT_SECONDS`].
pub fn budget() -> Duration {
    let seconds = match std::env::var("WHARF_FUZZ_SECONDS") {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or_else(|| panic!("WHARF_FUZZ_SECONDS={v:?} is not a number of seconds")),
        Err(_) => DEFAULT_SECONDS,
    };
    Duration::from_secs_f64(seconds)
}

/// One change to an input. Positions are [`Index`]es, so an edit means
/// something whatever the input's length, and proptest can shrink them.
#[derive(Debug, Clone)]
pub enum Edit {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, u8),
    /// Copy `len` bytes from one place over another (repeats structure).
    Duplicate(Index, Index, u8),
    /// Put a dictionary token at a position (inserted, or over the bytes there).
    Token(Index, Index, bool),
    /// Write an interesting number in decimal or octal over the bytes there.
    Number(Index, u64, bool),
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let number = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2 + 1),
        Just(0o77777777777),
        any::<u32>().prop_map(u64::from),
        any::<u64>(),
    ];
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::SetByte(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), 1u8..64).prop_map(|(i, n)| Edit::Remove(i, n)),
        (any::<Index>(), any::<Index>(), 1u8..255).prop_map(|(a, b, n)| Edit::Duplicate(a, b, n)),
        (any::<Index>(), any::<Index>(), any::<bool>())
            .prop_map(|(i, t, over)| Edit::Token(i, t, over)),
        (any::<Index>(), number, any::<bool>()).prop_map(|(i, n, octal)| Edit::Number(i, n, octal)),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

/// `input` with `edits` applied in order; `dictionary` feeds [`Edit::Token`].
pub fn apply(input: &[u8], edits: &[Edit], dictionary: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    // A position in 0..=len.
    let at = |i: &Index, len: usize| i.index(len + 1);
    for e in edits {
        match e {
            Edit::FlipBit(i, bit) if !out.is_empty() => {
                let i = i.index(out.len());
                out[i] ^= 1 << bit;
            }
            Edit::SetByte(i, b) if !out.is_empty() => {
                let i = i.index(out.len());
                out[i] = *b;
            }
            Edit::Insert(i, bytes) => {
                let i = at(i, out.len());
                out.splice(i..i, bytes.iter().copied());
            }
            Edit::Remove(i, n) => {
                let i = at(i, out.len());
                let end = (i + *n as usize).min(out.len());
                out.drain(i..end);
            }
            Edit::Duplicate(from, to, n) if !out.is_empty() => {
                let from = from.index(out.len());
                let chunk = out[from..(from + *n as usize).min(out.len())].to_vec();
                let to = at(to, out.len());
                overwrite(&mut out, to, &chunk);
            }
            Edit::Token(i, t, over) if !dictionary.is_empty() => {
                let token = &dictionary[t.index(dictionary.len())];
                let i = at(i, out.len());
                if *over {
                    overwrite(&mut out, i, token);
                } else {
                    out.splice(i..i, token.iter().copied());
                }
            }
            Edit::Number(i, n, octal) => {
                let text = if *octal {
                    format!("{n:o}")
                } else {
                    n.to_string()
                };
                let i = at(i, out.len());
                overwrite(&mut out, i, text.as_bytes());
            }
            Edit::Truncate(i) => {
                let i = at(i, out.len());
                out.truncate(i);
            }
            _ => {}
        }
    }
    out
}

/// Write `bytes` at `at`, growing `out` if they reach past its end.
fn overwrite(out: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let end = at + bytes.len();
    if end > out.len() {
        out.resize(end, 0);
    }
    out[at..end].copy_from_slice(bytes);
}

/// Corpus inputs with up to [`MAX_EDITS`] edits each.
pub fn mutants(seeds: Vec<Vec<u8>>, dictionary: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit(), 0..=MAX_EDITS),
    )
        .prop_map(move |(seed, edits)| apply(&seed, &edits, &dictionary))
        .boxed()
}

/// Inputs matching a regular expression, as bytes.
pub fn matching(regex: &str) -> BoxedStrategy<Vec<u8>> {
    proptest::string::string_regex(regex)
        .expect("fuzz input regex")
        .prop_map(String::into_bytes)
        .boxed()
}

/// What one [`run`] did.
#[derive(Debug)]
pub struct Report {
    pub corpus: usize,
    pub cases: u64,
    pub elapsed: Duration,
}

/// Fuzz `property` for the time [`budget`]: the corpus of `target` first,
/// then mutants of it (with `dictionary` tokens spliced in) and inputs of
/// `generated`, until the deadline. At least one batch of generated cases
/// runs, however small the budget. Panics with the smallest failing input.
pub fn run(
    target: &str,
    dictionary: &[&[u8]],
    generated: impl Strategy<Value = Vec<u8>>,
    property: impl Fn(&[u8]) -> Result<(), TestCaseError>,
) -> Report {
    run_for(budget(), target, dictionary, generated, property)
}

/// [`run`] with the target's own inputs drawn from the regular expression
/// `regex` ([`matching`]).
pub fn run_matching(
    target: &str,
    dictionary: &[&[u8]],
    regex: &str,
    property: impl Fn(&[u8]) -> Result<(), TestCaseError>,
) -> Report {
    run(target, dictionary, matching(regex), property)
}

/// [`run`] for `time` instead of the configured budget.
pub fn run_for(
    time: Duration,
    target: &str,
    dictionary: &[&[u8]],
    generated: impl Strategy<Value = Vec<u8>>,
    property: impl Fn(&[u8]) -> Result<(), TestCaseError>,
) -> Report {
    let started = Instant::now();
    let deadline = started + time;
    let files = corpus(target);
    for (name, bytes) in &files {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| property(bytes)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("fuzz {target}: corpus file {name} fails: {e}"),
            Err(_) => panic!("fuzz {target}: corpus file {name} panics (message above)"),
        }
    }
    let seeds: Vec<Vec<u8>> = files.into_iter().map(|(_, bytes)| bytes).collect();
    let corpus_len = seeds.len();
    let dictionary: Vec<Vec<u8>> = dictionary.iter().map(|t| t.to_vec()).collect();
    let strategy = prop_oneof![
        3 => mutants(seeds, dictionary),
        1 => generated,
    ];
    let seed = match std::env::var("WHARF_FUZZ_SEED") {
        Ok(v) => v
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("WHARF_FUZZ_SEED={v:?} is not a number")),
        Err(_) => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: BATCH,
        failure_persistence: None,
        max_shrink_time: 20_000,
        ..Config::default()
    };
    // A runner counts the cases it ran, so each batch gets a fresh one,
    // with an RNG forked from the seeded one.
    let mut seeded = TestRunner::new_with_rng(
        config.clone(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    let mut cases = 0u64;
    loop {
        let mut runner = TestRunner::new_with_rng(config.clone(), seeded.new_rng());
        match runner.run(&strategy, |input| property(&input)) {
            Ok(()) => cases += u64::from(BATCH),
            Err(TestError::Fail(why, input)) => {
                let saved = std::env::temp_dir().join(format!("wharf-fuzz-{target}-{seed}"));
                let saved = match std::fs::write(&saved, &input) {
                    Ok(()) => format!("saved as {}", saved.display()),
                    Err(e) => format!("not saved: {e}"),
                };
                panic!(
                    "fuzz {target} (WHARF_FUZZ_SEED={seed}) fails: {why}\n\
                     smallest failing input ({} bytes, {saved}): b\"{}\"{}\n\
                     once fixed, keep it as a regression case in {}",
                    input.len(),
                    input[..input.len().min(SHOWN)].escape_ascii(),
                    if input.len() > SHOWN { "..." } else { "" },
                    corpus_dir(target).display()
                )
            }
            Err(TestError::Abort(why)) => panic!("fuzz {target}: proptest gave up: {why}"),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let report = Report {
        corpus: corpus_len,
        cases,
        elapsed: started.elapsed(),
    };
    eprintln!(
        "fuzz {target}: {} corpus files, {} generated cases in {:.1} s (WHARF_FUZZ_SEED={seed})",
        report.corpus,
        report.cases,
        report.elapsed.as_secs_f64()
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;

    #[test]
    fn edits_apply_anywhere() {
        // Edits at arbitrary positions, on inputs of any length, stay in bounds.
        let idx = |n: usize| {
            let mut runner = TestRunner::deterministic();
            (0..n)
                .map(|_| any::<Index>().new_tree(&mut runner).unwrap().current())
                .collect::<Vec<_>>()
        };
        let i = idx(3);
        for input in [&b""[..], b"a", b"bytes=0-9"] {
            for e in [
                Edit::FlipBit(i[0], 7),
                Edit::SetByte(i[0], 0),
                Edit::Insert(i[1], b"xy".to_vec()),
                Edit::Remove(i[2], 63),
                Edit::Duplicate(i[0], i[1], 200),
                Edit::Token(i[1], i[2], true),
                Edit::Token(i[1], i[2], false),
                Edit::Number(i[2], u64::MAX, true),
                Edit::Truncate(i[0]),
            ] {
                let out = apply(input, std::slice::from_ref(&e), &[b"tok".to_vec()]);
                assert!(out.len() <= input.len() + 255 + 22, "{e:?}");
            }
        }
        assert_eq!(
            apply(
                b"ab",
                &[Edit::Insert(i[0], b"".to_vec())],
                &[b"tok".to_vec()]
            ),
            b"ab"
        );
    }

    #[test]
    fn runs_every_case_it_counts_until_the_deadline() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let calls = AtomicU64::new(0);
        let time = Duration::from_millis(300);
        let report = run_for(time, "driver-self-test", &[], Just(Vec::new()), |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        assert_eq!(
            calls.load(Ordering::Relaxed),
            report.corpus as u64 + report.cases
        );
        assert!(report.cases >= u64::from(BATCH));
        assert!(report.elapsed >= time, "{report:?}");
    }

    #[test]
    fn finds_a_planted_bug_and_shrinks_it() {
        let found = std::panic::catch_unwind(|| {
            run_for(
                Duration::from_secs(30),
                "driver-self-test",
                &[b"needle"],
                Just(Vec::new()),
                |input: &[u8]| {
                    prop_assert!(!input.windows(6).any(|w| w == b"needle"));
                    Ok(())
                },
            )
        });
        let message = *found
            .expect_err("a corpus mutant with the planted token must be found")
            .downcast::<String>()
            .unwrap();
        assert!(message.contains("smallest failing input"), "{message}");
        assert!(message.contains("needle"), "{message}");
    }
}
