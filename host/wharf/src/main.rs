//! The `wharf` binary; the command tree lives in [`wharf::cli`].

fn main() -> std::process::ExitCode {
    wharf::cli::main()
}
