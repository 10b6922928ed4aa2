//! The catalog's own index against tantivy (issue #15): the records `catalog_bench` imports
//! (same generator, same seed), the same queries, timed the same way on both sides, in this one
//! process (no process start): open the index, run the query (the best 20 and the count), read
//! the 20 titles. "open" opens the index for every sample, as each CLI command does; "warm"
//! opens it once, as the node does. Prints the numbers; asserts nothing.
//!
//! ```text
//! cargo run --release -p intercity-tests --bin catalog_bench -- --records 100000 --dir /tmp/cb
//! cargo run --release -p intercity-tests --features tantivy --bin search_compare -- --dir /tmp/cb
//! ```
//!
//! `--dir` is a city `catalog_bench` filled with the same `--records` (default 100,000).
//! tantivy indexes title, summary, body and themes with its English stemmer (title boosted ×4,
//! summary and themes ×2, as the catalog weighs them) and the kind as a keyword.

use std::path::Path;
use std::time::{Duration, Instant};

use intercity_node::Client;
use intercity_node::catalog::{Filter, Query, UnitKind};
use intercity_tests::workload::{Rng, Vocabulary, record};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, QueryParser, RegexQuery, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::{Index, IndexReader, TantivyDocument, Term, doc};

struct Fields {
    title: Field,
    summary: Field,
    body: Field,
    themes: Field,
    kind: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        title: b.add_text_field("title", text.clone() | STORED),
        summary: b.add_text_field("summary", text.clone()),
        body: b.add_text_field("body", text.clone()),
        themes: b.add_text_field("themes", text),
        kind: b.add_text_field("kind", STRING),
    };
    (b.build(), fields)
}

/// Builds the tantivy index of `records` generated records in `dir`: (seconds, bytes).
fn build(dir: &Path, records: usize, f: &Fields, schema: Schema) -> (f64, u64) {
    let started = Instant::now();
    let index = Index::create_in_dir(dir, schema).expect("create index");
    let mut writer = index
        .writer::<TantivyDocument>(200_000_000)
        .expect("writer");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let vocab = Vocabulary::new(3000);
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    for i in 0..records {
        let r = record(&mut rng, &vocab, i);
        let themes = r["themes"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let (title, body) = if r["kind"] == "project" {
            (s(&r, "name"), s(&r, "description"))
        } else {
            (s(&r, "title"), s(&r, "body"))
        };
        writer
            .add_document(doc!(
                f.title => title,
                f.summary => s(&r, "summary"),
                f.body => body,
                f.themes => themes,
                f.kind => s(&r, "kind"),
            ))
            .expect("add");
    }
    writer.commit().expect("commit");
    writer.wait_merging_threads().expect("merge");
    let bytes = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    (started.elapsed().as_secs_f64(), bytes)
}

/// Builds a tantivy query for an index.
type MakeQuery = Box<dyn Fn(&Index) -> Box<dyn tantivy::query::Query>>;

/// One of the benchmark's queries on both sides.
struct Case {
    name: String,
    ours: Query,
    theirs: MakeQuery,
}

fn cases(common: &str, f: &Fields) -> Vec<Case> {
    let (title, summary, body, themes, kind) = (f.title, f.summary, f.body, f.themes, f.kind);
    let parsed = move |text: String| -> MakeQuery {
        Box::new(move |index: &Index| {
            let mut p = QueryParser::for_index(index, vec![title, summary, body, themes]);
            p.set_conjunction_by_default();
            p.set_field_boost(title, 4.0);
            p.set_field_boost(summary, 2.0);
            p.set_field_boost(themes, 2.0);
            p.parse_query(&text).expect("query")
        })
    };
    let text = |t: &str| Query {
        text: Some(t.to_string()),
        limit: 20,
        ..Query::default()
    };
    vec![
        Case {
            name: "search youth employment".into(),
            ours: text("youth employment"),
            theirs: parsed("youth employment".into()),
        },
        Case {
            name: format!("search {common} (the most common word)"),
            ours: text(common),
            theirs: parsed(common.to_string()),
        },
        Case {
            name: "search employ* --kind project".into(),
            ours: Query {
                filter: Filter {
                    kinds: vec![UnitKind::Project],
                    ..Filter::default()
                },
                ..text("employ*")
            },
            theirs: Box::new(move |_| {
                let prefix: Vec<(Occur, Box<dyn tantivy::query::Query>)> =
                    [title, summary, body, themes]
                        .into_iter()
                        .map(|field| {
                            let q = RegexQuery::from_pattern("employ.*", field).expect("regex");
                            (Occur::Should, Box::new(q) as Box<dyn tantivy::query::Query>)
                        })
                        .collect();
                let project = TermQuery::new(
                    Term::from_field_text(kind, "project"),
                    IndexRecordOption::Basic,
                );
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, Box::new(BooleanQuery::new(prefix))),
                    (Occur::Must, Box::new(project)),
                ]))
            }),
        },
    ]
}

/// Runs a case on tantivy: (results, titles read).
fn tantivy_once(index: &Index, reader: &IndexReader, case: &Case, title: Field) -> usize {
    let searcher = reader.searcher();
    let q = (case.theirs)(index);
    let (top, count) = searcher
        .search(&*q, &(TopDocs::with_limit(20), Count))
        .expect("search");
    for (_, address) in top {
        let d: TantivyDocument = searcher.doc(address).expect("doc");
        assert!(d.get_first(title).and_then(|v| v.as_str()).is_some());
    }
    count
}

fn ours_once(client: &Client, case: &Case) -> usize {
    let found = client.query(&case.ours).expect("query");
    found.total
}

fn percentiles(mut t: Vec<Duration>) -> String {
    t.sort();
    let at = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    format!("p50 {:>6.1} ms  p90 {:>6.1} ms", at(0.5), at(0.9))
}

fn time(samples: usize, mut f: impl FnMut()) -> String {
    percentiles(
        (0..samples)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records = intercity_tests::arg("--records", 100_000);
    let samples = intercity_tests::arg("--samples", 20).max(1);
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .expect("--dir DIR: a city catalog_bench filled with the same --records");
    let tmp = tempfile::tempdir().expect("tmp");
    let (schema, f) = schema();
    let (secs, bytes) = build(tmp.path(), records, &f, schema);
    println!(
        "tantivy 0.25: indexed {records} records in {secs:.1} s ({:.0} records/s), {:.1} MB on disk",
        records as f64 / secs,
        bytes as f64 / 1e6
    );
    let common = Vocabulary::new(3000).words[0].clone();
    for case in cases(&common, &f) {
        let client = Client::open_read_only(&dir).expect("open the city");
        let ours = ours_once(&client, &case);
        let index = Index::open_in_dir(tmp.path()).expect("open");
        let reader = index.reader().expect("reader");
        let theirs = tantivy_once(&index, &reader, &case, f.title);
        println!(
            "{}: {ours} results (catalog), {theirs} (tantivy)",
            case.name
        );
        println!(
            "  catalog  open+query {}   warm {}",
            time(samples, || {
                let c = Client::open_read_only(&dir).expect("open");
                ours_once(&c, &case);
            }),
            time(samples, || {
                ours_once(&client, &case);
            })
        );
        println!(
            "  tantivy  open+query {}   warm {}",
            time(samples, || {
                let i = Index::open_in_dir(tmp.path()).expect("open");
                let r = i.reader().expect("reader");
                tantivy_once(&i, &r, &case, f.title);
            }),
            time(samples, || {
                tantivy_once(&index, &reader, &case, f.title);
            })
        );
    }
}
