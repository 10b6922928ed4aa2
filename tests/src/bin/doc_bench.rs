//! Automerge cost per entry: times, in this process, what accepting one small record costs
//! (the bench's "Practice N of City M" record): decoding its genesis change, applying it to an
//! empty document, loading and saving the document, and reading the record back. Prints the
//! numbers; asserts nothing.
//!
//! ```text
//! cargo run --release -p intercity-tests --bin doc_bench -- --iterations 3000
//! ```

use std::hint::black_box;
use std::time::Instant;

use automerge::{ActorId, Automerge, Change};
use intercity_protocol::doc::{self, Texts};
use intercity_protocol::record::{Practice, Record};

fn time(what: &str, n: usize, mut f: impl FnMut()) {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{what:<34} {:>7.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000usize)
        .max(1);
    let mut p = Practice::new(
        "owner".to_string(),
        "Practice 12 of City 3".to_string(),
        "en",
    );
    p.summary = "A good practice number 12, shared with every member city.".into();
    p.themes = vec!["inclusion".into(), "youth".into()];
    let record = Record::Practice(p);
    let actor = ActorId::from(vec![7u8; 32]);
    let (built, change) =
        doc::new_document(actor.clone(), &record, "create", Texts::Merged).expect("new document");
    let bytes = change.raw_bytes().to_vec();
    let saved = built.save_nocompress();
    println!(
        "doc bench: one genesis change of {} bytes, {n} iterations",
        bytes.len()
    );
    time("build (new_document)", n, || {
        black_box(doc::new_document(actor.clone(), &record, "create", Texts::Merged).ok());
    });
    time("decode (Change::from_bytes)", n, || {
        black_box(Change::from_bytes(bytes.clone()).ok());
    });
    time("apply to an empty document", n, || {
        let mut d = Automerge::new();
        black_box(d.apply_changes([change.clone()]).ok());
        black_box(d);
    });
    time("load the saved document", n, || {
        black_box(Automerge::load(&saved).ok());
    });
    time("save (uncompressed)", n, || {
        black_box(built.save_nocompress());
    });
    time("read the record (read_record)", n, || {
        black_box(doc::read_record(&built, None).ok());
    });
    time("read without applying (genesis_json)", n, || {
        black_box(doc::genesis_json(&change));
    });
    let (plain, _) =
        doc::new_document(actor.clone(), &record, "create", Texts::Plain).expect("plain");
    time("build, plain texts (new_document)", n, || {
        black_box(doc::new_document(actor.clone(), &record, "create", Texts::Plain).ok());
    });
    time("build, plain texts (new_plain_change)", n, || {
        black_box(doc::new_plain_change(actor.clone(), &record, "create").ok());
    });
    black_box(plain);
}
