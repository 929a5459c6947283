//! Password guessing against the real binary: a burst of wrong passwords
//! for `admin`, and a spray over many logins through every path that takes
//! a password, from one loopback address (127.0.0.1), while the real admin
//! logs in from another (127.0.0.2: Linux routes all of 127/8 to loopback,
//! and the server counts failures by peer address). The attack may lock out
//! only its own address, argon2 stays bounded (the server's peak RSS), and
//! login tokens and registry tokens are not throttled at all.

use crate::support::*;
use futures::future::join_all;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const ATTACKER: &str = "127.0.0.1";
const ADMIN_ADDR: &str = "127.0.0.2";
/// The server's limits (host/wharf/src/auth/ratelimit.rs): failures of one login
/// from one address, and from one address, within 5 minutes.
const MAX_PER_LOGIN_ADDR: usize = 10;
const MAX_PER_ADDR: usize = 30;
/// Generous: an argon2 check takes 19 MiB; 40 of them at once once took
/// the server to 0.9 GiB.
const MAX_PEAK_RSS_KIB: u64 = 400 * 1024;

fn client_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `VmHWM` (peak resident set) and `VmRSS` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Every way to hand the server a password.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `POST /api/v1/login`.
    Login,
    /// HTTP basic on an API request.
    ApiBasic,
    /// The registry token endpoint, as `docker login` does.
    RegistryToken,
    /// HTTP basic sent to the registry directly.
    RegistryBasic,
}

const EVERY_WAY: [Via; 4] = [
    Via::Login,
    Via::ApiBasic,
    Via::RegistryToken,
    Via::RegistryBasic,
];

/// The status and `Retry-After` of one password check.
async fn try_password(
    c: &reqwest::Client,
    base: &str,
    via: Via,
    login: &str,
    password: &str,
) -> (u16, Option<u64>) {
    let r = match via {
        Via::Login => c.post(format!("{base}/api/v1/login")),
        Via::ApiBasic => c.get(format!("{base}/api/v1/me")),
        Via::RegistryToken => c.get(format!(
            "{base}/api/v1/registry/token?service=wharf&scope=repository:any/app:pull"
        )),
        Via::RegistryBasic => c.get(format!("{base}/v2/")),
    };
    let r = r.basic_auth(login, Some(password)).send().await.unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    (r.status().as_u16(), retry)
}

/// Sorts an attack's answers: wrong-password refusals (the checks that
/// ran) and throttled ones, each with a sane `Retry-After`.
fn tally(answers: &[(u16, Option<u64>)]) -> (usize, usize) {
    let (mut checked, mut throttled) = (0, 0);
    for (status, retry) in answers {
        match status {
            401 => checked += 1,
            429 => {
                let retry = retry.expect("a 429 says when to retry");
                assert!((1..=300).contains(&retry), "Retry-After: {retry}");
                throttled += 1;
            }
            other => panic!("an attacker's guess answered {other}"),
        }
    }
    (checked, throttled)
}

fn create_user(s: &Server, login: &str, password: &str) {
    let (status, v) = s.post_json(
        "/api/v1/users",
        &json!({"login": login, "name": login, "password": password}),
    );
    assert_eq!(status, 201, "{v}");
}

#[test]
fn a_burst_against_admin_leaves_the_real_admin_able_to_log_in() {
    let s = Server::start();
    create_user(&s, "jdev", "jdev-password");
    let pid = s.pid();
    let (hwm_before, rss_before) = memory_kib(pid);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = s.base.as_str();
    let attacker = client_from(ATTACKER);
    let admin = client_from(ADMIN_ADDR);
    let started = Instant::now();
    let (burst, hammering, admin_logins) = rt.block_on(async {
        // 300 wrong passwords at once...
        let burst = join_all((0..300).map(|i| {
            let password = format!("guess-{i}");
            let attacker = &attacker;
            async move { try_password(attacker, base, Via::Login, "admin", &password).await }
        }));
        // ...then 30 clients keep guessing for 3 s...
        let hammering = join_all((0..30).map(|w| {
            let attacker = &attacker;
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut answers = Vec::new();
                let until = Instant::now() + Duration::from_secs(3);
                let mut i = 0;
                while Instant::now() < until {
                    let password = format!("more-{w}-{i}");
                    answers
                        .push(try_password(attacker, base, Via::Login, "admin", &password).await);
                    i += 1;
                }
                answers
            }
        }));
        // ...while the real admin logs in from elsewhere, again and again.
        let admin_logins = async {
            let mut answers = Vec::new();
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let t = Instant::now();
                let (status, _) =
                    try_password(&admin, base, Via::Login, "admin", ADMIN_PASSWORD).await;
                answers.push((status, t.elapsed(), started.elapsed()));
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            answers
        };
        tokio::join!(burst, hammering, admin_logins)
    });
    let (hwm_after, _) = memory_kib(pid);
    let hammering: Vec<_> = hammering.into_iter().flatten().collect();
    eprintln!(
        "burst of 300 + {} more guesses in 3 s; admin logins (status, latency, at): {admin_logins:?}; \
         server RSS before {} MiB, VmHWM before {} MiB, after {} MiB",
        hammering.len(),
        rss_before / 1024,
        hwm_before / 1024,
        hwm_after / 1024,
    );
    for (status, latency, at) in &admin_logins {
        assert_eq!(*status, 200, "the real admin at {at:?} (took {latency:?})");
    }
    // Only the limit's worth of guesses was ever checked; the rest were
    // refused without costing an argon2 check.
    let all: Vec<_> = burst.iter().chain(&hammering).copied().collect();
    let (checked, throttled) = tally(&all);
    assert!(
        (1..=MAX_PER_LOGIN_ADDR).contains(&checked),
        "{checked} guesses checked"
    );
    assert_eq!(checked + throttled, all.len());
    assert!(
        hwm_after < MAX_PEAK_RSS_KIB,
        "peak RSS {} MiB",
        hwm_after / 1024
    );

    rt.block_on(async {
        // The attacker's address is locked out of admin, right password or not...
        let (status, retry) =
            try_password(&attacker, base, Via::Login, "admin", ADMIN_PASSWORD).await;
        assert_eq!(status, 429);
        assert!(retry.unwrap() > 60, "until the guesses age out: {retry:?}");
        // ...not out of other logins (that takes the address's own limit)...
        let (status, _) = try_password(&attacker, base, Via::Login, "jdev", "jdev-password").await;
        assert_eq!(status, 200);
        // ...and the admin elsewhere is not locked out at all.
        let (status, _) = try_password(&admin, base, Via::Login, "admin", ADMIN_PASSWORD).await;
        assert_eq!(status, 200);
    });
    // A login token issued before works from the attacker's address too.
    let (status, v) = s.get_json("/api/v1/me");
    assert_eq!(status, 200, "{v}");
}

#[test]
fn a_spray_over_many_logins_and_every_path_locks_out_only_its_address() {
    let s = Server::start();
    create_user(&s, "jdev", "jdev-password");
    let pid = s.pid();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = s.base.as_str();
    let attacker = client_from(ATTACKER);
    let admin = client_from(ADMIN_ADDR);
    let (hwm_before, _) = memory_kib(pid);
    let (spray, admin_answers) = rt.block_on(async {
        // 300 guesses at once over 300 logins (most unknown: each still
        // costs a dummy argon2 check) and every path that takes a password.
        let spray =
            join_all((0..300).map(|i| {
                let attacker = &attacker;
                let login = match i % 10 {
                    0 => "admin".to_string(),
                    1 => "jdev".to_string(),
                    _ => format!("guess{i}"),
                };
                async move {
                    try_password(attacker, base, EVERY_WAY[i % 4], &login, "wrong-password").await
                }
            }));
        let admin_answers = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut answers = Vec::new();
            for via in EVERY_WAY {
                let (status, _) = try_password(&admin, base, via, "admin", ADMIN_PASSWORD).await;
                answers.push((via, status));
            }
            answers
        };
        tokio::join!(spray, admin_answers)
    });
    for (via, status) in &admin_answers {
        assert_eq!(*status, 200, "the real admin via {via:?}");
    }
    // Every path counts against the one address: at most its limit was
    // checked, whatever the logins.
    let (checked, throttled) = tally(&spray);
    assert!(
        (1..=MAX_PER_ADDR).contains(&checked),
        "{checked} guesses checked"
    );
    assert_eq!(checked + throttled, spray.len());

    let registry_jwt = rt.block_on(async {
        // Most of the spray was refused untried (at most 4 checks from one
        // address at once): guess on, one at a time, until the address has
        // used exactly its failures.
        let mut more = 0;
        loop {
            let login = format!("late{more}");
            match try_password(&attacker, base, EVERY_WAY[more % 4], &login, "wrong").await {
                (401, _) => more += 1,
                (429, _) => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(checked + more, MAX_PER_ADDR);
        // 30 argon2 checks in all: memory does not grow with them.
        let (hwm_after, _) = memory_kib(pid);
        eprintln!(
            "spray of 300: {checked} checked, {throttled} refused, then {more} more one by one; \
             admin elsewhere {admin_answers:?}; VmHWM before {} MiB, after {} MiB",
            hwm_before / 1024,
            hwm_after / 1024
        );
        assert!(
            hwm_after < MAX_PEAK_RSS_KIB,
            "peak RSS {} MiB",
            hwm_after / 1024
        );
        // The address has used its failures: every path refuses every login
        // from it until they age out...
        for via in EVERY_WAY {
            let (status, retry) = try_password(&attacker, base, via, "jdev", "jdev-password").await;
            assert_eq!(status, 429, "jdev from the attacker's address via {via:?}");
            assert!(retry.is_some());
        }
        // ...and none from anywhere else.
        for via in EVERY_WAY {
            let (status, _) = try_password(&admin, base, via, "jdev", "jdev-password").await;
            assert_eq!(status, 200, "jdev from elsewhere via {via:?}");
        }
        let v: Value = admin
            .get(format!("{base}/api/v1/registry/token?service=wharf"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["token"].as_str().unwrap().to_string()
    });
    // Tokens are not throttled: a registry token and a login token work
    // from the locked-out address.
    let r = anonymous_client()
        .get(s.url("/v2/"))
        .bearer_auth(&registry_jwt)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, v) = s.get_json("/api/v1/me");
    assert_eq!(status, 200, "{v}");
}

/// A client that answers every registry challenge with HTTP basic auth
/// (`podman push` asks a token per layer scope, many at once) is not taken
/// for a guesser once its password checked out: the same credentials are
/// not hashed again for a minute. A wrong password gains nothing from it.
#[test]
fn a_checked_password_sent_again_in_a_burst_is_not_throttled() {
    let s = Server::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = |password: &'static str, scope: String| {
        let client = client_from(ATTACKER);
        let url = s.url(&format!(
            "/api/v1/registry/token?service=wharf&scope={scope}"
        ));
        async move {
            client
                .get(url)
                .basic_auth("admin", Some(password))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // The first check is a real one.
    assert_eq!(
        rt.block_on(token(ADMIN_PASSWORD, "repository:a/b:pull".into())),
        200
    );
    // Then twenty at once, each for its own scope, as podman sends them.
    let burst = (0..20).map(|i| token(ADMIN_PASSWORD, format!("repository:layer/{i}:pull")));
    let statuses = rt.block_on(join_all(burst));
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // A wrong password in a burst is still checked, and throttled.
    let burst = (0..20).map(|i| token("wrong-password", format!("repository:x/{i}:pull")));
    let statuses = rt.block_on(join_all(burst));
    assert!(!statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}
