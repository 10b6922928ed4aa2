//! Key succession (§15.6 of docs/protocol.md) through the acceptance pipeline: a city keeps its
//! records under a new key, the old key's later entries are void, a contested or forked
//! succession stands nowhere, and every arrival order ends the same.

use std::collections::BTreeMap;

use automerge::transaction::CommitOptions;
use automerge::{ActorId, Automerge, ReadDoc};
use intercity_protocol::doc;
use intercity_protocol::entry::{DocId, FeedId, Hash32, Scope, SignedEntry, sign_entry};
use intercity_protocol::identity::{CityId, CityKey};
use intercity_protocol::ingest::memory::MemLedger;
use intercity_protocol::ingest::{
    IngestError, Ledger, Status, no_succession_reason, retired_reason, scope_of,
};
use intercity_protocol::record::{Agenda, Group, Item, Member, Practice, Record, Role};
use intercity_protocol::succession::{GUARDIANS_DOC, Guardians, SUCCESSION_DOC, Statement};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Wire {
    entry: Vec<u8>,
    payload: Vec<u8>,
}

impl Wire {
    fn header(&self) -> intercity_protocol::entry::Header {
        SignedEntry::decode(&self.entry)
            .expect("test entries decode")
            .header
    }
}

/// A city with its own replica, signing with its newest key (or any it still holds).
struct Town {
    root: CityId,
    keys: Vec<CityKey>,
    ledger: MemLedger,
    /// The statement that made each key a successor: its entry's hash.
    statements: BTreeMap<CityId, Hash32>,
}

impl Town {
    /// Someone holding this city's first key and all it holds (a thief), with no statements.
    fn thief(&self) -> Town {
        Town {
            root: self.root,
            keys: vec![self.keys[0].clone()],
            ledger: self.ledger.clone(),
            statements: BTreeMap::new(),
        }
    }

    fn new(seed: u8) -> Town {
        let key = CityKey::from_secret([seed; 32]);
        Town {
            root: key.id(),
            keys: vec![key],
            ledger: MemLedger::default(),
            statements: BTreeMap::new(),
        }
    }

    fn id(&self) -> String {
        self.root.to_string()
    }

    /// Signs with key number `k` (0 = the root key) on its own replica.
    fn sign_with(&mut self, k: usize, doc: DocId, scope: Scope, payload: Vec<u8>) -> Wire {
        let key = self.keys[k].clone();
        let feed = FeedId {
            author: key.id(),
            scope,
        };
        let head = self.ledger.head(&feed).expect("mem ledger");
        let (seq, prev) = match head {
            Some(h) => (h.seq + 1, h.hash),
            // A successor's group feed starts from its statement.
            None if scope != Scope::Federation => (
                1,
                self.statements.get(&key.id()).copied().unwrap_or_default(),
            ),
            None => (1, Hash32::default()),
        };
        let entry = sign_entry(&key, scope, seq, prev, doc, &payload, 1_000 * seq as i64);
        let wire = Wire {
            entry: entry.encode().to_vec(),
            payload,
        };
        let _ = self.ledger.ingest(&wire.entry, &wire.payload);
        wire
    }

    fn change(&self, k: usize, d: &mut Automerge, record: &Record) -> automerge::Change {
        d.set_actor(ActorId::from(self.keys[k].id().as_bytes().to_vec()));
        let mut tx = d.transaction();
        doc::write_record(&mut tx, record, doc::Texts::Merged).expect("write");
        let (hash, _) = tx.commit_with(CommitOptions::default().with_message("edit"));
        d.get_change_by_hash(&hash.expect("a change"))
            .expect("change")
            .clone()
    }

    fn create(&mut self, record: &Record) -> (DocId, Wire) {
        let mut d = Automerge::new();
        let change = self.change(self.keys.len() - 1, &mut d, record);
        let id = DocId::for_genesis(&change.hash());
        let k = self.keys.len() - 1;
        let wire = self.sign_with(
            k,
            id,
            scope_of(record.kind(), id),
            change.raw_bytes().to_vec(),
        );
        (id, wire)
    }

    /// Edits the replica's state of `id` with `f`, signed by key `k` (no checks).
    fn edit_with(&mut self, k: usize, id: DocId, f: impl FnOnce(&mut Record)) -> Wire {
        let mut d = self.ledger.docs.get(&id).cloned().expect("doc held");
        let mut record = doc::read_record(&d, None).expect("readable");
        f(&mut record);
        let change = self.change(k, &mut d, &record);
        self.sign_with(
            k,
            id,
            scope_of(record.kind(), id),
            change.raw_bytes().to_vec(),
        )
    }

    fn edit(&mut self, id: DocId, f: impl FnOnce(&mut Record)) -> Wire {
        self.edit_with(self.keys.len() - 1, id, f)
    }

    /// Passes the signing right from key `from` to a new key made from `seed`: the statement
    /// caps every feed of the old key at its head on this replica.
    fn rotate_from(&mut self, from: usize, seed: u8) -> Wire {
        let old = self.keys[from].clone();
        let new = CityKey::from_secret([seed; 32]);
        let payload = Statement::sign(self.root, &old, new.id(), self.heads_of(&old.id()));
        self.carry(new, payload)
    }

    /// This replica's heads of every feed of `key`.
    fn heads_of(&self, key: &CityId) -> Vec<(Scope, u64)> {
        self.ledger
            .heads
            .iter()
            .filter(|(f, _)| f.author == *key)
            .map(|(f, h)| (f.scope, h.seq))
            .collect()
    }

    /// Key `k` names `guardians` (their root ids), `threshold` of whom must vouch.
    fn designate(&mut self, k: usize, threshold: u8, guardians: &[&Town]) -> Wire {
        let payload = Guardians {
            city: self.root,
            threshold,
            guardians: guardians.iter().map(|g| g.root).collect(),
        }
        .encode();
        self.sign_with(k, GUARDIANS_DOC, Scope::Federation, payload)
    }

    /// Recovers the right of key `from` (lost) to a new key made from `seed`, with the vouches
    /// of `vouchers` (each signing with its first key, its city id's), resting on the first
    /// designation of that key on this replica.
    fn recover_from(&mut self, from: usize, seed: u8, vouchers: &[&Town]) -> Wire {
        let old = self.keys[from].id();
        let fed = FeedId {
            author: old,
            scope: Scope::Federation,
        };
        let seq = self
            .ledger
            .entries
            .range((fed, 0)..=(fed, u64::MAX))
            .find(|(_, e)| e.entry.header.doc == GUARDIANS_DOC)
            .map(|((_, seq), _)| *seq)
            .expect("a designation");
        let caps = self.heads_of(&old);
        self.recover_on(from, seed, vouchers, seq, caps)
    }

    /// [`Town::recover_from`], resting on the designation at `seq` of that key's feed, with
    /// no caps.
    fn recover_from_designation(
        &mut self,
        from: usize,
        seed: u8,
        vouchers: &[&Town],
        seq: u64,
    ) -> Wire {
        self.recover_on(from, seed, vouchers, seq, vec![])
    }

    /// A recovery of key `from` to a new key made from `seed`, resting on the designation at
    /// `seq` of that key's federation feed, with `caps` and the vouches of `vouchers` (each
    /// signing with its first key).
    fn recover_on(
        &mut self,
        from: usize,
        seed: u8,
        vouchers: &[&Town],
        seq: u64,
        caps: Vec<(Scope, u64)>,
    ) -> Wire {
        let old = self.keys[from].id();
        let fed = FeedId {
            author: old,
            scope: Scope::Federation,
        };
        let designation = self.ledger.entries[&(fed, seq)].entry.clone();
        let payload = self.ledger.payloads[&designation.hash()].clone();
        let new = CityKey::from_secret([seed; 32]);
        let guardians = Guardians::decode(&payload).expect("designation").guardians;
        let body = Statement::recovery_body(self.root, old, new.id(), caps);
        let vouches: Vec<(u8, CityId, [u8; 64])> = vouchers
            .iter()
            .map(|g| {
                let key = &g.keys[0];
                let i = guardians.iter().position(|c| *c == g.root).unwrap_or(99) as u8;
                (
                    i,
                    key.id(),
                    Statement::vouch(&body, &designation.hash(), key),
                )
            })
            .collect();
        let payload =
            Statement::assemble_recovery(&body, &designation.encode(), &payload, &vouches);
        self.carry(new, payload)
    }

    /// Carries a statement's payload as the first entry of `new`'s federation feed.
    fn carry(&mut self, new: CityKey, payload: Vec<u8>) -> Wire {
        let entry = sign_entry(
            &new,
            Scope::Federation,
            1,
            Hash32::default(),
            SUCCESSION_DOC,
            &payload,
            99,
        );
        let wire = Wire {
            entry: entry.encode().to_vec(),
            payload,
        };
        self.statements.insert(new.id(), entry.hash());
        self.keys.push(new);
        // Its own replica may not take it (a chain it does not hold): delivery decides.
        let _ = self.ledger.ingest(&wire.entry, &wire.payload);
        wire
    }

    fn rotate(&mut self, seed: u8) -> Wire {
        self.rotate_from(self.keys.len() - 1, seed)
    }

    fn receive(&mut self, wires: &[Wire]) {
        for w in wires {
            let _ = self.ledger.ingest(&w.entry, &w.payload);
        }
    }
}

fn practice(owner: &Town, title: &str) -> Record {
    let mut p = Practice::new(owner.id(), title, "en");
    p.city = "Milan".into();
    p.into()
}

fn group(chair: &Town, members: &[&Town]) -> Record {
    let mut g = Group::new("Smart Social Inclusion", chair.id(), "Milan");
    for c in members {
        g.members.insert(
            c.id(),
            Member {
                name: "member".into(),
                role: Role::Member,
            },
        );
    }
    g.agendas.insert(
        "a1a1a1a1a1a1a1a1".into(),
        Agenda::new("Study visit Milan", "2017-02-23"),
    );
    g.into()
}

fn summary(s: &str) -> impl FnOnce(&mut Record) {
    let s = s.to_string();
    move |r| match r {
        Record::Practice(p) => p.summary = s,
        _ => panic!("not a practice"),
    }
}

fn add_item(title: &str) -> impl FnOnce(&mut Record) {
    let title = title.to_string();
    move |r| match r {
        Record::Group(g) => {
            let mut item = Item::new(title.clone());
            item.id = format!("{:x}", title.len() * 7919);
            g.agendas
                .get_mut("a1a1a1a1a1a1a1a1")
                .expect("agenda")
                .items
                .push(item);
        }
        _ => panic!("not a group"),
    }
}

/// Delivers `order` as sync would: an entry refused for now (a gap, a statement not held yet)
/// comes again after the others, until nothing more can be taken.
fn deliver(order: &[Wire]) -> MemLedger {
    let mut l = MemLedger::default();
    let mut rest: Vec<Wire> = order.to_vec();
    loop {
        let before = rest.len();
        rest.retain(|w| l.ingest(&w.entry, &w.payload).is_err());
        if rest.is_empty() || rest.len() == before {
            return l;
        }
    }
}

type Fingerprint = (
    BTreeMap<DocId, serde_json::Value>,
    BTreeMap<(FeedId, u64), Status>,
);

fn fingerprint(l: &MemLedger) -> Fingerprint {
    (
        l.docs
            .iter()
            .map(|(id, d)| (*id, doc::to_json(d, None)))
            .collect(),
        l.entries
            .iter()
            .map(|(k, e)| (*k, e.status.clone()))
            .collect(),
    )
}

/// Every order of `wires` made by `n` pseudo-random shuffles (feed order is not kept: the
/// delivery retries what comes too early), plus the given order and its reverse.
fn orders(wires: &[Wire], n: u64) -> Vec<Vec<Wire>> {
    let mut out = vec![wires.to_vec(), wires.iter().rev().cloned().collect()];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..n {
        let mut v = wires.to_vec();
        for i in (1..v.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            v.swap(i, (state % (i as u64 + 1)) as usize);
        }
        out.push(v);
    }
    out
}

fn same_in_every_order(wires: &[Wire]) -> MemLedger {
    let mut first: Option<(MemLedger, Fingerprint)> = None;
    for order in orders(wires, 40) {
        let l = deliver(&order);
        let f = fingerprint(&l);
        assert_eq!(
            l.entries.len(),
            wires.len(),
            "every entry is taken in the end"
        );
        match &first {
            None => first = Some((l, f)),
            Some((_, held)) => assert_eq!(&f, held, "another order, another outcome"),
        }
    }
    first.expect("one order").0
}

fn status(l: &MemLedger, w: &Wire) -> Status {
    let h = w.header();
    l.entries[&(h.feed(), h.seq)].status.clone()
}

fn read(l: &MemLedger, id: DocId) -> Record {
    doc::read_record(&l.docs[&id], None).expect("readable")
}

/// The case the issue names: a city's new key keeps its records editable (on the old code
/// there was no way: the new key was "neither the owner nor an editor").
#[test]
fn a_city_keeps_its_records_under_a_new_key_in_any_order() {
    let (mut milan, mut brno) = (Town::new(1), Town::new(2));
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let (g, w2) = milan.create(&group(&milan, &[&brno]));
    brno.receive(&[w1.clone(), w2.clone()]);
    let w3 = brno.edit(g, add_item("Brno's item"));
    milan.receive(std::slice::from_ref(&w3));
    let w4 = milan.edit(g, add_item("before"));
    let s = milan.rotate(11);
    let w5 = milan.edit(p, summary("edited under the new key"));
    let w6 = milan.edit(g, add_item("after the rotation"));
    // A new record under the new key is still Milan's.
    let (q, w7) = milan.create(&practice(&milan, "Urban gardens"));
    let all = [
        w1,
        w2,
        w3,
        w4,
        s.clone(),
        w5.clone(),
        w6.clone(),
        w7.clone(),
    ];
    let l = same_in_every_order(&all);
    for w in [&s, &w5, &w6, &w7] {
        assert_eq!(status(&l, w), Status::Accepted, "{:?}", w.header());
    }
    match read(&l, p) {
        Record::Practice(pr) => {
            assert_eq!(pr.summary, "edited under the new key");
            assert_eq!(pr.owner, milan.id());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(read(&l, q).owner(), Some(milan.id().as_str()));
    match read(&l, g) {
        Record::Group(gr) => {
            let items: Vec<_> = gr.agendas["a1a1a1a1a1a1a1a1"]
                .items
                .iter()
                .map(|i| i.title.clone())
                .collect();
            assert!(
                items.contains(&"after the rotation".to_string()),
                "{items:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// The old key, stolen, keeps signing: in its federation feed, in a group feed past the cap,
/// and in a group where it never wrote. All of it is void on every node, whatever the order.
#[test]
fn a_retired_key_s_later_entries_are_void_in_any_order() {
    let (mut milan, mut brno) = (Town::new(1), Town::new(2));
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let (g, w2) = milan.create(&group(&milan, &[&brno]));
    let (g2, w3) = brno.create(&group(&brno, &[&milan]));
    milan.receive(std::slice::from_ref(&w3));
    let s = milan.rotate(11);
    // The thief, with key 0.
    let t1 = milan.edit_with(0, p, summary("stolen"));
    let t2 = milan.edit_with(0, g, add_item("stolen item"));
    let t3 = milan.edit_with(0, g2, add_item("stolen item in Brno's group"));
    let w4 = milan.edit(p, summary("the city's own"));
    let all = [
        w1,
        w2,
        w3,
        s,
        t1.clone(),
        t2.clone(),
        t3.clone(),
        w4.clone(),
    ];
    let l = same_in_every_order(&all);
    for t in [&t1, &t2, &t3] {
        assert_eq!(status(&l, t), Status::Rejected(retired_reason()));
    }
    assert_eq!(status(&l, &w4), Status::Accepted);
    match read(&l, p) {
        Record::Practice(pr) => assert_eq!(pr.summary, "the city's own"),
        other => panic!("{other:?}"),
    }
    for id in [g, g2] {
        match read(&l, id) {
            Record::Group(gr) => assert!(gr.agendas["a1a1a1a1a1a1a1a1"].items.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}

/// The thief names a successor of its own: two successors of one key, so neither stands, and
/// the entries of both are void everywhere (the city recovers with its guardians, §15.6).
#[test]
fn a_contested_succession_stands_nowhere_in_any_order() {
    let mut milan = Town::new(1);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let s1 = milan.rotate_from(0, 11);
    let w2 = milan.edit(p, summary("the city's"));
    let s2 = milan.rotate_from(0, 12);
    let w3 = milan.edit(p, summary("the thief's"));
    let all = [w1, s1.clone(), w2.clone(), s2.clone(), w3.clone()];
    let l = same_in_every_order(&all);
    for w in [&s1, &w2, &s2, &w3] {
        assert_eq!(status(&l, w), Status::Rejected(no_succession_reason()));
    }
    match read(&l, p) {
        Record::Practice(pr) => assert_eq!(pr.summary, ""),
        other => panic!("{other:?}"),
    }
}

/// A key passes twice: the third key writes for the city too, and the second's later
/// entries are void.
#[test]
fn a_chain_of_successions_keeps_the_city_in_any_order() {
    let mut milan = Town::new(1);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let s1 = milan.rotate(11);
    let w2 = milan.edit(p, summary("second key"));
    let s2 = milan.rotate(12);
    let w3 = milan.edit(p, summary("third key"));
    let t = milan.edit_with(1, p, summary("second key, stolen"));
    let all = [w1, s1, w2.clone(), s2, w3.clone(), t.clone()];
    let l = same_in_every_order(&all);
    assert_eq!(status(&l, &w2), Status::Accepted);
    assert_eq!(status(&l, &w3), Status::Accepted);
    assert_eq!(status(&l, &t), Status::Rejected(retired_reason()));
    match read(&l, p) {
        Record::Practice(pr) => assert_eq!(pr.summary, "third key"),
        other => panic!("{other:?}"),
    }
}

/// A successor's group feed waits, unstored, for its statement; so does a statement whose old
/// key is itself a successor not yet known.
#[test]
fn successor_feeds_wait_for_their_statement() {
    let (mut milan, brno) = (Town::new(1), Town::new(2));
    let (g, w1) = milan.create(&group(&milan, &[&brno]));
    let s1 = milan.rotate(11);
    let w2 = milan.edit(g, add_item("new key"));
    let s2 = milan.rotate(12);
    let mut l = MemLedger::default();
    l.ingest(&w1.entry, &w1.payload).expect("genesis");
    for w in [&w2, &s2] {
        match l.ingest(&w.entry, &w.payload) {
            Err(IngestError::Successor(_)) => {}
            other => panic!("expected to wait for the statement: {other:?}"),
        }
    }
    assert_eq!(l.entries.len(), 1, "nothing stored");
    for w in [&s1, &w2, &s2] {
        l.ingest(&w.entry, &w.payload).expect("taken now");
    }
    assert_eq!(status(&l, &w2), Status::Accepted);
}

/// Statements that do not hold: signed by another key than the old one, or carried by a key
/// it does not name. Refused (never stored: a stranger's key gets nothing kept), and they
/// change nothing.
#[test]
fn a_statement_must_be_the_old_and_new_keys_consent() {
    let mut milan = Town::new(1);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let thief = CityKey::from_secret([66; 32]);
    let new = CityKey::from_secret([11; 32]);
    let carry = |key: &CityKey, payload: Vec<u8>| {
        let e = sign_entry(
            key,
            Scope::Federation,
            1,
            Hash32::default(),
            SUCCESSION_DOC,
            &payload,
            5,
        );
        Wire {
            entry: e.encode().to_vec(),
            payload,
        }
    };
    // The thief signs as the old key: the signature does not verify.
    let mut forged = Statement::sign(milan.root, &thief, new.id(), vec![]);
    forged[33..65].copy_from_slice(milan.root.as_bytes());
    let bad_sig = carry(&new, forged);
    // A real statement, carried by a key it does not name.
    let real = Statement::sign(milan.root, &milan.keys[0], new.id(), vec![]);
    let wrong_carrier = carry(&thief, real);
    let mut l = MemLedger::default();
    l.ingest(&w1.entry, &w1.payload).expect("feed level");
    for w in [&bad_sig, &wrong_carrier] {
        match l.ingest(&w.entry, &w.payload) {
            Err(IngestError::BadStatement(_)) => {}
            other => panic!("a statement without both keys' consent was taken: {other:?}"),
        }
    }
    assert_eq!(l.entries.len(), 1, "nothing stored");
    assert!(l.passed.is_empty());
    // Milan's old key still writes.
    let w2 = milan.edit(p, summary("still the root key"));
    l.ingest(&w2.entry, &w2.payload).expect("feed level");
    assert_eq!(status(&l, &w2), Status::Accepted);
}

/// The new key signs two different first entries (its statement forked): its succession does
/// not stand, on every node, whichever branch it holds; the old key stays capped.
#[test]
fn a_forked_statement_voids_the_successor() {
    let mut milan = Town::new(1);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let s1 = milan.rotate(11);
    let w2 = milan.edit(p, summary("new key"));
    let other = {
        // A valid first entry of another kind: a record of its own.
        let mut d = Automerge::new();
        let change = milan.change(1, &mut d, &practice(&milan, "the other branch"));
        let payload = change.raw_bytes().to_vec();
        let e = sign_entry(
            &milan.keys[1],
            Scope::Federation,
            1,
            Hash32::default(),
            DocId::for_genesis(&change.hash()),
            &payload,
            3,
        );
        Wire {
            entry: e.encode().to_vec(),
            payload,
        }
    };
    for order in [
        vec![&w1, &s1, &w2, &other],
        vec![&w1, &s1, &other, &w2],
        vec![&w1, &other, &s1, &w2],
    ] {
        let mut l = MemLedger::default();
        for w in order {
            let _ = l.ingest(&w.entry, &w.payload);
        }
        if let Some(e) = l.entries.get(&(w2.header().feed(), w2.header().seq)) {
            assert!(e.status.is_void(), "{:?}", e.status);
        }
        match read(&l, p) {
            Record::Practice(pr) => assert_eq!(pr.summary, ""),
            other => panic!("{other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Rotations, a thief's entries with old keys, a contested succession and edits of a
    /// second city, delivered in any order: every replica ends the same.
    #[test]
    fn successions_judge_the_same_in_any_order(
        steps in proptest::collection::vec(0u8..10, 1..12),
        seed in any::<u64>(),
    ) {
        let (mut milan, mut brno) = (Town::new(1), Town::new(2));
        let (p, w1) = milan.create(&practice(&milan, "Housing first"));
        let (g, w2) = milan.create(&group(&milan, &[&brno]));
        brno.receive(&[w1.clone(), w2.clone()]);
        let mut all = vec![w1, w2];
        let mut next_seed = 20u8;
        for (i, step) in steps.iter().enumerate() {
            let w = match step {
                0 => { next_seed += 1; milan.rotate(next_seed) }
                1 => milan.edit(p, summary(&format!("edit {i}"))),
                2 => milan.edit(g, add_item(&format!("item {i}"))),
                3 => milan.edit_with(0, p, summary(&format!("old key {i}"))),
                4 => { next_seed += 1; milan.rotate_from(0, next_seed) }
                6 => milan.designate(0, 1, &[&brno]),
                7 => {
                    next_seed += 1;
                    if milan.ledger.entries.values().any(|e| e.entry.header.doc == GUARDIANS_DOC) {
                        milan.recover_from(0, next_seed, &[&brno])
                    } else {
                        milan.edit(p, summary(&format!("no guardians yet {i}")))
                    }
                }
                // Brno (the guardian) rotates; later vouches are signed with its new key.
                8 => {
                    next_seed += 1;
                    let w = brno.rotate(next_seed + 100);
                    milan.receive(std::slice::from_ref(&w));
                    w
                }
                // Brno's first key contests Brno's rotation: vouches by Brno's new key fall.
                9 => {
                    next_seed += 1;
                    brno.rotate_from(0, next_seed + 100)
                }
                _ => {
                    brno.receive(&all);
                    brno.edit(g, add_item(&format!("brno {i}")))
                }
            };
            all.push(w);
        }
        let mut first: Option<Fingerprint> = None;
        for order in orders(&all, 6 + seed % 4) {
            let f = fingerprint(&deliver(&order));
            match &first {
                None => first = Some(f),
                Some(held) => prop_assert_eq!(&f, held),
            }
        }
    }
}

// ---------------------------------------------------------------- recovery by guardians

fn three() -> (Town, Town, Town) {
    (Town::new(1), Town::new(2), Town::new(3))
}

fn summary_of(l: &MemLedger, id: DocId) -> String {
    match read(l, id) {
        Record::Practice(pr) => pr.summary,
        other => panic!("{other:?}"),
    }
}

/// Milan names Brno and Warsaw its guardians (both needed), then loses its key: with their
/// vouches it moves to a new key and edits its practice, on every node, in any order.
#[test]
fn a_lost_key_is_recovered_by_its_guardians_in_any_order() {
    let (mut milan, brno, warsaw) = three();
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 2, &[&brno, &warsaw]);
    let r = milan.recover_from(0, 11, &[&brno, &warsaw]);
    let w2 = milan.edit(p, summary("recovered"));
    let l = same_in_every_order(&[w1, d.clone(), r.clone(), w2.clone()]);
    assert_eq!(status(&l, &d), Status::Accepted);
    assert_eq!(status(&l, &r), Status::Accepted);
    assert_eq!(status(&l, &w2), Status::Accepted);
    assert_eq!(summary_of(&l, p), "recovered");
}

/// One vouch where two are needed: the recovery is refused (never stored), and the new key's
/// feed goes nowhere; Milan's old key keeps its right.
#[test]
fn too_few_vouches_recover_nothing() {
    let (mut milan, brno, warsaw) = three();
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 2, &[&brno, &warsaw]);
    let r = milan.recover_from(0, 11, &[&brno]);
    let w2 = milan.edit(p, summary("not recovered"));
    let mut l = MemLedger::default();
    for w in [&w1, &d] {
        l.ingest(&w.entry, &w.payload).expect("taken");
    }
    match l.ingest(&r.entry, &r.payload) {
        Err(IngestError::BadStatement(why)) => assert!(why.contains("guardians"), "{why}"),
        other => panic!("a recovery with too few vouches was taken: {other:?}"),
    }
    // The new key, with no statement taken, is nobody's: its edit of Milan's practice is a
    // stranger's.
    l.ingest(&w2.entry, &w2.payload).expect("feed level");
    assert!(matches!(status(&l, &w2), Status::Rejected(ref why) if !why.starts_with("void")));
    assert_eq!(summary_of(&l, p), "");
    let w3 = milan.edit_with(0, p, summary("the old key still writes"));
    l.ingest(&w3.entry, &w3.payload).expect("feed level");
    assert_eq!(status(&l, &w3), Status::Accepted);
}

/// The thief holding Milan's old key moves it to a key of its own; Milan's guardians recover
/// it to Milan's new key. The recovery wins on every node, whatever came first: the thief's
/// edits are void, Milan's stand.
#[test]
fn a_recovery_beats_a_thief_s_statement_in_any_order() {
    let (mut milan, brno, warsaw) = three();
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let mut thief = milan.thief();
    let t1 = thief.rotate(66);
    let t2 = thief.edit(p, summary("the thief's"));
    let r = milan.recover_from(0, 11, &[&warsaw]);
    let w2 = milan.edit(p, summary("Milan's"));
    let l = same_in_every_order(&[w1, d, t1.clone(), t2.clone(), r.clone(), w2.clone()]);
    assert_eq!(status(&l, &t1), Status::Rejected(no_succession_reason()));
    assert_eq!(status(&l, &t2), Status::Rejected(no_succession_reason()));
    assert_eq!(status(&l, &r), Status::Accepted);
    assert_eq!(status(&l, &w2), Status::Accepted);
    assert_eq!(summary_of(&l, p), "Milan's");
}

/// The thief names guardians of its own (a later designation) and recovers with them: only
/// the key's first designation counts, so the thief's recovery is refused (never stored) and
/// Milan's wins, everywhere.
#[test]
fn a_thief_s_later_designation_loses_in_any_order() {
    let (mut milan, brno, warsaw) = three();
    let puppet = Town::new(77);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let mut thief = milan.thief();
    let td = thief.designate(0, 1, &[&puppet]);
    let tr = thief.recover_from_designation(0, 66, &[&puppet], 3);
    let r = milan.recover_from(0, 11, &[&brno]);
    let w2 = milan.edit(p, summary("Milan's"));
    for order in orders(&[w1, d, td, tr.clone(), r.clone(), w2.clone()], 30) {
        let l = deliver(&order);
        assert_eq!(status_opt(&l, &tr), None, "the thief's recovery");
        assert_eq!(status(&l, &r), Status::Accepted);
        assert_eq!(status(&l, &w2), Status::Accepted);
        assert_eq!(summary_of(&l, p), "Milan's");
    }
}

/// The thief forks Milan's federation feed below the designation: no recovery resting on it
/// stands (the thief stalls the recovery; it never takes the city), on every node.
#[test]
fn a_fork_below_the_designation_stalls_the_recovery() {
    let (mut milan, brno, warsaw) = three();
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let r = milan.recover_from(0, 11, &[&brno]);
    let w2 = milan.edit(p, summary("Milan's"));
    // The thief signs another first entry in Milan's old federation feed: a record of its own.
    let mut thief = Town::new(1);
    let (_, fork) = thief.create(&practice(&thief, "the thief's branch"));
    for order in [
        vec![&w1, &d, &r, &w2, &fork],
        vec![&fork, &w1, &d, &r, &w2],
        vec![&w1, &d, &fork, &r, &w2],
    ] {
        let mut l = MemLedger::default();
        for w in order {
            let _ = l.ingest(&w.entry, &w.payload);
        }
        let stood = l
            .entries
            .get(&(r.header().feed(), 1))
            .is_some_and(|e| e.status == Status::Accepted);
        assert!(!stood, "a recovery resting on a forked designation stood");
        if let Some(e) = l.entries.get(&(w2.header().feed(), w2.header().seq)) {
            assert_ne!(e.status, Status::Accepted);
        }
    }
}

// ---------------------------------------------------------------- review of 5896001 (attacker review)

fn wire_raw(
    key: &CityKey,
    scope: Scope,
    seq: u64,
    prev: Hash32,
    doc: DocId,
    payload: Vec<u8>,
) -> Wire {
    let e = sign_entry(key, scope, seq, prev, doc, &payload, 7 * seq as i64);
    Wire {
        entry: e.encode().to_vec(),
        payload,
    }
}

fn hash_of(w: &Wire) -> Hash32 {
    SignedEntry::decode(&w.entry).expect("decodes").hash()
}

fn ingest_in(order: &[&Wire]) -> MemLedger {
    let mut l = MemLedger::default();
    for w in order {
        let _ = l.ingest(&w.entry, &w.payload);
    }
    l
}

fn status_opt(l: &MemLedger, w: &Wire) -> Option<Status> {
    let h = w.header();
    l.entries.get(&(h.feed(), h.seq)).map(|e| e.status.clone())
}

/// A first entry of the new key's federation feed other than the statement (a fork of it).
fn other_first(milan: &Town, k: usize) -> Wire {
    let mut d = Automerge::new();
    let change = milan.change(k, &mut d, &practice(milan, "the other branch"));
    wire_raw(
        &milan.keys[k],
        Scope::Federation,
        1,
        Hash32::default(),
        DocId::for_genesis(&change.hash()),
        change.raw_bytes().to_vec(),
    )
}

/// R1. A fork of the statement entry: a node that held the other branch first never stores
/// the statement, so the old key is not capped there; the old key's later edit is taken as
/// the city's on that node, void on the node that held the statement first.
#[test]
fn a_forked_statement_caps_the_old_key_the_same_in_any_order() {
    let mut milan = Town::new(1);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let s1 = milan.rotate(11);
    let other = other_first(&milan, 1);
    // The old key (a thief, or the city by mistake) edits after the rotation.
    let t = milan.edit_with(0, p, summary("old key after the rotation"));
    let a = ingest_in(&[&w1, &s1, &other, &t]);
    let b = ingest_in(&[&w1, &other, &s1, &t]);
    assert_eq!(status_opt(&a, &t), status_opt(&b, &t), "the old key's edit");
    assert_eq!(fingerprint(&a).0, fingerprint(&b).0, "documents");
}

/// R1b. The same through a chain V -> K2 -> K3 with K2's statement forked: on the node that
/// held K2's other branch first, K3's statement is rejected ("not a key") and never stored:
/// K2 is not capped and K3's later entries are judged as K3, not as void.
#[test]
fn a_forked_middle_statement_judges_the_chain_the_same() {
    let mut milan = Town::new(1);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let s2 = milan.rotate(11);
    let s3 = milan.rotate(12);
    let w3 = milan.edit(p, summary("third key"));
    let other = other_first(&milan, 1);
    let t = milan.edit_with(1, p, summary("second key after its rotation"));
    let a = ingest_in(&[&w1, &s2, &s3, &w3, &other, &t]);
    let b = ingest_in(&[&w1, &other, &s2, &s3, &w3, &t]);
    assert_eq!(status_opt(&a, &s3), status_opt(&b, &s3), "K3's statement");
    assert_eq!(status_opt(&a, &w3), status_opt(&b, &w3), "K3's edit");
}

/// R2. An entry naming SUCCESSION_DOC past a cap: judged "not first" when the statement came
/// first, "retired" when the statement came after (settle revises it, the statement path
/// does not read the cut).
#[test]
fn a_succession_doc_entry_past_a_cap_is_judged_the_same_in_any_order() {
    let mut milan = Town::new(1);
    let (_p, w1) = milan.create(&practice(&milan, "Housing first"));
    let s1 = milan.rotate(11);
    // The old key's federation feed, seq 2 (past its cap of 1): any payload, SUCCESSION_DOC.
    let junk = wire_raw(
        &milan.keys[0],
        Scope::Federation,
        2,
        hash_of(&w1),
        SUCCESSION_DOC,
        b"not a statement".to_vec(),
    );
    let a = ingest_in(&[&w1, &s1, &junk]);
    let b = ingest_in(&[&w1, &junk, &s1]);
    assert_eq!(status_opt(&a, &junk), status_opt(&b, &junk));
}

/// R3. Anyone's key can get an entry stored by carrying a roster city's public, valid
/// statement (or any statement naming a roster city) at seq 1 of its own federation feed: it
/// is rejected and kept. The node's filter (`statement_of`) and `accept_succession` let such
/// entries in from non-roster keys, and a guest (any inbound peer now) can present 64 a time.
#[test]
fn a_stranger_cannot_get_entries_stored_by_carrying_a_statement() {
    let mut milan = Town::new(1);
    let (_p, w1) = milan.create(&practice(&milan, "Housing first"));
    let s1 = milan.rotate(11);
    let mut l = MemLedger::default();
    for w in [&w1, &s1] {
        l.ingest(&w.entry, &w.payload).expect("taken");
    }
    let before = l.entries.len();
    for i in 0..50u8 {
        let stranger = CityKey::from_secret([100 + i; 32]);
        let w = wire_raw(
            &stranger,
            Scope::Federation,
            1,
            Hash32::default(),
            SUCCESSION_DOC,
            s1.payload.clone(),
        );
        let _ = l.ingest(&w.entry, &w.payload);
    }
    assert_eq!(l.entries.len(), before, "a stranger's carrier is stored");
}

/// R4 (cost). One old key signs many statements (a thief of an old key, or a hostile roster
/// city: each needs only a fresh carrier key). Each one's ingestion recomputes the cut of
/// every earlier successor's feeds, each reading all the statements: the work grows as n² per
/// statement.
#[test]
#[ignore]
fn many_statements_of_one_key_cost_linear_time() {
    let milan = Town::new(1);
    let mut l = MemLedger::default();
    let mut last = std::time::Instant::now();
    let n: u32 = std::env::var("R4_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(800);
    for i in 0..n {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        seed[31] = 0xaa;
        let new = CityKey::from_secret(seed);
        let payload = Statement::sign(milan.root, &milan.keys[0], new.id(), vec![]);
        let w = wire_raw(
            &new,
            Scope::Federation,
            1,
            Hash32::default(),
            SUCCESSION_DOC,
            payload,
        );
        l.ingest(&w.entry, &w.payload).expect("taken");
        if (i + 1) % 100 == 0 {
            eprintln!("statements {}..{}: {:?}", i - 98, i + 1, last.elapsed());
            last = std::time::Instant::now();
        }
    }
}

fn deliver_batched(order: &[Wire], size: usize) -> MemLedger {
    use intercity_protocol::ingest::Batch;
    let mut l = MemLedger::default();
    let mut rest: Vec<Wire> = order.to_vec();
    loop {
        let before = rest.len();
        let mut left = Vec::new();
        for chunk in rest.chunks(size) {
            let commit = {
                let mut b = Batch::new(&l);
                for w in chunk {
                    if b.ingest(&w.entry, &w.payload).is_err() {
                        left.push(w.clone());
                    }
                }
                b.into_commit()
            };
            l.apply(commit);
        }
        rest = left;
        if rest.is_empty() || rest.len() == before {
            return l;
        }
    }
}

/// R5. Batches judge as single entries do, for the succession scenarios.
#[test]
fn successions_batched_judge_as_single_entries() {
    let (mut milan, mut brno) = (Town::new(1), Town::new(2));
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let (g, w2) = milan.create(&group(&milan, &[&brno]));
    brno.receive(&[w1.clone(), w2.clone()]);
    let b1 = brno.edit(g, add_item("brno 1"));
    milan.receive(std::slice::from_ref(&b1));
    let s1 = milan.rotate(11);
    let e1 = milan.edit(g, add_item("k2 item"));
    let e2 = milan.edit(p, summary("k2 summary"));
    let s2 = milan.rotate(12);
    let e3 = milan.edit(g, add_item("k3 item"));
    let t1 = milan.edit_with(0, p, summary("thief"));
    let t2 = milan.edit_with(1, g, add_item("k2 thief"));
    let s3 = milan.rotate_from(1, 13); // K2 contested
    let e4 = milan.edit(g, add_item("k4 item"));
    let all = vec![w1, w2, b1, s1, e1, e2, s2, e3, t1, t2, s3, e4];
    for order in orders(&all, 10) {
        let single = fingerprint(&deliver(&order));
        for size in [2, 3, 5, all.len()] {
            let batched = fingerprint(&deliver_batched(&order, size));
            assert_eq!(batched, single, "batch size {size}");
        }
    }
}

fn remove_member(who: &Town) -> impl FnOnce(&mut Record) {
    let id = who.id();
    move |r| match r {
        Record::Group(g) => {
            g.members.remove(&id);
        }
        _ => panic!("not a group"),
    }
}

/// R6. Removal (§15.5) and succession: Brno removes Milan; Milan, not having seen it,
/// rotates and writes with its new key; and a successor key removes a member who writes
/// concurrently.
#[test]
fn a_removal_unseen_before_a_rotation_voids_the_successor_s_edit() {
    let (mut milan, mut brno, mut rome) = (Town::new(1), Town::new(2), Town::new(3));
    // Brno chairs; Milan and Rome are members.
    let (g, w1) = brno.create(&group(&brno, &[&milan, &rome]));
    milan.receive(std::slice::from_ref(&w1));
    rome.receive(std::slice::from_ref(&w1));
    let m1 = milan.edit(g, add_item("milan before"));
    brno.receive(std::slice::from_ref(&m1));
    let r = brno.edit(g, remove_member(&milan));
    // Milan has not seen the removal.
    let s = milan.rotate(11);
    let m2 = milan.edit(g, add_item("milan's new key, unseen removal"));
    let all = [w1, m1, r, s, m2.clone()];
    let l = same_in_every_order(&all);
    assert!(status(&l, &m2).is_void(), "{:?}", status(&l, &m2));
}

/// R6b. A successor key is a chair: it removes Rome, who writes concurrently.
#[test]
fn a_successor_s_removal_is_final_in_any_order() {
    let (mut milan, mut rome) = (Town::new(1), Town::new(3));
    let (g, w1) = milan.create(&group(&milan, &[&rome]));
    rome.receive(std::slice::from_ref(&w1));
    let s = milan.rotate(11);
    let r = milan.edit(g, remove_member(&rome));
    let x = rome.edit(g, add_item("rome unseen removal"));
    let all = [w1, s, r.clone(), x.clone()];
    let l = same_in_every_order(&all);
    assert_eq!(status(&l, &r), Status::Accepted);
    assert!(status(&l, &x).is_void(), "{:?}", status(&l, &x));
}

/// R6c. The successor's removal, then its succession contested: the removal is void and
/// Rome's concurrent edit given back, in any order.
#[test]
fn a_contested_successor_s_removal_is_void_in_any_order() {
    let (mut milan, mut rome) = (Town::new(1), Town::new(3));
    let (g, w1) = milan.create(&group(&milan, &[&rome]));
    rome.receive(std::slice::from_ref(&w1));
    let s = milan.rotate(11);
    let r = milan.edit(g, remove_member(&rome));
    let x = rome.edit(g, add_item("rome unseen removal"));
    let c = milan.rotate_from(0, 12);
    let y = milan.edit(g, add_item("thief key item"));
    let all = [w1, s, r.clone(), x.clone(), c, y.clone()];
    let l = same_in_every_order(&all);
    assert!(status(&l, &r).is_void());
    assert_eq!(status(&l, &x), Status::Accepted);
}

// ---------------------------------------------------------------- second attacker review (the recovery path)

/// A recovery built by hand: `old_key` signs a designation entry at `seq` (with `prev`) naming
/// `guardians` (threshold 1), never published; `voucher` vouches as guardian `index`; `new`
/// carries it.
#[allow(clippy::too_many_arguments)]
fn forged_recovery(
    city: CityId,
    old_key: &CityKey,
    seq: u64,
    prev: Hash32,
    guardians: &[CityId],
    voucher: &CityKey,
    index: u8,
    new: &CityKey,
    caps: Vec<(Scope, u64)>,
) -> (Wire, Wire) {
    let gpayload = Guardians {
        city,
        threshold: 1,
        guardians: guardians.to_vec(),
    }
    .encode();
    let designation = wire_raw(
        old_key,
        Scope::Federation,
        seq,
        prev,
        GUARDIANS_DOC,
        gpayload.clone(),
    );
    let dhash = hash_of(&designation);
    let body = Statement::recovery_body(city, old_key.id(), new.id(), caps);
    let vouch = Statement::vouch(&body, &dhash, voucher);
    let payload = Statement::assemble_recovery(
        &body,
        &designation.entry,
        &gpayload,
        &[(index, voucher.id(), vouch)],
    );
    (
        designation,
        wire_raw(
            new,
            Scope::Federation,
            1,
            Hash32::default(),
            SUCCESSION_DOC,
            payload,
        ),
    )
}

/// Review 2 (authority). The thief holding only Milan's key signs a designation at seq 1 of the
/// old key's federation feed (naming a puppet), never publishes it, and carries it in a
/// recovery. Before the fix the carried designation was never compared with the entry held at
/// that seq: no fork was seen, and the thief's "earlier" designation beat Milan's real one
/// (seq 2), so the thief took the city on every node. Now the carried designation proves a fork
/// of Milan's old federation feed at seq 1: no recovery resting at or past it stands (the
/// thief stalls the recovery, §15.6), and the thief never takes the city, in any order.
#[test]
fn an_unpublished_designation_at_a_lower_seq_does_not_beat_the_real_one() {
    let (mut milan, brno, warsaw) = three();
    let puppet = CityKey::from_secret([77; 32]);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let r = milan.recover_from(0, 11, &[&brno]);
    let w2 = milan.edit(p, summary("Milan's"));
    let thief_new = CityKey::from_secret([66; 32]);
    let (_, tr) = forged_recovery(
        milan.root,
        &milan.keys[0],
        1,
        Hash32::default(),
        &[puppet.id()],
        &puppet,
        0,
        &thief_new,
        vec![(Scope::Federation, 2)],
    );
    let all = [w1, d, r.clone(), w2.clone(), tr.clone()];
    let mut seen = None;
    for order in orders(&all, 40) {
        let l = deliver(&order);
        let outcome = (
            status_opt(&l, &r),
            status_opt(&l, &w2),
            status_opt(&l, &tr),
            l.docs.contains_key(&p),
        );
        assert!(
            outcome.2.as_ref().is_some_and(Status::is_void),
            "the thief's recovery: {:?}",
            outcome.2
        );
        assert!(
            outcome.0.as_ref().is_some_and(Status::is_void),
            "a recovery on a forked feed: {:?}",
            outcome.0
        );
        // The fork at seq 1 voids Milan's practice itself (§15.4): the thief can destroy what
        // the key signed, as any key's holder can, but takes nothing.
        assert!(
            !outcome.3,
            "the practice of a feed forked at its first entry"
        );
        match &seen {
            None => seen = Some(outcome),
            Some(held) => assert_eq!(held, &outcome, "another order, another outcome"),
        }
    }
}

/// Review 2 (authority). Milan rotates K1 -> K2 (planned) and later K1 leaks. The thief signs a
/// designation with K1 *past its cap* (void as an entry), names a puppet, and recovers K1 to
/// a key of its own: a recovery beats any planned statement, so K2 and everything after it
/// are void and the thief's key is Milan's, on every node. A retired key keeps the power to
/// take the city for ever.
#[test]
fn a_retired_key_cannot_take_the_city_with_a_designation_past_its_cap() {
    let mut milan = Town::new(1);
    let puppet = CityKey::from_secret([77; 32]);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    // As a node does before rotating a key that named no guardians: it names nobody, so that no
    // later designation by that key is its first.
    let renounce = milan.designate(0, 0, &[]);
    let s = milan.rotate(11);
    let w2 = milan.edit(p, summary("K2's"));
    let thief_new = CityKey::from_secret([66; 32]);
    let (td, tr) = forged_recovery(
        milan.root,
        &milan.keys[0],
        3,
        hash_of(&renounce),
        &[puppet.id()],
        &puppet,
        0,
        &thief_new,
        vec![(Scope::Federation, 1)],
    );
    // Unpublished, it is waited for; published (void, past the cap), it is not the key's first
    // designation: refused.
    let mut l = MemLedger::default();
    for w in [&w1, &renounce, &s, &w2] {
        l.ingest(&w.entry, &w.payload).expect("taken");
    }
    assert!(matches!(
        l.ingest(&tr.entry, &tr.payload),
        Err(IngestError::Successor(_))
    ));
    l.ingest(&td.entry, &td.payload)
        .expect("the designation, void");
    // Not the key's first designation: refused, but for now (no strike): a fork of the feed at
    // or below it would make it a statement every node holds (§15.6, rule 1).
    assert!(matches!(
        l.ingest(&tr.entry, &tr.payload),
        Err(IngestError::Successor(_))
    ));
    let l = same_in_every_order(&[w1, renounce, s.clone(), w2.clone(), td]);
    assert_eq!(status(&l, &s), Status::Accepted, "Milan's planned rotation");
    assert_eq!(status(&l, &w2), Status::Accepted, "Milan's edit under K2");
    assert_eq!(
        status_opt(&l, &tr),
        None,
        "the leaked retired key's recovery"
    );
}

/// Two statements carried by one key X at seq 1 (a fork): S1 from Brno's root (city Brno),
/// S2 from Evil's root (city Evil). A node keeps the feed city of whichever came first.
fn forked_carrier() -> (Town, Town, Town, CityKey, Wire, Wire) {
    let (milan, brno, evil) = (Town::new(1), Town::new(2), Town::new(9));
    let x = CityKey::from_secret([55; 32]);
    let s1 = wire_raw(
        &x,
        Scope::Federation,
        1,
        Hash32::default(),
        SUCCESSION_DOC,
        Statement::sign(brno.root, &brno.keys[0], x.id(), vec![]),
    );
    let s2 = wire_raw(
        &x,
        Scope::Federation,
        1,
        Hash32::default(),
        SUCCESSION_DOC,
        Statement::sign(evil.root, &evil.keys[0], x.id(), vec![]),
    );
    (milan, brno, evil, x, s1, s2)
}

/// Review 2 (determinism). Milan names Brno its guardian; Brno's vouch is signed with X, a key
/// carried by two forked statements (Brno's and Evil's). A node that held Brno's branch
/// first counts the vouch (`key_of` reads the first feed city, and ignores that X's
/// succession does not stand); one that held Evil's branch first refuses the recovery as a
/// BadStatement, for ever, and blames the peer. Milan's new key is Milan on one node, a
/// stranger on the other.
#[test]
fn a_vouch_by_a_forked_key_counts_the_same_in_any_order() {
    let (mut milan, brno, _evil, x, s1, s2) = forked_carrier();
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno]);
    let fake_brno = Town {
        root: brno.root,
        keys: vec![x.clone()],
        ledger: MemLedger::default(),
        statements: BTreeMap::new(),
    };
    milan.receive(std::slice::from_ref(&s1));
    let r = milan.recover_from(0, 11, &[&fake_brno]);
    let w2 = milan.edit(p, summary("recovered"));
    let a = ingest_in(&[&w1, &d, &s1, &s2, &r, &w2]);
    let b = ingest_in(&[&w1, &d, &s2, &s1, &r, &w2]);
    assert_eq!(status_opt(&a, &r), status_opt(&b, &r), "the recovery");
    assert_eq!(fingerprint(&a), fingerprint(&b), "verdicts and documents");
}

/// Review 2 (determinism, held entries). X's group feed starts from S2 (the other branch): a node
/// that held S1 first refuses it for ever ("names a statement its author did not make"), a
/// node that held S2 first stores it.
#[test]
fn a_group_feed_naming_the_other_branch_is_taken_the_same_in_any_order() {
    let (milan, _brno, _evil, x, s1, s2) = forked_carrier();
    let mut d = Automerge::new();
    d.set_actor(ActorId::from(x.id().as_bytes().to_vec()));
    let rec = group(&milan, &[]);
    let mut tx = d.transaction();
    doc::write_record(&mut tx, &rec, doc::Texts::Merged).expect("write");
    let (hash, _) = tx.commit_with(CommitOptions::default().with_message("g"));
    let change = d.get_change_by_hash(&hash.expect("c")).expect("c").clone();
    let id = DocId::for_genesis(&change.hash());
    let g1 = wire_raw(
        &x,
        Scope::Group(id),
        1,
        hash_of(&s2),
        id,
        change.raw_bytes().to_vec(),
    );
    let a = deliver(&[s1.clone(), s2.clone(), g1.clone()]);
    let b = deliver(&[s2.clone(), s1.clone(), g1.clone()]);
    assert_eq!(status_opt(&a, &g1), status_opt(&b, &g1), "the group entry");
}

/// Review 2. The recovery scenarios batched judge as single entries do.
#[test]
fn recoveries_batched_judge_as_single_entries() {
    let (mut milan, brno, warsaw) = three();
    let puppet = Town::new(77);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let mut thief = milan.thief();
    let t1 = thief.rotate(66);
    let t2 = thief.edit(p, summary("thief"));
    let mut thief2 = milan.thief();
    let td = thief2.designate(0, 1, &[&puppet]);
    let tr = thief2.recover_from(0, 67, &[&puppet]);
    let t3 = thief2.edit(p, summary("thief2"));
    let r = milan.recover_from(0, 11, &[&warsaw]);
    let w2 = milan.edit(p, summary("Milan's"));
    let r2 = milan.recover_from(0, 12, &[&brno]);
    let w3 = milan.edit(p, summary("Milan's second"));
    let all = vec![w1, d, t1, t2, td, tr, t3, r, w2, r2, w3];
    for order in orders(&all, 10) {
        let single = fingerprint(&deliver(&order));
        for size in [2, 3, 5, all.len()] {
            let batched = fingerprint(&deliver_batched(&order, size));
            assert_eq!(batched, single, "batch size {size}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Review 2. Hostile bytes: no decoder panics.
    #[test]
    fn succession_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        use intercity_protocol::ingest::{FeedCity, KeyPassed};
        let _ = Statement::decode(&bytes);
        let _ = Statement::decode_held(&bytes);
        let _ = Statement::recovery_parts(&bytes);
        let _ = Guardians::decode(&bytes);
        let _ = KeyPassed::decode(&bytes);
        let _ = FeedCity::decode(&bytes);
    }

    /// Review 2. A valid recovery with bytes changed: no decoder panics.
    #[test]
    fn a_mutated_recovery_never_panics(edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..6), cut in any::<u16>()) {
        let (milan, brno) = (Town::new(1), Town::new(2));
        let new = CityKey::from_secret([11; 32]);
        let (_, w) = forged_recovery(milan.root, &milan.keys[0], 1, Hash32::default(), &[brno.root], &brno.keys[0], 0, &new, vec![(Scope::Federation, 3)]);
        let mut b = w.payload.clone();
        for (at, v) in edits { let i = at as usize % b.len(); b[i] = v; }
        let _ = Statement::decode(&b);
        let _ = Statement::recovery_parts(&b);
        b.truncate(cut as usize % (b.len() + 1));
        let _ = Statement::decode(&b);
        let _ = Statement::recovery_parts(&b);
    }
}

/// A guardian vouches with its successor key, not its city's first key: the vouch does not
/// count, whatever becomes of that key later, so the recovery is refused on every node (before
/// the fix, vouches counted by keys that spoke for their guardian then, and a later contest of
/// the guardian's rotation left the recovered city's edits accepted on some nodes only).
#[test]
fn a_vouch_counts_by_the_guardian_s_city_key_only_in_any_order() {
    let (mut milan, mut brno, warsaw) = three();
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let b1 = brno.rotate(21);
    milan.receive(std::slice::from_ref(&b1));
    let by_successor = Town {
        root: brno.root,
        keys: vec![brno.keys[1].clone()],
        ledger: MemLedger::default(),
        statements: BTreeMap::new(),
    };
    let r = milan.recover_from(0, 11, &[&by_successor]);
    let contest = brno.rotate_from(0, 22);
    for order in orders(&[w1, d, b1, r.clone(), contest], 20) {
        let l = deliver(&order);
        assert_eq!(
            status_opt(&l, &r),
            None,
            "a recovery without a guardian's city key"
        );
        assert_eq!(summary_of(&l, p), "");
    }
}

// ---------------------------------------------------------------- third attacker review (of bad8716)

/// Review 3 (authority). Since bad8716 a vouch's key is only checked for a held first entry:
/// Evil, a federation member holding no key of Milan's, vouches with its own root key "as
/// Brno" for a recovery of Milan resting on Milan's public designation, with no caps. The
/// statement is valid (rule 1), so it is held: its caps (none) void everything Milan's root
/// key ever signed, and, with a lower statement hash (one in two carrier keys), it goes first
/// and beats Milan's real recovery.
#[test]
fn a_stranger_s_vouch_neither_caps_nor_beats_the_city() {
    let (mut milan, brno, warsaw) = three();
    let mut evil = Town::new(9);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let r = milan.recover_from(0, 11, &[&brno]);
    let w2 = milan.edit(p, summary("Milan's"));
    let (_, e1) = evil.create(&practice(&evil, "Evil's own"));
    let dhash = hash_of(&d);
    // Grind a carrier whose statement hash is below Milan's recovery.
    let mut seed = 100u8;
    let er = loop {
        let x = CityKey::from_secret([seed; 32]);
        let body = Statement::recovery_body(milan.root, milan.keys[0].id(), x.id(), vec![]);
        let v = Statement::vouch(&body, &dhash, &evil.keys[0]);
        let payload =
            Statement::assemble_recovery(&body, &d.entry, &d.payload, &[(0, evil.root, v)]);
        let w = wire_raw(
            &x,
            Scope::Federation,
            1,
            Hash32::default(),
            SUCCESSION_DOC,
            payload,
        );
        if hash_of(&w).0 < hash_of(&r).0 {
            break w;
        }
        seed += 1;
    };
    let l = deliver(&[w1.clone(), d, e1, r.clone(), w2.clone(), er.clone()]);
    assert!(
        status_opt(&l, &er).is_none(),
        "a recovery vouched by a stranger's key was held"
    );
    assert_eq!(status(&l, &w1), Status::Accepted, "Milan's own entry");
    assert_eq!(status(&l, &r), Status::Accepted, "Milan's real recovery");
    assert_eq!(summary_of(&l, p), "Milan's");
}

/// Review 3 (determinism). Brno vouches for Milan's recovery with its root key; later Brno
/// rotates its key as planned. The vouch stops counting (a key "passed on"), so the recovery
/// stops standing; but Brno's statement settles only Brno's feeds: a node that judged the
/// recovery before keeps it (and Milan's edits), one that held Brno's rotation first voids
/// them.
#[test]
fn a_guardian_s_later_rotation_judges_the_recovery_the_same_in_any_order() {
    let (mut milan, mut brno, warsaw) = three();
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let r = milan.recover_from(0, 11, &[&brno]);
    let w2 = milan.edit(p, summary("recovered"));
    let (_, b1) = brno.create(&practice(&brno, "Brno's"));
    let bs = brno.rotate(21);
    let a = deliver(&[
        w1.clone(),
        d.clone(),
        b1.clone(),
        r.clone(),
        w2.clone(),
        bs.clone(),
    ]);
    let b = deliver(&[w1, d, b1, bs, r.clone(), w2.clone()]);
    assert_eq!(fingerprint(&a), fingerprint(&b), "verdicts and documents");
}

/// Review 3 (determinism). Brno rotates B0 -> B1 and vouches for Milan with B1; the recovery
/// stands. Then a thief of B0 contests Brno's rotation (B0 -> B3): B1 stops standing, so its
/// vouch stops counting. Milan's feeds are not in the closure the contest settles.
#[test]
fn a_guardian_s_lost_succession_judges_the_recovery_the_same_in_any_order() {
    let (mut milan, mut brno, warsaw) = three();
    let (_, b1) = brno.create(&practice(&brno, "Brno's"));
    let bs = brno.rotate(21);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    milan.receive(&[b1.clone(), bs.clone()]);
    let r = milan.recover_from(0, 11, &[&brno]);
    let w2 = milan.edit(p, summary("recovered"));
    let w3 = milan.edit(p, summary("recovered, later"));
    let contest = brno.rotate_from(0, 23);
    let all = [b1, bs, w1, d, r.clone(), w2.clone(), w3.clone(), contest];
    let mut seen: Option<(Fingerprint, Vec<Option<Status>>)> = None;
    for order in orders(&all, 40) {
        let l = deliver(&order);
        let v = vec![status_opt(&l, &r), status_opt(&l, &w2), status_opt(&l, &w3)];
        let f = fingerprint(&l);
        match &seen {
            None => seen = Some((f, v)),
            Some((held, hv)) => {
                assert_eq!(&v, hv, "the recovery and Milan's later edits");
                assert_eq!(&f, held, "another order, another outcome");
            }
        }
    }
}

/// Review 3 (determinism). Milan's new key K forks its first entry: a practice and the
/// recovery. A node that holds the practice and gets the recovery before Milan's designation:
/// `forked_statement` meets `Successor` (the designation's position not held), drops it, and
/// answers `Fork` (Ok): the statement is never held there, so the old key is not capped. On a
/// node that held the designation first, the statement is held and caps the old key.
#[test]
fn a_forked_recovery_that_must_wait_is_held_the_same_in_any_order() {
    let (mut milan, brno, warsaw) = three();
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let r = milan.recover_from(0, 11, &[&brno]);
    let other = other_first(&milan, 1);
    let t = milan.edit_with(0, p, summary("old key after the recovery"));
    let a = deliver(&[w1.clone(), d.clone(), other.clone(), r.clone(), t.clone()]);
    let b = deliver(&[other, r, w1, d, t.clone()]);
    assert_eq!(status_opt(&a, &t), status_opt(&b, &t), "the old key's edit");
    assert_eq!(fingerprint(&a), fingerprint(&b), "verdicts and documents");
}

/// Review 3 (authority). The thief holding Milan's lost root key signs a rotation to its own
/// key with a federation cap below Milan's designation (caps are the signer's word). Since
/// bad8716 a recovery resting past a rotation's federation cap does not stand, and a rotation
/// is beaten only by a recovery resting at or before that cap: the thief's rotation stands
/// and Milan's recovery is void, on every node. The recovery no longer beats a rotation.
#[test]
fn a_thief_s_rotation_with_a_low_cap_does_not_beat_the_recovery() {
    let (mut milan, brno, warsaw) = three();
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let thief_key = CityKey::from_secret([66; 32]);
    let t1 = wire_raw(
        &thief_key,
        Scope::Federation,
        1,
        Hash32::default(),
        SUCCESSION_DOC,
        Statement::sign(
            milan.root,
            &milan.keys[0],
            thief_key.id(),
            vec![(Scope::Federation, 1)],
        ),
    );
    let r = milan.recover_from(0, 11, &[&brno]);
    let w2 = milan.edit(p, summary("Milan's"));
    let l = same_in_every_order(&[w1, d, t1.clone(), r.clone(), w2.clone()]);
    assert_eq!(status(&l, &r), Status::Accepted, "Milan's recovery");
    assert_eq!(status(&l, &w2), Status::Accepted);
    assert_ne!(status(&l, &t1), Status::Accepted, "the thief's rotation");
}

// ---------------------------------------------------------------- fifth attacker review (of 9c673c1)

/// Review 5. A thief forks Milan's old federation feed: branch A (published to node A) is a
/// record at seq 1 and the real designation D at seq 2; branch B (published to node B) is a
/// designation naming a puppet at seq 1 and any entry Y at seq 2. The city's recovery R rests
/// on D. R itself proves a fork at seq 2 on node B (D != Y, both signed by the old key), just
/// as it does on node B2 whose seq 1 is not a designation. But node B checks
/// `earlier_designation` before comparing the carried designation with the one it holds, and
/// refuses R as BadStatement (never stored, the sender struck), learning no fork; node B2
/// holds R with the fork proof. Whether a statement is "invalid" depends on the branch held.
#[test]
fn a_recovery_proving_a_fork_is_not_refused_for_the_other_branch_s_designation() {
    let (mut milan, brno, warsaw) = three();
    let puppet = CityKey::from_secret([77; 32]);
    let (_p, _w1) = milan.create(&practice(&milan, "Housing first"));
    let _d = milan.designate(0, 1, &[&brno, &warsaw]);
    let r = milan.recover_from(0, 11, &[&brno]);
    let k = milan.keys[0].clone();
    // Branch B, node B: a designation at seq 1, anything at seq 2.
    let db = wire_raw(
        &k,
        Scope::Federation,
        1,
        Hash32::default(),
        GUARDIANS_DOC,
        Guardians {
            city: milan.root,
            threshold: 1,
            guardians: vec![puppet.id()],
        }
        .encode(),
    );
    let y = wire_raw(
        &k,
        Scope::Federation,
        2,
        hash_of(&db),
        GUARDIANS_DOC,
        Guardians {
            city: milan.root,
            threshold: 0,
            guardians: vec![],
        }
        .encode(),
    );
    let mut b = ingest_in(&[&db, &y]);
    // Branch B2, node B2: a record at seq 1, the same kind of entry at seq 2.
    let mut thief = Town::new(1);
    let (_, x) = thief.create(&practice(&thief, "the thief's branch"));
    let y2 = wire_raw(
        &k,
        Scope::Federation,
        2,
        hash_of(&x),
        GUARDIANS_DOC,
        Guardians {
            city: milan.root,
            threshold: 0,
            guardians: vec![],
        }
        .encode(),
    );
    let mut b2 = ingest_in(&[&x, &y2]);
    let on_b2 = b2.ingest(&r.entry, &r.payload);
    assert!(on_b2.is_ok(), "node B2 holds the recovery: {on_b2:?}");
    assert!(!b2.forks.is_empty(), "node B2 learns the fork from it");
    let on_b = b.ingest(&r.entry, &r.payload);
    assert!(
        on_b.is_ok() && !b.forks.is_empty(),
        "node B refuses the recovery that proves a fork of its own branch at seq 2 \
         (the sender is struck, and no fork is learnt): {on_b:?}"
    );
}

// A statement's validity and a held fork proof (a review's finding: a refusal that a fork
// proof could lift was a strike, and final). Each test below but
// `a_forked_statement_learnt_from_a_fork_proof_is_held_in_the_simulator` (a control) failed
// on the code before the fix (seen).

use intercity_protocol::session::Outcome;
use intercity_protocol::sim::{Sim, SimConfig};
use intercity_protocol::sync::WireEntry;

/// Milan's old key names Brno and Warsaw (seq 2). A thief holding that key names a puppet
/// (seq 3: not the key's first designation), recovers on it (no caps), and signs another
/// entry at seq 3 (a fork of Milan's federation feed at the designation's seq).
fn late_designation_recovery() -> (Wire, Wire, Wire, Wire, Wire) {
    let (mut milan, brno, warsaw) = three();
    let puppet = Town::new(77);
    let (_p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let mut thief = milan.thief();
    let td = thief.designate(0, 1, &[&puppet]);
    let tr = thief.recover_on(0, 66, &[&puppet], 3, vec![]);
    let f = other_at_the_designation(&milan, &d);
    (w1, d, td, tr, f)
}

/// Two simulated cities on `seed`, nudging `fanout` peers.
fn two_cities(seed: u64, fanout: usize) -> Sim {
    Sim::new(SimConfig {
        cities: 2,
        seed,
        fanout,
        ..SimConfig::default()
    })
}

/// `sim` after `secs` seconds, node 0 given `on0` and node 1 `on1` at the start.
fn synced(mut sim: Sim, on0: &[WireEntry], on1: &[WireEntry], secs: u64) -> Sim {
    sim.plant(0, on0);
    sim.plant(1, on1);
    sim.run_until(std::time::Duration::from_secs(secs));
    sim
}

/// Another entry of `milan`'s first key at seq 3, after its designation `d` (seq 2): an empty
/// designation, forking the feed where a thief's later designation stands.
fn other_at_the_designation(milan: &Town, d: &Wire) -> Wire {
    wire_raw(
        &milan.keys[0],
        Scope::Federation,
        3,
        hash_of(d),
        GUARDIANS_DOC,
        Guardians {
            city: milan.root,
            threshold: 0,
            guardians: vec![],
        }
        .encode(),
    )
}

fn outcome(r: Result<intercity_protocol::ingest::Verdict, IngestError>, w: &Wire) -> Outcome {
    Outcome::of(Some(r), SignedEntry::decode(&w.entry).ok())
}

/// The lead: `weigh_statement` skips the "not the key's first designation" refusal when the
/// old key's federation feed is forked at or below the designation (`forked_below`). Node A
/// holds that fork proof and stores the recovery (void, but held: its caps apply); node B,
/// holding the very same branch without the proof, refuses it as `BadStatement`: the honest
/// relay is struck (§15.2) and, meanwhile, the two judge Milan's entries differently.
#[test]
fn a_recovery_on_a_later_designation_waits_for_the_fork_proof_without_a_strike() {
    let (w1, d, td, tr, f) = late_designation_recovery();
    let mut a = ingest_in(&[&w1, &d, &td, &f]);
    let mut b = ingest_in(&[&w1, &d, &td]);
    let fed = w1.header().feed();
    println!(
        "fork seq of Milan's old federation feed: A {:?}, B {:?}",
        a.fork_seq(&fed).expect("mem ledger"),
        b.fork_seq(&fed).expect("mem ledger")
    );
    let on_a = a.ingest(&tr.entry, &tr.payload);
    let oa = outcome(on_a, &tr);
    println!("A (proof held) judges the recovery: {oa:?}");
    let on_b = b.ingest(&tr.entry, &tr.payload);
    let ob = outcome(on_b, &tr);
    println!("B (no proof yet) judges the recovery A relays: {ob:?}");
    println!(
        "meanwhile Milan's w1 (seq 1): A {:?}, B {:?}",
        status_opt(&a, &w1),
        status_opt(&b, &w1)
    );
    // B gets the proof later (Forks, or the other branch), and the recovery comes again.
    let fb = b.ingest(&f.entry, &f.payload);
    println!("B takes the other branch at seq 3: {fb:?}");
    let again = b.ingest(&tr.entry, &tr.payload);
    println!("B judges the recovery again: {:?}", outcome(again, &tr));
    println!(
        "afterwards w1: A {:?}, B {:?}; same fingerprint: {}",
        status_opt(&a, &w1),
        status_opt(&b, &w1),
        fingerprint(&a) == fingerprint(&b)
    );
    assert!(
        !matches!(ob, Outcome::Invalid(_)) || matches!(oa, Outcome::Invalid(_)),
        "an honest relay holding a fork proof is struck by a node without it: A {oa:?}, B {ob:?}"
    );
}

/// The same class in `key_of` (rule 3): K2 signs two first entries (its statement S2 and a
/// practice). Node A holds S2 and takes K3's statement S3 (old key K2); node B holds the
/// practice, knows no fork, and refuses S3 as `BadStatement` ("not a key of city").
#[test]
fn a_statement_from_a_key_whose_first_entry_may_be_forked_waits_without_a_strike() {
    let mut milan = Town::new(1);
    let (_p, w1) = milan.create(&practice(&milan, "Housing first"));
    let s2 = milan.rotate(11);
    let s3 = milan.rotate(12);
    let other = other_first(&milan, 1);
    let mut a = ingest_in(&[&w1, &s2]);
    let mut b = ingest_in(&[&w1, &other]);
    let oa = outcome(a.ingest(&s3.entry, &s3.payload), &s3);
    let ob = outcome(b.ingest(&s3.entry, &s3.payload), &s3);
    println!("S3 on A (holds S2): {oa:?}");
    println!("S3 on B (holds K2's other first entry, no fork known): {ob:?}");
    let fork = b.ingest(&s2.entry, &s2.payload);
    println!("B then gets S2 (a fork of K2's first entry): {fork:?}");
    println!(
        "S3 on B again: {:?}",
        outcome(b.ingest(&s3.entry, &s3.payload), &s3)
    );
    assert!(
        !matches!(ob, Outcome::Invalid(_)) || matches!(oa, Outcome::Invalid(_)),
        "an honest relay is struck: A {oa:?}, B {ob:?}"
    );
}

fn to_wire(w: &Wire) -> WireEntry {
    WireEntry {
        entry: w.entry.clone(),
        payload: w.payload.clone(),
        checked: None,
    }
}

/// Both cases between simulated nodes driving the real session: two honest nodes, each holding
/// what it was given, sync; a strike between them is a strike of an honest peer.
#[test]
fn honest_nodes_do_not_strike_each_other_over_a_forked_designation_in_the_simulator() {
    let (w1, d, td, tr, f) = late_designation_recovery();
    let mut struck = 0;
    for (seed, fanout) in (1..=10u64).flat_map(|s| [(s, 0), (s, 6)]) {
        let sim = synced(
            two_cities(seed, fanout),
            &[&w1, &d, &td, &f, &tr].map(to_wire),
            &[&w1, &d, &td].map(to_wire),
            20,
        );
        let r = sim.report();
        println!(
            "late designation, seed {seed}, fanout {fanout}: penalties {}, banned {}, recovery on node 1: {:?}, same fingerprint: {}",
            r.penalties,
            r.banned,
            status_opt(sim.ledger(1), &tr),
            fingerprint(sim.ledger(0)) == fingerprint(sim.ledger(1))
        );
        struck += r.penalties;
    }
    let mut milan = Town::new(1);
    let (_p, w1) = milan.create(&practice(&milan, "Housing first"));
    let s2 = milan.rotate(11);
    let s3 = milan.rotate(12);
    let other = other_first(&milan, 1);
    for (seed, fanout) in (1..=10u64).flat_map(|s| [(s, 0), (s, 6)]) {
        let sim = synced(
            two_cities(seed, fanout),
            &[&w1, &s2, &s3].map(to_wire),
            &[&w1, &other].map(to_wire),
            20,
        );
        let r = sim.report();
        println!(
            "forked middle key, seed {seed}, fanout {fanout}: penalties {}, banned {}, S3 on node 1: {:?}, same fingerprint: {}",
            r.penalties,
            r.banned,
            status_opt(sim.ledger(1), &s3),
            fingerprint(sim.ledger(0)) == fingerprint(sim.ledger(1))
        );
        struck += r.penalties;
    }
    assert_eq!(struck, 0, "honest nodes struck each other");
}

/// The thief (or a hostile roster city, with its own key) repeats the first case with eight
/// recoveries on its later designation, one fork: the honest node holding the proof is banned
/// by the honest node that lacks it.
#[test]
fn eight_recoveries_on_forked_designations_ban_no_honest_relay_in_the_simulator() {
    let (mut milan, brno, warsaw) = three();
    let puppet = Town::new(77);
    let (_p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let mut thief = milan.thief();
    let td = thief.designate(0, 1, &[&puppet]);
    let trs: Vec<Wire> = (0..8u8)
        .map(|i| thief.recover_on(0, 120 + i, &[&puppet], 3, vec![]))
        .collect();
    let f = other_at_the_designation(&milan, &d);
    for seed in 1..=10u64 {
        let mut sim = two_cities(seed, 0);
        let mut on0: Vec<WireEntry> = [&w1, &d, &td, &f].map(to_wire).to_vec();
        on0.extend(trs.iter().map(to_wire));
        sim.plant(0, &on0);
        sim.plant(1, &[&w1, &d, &td].map(to_wire));
        sim.run_until(std::time::Duration::from_secs(30));
        let r = sim.report();
        let held = trs
            .iter()
            .filter(|t| status_opt(sim.ledger(1), t).is_some())
            .count();
        println!(
            "8 recoveries, seed {seed}: penalties {}, banned {}, recoveries held on node 1: {held}/8, same fingerprint: {}",
            r.penalties,
            r.banned,
            fingerprint(sim.ledger(0)) == fingerprint(sim.ledger(1))
        );
        assert_eq!(
            (r.penalties, r.banned),
            (0, 0),
            "seed {seed}: an honest relay holding the fork proof was struck"
        );
    }
}

/// The lead's "for good" variant: the recovery is also the second branch of its carrier's
/// first entry. Node 1 holds the carrier's other first entry X1; when the recovery reaches it
/// (a fork probe) before Milan's fork proof, `forked_statement` meets `BadStatement` and takes
/// "the fork alone": the carrier's feed is frozen, never fetched again, and the recovery is
/// never held there, though node 0 holds it (its caps void Milan's entries there).
#[test]
fn a_recovery_that_is_a_fork_branch_is_held_everywhere_in_the_simulator() {
    let (mut milan, brno, warsaw) = three();
    let puppet = Town::new(77);
    let (_p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let mut thief = milan.thief();
    let td = thief.designate(0, 1, &[&puppet]);
    let tr = thief.recover_on(0, 66, &[&puppet], 3, vec![]);
    let x1 = other_first(&thief, 1);
    let f = other_at_the_designation(&milan, &d);
    let mut diverged = 0;
    for seed in 1..=20u64 {
        let sim = synced(
            two_cities(seed, 0),
            &[&w1, &d, &td, &f, &tr].map(to_wire),
            &[&w1, &d, &td, &x1].map(to_wire),
            60,
        );
        let r = sim.report();
        let same = fingerprint(sim.ledger(0)) == fingerprint(sim.ledger(1));
        diverged += usize::from(!same);
        println!(
            "seed {seed}: penalties {}, banned {}, recovery on node 1: {:?}, w1: node 0 {:?}, node 1 {:?}, same heads: {}, same fingerprint: {same}",
            r.penalties,
            r.banned,
            status_opt(sim.ledger(1), &tr),
            status_opt(sim.ledger(0), &w1),
            status_opt(sim.ledger(1), &w1),
            sim.converged(),
        );
        let xfed = tr.header().feed();
        for n in 0..2 {
            let l = sim.ledger(n);
            println!(
                "    node {n}: fork seq Milan fed {:?}, fork seq carrier fed {:?}, carrier head {:?}, Milan's key passed {:?}",
                l.fork_seq(&w1.header().feed()).expect("mem ledger"),
                l.fork_seq(&xfed).expect("mem ledger"),
                l.head(&xfed).expect("mem ledger").map(|h| (
                    h.seq,
                    h.hash == hash_of(&tr),
                    h.frozen
                )),
                l.key_passed(&milan.root)
                    .expect("mem ledger")
                    .map(|k| k.recovery.is_some()),
            );
        }
    }
    assert_eq!(diverged, 0, "two honest nodes end with different verdicts");
}

/// Rule 7 between nodes, with no recovery at all: K2's first entry is forked (Milan's rotation
/// S and a practice X1). Node 0 holds S, node 1 holds X1; the old key signs past its cap. A
/// node that learns the fork from a `Forks` answer gets the entries without payloads, so
/// `forked_statement` never weighs S ("the fork alone"); the feed is frozen and never fetched
/// again: S's caps never hold there.
#[test]
fn a_forked_statement_learnt_from_a_fork_proof_is_held_in_the_simulator() {
    let mut milan = Town::new(1);
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let s = milan.rotate(11);
    let x1 = other_first(&milan, 1);
    let t = milan.edit_with(0, p, summary("old key after the rotation"));
    let mut diverged = 0;
    for seed in 1..=20u64 {
        let sim = synced(
            two_cities(seed, 0),
            &[&w1, &s, &t].map(to_wire),
            &[&w1, &x1, &t].map(to_wire),
            60,
        );
        let same = fingerprint(sim.ledger(0)) == fingerprint(sim.ledger(1));
        diverged += usize::from(!same);
        println!(
            "seed {seed}: penalties {}, old key's edit: node 0 {:?}, node 1 {:?}, K1 passed on node 1: {}, same fingerprint: {same}",
            sim.report().penalties,
            status_opt(sim.ledger(0), &t),
            status_opt(sim.ledger(1), &t),
            sim.ledger(1)
                .key_passed(&milan.keys[0].id())
                .expect("mem ledger")
                .is_some(),
        );
    }
    assert_eq!(diverged, 0, "two honest nodes end with different verdicts");
}

/// Without any late designation: the recovery must wait on node 1 (it lacks Milan's
/// designation) when the fork probe brings it; the fork then comes from `Forks` without
/// payloads and freezes the carrier's feed: the recovery is never held on node 1.
#[test]
fn a_waiting_recovery_learnt_from_a_fork_proof_is_held_in_the_simulator() {
    let (mut milan, brno, warsaw) = three();
    let (p, w1) = milan.create(&practice(&milan, "Housing first"));
    let d = milan.designate(0, 1, &[&brno, &warsaw]);
    let r = milan.recover_from(0, 11, &[&brno]);
    let x1 = other_first(&milan, 1);
    let t = milan.edit_with(0, p, summary("old key after the recovery"));
    let mut diverged = 0;
    for seed in 1..=20u64 {
        let mut sim = synced(
            two_cities(seed, 0),
            &[&w1, &d, &r].map(to_wire),
            &[&w1, &x1].map(to_wire),
            5,
        );
        sim.plant(0, &[to_wire(&t)]);
        sim.plant(1, &[to_wire(&t)]);
        sim.run_until(std::time::Duration::from_secs(60));
        let same = fingerprint(sim.ledger(0)) == fingerprint(sim.ledger(1));
        diverged += usize::from(!same);
        println!(
            "seed {seed}: old key's edit: node 0 {:?}, node 1 {:?}, same fingerprint: {same}",
            status_opt(sim.ledger(0), &t),
            status_opt(sim.ledger(1), &t),
        );
    }
    assert_eq!(diverged, 0, "two honest nodes end with different verdicts");
}
