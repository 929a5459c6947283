//! The store conformance suite: every backend must pass [`run_all`].
//! It is compiled in normal builds too so that backend crates and the
//! end-to-end tests can run it against a live server.

use super::*;

fn repo(id: &str, notes: &[(&str, &str)]) -> Repository {
    Repository {
        id: id.parse().unwrap(),
        content_type: "docker".into(),
        display_name: id.into(),
        description: String::new(),
        notes: notes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        importer_config: serde_json::json!({}),
        distributor_config: serde_json::json!({}),
        retain_versions: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn unit(t: &str, key: &str) -> Unit {
    Unit {
        unit_type: t.parse().unwrap(),
        key: key.into(),
        metadata: serde_json::json!({"k": key}),
        blobs: vec![Digest::of(key.as_bytes())],
    }
}

/// Run every conformance check against an empty store.
pub async fn run_all(s: &dyn Store) {
    repositories(s).await;
    groups(s).await;
    group_members(s).await;
    units_and_copy(s).await;
    publications(s).await;
    tasks_and_uploads(s).await;
    users_roles_permissions(s).await;
    tokens(s).await;
    installed_plugins(s).await;
    secrets(s).await;
    versions(s).await;
    retention_keeps_published_versions(s).await;
    blob_holders(s).await;
    repo_flags(s).await;
    schedules(s).await;
    remotes(s).await;
}

/// Remotes round-trip, are replaced whole, and list by id.
async fn remotes(s: &dyn Store) {
    use crate::db::{Remote, Transport};
    let id: wharf_core::ids::RemoteId = "hub".parse().unwrap();
    assert_eq!(s.get_remote(&id).await.unwrap(), None);
    let mut r = Remote {
        id: id.clone(),
        content_type: "docker".into(),
        settings: serde_json::json!({"feed": "https://hub.example", "password": "p"}),
        transport: Transport {
            rate_limit: Some(5),
            ..Transport::default()
        },
        created_at: crate::db::now(),
        updated_at: crate::db::now(),
    };
    s.put_remote(&r).await.unwrap();
    assert_eq!(s.get_remote(&id).await.unwrap(), Some(r.clone()));
    r.transport.tls_verify = false;
    s.put_remote(&r).await.unwrap();
    let mut other = r.clone();
    other.id = "a-first".parse().unwrap();
    s.put_remote(&other).await.unwrap();
    let all = s.list_remotes().await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a-first", "hub"]
    );
    assert!(!all[1].transport.tls_verify);
    assert!(s.delete_remote(&id).await.unwrap());
    assert!(!s.delete_remote(&id).await.unwrap());
    assert_eq!(s.list_remotes().await.unwrap().len(), 1);
}

/// Schedules round-trip, and of two swaps from one revision only the
/// first changes anything (how two nodes claim one due run).
async fn schedules(s: &dyn Store) {
    let first = Schedule::new(
        "sched-1".into(),
        ScheduledJob::Sync {
            repository: "r1".parse().unwrap(),
        },
        "2026-12-01T00:00:00Z/PT1H".into(),
        Some(Timestamp::now()),
    );
    s.put_schedule(&first).await.unwrap();
    assert_eq!(
        s.get_schedule("sched-1").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(s.list_schedules().await.unwrap(), vec![first.clone()]);

    let claim = |n: u8| {
        let mut c = first.clone();
        c.revision = 1;
        c.claim = Some(ScheduleClaim {
            due: first.next_run.clone().unwrap(),
            task: TaskId::new(),
            at: now(),
        });
        c.runs = u64::from(n);
        c
    };
    let (a, b) = (claim(1), claim(2));
    assert!(
        s.swap_schedule(0, &a).await.unwrap(),
        "the first claim wins"
    );
    assert!(!s.swap_schedule(0, &b).await.unwrap(), "the second loses");
    assert_eq!(s.get_schedule("sched-1").await.unwrap(), Some(a.clone()));
    let mut settled = a.clone();
    settled.claim = None;
    settled.revision = 2;
    assert!(s.swap_schedule(1, &settled).await.unwrap());
    let mut missing = settled.clone();
    missing.id = "nope".into();
    assert!(!s.swap_schedule(2, &missing).await.unwrap());
    assert!(s.get_schedule("nope").await.unwrap().is_none());
    assert!(s.delete_schedule("sched-1").await.unwrap());
    assert!(!s.delete_schedule("sched-1").await.unwrap());
    assert!(s.list_schedules().await.unwrap().is_empty());
}

fn origin(cause: VersionCause) -> VersionOrigin {
    VersionOrigin::new(cause, None)
}

fn import() -> VersionOrigin {
    origin(VersionCause::Import)
}

async fn repositories(s: &dyn Store) {
    s.ping().await.unwrap();
    s.create_repo(&repo("r1", &[("env", "prod")]))
        .await
        .unwrap();
    s.create_repo(&repo("r2", &[("env", "dev")])).await.unwrap();
    assert!(matches!(
        s.create_repo(&repo("r1", &[])).await,
        Err(StoreError::Conflict(_))
    ));
    let got = s.get_repo(&"r1".parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(got.notes["env"], "prod");

    let q = |notes: &[(&str, &str)]| RepoQuery {
        limit: 100,
        notes: notes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let ids = |v: Vec<Repository>| v.into_iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(s.list_repos(&q(&[])).await.unwrap()), ["r1", "r2"]);
    assert_eq!(
        ids(s.list_repos(&q(&[("env", "dev")])).await.unwrap()),
        ["r2"]
    );
    let page = RepoQuery {
        after: Some("r1".into()),
        limit: 1,
        ..Default::default()
    };
    assert_eq!(ids(s.list_repos(&page).await.unwrap()), ["r2"]);

    let mut r2 = got.clone();
    r2.notes.insert("env".into(), "dev".into());
    s.update_repo(&r2).await.unwrap();
    assert_eq!(
        ids(s.list_repos(&q(&[("env", "dev")])).await.unwrap()),
        ["r1", "r2"]
    );
    assert!(matches!(
        s.update_repo(&repo("nope", &[])).await,
        Err(StoreError::NotFound(_))
    ));

    // Found by a distributor setting, through its index; the index follows
    // updates, and keys or values it cannot hold match nothing.
    let by = |k: &str, v: &str| RepoQuery {
        limit: 100,
        setting: Some((k.to_string(), v.to_string())),
        ..Default::default()
    };
    let mut named = r2.clone();
    named.distributor_config = serde_json::json!({"repo_registry_id": "team/app", "n": 1});
    s.update_repo(&named).await.unwrap();
    assert_eq!(
        ids(s
            .list_repos(&by("repo_registry_id", "team/app"))
            .await
            .unwrap()),
        ["r1"]
    );
    assert!(
        s.list_repos(&by("repo_registry_id", "team"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.list_repos(&by("n", "1")).await.unwrap().is_empty());
    assert!(s.list_repos(&by("a.b", "x")).await.unwrap().is_empty());
    assert!(s.list_repos(&by("$where", "x")).await.unwrap().is_empty());
    named.distributor_config = serde_json::json!({"repo_registry_id": "team/other"});
    s.update_repo(&named).await.unwrap();
    assert!(
        s.list_repos(&by("repo_registry_id", "team/app"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(s
            .list_repos(&by("repo_registry_id", "team/other"))
            .await
            .unwrap()),
        ["r1"]
    );
}

async fn groups(s: &dyn Store) {
    let g = Group {
        id: "g1".parse().unwrap(),
        display_name: "G".into(),
        description: String::new(),
        notes: [("team".to_string(), "a".to_string())].into(),
        members: vec!["r1".parse().unwrap()],
    };
    s.create_group(&g).await.unwrap();
    assert!(matches!(
        s.create_group(&g).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_group(&g.id).await.unwrap().unwrap(), g);
    let mut bad = g.clone();
    bad.members.push("ghost".parse().unwrap());
    assert!(matches!(
        s.update_group(&bad, Members::Replace).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.get_group(&g.id).await.unwrap().unwrap(),
        g,
        "a failed update changes nothing"
    );
    let mut two = g.clone();
    two.members.push("r2".parse().unwrap());
    s.update_group(&two, Members::Replace).await.unwrap();
    let filter: Notes = [("team".to_string(), "a".to_string())].into();
    assert_eq!(s.list_groups(&filter).await.unwrap(), vec![two]);
    assert!(
        s.list_groups(&[("team".to_string(), "b".to_string())].into())
            .await
            .unwrap()
            .is_empty()
    );
    s.create_repo(&repo("tmp", &[])).await.unwrap();
    let mut with_tmp = g.clone();
    with_tmp.id = "g2".parse().unwrap();
    with_tmp.members = vec!["tmp".parse().unwrap()];
    s.create_group(&with_tmp).await.unwrap();
    s.delete_repo(&"tmp".parse().unwrap()).await.unwrap();
    assert!(
        s.get_group(&with_tmp.id)
            .await
            .unwrap()
            .unwrap()
            .members
            .is_empty(),
        "deleting a repository leaves its groups"
    );
    assert!(s.delete_group(&with_tmp.id).await.unwrap());
    assert!(!s.delete_group(&with_tmp.id).await.unwrap());
}

/// Members come and go one at a time: adds at once all land, and a change
/// of the group's fields alone keeps members added since it was read.
async fn group_members(s: &dyn Store) {
    let id: RepoId = "members".parse().unwrap();
    let read = Group {
        id: id.clone(),
        display_name: "M".into(),
        description: String::new(),
        notes: Notes::new(),
        members: vec![],
    };
    s.create_group(&read).await.unwrap();
    let repos: Vec<RepoId> = (0..8).map(|i| format!("m{i}").parse().unwrap()).collect();
    for r in &repos {
        s.create_repo(&repo(r.as_str(), &[])).await.unwrap();
    }
    let added =
        futures::future::join_all(repos.iter().map(|r| s.set_group_member(&id, r, true))).await;
    assert!(added.into_iter().all(|r| r.unwrap()), "each add changed it");
    assert!(!s.set_group_member(&id, &repos[0], true).await.unwrap());
    let mut renamed = read.clone();
    renamed.display_name = "renamed".into();
    s.update_group(&renamed, Members::Keep).await.unwrap();
    let now = s.get_group(&id).await.unwrap().unwrap();
    assert_eq!(
        (now.display_name.as_str(), now.members.clone()),
        ("renamed", repos.clone())
    );
    assert!(s.set_group_member(&id, &repos[3], false).await.unwrap());
    assert!(!s.set_group_member(&id, &repos[3], false).await.unwrap());
    let now = s.get_group(&id).await.unwrap().unwrap().members;
    assert_eq!(now.len(), 7);
    assert!(!now.contains(&repos[3]));
    let ghost: RepoId = "ghost".parse().unwrap();
    for (group, member) in [(&id, &ghost), (&ghost, &repos[0])] {
        assert!(
            matches!(
                s.set_group_member(group, member, true).await,
                Err(StoreError::NotFound(_))
            ),
            "{group} {member}"
        );
    }
    assert!(matches!(
        s.set_group_member(&ghost, &repos[0], false).await,
        Err(StoreError::NotFound(_))
    ));
    let mut gone = read.clone();
    gone.id = ghost;
    assert!(matches!(
        s.update_group(&gone, Members::Keep).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.delete_group(&id).await.unwrap());
    for r in &repos {
        s.delete_repo(r).await.unwrap();
    }
}

async fn units_and_copy(s: &dyn Store) {
    let (r1, r2): (RepoId, RepoId) = ("r1".parse().unwrap(), "r2".parse().unwrap());
    s.apply_changes(
        &r1,
        &[
            UnitChange::Add(unit("blob", "a")),
            UnitChange::Add(unit("blob", "b")),
        ],
        &import(),
    )
    .await
    .unwrap();
    // All or nothing: a change set for a missing repository writes nothing.
    let missing: RepoId = "missing".parse().unwrap();
    assert!(
        s.apply_changes(&missing, &[UnitChange::Add(unit("blob", "zzz"))], &import())
            .await
            .is_err()
    );
    assert!(
        !s.referenced_blobs()
            .await
            .unwrap()
            .contains(&Digest::of(b"zzz"))
    );

    let blob: UnitType = "blob".parse().unwrap();
    let keys = |v: Vec<Unit>| v.into_iter().map(|u| u.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list_units(&r1, &blob, None, 10).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        keys(s.list_units(&r1, &blob, Some("a"), 10).await.unwrap()),
        ["b"]
    );
    assert_eq!(
        s.get_unit(&r1, &blob, "a").await.unwrap().unwrap(),
        unit("blob", "a")
    );
    assert!(s.get_unit(&r2, &blob, "a").await.unwrap().is_none());

    let copy = origin(VersionCause::Copy);
    let made = s.copy_units(&r1, &r2, &[], &copy).await.unwrap().unwrap();
    assert_eq!(made.added[&blob], 2);
    assert_eq!(made.cause, VersionCause::Copy);
    assert_eq!(
        s.copy_units(&r1, &r2, &[], &copy).await.unwrap(),
        None,
        "copy is idempotent, and a copy that adds nothing makes no version"
    );
    assert_eq!(s.count_units(&r2).await.unwrap()[&blob], 2);
    let mut held = s.repo_blobs(&r1).await.unwrap();
    held.sort();
    let mut want = vec![Digest::of(b"a"), Digest::of(b"b")];
    want.sort();
    assert_eq!(held, want);
    assert_eq!(
        s.repos_holding_blob(&Digest::of(b"a")).await.unwrap(),
        vec![r1.clone(), r2.clone()]
    );
    assert!(
        s.repos_holding_blob(&Digest::of(b"zzz"))
            .await
            .unwrap()
            .is_empty()
    );

    s.apply_changes(
        &r1,
        &[UnitChange::Remove {
            unit_type: "blob".parse().unwrap(),
            key: "a".into(),
        }],
        &origin(VersionCause::Remove),
    )
    .await
    .unwrap();
    assert_eq!(
        keys(s.list_units(&r1, &blob, None, 10).await.unwrap()),
        ["b"]
    );
    // Still referenced by r2: not an orphan.
    assert_eq!(s.remove_orphan_units().await.unwrap(), 0);
    assert_eq!(s.repo_blobs(&r1).await.unwrap(), vec![Digest::of(b"b")]);
    assert_eq!(
        s.repos_holding_blob(&Digest::of(b"a")).await.unwrap(),
        vec![r2.clone()]
    );
    s.apply_changes(
        &r2,
        &[UnitChange::Remove {
            unit_type: "blob".parse().unwrap(),
            key: "a".into(),
        }],
        &origin(VersionCause::Remove),
    )
    .await
    .unwrap();
    assert_eq!(
        s.remove_orphan_units().await.unwrap(),
        0,
        "earlier versions of r1 and r2 still hold a"
    );
    // Keeping one version drops the older ones at the next change: then
    // nothing holds a.
    for id in [&r1, &r2] {
        let mut r = s.get_repo(id).await.unwrap().unwrap();
        r.retain_versions = Some(1);
        s.update_repo(&r).await.unwrap();
        s.apply_changes(id, &[UnitChange::Add(unit("blob", "c"))], &import())
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(s.remove_orphan_units().await.unwrap(), 1);
    let left = s.referenced_blobs().await.unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&Digest::of(b"b")) && left.contains(&Digest::of(b"c")));
}

/// `repo_flags`: each repository with whether a setting is `true`, in id
/// order, a page at a time; a string "true" or another key is not.
async fn repo_flags(s: &dyn Store) {
    for (id, config) in [
        ("flag-a", serde_json::json!({"protected": true})),
        ("flag-b", serde_json::json!({"protected": false})),
        ("flag-c", serde_json::json!({"protected": "true"})),
        ("flag-d", serde_json::json!({"other": true})),
        (
            "flag-e",
            serde_json::json!({"protected": true, "repo_registry_id": "x"}),
        ),
    ] {
        let mut r = repo(id, &[]);
        r.distributor_config = config;
        s.create_repo(&r).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = Some("flag-".into());
    loop {
        let page = s
            .repo_flags("protected", after.as_deref(), 2)
            .await
            .unwrap();
        let page: Vec<_> = page
            .into_iter()
            .filter(|(id, _)| id.as_str().starts_with("flag-"))
            .collect();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(id, _)| id.to_string());
        seen.extend(page.into_iter().map(|(id, on)| (id.to_string(), on)));
    }
    let want: Vec<(String, bool)> = [
        ("flag-a", true),
        ("flag-b", false),
        ("flag-c", false),
        ("flag-d", false),
        ("flag-e", true),
    ]
    .into_iter()
    .map(|(id, on)| (id.to_string(), on))
    .collect();
    assert_eq!(seen, want);
    for id in ["flag-a", "flag-b", "flag-c", "flag-d", "flag-e"] {
        s.delete_repo(&id.parse().unwrap()).await.unwrap();
    }
}

/// Which repositories hold a blob (`repo_holds_blob`,
/// `repos_holding_blob`) follows every write that moves an association:
/// changes, copies, history imports, removals, and a repository deleted and made again under its id.
async fn blob_holders(s: &dyn Store) {
    let (a, b): (RepoId, RepoId) = ("holds-a".parse().unwrap(), "holds-b".parse().unwrap());
    for id in [&a, &b] {
        s.create_repo(&repo(id.as_str(), &[])).await.unwrap();
    }
    let (layer, shared, other) = (
        Digest::of(b"holds-layer"),
        Digest::of(b"holds-shared"),
        Digest::of(b"holds-other"),
    );
    let manifest = |key: &str, blobs: &[&Digest]| Unit {
        unit_type: "manifest".parse().unwrap(),
        key: key.into(),
        metadata: serde_json::json!({}),
        blobs: blobs.iter().map(|d| (*d).clone()).collect(),
    };
    let holds = |id: &RepoId, d: &Digest| {
        let (id, d) = (id.clone(), d.clone());
        async move { s.repo_holds_blob(&id, &d).await.unwrap() }
    };
    s.apply_changes(
        &a,
        &[
            UnitChange::Add(manifest("holds-m1", &[&layer, &shared])),
            UnitChange::Add(manifest("holds-m2", &[&shared])),
        ],
        &import(),
    )
    .await
    .unwrap();
    assert!(holds(&a, &layer).await && holds(&a, &shared).await);
    assert!(!holds(&a, &other).await && !holds(&b, &layer).await);
    // The units naming a blob, a page at a time.
    let naming = |id: &RepoId, d: &Digest, after: Option<&str>| {
        let (id, d, after) = (id.clone(), d.clone(), after.map(str::to_string));
        async move {
            let manifest: UnitType = "manifest".parse().unwrap();
            let units = s
                .list_units_naming(&id, &d, &manifest, after.as_deref(), 1)
                .await
                .unwrap();
            units.into_iter().map(|u| u.key).collect::<Vec<_>>()
        }
    };
    assert_eq!(naming(&a, &shared, None).await, ["holds-m1"]);
    assert_eq!(naming(&a, &shared, Some("holds-m1")).await, ["holds-m2"]);
    assert!(naming(&a, &shared, Some("holds-m2")).await.is_empty());
    assert!(naming(&b, &shared, None).await.is_empty());
    let tags = s
        .list_units_naming(&a, &shared, &"tag".parse().unwrap(), None, 10)
        .await
        .unwrap();
    assert!(tags.is_empty(), "another type");
    assert_eq!(s.repos_holding_blob(&layer).await.unwrap(), vec![a.clone()]);

    // A copy holds what it copied.
    s.copy_units(&a, &b, &[], &origin(VersionCause::Copy))
        .await
        .unwrap();
    assert!(holds(&b, &layer).await);
    assert_eq!(
        s.repos_holding_blob(&shared).await.unwrap(),
        vec![a.clone(), b.clone()]
    );

    // Removing one unit keeps a blob another unit still names.
    let remove = |key: &str| UnitChange::Remove {
        unit_type: "manifest".parse().unwrap(),
        key: key.into(),
    };
    s.apply_changes(&a, &[remove("holds-m1")], &origin(VersionCause::Remove))
        .await
        .unwrap();
    assert!(!holds(&a, &layer).await, "only the removed unit named it");
    assert!(holds(&a, &shared).await, "holds-m2 still names it");
    assert!(holds(&b, &layer).await, "the copy is its own");

    // A history import adds what its entries hold; one for a key the
    // repository holds already (written over in place) loses nothing.
    let entry = |u: Unit| HistoryEntry {
        unit: u,
        added_in: 1,
        removed_in: None,
    };
    s.import_history(
        &b,
        &[
            entry(manifest("holds-m1", &[&layer, &shared])),
            entry(manifest("holds-m3", &[&other])),
        ],
        &[],
    )
    .await
    .unwrap();
    assert!(holds(&b, &other).await && holds(&b, &layer).await && holds(&b, &shared).await);

    // A repository deleted and made again under its id holds nothing.
    assert!(s.delete_repo(&b).await.unwrap());
    assert_eq!(
        s.repos_holding_blob(&other).await.unwrap(),
        Vec::<RepoId>::new()
    );
    s.create_repo(&repo(b.as_str(), &[])).await.unwrap();
    for d in [&layer, &shared, &other] {
        assert!(!holds(&b, d).await, "{d} held by a new repository");
    }
    assert_eq!(
        s.repos_holding_blob(&shared).await.unwrap(),
        vec![a.clone()]
    );
    for id in [&a, &b] {
        s.delete_repo(id).await.unwrap();
    }
}

/// Repository versions (`db::version`): numbering, content, diffs, copies
/// of chosen units, concurrent changes, the version limit and history.
async fn versions(s: &dyn Store) {
    let layer: UnitType = "layer".parse().unwrap();
    let (v1, v2): (RepoId, RepoId) = ("v1".parse().unwrap(), "v2".parse().unwrap());
    let add = |k: &str| UnitChange::Add(unit("layer", k));
    let remove = |k: &str| UnitChange::Remove {
        unit_type: "layer".parse().unwrap(),
        key: k.into(),
    };
    let r = |k: &str| UnitRef {
        unit_type: "layer".parse().unwrap(),
        key: k.into(),
    };
    let keys = |v: Vec<Unit>| v.into_iter().map(|u| u.key).collect::<Vec<_>>();
    let numbers = |v: Vec<RepoVersion>| v.into_iter().map(|v| v.number).collect::<Vec<_>>();
    s.create_repo(&repo("v1", &[])).await.unwrap();
    s.create_repo(&repo("v2", &[])).await.unwrap();

    let v0 = s.latest_version(&v1).await.unwrap().unwrap();
    assert_eq!((v0.number, v0.cause), (0, VersionCause::Created));
    assert!(v0.content.is_empty());

    let one = s
        .apply_changes(&v1, &[add("a"), add("b")], &import())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (one.number, one.added[&layer], one.content[&layer]),
        (1, 2, 2)
    );
    assert_eq!(
        s.apply_changes(&v1, &[add("a"), remove("zz")], &import())
            .await
            .unwrap(),
        None,
        "adding what it holds and removing what it does not changes nothing"
    );
    let two = s
        .apply_changes(&v1, &[remove("a"), add("c")], &origin(VersionCause::Push))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two.number, 2);
    assert_eq!((two.added[&layer], two.removed[&layer]), (1, 1));
    assert_eq!(two.cause, VersionCause::Push);
    // The last change staged for a unit wins.
    let three = s
        .apply_changes(&v1, &[add("d"), remove("d"), remove("b")], &import())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((three.number, three.changed()), (3, 1));
    s.apply_changes(&v1, &[add("b")], &import())
        .await
        .unwrap()
        .unwrap();

    assert!(
        keys(
            s.list_version_units(&v1, 0, &layer, None, 10)
                .await
                .unwrap()
        )
        .is_empty()
    );
    assert_eq!(
        keys(
            s.list_version_units(&v1, 1, &layer, None, 10)
                .await
                .unwrap()
        ),
        ["a", "b"]
    );
    assert_eq!(
        keys(
            s.list_version_units(&v1, 2, &layer, None, 10)
                .await
                .unwrap()
        ),
        ["b", "c"]
    );
    assert_eq!(
        keys(
            s.list_version_units(&v1, 3, &layer, None, 10)
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        keys(
            s.list_version_units(&v1, 4, &layer, None, 10)
                .await
                .unwrap()
        ),
        ["b", "c"]
    );
    assert_eq!(
        keys(
            s.list_version_units(&v1, 2, &layer, Some("b"), 10)
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        keys(s.list_version_units(&v1, 1, &layer, None, 1).await.unwrap()),
        ["a"]
    );
    assert_eq!(
        keys(s.list_units(&v1, &layer, None, 10).await.unwrap()),
        ["b", "c"]
    );
    assert!(
        s.get_version_unit(&v1, 1, &layer, "a")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.get_version_unit(&v1, 2, &layer, "a")
            .await
            .unwrap()
            .is_none()
    );
    // Each key counts from the version that gave it its unit: "b" was
    // removed in 3 and added again in 4.
    assert_eq!(
        s.list_unit_additions(&v1, &layer, None, 10).await.unwrap(),
        [("b".to_string(), 4), ("c".to_string(), 2)]
    );
    assert_eq!(
        s.list_unit_additions(&v1, &layer, Some("b"), 1)
            .await
            .unwrap(),
        [("c".to_string(), 2)]
    );
    let mut blobs = s.version_blobs(&v1, 1).await.unwrap();
    blobs.sort();
    let mut want = vec![Digest::of(b"a"), Digest::of(b"b")];
    want.sort();
    assert_eq!(blobs, want);
    // Counted per unit naming a blob: "c" names "b" too, "b" came back in 4.
    let shared = Unit {
        blobs: vec![Digest::of(b"b"), Digest::of(b"c")],
        ..unit("layer", "shares-b")
    };
    s.create_repo(&repo("vb", &[])).await.unwrap();
    let vb: RepoId = "vb".parse().unwrap();
    s.apply_changes(&vb, &[add("b"), UnitChange::Add(shared)], &import())
        .await
        .unwrap()
        .unwrap();
    let mut refs = s.version_blob_refs(&vb, 1).await.unwrap();
    refs.sort();
    let mut want = vec![(Digest::of(b"b"), 2), (Digest::of(b"c"), 1)];
    want.sort();
    assert_eq!(refs, want);
    assert!(s.version_blob_refs(&vb, 0).await.unwrap().is_empty());
    s.delete_repo(&vb).await.unwrap();

    let d = s.diff_versions(&v1, 1, 2).await.unwrap();
    assert_eq!((d.added, d.removed), (vec![r("c")], vec![r("a")]));
    let d = s.diff_versions(&v1, 2, 1).await.unwrap();
    assert_eq!((d.added, d.removed), (vec![r("a")], vec![r("c")]));
    let d = s.diff_versions(&v1, 2, 4).await.unwrap();
    assert!(
        d.added.is_empty() && d.removed.is_empty(),
        "b went and came back: {d:?}"
    );
    let d = s.diff_versions(&v1, 0, 4).await.unwrap();
    assert_eq!((d.added, d.removed), (vec![r("b"), r("c")], vec![]));
    assert!(matches!(
        s.diff_versions(&v1, 0, 99).await,
        Err(StoreError::NotFound(_))
    ));

    assert_eq!(
        numbers(s.list_versions(&v1, None, 100).await.unwrap()),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(
        numbers(s.list_versions(&v1, Some(2), 100).await.unwrap()),
        [3, 4]
    );
    assert_eq!(s.get_version(&v1, 2).await.unwrap().unwrap(), two);

    // A copy of one type: only those, once, as a version of the target.
    let copy = origin(VersionCause::Copy);
    let vt: RepoId = "vt".parse().unwrap();
    s.create_repo(&repo("vt", &[])).await.unwrap();
    s.apply_changes(
        &vt,
        &[UnitChange::Add(unit("tag", "t1")), add("q")],
        &import(),
    )
    .await
    .unwrap()
    .unwrap();
    let tags: UnitType = "tag".parse().unwrap();
    let only_tags = std::slice::from_ref(&tags);
    let c1 = s
        .copy_units(&vt, &v2, only_tags, &copy)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c1.number, c1.added[&tags], c1.content.len()), (1, 1, 1));
    assert!(
        s.list_units(&v2, &layer, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.copy_units(&vt, &v2, only_tags, &copy).await.unwrap(),
        None
    );
    assert_eq!(s.latest_version(&v2).await.unwrap().unwrap().number, 1);

    // Concurrent changes number versions without gaps or duplicates.
    let changes: Vec<Vec<UnitChange>> = (0..8).map(|i| vec![add(&format!("n{i}"))]).collect();
    let imp = import();
    let made =
        futures::future::join_all(changes.iter().map(|c| s.apply_changes(&v1, c, &imp))).await;
    let mut made: Vec<u64> = made
        .into_iter()
        .map(|v| v.unwrap().unwrap().number)
        .collect();
    made.sort();
    assert_eq!(made, (5..13).collect::<Vec<_>>());
    assert_eq!(
        numbers(s.list_versions(&v1, None, 100).await.unwrap()),
        (0..13).collect::<Vec<_>>()
    );
    assert_eq!(
        s.latest_version(&v1).await.unwrap().unwrap().content[&layer],
        10
    );

    // History out and in again (db export / import).
    let mut history = Vec::new();
    let mut after: Option<(UnitRef, u64)> = None;
    loop {
        let page = s.list_history(&v1, after.as_ref(), 3).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((r(&last.unit.key), last.added_in));
        history.extend(page);
    }
    assert_eq!(
        history.len(),
        12,
        "b twice, a retired, d never held: {history:?}"
    );
    let copy_of = |v: RepoVersion| RepoVersion {
        repo_id: "v3".parse().unwrap(),
        ..v
    };
    let kept: Vec<RepoVersion> = s.list_versions(&v1, None, 100).await.unwrap();
    let v3: RepoId = "v3".parse().unwrap();
    s.create_repo(&repo("v3", &[])).await.unwrap();
    s.import_history(&v3, &history, &[]).await.unwrap();
    s.import_history(
        &v3,
        &[],
        &kept.iter().cloned().map(copy_of).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    for n in [1, 2, 4, 12] {
        assert_eq!(
            keys(
                s.list_version_units(&v3, n, &layer, None, 100)
                    .await
                    .unwrap()
            ),
            keys(
                s.list_version_units(&v1, n, &layer, None, 100)
                    .await
                    .unwrap()
            ),
            "version {n} imported"
        );
    }
    assert_eq!(s.latest_version(&v3).await.unwrap().unwrap().number, 12);
    let next = s
        .apply_changes(&v3, &[add("x")], &import())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next.number, 13,
        "an imported repository goes on from its latest version"
    );
    assert!(s.delete_repo(&v3).await.unwrap());
    s.create_repo(&repo("v3", &[])).await.unwrap();
    assert_eq!(
        numbers(s.list_versions(&v3, None, 100).await.unwrap()),
        [0],
        "a deleted repository leaves no versions behind"
    );

    // Keeping 2 versions: the older ones go at the next change, and so do
    // units only they held (a was removed in version 2).
    let mut r1 = s.get_repo(&v1).await.unwrap().unwrap();
    r1.retain_versions = Some(2);
    s.update_repo(&r1).await.unwrap();
    assert!(s.delete_repo(&v3).await.unwrap());
    s.apply_changes(&v1, &[remove("n0")], &origin(VersionCause::Remove))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        numbers(s.list_versions(&v1, None, 100).await.unwrap()),
        [12, 13]
    );
    assert!(s.get_version(&v1, 2).await.unwrap().is_none());
    assert!(matches!(
        s.diff_versions(&v1, 2, 13).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        keys(
            s.list_version_units(&v1, 12, &layer, Some("m"), 100)
                .await
                .unwrap()
        )
        .len(),
        8
    );
    s.remove_orphan_units().await.unwrap();
    let referenced = s.referenced_blobs().await.unwrap();
    assert!(
        !referenced.contains(&Digest::of(b"a")),
        "a: only old versions held it"
    );
    assert!(!referenced.contains(&Digest::of(b"d")), "d: never held");
    assert!(
        referenced.contains(&Digest::of(b"n0")),
        "n0: version 12 holds it"
    );
    assert!(
        referenced.contains(&Digest::of(b"c")),
        "c: v1 and v2 hold it"
    );
}

/// The version limit keeps the version a publication serves, with what
/// it holds.
async fn retention_keeps_published_versions(s: &dyn Store) {
    let add = |k: &str| UnitChange::Add(unit("layer", k));
    let remove = |k: &str| UnitChange::Remove {
        unit_type: "layer".parse().unwrap(),
        key: k.into(),
    };
    let mut kept = repo("vk", &[]);
    kept.retain_versions = Some(2);
    s.create_repo(&kept).await.unwrap();
    let vk: RepoId = "vk".parse().unwrap();
    s.apply_changes(&vk, &[add("p1")], &import())
        .await
        .unwrap()
        .unwrap();
    s.put_publication(&Publication {
        plugin: "docker".into(),
        name: "vk".into(),
        repo_id: vk.clone(),
        index: Digest::of(b"vk index"),
        version: Some(1),
        config: serde_json::json!({}),
        published_at: now(),
        blobs: vec![],
    })
    .await
    .unwrap();
    for change in [
        vec![remove("p1"), add("p2")],
        vec![add("p3")],
        vec![add("p4")],
    ] {
        s.apply_changes(&vk, &change, &import())
            .await
            .unwrap()
            .unwrap();
    }
    let numbers: Vec<u64> = s
        .list_versions(&vk, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.number)
        .collect();
    assert_eq!(numbers, [1, 3, 4], "the published version stays");
    assert_eq!(
        s.version_blob_refs(&vk, 1).await.unwrap(),
        [(Digest::of(b"p1"), 1)],
        "with what it holds"
    );
    let d = s.diff_versions(&vk, 1, 4).await.unwrap();
    assert_eq!((d.added.len(), d.removed.len()), (3, 1));
    s.remove_orphan_units().await.unwrap();
    assert!(
        s.referenced_blobs()
            .await
            .unwrap()
            .contains(&Digest::of(b"p1"))
    );
    assert!(s.delete_repo(&vk).await.unwrap());
}

async fn publications(s: &dyn Store) {
    let p = |name: &str, repo: &str| Publication {
        plugin: "docker".into(),
        name: name.into(),
        repo_id: repo.parse().unwrap(),
        index: Digest::of(name.as_bytes()),
        version: Some(1),
        config: serde_json::json!({}),
        published_at: now(),
        blobs: vec![Digest::of(b"generated")],
    };
    let start = s.publication_seq().await.unwrap();
    s.put_publication(&p("my/app", "r1")).await.unwrap();
    s.put_publication(&p("my/app2", "r1")).await.unwrap(); // renames r1's publication
    s.put_publication(&p("other", "r2")).await.unwrap();
    let names: Vec<_> = s
        .list_publications()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["my/app2", "other"]);
    publication_pages(s).await;
    let listed = s.list_publications().await.unwrap();
    assert_eq!(listed[0].blobs, [Digest::of(b"generated")], "kept");
    assert!(
        s.referenced_blobs()
            .await
            .unwrap()
            .contains(&Digest::of(b"generated")),
        "what a publication serves is referenced"
    );
    assert!(s.delete_repo(&"r2".parse().unwrap()).await.unwrap());
    let names: Vec<_> = s
        .list_publications()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        names,
        ["my/app2"],
        "a deleted repository's publication goes with it"
    );

    // One setting changed in place; everything else of it stays.
    let r1 = "r1".parse().unwrap();
    let on = serde_json::json!(true);
    assert_eq!(
        s.set_publication_setting(&r1, "protected", &on)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.set_publication_setting(&r1, "protected", &on)
            .await
            .unwrap(),
        0,
        "unchanged"
    );
    let listed = s.list_publications().await.unwrap();
    assert_eq!(listed[0].config, serde_json::json!({"protected": true}));
    assert_eq!(
        (&listed[0].name, &listed[0].index, &listed[0].blobs),
        (
            &"my/app2".to_string(),
            &Digest::of(b"my/app2"),
            &vec![Digest::of(b"generated")]
        )
    );
    let none = "nothing".parse().unwrap();
    assert_eq!(
        s.set_publication_setting(&none, "protected", &on)
            .await
            .unwrap(),
        0
    );
    publication_feed(s, start).await;
}

/// Pages of publications follow one another in (plugin, name) order, and
/// a name is found by itself. Holds "my/app2" (r1) and "other" (r2).
async fn publication_pages(s: &dyn Store) {
    let names =
        |page: Vec<Publication>| -> Vec<String> { page.into_iter().map(|p| p.name).collect() };
    let page = |after, limit| s.publications_after(after, limit);
    assert_eq!(names(page(None, 1).await.unwrap()), ["my/app2"]);
    assert_eq!(
        names(page(Some(("docker", "my/app2")), 10).await.unwrap()),
        ["other"]
    );
    assert!(
        page(Some(("docker", "other")), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Past a plugin's last name come the next plugin's first names.
    assert_eq!(
        names(page(Some(("ct", "zzz")), 10).await.unwrap()),
        ["my/app2", "other"]
    );
    assert!(page(Some(("e", "")), 10).await.unwrap().is_empty());
    let found = s.publication_named("docker", "other").await.unwrap();
    assert_eq!(found.map(|p| p.repo_id.to_string()), Some("r2".into()));
    for (plugin, name) in [("docker", "my/app"), ("file", "other"), ("docker", "othe")] {
        assert!(
            s.publication_named(plugin, name).await.unwrap().is_none(),
            "{plugin} {name}"
        );
    }
}

/// Following the change feed from `start` (read before any publication
/// was made) leaves a copy equal to the publications; a deleted
/// repository's publication is told gone; pages follow one another.
async fn publication_feed(s: &dyn Store, start: u64) {
    let seq = s.publication_seq().await.unwrap();
    assert!(seq > start, "{seq} > {start}");
    let all = s.publication_changes(start, 100).await.unwrap();
    assert_eq!(all.last().map(|c| c.seq), Some(seq));
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");
    let mut copy = std::collections::BTreeMap::new();
    for c in &all {
        match &c.publication {
            Some(p) => copy.insert((c.plugin.clone(), c.repo_id.clone()), p.clone()),
            None => copy.remove(&(c.plugin.clone(), c.repo_id.clone())),
        };
    }
    let listed = s.list_publications().await.unwrap();
    assert_eq!(copy.into_values().collect::<Vec<_>>(), listed);
    let r2 = all
        .iter()
        .find(|c| c.repo_id.as_str() == "r2")
        .expect("r2's publication went with it");
    assert_eq!(r2.publication, None);
    // Told once each, at its last change: r1 and r2.
    assert_eq!(all.len(), 2, "{all:?}");
    let first = s.publication_changes(start, 1).await.unwrap();
    let rest = s.publication_changes(first[0].seq, 100).await.unwrap();
    assert_eq!([first, rest].concat(), all);
    assert!(s.publication_changes(seq, 100).await.unwrap().is_empty());
    // Nothing changed, nothing told.
    let on = serde_json::json!(true);
    let r1 = "r1".parse().unwrap();
    s.set_publication_setting(&r1, "protected", &on)
        .await
        .unwrap();
    assert_eq!(s.publication_seq().await.unwrap(), seq);
}

async fn tasks_and_uploads(s: &dyn Store) {
    let mut t = Task {
        id: TaskId::new(),
        kind: TaskKind::Publish,
        state: TaskState::Waiting,
        locks: vec![TaskLock::Repository("r1".parse().unwrap())],
        worker: None,
        created_at: now(),
        started_at: None,
        finished_at: None,
        progress: Progress::default(),
        result: None,
        error: None,
        input: serde_json::json!({}),
        cancel_requested: false,
        log: Vec::new(),
    };
    s.put_task(&t).await.unwrap();
    // A cancel request survives a later progress write of the running task.
    assert!(s.request_task_cancel(&t.id).await.unwrap());
    t.state = TaskState::Running;
    t.progress.items_done = 1;
    t.push_log(
        crate::db::TaskLogLevel::Warn,
        "tag v1 vanished upstream".into(),
    );
    assert!(s.update_live_task(&t).await.unwrap());
    let stored = s.get_task(&t.id).await.unwrap().unwrap();
    assert!(
        stored.cancel_requested
            && stored.progress.items_done == 1
            && stored.state == TaskState::Running
    );
    assert_eq!(stored.log, t.log, "log lines are kept with the record");
    t.state = TaskState::Finished;
    s.put_task(&t).await.unwrap();
    // Once ended, a late progress write or cancel changes nothing.
    let mut late = t.clone();
    late.state = TaskState::Running;
    assert!(!s.update_live_task(&late).await.unwrap());
    assert!(!s.request_task_cancel(&t.id).await.unwrap());
    assert_eq!(
        s.get_task(&t.id).await.unwrap().unwrap().state,
        TaskState::Finished
    );
    let q = TaskQuery {
        state: Some(TaskState::Finished),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(s.list_tasks(&q).await.unwrap().len(), 1);
    let q = TaskQuery {
        lock: Some(TaskLock::Repository("zz".parse().unwrap())),
        limit: 10,
        ..Default::default()
    };
    assert!(s.list_tasks(&q).await.unwrap().is_empty());

    // A lock's tasks, newest first, a page at a time, also by state; a
    // task holding two locks is found under each.
    let lock = |id: &str| TaskLock::Repository(id.parse().unwrap());
    let mut made = Vec::new();
    for (i, locks) in [
        vec![lock("locked-a")],
        vec![lock("locked-b")],
        vec![lock("locked-a"), TaskLock::Orphans],
        vec![lock("locked-a")],
        vec![lock("locked-b"), lock("locked-a")],
    ]
    .into_iter()
    .enumerate()
    {
        let mut task = t.clone();
        task.id = TaskId::new();
        task.locks = locks;
        task.state = if i == 3 {
            TaskState::Waiting
        } else {
            TaskState::Finished
        };
        s.put_task(&task).await.unwrap();
        made.push(task);
    }
    let newest_first = |pick: &dyn Fn(&Task) -> bool| {
        let mut ids: Vec<TaskId> = made.iter().filter(|t| pick(t)).map(|t| t.id).collect();
        ids.sort_by_key(|id| std::cmp::Reverse(id.to_string()));
        ids
    };
    let listed = |q: TaskQuery| async move {
        let tasks = s.list_tasks(&q).await.unwrap();
        tasks.iter().map(|t| t.id).collect::<Vec<TaskId>>()
    };
    let held_a = |t: &Task| t.locks.contains(&lock("locked-a"));
    let all_a = newest_first(&held_a);
    assert_eq!(all_a.len(), 4);
    let page = TaskQuery {
        lock: Some(lock("locked-a")),
        limit: 2,
        ..Default::default()
    };
    assert_eq!(listed(page.clone()).await, all_a[..2]);
    assert_eq!(
        listed(TaskQuery {
            limit: 10,
            ..page.clone()
        })
        .await,
        all_a
    );
    assert_eq!(
        listed(TaskQuery {
            state: Some(TaskState::Waiting),
            limit: 10,
            ..page.clone()
        })
        .await,
        vec![made[3].id]
    );
    assert_eq!(
        listed(TaskQuery {
            lock: Some(TaskLock::Orphans),
            limit: 10,
            ..Default::default()
        })
        .await,
        vec![made[2].id]
    );

    let l = crate::db::Listener {
        id: "l1".into(),
        target: crate::db::Target::Http {
            url: "http://127.0.0.1:1/".into(),
            secret: "s".into(),
        },
        events: vec!["task.*".into()],
        created_at: now(),
    };
    s.put_listener(&l).await.unwrap();
    assert_eq!(s.list_listeners().await.unwrap(), vec![l]);
    assert!(s.delete_listener("l1").await.unwrap());
    assert!(!s.delete_listener("l1").await.unwrap());

    let mut u = Upload {
        id: UploadId::new(),
        size: Some(10),
        offset: 4,
        created_at: now(),
        sealed: None,
    };
    s.put_upload(&u).await.unwrap();
    assert_eq!(s.get_upload(&u.id).await.unwrap().unwrap(), u);
    u.offset = 10;
    u.sealed = Some(Digest::of(b"sealed"));
    s.put_upload(&u).await.unwrap();
    assert_eq!(s.get_upload(&u.id).await.unwrap().unwrap(), u);
    assert!(s.delete_upload(&u.id).await.unwrap());
    assert!(s.get_upload(&u.id).await.unwrap().is_none());
}

fn user(login: &str, roles: &[&str]) -> User {
    User {
        login: login.into(),
        name: login.to_uppercase(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        source: UserSource::Local,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        created_at: now(),
        updated_at: now(),
    }
}

async fn users_roles_permissions(s: &dyn Store) {
    let role = |id: &str| Role {
        id: id.into(),
        description: format!("{id} role"),
        users: vec![],
    };
    s.create_role(&role("contributor")).await.unwrap();
    s.create_role(&role("repo_admin")).await.unwrap();
    assert!(matches!(
        s.create_role(&role("contributor")).await,
        Err(StoreError::Conflict(_))
    ));
    // A user's roles must exist; a failed create stores nothing.
    assert!(matches!(
        s.create_user(&user("ghost", &["nope"])).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.get_user("ghost").await.unwrap().is_none());
    s.create_user(&user("jdev", &["contributor"]))
        .await
        .unwrap();
    s.create_user(&user("madmin", &[])).await.unwrap();
    assert!(matches!(
        s.create_user(&user("jdev", &[])).await,
        Err(StoreError::Conflict(_))
    ));
    let got = s.get_user("jdev").await.unwrap().unwrap();
    let want = user("jdev", &["contributor"]);
    assert_eq!(
        (got.name, got.password_hash, got.source, got.roles),
        (want.name, want.password_hash, want.source, want.roles)
    );

    assert!(
        s.set_role_member("repo_admin", "madmin", true)
            .await
            .unwrap()
    );
    assert!(
        !s.set_role_member("repo_admin", "madmin", true)
            .await
            .unwrap()
    );
    assert!(matches!(
        s.set_role_member("repo_admin", "nobody", true).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.get_role("repo_admin").await.unwrap().unwrap().users,
        ["madmin"]
    );
    assert_eq!(
        s.get_user("madmin").await.unwrap().unwrap().roles,
        ["repo_admin"]
    );
    let logins: Vec<_> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.login)
        .collect();
    assert_eq!(logins, ["jdev", "madmin"]);

    // Update replaces fields and roles.
    let mut m = s.get_user("madmin").await.unwrap().unwrap();
    m.name = "Mary Admin".into();
    m.roles = vec!["contributor".into(), "repo_admin".into()];
    s.update_user(&m).await.unwrap();
    assert_eq!(s.get_user("madmin").await.unwrap().unwrap(), m);
    assert!(matches!(
        s.update_user(&user("nobody", &[])).await,
        Err(StoreError::NotFound(_))
    ));

    // Grants merge; revokes remove; an empty permission disappears. Each
    // change moves `permissions_seq`; a revoke that changes nothing may not.
    let c = Subject::Role("contributor".into());
    let j = Subject::User("jdev".into());
    use Operation::*;
    let seq = s.permissions_seq().await.unwrap();
    assert_eq!(
        s.permissions_seq().await.unwrap(),
        seq,
        "reading moves nothing"
    );
    s.grant(&c, "/repositories/", &[Read, Create])
        .await
        .unwrap();
    let moved = |before: u64| async move {
        let now = s.permissions_seq().await.unwrap();
        assert_ne!(
            now, before,
            "a permission changed and the number stood still"
        );
        now
    };
    let seq = moved(seq).await;
    let p = s
        .grant(&c, "/repositories/", &[Update, Read])
        .await
        .unwrap();
    assert_eq!(p.operations, [Create, Read, Update]);
    s.grant(&j, "/content/uploads/", &[Create]).await.unwrap();
    assert!(matches!(
        s.grant(&Subject::Role("nope".into()), "/x/", &[Read]).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.list_permissions(&[]).await.unwrap().len(), 2);
    assert_eq!(
        s.list_permissions(std::slice::from_ref(&j))
            .await
            .unwrap()
            .len(),
        1
    );
    let seq = moved(seq).await;
    assert!(s.revoke(&c, "/repositories/", &[Create]).await.unwrap());
    let seq = moved(seq).await;
    assert!(!s.revoke(&c, "/repositories/", &[Create]).await.unwrap());
    assert_eq!(
        s.list_permissions(std::slice::from_ref(&c)).await.unwrap()[0].operations,
        [Read, Update]
    );
    s.revoke(&c, "/repositories/", &[Read, Update])
        .await
        .unwrap();
    assert!(
        s.list_permissions(std::slice::from_ref(&c))
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting a role or a user takes its memberships and permissions along.
    s.grant(
        &Subject::Role("repo_admin".into()),
        "/repositories/",
        &[Delete],
    )
    .await
    .unwrap();
    let seq = moved(seq).await;
    assert!(s.delete_role("repo_admin").await.unwrap());
    let seq = moved(seq).await;
    assert!(!s.delete_role("repo_admin").await.unwrap());
    assert_eq!(
        s.get_user("madmin").await.unwrap().unwrap().roles,
        ["contributor"]
    );
    assert_eq!(s.list_permissions(&[]).await.unwrap().len(), 1);
    assert!(s.delete_user("jdev").await.unwrap());
    moved(seq).await;
    assert!(s.list_permissions(&[]).await.unwrap().is_empty());
    assert_eq!(
        s.get_role("contributor").await.unwrap().unwrap().users,
        ["madmin"]
    );
    let roles: Vec<_> = s
        .list_roles()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(roles, ["contributor"]);
}

async fn tokens(s: &dyn Store) {
    let t = |hash: &str, login: &str, expires_at: u64| ApiToken {
        hash: hash.into(),
        login: login.into(),
        created_at: now(),
        expires_at,
    };
    s.create_user(&user("tok", &[])).await.unwrap();
    s.put_token(&t("h1", "tok", 100)).await.unwrap();
    s.put_token(&t("h2", "tok", 200)).await.unwrap();
    s.put_token(&t("h3", "madmin", 300)).await.unwrap();
    assert!(matches!(
        s.put_token(&t("h4", "nobody", 300)).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.get_token("h1").await.unwrap().unwrap().login, "tok");
    assert_eq!(s.delete_expired_tokens(150).await.unwrap(), 1);
    assert!(s.get_token("h1").await.unwrap().is_none());
    assert!(s.delete_token("h3").await.unwrap());
    assert!(!s.delete_token("h3").await.unwrap());
    s.put_token(&t("h5", "tok", 500)).await.unwrap();
    assert_eq!(s.delete_user_tokens("tok").await.unwrap(), 2);
    s.put_token(&t("h6", "tok", 500)).await.unwrap();
    assert!(s.delete_user("tok").await.unwrap());
    assert!(
        s.get_token("h6").await.unwrap().is_none(),
        "a deleted user's tokens go with it"
    );
}

/// The first value asked for a secret wins; later ones get it back.
async fn secrets(s: &dyn Store) {
    let first = s.ensure_secret("registry-token", &[1; 32]).await.unwrap();
    assert_eq!(first, vec![1; 32]);
    let again = s.ensure_secret("registry-token", &[2; 32]).await.unwrap();
    assert_eq!(again, vec![1; 32], "a later candidate does not replace it");
    let other = s.ensure_secret("other", &[3; 5]).await.unwrap();
    assert_eq!(other, vec![3; 5]);
}

async fn installed_plugins(s: &dyn Store) {
    let p = |name: &str, state: PluginState, version: &str| InstalledPlugin {
        name: name.into(),
        state,
        version: version.into(),
        wasm_sha256: Digest::of(version.as_bytes()),
        changed_at: now(),
    };
    assert!(s.list_installed_plugins().await.unwrap().is_empty());
    s.put_installed_plugin(&p("file", PluginState::Installed, "1.0"))
        .await
        .unwrap();
    s.put_installed_plugin(&p("apt", PluginState::Installed, "0.1"))
        .await
        .unwrap();
    // One record per name: the last install or removal wins.
    let removed = p("file", PluginState::Removed, "1.0");
    s.put_installed_plugin(&removed).await.unwrap();
    let all = s.list_installed_plugins().await.unwrap();
    assert_eq!(
        all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["apt", "file"]
    );
    assert_eq!(all[1], removed);
}
