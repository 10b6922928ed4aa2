//! The RocksDB store under the acceptance pipeline: atomic writes, restarts, and clear errors for
//! damaged, newer or locked stores.

use intercity_node::{City, CityError, StoreError};
use intercity_protocol::entry::{Hash32, Scope, SignedEntry, sign_entry};
use intercity_protocol::ingest::{self, IngestError, Ledger};
use intercity_protocol::record::{Agenda, Group, Item, Practice, Record};

fn milan(dir: &std::path::Path) -> City {
    City::init(dir, "Milan", Some("IT")).expect("init")
}

fn practice(city: &City, title: &str) -> Record {
    let mut p = Practice::new(city.id().to_string(), title, "en");
    p.city = "Milan".into();
    p.into()
}

/// Every key and value of every column family.
/// The next change to practice `id` made on `city`'s document with its key as the actor, `f`
/// applied to the record (not published).
fn next_practice_change(
    city: &City,
    id: intercity_protocol::entry::DocId,
    f: impl FnOnce(&mut Practice),
) -> automerge::Change {
    let mut doc = city.load(id).expect("doc");
    let mut rec = city.record(id).expect("record");
    if let Record::Practice(p) = &mut rec {
        f(p);
    }
    let actor = automerge::ActorId::from(city.key().id().as_bytes().to_vec());
    intercity_protocol::doc::edit_document(&mut doc, actor, &rec, "edit")
        .expect("edit")
        .expect("some")
}

fn dump(dir: &std::path::Path) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let path = dir.join("db");
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).expect("list cfs");
    let db = rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), &path, &cfs, false)
        .expect("open ro");
    let mut out = Vec::new();
    for cf in &cfs {
        let handle = db.cf_handle(cf).expect("cf");
        for item in db.iterator_cf(handle, rocksdb::IteratorMode::Start) {
            let (k, v) = item.expect("read");
            out.push((cf.clone(), k.to_vec(), v.to_vec()));
        }
    }
    out
}

#[test]
fn records_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let id = {
        let city = milan(tmp.path());
        let id = city
            .create(&practice(&city, "FabriQ"), "create")
            .expect("create");
        city.edit(id, "summary", |r| {
            if let Record::Practice(p) = r {
                p.summary = "Milan's first social innovation incubator".into();
            }
            Ok(())
        })
        .expect("edit");
        id
        // dropped without flush: the synced WAL must carry it
    };
    let city = City::open(tmp.path()).expect("reopen");
    let Record::Practice(p) = city.record(id).expect("record") else {
        panic!("kind")
    };
    assert_eq!(p.summary, "Milan's first social innovation incubator");
    assert_eq!(city.history(id).expect("history").len(), 2);
    assert!(
        city.history(id)
            .expect("history")
            .iter()
            .all(|h| h.verified)
    );
    assert_eq!(city.list(None).expect("list").len(), 1);
}

#[test]
fn feed_level_rejections_leave_the_store_byte_for_byte_unchanged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (key, id, head_hash) = {
        let city = milan(tmp.path());
        let id = city
            .create(&practice(&city, "FabriQ"), "create")
            .expect("create");
        let feed = intercity_protocol::entry::FeedId {
            author: city.id(),
            scope: Scope::Federation,
        };
        let head = city.store().head(&feed).expect("head").expect("exists");
        (city.key().clone(), id, head.hash)
    };
    let before = dump(tmp.path());
    let city = City::open(tmp.path()).expect("reopen");
    // A valid next change to build bad variants from.
    let change = next_practice_change(&city, id, |p| p.summary = "x".into());
    let payload = change.raw_bytes().to_vec();
    let good = sign_entry(&key, Scope::Federation, 2, head_hash, id, &payload, 1);

    let mut bad_sig = good.encode();
    bad_sig[170] ^= 1;
    let gap = sign_entry(&key, Scope::Federation, 3, head_hash, id, &payload, 1);
    let backlink = sign_entry(&key, Scope::Federation, 2, Hash32([1; 32]), id, &payload, 1);
    let other = intercity_protocol::identity::CityKey::from_secret([5; 32]);
    let actor_mismatch = sign_entry(
        &other,
        Scope::Federation,
        1,
        Hash32::default(),
        id,
        &payload,
        1,
    );
    let mut wrong_payload = payload.clone();
    let n = wrong_payload.len() - 1;
    wrong_payload[n] ^= 1;
    let oversized = vec![0u8; intercity_protocol::entry::MAX_PAYLOAD_BYTES + 1];

    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("bad signature", bad_sig.to_vec(), payload.clone()),
        ("seq gap", gap.encode().to_vec(), payload.clone()),
        (
            "broken backlink",
            backlink.encode().to_vec(),
            payload.clone(),
        ),
        (
            "actor mismatch",
            actor_mismatch.encode().to_vec(),
            payload.clone(),
        ),
        ("payload hash", good.encode().to_vec(), wrong_payload),
        ("oversized", good.encode().to_vec(), oversized),
        (
            "truncated entry",
            good.encode()[..100].to_vec(),
            payload.clone(),
        ),
    ];
    for (what, entry, payload) in cases {
        let result = ingest::ingest(city.store(), &entry, &payload);
        let err = result.expect_err(what);
        assert!(!matches!(err, IngestError::Ledger(_)), "{what}: {err}");
    }
    drop(city);
    assert!(
        before == dump(tmp.path()),
        "a rejected entry changed the store"
    );
    // And the good one is still accepted afterwards.
    let city = City::open(tmp.path()).expect("reopen");
    let ingested = ingest::ingest(city.store(), &good.encode(), &payload).expect("good");
    city.store().apply(ingested.commit).expect("apply");
    let _ = SignedEntry::decode(&good.encode()).expect("decodes");
}

#[test]
fn a_second_process_gets_a_clear_locked_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let _city = milan(tmp.path());
    let err = City::open(tmp.path()).expect_err("locked");
    assert!(
        matches!(err, CityError::Store(StoreError::Locked(_))),
        "{err}"
    );
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn a_newer_store_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let city = milan(tmp.path());
        city.store()
            .set_meta("schema_version", &99u32.to_be_bytes())
            .expect("meta");
    }
    let err = City::open(tmp.path()).expect_err("newer");
    assert!(
        matches!(
            err,
            CityError::Store(StoreError::NewerVersion { found: 99, .. })
        ),
        "{err}"
    );
}

#[test]
fn a_corrupt_store_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let city = milan(tmp.path());
        city.create(&practice(&city, "FabriQ"), "create")
            .expect("create");
        city.store().flush().expect("flush");
    }
    // Overwrite every table and log file with garbage.
    for entry in std::fs::read_dir(tmp.path().join("db")).expect("ls") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        if name.ends_with(".sst") || name.ends_with(".log") || name.starts_with("MANIFEST") {
            let len = std::fs::metadata(&path).expect("meta").len() as usize;
            std::fs::write(&path, vec![0xAB; len.max(64)]).expect("write");
        }
    }
    let err = City::open(tmp.path()).expect_err("corrupt");
    assert!(
        matches!(err, CityError::Store(StoreError::Corrupt { .. })),
        "{err}"
    );
}

#[test]
fn the_key_file_must_be_private_and_init_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    drop(milan(tmp.path()));
    let key = tmp.path().join("city.key");
    assert_eq!(
        std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    assert!(matches!(
        City::init(tmp.path(), "Milan", None),
        Err(CityError::Exists(_))
    ));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = City::open(tmp.path()).expect_err("too open");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn an_unauthorized_local_edit_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let city = milan(tmp.path());
    let stranger = intercity_protocol::identity::CityKey::from_secret([8; 32])
        .id()
        .to_string();
    let mut p = Practice::new(stranger, "Not mine", "en");
    p.city = "Brno".into();
    let err = city
        .create(&Record::Practice(p), "create")
        .expect_err("not owner");
    assert!(matches!(err, CityError::Rejected(_)), "{err}");
    assert!(city.list(None).expect("list").is_empty());
}

/// An edit made on the version its editor read (as the CLI does through the daemon, sending a
/// whole record) keeps a change that arrived in between instead of reverting it.
#[test]
fn an_edit_from_an_older_version_keeps_the_changes_made_since() {
    let tmp = tempfile::tempdir().expect("tmp");
    let city = milan(tmp.path());
    let id = city
        .create(&practice(&city, "FabriQ"), "create")
        .expect("create");
    let (seen, heads) = city.record_and_heads(id).expect("read");

    // Meanwhile, another edit lands.
    city.edit(id, "summary", |r| {
        if let Record::Practice(p) = r {
            p.summary = "Milan's first social innovation incubator".into();
        }
        Ok(())
    })
    .expect("concurrent edit");

    // The editor's target is the whole record as it saw it, with a new title.
    let mut target = seen.clone();
    if let Record::Practice(p) = &mut target {
        p.title = "FabriQ incubator".into();
    }
    city.edit_from(id, &heads, "title", |r| {
        *r = target;
        Ok(())
    })
    .expect("edit from the old version");
    let Record::Practice(now) = city.record(id).expect("record") else {
        panic!("a practice")
    };
    assert_eq!(now.title, "FabriQ incubator");
    assert_eq!(
        now.summary, "Milan's first social innovation incubator",
        "the edit in between survives"
    );
    // Unknown heads are refused clearly.
    let bogus = [automerge::ChangeHash([7; 32])];
    assert!(matches!(
        city.edit_from(id, &bogus, "x", |_| Ok(())),
        Err(CityError::Refused(_))
    ));
}

/// An entry whose dependencies sit in another city's feed waits as pending in RocksDB, across a
/// restart (and a migration from schema 2, which kept it by document), and is accepted when
/// they arrive.
#[test]
fn a_pending_entry_survives_a_restart_and_is_accepted_when_its_dependency_arrives() {
    let (a, b, c) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let milan = milan(a.path());
    let brno = City::init(b.path(), "Brno", Some("CZ")).expect("init");
    let mut record = practice(&milan, "Makerspace");
    if let Record::Practice(p) = &mut record {
        p.editors = vec![brno.id().to_string()];
    }
    let id = milan.create(&record, "create").expect("create");
    let entries = |city: &City| -> Vec<(Vec<u8>, Vec<u8>)> {
        city.store()
            .doc_entries(&id)
            .expect("entries")
            .into_iter()
            .map(|(e, p)| (e.entry.encode().to_vec(), p.expect("payload")))
            .collect()
    };
    let genesis = entries(&milan).remove(0);
    brno.ingest_remote(&genesis.0, &genesis.1).expect("genesis");
    brno.edit(id, "edit", |r| {
        if let Record::Practice(p) = r {
            p.summary = "Edited in Brno".into();
        }
        Ok(())
    })
    .expect("edit");
    let edit = entries(&brno)
        .into_iter()
        .find(|(e, _)| *e != genesis.0)
        .expect("brno's entry");

    {
        let warsaw = City::init(c.path(), "Warsaw", Some("PL")).expect("init");
        assert_eq!(
            warsaw.ingest_remote(&edit.0, &edit.1).expect("edit"),
            ingest::Verdict::Stored(ingest::Status::Pending)
        );
        assert_eq!(warsaw.store().entry_counts().expect("counts"), (0, 0, 1, 0));
        let totals = warsaw.store().pending_totals(&brno.id()).expect("totals");
        assert_eq!((totals.count, totals.author_count), (1, 1));
    }
    // Written back as schema 2 kept it (by document): opening migrates the row.
    {
        let path = c.path().join("db");
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).expect("cfs");
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, &cfs).expect("open");
        let pending = db.cf_handle("pending").expect("cf");
        let mut rows = db.iterator_cf(pending, rocksdb::IteratorMode::Start);
        let (key, value) = rows.next().expect("a pending row").expect("row");
        assert!(rows.next().is_none(), "one pending row");
        drop(rows);
        assert_eq!(key.len(), 32 + 49 + 8, "keyed by the change waited for");
        let mut old = id.0.to_vec();
        old.extend_from_slice(&key[32..]);
        db.delete_cf(pending, &key).expect("delete");
        db.put_cf(pending, old, &value).expect("put");
        // Heads as schema 3 and earlier wrote them: 41 bytes, nothing counted.
        let heads = db.cf_handle("heads").expect("cf");
        let rows: Vec<_> = db
            .iterator_cf(heads, rocksdb::IteratorMode::Start)
            .map(|r| r.expect("row"))
            .collect();
        for (k, v) in rows {
            db.put_cf(heads, k, &v[..41]).expect("put");
        }
        let meta = db.cf_handle("meta").expect("cf");
        db.put_cf(meta, b"schema_version", 2u32.to_be_bytes())
            .expect("version");
    }
    let warsaw = City::open(c.path()).expect("reopen");
    let brno_head = |city: &City| {
        city.store()
            .feeds()
            .expect("feeds")
            .into_iter()
            .find(|(f, _)| f.author == brno.id())
            .expect("brno's feed")
            .1
    };
    let head = brno_head(&warsaw);
    assert_eq!((head.pending, head.pending_bytes), (1, edit.1.len() as u64));
    assert_eq!((head.rejected, head.rejected_bytes), (0, 0));
    let totals = warsaw.store().pending_totals(&brno.id()).expect("totals");
    assert_eq!((totals.count, totals.author_count), (1, 1));
    // Counted once here; the ingestion below keeps the counts (pending -> accepted).
    assert_eq!(warsaw.store().entry_counts().expect("counts"), (0, 0, 1, 0));
    warsaw
        .ingest_remote(&genesis.0, &genesis.1)
        .expect("genesis");
    assert_eq!(warsaw.store().entry_counts().expect("counts"), (2, 0, 0, 0));
    assert_eq!(
        warsaw.store().pending_totals(&brno.id()).expect("totals"),
        ingest::PendingTotals::default()
    );
    assert_eq!(brno_head(&warsaw).pending, 0);
    match warsaw.record(id).expect("record") {
        Record::Practice(p) => assert_eq!(p.summary, "Edited in Brno"),
        other => panic!("not a practice: {other:?}"),
    }
}

/// An import writes new records in batches; a line naming a record by an id that does not parse
/// fails on its own (it does not become a new record), a line naming an existing record of this
/// city updates it, and file order is kept.
#[test]
fn import_batches_creates_and_keeps_bad_ids_and_updates_apart() {
    use intercity_node::ImportOutcome;
    use intercity_node::exchange::Imported;

    let dir = tempfile::tempdir().expect("tmp");
    let city = milan(dir.path());
    let existing = city
        .create(&practice(&city, "Existing"), "create")
        .expect("create");
    let line = |line: usize, id: Option<String>, title: &str| Imported {
        line,
        id,
        record: practice(&city, title),
    };
    let mut items: Vec<Imported> = (1..=300)
        .map(|i| line(i, None, &format!("Imported {i}")))
        .collect();
    items.insert(10, line(11, Some("not-an-id".into()), "Bad id"));
    items.insert(
        20,
        line(21, Some(existing.to_string()), "Existing, renamed"),
    );
    let results = city.import(items, false);
    assert_eq!(results.len(), 302);
    assert!(
        matches!(results[10].outcome, ImportOutcome::Failed),
        "{:?}",
        results[10]
    );
    assert!(
        results[10]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not a record id")
    );
    assert!(matches!(results[20].outcome, ImportOutcome::Updated));
    let created = results
        .iter()
        .filter(|r| matches!(r.outcome, ImportOutcome::Created))
        .count();
    assert_eq!(created, 300);
    assert!(
        results
            .iter()
            .all(|r| !matches!(r.outcome, ImportOutcome::Created) || r.id.is_some())
    );
    city.finish_import().expect("finish");
    let titles: Vec<String> = city
        .list(None)
        .expect("list")
        .into_iter()
        .map(|s| s.title)
        .collect();
    assert_eq!(titles.len(), 301);
    assert!(titles.iter().any(|t| t == "Existing, renamed"));
    assert!(!titles.iter().any(|t| t == "Bad id"));
}

/// A large document keeps its later changes after it (`doc_tail`) and is written whole again
/// when they grow; read back after a restart (no cache), on the author's node and on one that
/// received the entries, it is the same record.
#[test]
fn a_large_document_is_saved_by_its_changes_and_reads_back_the_same() {
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (id, expected) = {
        let milan = milan(a.path());
        let brno = City::init(b.path(), "Brno", Some("CZ")).expect("init");
        // A working group with ten agendas of ten items, each with a page of notes.
        let mut group = Group::new("Large", milan.id().to_string(), "Milan");
        for a in 0..10 {
            let mut agenda = Agenda::new(format!("Meeting {a}"), "2027-03-01");
            for i in 0..10 {
                let mut item = Item::new(format!("Item {i}"));
                item.id = format!("a{a}i{i}");
                item.notes = "Notes of the meeting, to be read before it. ".repeat(20);
                agenda.items.push(item);
            }
            group.agendas.insert(format!("{a:016x}"), agenda);
        }
        let record = Record::Group(group);
        let id = milan.create(&record, "create").expect("create");
        let size = milan.load(id).expect("load").save_nocompress().len() as u64;
        // Bytes each edit wrote: its change, or now and then the whole document again.
        let mut written = Vec::new();
        for n in 0..80 {
            let before = milan.store().written_bytes();
            milan
                .edit(id, "agenda", |r| {
                    if let Record::Group(g) = r {
                        g.agendas.insert(
                            format!("{:016x}", 100 + n),
                            Agenda::new(format!("Meeting {n}"), "2027-04-01"),
                        );
                    }
                    Ok(())
                })
                .expect("edit");
            written.push(milan.store().written_bytes() - before);
        }
        let small = written.iter().filter(|w| **w < size / 4).count();
        let whole = written.iter().filter(|w| **w >= size).count();
        assert!(
            small >= 60,
            "{small} of 80 edits wrote less than the document: {written:?}"
        );
        assert!(
            whole >= 1,
            "the document was never written whole again: {written:?}"
        );
        for (e, p) in milan.store().doc_entries(&id).expect("entries") {
            brno.ingest_remote(&e.entry.encode(), &p.expect("payload"))
                .expect("ingest");
        }
        let expected = milan.record(id).expect("record");
        assert_eq!(brno.record(id).expect("brno's record"), expected);
        (id, expected)
    };
    for dir in [a.path(), b.path()] {
        let city = City::open(dir).expect("reopen");
        assert_eq!(city.record(id).expect("record"), expected);
        assert_eq!(city.history(id).expect("history").len(), 81);
        let Record::Group(g) = city.record(id).expect("record") else {
            panic!("kind")
        };
        assert_eq!(g.agendas.len(), 90);
    }
}

/// The working groups' members are known without loading their documents, and follow every
/// write: who shares a group's scope with a peer is read from this index.
#[test]
fn group_members_follow_every_write_and_survive_a_restart() {
    use intercity_protocol::record::{Member, Role};
    let tmp = tempfile::tempdir().expect("tmp");
    let brno = intercity_protocol::identity::CityKey::from_secret([2; 32])
        .id()
        .to_string();
    let id = {
        let milan = milan(tmp.path());
        let me = milan.id().to_string();
        // Counted before the group exists: the index is then kept by the writes.
        assert!(milan.store().groups_of(&me).expect("groups").is_empty());
        let group = Group::new("Mobility", me.clone(), "Milan");
        let id = milan
            .create(&Record::Group(group), "create")
            .expect("group");
        assert_eq!(milan.store().groups_of(&me).expect("groups"), vec![id]);
        assert!(milan.store().groups_of(&brno).expect("groups").is_empty());
        milan
            .edit(id, "add Brno", |r| {
                if let Record::Group(g) = r {
                    g.members.insert(
                        brno.clone(),
                        Member {
                            name: "Brno".into(),
                            role: Role::Member,
                        },
                    );
                }
                Ok(())
            })
            .expect("edit");
        assert_eq!(milan.store().groups_of(&brno).expect("groups"), vec![id]);
        id
    };
    let milan = City::open(tmp.path()).expect("reopen");
    let members = milan.store().group_members(&id).expect("members");
    assert!(members.contains(&brno) && members.contains(&milan.id().to_string()));
    milan
        .edit(id, "remove Brno", |r| {
            if let Record::Group(g) = r {
                g.members.remove(&brno);
            }
            Ok(())
        })
        .expect("edit");
    assert!(milan.store().groups_of(&brno).expect("groups").is_empty());
}

/// Protocol.md §7.2: a change must number its operations from one after its dependencies'
/// highest. Milan (a roster city, signing as it likes) sends Brno a change to its practice whose
/// one operation is numbered 3, repeating an operation of the genesis. Before the rule, Brno
/// accepted it and saved a document that no longer loads: the record was unreadable at once
/// and for good ("document … cannot be read: … max_op is lower than start_op"), and so was
/// every later change to it. Now it is rejected, and the record reads the same before and
/// after a restart.
#[test]
fn a_change_numbered_off_its_dependencies_leaves_the_record_readable_after_a_restart() {
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let milan = milan(a.path());
    let id = milan
        .create(&practice(&milan, "FabriQ"), "create")
        .expect("create");
    let (genesis, payload) = milan.store().doc_entries(&id).expect("entries").remove(0);
    let brno = City::init(b.path(), "Brno", Some("CZ")).expect("init");
    let genesis_bytes = genesis.entry.encode();
    let payload = payload.expect("payload");
    assert!(matches!(
        brno.ingest_remote(&genesis_bytes, &payload),
        Ok(ingest::Verdict::Stored(ingest::Status::Accepted))
    ));
    let before = brno.record(id).expect("record");
    // Milan's next change, one scalar put, renumbered to start at operation 3.
    let honest = next_practice_change(&milan, id, |p| p.city = "Turin".into());
    let mut expanded = honest.decode();
    assert_eq!(expanded.operations.len(), 1);
    expanded.start_op = std::num::NonZeroU64::new(3).expect("non-zero");
    expanded.hash = None;
    let forged = automerge::Change::from(expanded);
    let payload = forged.raw_bytes().to_vec();
    let entry = sign_entry(
        milan.key(),
        Scope::Federation,
        2,
        genesis.entry.hash(),
        id,
        &payload,
        2,
    );
    let verdict = brno
        .ingest_remote(&entry.encode(), &payload)
        .expect("ingest");
    assert!(
        matches!(&verdict, ingest::Verdict::Stored(ingest::Status::Rejected(r)) if r.contains("start at")),
        "{verdict:?}"
    );
    assert_eq!(brno.record(id).expect("record"), before);
    drop(brno);
    let brno = City::open(b.path()).expect("reopen");
    assert_eq!(brno.record(id).expect("readable after a restart"), before);
}

/// A `Forks` answer takes each forked feed's lowest proof, through the fork index, as many as
/// asked from where asked, going round; the same after a reopen (the index read again).
#[test]
fn the_lowest_fork_proof_of_each_feed_is_read_through_the_index() {
    use intercity_protocol::entry::DocId;
    use intercity_protocol::identity::CityKey;
    use intercity_protocol::ingest::{Commit, ForkProof};
    let tmp = tempfile::tempdir().expect("tmp");
    let city = milan(tmp.path());
    let key = |n: u8| CityKey::from_secret([n; 32]);
    let proof = |n: u8, seq: u64| {
        let e = |t| {
            sign_entry(
                &key(n),
                Scope::Federation,
                seq,
                // A backlink after the first seq.
                Hash32([u8::from(seq > 1); 32]),
                DocId([n; 16]),
                b"x",
                t,
            )
        };
        ForkProof {
            first: e(1),
            second: e(2),
        }
    };
    let proofs = vec![
        proof(1, 5),
        proof(1, 3),
        proof(2, 7),
        proof(3, 1),
        proof(1, 9),
    ];
    city.store()
        .apply_with(
            Commit {
                forks: proofs,
                ..Commit::default()
            },
            true,
        )
        .expect("apply");
    // Feeds sort by author; the lowest proofs, in that order.
    let mut want = vec![proof(1, 3), proof(2, 7), proof(3, 1)];
    want.sort_by_key(|p| p.first.header.feed());
    let check = |city: &City| {
        let store = city.store();
        assert_eq!(store.lowest_forks(|_| true, 0, 64).expect("read"), want);
        assert_eq!(
            store.lowest_forks(|_| true, 7, 64).expect("read"),
            want,
            "all fit"
        );
        assert_eq!(
            store.lowest_forks(|_| true, 4, 2).expect("read"),
            vec![want[1].clone(), want[2].clone()],
            "from the second (4 mod 3), two"
        );
        assert_eq!(
            store.lowest_forks(|_| true, 2, 2).expect("read"),
            vec![want[2].clone(), want[0].clone()],
            "round the list"
        );
        let second = want[1].first.header.feed();
        assert_eq!(
            store.lowest_forks(|f| *f == second, 0, 64).expect("read"),
            vec![want[1].clone()]
        );
        assert_eq!(store.fork_count().expect("count"), 5);
    };
    check(&city);
    drop(city);
    check(&City::open(tmp.path()).expect("reopen"));
}
