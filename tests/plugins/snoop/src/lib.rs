//! Test plugin `snoop`: tries to reach what a plugin must not, and reports
//! what happened. `resolve` answers `/test/snoop/<probe>` with a body
//! `denied: <error>` or `ALLOWED: <what it got>`; `sync` runs the fetch probe
//! and fails with the host's answer.
//!
//! With an importer setting `blobs` (`[{"digest", "size", "locate"?}]`) it
//! is instead a content type whose blobs stay on the feed: `sync` names
//! each blob at `<feed>/blobs/<digest>` through `fetch-blobs` (which, under
//! `download_policy: on_demand` or `streamed`, defers them) and adds a unit
//! per blob; `publish` publishes the repository under its id;
//! `/test/snoop/<repository>/blobs/<digest>` serves a blob; and `locate`
//! answers the blob's `locate` URL when it has one — anywhere at all, off
//! the feed — and its feed URL otherwise. The host must never fetch the
//! former.

use serde_json::Value;
use wharf_sdk::{
    BlobDownload, Body, Change, ContentType, Error, Guest, Info, Plan, Published, Repository,
    Request, ServeBlob, Source, Summary, Unit, UnitRef, Written, blobs, fetch, units,
};

struct Snoop;

/// A digest to ask about.
const SOME_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn outcome<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => format!("ALLOWED: {v:?}"),
        Err(e) => format!("denied: {e}"),
    }
}

fn wit_err(e: Error) -> String {
    format!("{}: {}", e.code, e.message)
}

/// One blob of the `blobs` importer setting.
struct Listed {
    digest: String,
    size: u64,
    /// Where `locate` says the blob is, instead of its feed URL.
    locate: Option<String>,
}

/// The repository's importer settings.
fn importer(repo: &Repository) -> Result<Value, Error> {
    wharf_sdk::json::settings::<Value>(&repo.importer_config)
        .map_err(|e| Error::invalid(format!("importer settings: {e}")))
}

/// The `blobs` importer setting, if any.
fn listed(settings: &Value) -> Result<Option<Vec<Listed>>, Error> {
    let Some(list) = settings.get("blobs") else {
        return Ok(None);
    };
    let bad = || Error::invalid("blobs: a list of {\"digest\", \"size\", \"locate\"?}");
    list.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|b| {
            Ok(Listed {
                digest: b["digest"].as_str().ok_or_else(bad)?.to_string(),
                size: b["size"].as_u64().ok_or_else(bad)?,
                locate: b.get("locate").and_then(Value::as_str).map(String::from),
            })
        })
        .collect::<Result<_, Error>>()
        .map(Some)
}

/// Where `digest` is on the repository's feed.
fn on_feed(settings: &Value, digest: &str) -> Result<String, Error> {
    let feed = settings["feed"]
        .as_str()
        .ok_or_else(|| Error::invalid("no feed"))?;
    Ok(format!("{}/blobs/{digest}", feed.trim_end_matches('/')))
}

/// Name every listed blob on the feed through `fetch-blobs`, one unit each.
fn sync_blobs(settings: &Value, listed: &[Listed]) -> Result<Summary, Error> {
    let downloads = listed
        .iter()
        .map(|b| {
            Ok(BlobDownload {
                url: on_feed(settings, &b.digest)?,
                headers: vec![],
                digest: b.digest.clone(),
                size: Some(b.size),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    for result in fetch::fetch_blobs(&downloads) {
        let digest = result?;
        units::add(&Unit {
            unit_type: "blob".into(),
            key: digest.clone(),
            metadata: "{}".into(),
            blobs: vec![digest],
        })?;
    }
    Ok(Summary {
        units_added: listed.len() as u64,
        units_removed: 0,
        bytes_stored: 0,
        message: format!("{} blobs named", listed.len()),
    })
}

impl Guest for Snoop {
    fn describe() -> Info {
        Info {
            name: "snoop-test".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            content_types: vec![ContentType {
                name: "snoop-test".into(),
                description: "sandbox probe".into(),
            }],
            routes: vec!["/test/snoop/".into()],
            errors: wharf_sdk::ErrorFormat::neutral(),
            naming: wharf_sdk::Naming::by_id(&[]),
        }
    }

    fn valid_name(_name: String) -> Result<(), String> {
        Err("this content type creates no repositories on push".into())
    }

    fn upload(_repo: Repository, _data: Source, _params: String) -> Result<Summary, Error> {
        Err(Error::new(
            "unsupported",
            "snoop-test does not take uploads",
        ))
    }

    /// Name the `blobs` setting's blobs; without it, fetch a host other
    /// than the feed.
    fn sync(repo: Repository) -> Result<Summary, Error> {
        let settings = importer(&repo)?;
        if let Some(listed) = listed(&settings)? {
            return sync_blobs(&settings, &listed);
        }
        // Any host but the feed's.
        let r = fetch::fetch(&fetch::Request {
            method: "GET".into(),
            url: "http://localhost:9/x".into(),
            headers: vec![],
        });
        Err(Error::new(
            "probe",
            outcome(r.map(|r| r.status).map_err(wit_err)),
        ))
    }

    /// Publish the repository under its id (its units' blobs are what
    /// the publication serves). A publish reads one version: the host must
    /// refuse it the blob index of the repository as it changes
    /// (`units.naming`); the publish fails if it does not.
    fn publish(repo: Repository) -> Result<Published, Error> {
        if let Ok(units) = units::naming(SOME_DIGEST, "blob", None, 10) {
            return Err(Error::new(
                "io",
                format!("units.naming answered in publish: {} unit(s)", units.len()),
            ));
        }
        let index = blobs::store_bytes(
            format!("snoop-test publication of {}", repo.id).as_bytes(),
            None,
        )?;
        Ok(Published {
            name: repo.id,
            index,
            summary: Summary::edited(0, 0, "published"),
        })
    }

    fn select(_repo: Repository, _references: Vec<String>) -> Result<Vec<UnitRef>, Error> {
        Err(Error::new("unsupported", "snoop-test does not select"))
    }

    fn edit(_repo: Repository, _change: Change) -> Result<Summary, Error> {
        Err(Error::new("unsupported", "snoop-test does not edit"))
    }

    fn pull(_repo: Repository, _reference: String) -> Result<Summary, Error> {
        Err(Error::no_remote_content("content"))
    }

    /// A listed blob's `locate` URL, wherever it points; its feed URL
    /// otherwise.
    fn locate(repo: Repository, digest: String) -> Result<BlobDownload, Error> {
        let settings = importer(&repo)?;
        let Some(listed) = listed(&settings)? else {
            return Err(Error::no_remote_content("blobs"));
        };
        let blob = listed
            .into_iter()
            .find(|b| b.digest == digest)
            .ok_or_else(|| Error::not_found(format!("no blob {digest} is listed")))?;
        let url = match blob.locate {
            Some(url) => url,
            None => on_feed(&settings, &digest)?,
        };
        Ok(BlobDownload {
            url,
            headers: vec![],
            digest,
            size: Some(blob.size),
        })
    }

    fn write(req: Request, _repo: Repository, _session: Option<String>) -> Written {
        Written::unsupported(&req)
    }

    fn resolve(req: Request) -> Plan {
        let probe = req.path.trim_start_matches("/test/snoop/");
        // `<repository>/blobs/<digest>`: the host serves it only if the
        // admitted repository's publication names it.
        if let Some((_, digest)) = probe.rsplit_once("/blobs/") {
            return Plan::Blob(ServeBlob {
                digest: digest.into(),
                media_type: "application/octet-stream".into(),
                headers: vec![],
            });
        }
        let result = match probe {
            "file" => outcome(std::fs::read_to_string("/etc/passwd")),
            "dir" => outcome(std::fs::read_dir("/").map(|d| d.count())),
            "socket" => outcome(std::net::TcpStream::connect("127.0.0.1:22").map(|_| "connected")),
            "env" => outcome(std::env::var("HOME")),
            "units" => outcome(
                units::list("blob", None, 10)
                    .map(|u| u.len())
                    .map_err(wit_err),
            ),
            // The blob index and the version diff: task calls only.
            "naming" => outcome(
                units::naming(SOME_DIGEST, "blob", None, 10)
                    .map(|u| u.len())
                    .map_err(wit_err),
            ),
            "changes" => outcome(
                units::changes(0, "blob", None, 10)
                    .map(|c| c.len())
                    .map_err(wit_err),
            ),
            "store" => outcome(blobs::store_bytes(b"from resolve", None).map_err(wit_err)),
            "fetch" => outcome(
                fetch::fetch(&fetch::Request {
                    method: "GET".into(),
                    url: "http://127.0.0.1:9/".into(),
                    headers: vec![],
                })
                .map(|r| r.status)
                .map_err(wit_err),
            ),
            other => format!("unknown probe {other}"),
        };
        Plan::Body(Body {
            status: 200,
            content_type: "text/plain".into(),
            headers: vec![],
            body: result.into_bytes(),
        })
    }
}

wharf_sdk::export_plugin!(Snoop);
