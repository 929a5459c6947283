//! Test plugin `incompatible`: built against `wharf:plugin@1.0.0` (see
//! `wit/plugin.wit`), a version the host does not implement. The host must
//! refuse to load it with an "incompatible" error instead of crashing or
//! serving its routes.

wit_bindgen::generate!({
    path: "wit",
    world: "content-plugin",
});

use exports::wharf::plugin::plugin::{
    Change, ContentType, ErrorFormat, Failure, Guest, Info, Naming, Plan, Published, Request,
    UnitRef, Written,
};
use wharf::plugin::blobs::Source;
use wharf::plugin::types::{Error, Repository, Summary};

struct Incompatible;

fn unsupported(what: &str) -> Error {
    Error {
        code: "unsupported".into(),
        message: format!("incompatible-test does not {what}"),
    }
}

impl Guest for Incompatible {
    fn describe() -> Info {
        Info {
            name: "incompatible-test".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            content_types: vec![ContentType {
                name: "incompatible-test".into(),
                description: "test plugin built against wharf:plugin@1.0.0".into(),
            }],
            routes: vec!["/test/incompatible/".into()],
            errors: ErrorFormat {
                content_type: "application/json".into(),
                template: r#"{"error":{"code":"{code}","message":"{message}"}}"#.into(),
                codes: Vec::new(),
                headers: Vec::new(),
            },
            naming: Naming {
                markers: Vec::new(),
                name_setting: None,
                create_on_push: None,
            },
        }
    }

    fn valid_name(_name: String) -> Result<(), String> {
        Err("this content type creates no repositories on push".into())
    }

    fn upload(_repo: Repository, _data: Source, _params: String) -> Result<Summary, Error> {
        Err(unsupported("take uploads"))
    }

    fn sync(_repo: Repository) -> Result<Summary, Error> {
        Err(unsupported("sync"))
    }

    fn publish(_repo: Repository) -> Result<Published, Error> {
        Err(unsupported("publish"))
    }

    fn select(_repo: Repository, _references: Vec<String>) -> Result<Vec<UnitRef>, Error> {
        Err(unsupported("select"))
    }

    fn edit(_repo: Repository, _change: Change) -> Result<Summary, Error> {
        Err(unsupported("edit"))
    }

    fn pull(_repo: Repository, _reference: String) -> Result<Summary, Error> {
        Err(unsupported("pull"))
    }

    fn locate(
        _repo: Repository,
        _digest: String,
    ) -> Result<wharf::plugin::fetch::BlobDownload, Error> {
        Err(unsupported("locate"))
    }

    fn write(req: Request, _repo: Repository, _session: Option<String>) -> Written {
        Written {
            plan: Self::resolve(req),
            publish: false,
            events: Vec::new(),
        }
    }

    fn resolve(req: Request) -> Plan {
        Plan::Error(Failure {
            status: 404,
            code: "not-found".into(),
            message: format!("incompatible-test: {}", req.path),
        })
    }
}

export!(Incompatible);
