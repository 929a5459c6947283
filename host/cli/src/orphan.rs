//! `wharf orphan remove`: delete units no repository holds and blobs nothing
//! references (`pulp-admin orphan remove`). Content copied between
//! repositories is shared, so deleting a repository frees nothing until this
//! runs.

use crate::Session;
use crate::task::{self, WaitArgs};
use anyhow::Context as _;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum OrphanCommand {
    /// Remove every orphaned unit and blob, as a task.
    Remove {
        /// Keep unreferenced blobs unused for less than this many minutes.
        /// Blobs of imports, syncs and pushes in flight are kept whatever
        /// this is (they are leased until their units commit).
        #[arg(long, default_value_t = 60)]
        protection_minutes: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

pub fn run(s: &Session, cmd: OrphanCommand) -> anyhow::Result<()> {
    let OrphanCommand::Remove {
        protection_minutes,
        wait,
    } = cmd;
    let t = s
        .client
        .post_query(
            "orphans/cleanup",
            &[("protection_minutes", protection_minutes.to_string())],
            &serde_json::json!({}),
        )
        .context("cannot start orphan removal")?;
    task::follow(s, t, wait, "Removing orphans")?;
    Ok(())
}
