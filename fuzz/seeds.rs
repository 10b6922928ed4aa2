//! Writes seed inputs for the fuzz targets into `corpus/<target>/`: valid encodings, so that the
//! fuzzer starts from inputs that reach deep into each decoder.

use intercity_protocol::doc::{self, Texts};
use intercity_protocol::entry::{DocId, FeedId, Hash32, Scope, sign_entry};
use intercity_protocol::identity::CityKey;
use intercity_protocol::record::{Group, Practice, Record};
use intercity_protocol::sync::{HeadsPage, Request, Response, WireEntry};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = std::path::Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn main() {
    let key = CityKey::from_secret([7; 32]);
    let mut actor = key.id().as_bytes().to_vec();
    actor.extend_from_slice(&[9; 8]);
    let actor = automerge::ActorId::from(actor);
    let mut practice = Practice::new(key.id().to_string(), "Makerspace", "en");
    practice.summary = "New craft and digital manufacturing".into();
    practice.themes = vec!["inclusion".into()];
    let records = [
        Record::Practice(practice),
        Record::Group(Group::new(
            "Smart Social Inclusion",
            key.id().to_string(),
            "Milan",
        )),
    ];
    for (i, record) in records.iter().enumerate() {
        for (j, texts) in [Texts::Plain, Texts::Merged].into_iter().enumerate() {
            let (_, change) =
                doc::new_document(actor.clone(), record, "create", texts).expect("change");
            write("change", &format!("genesis-{i}-{j}"), change.raw_bytes());
        }
    }
    let payload = b"payload".to_vec();
    let entry = sign_entry(
        &key,
        Scope::Federation,
        1,
        Hash32::default(),
        DocId([2; 16]),
        &payload,
        0,
    );
    write("entry", "entry", &entry.encode());
    let feed = FeedId {
        author: key.id(),
        scope: Scope::Federation,
    };
    let w = WireEntry {
        entry: entry.encode().to_vec(),
        payload,
        checked: None,
    };
    let messages = [
        Request::Heads(HeadsPage::whole(vec![(feed, 3, Hash32([3; 32]))])).encode(),
        Request::Range {
            feed,
            from: 1,
            max: 512,
        }
        .encode(),
        Request::Push(vec![w.clone()]).encode(),
        Response::Entries {
            entries: vec![w],
            more: true,
        }
        .encode(),
        Response::Ack { stored: 1 }.encode(),
    ];
    for (i, m) in messages.iter().enumerate() {
        write("wire", &format!("message-{i}"), m);
    }
    write("token", "token", b"ic1");
}
