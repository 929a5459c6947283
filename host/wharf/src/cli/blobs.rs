//! `wharf blobs`: the blob store of an installation, worked on directly
//! (not through a server): `migrate` copies it into object storage.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use wharf_cli::output::{self, OutputFormat};
use wharf_cli::progress::Progress;
use wharf_server::config::S3Args;
use wharf_store::blobs::objects::ObjectLocation;

#[derive(Subcommand)]
pub enum BlobsCommand {
    /// Copy every blob of a data directory into an S3 bucket, verifying each
    /// digest; blobs the bucket has already are skipped, so an interrupted
    /// run resumes. Then start the nodes with --blob-store set to the bucket.
    Migrate(MigrateArgs),
}

#[derive(Args)]
pub struct MigrateArgs {
    /// The server's data directory (its blobs are in `blobs/`).
    #[arg(long, env = "WHARF_DATA_DIR", default_value = "./wharf-data")]
    pub data_dir: PathBuf,
    /// The bucket to copy into: `s3://BUCKET` or `s3://BUCKET/PREFIX`, as
    /// the nodes' --blob-store will name it.
    #[arg(long, value_name = "s3://BUCKET[/PREFIX]")]
    pub to: ObjectLocation,
    #[command(flatten)]
    pub s3: S3Args,
}

pub fn run(command: BlobsCommand, format: OutputFormat) -> anyhow::Result<()> {
    let BlobsCommand::Migrate(args) = command;
    let to = args.s3.open(&args.to)?;
    let progress = Progress::bytes(&format!("copying to {}", args.to), None);
    let report = wharf_server::blob_migration::run(&args.data_dir, &to, |m| {
        progress.set_position(m.copied_bytes)
    })?;
    let summary = format!(
        "{} blobs: {} copied ({}), {} already in {}",
        report.found,
        report.copied,
        output::bytes(report.copied_bytes),
        report.skipped,
        args.to
    );
    match format {
        OutputFormat::Json => {
            progress.abandon();
            output::print_json(&report)
        }
        OutputFormat::Table => progress.finish(&summary),
    }
    if report.corrupt.is_empty() {
        return Ok(());
    }
    for d in &report.corrupt {
        output::say(format!("corrupt, not copied: {d}"));
    }
    anyhow::bail!(
        "{} blobs do not match their digest and were not copied: run `wharf fsck --data-dir {}` \
         and sync or upload the affected content again",
        report.corrupt.len(),
        args.data_dir.display()
    )
}
