//! Test plugin `trapping`: `/test/trapping/ok/<n>` answers `ok <n>`,
//! `/test/trapping/panic` panics (a trap in the host). After a trap the host
//! must still answer `ok` requests from a fresh instance. `select` and `edit`
//! always panic.

use wharf_sdk::{
    Body, Change, ContentType, Error, Failure, Guest, Info, Plan, Published, Repository, Request,
    Source, Summary, UnitRef, Written,
};

struct Trapping;

impl Guest for Trapping {
    fn describe() -> Info {
        Info {
            name: "trapping-test".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            content_types: vec![ContentType {
                name: "trapping-test".into(),
                description: "test plugin that panics on request".into(),
            }],
            routes: vec!["/test/trapping/".into()],
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
            "trapping-test does not take uploads",
        ))
    }

    fn sync(_repo: Repository) -> Result<Summary, Error> {
        Err(Error::new("unsupported", "trapping-test does not sync"))
    }

    fn publish(_repo: Repository) -> Result<Published, Error> {
        Err(Error::new("unsupported", "trapping-test does not publish"))
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

    fn select(repo: Repository, references: Vec<String>) -> Result<Vec<UnitRef>, Error> {
        panic!(
            "trapping-test: select of {references:?} in {} always panics",
            repo.id
        );
    }

    fn edit(repo: Repository, _change: Change) -> Result<Summary, Error> {
        panic!("trapping-test: edit of {} always panics", repo.id);
    }

    fn resolve(req: Request) -> Plan {
        if let Some(n) = req.path.strip_prefix("/test/trapping/ok/") {
            return Plan::Body(Body {
                status: 200,
                content_type: "text/plain".into(),
                headers: Vec::new(),
                body: format!("ok {n}").into_bytes(),
            });
        }
        if req.path == "/test/trapping/panic" {
            panic!("trapping-test: panic requested by {}", req.path);
        }
        Plan::Error(Failure {
            status: 404,
            code: "not-found".into(),
            message: format!("no such path: {}", req.path),
        })
    }
}

wharf_sdk::export_plugin!(Trapping);
