//! Test plugin `looping`: `resolve` never returns. The host must interrupt it
//! (epoch/fuel deadline) and keep serving other requests.

use wharf_sdk::{
    ContentType, Error, Guest, Info, Plan, Published, Repository, Request, Source, Summary, Written,
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

    fn write(req: Request, _repo: Repository, _session: Option<String>) -> Written {
        Written::unsupported(&req)
    }

    fn resolve(_req: Request) -> Plan {
        // `black_box` keeps the counter opaque to the optimizer, so the loop
        // stays a real loop that burns CPU forever.
        let mut counter: u64 = 0;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

wharf_sdk::export_plugin!(Looping);
