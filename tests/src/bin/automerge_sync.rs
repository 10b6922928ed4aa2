//! The `bench` workload on Automerge's own sync protocol (issue #16, target 2), for comparison:
//! N cities, each creating M practices (the same records as `bench`, one Automerge document
//! each, written with the same code), joined in a ring where each city connects to the next two
//! over TCP on 127.0.0.1; every link runs automerge 0.12's `generate_sync_message` /
//! `receive_sync_message` for every document, as automerge-repo does. No signatures, no
//! storage, no checks: Automerge alone. Prints the time until every city holds every document
//! and the bytes on the wire per delivered document against the documents' change bytes.
//!
//! ```text
//! cargo run --release -p intercity-tests --bin automerge_sync -- --nodes 10 --records 1000
//! ```
//!
//! A frame is a u32 length, the 16-byte document id and the encoded sync message; a document
//! new to a city is created empty when its first message arrives. Each link has a reader and a
//! writer thread; a writer sends for the documents marked on its link: all of them at first,
//! then each one a message arrived for on the link, and each one that changed on any link of
//! its city (as automerge-repo does, document by document).

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::sync::{Message, State, SyncDoc};
use automerge::{ActorId, Automerge};
use intercity_protocol::doc::{self, Texts};
use intercity_protocol::record::{Practice, Record};
use intercity_tests::arg;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Id = [u8; 16];

/// One city: its documents and its links.
#[derive(Default)]
struct City {
    docs: Mutex<HashMap<Id, Automerge>>,
    links: Mutex<Vec<Arc<Link>>>,
}

/// One side of a link: the sync state of each document with the peer, and the documents to
/// send for.
#[derive(Default)]
struct Link {
    states: Mutex<HashMap<Id, State>>,
    dirty: Mutex<HashSet<Id>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends sync messages for the documents marked on the link, until `done`.
fn writer(
    city: Arc<City>,
    link: Arc<Link>,
    stream: TcpStream,
    sent: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) {
    let mut out = BufWriter::with_capacity(1 << 16, stream);
    while !done.load(Ordering::Relaxed) {
        let dirty = std::mem::take(&mut *lock(&link.dirty));
        if dirty.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let mut frames = Vec::new();
        {
            let docs = lock(&city.docs);
            let mut states = lock(&link.states);
            for id in dirty {
                let Some(d) = docs.get(&id) else { continue };
                if let Some(m) = d.generate_sync_message(states.entry(id).or_default()) {
                    frames.push((id, m.encode()));
                }
            }
        }
        for (id, m) in frames {
            let len = (16 + m.len()) as u32;
            if out.write_all(&len.to_be_bytes()).is_err()
                || out.write_all(&id).is_err()
                || out.write_all(&m).is_err()
            {
                return;
            }
            sent.fetch_add(4 + 16 + m.len() as u64, Ordering::Relaxed);
        }
        if out.flush().is_err() {
            return;
        }
    }
}

/// Applies the peer's sync messages, until the connection closes.
fn reader(city: Arc<City>, link: Arc<Link>, stream: TcpStream) {
    let mut input = BufReader::with_capacity(1 << 16, stream);
    let mut len = [0u8; 4];
    while input.read_exact(&mut len).is_ok() {
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        if input.read_exact(&mut frame).is_err() || frame.len() < 16 {
            return;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&frame[..16]);
        let Ok(message) = Message::decode(&frame[16..]) else {
            return;
        };
        let changed = {
            let mut docs = lock(&city.docs);
            let mut states = lock(&link.states);
            let d = docs.entry(id).or_default();
            let before = d.get_heads();
            if d.receive_sync_message(states.entry(id).or_default(), message)
                .is_err()
            {
                return;
            }
            d.get_heads() != before
        };
        // The peer may wait for an answer; a change goes on to every other peer.
        lock(&link.dirty).insert(id);
        if changed {
            for other in lock(&city.links).iter() {
                lock(&other.dirty).insert(id);
            }
        }
    }
}

/// Runs one side of a link on `stream`.
fn link(city: &Arc<City>, stream: TcpStream, sent: &Arc<AtomicU64>, done: &Arc<AtomicBool>) {
    stream.set_nodelay(true).ok();
    let l = Arc::new(Link::default());
    lock(&l.dirty).extend(lock(&city.docs).keys().copied());
    lock(&city.links).push(l.clone());
    let r = stream.try_clone().expect("clone");
    let (c, l2) = (city.clone(), l.clone());
    std::thread::spawn(move || reader(c, l2, r));
    let (c, s, d) = (city.clone(), sent.clone(), done.clone());
    std::thread::spawn(move || writer(c, l, stream, s, d));
}

fn main() {
    // As the daemon runs (see the function).
    intercity_node::without_huge_pages();
    let nodes = arg("--nodes", 10).clamp(2, 64);
    let records = arg("--records", 1000);
    println!(
        "automerge sync: {nodes} cities x {records} documents, ring of next-two links, automerge 0.12"
    );
    let cities: Vec<Arc<City>> = (0..nodes).map(|_| Arc::new(City::default())).collect();
    let mut change_bytes = 0u64;
    for (i, city) in cities.iter().enumerate() {
        let mut docs = lock(&city.docs);
        for r in 0..records {
            let owner = format!("city-{i}");
            let mut p = Practice::new(owner.clone(), format!("Practice {r} of City {i}"), "en");
            p.summary = format!("A good practice number {r}, shared with every member city.");
            p.themes = vec!["inclusion".into(), "youth".into()];
            let mut actor = owner.into_bytes();
            actor.extend_from_slice(&(r as u64).to_be_bytes());
            let (d, change) = doc::new_document(
                ActorId::from(actor),
                &Record::Practice(p),
                "create",
                Texts::Merged,
            )
            .expect("document");
            change_bytes += change.raw_bytes().len() as u64;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            id[8..].copy_from_slice(&(r as u64).to_be_bytes());
            docs.insert(id, d);
        }
    }
    let per_doc = change_bytes as f64 / (nodes * records) as f64;
    let listeners: Vec<TcpListener> = (0..nodes)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let (sent, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let start = Instant::now();
    let links = 2.min(nodes - 1);
    for (i, l) in listeners.iter().enumerate() {
        let addr = l.local_addr().expect("addr");
        for step in 1..=links {
            let from = (i + nodes - step) % nodes;
            let stream = TcpStream::connect(addr).expect("connect");
            link(&cities[from], stream, &sent, &done);
            let (accepted, _) = l.accept().expect("accept");
            link(&cities[i], accepted, &sent, &done);
        }
    }
    let want = nodes * records;
    let complete = |c: &City| {
        let docs = lock(&c.docs);
        docs.len() == want && docs.values().all(|d| !d.get_heads().is_empty())
    };
    while !cities.iter().all(|c| complete(c)) {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no convergence in 600 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let delivered = (want * (nodes - 1)) as f64;
    let bytes = sent.load(Ordering::Relaxed) as f64;
    println!(
        "convergence: complete in {:.2} s ({want} documents at each city)",
        took.as_secs_f64()
    );
    println!(
        "wire: {:.0} bytes sent per delivered document vs {per_doc:.0} change bytes: {:.2}x (frames counted; TCP not)",
        bytes / delivered,
        bytes / delivered / per_doc
    );
}
