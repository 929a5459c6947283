//! Test plugin `snoop`: tries to reach what a plugin must not, and reports
//! what happened. `resolve` answers `/test/snoop/<probe>` with a body
//! `denied: <error>` or `ALLOWED: <what it got>`; `sync` runs the fetch probe
//! and fails with the host's answer.

use wharf_sdk::{
    Body, Change, ContentType, Error, Guest, Info, Plan, Published, Repository, Request, Source,
    Summary, UnitRef, Written, blobs, fetch, units,
};

struct Snoop;

fn outcome<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => format!("ALLOWED: {v:?}"),
        Err(e) => format!("denied: {e}"),
    }
}

fn wit_err(e: Error) -> String {
    format!("{}: {}", e.code, e.message)
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

    /// Fetch a host other than the feed.
    fn sync(repo: Repository) -> Result<Summary, Error> {
        // Any host but the feed's.
        let _ = repo;
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

    fn publish(_repo: Repository) -> Result<Published, Error> {
        Err(Error::new("unsupported", "snoop-test does not publish"))
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

    fn locate(_repo: Repository, _digest: String) -> Result<wharf_sdk::BlobDownload, Error> {
        Err(Error::no_remote_content("blobs"))
    }

    fn write(req: Request, _repo: Repository, _session: Option<String>) -> Written {
        Written::unsupported(&req)
    }

    fn resolve(req: Request) -> Plan {
        let probe = req.path.trim_start_matches("/test/snoop/");
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
