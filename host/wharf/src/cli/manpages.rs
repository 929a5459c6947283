//! `wharf manpages DIR`: a man page (roff, section 1) for `wharf` and for
//! every command under it, named the way `man` finds them: `wharf.1`,
//! `wharf-repo.1`, `wharf-docker-repo-copy.1`. The pages come from the same
//! clap command tree as `--help` (clap_mangen), so they say what this
//! binary does; install them with e.g. `wharf manpages
//! /usr/local/share/man/man1`, or read one with `man -l DIR/wharf-repo.1`.

use anyhow::Context as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ManpagesArgs {
    /// The directory to write the pages into (created if missing), e.g.
    /// /usr/local/share/man/man1; pages already there are replaced.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Write every page into `dir`; the files written, `wharf.1` first.
pub fn write(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}; pass a writable directory", dir.display()))?;
    // Built, so that every command knows its full name (`wharf-repo-list`)
    // and inherits the global options; `help` is not a command of its own.
    let mut cmd = super::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_tree(&cmd, dir, &mut written)?;
    Ok(written)
}

fn write_tree(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut roff)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    std::fs::write(&path, roff).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, dir, written)?;
    }
    Ok(())
}

/// `wharf manpages DIR`.
pub fn run(args: ManpagesArgs, format: wharf_cli::output::OutputFormat) -> anyhow::Result<()> {
    let written = write(&args.dir)?;
    match format {
        wharf_cli::output::OutputFormat::Json => wharf_cli::output::print_json(&written),
        wharf_cli::output::OutputFormat::Table => wharf_cli::output::say(format!(
            "Wrote {} man pages into {} (wharf.1 first); read one with `man -l {}`.",
            written.len(),
            args.dir.display(),
            written[0].display()
        )),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// Every command of the tree a user runs (not the hidden ones the
    /// server runs itself), as the page name `man` would look for.
    fn names(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            names(sub, &name, out);
        }
        out.push(name);
    }

    #[test]
    fn a_page_per_command_with_its_about_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path()).unwrap();
        let mut want = Vec::new();
        names(&super::super::Cli::command(), "", &mut want);
        want.sort();
        let mut got: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        got.sort();
        let mut want_files: Vec<String> = want.iter().map(|n| format!("{n}.1")).collect();
        want_files.sort();
        assert_eq!(got, want_files);
        assert_eq!(written.len(), want.len());
        assert!(want.len() > 50, "{want:?}");
        for must in [
            "wharf",
            "wharf-repo",
            "wharf-docker-repo-copy",
            "wharf-manpages",
            "wharf-serve",
        ] {
            assert!(want.iter().any(|n| n == must), "{must}: {want:?}");
        }

        let copy = std::fs::read_to_string(dir.path().join("wharf-docker-repo-copy.1")).unwrap();
        assert!(
            copy.starts_with(".ie") || copy.contains(".TH wharf-docker-repo-copy 1"),
            "{copy}"
        );
        assert!(copy.contains(r"\-\-from\-repo\-id"), "{copy}");
        let cli = super::super::Cli::command();
        let about = cli
            .find_subcommand("docker")
            .and_then(|d| d.find_subcommand("repo"))
            .and_then(|r| r.find_subcommand("copy"))
            .and_then(|c| c.get_about())
            .unwrap()
            .to_string();
        let first_words: String = about
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            copy.contains(&first_words),
            "{first_words:?} not in\n{copy}"
        );
        // The global options are on every page.
        assert!(copy.contains(r"\-\-server"), "{copy}");
        let top = std::fs::read_to_string(dir.path().join("wharf.1")).unwrap();
        assert!(top.contains("WHARF_TOKEN"), "{top}");
    }
}
