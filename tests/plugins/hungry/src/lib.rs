//! Test plugin `hungry`: `resolve`, `select` and `edit` allocate without
//! bound. The host's memory limit must stop them (a trap), and the host must
//! survive.

use wharf_sdk::{
    Change, ContentType, Error, Guest, Info, Plan, Published, Repository, Request, Source, Summary,
    UnitRef, Written,
};

struct Hungry;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

impl Guest for Hungry {
    fn describe() -> Info {
        Info {
            name: "hungry-test".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            content_types: vec![ContentType {
                name: "hungry-test".into(),
                description: "test plugin whose resolve, select and edit allocate without bound"
                    .into(),
            }],
            routes: vec!["/test/hungry/".into()],
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
            "hungry-test does not take uploads",
        ))
    }

    fn sync(_repo: Repository) -> Result<Summary, Error> {
        Err(Error::new("unsupported", "hungry-test does not sync"))
    }

    fn publish(_repo: Repository) -> Result<Published, Error> {
        Err(Error::new("unsupported", "hungry-test does not publish"))
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
        hoard()
    }

    fn edit(_repo: Repository, _change: Change) -> Result<Summary, Error> {
        hoard()
    }

    fn resolve(_req: Request) -> Plan {
        hoard()
    }
}

/// Allocate (and touch) memory until the host stops the call.
fn hoard() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let mut n: u8 = 0;
    loop {
        let mut chunk = vec![0u8; MIB];
        // Touch every page so the memory is really used, not just reserved.
        for i in (0..MIB).step_by(PAGE) {
            chunk[i] = n;
        }
        n = n.wrapping_add(1);
        hoard.push(std::hint::black_box(chunk));
        std::hint::black_box(&hoard);
    }
}

wharf_sdk::export_plugin!(Hungry);
