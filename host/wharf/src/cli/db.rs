//! `wharf db export` / `wharf db import`: move an installation's metadata
//! from one store to another (e.g. the embedded SQLite file to MongoDB when
//! going to several nodes; see docs/scaling.md). Like `fsck`, these work on
//! the store directly, not through a server: stop the servers and workers
//! first, so that nothing changes during the move.

use clap::Subcommand;
use std::io::Write as _;
use std::path::PathBuf;
use wharf_store::db::DbLocation;
use wharf_store::db::transfer::{MaskSecrets, Record};

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
                let summary = wharf_store::db::transfer::export(&*store, &mut out, mask).await?;
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
                let summary = wharf_store::db::transfer::import(&*store, stdin.lock()).await?;
                eprintln!("imported into {to}: {summary}");
                Ok(())
            }
        }
    })
}

/// A record of an export as it may be shown: its secrets masked by the rule
/// of [`wharf_server::secrets`].
fn masked(r: Record) -> Record {
    use wharf_server::secrets::{MASK, mask_publication, mask_repo};
    match r {
        Record::User(mut u) => {
            if u.password_hash.is_some() {
                u.password_hash = Some(MASK.into());
            }
            Record::User(u)
        }
        Record::Repository(repo) => Record::Repository(mask_repo(repo)),
        Record::Publication(p) => Record::Publication(mask_publication(p)),
        Record::Listener(l) => Record::Listener(wharf_server::secrets::mask_listener(&l)),
        Record::Remote(r) => Record::Remote(wharf_server::secrets::mask_remote(r)),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_store::db::{Listener, Publication, Repository, Target, User, UserSource};

    /// Every kind of record with a secret, masked as a default export shows
    /// it (the export and the refused import run against the real binary
    /// in tests/e2e/hostile_access.rs).
    #[test]
    fn the_export_mapper_masks_every_secret() {
        let user = User {
            login: "dev".into(),
            name: "Dev".into(),
            password_hash: Some("$argon2id$v=19$secret-hash".into()),
            source: UserSource::Local,
            roles: vec![],
            created_at: wharf_store::db::now(),
            updated_at: wharf_store::db::now(),
        };
        let repo = Repository {
            id: "app".parse().unwrap(),
            content_type: "docker".into(),
            display_name: String::new(),
            description: String::new(),
            notes: Default::default(),
            importer_config: serde_json::json!({
                "feed": "https://u:url-password@registry.example", "password": "feed-password"
            }),
            distributor_config: serde_json::json!({"repo-registry-id": "my/app", "token": "publish-token"}),
            retain_versions: None,
            created_at: wharf_store::db::now(),
            updated_at: wharf_store::db::now(),
        };
        let publication = Publication {
            plugin: "docker".into(),
            name: "my/app".into(),
            repo_id: repo.id.clone(),
            index: wharf_core::digest::Digest::of(b"index"),
            version: Some(1),
            config: serde_json::json!({"token": "publication-token"}),
            published_at: wharf_store::db::now(),
            blobs: vec![],
        };
        let listener = Listener {
            id: "l".into(),
            target: Target::Http {
                url: "http://127.0.0.1:9/hook".into(),
                secret: "hook-secret".into(),
            },
            events: vec![],
            created_at: wharf_store::db::now(),
        };
        let remote = wharf_store::db::Remote {
            id: "hub".parse().unwrap(),
            content_type: "docker".into(),
            settings: serde_json::json!({"username": "ci", "password": "remote-password"}),
            transport: wharf_store::db::Transport {
                proxy: Some("http://p:proxy-password@127.0.0.1:3128".into()),
                ..Default::default()
            },
            created_at: wharf_store::db::now(),
            updated_at: wharf_store::db::now(),
        };
        let records = [
            Record::User(user),
            Record::Repository(repo),
            Record::Publication(publication),
            Record::Listener(listener),
            Record::Remote(remote),
        ];
        for record in records {
            let before = serde_json::to_string(&record).unwrap();
            let after = serde_json::to_string(&masked(record)).unwrap();
            for secret in [
                "secret-hash",
                "url-password",
                "feed-password",
                "publish-token",
                "publication-token",
                "hook-secret",
                "remote-password",
                "proxy-password",
            ] {
                assert!(!after.contains(secret), "{secret} in {after}");
            }
            assert!(
                after.contains(wharf_server::secrets::MASK),
                "{before} -> {after}"
            );
            assert_ne!(before, after);
        }
    }
}
