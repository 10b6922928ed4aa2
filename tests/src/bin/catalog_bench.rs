//! Catalog benchmark: imports N generated records into a new city through the real `intercity`
//! binary, then times end-to-end CLI searches and filtered listings (process start, store open,
//! query, output), first with each command opening the store, then through a running node.
//! Prints the numbers; asserts nothing.
//!
//! ```text
//! cargo run --release -p intercity-tests --bin catalog_bench -- --records 100000 --samples 20
//! ```
//!
//! `--dir DIR` keeps the city in DIR; a later run with the same DIR reuses it (no import).

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use intercity_tests::intercity_bin;
use intercity_tests::workload::{Rng, Vocabulary, record};

fn run(dir: &std::path::Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = Command::new(intercity_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run intercity");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "intercity {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records = intercity_tests::arg("--records", 100_000);
    let samples = intercity_tests::arg("--samples", 20).max(1);
    let tmp = tempfile::tempdir().expect("temp dir");
    // --dir DIR keeps the city there, and a later run with the same DIR skips the import.
    let kept = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let dir = kept.clone().unwrap_or_else(|| tmp.path().join("city"));
    let reuse = dir.join("city.key").exists();
    let file = tmp.path().join("records.jsonl");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let vocab = Vocabulary::new(3000);
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file).expect("file"));
    for i in 0..records {
        serde_json::to_writer(&mut w, &record(&mut rng, &vocab, i)).expect("write");
        w.write_all(b"\n").expect("write");
    }
    w.flush().expect("flush");
    drop(w);
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!(
        "catalog benchmark: {records} records ({:.1} MB of JSON Lines)",
        bytes as f64 / 1e6
    );

    if reuse {
        println!(
            "import:                      skipped, reusing {}",
            dir.display()
        );
    } else {
        run(&dir, &["init", "--city", "Milan", "--country", "IT"]);
        let t = run(&dir, &["import", file.to_str().expect("utf-8")]);
        println!(
            "import:                      {:>8.1} s   {:>8.0} records/s (end to end, checked then signed)",
            t.as_secs_f64(),
            records as f64 / t.as_secs_f64()
        );
    }

    let common = vocab.words[0].clone();
    let common_query = format!("search {common} (the most common word)");
    let queries: &[(&str, &[&str])] = &[
        (
            "search youth employment",
            &["search", "youth", "employment"],
        ),
        (&common_query, &["search", &common]),
        (
            "search employ* --kind project",
            &["search", "employ*", "--kind", "project"],
        ),
        (
            "list --kind project --sector private,ngo,university --all --limit 20",
            &[
                "list",
                "--kind",
                "project",
                "--sector",
                "private,ngo,university",
                "--all",
                "--limit",
                "20",
            ],
        ),
        (
            "list --tag youth --city Brno --sort date",
            &["list", "--tag", "youth", "--city", "Brno", "--sort", "date"],
        ),
        ("practice list (limit 100)", &["practice", "list"]),
    ];
    let first = run(&dir, &["search", "heritage", "festival", "--json"]);
    println!(
        "first query after import:    {:>8.1} ms  (process start, store open, query)",
        ms(first)
    );
    let measure = |dir: &std::path::Path| {
        for (name, q) in queries {
            let mut times: Vec<Duration> = (0..samples).map(|_| run(dir, q)).collect();
            times.sort();
            let at = |p: f64| ms(times[((times.len() - 1) as f64 * p).round() as usize]);
            println!(
                "  {name:<70} p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms",
                at(0.5),
                at(0.9),
                at(0.99)
            );
        }
    };
    println!("each command opening the store itself (no node running):");
    measure(&dir);
    // As staff work where the node runs as a service: every command asks the node, which has the
    // store open and its caches warm.
    let mut node = intercity_tests::start_node(
        &dir,
        &["--listen", "/ip4/127.0.0.1/tcp/0"],
        Duration::from_secs(60),
    );
    run(&dir, &["search", "heritage", "festival"]);
    println!("through the running node (intercity node run):");
    measure(&dir);
    let _ = Command::new("kill")
        .args(["-TERM", &node.0.id().to_string()])
        .status();
    let _ = node.0.wait();
    let t = run(&dir, &["reindex"]);
    println!("reindex:                     {:>8.1} s", t.as_secs_f64());
}
