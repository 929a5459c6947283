//! The `wharf` binary: one command tree ([`cli`]) over the server's own
//! commands and the admin client's.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
