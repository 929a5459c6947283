//! `wharf db export` / `wharf db import`: move an installation's metadata
//! from one store to another (e.g. the embedded SQLite file to MongoDB when
//! going to several nodes; see docs/scaling.md). Like `fsck`, these work on
//! the store directly, not through a server: stop the servers and workers
//! first, so that nothing changes during the move.

use crate::db::DbLocation;
use crate::db::transfer::{MaskSecrets, Record};
use clap::Subcommand;
use std::io::Write as _;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DbCommand {
    /// Write every record of the metadata store to stdout as JSON lines
    /// (repositories, content, publications, groups, users, roles,
    /// permissions, event listeners, ended tasks, installed plugins).
    /// Login tokens and unfinished uploads are not exported. Secrets
    /// (password hashes, feed passwords and tokens, webhook secrets) read
    /// `********` unless --include-secrets is given; such a dump cannot be
    /// imported.
    Export(ExportArgs),
    /// Read a `wharf db export` dump from stdin into an empty store, e.g.
    /// `wharf db export --include-secrets --data-dir D | wharf db import --db mongodb://HOST/wharf`.
    Import(StoreArgs),
}

#[derive(clap::Args)]
pub struct StoreArgs {
    /// The data directory (its `wharf.db` is the store unless --db is given).
    #[arg(long, env = "WHARF_DATA_DIR", default_value = "./wharf-data")]
    pub data_dir: PathBuf,
    /// The metadata store: `mongodb://HOST:PORT/DATABASE` or `sqlite:PATH`
    /// [default: <data-dir>/wharf.db].
    #[arg(long, env = "WHARF_DB", value_name = "URL")]
    pub db: Option<DbLocation>,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Write secrets as they are stored (needed for `wharf db import`).
    /// Whoever runs this can read the store's files already; keep the dump
    /// as private as the data directory.
    #[arg(long)]
    pub include_secrets: bool,
}

impl StoreArgs {
    fn location(&self) -> DbLocation {
        DbLocation::or_default(self.db.as_ref(), &self.data_dir)
    }
}

pub fn run(cmd: DbCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cmd {
            DbCommand::Export(ExportArgs {
                store: args,
                include_secrets,
            }) => {
                let from = args.location();
                if let DbLocation::Sqlite(path) = &from {
                    // Opening would create an empty store: a typo'd data
                    // directory must not export nothing, successfully.
                    anyhow::ensure!(
                        path.exists(),
                        "{} does not exist: give the server's --data-dir (or --db)",
                        path.display()
                    );
                }
                let store = from.open().await?;
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                let mask = (!include_secrets).then_some(masked as MaskSecrets);
                let summary = crate::db::transfer::export(&*store, &mut out, mask).await?;
                out.flush()?;
                eprintln!("exported from {from}: {summary}");
                if !include_secrets {
                    eprintln!(
                        "secrets are masked: this dump is for reading; to move the store, export \
                         with --include-secrets"
                    );
                }
                Ok(())
            }
            DbCommand::Import(args) => {
                let to = args.location();
                let store = to.open().await?;
                let stdin = std::io::stdin();
                let summary = crate::db::transfer::import(&*store, stdin.lock()).await?;
                eprintln!("imported into {to}: {summary}");
                Ok(())
            }
        }
    })
}

/// A record of an export as it may be shown: its secrets masked by the rule
/// of [`crate::secrets`].
fn masked(r: Record) -> Record {
    use crate::secrets::{MASK, mask_publication, mask_repo};
    match r {
        Record::User(mut u) => {
            if u.password_hash.is_some() {
                u.password_hash = Some(MASK.into());
            }
            Record::User(u)
        }
        Record::Repository(repo) => Record::Repository(mask_repo(repo)),
        Record::Publication(p) => Record::Publication(mask_publication(p)),
        Record::Listener(l) => Record::Listener(crate::secrets::mask_listener(&l)),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::transfer::{export, fixture::fill, import};
    use crate::db::{Store as _, sqlite};

    /// Without `--include-secrets`: no secret in the dump, and no import of it.
    #[tokio::test]
    async fn a_default_export_masks_secrets_and_cannot_be_imported() {
        let dir = tempfile::tempdir().unwrap();
        let a = sqlite::SqliteStore::open(&dir.path().join("a.db")).unwrap();
        fill(&a).await;
        let mut dump = Vec::new();
        let masked = export(&a, &mut dump, Some(masked)).await.unwrap();
        let text = String::from_utf8(dump.clone()).unwrap();
        for secret in [
            "feed-password",
            "$argon2id$",
            "hook-secret",
            "publish-token",
        ] {
            assert!(!text.contains(secret), "{secret} in the dump:\n{text}");
        }
        assert!(text.contains(crate::secrets::MASK));
        let mut full = Vec::new();
        let all = export(&a, &mut full, None).await.unwrap();
        assert_eq!(masked.counts, all.counts, "the same records, masked");
        let full = String::from_utf8(full).unwrap();
        assert!(full.contains("feed-password") && full.contains("hook-secret"));

        let b = sqlite::SqliteStore::open(&dir.path().join("b.db")).unwrap();
        let err = import(&b, &dump[..]).await.unwrap_err();
        assert!(format!("{err:#}").contains("--include-secrets"), "{err:#}");
        assert!(b.list_users().await.unwrap().is_empty(), "nothing imported");
    }
}
