//! `wharf check blobs`: re-hash every blob of a running server, as a task
//! (`POST /api/v1/blobs/fsck`), and report those whose bytes do not match
//! their digest; `wharf fsck` does the same offline, on a data directory.

use crate::Session;
use crate::task::{self, WaitArgs};
use anyhow::Context as _;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum CheckCommand {
    /// Re-hash every blob the server stores, as a task with progress; a
    /// corrupt blob fails the command (exit status 1) even when removed.
    Blobs {
        /// Delete the blobs whose bytes do not match their digest (a later
        /// sync or upload stores them again).
        #[arg(long)]
        remove_corrupt: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

pub fn run(s: &Session, cmd: CheckCommand) -> anyhow::Result<()> {
    let CheckCommand::Blobs {
        remove_corrupt,
        wait,
    } = cmd;
    let t = s
        .client
        .post_query(
            "blobs/fsck",
            &[("remove_corrupt", remove_corrupt.to_string())],
            &serde_json::json!({}),
        )
        .context("cannot start the blob check")?;
    let Some(done) = task::follow(s, t, wait, "Checking blobs")? else {
        return Ok(());
    };
    let corrupt = done
        .result
        .as_ref()
        .and_then(|r| r.get("corrupt"))
        .and_then(|c| c.as_array())
        .map_or(0, Vec::len);
    if corrupt == 0 {
        return Ok(());
    }
    let hint = if remove_corrupt {
        "they were removed; sync or upload the affected content again"
    } else {
        "rerun with --remove-corrupt to delete them, then sync or upload the affected content again"
    };
    anyhow::bail!("{corrupt} corrupt blob(s); {hint}")
}
