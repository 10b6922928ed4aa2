//! Catch-up benchmark (issue #16, target 1): a new city joins a federation whose one peer holds
//! N entries, and syncs them all. The peer runs in this process (real libp2p on 127.0.0.1, real
//! RocksDB in a temp dir); the new city is the real daemon, `intercity node run`, in its own
//! process, so that its peak memory is its own. Prints entries per second and the daemon's peak
//! RSS.
//!
//! `cargo run --release -p intercity-tests --bin catchup_bench -- --entries 100000`

use std::time::{Duration, Instant};

// The allocator of the `intercity` binary, so the peer here runs as the daemon does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use intercity_node::exchange::Imported;
use intercity_protocol::record::{Practice, Record};
use intercity_tests::{TestNode, arg};

fn cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = intercity_tests::run_cli(dir, args);
    assert!(
        out.status.success(),
        "intercity {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A field of /proc/PID/status, in kB.
fn proc_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user and system) process `pid` has used, in ms (`/proc/PID/stat`, in ticks of
/// 1/100 s, Linux's fixed USER_HZ); 0 where it cannot be read.
fn proc_cpu_ms(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime: fields 14 and 15 of the whole line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) * 10
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // As the daemon runs (see the function).
    intercity_node::without_huge_pages();
    let entries = arg("--entries", 100_000).max(1);
    println!("catch-up bench: one peer holding {entries} entries, a new city syncing them");
    let source = TestNode::spawn_with("Source", 200, Duration::from_secs(5)).await;
    let t = Instant::now();
    let mut done = 0;
    while done < entries {
        let n = (entries - done).min(10_000);
        let items = (done..done + n)
            .map(|i| {
                let mut p = Practice::new(String::new(), format!("Practice {i}"), "en");
                p.summary = format!("A good practice number {i}, shared with every member city.");
                p.themes = vec!["inclusion".into(), "youth".into()];
                Imported {
                    line: i + 1,
                    id: None,
                    record: Record::Practice(p),
                }
            })
            .collect();
        let results = source.city.import(items, false);
        assert!(results.iter().all(|r| r.id.is_some()), "import failed");
        done += n;
    }
    source.city.finish_import().expect("finish import");
    println!(
        "  the peer imported {entries} records in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("newcomer");
    cli(&dir, &["init", "--city", "Newcomer"]);
    let id: serde_json::Value =
        serde_json::from_str(&cli(&dir, &["whoami", "--json"])).expect("json");
    let id = id["id"].as_str().expect("id").to_string();
    source
        .city
        .roster_add(id.parse().expect("city id"), "Newcomer", &[])
        .expect("roster");
    source.net().roster_changed().await.expect("net");
    let source_id = source.id().to_string();
    cli(
        &dir,
        &[
            "peers",
            "add",
            &source_id,
            "--name",
            "Source",
            "--addr",
            &source.addr(),
        ],
    );
    let started = Instant::now();
    let serving_before = proc_cpu_ms("self");
    let daemon = intercity_tests::start_node(
        &dir,
        &["--listen", "/ip4/127.0.0.1/tcp/0"],
        Duration::from_secs(20),
    );
    let pid = daemon.0.id();
    let ready = started.elapsed();
    let mut first = None;
    let mut last = (Instant::now(), 0u64);
    let held = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let out = intercity_tests::run_cli(&dir, &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let held = status["entries"][0].as_u64().unwrap_or(0);
        if held > 0 && first.is_none() {
            first = Some((started.elapsed(), held));
        }
        if held >= entries as u64 {
            break held;
        }
        if last.0.elapsed() >= Duration::from_secs(5) {
            // What staff see: the sync line of `intercity status`.
            let shown = intercity_tests::run_cli(&dir, &["status"]);
            let shown = String::from_utf8_lossy(&shown.stdout);
            let sync = shown
                .lines()
                .find(|l| l.trim_start().starts_with("sync"))
                .unwrap_or("")
                .trim();
            println!(
                "  {:>5.1} s: {held} entries held, RSS {} MB; status: {sync}",
                started.elapsed().as_secs_f64(),
                proc_kb(pid, "VmRSS:") / 1024
            );
            assert!(held > last.1, "no progress in 5 s");
            last = (Instant::now(), held);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let peak = proc_kb(pid, "VmHWM:") / 1024;
    let daemon_ms = proc_cpu_ms(&pid.to_string());
    let serving_ms = proc_cpu_ms("self").saturating_sub(serving_before);
    drop(daemon);
    if let Some((at, held)) = first {
        println!(
            "  control socket open after {:.2} s; {held} entries held at the first poll that saw any, {:.2} s",
            ready.as_secs_f64(),
            at.as_secs_f64()
        );
    }
    println!(
        "  CPU: the daemon {:.2} s ({:.1} µs per entry), the serving peer and this bench {:.2} s",
        daemon_ms as f64 / 1000.0,
        daemon_ms as f64 * 1000.0 / held as f64,
        serving_ms as f64 / 1000.0
    );
    println!(
        "catch-up: {held} entries in {secs:.1} s = {:.0} entries/s (from the daemon's start, connection included); daemon peak RSS {peak} MB",
        held as f64 / secs
    );
}
