//! Automerge cost per entry: times, in this process, what accepting one small record costs
//! (the bench's "Practice N of City M" record): decoding its genesis change, applying it to an
//! empty document, loading and saving the document, and reading the record back. Prints the
//! numbers; asserts nothing.
//!
//! Then a working group's document through the store (real RocksDB in a temporary directory):
//! its chair adds `--group-edits` agendas of ten items one edit at a time, and a member city
//! receives each entry; it prints what an edit and a received entry cost as the document grows,
//! and how many bytes the store wrote.
//!
//! Last, one agenda edited `--agenda-edits` times (its history grows, the record does not):
//! what an edit and a received entry cost at 1,000 … 5,000 changes (issue #16, target 4),
//! then what Automerge alone costs on that document (copy, edit, take the change back, apply
//! a received change, read the record): the floor under those two.
//!
//! ```text
//! cargo run --release -p intercity-tests --bin doc_bench -- --iterations 3000 --group-edits 300 --agenda-edits 5000
//! ```

use std::hint::black_box;
use std::time::Instant;

// The allocator of the `intercity` binary, so the city here runs as the daemon does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Milan, chair of a working group with Brno as a member, in temporary directories (kept
/// while the returned guards live), and the group holding `agendas`.
fn group_of_two(
    agendas: &[(&str, intercity_protocol::record::Agenda)],
) -> (
    [tempfile::TempDir; 2],
    intercity_node::City,
    intercity_node::City,
    intercity_protocol::entry::DocId,
) {
    use intercity_node::City;
    use intercity_protocol::record::{Group, Member, Role};
    let dirs = [
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    ];
    let milan = City::init(dirs[0].path(), "Milan", Some("IT")).expect("init");
    let brno = City::init(dirs[1].path(), "Brno", Some("CZ")).expect("init");
    let mut g = Group::new("Smart Social Inclusion", milan.id().to_string(), "Milan");
    g.members.insert(
        brno.id().to_string(),
        Member {
            name: "Brno".into(),
            role: Role::Member,
        },
    );
    for (key, agenda) in agendas {
        g.agendas.insert(key.to_string(), agenda.clone());
    }
    let id = milan.create(&Record::Group(g), "create").expect("group");
    (dirs, milan, brno, id)
}

/// A group grown by its chair, `edits` agendas of ten items, and received by a member.
fn group_bench(edits: usize) {
    use intercity_protocol::record::{Agenda, Item};
    let (_dirs, milan, brno, id) = group_of_two(&[]);
    let forward = |from: &intercity_node::City, to: &intercity_node::City, n: usize| {
        let entries = from.store().doc_entries(&id).expect("entries");
        let start = std::time::Instant::now();
        for (e, p) in &entries[entries.len() - n..] {
            to.ingest_remote(&e.entry.encode(), p.as_deref().expect("payload"))
                .expect("ingest");
        }
        start.elapsed()
    };
    forward(&milan, &brno, 1);
    let written = |city: &intercity_node::City| city.store().written_bytes();
    let notes = "Visit of the social housing project, with the neighbourhood association; \
                 bring the translated summary. "
        .repeat(3);
    println!("\ngroup bench: {edits} edits, each a new agenda of ten items");
    println!(
        "{:>6} {:>12} {:>14} {:>12} {:>14}",
        "edits", "doc bytes", "edit µs", "receive µs", "written/edit"
    );
    let window = (edits / 6).max(1);
    let (mut edit_time, mut written_before) = (std::time::Duration::ZERO, written(&milan));
    for i in 0..edits {
        let start = std::time::Instant::now();
        milan
            .edit(id, "agenda", |r| {
                let Record::Group(g) = r else { unreachable!() };
                let mut agenda = Agenda::new(format!("Meeting {i}"), "2027-03-01");
                for k in 0..10 {
                    let mut item = Item::new(format!("Item {k} of meeting {i}"));
                    item.id = format!("{i:x}i{k}");
                    item.notes = notes.clone();
                    agenda.items.push(item);
                }
                g.agendas.insert(format!("{i:016x}"), agenda);
                Ok(())
            })
            .expect("edit");
        edit_time += start.elapsed();
        if (i + 1) % window == 0 {
            let receive = forward(&milan, &brno, window);
            let doc = milan.load(id).expect("load").save_nocompress().len();
            let now = written(&milan);
            println!(
                "{:>6} {:>12} {:>14.0} {:>12.0} {:>14}",
                i + 1,
                doc,
                edit_time.as_secs_f64() * 1e6 / window as f64,
                receive.as_secs_f64() * 1e6 / window as f64,
                (now - written_before) / window as u64
            );
            edit_time = std::time::Duration::ZERO;
            written_before = now;
        }
    }
}

fn main() {
    // As the daemon runs (see the function).
    intercity_node::without_huge_pages();
    let n = intercity_tests::arg("--iterations", 3000).max(1);
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
    group_bench(intercity_tests::arg("--group-edits", 300));
    history_bench(intercity_tests::arg("--agenda-edits", 5000));
}

/// One agenda of ten items edited `edits` times (an item's notes, in turn; issue #16, target
/// 4): the history grows, the record does not. Prints what an edit (judged and stored) and a
/// received entry cost as the history grows.
fn history_bench(edits: usize) {
    use intercity_protocol::record::{Agenda, Item};
    let mut agenda = Agenda::new("Study visit", "2027-03-01");
    for k in 0..10 {
        let mut item = Item::new(format!("Item {k}"));
        item.id = format!("i{k}");
        agenda.items.push(item);
    }
    let (_dirs, milan, brno, id) = group_of_two(&[("visit", agenda)]);
    let mut sent = 0usize;
    let mut forward = |n: usize| {
        let entries = milan.store().doc_entries(&id).expect("entries");
        let start = std::time::Instant::now();
        for (e, p) in &entries[sent..sent + n] {
            brno.ingest_remote(&e.entry.encode(), p.as_deref().expect("payload"))
                .expect("ingest");
        }
        sent += n;
        start.elapsed()
    };
    forward(1);
    println!("\nagenda history bench: one agenda of ten items, {edits} edits of an item's notes");
    println!(
        "{:>6} {:>12} {:>14} {:>12} {:>12} {:>12}",
        "edits", "doc bytes", "edit µs", "edit p50", "edit p99", "receive µs"
    );
    let window = (edits / 5).max(1);
    let mut edit_times: Vec<std::time::Duration> = Vec::with_capacity(window);
    for i in 0..edits {
        let start = std::time::Instant::now();
        milan
            .edit(id, "notes", |r| {
                let Record::Group(g) = r else { unreachable!() };
                let agenda = g.agendas.get_mut("visit").expect("agenda");
                agenda.items[i % 10].notes = format!("Notes, version {i}");
                Ok(())
            })
            .expect("edit");
        edit_times.push(start.elapsed());
        if (i + 1) % window == 0 {
            let receive = forward(window);
            let doc = milan.load(id).expect("load").save_nocompress().len();
            let total: std::time::Duration = edit_times.iter().sum();
            edit_times.sort();
            let at = |q: f64| edit_times[((edit_times.len() - 1) as f64 * q) as usize];
            println!(
                "{:>6} {:>12} {:>14.0} {:>12.0} {:>12.0} {:>12.0}",
                i + 1,
                doc,
                total.as_secs_f64() * 1e6 / window as f64,
                at(0.5).as_secs_f64() * 1e6,
                at(0.99).as_secs_f64() * 1e6,
                receive.as_secs_f64() * 1e6 / window as f64,
            );
            edit_times.clear();
        }
    }
    automerge_floor(&milan.load(id).expect("load"));
}

/// What Automerge alone costs on the agenda's document (in memory, no signature, no store):
/// the floor under an edit and a received entry of `history_bench`.
fn automerge_floor(doc: &Automerge) {
    use automerge::{ROOT, ReadDoc, transaction::Transactable};
    const K: usize = 300;
    let get = |d: &Automerge, obj: &automerge::ObjId, prop: automerge::Prop| {
        d.get(obj, prop).expect("get").expect("present").1
    };
    let agendas = get(doc, &ROOT, "agendas".into());
    let visit = get(doc, &agendas, "visit".into());
    let items = get(doc, &visit, "items".into());
    println!("\nAutomerge alone on this document (in memory), mean of {K}:");
    let mut copy = None;
    time("  copy the document", K, || {
        copy = Some(black_box(doc.clone()))
    });
    let mut author = doc.clone();
    author.set_actor(ActorId::random());
    let mut changes = Vec::with_capacity(K);
    let mut i = 0;
    time("  edit one item's notes, commit", K, || {
        let mut tx = author.transaction();
        let item = get_tx(&tx, &items, (i % 10).into());
        let notes = get_tx(&tx, &item, "notes".into());
        tx.update_text(&notes, format!("Notes, version {}", 90_000 + i))
            .expect("update");
        changes.push(tx.commit().0.expect("a change"));
        i += 1;
    });
    let mut taken = Vec::with_capacity(K);
    let mut hashes = changes.iter();
    time("  take the change made back", K, || {
        let hash = hashes.next().expect("hash");
        taken.push(author.get_change_by_hash(hash).expect("change"));
    });
    let mut receiver = doc.clone();
    let mut received = taken.into_iter();
    time("  apply a received change", K, || {
        doc::apply(&mut receiver, vec![received.next().expect("change")]).expect("apply");
    });
    time("  read the whole record", K, || {
        black_box(doc::read_record(&receiver, None).expect("record"));
    });
}

fn get_tx(
    tx: &automerge::transaction::Transaction<'_>,
    obj: &automerge::ObjId,
    prop: automerge::Prop,
) -> automerge::ObjId {
    use automerge::ReadDoc;
    tx.get(obj, prop).expect("get").expect("present").1
}
