//! Store tests that need its private parts.

use super::*;
use intercity_protocol::ingest::Ledger;

/// A store written before schema 6 has no actor-seq index: opening it builds the index
/// from the stored entries.
#[test]
fn an_older_store_gets_its_actor_seq_index_on_open() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = intercity_protocol::identity::CityKey::from_secret([7; 32]);
    let city = crate::City::init_with_key(dir.path(), "Milan", None, key).expect("init");
    let record = intercity_protocol::record::Practice::new(city.id().to_string(), "A", "en");
    let id = city
        .create(&Record::Practice(record), "create")
        .expect("create");
    city.edit(id, "edit", |r| {
        if let Record::Practice(p) = r {
            p.summary = "edited".into();
        }
        Ok(())
    })
    .expect("edit");
    let feed = FeedId {
        author: city.id(),
        scope: intercity_protocol::entry::Scope::Federation,
    };
    let actor = automerge::ActorId::from(city.id().as_bytes().to_vec());
    let indexed = city.store().actor_seq(&feed, &id, &actor).expect("read");
    assert!(indexed.is_some(), "the edit is not indexed");
    // Back to schema 5: no index rows.
    let store = city.store();
    let mut batch = WriteBatch::default();
    for (k, _) in store.scan("meta", b"aseq/").expect("scan") {
        batch.delete_cf(store.cf("meta"), k);
    }
    batch.put_cf(store.cf("meta"), b"schema_version", 5u32.to_be_bytes());
    store.write(batch).expect("write");
    assert_eq!(store.actor_seq(&feed, &id, &actor).expect("read"), None);
    drop(city);
    let reopened = crate::City::open(dir.path()).expect("reopen");
    assert_eq!(
        reopened
            .store()
            .actor_seq(&feed, &id, &actor)
            .expect("read"),
        indexed
    );
    assert_eq!(
        reopened.store().meta("schema_version").expect("meta"),
        Some(SCHEMA_VERSION.to_be_bytes().to_vec())
    );
}

/// A store written before schema 7 judged removals weakly: a removed member's change made
/// without seeing its removal stayed accepted. Opening it replays the documents with removals,
/// so that it holds what a node syncing afresh holds (issue #11, scenario 3).
#[test]
fn an_older_store_replays_its_removals_on_open() {
    use intercity_protocol::record::{Group, Member, Role};
    let init = |seed: u8, name: &str| {
        let dir = tempfile::tempdir().expect("tmp");
        let key = intercity_protocol::identity::CityKey::from_secret([seed; 32]);
        let city = crate::City::init_with_key(dir.path(), name, None, key).expect("init");
        (dir, city)
    };
    let ((dir, milan), (_b, brno)) = (init(1, "Milan"), init(2, "Brno"));
    let mut g = Group::new("Smart Social Inclusion", milan.id().to_string(), "Milan");
    g.members.insert(
        brno.id().to_string(),
        Member {
            name: "Brno".into(),
            role: Role::Member,
        },
    );
    let id = milan.create(&Record::Group(g), "create").expect("group");
    let feed = |city: &crate::City| FeedId {
        author: city.id(),
        scope: intercity_protocol::entry::Scope::Group(id),
    };
    let held = |city: &crate::City, f: &FeedId| {
        city.store()
            .feed_range(f, 1, 16, usize::MAX)
            .expect("range")
    };
    for (e, p) in held(&milan, &feed(&milan)) {
        brno.ingest_remote(&e.entry.encode(), &p).expect("genesis");
    }
    brno.edit(id, "concurrent", |r| {
        if let Record::Group(g) = r {
            g.charter = "Brno's charter".into();
        }
        Ok(())
    })
    .expect("edit");
    let brno_id = brno.id().to_string();
    milan
        .edit(id, "remove Brno", move |r| {
            if let Record::Group(g) = r {
                g.members.remove(&brno_id);
            }
            Ok(())
        })
        .expect("removal");
    let (concurrent, payload) = held(&brno, &feed(&brno)).remove(0);
    milan
        .ingest_remote(&concurrent.entry.encode(), &payload)
        .expect("taken");
    let store = milan.store();
    let status = |store: &Store| {
        store
            .entry(&feed(&brno), 1)
            .expect("read")
            .expect("held")
            .status
    };
    assert!(status(store).is_void(), "{:?}", status(store));
    let voided = store.doc(&id).expect("doc").expect("held");
    // Back to what schema 6 held: Brno's change accepted and in the document, no removals.
    let change = intercity_protocol::ingest::decode_change(&brno.id(), &payload).expect("change");
    let mut old = Automerge::clone(&voided);
    old.apply_changes([change.clone()]).expect("applies");
    let mut batch = WriteBatch::default();
    let mut entry = store.entry(&feed(&brno), 1).expect("read").expect("held");
    entry.status = Status::Accepted;
    batch.put_cf(
        store.cf("entries"),
        feed_seq(&feed(&brno).to_bytes(), 1),
        entry.encode(),
    );
    let mut info = store.change(&change.hash()).expect("read").expect("noted");
    (info.accepted, info.void, info.removal) = (true, false, false);
    batch.put_cf(store.cf("changes"), change.hash().0, info.encode());
    batch.put_cf(store.cf("docs"), id.0, old.save());
    for (k, _) in store.scan("doc_tail", &id.0).expect("scan") {
        batch.delete_cf(store.cf("doc_tail"), k);
    }
    batch.delete_cf(store.cf("meta"), cuts_key(&id));
    batch.put_cf(store.cf("meta"), b"schema_version", 6u32.to_be_bytes());
    store.write(batch).expect("write");
    store.doc_cache.lock().expect("cache").clear();
    assert_eq!(status(store), Status::Accepted);
    drop(milan);
    let reopened = crate::City::open(dir.path()).expect("reopen");
    assert!(
        status(reopened.store()).is_void(),
        "{:?}",
        status(reopened.store())
    );
    let Record::Group(g) = reopened.record(id).expect("record") else {
        panic!("a group")
    };
    assert_ne!(g.charter, "Brno's charter");
    assert_eq!(
        reopened.store().meta("schema_version").expect("meta"),
        Some(SCHEMA_VERSION.to_be_bytes().to_vec())
    );
}

mod fork_tests {
    use automerge::transaction::CommitOptions;
    use automerge::{ActorId, Automerge, Change, ReadDoc};
    use intercity_protocol::doc;
    use intercity_protocol::entry::{DocId, Hash32, Scope, SignedEntry, sign_entry};
    use intercity_protocol::identity::CityKey;
    use intercity_protocol::record::{Practice, Record};

    fn commit(d: &mut Automerge, actor: ActorId, record: &Record) -> Change {
        d.set_actor(actor);
        let mut tx = d.transaction();
        doc::write_record(&mut tx, record, doc::Texts::Merged).expect("write");
        let (h, _) = tx.commit_with(CommitOptions::default().with_message("m"));
        d.get_change_by_hash(&h.expect("change"))
            .expect("change")
            .clone()
    }

    fn signed(key: &CityKey, seq: u64, prev: Hash32, doc: DocId, c: &Change) -> SignedEntry {
        sign_entry(
            key,
            Scope::Federation,
            seq,
            prev,
            doc,
            c.raw_bytes(),
            1_000 * seq as i64,
        )
    }

    /// Brno's node, restored (or set up again with its key), gets Mallory's branch B first, then
    /// the fork, then its own edit on branch A back from a peer (waiting for ever there: a1 is
    /// not held). Its plain actor's next number in the document is the number of that edit,
    /// which its feed carries already: every edit used to be refused. The edit now takes a
    /// fresh actor.
    #[test]
    fn an_honest_city_edits_after_its_own_void_change_came_back() {
        let mallory = CityKey::from_secret([3; 32]);
        let brno_key = CityKey::from_secret([2; 32]);
        let m = ActorId::from(mallory.id().as_bytes().to_vec());
        let b = ActorId::from(brno_key.id().as_bytes().to_vec());
        let mut p = Practice::new(mallory.id().to_string(), "P", "en");
        p.city = "Milan".into();
        p.editors.push(brno_key.id().to_string());
        let mut rec = Record::Practice(p.clone());
        let mut d = Automerge::new();
        let gc = commit(&mut d, m.clone(), &rec);
        let pid = DocId::for_genesis(&gc.hash());
        let g = signed(&mallory, 1, Hash32::default(), pid, &gc);
        if let Record::Practice(p) = &mut rec {
            p.summary = "A".into();
        }
        let ac = commit(&mut d, m.clone(), &rec);
        let a1 = signed(&mallory, 2, g.hash(), pid, &ac);
        if let Record::Practice(p) = &mut rec {
            p.summary = "A, Brno".into();
        }
        let bc = commit(&mut d, b, &rec);
        let brno_on_a = signed(&brno_key, 1, Hash32::default(), pid, &bc);
        let mut q = Practice::new(mallory.id().to_string(), "Q", "en");
        q.city = "Milan".into();
        let mut mq = mallory.id().as_bytes().to_vec();
        mq.push(1);
        let qc = commit(
            &mut Automerge::new(),
            ActorId::from(mq),
            &Record::Practice(q),
        );
        let b1 = signed(&mallory, 2, g.hash(), DocId::for_genesis(&qc.hash()), &qc);

        let dir = tempfile::tempdir().expect("tmp");
        let city = crate::City::init_with_key(dir.path(), "Brno", None, brno_key).expect("init");
        for (e, c) in [(&g, &gc), (&b1, &qc), (&a1, &ac), (&brno_on_a, &bc)] {
            let v = city.ingest_remote(&e.encode(), c.raw_bytes());
            assert!(v.is_ok(), "{v:?}");
        }
        let r = city.edit(pid, "edit", |r| {
            if let Record::Practice(p) = r {
                p.summary = "Brno again".into();
            }
            Ok(())
        });
        assert!(r.is_ok(), "an honest edit is refused: {r:?}");
    }
}
