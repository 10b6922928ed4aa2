//! Key rotation (issue #11, scenario 5; docs/protocol.md §15.6) between real nodes on 127.0.0.1:
//! a city passes its signing right to a new key, its peers take the new key when it shows
//! them its statement, its records stay editable, and its old key speaks for nobody.

use std::sync::Arc;
use std::time::Duration;

use intercity_node::City;
use intercity_protocol::entry::{FeedId, Scope, sign_entry};
use intercity_protocol::ingest::{Ledger, Status, Verdict, retired_reason};
use intercity_protocol::record::{Agenda, Group, Item, Member, Record, Role};
use intercity_tests::{TestNode, eventually, practice};

const WAIT: Duration = Duration::from_secs(20);

fn summary_of(city: &City, id: intercity_protocol::entry::DocId) -> Option<String> {
    match city.record(id).ok()? {
        Record::Practice(p) => Some(p.summary),
        _ => None,
    }
}

fn items_of(city: &City, id: intercity_protocol::entry::DocId) -> Vec<String> {
    match city.record(id) {
        Ok(Record::Group(g)) => g.agendas["a1a1a1a1a1a1a1a1"]
            .items
            .iter()
            .map(|i| i.title.clone())
            .collect(),
        _ => Vec::new(),
    }
}

fn add_item(city: &City, id: intercity_protocol::entry::DocId, title: &str) {
    let title = title.to_string();
    city.edit(id, "add an item", move |r| {
        if let Record::Group(g) = r {
            let mut item = Item::new(title.clone());
            item.id = format!("{:016x}", title.len() as u64 * 7919 + 1);
            g.agendas
                .get_mut("a1a1a1a1a1a1a1a1")
                .expect("agenda")
                .items
                .push(item);
        }
        Ok(())
    })
    .expect("edit");
}

/// Milan rotates its key while stopped. Brno (Milan's peer) takes the new key when Milan shows
/// it the statement, Warsaw learns it from Brno; Milan's practice and group stay its own, and
/// edits under the new key reach everyone. The old key can no longer connect, and what it
/// signs is void.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_rotates_its_key_and_every_node_follows() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let warsaw = TestNode::spawn("Warsaw", 3).await;
    milan.link(&brno).await;
    brno.link(&warsaw).await;
    warsaw.trust(&milan).await;
    milan.trust(&warsaw).await;
    let p = practice(&milan.city, "Housing first");
    let mut g = Group::new("Smart Social Inclusion", milan.id().to_string(), "Milan");
    g.members.insert(
        brno.id().to_string(),
        Member {
            name: "Brno".into(),
            role: Role::Member,
        },
    );
    g.agendas.insert(
        "a1a1a1a1a1a1a1a1".into(),
        Agenda::new("Study visit", "2027-02-23"),
    );
    let gid = milan
        .city
        .create(&Record::Group(g), "create")
        .expect("group");
    assert!(
        eventually(WAIT, || summary_of(&warsaw.city, p).is_some()
            && brno.city.record(gid).is_ok())
        .await,
        "the first records did not spread"
    );

    // Milan stops, rotates, starts again.
    let old_key = intercity_tests::key(1);
    let root = milan.id();
    let (dir, cfg) = (milan.dir.clone(), milan.cfg.clone());
    let mut milan = milan;
    milan.stop().await;
    drop(milan);
    let rotated = {
        let city = City::open(dir.path()).expect("reopen");
        city.rotate_key().expect("rotate")
    };
    assert_eq!(rotated.city, root);
    assert_eq!(rotated.old, old_key.id());
    let city = Arc::new(City::open(dir.path()).expect("reopen after rotation"));
    assert_eq!(city.id(), root, "the city keeps its id");
    assert_eq!(city.key_id(), rotated.new);
    let milan = TestNode::start_with(city, dir, cfg).await;
    // Brno holds Milan's address under its roster entry's id: Milan dials Brno.
    milan.dial(&brno).await;

    // Edits under the new key, of a record made under the old one.
    milan
        .city
        .edit(p, "edit", |r| {
            if let Record::Practice(pr) = r {
                pr.summary = "under the new key".into();
            }
            Ok(())
        })
        .expect("edit with the new key");
    add_item(&milan.city, gid, "new key's item");
    assert!(
        eventually(WAIT, || {
            [&brno, &warsaw]
                .iter()
                .all(|n| summary_of(&n.city, p).as_deref() == Some("under the new key"))
                && items_of(&brno.city, gid) == ["new key's item"]
        })
        .await,
        "the new key's edits did not reach Brno and Warsaw: Brno {:?} {:?}, Warsaw {:?}",
        summary_of(&brno.city, p),
        items_of(&brno.city, gid),
        summary_of(&warsaw.city, p)
    );
    for n in [&brno, &warsaw] {
        match n.city.record(p).expect("practice") {
            Record::Practice(pr) => assert_eq!(pr.owner, root.to_string()),
            other => panic!("{other:?}"),
        }
    }
    // History shows both: the city, and the key each change was signed with.
    let history = brno.city.history(p).expect("history");
    assert!(
        history.iter().any(|h| h.author == root && h.key.is_none()),
        "the change under the first key"
    );
    let last = history.last().expect("the new key's edit");
    assert_eq!((last.author, last.key), (root, Some(rotated.new)));
    // Brno shows Milan connected under the new key (the edits may have come through Warsaw
    // before Milan's own connection to Brno was up).
    let started = std::time::Instant::now();
    let mut status = brno.status().await;
    while !status
        .peers
        .iter()
        .any(|peer| peer.id == rotated.new.to_string() && peer.connected)
    {
        assert!(
            started.elapsed() < WAIT,
            "Brno is not connected to Milan's new key: {:?}",
            status.peers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = brno.status().await;
    }

    // The old key, stolen: its next federation entry is void on Brno.
    let fed = FeedId {
        author: old_key.id(),
        scope: Scope::Federation,
    };
    let head = brno.city.store().head(&fed).expect("head").expect("held");
    let payload = b"not even a change".to_vec();
    let stolen = sign_entry(
        &old_key,
        Scope::Federation,
        head.seq + 1,
        head.hash,
        intercity_protocol::entry::DocId([9; 16]),
        &payload,
        1,
    );
    let verdict = brno.city.ingest_remote(&stolen.encode(), &payload);
    assert!(
        matches!(&verdict, Ok(Verdict::Stored(Status::Rejected(r))) if *r == retired_reason())
            || verdict.is_err(),
        "{verdict:?}"
    );

    // And it cannot connect: a node with the old key is refused by Brno.
    let thief = TestNode::spawn("Thief", 1).await;
    thief.dial(&brno).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = brno.status().await;
    assert!(
        !status
            .peers
            .iter()
            .any(|peer| peer.id == old_key.id().to_string() && peer.connected),
        "Brno took the retired key's connection"
    );
}

/// A key rotation leaves the data directory consistent at every step: a rotation that stopped
/// before its statement was written is undone, one that stopped after it is finished.
#[test]
fn a_rotation_stopped_half_way_is_finished_or_undone() {
    let dir = tempfile::tempdir().expect("tmp");
    let city =
        City::init_with_key(dir.path(), "Milan", None, intercity_tests::key(1)).expect("init");
    practice(&city, "Housing first");
    let root = city.id();
    drop(city);
    // A leftover new key with no statement: undone.
    let stray = intercity_tests::key(9);
    write_key(&dir.path().join("city.key.next"), &stray);
    let city = City::open(dir.path()).expect("open");
    assert_eq!(city.key_id(), root);
    assert!(!dir.path().join("city.key.next").exists());
    // A full rotation, then the old key file put back beside the new one, as if the swap had
    // not happened: finished on the next open.
    let rotated = city.rotate_key().expect("rotate");
    drop(city);
    std::fs::rename(
        dir.path().join("city.key"),
        dir.path().join("city.key.next"),
    )
    .expect("mv");
    write_key(&dir.path().join("city.key"), &intercity_tests::key(1));
    let city = City::open(dir.path()).expect("open");
    assert_eq!(city.key_id(), rotated.new);
    assert_eq!(city.id(), root);
    assert!(!dir.path().join("city.key.next").exists());
    // The city writes under the new key.
    practice(&city, "After the rotation");
    let info = city.key_info().expect("keys");
    assert_eq!(info.retired, vec![root]);
}

fn write_key(path: &std::path::Path, key: &intercity_protocol::identity::CityKey) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("key file");
    std::io::Write::write_all(
        &mut f,
        key.secret_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .as_bytes(),
    )
    .expect("write");
}

/// Milan names Brno and Warsaw its guardians, both needed, then loses its key file. Brno starts
/// the recovery, Warsaw vouches, Milan finishes it: Milan's node starts with the new key, its
/// peers take it, and Milan edits its practice again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_that_lost_its_key_is_recovered_by_its_guardians() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let warsaw = TestNode::spawn("Warsaw", 3).await;
    milan.link(&brno).await;
    milan.link(&warsaw).await;
    brno.link(&warsaw).await;
    let p = practice(&milan.city, "Housing first");
    milan
        .city
        .designate_guardians(2, vec![brno.id(), warsaw.id()])
        .expect("guardians");
    let root = milan.id();
    assert!(
        eventually(WAIT, || [&brno, &warsaw].iter().all(|n| n
            .city
            .designation_of(&root)
            .ok()
            .flatten()
            .is_some()
            && summary_of(&n.city, p).is_some()))
        .await,
        "the designation did not spread"
    );

    // Milan's key is lost.
    let (dir, cfg) = (milan.dir.clone(), milan.cfg.clone());
    let mut milan = milan;
    milan.stop().await;
    drop(milan);
    std::fs::remove_file(dir.path().join("city.key")).expect("lose the key");
    assert!(City::open(dir.path()).is_err(), "no key, no city");
    let new = City::recovery_new_key(dir.path()).expect("new key");
    assert_eq!(City::recovery_new_key(dir.path()).expect("again"), new);

    // A guardian can start the recovery from its own node...
    let by_brno = brno.city.recovery_start(root, new, None).expect("start");
    assert_eq!(by_brno.vouched, vec![brno.id()]);
    // ...but the city proposes it from its own store, which holds all its feeds.
    let proposed = City::recovery_propose(dir.path(), None).expect("propose");
    assert_eq!(
        (proposed.city, proposed.old, proposed.new),
        (root, root, new)
    );
    assert!(proposed.vouched.is_empty());
    let started = brno.city.recovery_vouch(&proposed.token).expect("vouch");
    // One vouch is not enough.
    assert!(City::recovery_finish(dir.path(), &started.token).is_err());
    assert!(brno.city.recovery_vouch(&started.token).is_err(), "twice");
    let vouched = warsaw.city.recovery_vouch(&started.token).expect("vouch");
    assert_eq!(vouched.vouched.len(), 2);
    let done = City::recovery_finish(dir.path(), &vouched.token).expect("finish");
    assert_eq!((done.city, done.old, done.new), (root, root, new));

    let city = Arc::new(City::open(dir.path()).expect("open after the recovery"));
    assert_eq!((city.id(), city.key_id()), (root, new));
    let milan = TestNode::start_with(city, dir, cfg).await;
    milan.dial(&brno).await;
    milan.dial(&warsaw).await;
    milan
        .city
        .edit(p, "edit", |r| {
            if let Record::Practice(pr) = r {
                pr.summary = "recovered".into();
            }
            Ok(())
        })
        .expect("edit with the recovered key");
    assert!(
        eventually(WAIT, || [&brno, &warsaw].iter().all(|n| summary_of(
            &n.city, p
        )
        .as_deref()
            == Some("recovered")))
        .await,
        "the recovered key's edit did not spread: Brno {:?}, Warsaw {:?}",
        summary_of(&brno.city, p),
        summary_of(&warsaw.city, p)
    );
}

/// A thief holding Milan's key rotates it to a key of its own, with a cap below Milan's
/// designation (which that makes void). Milan's key file is lost. Milan proposes the recovery of
/// its lost key (named: the thief's key is the current one in Milan's store), its guardian
/// vouches, Milan finishes: the recovery beats the thief's rotation, and Milan's new key is its
/// current key everywhere the entries went.
#[test]
fn a_city_recovers_its_key_from_a_thief_s_rotation() {
    use intercity_protocol::succession::{SUCCESSION_DOC, Statement};
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let milan =
        City::init_with_key(dirs[0].path(), "Milan", None, intercity_tests::key(1)).expect("init");
    let brno =
        City::init_with_key(dirs[1].path(), "Brno", None, intercity_tests::key(2)).expect("init");
    let warsaw =
        City::init_with_key(dirs[2].path(), "Warsaw", None, intercity_tests::key(3)).expect("init");
    let root = milan.id();
    practice(&milan, "Housing first");
    milan
        .designate_guardians(1, vec![brno.id(), warsaw.id()])
        .expect("guardians");
    let fed = FeedId {
        author: root,
        scope: Scope::Federation,
    };
    let mut all = intercity_tests::wire_entries(&milan, &fed);
    // The thief's rotation, capping Milan's federation feed at 1 (the designation is at 2).
    let thief = intercity_protocol::identity::CityKey::from_secret([66; 32]);
    let payload = Statement::sign(
        root,
        &intercity_tests::key(1),
        thief.id(),
        vec![(Scope::Federation, 1)],
    );
    let entry = sign_entry(
        &thief,
        Scope::Federation,
        1,
        intercity_protocol::entry::Hash32::default(),
        SUCCESSION_DOC,
        &payload,
        5,
    );
    all.push(intercity_protocol::sync::WireEntry {
        entry: entry.encode().to_vec(),
        payload,
        checked: None,
    });
    for city in [&milan, &brno, &warsaw] {
        for w in &all {
            let _ = city.ingest_remote(&w.entry, &w.payload);
        }
    }
    assert_eq!(
        brno.store().key_book().expect("keys").current(&root),
        Some(thief.id()),
        "the thief's key is Milan's before the recovery"
    );
    drop(milan);
    std::fs::remove_file(dirs[0].path().join("city.key")).expect("lose the key");
    // The current key in Milan's store is the thief's: Milan names the lost one.
    assert!(City::recovery_propose(dirs[0].path(), None).is_err());
    let proposed = City::recovery_propose(dirs[0].path(), Some(root)).expect("propose");
    let vouched = brno.recovery_vouch(&proposed.token).expect("vouch");
    let done = City::recovery_finish(dirs[0].path(), &vouched.token).expect("finish");
    let milan = City::open(dirs[0].path()).expect("open");
    assert_eq!((milan.id(), milan.key_id()), (root, done.new));
    // The recovery reaches Brno and Warsaw: Milan's new key is current there, the thief's not.
    let statement = intercity_tests::wire_entries(
        &milan,
        &FeedId {
            author: done.new,
            scope: Scope::Federation,
        },
    );
    for city in [&brno, &warsaw] {
        for w in &statement {
            city.ingest_remote(&w.entry, &w.payload).expect("taken");
        }
        assert_eq!(
            city.store().key_book().expect("keys").current(&root),
            Some(done.new)
        );
    }
}
