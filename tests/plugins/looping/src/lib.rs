//! Test plugin `looping`: `resolve`, `select` and `edit` never return. The
//! host must interrupt them (deadline or task cancel) and keep serving other
//! requests.

use wharf_sdk::{
    Change, ContentType, Error, Guest, Info, Plan, Published, Repository, Request, Source, Summary,
    UnitRef, Written,
};

struct Looping;

impl Guest for Looping {
    fn describe() -> Info {
        Info {
            name: "looping-test".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            content_types: vec![ContentType {
                name: "looping-test".into(),
                description: "test plugin whose resolve loops forever".into(),
            }],
            routes: vec!["/test/looping/".into()],
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
            "looping-test does not take uploads",
        ))
    }

    fn sync(_repo: Repository) -> Result<Summary, Error> {
        Err(Error::new("unsupported", "looping-test does not sync"))
    }

    fn publish(_repo: Repository) -> Result<Published, Error> {
        Err(Error::new("unsupported", "looping-test does not publish"))
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

    fn select(_repo: Repository, _references: Vec<String>) -> Result<Vec<UnitRef>, Error> {
        spin()
    }

    fn edit(_repo: Repository, _change: Change) -> Result<Summary, Error> {
        spin()
    }

    fn resolve(_req: Request) -> Plan {
        spin()
    }
}

/// Burn CPU forever: `black_box` keeps the counter opaque to the optimizer,
/// so the loop stays a real loop.
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

wharf_sdk::export_plugin!(Looping);
