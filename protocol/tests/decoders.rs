//! Every decoder of bytes that come from a peer or from disk, fed random bytes and mutations of
//! valid encodings: none may panic, and what decodes encodes back (to the same bytes where the
//! format is canonical). Property-based (proptest), not coverage-guided.
//!
//! The default run is short (it is part of the test command). A long run, per target:
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test --release -p intercity-protocol --test decoders
//! ```

use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::{ActorId, Change, ChangeHash, ObjType, ScalarValue};
use intercity_protocol::chunk;
use intercity_protocol::entry::{FeedId, Hash32, SIGNED_ENTRY_LEN, Scope, SignedEntry, sign_entry};
use intercity_protocol::identity::CityKey;
use intercity_protocol::ingest::memory::MemLedger;
use intercity_protocol::ingest::{
    ChangeInfo, FeedHead, ForkProof, MAX_CHANGE_OPS, StoredEntry, decode_change,
};
use intercity_protocol::invite::Invitation;
use intercity_protocol::sync::{Request, Response, WireEntry};
use proptest::prelude::*;

fn key() -> CityKey {
    CityKey::from_secret([7; 32])
}

/// A valid signed entry, for mutations.
fn entry_bytes() -> Vec<u8> {
    let k = key();
    sign_entry(
        &k,
        Scope::Federation,
        3,
        Hash32([1; 32]),
        intercity_protocol::entry::DocId([2; 16]),
        b"payload",
        1_700_000_000_000,
    )
    .encode()
    .to_vec()
}

/// Valid wire messages of every kind, for mutations.
fn messages() -> Vec<Vec<u8>> {
    let feed = FeedId {
        author: key().id(),
        scope: Scope::Federation,
    };
    let w = WireEntry {
        entry: entry_bytes(),
        payload: b"payload".to_vec(),
        checked: None,
    };
    vec![
        Request::Heads(intercity_protocol::sync::HeadsPage::whole(vec![(
            feed,
            4,
            intercity_protocol::entry::Hash32([4; 32]),
        )]))
        .encode(),
        Request::Range {
            feed,
            from: 1,
            max: 512,
        }
        .encode(),
        Request::Push(vec![w.clone()]).encode(),
        Request::Join {
            token: "ic1abc".into(),
            name: "Brno".into(),
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        }
        .encode(),
        Response::Heads {
            heads: vec![(feed, 9, intercity_protocol::entry::Hash32([9; 32]))],
            more: false,
        }
        .encode(),
        Response::Entries {
            entries: vec![w],
            more: true,
        }
        .encode(),
        Response::Ack { stored: 3 }.encode(),
        Response::Error {
            code: 4,
            message: "busy".into(),
        }
        .encode(),
        Response::Joined { waiting: false }.encode(),
    ]
}

/// A valid change chunk whose operations reference objects and elements, for mutations.
fn change_bytes(actor: &ActorId) -> Vec<u8> {
    let op = |obj: ObjectId, key: Key, insert: bool, action: OpType| Op {
        action,
        obj,
        key,
        pred: SortedVec::new(),
        insert,
    };
    let list = ObjectId::Id(OpId::new(1, actor));
    Change::from(automerge::ExpandedChange {
        operations: vec![
            op(
                ObjectId::Root,
                Key::Map("l".into()),
                false,
                OpType::Make(ObjType::List),
            ),
            op(
                list.clone(),
                Key::Seq(ElementId::Head),
                true,
                OpType::Put(ScalarValue::Str("a".into())),
            ),
            op(
                list,
                Key::Seq(ElementId::Id(OpId::new(2, actor))),
                true,
                OpType::Put(ScalarValue::Int(-5)),
            ),
        ],
        actor_id: actor.clone(),
        hash: None,
        seq: 1,
        start_op: std::num::NonZeroU64::MIN,
        time: 0,
        message: Some("m".into()),
        deps: vec![ChangeHash([3; 32])],
        extra_bytes: Vec::new(),
        author: None,
    })
    .raw_bytes()
    .to_vec()
}

/// A mutation: flip, set, insert or remove bytes at positions drawn from `edits`.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, kind, value) in edits {
        if bytes.is_empty() {
            bytes.push(value);
            continue;
        }
        let i = at % bytes.len();
        match kind % 4 {
            0 => bytes[i] ^= value | 1,
            1 => bytes[i] = value,
            2 => bytes.insert(i, value),
            _ => {
                bytes.remove(i);
            }
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
}

/// A change chunk found by cargo-fuzz (`fuzz/`, target `change`) on which automerge 0.12 panics
/// while applying it ("Obj ... Missing from Index", `op_set2/change/batch.rs:920`).
const FUZZ_APPLY_PANIC: &str = concat!(
    "856f4a83f423d63601ff020028ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c090909",
    "090909090901010006637265617465000a010c020c11081312155c34064214561757747002000a230000017f0000010a",
    "00000a230a00017f2e00010a35000b220000040900000a7e000b210100017f5400017e003108017604626f6479046369",
    "747907656469746f7273046b696e64086c616e6775616765056c696e6b73086f7574636f6d6573056f776e6572087061",
    "72746e6572730773756d6d61727900237f067468656d657300017f057469746c65000a0a230101010a7d040102020102",
    "027d01020423017d0201040a017b00060086012602007f0602c60023167d009601000a167072616374696365656e3132",
    "44334b6f6f5752617750627850745031655a614a70756d476e7957583244635579643352516e796472336541746f3441",
    "7a374e657720637261667420613164206469676974617a374e657720637261667420616e64206469676974616c206d61",
    "6e756673706163653a00",
);

/// That change, signed by its author, is quarantined (the panic is caught) or refused: the entry
/// is kept and never applied.
#[test]
fn a_change_that_panics_automerge_is_quarantined() {
    use intercity_protocol::entry::DocId;
    use intercity_protocol::ingest::{Status, Verdict};
    let payload = hex::decode(FUZZ_APPLY_PANIC).expect("hex");
    let k = key();
    let change = decode_change(&k.id(), &payload).expect("it decodes");
    let doc = if change.deps().is_empty() {
        DocId::for_genesis(&change.hash())
    } else {
        DocId([5; 16])
    };
    let entry = sign_entry(
        &k,
        Scope::Federation,
        1,
        Hash32::default(),
        doc,
        &payload,
        0,
    );
    let verdict = MemLedger::default()
        .ingest(&entry.encode(), &payload)
        .expect("stored");
    // Since the causal-reference rule (issue #11), this change is refused before Automerge
    // applies it: one of its operations refers to one it never created. Either way it is kept,
    // never applied, and nothing panics.
    assert!(
        matches!(&verdict, Verdict::Stored(Status::Quarantined(r)) if r.contains("panicked"))
            || matches!(&verdict, Verdict::Stored(Status::Rejected(r)) if r.contains("causal past")),
        "{verdict:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn entries_and_stored_values(bytes in prop::collection::vec(any::<u8>(), 0..600), e in edits()) {
        for b in [bytes.clone(), mutate(entry_bytes(), &e)] {
            if let Ok(decoded) = SignedEntry::decode(&b) {
                prop_assert_eq!(decoded.encode().to_vec(), b.clone());
                let _ = decoded.verify();
            }
            let _ = StoredEntry::decode(&b);
            let _ = FeedHead::decode(&b);
            let _ = ChangeInfo::decode(&b);
            if let Ok(proof) = ForkProof::decode(&b) {
                let _ = proof.verify();
            }
            let _ = FeedId::from_bytes(&b);
        }
        prop_assert_eq!(entry_bytes().len(), SIGNED_ENTRY_LEN);
    }

    #[test]
    fn wire_messages(bytes in prop::collection::vec(any::<u8>(), 0..2_000), e in edits(), pick in any::<usize>()) {
        let all = messages();
        let valid = all[pick % all.len()].clone();
        for b in [bytes, mutate(valid, &e)] {
            // What decodes encodes to bytes that decode to the same message (error texts are
            // read lossily, so the bytes themselves may differ).
            if let Ok(r) = Request::decode(&b) {
                prop_assert_eq!(Request::decode(&r.encode()).ok(), Some(r));
            }
            if let Ok(r) = Response::decode(&b) {
                prop_assert_eq!(Response::decode(&r.encode()).ok(), Some(r));
            }
        }
    }

    #[test]
    fn invitation_tokens(text in "\\PC{0,300}", e in edits()) {
        let _ = Invitation::verified(&text);
        let _ = Invitation::verified(&format!("ic1{text}"));
        let mutated = mutate(b"ic1aGVsbG8gd29ybGQ".to_vec(), &e);
        let _ = Invitation::verified(&String::from_utf8_lossy(&mutated));
    }

    /// Change chunks, random and mutated, through the chunk check, the decoder and the whole
    /// acceptance pipeline (signed by their author, so they reach Automerge): an error or a
    /// verdict, never a panic.
    #[test]
    fn changes_through_the_pipeline(bytes in prop::collection::vec(any::<u8>(), 0..400), e in edits()) {
        let k = key();
        let mut actor = k.id().as_bytes().to_vec();
        actor.extend_from_slice(&[9; 8]);
        let actor = ActorId::from(actor);
        let mut header = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1];
        header.extend_from_slice(&bytes);
        for payload in [bytes.clone(), header, mutate(change_bytes(&actor), &e)] {
            let _ = chunk::check_change(&payload, MAX_CHANGE_OPS as u64);
            let decoded = decode_change(&k.id(), &payload);
            let doc = match &decoded {
                Ok(c) if c.deps().is_empty() => intercity_protocol::entry::DocId::for_genesis(&c.hash()),
                _ => intercity_protocol::entry::DocId([5; 16]),
            };
            let entry = sign_entry(&k, Scope::Federation, 1, Hash32::default(), doc, &payload, 0);
            let mut ledger = MemLedger::default();
            let _ = ledger.ingest(&entry.encode(), &payload);
        }
    }
}
