//! Compiling plugins in a child process. A component the cache does not
//! hold yet is compiled by `wharf plugin-compiler` (a hidden command of the
//! same binary): the component on its standard input, the compiled
//! artifact written where it is told, which the runtime then maps.
//!
//! Compiling a large component (the Python content type carries a 22 MB
//! interpreter) takes seconds and some 370 MiB. In a child, the server's
//! memory stays as it was once the child exits, and the compile runs at a
//! lower priority than the server's requests, which go on meanwhile.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use wharf_runtime::engine::{CompileError, Compiler, Limits, compile_to};

/// The hidden command the child runs.
pub const COMMAND: &str = "plugin-compiler";
/// Its exit status for bytes that are not a valid component.
const EXIT_INVALID: u8 = 3;
/// How much lower than the server's the child's scheduling priority is.
const NICENESS: libc::c_int = 10;

/// A [`Compiler`] that runs `exe` (this binary) as [`COMMAND`] for each
/// component, with the runtime's `limits`.
pub fn child(exe: PathBuf, limits: &Limits) -> Box<Compiler> {
    let memory_mib = (limits.memory_bytes >> 20).to_string();
    Box::new(move |wasm: &[u8], out: &Path| {
        let mut cmd = Command::new(&exe);
        cmd.args([COMMAND, "--plugin-memory-mib", &memory_mib, "--out"])
            .arg(out)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: nice(2) is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::nice(NICENESS);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            CompileError::Failed(format!("cannot start {} {COMMAND}: {e}", exe.display()))
        })?;
        let mut stdin = child.stdin.take().expect("piped");
        // A child that ends early (a wrong argument) closes its input: its
        // status says why.
        let _ = stdin.write_all(wasm);
        drop(stdin);
        let done = child
            .wait_with_output()
            .map_err(|e| CompileError::Failed(format!("waiting for the compiler: {e}")))?;
        let said = String::from_utf8_lossy(&done.stderr).trim().to_string();
        match done.status.code() {
            Some(0) => Ok(()),
            Some(c) if c == i32::from(EXIT_INVALID) => Err(CompileError::Invalid(said)),
            _ => Err(CompileError::Failed(format!("{said} ({})", done.status))),
        }
    })
}

/// The child's side: compile the component on standard input for a runtime
/// whose instances have `memory_mib` MiB, into `out`.
pub fn run(memory_mib: usize, out: &Path) -> ExitCode {
    let mut wasm = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut wasm) {
        eprintln!("reading the component: {e}");
        return ExitCode::FAILURE;
    }
    let limits = Limits {
        memory_bytes: memory_mib << 20,
        ..Limits::default()
    };
    match compile_to(&limits, &wasm, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CompileError::Invalid(m)) => {
            eprintln!("{m}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
