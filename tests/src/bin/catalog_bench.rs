//! Catalog benchmark: imports N generated records into a new city through the real `intercity`
//! binary, then times end-to-end CLI searches and filtered listings (process start, store open,
//! query, output). Prints the numbers; asserts nothing.
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

const WORDS: &[&str] = &[
    "youth",
    "employment",
    "inclusion",
    "housing",
    "mobility",
    "energy",
    "heritage",
    "culture",
    "innovation",
    "digital",
    "skills",
    "training",
    "migrants",
    "elderly",
    "care",
    "health",
    "school",
    "university",
    "startup",
    "incubator",
    "participation",
    "budget",
    "green",
    "roofs",
    "bicycle",
    "transport",
    "circular",
    "economy",
    "waste",
    "water",
    "climate",
    "adaptation",
    "neighbourhood",
    "regeneration",
    "library",
    "makerspace",
    "festival",
    "tourism",
    "food",
    "market",
    "procurement",
    "open",
    "data",
    "platform",
    "volunteers",
    "sport",
    "safety",
    "lighting",
    "parks",
    "trees",
];
const CITIES: &[&str] = &[
    "Milan",
    "Brno",
    "Warsaw",
    "Utrecht",
    "Porto",
    "Riga",
    "Nantes",
    "Madrid",
    "Katowice",
    "Bialystok",
    "Ghent",
    "Lyon",
    "Turin",
    "Gdansk",
    "Tartu",
    "Aarhus",
    "Bilbao",
    "Graz",
];
const SECTORS: &[&str] = &["private", "ngo", "university", "public"];

/// The generic vocabulary: pseudo-words drawn with Zipf's law (rank r has weight 1/r), as in
/// real text; the topical `WORDS` come only with the record's own two topics.
struct Vocabulary {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    fn new(n: usize) -> Vocabulary {
        const SYL: &[&str] = &[
            "ka", "lo", "ven", "tri", "mar", "so", "del", "pu", "ran", "gi", "on", "te", "bra",
            "qui", "mo", "sel", "ur", "fa", "nel", "di",
        ];
        let words = (0..n)
            .map(|i| {
                let (a, b, c) = (
                    i % SYL.len(),
                    i / SYL.len() % SYL.len(),
                    i / 400 % SYL.len(),
                );
                format!("{}{}{}", SYL[a], SYL[b], SYL[c])
            })
            .collect();
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|r| {
                total += 1.0 / r as f64;
                total
            })
            .collect();
        Vocabulary { words, cumulative }
    }

    fn pick(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = (rng.next() % 1_000_000) as f64 / 1_000_000.0 * total;
        let i = self.cumulative.partition_point(|c| *c < x);
        &self.words[i.min(self.words.len() - 1)]
    }
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// `n` words of text about `topics`: mostly generic words, each topic word now and then.
fn text(rng: &mut Rng, vocab: &Vocabulary, topics: &[&str], n: usize) -> String {
    (0..n)
        .map(|_| {
            if rng.next().is_multiple_of(12) {
                rng.pick(topics).to_string()
            } else {
                vocab.pick(rng).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn record(rng: &mut Rng, vocab: &Vocabulary, i: usize) -> serde_json::Value {
    let year = 2000 + rng.next() % 26;
    let start = format!(
        "{year}-{:02}-{:02}",
        1 + rng.next() % 12,
        1 + rng.next() % 28
    );
    let end = format!("{}-12-31", year + rng.next() % 4);
    let topics = [rng.pick(WORDS), rng.pick(WORDS)];
    let partners: Vec<serde_json::Value> = (0..rng.next() % 4)
        .map(|k| serde_json::json!({"name": format!("Partner {i}-{k}"), "sector": rng.pick(SECTORS)}))
        .collect();
    let city = rng.pick(CITIES);
    let title = format!(
        "{} {} {} in {city}",
        vocab.pick(rng),
        topics[0],
        vocab.pick(rng)
    );
    if i.is_multiple_of(3) {
        let status = ["planned", "running", "completed"][(rng.next() % 3) as usize];
        serde_json::json!({
            "kind": "project", "name": format!("{title} ({i})"),
            "description": text(rng, vocab, &topics, 60), "lead_city": city,
            "status": status, "start": start, "end": end, "themes": topics, "partners": partners,
        })
    } else {
        serde_json::json!({
            "kind": "practice", "title": title,
            "summary": text(rng, vocab, &topics, 20), "body": text(rng, vocab, &topics, 80),
            "city": city, "language": "en", "start": start, "themes": topics, "partners": partners,
        })
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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
    let records = arg(&args, "--records", 100_000);
    let samples = arg(&args, "--samples", 20).max(1);
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
    for (name, q) in queries {
        let mut times: Vec<Duration> = (0..samples).map(|_| run(&dir, q)).collect();
        times.sort();
        println!(
            "{name:<70} p50 {:>7.1} ms  p90 {:>7.1} ms",
            ms(times[times.len() / 2]),
            ms(times[times.len() * 9 / 10])
        );
    }
    let t = run(&dir, &["reindex"]);
    println!("reindex:                     {:>8.1} s", t.as_secs_f64());
}
