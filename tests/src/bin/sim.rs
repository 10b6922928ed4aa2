//! How sync cost grows with the federation (issue #12): the real sync session
//! (`intercity_protocol::session`) and acceptance pipeline on in-memory nodes, in the seeded
//! simulator (`intercity_protocol::sim`), for federations of several sizes. All cities are
//! connected to each other, as roster cities are. Every city writes `--entries` practices in
//! the first two seconds; new entries are pushed to `--fanout` peers (as gossip's mesh does),
//! and heads are exchanged on connection and every `--tick-secs` (the node's default
//! anti-entropy period, 30 s).
//!
//! Prints, per size:
//! - spreading new entries: messages and bytes per delivered entry (everything sent from the
//!   start until every node holds every entry, the first heads exchange included), that over
//!   the payload delivered, the delay from writing to storing (p50, p99), and the anti-entropy
//!   rounds it took after the last write;
//! - one anti-entropy round once in sync: what every node's heads exchange with every peer
//!   costs when there is nothing to fetch.
//!
//! `cargo run --release -p intercity-tests --bin sim -- --cities 10,50,200 --entries 5`
//!
//! With `--fanout 0` entries spread by heads exchanges alone (a partition healing looks like
//! this); `--kinds` also prints messages and bytes by request kind. Deterministic: the same
//! arguments print the same numbers (`--seed` picks another run).

use std::time::{Duration, Instant};

use intercity_protocol::sim::{Report, Sim, SimConfig};
use intercity_tests::arg;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--cities")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || vec![10, 50, 200],
            |v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        );
    let entries = arg("--entries", 5);
    let seed = arg("--seed", 1) as u64;
    let fanout = arg("--fanout", 6);
    let loss = arg("--loss-pct", 0) as f64 / 100.0;
    let tick = Duration::from_secs(arg("--tick-secs", 30).max(1) as u64);
    let kinds = args.iter().any(|a| a == "--kinds");
    println!(
        "sync cost by federation size: {entries} entries per city written in 2 s, fanout {fanout}, loss {:.0}%, anti-entropy {} s, latency 5-50 ms, seed {seed}",
        loss * 100.0,
        tick.as_secs()
    );
    println!(
        "{:>6} {:>8} {:>10} {:>9} {:>10} {:>9} {:>7} {:>7} {:>7} | {:>13} {:>10} {:>7}",
        "cities",
        "written",
        "delivered",
        "msgs/ent",
        "bytes/ent",
        "× payload",
        "p50 ms",
        "p99 ms",
        "rounds",
        "idle round KB",
        "KB/node",
        "wall s"
    );
    for cities in sizes {
        let wall = Instant::now();
        let mut sim = Sim::new(SimConfig {
            cities,
            seed,
            fanout,
            loss,
            tick,
            ..SimConfig::default()
        });
        for n in 0..cities {
            for k in 0..entries {
                let at = 100 + ((n * 7_919 + k * 104_729) % 2_000) as u64;
                sim.write_at(n, Duration::from_millis(at));
            }
        }
        let converged = sim.run_to_convergence(tick * 40);
        let r = sim.report();
        // One more anti-entropy period, in sync: what the heads exchanges alone cost.
        sim.run_until(sim.now() + tick);
        let idle = sim.report().bytes - r.bytes;
        let delivered = r.delivered.max(1) as f64;
        let rounds = converged.map_or("never".to_string(), |at| {
            format!(
                "{:.1}",
                at.saturating_sub(r.last_write).as_secs_f64() / tick.as_secs_f64()
            )
        });
        println!(
            "{:>6} {:>8} {:>10} {:>9.1} {:>10.0} {:>9.2} {:>7} {:>7} {:>7} | {:>13.0} {:>10.1} {:>7.1}",
            cities,
            r.written,
            r.delivered,
            r.messages as f64 / delivered,
            r.bytes as f64 / delivered,
            r.bytes as f64 / r.delivered_payload.max(1) as f64,
            r.delay_ms(50.0),
            r.delay_ms(99.0),
            rounds,
            idle as f64 / 1e3,
            idle as f64 / 1e3 / cities as f64,
            wall.elapsed().as_secs_f64()
        );
        if kinds {
            print_kinds(&r);
        }
    }
}

fn print_kinds(r: &Report) {
    for (kind, (n, bytes)) in &r.by_kind {
        println!("{kind:>14} {n:>10} messages {bytes:>14} bytes");
    }
}
