//! The admin client's settings file and where the server URL comes from.
//!
//! `$XDG_CONFIG_HOME/wharf/config.toml`, else `~/.config/wharf/config.toml`:
//!
//! ```toml
//! server = "https://wharf.example.com/"
//!
//! [[logins]]                  # written by `wharf login`
//! server = "https://wharf.example.com/"
//! login = "admin"
//! token = "..."
//! expires_at = "2026-01-01T12:00:00Z"
//! ```
//!
//! A token is kept with the server that issued it and only ever sent there.
//! The file is written with mode 0600 because it holds tokens; a looser file
//! gets a warning, as ssh does for keys.
//!
//! A CI job has no saved login: it sets `WHARF_TOKEN` ([`env_token`]) to a
//! token from `POST /api/v1/login`, which the commands then use instead.

use crate::output::{self, OutputFormat};
use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

/// The server when neither `--server`, `WHARF_SERVER` nor the file names one:
/// where `wharf serve` listens by default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The environment variable a login token is taken from, before the saved
/// login.
pub const TOKEN_ENV: &str = "WHARF_TOKEN";

/// The token in `WHARF_TOKEN`, if it is set and not empty (CI templates
/// often export empty variables). Refused before any request when it
/// cannot be a token: a pasted line break or space, say.
pub fn env_token() -> anyhow::Result<Option<String>> {
    let value = match std::env::var(TOKEN_ENV) {
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!(
            "{TOKEN_ENV} is not valid UTF-8; set it to the `token` that POST /api/v1/login answers, or unset it"
        ),
    };
    let token = value.trim();
    if token.is_empty() {
        return Ok(None);
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!(
            "{TOKEN_ENV} holds characters no token has (spaces, line breaks or non-ASCII); set it to the `token` that POST /api/v1/login answers, or unset it"
        );
    }
    Ok(Some(token.to_string()))
}

/// What the config file holds. Unknown keys are ignored, so an older
/// client reads a newer file.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ClientConfig {
    /// The Wharf server's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// One login per server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logins: Vec<SavedLogin>,
}

/// A token from `wharf login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedLogin {
    /// The server that issued the token, as [`parse_server_url`] writes it.
    pub server: String,
    pub login: String,
    pub token: String,
    pub expires_at: String,
}

impl ClientConfig {
    /// The login kept for `server`, if any.
    pub fn login_for(&self, server: &Url) -> Option<&SavedLogin> {
        self.logins.iter().find(|l| l.server == server.as_str())
    }

    /// Keep `login` as the one for its server.
    pub fn set_login(&mut self, login: SavedLogin) {
        self.logins.retain(|l| l.server != login.server);
        self.logins.push(login);
    }

    /// Forget the login for `server`; returns it.
    pub fn remove_login(&mut self, server: &Url) -> Option<SavedLogin> {
        let i = self
            .logins
            .iter()
            .position(|l| l.server == server.as_str())?;
        Some(self.logins.remove(i))
    }
}

/// The config file's path; `None` when neither variable gives a home for it.
pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("wharf").join("config.toml"))
}

impl ClientConfig {
    /// The file's settings; defaults when there is no file.
    pub fn load() -> anyhow::Result<Self> {
        let Some(path) = path() else {
            return Ok(Self::default());
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if let Ok(meta) = std::fs::metadata(&path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "warning: {} is readable by others (mode {mode:o}); run `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
        }
        toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid Wharf config file; fix or remove it",
                path.display()
            )
        })
    }

    /// Write the file atomically (temp file + rename), mode 0600 from the
    /// start so a token is never readable by others, even briefly.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = path().context("cannot tell where the config file goes: set HOME")?;
        let dir = path.parent().expect("the path has a parent");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = path.with_extension("toml.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            // `mode` only applies to a new file; a leftover temp file may be looser.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(toml::to_string(self).expect("config serializes").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// Where the server URL came from, so `wharf config show` can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerSource {
    Flag,
    ConfigFile,
    Default,
}

/// The server to talk to: `--server` (or `WHARF_SERVER`, which clap folds
/// into it), else the config file's, else [`DEFAULT_SERVER`].
pub fn resolve_server(flag: Option<&str>, config: &ClientConfig) -> anyhow::Result<Url> {
    Ok(resolve_server_with_source(flag, config)?.0)
}

fn resolve_server_with_source(
    flag: Option<&str>,
    config: &ClientConfig,
) -> anyhow::Result<(Url, ServerSource)> {
    if let Some(s) = flag {
        let url = parse_server_url(s).context("--server / WHARF_SERVER")?;
        return Ok((url, ServerSource::Flag));
    }
    if let Some(s) = &config.server {
        let file = path().map(|p| p.display().to_string()).unwrap_or_default();
        let url = parse_server_url(s).with_context(|| format!("`server` in {file}"))?;
        return Ok((url, ServerSource::ConfigFile));
    }
    Ok((
        parse_server_url(DEFAULT_SERVER).expect("the default parses"),
        ServerSource::Default,
    ))
}

/// A server URL; `host:port` alone means `http://host:port`. The path always
/// ends in `/` so the API's paths join under it (a server behind a prefix).
pub fn parse_server_url(s: &str) -> anyhow::Result<Url> {
    let with_scheme = if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let mut url = Url::parse(&with_scheme)
        .with_context(|| format!("{s:?} is not a URL (e.g. http://wharf.example.com:8080)"))?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("{s:?} must be an http:// or https:// URL");
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// The config file's path and the server the admin commands would use.
    Show,
    /// Store a setting in the config file (created with mode 0600), e.g.
    /// `wharf config set server https://wharf.example.com`.
    Set {
        #[arg(value_enum)]
        key: ConfigKey,
        value: String,
    },
}

/// The settings the file holds.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ConfigKey {
    /// The Wharf server's URL, used when neither --server nor WHARF_SERVER is given.
    Server,
}

pub fn run(cmd: ConfigCommand, flag: Option<&str>, format: OutputFormat) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Show => {
            let file = path();
            let config = ClientConfig::load()?;
            let (server, source) = resolve_server_with_source(flag, &config)?;
            let login = config.login_for(&server);
            let from_env = env_token()?.is_some();
            let token_from = if from_env {
                Some(TOKEN_ENV)
            } else {
                login.map(|_| "config file")
            };
            let source = match source {
                ServerSource::Flag => "--server / WHARF_SERVER",
                ServerSource::ConfigFile => "config file",
                ServerSource::Default => "default",
            };
            let file_text = file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none: HOME is not set)".into());
            match format {
                OutputFormat::Json => output::print_json(&serde_json::json!({
                    "config_file": file,
                    "config_file_exists": file.as_ref().is_some_and(|p| p.exists()),
                    "server": server.as_str(),
                    "server_from": source,
                    "login": login.map(|l| &l.login),
                    "token_expires_at": login.map(|l| &l.expires_at),
                    "token_from": token_from,
                })),
                OutputFormat::Table => output::print_details(&[
                    ("Config file", file_text),
                    ("Server", format!("{server} (from {source})")),
                    (
                        "Logged in",
                        if from_env {
                            format!(
                                "with the token in {TOKEN_ENV} (used instead of any saved login)"
                            )
                        } else {
                            login.map_or("no (`wharf login`, or set WHARF_TOKEN)".into(), |l| {
                                format!("as {} until {}", l.login, l.expires_at)
                            })
                        },
                    ),
                ]),
            }
            Ok(())
        }
        ConfigCommand::Set {
            key: ConfigKey::Server,
            value,
        } => {
            let url = parse_server_url(&value)?;
            let mut config = ClientConfig::load()?;
            config.server = Some(url.to_string());
            let path = config.save()?;
            println!("server = {url} saved in {}", path.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let u = parse_server_url("127.0.0.1:8080").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/");
        let u = parse_server_url("localhost:9000").unwrap();
        assert_eq!(u.as_str(), "http://localhost:9000/");
        let u = parse_server_url("https://h.example/wharf").unwrap();
        assert_eq!(
            u.join("api/v1/status").unwrap().path(),
            "/wharf/api/v1/status"
        );
        assert!(parse_server_url("ftp://x").is_err());
    }
}
