//! The sync session in the seeded simulator: convergence, partitions, loss, a fork, and peers
//! that try to starve a feed. Each run is deterministic for its seed.

use std::time::Duration;

use intercity_protocol::entry::{FeedId, Hash32, Scope};
use intercity_protocol::ingest::Ledger;
use intercity_protocol::sim::{Hostile, Report, Sim, SimConfig, practice_entry};

const S: Duration = Duration::from_secs(1);

/// A federation of `cfg.cities` where each city writes `each` practices in the first seconds.
fn federation(cfg: SimConfig, each: usize) -> Sim {
    let cities = cfg.cities;
    let mut sim = Sim::new(cfg);
    for n in 0..cities {
        for k in 0..each {
            sim.write_at(
                n,
                Duration::from_millis(100 + (n * 37 + k * 211) as u64 % 2_000),
            );
        }
    }
    sim
}

fn entries_held(sim: &Sim, n: usize) -> usize {
    sim.ledger(n).entries.len()
}

#[test]
fn ten_cities_converge_and_a_seed_gives_the_same_run() {
    let run = || {
        let mut sim = federation(SimConfig::default(), 3);
        let at = sim.run_to_convergence(60 * S).expect("converges");
        (at, sim.report())
    };
    let (at, first): (Duration, Report) = run();
    assert_eq!(first.written, 30);
    assert_eq!(
        first.delivered,
        30 * 9,
        "each entry stored once by each other city"
    );
    assert!(at < 10 * S, "converged at {at:?}");
    let (again, second) = run();
    assert_eq!((at, &first), (again, &second), "same seed, same run");
    let mut other = federation(
        SimConfig {
            seed: 2,
            ..SimConfig::default()
        },
        3,
    );
    other.run_to_convergence(60 * S).expect("converges");
    assert_ne!(other.report(), first, "another seed, another run");
}

#[test]
fn heads_exchanges_alone_converge() {
    let mut sim = federation(
        SimConfig {
            fanout: 0,
            ..SimConfig::default()
        },
        2,
    );
    sim.run_to_convergence(60 * S).expect("converges");
    let r = sim.report();
    assert_eq!(r.delivered, 20 * 9);
    assert_eq!(r.by_kind.get("push"), None);
}

#[test]
fn a_partition_heals_with_nothing_lost_or_duplicated() {
    let cfg = SimConfig {
        cities: 8,
        ..SimConfig::default()
    };
    let mut sim = federation(cfg, 2);
    let side: Vec<u8> = (0..8).map(|n| (n % 2) as u8).collect();
    sim.partition(side, 20 * S);
    sim.run_until(15 * S);
    // Each side converged within itself, and holds nothing of the other.
    for n in 0..8 {
        assert_eq!(
            entries_held(&sim, n),
            8,
            "node {n} holds its side's 4 x 2 entries"
        );
    }
    assert!(!sim.converged());
    let at = sim.run_to_convergence(60 * S).expect("heals");
    assert!(at < 25 * S, "converged at {at:?}, healed at 20 s");
    for n in 0..8 {
        assert_eq!(entries_held(&sim, n), 16);
    }
    assert_eq!(
        sim.report().delivered,
        16 * 7,
        "each entry reached the 7 other nodes"
    );
}

#[test]
fn a_lossy_slow_network_converges() {
    let mut sim = federation(
        SimConfig {
            loss: 0.2,
            latency: (Duration::from_millis(50), Duration::from_millis(400)),
            timeout: 2 * S,
            ..SimConfig::default()
        },
        3,
    );
    sim.run_to_convergence(120 * S).expect("converges");
    let r = sim.report();
    assert!(r.lost > 0);
    assert_eq!(r.delivered, 30 * 9);
}

/// A city fetching a feed from a hostile peer that claimed it is not held up past the range
/// stall: the feed is fetched from an honest peer within one anti-entropy period.
fn starving(how: Hostile) -> (Sim, Duration) {
    let cfg = SimConfig {
        fanout: 0,
        ..SimConfig::default()
    };
    let mut sim = federation(cfg, 2);
    sim.set_hostile(9, how);
    let at = sim
        .run_to_convergence(120 * S)
        .expect("the honest nodes converge");
    (sim, at)
}

#[test]
fn a_peer_claiming_what_it_never_serves_cannot_starve_a_feed() {
    let honest_at = federation(
        SimConfig {
            fanout: 0,
            ..SimConfig::default()
        },
        2,
    )
    .run_to_convergence(120 * S)
    .expect("converges");
    let (sim, at) = starving(Hostile::ClaimsSilently);
    assert!(
        at <= honest_at + 3 * S,
        "converged at {at:?} with a silent claimer, {honest_at:?} without"
    );
    for n in 0..9 {
        assert_eq!(
            entries_held(&sim, n),
            18,
            "node {n}: 9 honest cities x 2 (the hostile one serves nothing)"
        );
    }
}

#[test]
fn a_peer_answering_its_claims_empty_is_struck_out() {
    let (sim, _) = starving(Hostile::ClaimsEmpty);
    let r = sim.report();
    assert!(r.penalties >= 9, "{} penalties", r.penalties);
    // Every honest node drops the hostile one after its strikes.
    assert_eq!(r.banned, 9, "{r:?}");
}

/// A peer that answers every digest "in sync" (a lie a digest makes possible, found by a
/// review) only keeps back what it holds itself: heads exchanges alone (no gossip), every
/// city's entries still reach every honest city, the liar's too (its own digests differ, so it
/// sends heads and is fetched from), and nobody is struck.
#[test]
fn a_peer_that_always_says_in_sync_delays_nothing() {
    let cfg = || SimConfig {
        fanout: 0,
        ..SimConfig::default()
    };
    let honest_at = federation(cfg(), 2)
        .run_to_convergence(120 * S)
        .expect("converges");
    let mut sim = federation(cfg(), 2);
    sim.set_hostile(9, Hostile::SaysInSync);
    let at = sim
        .run_to_convergence(120 * S)
        .expect("the honest nodes converge");
    assert!(
        at <= honest_at + 3 * S,
        "converged at {at:?} with a liar, {honest_at:?} without"
    );
    for n in 0..9 {
        assert_eq!(
            entries_held(&sim, n),
            20,
            "node {n}: all ten cities' entries"
        );
    }
    assert_eq!(sim.report().penalties, 0);
}

#[test]
fn a_fork_planted_on_two_sides_is_found_by_every_node() {
    let mut sim = Sim::new(SimConfig {
        cities: 6,
        fanout: 0,
        ..SimConfig::default()
    });
    // City 0 signs two different entries at seq 1 of its federation feed: one side holds the
    // first, the other side the second.
    let key = sim.key(0).clone();
    let branch =
        |title: &str| practice_entry(&key, 1, Hash32::default(), title, 1_000).expect("an entry");
    let (a, b) = (branch("Branch A"), branch("Branch B"));
    for n in 0..6 {
        sim.plant(n, &[if n < 3 { a.clone() } else { b.clone() }]);
    }
    sim.run_until(10 * S);
    let feed = FeedId {
        author: key.id(),
        scope: Scope::Federation,
    };
    for n in 0..6 {
        assert_eq!(
            Ledger::fork_seq(sim.ledger(n), &feed).expect("mem"),
            Some(1),
            "node {n} holds the fork proof"
        );
    }
}

/// Issue #16, target 3: once in sync, an anti-entropy round costs each pair one digest and its
/// answer, some 40 bytes whatever the number of feeds (it was every shared feed's head, 89
/// bytes each, then the fork proofs: 2.7 KB per exchange at 30 cities).
#[test]
fn an_in_sync_pair_reconciles_in_one_small_round_trip() {
    let cities = 30;
    let cfg = SimConfig {
        cities,
        ..SimConfig::default()
    };
    let tick = cfg.tick;
    let mut sim = federation(cfg, 2);
    sim.run_to_convergence(60 * S).expect("converges");
    // Exchanges started before convergence end in the first period after it.
    sim.run_until(sim.now() + tick);
    let before = sim.report();
    sim.run_until(sim.now() + tick);
    let after = sim.report();
    let kind = |r: &Report, k: &str| r.by_kind.get(k).copied().unwrap_or_default();
    assert_eq!(
        kind(&after, "heads"),
        kind(&before, "heads"),
        "no heads sent"
    );
    assert_eq!(
        kind(&after, "forks"),
        kind(&before, "forks"),
        "no forks asked"
    );
    let (messages, bytes) = (
        kind(&after, "digest").0 - kind(&before, "digest").0,
        kind(&after, "digest").1 - kind(&before, "digest").1,
    );
    let exchanges = messages / 2;
    assert!(
        exchanges >= (cities * (cities - 1)) as u64 * 9 / 10,
        "every pair exchanged: {exchanges}"
    );
    assert_eq!(after.bytes - before.bytes, bytes, "nothing but digests");
    assert!(
        bytes / exchanges < 64,
        "{} bytes per exchange",
        bytes / exchanges
    );
}
