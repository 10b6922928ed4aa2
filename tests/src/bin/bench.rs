//! Sync benchmark: starts N city nodes (real libp2p on 127.0.0.1, real RocksDB in temp dirs),
//! each with M records, in a sparse topology, and prints time to full convergence, bytes on the
//! wire per entry against payload bytes, and the p50/p99 latency of one new entry reaching
//! every node.
//!
//! `cargo run --release -p intercity-tests --bin bench -- --nodes 10 --records 1000`

use std::time::{Duration, Instant};

// The allocator of the `intercity` binary, so the nodes here run as the daemon does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use intercity_protocol::record::{Practice, Record};
use intercity_tests::{TestNode, arg, eventually};

fn total_entries(n: &TestNode) -> u64 {
    n.heads().iter().map(|(_, s)| *s).sum()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // As the daemon runs (see the function).
    intercity_node::without_huge_pages();
    let nodes_n = arg("--nodes", 10).clamp(2, 64);
    let records = arg("--records", 1000);
    let samples = arg("--samples", 50).max(1);
    println!("bench: {nodes_n} nodes x {records} records, {samples} latency samples");
    let mut nodes = Vec::new();
    for i in 0..nodes_n {
        nodes.push(
            TestNode::spawn_with(&format!("City {i}"), 100 + i as u8, Duration::from_secs(5)).await,
        );
    }
    // Records first (local, signed, synced writes), counting payload bytes.
    let t = Instant::now();
    for n in &nodes {
        for r in 0..records {
            let mut p = Practice::new(
                n.id().to_string(),
                format!("Practice {r} of {}", n.city.profile().name),
                "en",
            );
            p.summary = format!("A good practice number {r}, shared with every member city.");
            p.themes = vec!["inclusion".into(), "youth".into()];
            n.city
                .create(&Record::Practice(p), "create")
                .expect("create");
        }
    }
    let mut payload_bytes = 0u64;
    for n in &nodes {
        for s in n.city.list(None).expect("list") {
            let id = s.id.parse().expect("id");
            for (_, payload) in n.city.store().doc_entries(&id).expect("entries") {
                payload_bytes += payload.map_or(0, |p| p.len() as u64);
            }
        }
    }
    println!(
        "created {} records in {:.1} s",
        nodes_n * records,
        t.elapsed().as_secs_f64()
    );
    // One federation roster; each city dials the next two around a ring.
    for a in &nodes {
        for b in &nodes {
            if a.id() != b.id() {
                a.trust(b).await;
            }
        }
    }
    let want = (nodes_n * records) as u64;
    let start = Instant::now();
    for i in 0..nodes_n {
        for step in 1..=2.min(nodes_n - 1) {
            nodes[i].dial(&nodes[(i + step) % nodes_n]).await;
        }
    }
    let ok = eventually(Duration::from_secs(600), || {
        nodes.iter().all(|n| total_entries(n) == want)
    })
    .await;
    let convergence = start.elapsed();
    println!(
        "convergence: {} in {:.2} s ({} entries at each node)",
        if ok { "complete" } else { "INCOMPLETE" },
        convergence.as_secs_f64(),
        want
    );
    let mut wire = 0u64;
    for n in &nodes {
        let st = n.status().await;
        wire += st.peers.iter().map(|p| p.bytes_received).sum::<u64>();
    }
    let delivered = want * (nodes_n as u64 - 1);
    let avg_payload = payload_bytes as f64 / want as f64;
    let per_entry = wire as f64 / delivered as f64;
    println!(
        "wire: {:.0} bytes received per delivered entry vs {:.0} payload bytes: {:.2}x (frames and messages counted; Noise/Yamux/TCP framing not counted)",
        per_entry,
        avg_payload,
        per_entry / avg_payload
    );
    // Latency: one new entry at a rotating node until every node holds it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut lat = Vec::new();
    for k in 0..samples {
        let n = &nodes[k % nodes_n];
        let before: Vec<u64> = nodes.iter().map(total_entries).collect();
        let t = Instant::now();
        let mut p = Practice::new(n.id().to_string(), format!("Live {k}"), "en");
        p.summary = "latency probe".into();
        n.city
            .create(&Record::Practice(p), "create")
            .expect("create");
        let mut arrived: Vec<Option<u128>> = vec![None; nodes_n];
        let reached = eventually(Duration::from_secs(30), || {
            for (i, (m, b)) in nodes.iter().zip(&before).enumerate() {
                if arrived[i].is_none() && total_entries(m) > *b {
                    arrived[i] = Some(t.elapsed().as_millis());
                }
            }
            arrived.iter().all(Option::is_some)
        })
        .await;
        if std::env::var_os("BENCH_ARRIVALS").is_some() {
            println!("sample {k} from node {}: arrivals {arrived:?}", k % nodes_n);
        }
        if reached {
            lat.push(t.elapsed());
        }
    }
    let order: Vec<u128> = lat.iter().map(Duration::as_millis).collect();
    lat.sort();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "latency to all {nodes_n} nodes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} of {samples} samples arrived)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        lat.len()
    );
    // In sample order: shows whether slow samples cluster (e.g. right after convergence).
    println!("latency samples, ms, in order: {order:?}");
    for mut n in nodes {
        n.stop().await;
    }
}
