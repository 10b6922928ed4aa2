//! Store tests that need its private parts.

use super::*;
use intercity_protocol::ingest::Ledger;

/// A new city, its key made from `seed`, in a directory of its own.
fn city(seed: u8, name: &str) -> (tempfile::TempDir, crate::City) {
    let dir = tempfile::tempdir().expect("tmp");
    let key = intercity_protocol::identity::CityKey::from_secret([seed; 32]);
    let city = crate::City::init_with_key(dir.path(), name, None, key).expect("init");
    (dir, city)
}

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
    // (Read from RocksDB: the store's memory of the row is not told of this write.)
    let row = store.get("meta", &actor_seq_key(&feed, &id, &actor));
    assert_eq!(row.expect("read"), None);
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
    let ((dir, milan), (_b, brno)) = (city(1, "Milan"), city(2, "Brno"));
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

mod catalog;

/// A practice of `city` large enough to be costly to write whole (see `apply::costly`), that
/// `editors` may edit. Imported: its texts plain strings, quick to write and read in a debug
/// build.
fn large_practice(city: &crate::City, editors: &[&crate::City]) -> DocId {
    let mut practice =
        intercity_protocol::record::Practice::new(city.id().to_string(), "Large", "en");
    practice.body = "Notes of the meeting, to be read before it. ".repeat(1600);
    practice.editors = editors.iter().map(|c| c.id().to_string()).collect();
    let imported = city.import(
        vec![crate::exchange::Imported {
            line: 1,
            id: None,
            record: Record::Practice(practice),
        }],
        false,
    );
    imported[0]
        .id
        .as_deref()
        .unwrap_or_else(|| panic!("{imported:?}"))
        .parse()
        .expect("id")
}

/// What a document's stored rows are, read from the store: its tail rows must be numbered 0,
/// 1, 2, ... (a write appends after the last and deletes them by number).
fn stored_rows(store: &Store, id: &DocId) -> apply::Stored {
    let row = store.get("docs", &id.0).expect("read").expect("held");
    // A row naming a payload (schema 8) counts as that payload.
    let base = match payload_named(&row) {
        Some(key) => store
            .get("payloads", &key.0)
            .expect("read")
            .expect("named")
            .len(),
        None => row.len(),
    };
    let tail = store.scan("doc_tail", &id.0).expect("scan");
    for (n, (key, _)) in tail.iter().enumerate() {
        assert_eq!(key[16..], u32::try_from(n).expect("n").to_be_bytes());
    }
    apply::Stored::of(
        base,
        u32::try_from(tail.len()).expect("n"),
        tail.iter().map(|(_, v)| v.len()).sum(),
    )
}

/// A write appends a large document's changes after it, or writes it whole and deletes them,
/// by what the cache noted of its rows when it was written last, or by reading them when it
/// is not cached: either way the rows are what the cache notes, numbered from 0, and the
/// document reads back as it was written.
#[test]
fn a_documents_tail_rows_are_what_the_cache_notes_whether_it_held_the_document_or_not() {
    let (_dir, city) = city(5, "Milan");
    let id = large_practice(&city, &[]);
    let store = city.store();
    let (mut appended, mut rewritten, mut tail_before) = (0, 0, 0);
    for n in 0..70 {
        // Now and then the cache forgets the document, as when others push it out.
        if n % 9 == 4 {
            store.doc_cache.lock().expect("cache").clear();
        }
        city.edit(id, "summary", |r| {
            let Record::Practice(p) = r else {
                unreachable!()
            };
            p.summary = format!("Edit {n}");
            Ok(())
        })
        .expect("edit");
        let rows = stored_rows(store, &id);
        let noted = store
            .doc_cache
            .lock()
            .expect("cache")
            .iter()
            .find(|held| held.id == id)
            .map(|held| held.stored);
        assert_eq!(noted, Some(rows), "edit {n}");
        if rows.tail > tail_before {
            appended += 1;
        } else {
            rewritten += 1;
        }
        tail_before = rows.tail;
        if n % 23 == 22 {
            let in_memory = city.record(id).expect("record");
            store.doc_cache.lock().expect("cache").clear();
            assert_eq!(city.record(id).expect("read back"), in_memory, "edit {n}");
        }
    }
    assert!(
        appended > 60 && rewritten >= 1,
        "{appended} appended, {rewritten} written whole"
    );
}

/// An edit of a cached document changes the cache's copy in place (`Store::lend_doc`: the
/// cache holds no document while the edit runs), unless a reader holds that copy. An edit that
/// fails or changes nothing gives the copy back as it was; one made on an earlier version gives
/// it back before its change is judged; one whose change is not stored (a city that is no
/// editor) leaves the cache without it. A copy is never left lent, and reads as the store's.
#[test]
fn an_edit_changes_the_cached_document_in_place() {
    let ((_m, milan), (_b, brno)) = (city(21, "Milan"), city(22, "Brno"));
    let id = large_practice(&milan, &[]);
    let store = milan.store();
    // Whether `city`'s cache holds the document now, lent or not: Some(lent), with its heads.
    let cached = |city: &crate::City| {
        city.store()
            .doc_cache
            .lock()
            .expect("cache")
            .iter()
            .find(|held| held.id == id)
            .map(|held| {
                if let Some(doc) = &held.doc {
                    assert_eq!(doc.get_heads(), held.heads);
                }
                (held.doc.is_none(), held.heads.clone())
            })
    };
    let at_milan = &milan;
    let summary = |text: &'static str, lent: bool| {
        move |r: &mut Record| {
            assert_eq!(
                cached(at_milan).map(|(l, _)| l),
                Some(lent),
                "lent while edited"
            );
            let Record::Practice(p) = r else {
                unreachable!()
            };
            p.summary = text.into();
            Ok(())
        }
    };
    // The first edit builds the imported record's document; later ones find it cached.
    milan
        .edit(id, "one", |r| {
            let Record::Practice(p) = r else {
                unreachable!()
            };
            p.summary = "One".into();
            Ok(())
        })
        .expect("edit");
    let (_, one) = cached(&milan).expect("a large document is cached");
    milan.edit(id, "two", summary("Two", true)).expect("edit");
    let (lent, two) = cached(&milan).expect("cached");
    assert!(!lent && two != one);
    // A reader holds the copy: the edit makes its own.
    let reader = milan.shared(id).expect("doc");
    assert!(store.lend_doc(&id).is_none(), "lent while shared");
    milan
        .edit(id, "three", summary("Three", false))
        .expect("edit");
    drop(reader);
    let (_, three) = cached(&milan).expect("cached");
    assert_eq!(three.len(), 1);
    assert_ne!(three, two);
    // Given back unchanged, it stays; changed, the cache forgets it.
    let lent = store.lend_doc(&id).expect("lent");
    store.return_doc(&id, Some(lent));
    assert_eq!(cached(&milan), Some((false, three.clone())));
    // Edits that fail, or change nothing, leave it as it was.
    let failed = milan.edit(id, "refused", |_| {
        Err(crate::CityError::Invalid("refused by the caller".into()))
    });
    assert!(failed.is_err());
    assert!(matches!(
        milan.edit(id, "same", summary("Three", true)),
        Err(crate::CityError::Unchanged)
    ));
    let invalid = milan.edit(id, "no title", |r| {
        let Record::Practice(p) = r else {
            unreachable!()
        };
        p.title.clear();
        Ok(())
    });
    assert!(invalid.is_err());
    assert_eq!(cached(&milan), Some((false, three.clone())));
    // Made on an earlier version: judged against the cached copy, given back first.
    milan
        .edit_from(id, &two, "concurrent", |r| {
            assert_eq!(cached(&milan), Some((false, three.clone())));
            let Record::Practice(p) = r else {
                unreachable!()
            };
            p.themes = vec!["repair".into()];
            Ok(())
        })
        .expect("edit");
    let (_, merged) = cached(&milan).expect("cached");
    assert_eq!(merged.len(), 2);
    assert_cache_reads_true(&milan);
    let mut lent = store.lend_doc(&id).expect("lent");
    let mut tx = lent.transaction();
    automerge::transaction::Transactable::put(&mut tx, automerge::ROOT, "x", 1).expect("put");
    tx.commit();
    store.return_doc(&id, Some(lent));
    assert_eq!(cached(&milan), None, "a changed copy is forgotten");
    let in_memory = milan.record(id).expect("record");
    store.doc_cache.lock().expect("cache").clear();
    assert_eq!(milan.record(id).expect("read back"), in_memory);
    let Record::Practice(p) = in_memory else {
        unreachable!()
    };
    assert_eq!(
        (p.summary.as_str(), p.themes),
        ("Three", vec!["repair".into()])
    );

    // Brno holds Milan's practice cached, and is no editor of it: its edit is refused, and
    // its cache forgets the copy the refused change was made on.
    let feed = FeedId {
        author: milan.id(),
        scope: intercity_protocol::entry::Scope::Federation,
    };
    for (e, p) in store.feed_range(&feed, 1, 1000, usize::MAX).expect("range") {
        brno.ingest_remote(&e.entry.encode(), &p).expect("ingest");
    }
    assert_eq!(cached(&brno).map(|(lent, _)| lent), Some(false));
    let before = brno.record(id).expect("record");
    let refused = brno.edit(id, "not mine", |r| {
        let Record::Practice(p) = r else {
            unreachable!()
        };
        p.summary = "Brno's".into();
        Ok(())
    });
    assert!(
        matches!(refused, Err(crate::CityError::Rejected(_))),
        "{refused:?}"
    );
    assert_eq!(cached(&brno), None);
    assert_eq!(brno.record(id).expect("record"), before);
}

/// Every record the cache of `city` keeps is what reading its document gives, and so is the
/// JSON form it keeps with it.
fn assert_cache_reads_true(city: &crate::City) {
    // And so does every row of the actor-seq index it keeps.
    for (held, stored) in city.store().actor_numbers_held() {
        assert_eq!(held, stored, "an actor's number kept is not the store's");
    }
    for held in city.store().doc_cache.lock().expect("cache").iter() {
        if let Some(record) = &held.record {
            assert_eq!(
                Some(record),
                intercity_protocol::doc::read_record(held.doc.as_ref().expect("held"), None)
                    .ok()
                    .as_ref()
            );
        }
        if let Some(json) = &held.json {
            assert_eq!(
                **json,
                intercity_protocol::doc::to_json(held.doc.as_ref().expect("held"), None)
            );
        }
        // The catalog rows it notes are the store's.
        if let Some(noted) = &held.noted {
            let store = city.store();
            let stored: Vec<super::catalog::UnitRows> = store
                .scan("units", &held.id.0)
                .expect("units")
                .into_iter()
                .map(|(key, unit)| super::catalog::UnitRows {
                    fields: serde_json::from_slice(
                        &store.get("texts", &key).expect("texts").expect("held"),
                    )
                    .expect("a texts row"),
                    terms: None,
                    key: key.to_vec(),
                    unit: unit.to_vec(),
                })
                .collect();
            let mut rows = noted.rows.clone();
            rows.sort_by(|a, b| a.key.cmp(&b.key));
            // The terms it notes are those of the texts (and the postings, which callers
            // compare with the texts they hold).
            for row in &mut rows {
                if let Some(terms) = row.terms.take() {
                    assert_eq!(terms, super::catalog::Terms::of(&row.fields));
                }
            }
            assert_eq!(rows, stored);
            let row = store.get("records", &held.id.0).expect("records");
            let summary: crate::store::RecordSummary =
                serde_json::from_slice(&row.expect("a record row")).expect("a summary");
            assert_eq!(noted.updated, summary.updated);
        }
    }
}

/// Every row of the catalog of `city`.
fn catalog_rows(city: &crate::City) -> Rows {
    ["units", "facets", "texts", "postings"]
        .iter()
        .flat_map(|cf| city.store().scan(cf, &[]).expect("scan"))
        .collect()
}

/// A change on top of a cached document is judged against the record the cache keeps instead
/// of reading it again: every record the cache keeps is what reading gives, and a node judges
/// alike with the cache or without (one whose cache is emptied before every entry), through
/// concurrent edits, a merge that does not read as a record (two deletions that empty a title)
/// and edits after it. A city's own edits are read from the JSON form the cache keeps and
/// what they act on (`doc::json_after`): that too is what reading gives.
#[test]
fn a_node_judges_alike_with_the_records_it_caches_or_without() {
    let ((_m, milan), (_b, brno)) = (city(11, "Milan"), city(12, "Brno"));
    let ((_w, warm), (_c, cold)) = (city(13, "Warsaw"), city(14, "Porto"));
    let id = large_practice(&milan, &[&brno]);
    let edit = |city: &crate::City, f: &dyn Fn(&mut intercity_protocol::record::Practice)| {
        let edited = city.edit(id, "edit", |r| {
            let Record::Practice(p) = r else {
                unreachable!()
            };
            f(p);
            Ok(())
        });
        assert_cache_reads_true(city);
        edited
    };
    // Every entry a city holds of the practice's feed, from seq `from`.
    let feed = |city: &crate::City| FeedId {
        author: city.id(),
        scope: intercity_protocol::entry::Scope::Federation,
    };
    let mut sent: std::collections::HashMap<(CityId, CityId), u64> = Default::default();
    let mut deliver = |from: &crate::City, to: &[&crate::City]| {
        for city in to {
            let next = sent.entry((from.id(), city.id())).or_insert(1);
            for (e, p) in from
                .store()
                .feed_range(&feed(from), *next, 1000, usize::MAX)
                .expect("range")
            {
                if city.id() == cold.id() {
                    city.store().doc_cache.lock().expect("cache").clear();
                }
                city.ingest_remote(&e.entry.encode(), &p).expect("ingest");
                *next = e.entry.header.seq + 1;
                assert_cache_reads_true(city);
            }
        }
    };
    edit(&milan, &|p| p.title = "ab".into()).expect("title");
    deliver(&milan, &[&brno, &warm, &cold]);
    for n in 0..3 {
        edit(&milan, &|p| p.summary = format!("Milan's summary {n}")).expect("edit");
        edit(&milan, &|p| p.themes.push(format!("theme {n}"))).expect("edit");
        edit(&brno, &|p| p.outcomes = vec![format!("Brno's outcome {n}")]).expect("edit");
        deliver(&milan, &[&brno, &warm, &cold]);
        deliver(&brno, &[&milan, &warm, &cold]);
    }
    // Two deletions that each leave a title, and together none.
    edit(&milan, &|p| p.title = "b".into()).expect("edit");
    edit(&brno, &|p| p.title = "a".into()).expect("edit");
    deliver(&milan, &[&warm, &cold]);
    deliver(&brno, &[&warm, &cold]);
    // Changes made before each saw the other's deletion.
    edit(&milan, &|p| p.summary = "After".into()).expect("edit");
    edit(&brno, &|p| p.summary = "Also after".into()).expect("edit");
    deliver(&milan, &[&warm, &cold]);
    deliver(&brno, &[&warm, &cold]);
    let verdicts = |city: &crate::City| {
        city.history(id)
            .expect("history")
            .into_iter()
            .map(|h| (h.entry, h.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(verdicts(&warm), verdicts(&cold));
    assert_eq!(verdicts(&warm).len(), 15);
    let read = |city: &crate::City| city.record(id).map_err(|e| e.to_string());
    assert_eq!(read(&warm), read(&cold));
    let noted = |city: &crate::City| {
        city.store()
            .doc_cache
            .lock()
            .expect("cache")
            .iter()
            .any(|held| held.id == id && held.noted.is_some())
    };
    assert!(noted(&warm), "the document is not cached with its rows");
    // The node that replaced the catalog rows it noted wrote what the one that read them did.
    assert_eq!(catalog_rows(&warm), catalog_rows(&cold));
    let stats = |city: &crate::City| city.store().catalog_stats().expect("stats");
    assert_eq!(stats(&warm), stats(&cold));
    // A reindex rewrites every row: the rows noted are forgotten, and read again.
    warm.reindex().expect("reindex");
    assert!(!noted(&warm));
    edit(&milan, &|p| p.summary = "Once more".into()).expect("edit");
    deliver(&milan, &[&warm, &cold]);
    assert!(noted(&warm));
    assert_eq!(catalog_rows(&warm), catalog_rows(&cold));
}

/// A document that is one genesis change received from a peer is stored as the key of the
/// payload row holding the change (schema 8), not as a second copy of it: it loads and reads
/// as the author's, also after a reopen, and a change on top of it stores the whole document.
/// A row naming a payload the store does not hold is an error that says so.
#[test]
fn a_received_genesis_document_is_stored_as_its_payload_row() {
    use intercity_protocol::record::Practice;
    let ((_m, milan), (dir, brno)) = (city(21, "Milan"), city(22, "Brno"));
    let practice = Practice::new(milan.id().to_string(), "Water reuse", "en");
    let id = milan
        .create(&Record::Practice(practice), "create")
        .expect("create");
    let feed = FeedId {
        author: milan.id(),
        scope: intercity_protocol::entry::Scope::Federation,
    };
    let deliver = |from: u64| {
        for (e, p) in milan
            .store()
            .feed_range(&feed, from, 1000, usize::MAX)
            .expect("range")
        {
            brno.ingest_remote(&e.entry.encode(), &p).expect("ingest");
        }
    };
    deliver(1);
    let genesis = milan
        .store()
        .feed_range(&feed, 1, 1, usize::MAX)
        .expect("range");
    let (entry, payload) = &genesis[0];
    let row = brno.store().get("docs", &id.0).expect("read").expect("row");
    assert_eq!(
        row,
        payload_ref(&entry.entry.hash()),
        "not stored as a reference"
    );
    assert_eq!(
        brno.store()
            .get("payloads", &entry.entry.hash().0)
            .expect("read"),
        Some(payload.clone())
    );
    // Its size, for the choice between a tail row and a whole write, is the change's.
    assert_eq!(
        brno.store().stored(&id).expect("stored").size(),
        payload.len()
    );
    let heads = |city: &crate::City| {
        Ledger::doc(city.store(), &id)
            .expect("load")
            .expect("held")
            .get_heads()
    };
    assert_eq!(heads(&brno), heads(&milan));
    assert_eq!(
        brno.record(id).expect("record"),
        milan.record(id).expect("record")
    );
    milan
        .edit(id, "edit", |r| {
            if let Record::Practice(p) = r {
                p.summary = "Grey water for parks".into();
            }
            Ok(())
        })
        .expect("edit");
    deliver(2);
    let row = brno.store().get("docs", &id.0).expect("read").expect("row");
    assert_eq!(
        payload_named(&row),
        None,
        "a changed document is still a reference"
    );
    assert_eq!(heads(&brno), heads(&milan));
    // A second genesis, stored as schema 7 stored it (the change's bytes), then a reopen and a
    // third: both kinds of rows read as the documents.
    let create = |title: &str| {
        milan
            .create(
                &Record::Practice(Practice::new(milan.id().to_string(), title, "en")),
                "create",
            )
            .expect("create")
    };
    let older = create("Bike lanes");
    deliver(3);
    let (_, change) = &milan
        .store()
        .feed_range(&feed, 3, 1, usize::MAX)
        .expect("range")[0];
    let mut batch = WriteBatch::default();
    batch.put_cf(brno.store().cf("docs"), older.0, change);
    batch.put_cf(
        brno.store().cf("meta"),
        b"schema_version",
        7u32.to_be_bytes(),
    );
    brno.store().write(batch).expect("write");
    drop(brno);
    let brno = crate::City::open(dir.path()).expect("reopen");
    assert_eq!(
        brno.store().meta("schema_version").expect("meta"),
        Some(SCHEMA_VERSION.to_be_bytes().to_vec())
    );
    let other = create("Rain gardens");
    for (e, p) in milan
        .store()
        .feed_range(&feed, 4, 1, usize::MAX)
        .expect("range")
    {
        brno.ingest_remote(&e.entry.encode(), &p).expect("ingest");
    }
    let row = brno
        .store()
        .get("docs", &other.0)
        .expect("read")
        .expect("row");
    assert!(payload_named(&row).is_some(), "not stored as a reference");
    for doc in [older, other] {
        assert_eq!(
            brno.record(doc).expect("record"),
            milan.record(doc).expect("record")
        );
    }
    // A reference to a payload the store does not hold.
    let missing = Hash32([9; 32]);
    let mut batch = WriteBatch::default();
    batch.put_cf(brno.store().cf("docs"), other.0, payload_ref(&missing));
    brno.store().write(batch).expect("write");
    let err = Ledger::doc(brno.store(), &other).expect_err("a missing payload loads");
    assert!(err.0.contains(&missing.to_string()), "{err}");
    assert!(brno.record(other).is_err());
}
