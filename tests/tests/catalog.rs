//! Search, filters, export and import through the real `intercity` binary and real RocksDB.

use std::collections::BTreeMap;
use std::io::BufReader;

use intercity_tests::cli::{City, str_of};
use serde_json::Value;

/// The ids of a search's or listing's results, in order.
fn ids(v: &Value) -> Vec<String> {
    let hits = v.get("hits").unwrap_or(v);
    hits.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|h| str_of(&h["id"]))
        .collect()
}

struct Seeded {
    city: City,
    desk: String,
    fabriq: String,
    guarantee: String,
    roofs: String,
    group: String,
    agenda: String,
}

/// Milan with two practices, two projects and a group with one agenda.
fn seeded() -> Seeded {
    let city = City::init("Milan", "IT");
    let desk = city.add(&[
        "practice",
        "add",
        "--title",
        "Youth employment desk",
        "--summary",
        "A one-stop desk for young job seekers.",
        "--theme",
        "youth",
        "--theme",
        "employment",
        "--partner",
        "Acme:private",
        "--start",
        "2015-01-01",
    ]);
    let fabriq = city.add(&[
        "practice",
        "add",
        "--title",
        "FabriQ incubator",
        "--body",
        "The incubator helps young people into employment through social start-ups.",
        "--theme",
        "incubation",
        "--partner",
        "Fondazione Cariplo:ngo",
        "--partner",
        "Politecnico di Milano:university",
        "--partner",
        "Acme:private",
        "--start",
        "2014-03-01",
        "--link",
        "https://www.fabriq.eu",
        "--contact",
        "fabriq@comune.milano.it",
        "--outcome",
        "40 start-ups incubated",
    ]);
    let guarantee = city.add(&[
        "project",
        "add",
        "--name",
        "Youth Guarantee",
        "--description",
        "Employment for young people, with university partners.",
        "--lead-city",
        "Brno",
        "--partner-city",
        "Riga",
        "--status",
        "running",
        "--partner",
        "Acme:private",
        "--partner",
        "Caritas:ngo",
        "--partner",
        "Masaryk University:university",
        "--start",
        "2016-01-01",
        "--end",
        "2018-12-31",
        "--funding",
        "ESF",
        "--budget-eur",
        "1200000",
        "--outcome",
        "young people trained=120 people",
        "--theme",
        "Youth employment",
    ]);
    let roofs = city.add(&[
        "project",
        "add",
        "--name",
        "Green roofs",
        "--status",
        "completed",
        "--partner",
        "Acme:private",
        "--start",
        "2010-01-01",
        "--end",
        "2012-06-30",
    ]);
    let group = city.add(&["group", "create", "--name", "Smart Social Inclusion"]);
    let agenda = city.add(&[
        "agenda",
        "create",
        "--group",
        &group,
        "--title",
        "Study visit Milan",
        "--start",
        "2017-02-23",
        "--end",
        "2017-02-24",
        "--venue",
        "Palazzo Marino",
        "--host",
        "Milan",
    ]);
    city.ok(&[
        "agenda",
        "item",
        "add",
        &agenda,
        "--title",
        "Employment workshop",
        "--slot",
        "09:30-10:30",
    ]);
    Seeded {
        city,
        desk,
        fabriq,
        guarantee,
        roofs,
        group,
        agenda,
    }
}

#[test]
fn search_ranks_and_respects_every_filter() {
    let s = seeded();
    let c = &s.city;
    let search = |args: &[&str]| {
        let mut a = vec!["search"];
        a.extend_from_slice(args);
        ids(&c.json(&a))
    };

    // Words in any text field: title, summary, body, partners, themes, agenda items.
    let all = search(&["employment"]);
    for id in [&s.desk, &s.fabriq, &s.guarantee, &s.agenda] {
        assert!(all.contains(id), "{id} in {all:?}");
    }
    assert!(!all.contains(&s.roofs));
    // A title match ranks above a body match.
    let pos = |id: &String| all.iter().position(|x| x == id).expect("found");
    assert!(pos(&s.desk) < pos(&s.fabriq), "{all:?}");
    assert_eq!(search(&["politecnico"]), [s.fabriq.as_str()]);
    assert_eq!(search(&["incubation"]), [s.fabriq.as_str()]);
    assert_eq!(search(&["workshop"]), [s.agenda.as_str()]);
    assert_eq!(
        search(&["youth", "seekers"]),
        [s.desk.as_str()],
        "every word must match"
    );
    assert_eq!(search(&["employ*"]).len(), all.len(), "a prefix");
    assert_eq!(search(&["Employments"]), all, "case and plural folded");

    // Snippets highlight the match.
    let out = c.json(&["search", "start-ups", "--kind", "practice"]);
    let (snippet, highlighted) = first_highlight(&out);
    assert_eq!(highlighted, "start", "{snippet}");
    assert!(c.ok(&["search", "politecnico"]).contains("*Politecnico*"));

    // Every filter.
    assert_eq!(
        search(&["employment", "--kind", "project"]),
        [s.guarantee.as_str()]
    );
    assert_eq!(search(&["employment", "--kind", "agenda,project"]).len(), 2);
    assert_eq!(
        search(&["employment", "--city", "brno"]),
        [s.guarantee.as_str()]
    );
    assert_eq!(
        search(&["employment", "--tag", "youth", "--kind", "practice"]),
        [s.desk.as_str()]
    );
    // The staff guide's example: the desk has the themes "youth" and "employment", the
    // project the one theme "Youth employment"; a tag matches the words of a theme.
    let mut both = ids(&c.json(&["list", "--tag", "youth,employment", "--all"]));
    both.sort();
    let mut want = vec![s.desk.clone(), s.guarantee.clone()];
    want.sort();
    assert_eq!(both, want);
    assert_eq!(
        ids(&c.json(&["list", "--tag", "employment", "--kind", "project"])),
        [s.guarantee.as_str()]
    );
    let mut three = search(&["employment", "--sector", "private,ngo,university", "--all"]);
    three.sort();
    let mut want = vec![s.fabriq.clone(), s.guarantee.clone()];
    want.sort();
    assert_eq!(three, want, "partners from all three sectors");
    assert_eq!(
        search(&["employment", "--sector", "ngo"]).len(),
        2,
        "any sector"
    );
    assert_eq!(
        search(&["employment", "--group", "smart social inclusion"]),
        [s.agenda.as_str()]
    );
    assert_eq!(
        search(&["employment", "--status", "running"]),
        [s.guarantee.as_str()]
    );
    assert_eq!(
        search(&["employment", "--until", "2014-12-31"]),
        [s.fabriq.as_str()]
    );
    let since = search(&["employment", "--since", "2016-06-01"]);
    assert!(
        since.contains(&s.guarantee) && since.contains(&s.agenda) && since.len() == 2,
        "{since:?}"
    );
    let one = c.json(&["search", "employment", "--limit", "1"]);
    assert_eq!((ids(&one).len(), one["total"].as_u64()), (1, Some(4)));
    assert_eq!(
        search(&["employment", "--sort", "title"])[0],
        s.fabriq,
        "FabriQ sorts first"
    );

    // The same filters on listings.
    assert_eq!(
        ids(&c.json(&[
            "list",
            "--kind",
            "project",
            "--sector",
            "private,ngo,university",
            "--all"
        ])),
        [s.guarantee.as_str()]
    );
    assert_eq!(
        ids(&c.json(&["project", "list", "--status", "completed"])),
        [s.roofs.as_str()]
    );
    assert_eq!(
        ids(&c.json(&["list", "--sort", "date", "--kind", "project,practice"])),
        [
            s.roofs.clone(),
            s.fabriq.clone(),
            s.desk.clone(),
            s.guarantee.clone()
        ]
    );
    assert_eq!(
        ids(&c.json(&["agenda", "list", "--group", &s.group[..8]])),
        [s.agenda.as_str()]
    );
    assert!(
        ids(&c.json(&["agenda", "next"])).is_empty(),
        "the 2017 meeting is past"
    );

    // Bad queries are usage errors.
    assert!(
        c.fails(&["search", "the", "of"], 2)
            .contains("no searchable word")
    );
    assert!(c.fails(&["list", "--sector", "army"], 2).contains("army"));
    c.fails(&["list", "--sort", "relevance"], 2);
    assert!(
        c.fails(&["search", "x", "--group", "nope"], 1)
            .contains("group list")
    );

    // A withdrawn record leaves the catalog; reindex rebuilds the same catalog.
    c.ok(&["practice", "delete", &s.desk]);
    assert!(!search(&["employment"]).contains(&s.desk));
    let before = search(&["employment"]);
    let out = c.json(&["reindex"]);
    assert_eq!(out["units"], 5, "2 projects, 1 practice, 1 group, 1 agenda");
    assert_eq!(search(&["employment"]), before);
}

/// The first hit's snippet of a `search --json` answer, and the text of its first highlight.
fn first_highlight(out: &Value) -> (String, String) {
    let hit = &out["hits"][0];
    let snippet = str_of(&hit["snippet"]);
    let range = hit["highlights"][0].as_array().expect("range");
    let (a, b) = (
        range[0].as_u64().expect("a") as usize,
        range[1].as_u64().expect("b") as usize,
    );
    let highlighted = snippet[a..b].to_string();
    (snippet, highlighted)
}

/// Content fields of exported records, keyed by title (ids, owners and provenance removed).
fn content(jsonl: &str) -> BTreeMap<String, Value> {
    jsonl
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).expect("JSON line");
            let map = v.as_object_mut().expect("object");
            for k in ["id", "owner", "provenance"] {
                map.remove(k);
            }
            let title = map
                .get("title")
                .or_else(|| map.get("name"))
                .and_then(Value::as_str)
                .expect("title")
                .to_string();
            (title, v)
        })
        .collect()
}

#[test]
fn search_finds_records_in_their_own_languages() {
    let c = City::init("Milan", "IT");
    let add = |title: &str, summary: &str, language: &str| {
        c.add(&[
            "practice",
            "add",
            "--title",
            title,
            "--summary",
            summary,
            "--language",
            language,
        ])
    };
    let italian = add(
        "Cooperativa sociale di comunità",
        "Una cooperativa sociale per l'inclusione dei giovani.",
        "it",
    );
    let portuguese = add(
        "Cidades inclusivas",
        "Cooperativas de habitação para famílias jovens.",
        "pt",
    );
    let czech = add(
        "Sociální bydlení v Brně",
        "Družstevní domy pro mladé rodiny.",
        "cs",
    );
    let english = add(
        "Civic crowdfunding platform",
        "The city matches what citizens give to civic projects.",
        "en",
    );
    let search = |args: &[&str]| {
        let mut a = vec!["search"];
        a.extend_from_slice(args);
        let mut found = ids(&c.json(&a));
        found.sort();
        found
    };
    let sorted = |ids: &[&String]| {
        let mut v: Vec<String> = ids.iter().map(|s| (*s).clone()).collect();
        v.sort();
        v
    };
    // Inflections find each other, in each record's language.
    assert_eq!(search(&["cooperative"]), sorted(&[&italian, &portuguese]));
    assert_eq!(search(&["inclusioni"]), sorted(&[&italian]));
    assert_eq!(search(&["cidade"]), sorted(&[&portuguese]));
    // Folding: accents, and letters typed decomposed.
    assert_eq!(search(&["comunita"]), sorted(&[&italian]));
    assert_eq!(search(&["comunita\u{300}"]), sorted(&[&italian]));
    assert_eq!(
        search(&["brne"]),
        sorted(&[&czech]),
        "Czech: folded, not stemmed"
    );
    // --language: only records in it, words looked up in it.
    assert_eq!(
        search(&["cooperativa", "--language", "it"]),
        sorted(&[&italian])
    );
    assert_eq!(
        search(&["crowdfunding", "--language", "it"]),
        Vec::<String>::new()
    );
    // OR, NOT and phrases.
    assert_eq!(
        search(&["crowdfunding", "OR", "cooperativa"]),
        sorted(&[&italian, &portuguese, &english])
    );
    assert_eq!(
        search(&["cooperativa", "NOT", "habitação"]),
        sorted(&[&italian])
    );
    assert_eq!(search(&["cooperativa -habitação"]), sorted(&[&italian]));
    assert_eq!(search(&["\"civic crowdfunding\""]), sorted(&[&english]));
    assert_eq!(search(&["\"crowdfunding civic\""]), Vec::<String>::new());
    assert_eq!(search(&["\"cooperativa sociale\""]), sorted(&[&italian]));
    let err = c.fails(&["search", "\"civic crowdfunding\" OR cooperativa"], 2);
    assert!(err.contains("OR joins single words"), "{err}");
    // A translation beside the original: found in its own language, shown, removable.
    c.ok(&[
        "practice",
        "translate",
        "Cooperativa sociale di comunità",
        "--language",
        "en",
        "--title",
        "Community social cooperative",
        "--summary",
        "A social cooperative for the inclusion of young people.",
    ]);
    assert_eq!(search(&["communities"]), sorted(&[&italian]));
    assert_eq!(search(&["\"social cooperative\""]), sorted(&[&italian]));
    // --language counts translations: the Italian practice now reads in English too.
    let in_english = || {
        let mut v = ids(&c.json(&["list", "--language", "en", "--kind", "practice"]));
        v.sort();
        v
    };
    assert_eq!(in_english(), sorted(&[&english, &italian]));
    assert_eq!(
        search(&["communities", "--language", "en"]),
        sorted(&[&italian])
    );
    let shown = c.json(&["practice", "show", &italian]);
    assert_eq!(
        shown["translations"]["en"]["title"],
        "Community social cooperative"
    );
    assert_eq!(shown["language"], "it");
    c.fails(
        &[
            "practice",
            "translate",
            &italian,
            "--language",
            "it",
            "--title",
            "x",
        ],
        2,
    );
    c.ok(&[
        "practice",
        "translate",
        &italian,
        "--language",
        "en",
        "--remove",
    ]);
    // (Without --language, typo tolerance now finds the Italian "comunità" for it.)
    assert_eq!(
        search(&["communities", "--language", "en"]),
        Vec::<String>::new()
    );
    assert_eq!(in_english(), sorted(&[&english]));
    // A mistyped word (one edit away, five letters or more) finds what the word would.
    assert_eq!(search(&["crowdfudning"]), sorted(&[&english]));
    assert_eq!(search(&["platfrom"]), sorted(&[&english]));
    // A typo that changes how the word stems: its variants (two letters swapped, one dropped)
    // are stemmed and looked up too.
    assert_eq!(search(&["cooperatvia"]), search(&["cooperativa"]));
    assert!(!search(&["cooperatvia"]).is_empty());
    assert_eq!(
        search(&["crowdfunding", "cooperatvia"]),
        Vec::<String>::new(),
        "each word"
    );
    let err = c.fails(&["search", "NOT", "crowdfunding"], 2);
    assert!(err.contains("only excludes"), "{err}");
    c.fails(&["search", "x", "--language", "italian"], 2);
    // The snippet highlights the word as the record wrote it.
    let out = c.json(&["search", "giovane", "--language", "it"]);
    let (snippet, highlighted) = first_highlight(&out);
    assert_eq!(highlighted, "giovani", "{snippet}");
}

/// Imports `file` (the seeded city's export) into a new city, which creates the 4 practices
/// and projects and skips the group; returns that city's JSON Lines export.
fn import_into_a_new_city(name: &str, country: &str, file: &std::path::Path) -> String {
    let city = City::init(name, country);
    let out = city.json(&["import", file.to_str().expect("utf-8")]);
    assert_eq!(
        (out["created"].as_u64(), out["groups_skipped"].as_u64()),
        (Some(4), Some(1)),
        "{out}"
    );
    city.ok(&["export", "--format", "jsonl"])
}

#[test]
fn export_then_import_round_trips() {
    let s = seeded();
    let milan = &s.city;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("milan.jsonl");
    let path = file.to_str().expect("utf-8");
    milan.ok(&[
        "export",
        "--format",
        "jsonl",
        "--kind",
        "practice,project",
        "-o",
        path,
    ]);
    let exported = std::fs::read_to_string(&file).expect("exported");
    assert_eq!(exported.lines().count(), 4);
    let first: Value = serde_json::from_str(exported.lines().next().expect("line")).expect("json");
    let prov = &first["provenance"];
    assert_eq!(prov["created_by"], milan.id().as_str());
    assert_eq!(prov["verified"], true);
    assert!(prov["changes"].as_u64().is_some_and(|n| n >= 1));

    // Into a fresh city: the same content, now owned by Brno.
    let brno = City::init("Brno", "CZ");
    let out = brno.json(&["import", path]);
    assert_eq!(out["created"], 4, "{out}");
    let back_file = dir.path().join("brno.jsonl");
    brno.ok(&[
        "export",
        "--format",
        "jsonl",
        "-o",
        back_file.to_str().expect("utf-8"),
    ]);
    let back = std::fs::read_to_string(&back_file).expect("re-exported");
    assert_eq!(
        content(&back),
        content(&exported),
        "lossless for content fields"
    );
    for line in back.lines() {
        let v: Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["owner"], brno.id().as_str());
    }

    // Importing its own export again changes nothing and duplicates nothing.
    let again = milan.json(&["import", path]);
    assert_eq!(
        (again["created"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(4)),
        "{again}"
    );
    assert_eq!(
        ids(&milan.json(&["list", "--kind", "practice,project"])).len(),
        4
    );

    // CSV: one row per record, read by the csv crate, and imported again.
    let csv_file = dir.path().join("records.csv");
    milan.ok(&[
        "export",
        "--format",
        "csv",
        "-o",
        csv_file.to_str().expect("utf-8"),
    ]);
    let mut reader = csv::Reader::from_path(&csv_file).expect("csv");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    assert_eq!(&header[..4], ["id", "kind", "title", "summary"]);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("rows");
    assert_eq!(rows.len(), 5, "4 records and the group");
    let col = |name: &str| header.iter().position(|h| h == name).expect("column");
    let guarantee = rows
        .iter()
        .find(|r| &r[col("id")] == s.guarantee.as_str())
        .expect("row");
    assert_eq!(
        &guarantee[col("partners")],
        "Acme:private\nCaritas:ngo\nMasaryk University:university"
    );
    assert_eq!(
        &guarantee[col("outcomes")],
        "young people trained=120 people"
    );
    assert_eq!(&guarantee[col("verified")], "true");
    // The group's row is skipped, not an error: what `export` writes imports as it is.
    let riga_back = import_into_a_new_city("Riga", "LV", &csv_file);
    assert_eq!(content(&riga_back), content(&exported), "CSV round trip");

    // CSV for Excel: a byte-order mark first, and the file imports as it is.
    let excel = dir.path().join("excel.csv");
    milan.ok(&[
        "export",
        "--format",
        "csv",
        "--bom",
        "-o",
        excel.to_str().expect("utf-8"),
    ]);
    let bytes = std::fs::read(&excel).expect("excel");
    assert!(
        bytes.starts_with("\u{feff}id,kind,".as_bytes()),
        "{:?}",
        &bytes[..8]
    );
    let porto = City::init("Porto", "PT");
    let out = porto.json(&["import", excel.to_str().expect("utf-8")]);
    assert_eq!(out["created"].as_u64(), Some(4), "{out}");
    milan.fails(&["export", "--format", "json", "--bom"], 2);

    // JSON: the staff guide's `export --format json -o all.json`, then `import all.json`.
    let all = dir.path().join("all.json");
    milan.ok(&[
        "export",
        "--format",
        "json",
        "-o",
        all.to_str().expect("utf-8"),
    ]);
    let utrecht_back = import_into_a_new_city("Utrecht", "NL", &all);
    assert_eq!(
        content(&utrecht_back),
        content(&exported),
        "JSON round trip"
    );
    // Milan's own export imports into Milan again without duplicates.
    let again = milan.json(&["import", all.to_str().expect("utf-8")]);
    assert_eq!(
        (again["created"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(4)),
        "{again}"
    );
}

#[test]
fn import_with_bad_lines_reports_each_and_writes_none() {
    let city = City::init("Porto", "PT");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("in.jsonl");
    std::fs::write(
        &file,
        [
            r#"{"kind":"practice","title":"Good one","language":"en"}"#,
            r#"{"kind":"practice","title":"Bad date","start":"2017-02-30"}"#,
            r#"{"kind":"project","name":"Good two","status":"running"}"#,
            r#"{"kind":"practice","title":"Typo","colour":"red"}"#,
            r#"not json"#,
            r#"{"kind":"project","name":"Bad partner","partners":[{"name":"X","sector":"army"}]}"#,
        ]
        .join("\n"),
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    let err = city.fails(&["import", path], 2);
    for needle in [
        "line 2:",
        "start",
        "line 4:",
        "colour",
        "line 5:",
        "line 6:",
        "army",
        "nothing was imported",
    ] {
        assert!(err.contains(needle), "`{needle}` in:\n{err}");
    }
    assert!(
        !err.contains("line 1:") && !err.contains("line 3:"),
        "{err}"
    );
    assert!(ids(&city.json(&["list"])).is_empty(), "nothing written");

    let dry = city.run(&["import", path, "--dry-run", "--json"]);
    assert_eq!(dry.status.code(), Some(2));
    let dry: Value = serde_json::from_slice(&dry.stdout).expect("json");
    assert_eq!(
        (
            dry["would_create"].as_u64(),
            dry["errors"].as_array().map(Vec::len)
        ),
        (Some(2), Some(4))
    );
    assert!(
        ids(&city.json(&["list"])).is_empty(),
        "a dry run writes nothing"
    );

    city.fails(&["import", path, "--skip-invalid"], 0);
    let mut titles: Vec<String> = city
        .json(&["list"])
        .as_array()
        .expect("array")
        .iter()
        .map(|u| str_of(&u["title"]))
        .collect();
    titles.sort();
    assert_eq!(titles, ["Good one", "Good two"]);

    let csv_file = dir.path().join("in.csv");
    std::fs::write(
        &csv_file,
        "kind,title,start\npractice,Fine,2020-01-01\npractice,,2020-01-01\n",
    )
    .expect("write");
    let err = city.fails(&["import", csv_file.to_str().expect("utf-8")], 2);
    assert!(err.contains("line 3:") && err.contains("title"), "{err}");
    city.fails(
        &[
            "import",
            dir.path().join("missing.csv").to_str().expect("utf-8"),
        ],
        2,
    );
}

#[test]
fn calendar_export_parses_with_an_independent_parser() {
    let s = seeded();
    let c = &s.city;
    let next = c.add(&[
        "agenda",
        "create",
        "--group",
        &s.group,
        "--title",
        "Final conference, Brno",
        "--start",
        "2099-05-04",
        "--venue",
        "Brno; City Hall",
        "--host",
        "Brno",
    ]);
    assert_eq!(ids(&c.json(&["agenda", "next"])), [next.as_str()]);
    assert!(c.ok(&["agenda", "next"]).contains("Final conference"));

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("meetings.ics");
    c.ok(&[
        "export",
        "--format",
        "ics",
        "--group",
        &s.group,
        "-o",
        file.to_str().expect("utf-8"),
    ]);
    let text = std::fs::read_to_string(&file).expect("ics");
    let calendars: Vec<_> = ical::IcalParser::new(BufReader::new(text.as_bytes()))
        .collect::<Result<_, _>>()
        .expect("valid iCalendar");
    assert_eq!(calendars.len(), 1);
    let events = &calendars[0].events;
    assert_eq!(events.len(), 2, "one event per meeting");
    let prop = |e: &ical::parser::ical::component::IcalEvent, name: &str| {
        e.properties
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.value.clone())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let visit = &events[0];
    assert_eq!(prop(visit, "SUMMARY"), "Study visit Milan");
    // Its one item has a slot and the agenda no time zone: floating local times.
    assert_eq!(prop(visit, "DTSTART"), "20170223T093000");
    assert_eq!(prop(visit, "DTEND"), "20170223T103000");
    assert!(prop(visit, "SEQUENCE").parse::<u64>().is_ok_and(|n| n >= 3));
    assert!(prop(visit, "DESCRIPTION").contains("09:30-10:30 Employment workshop"));
    assert_eq!(
        prop(visit, "UID"),
        format!("{}-{}@intercity", s.agenda, s.group)
    );
    let conference = &events[1];
    assert_eq!(prop(conference, "SUMMARY"), "Final conference\\, Brno");
    // No times: a whole day, with iCalendar's exclusive end.
    assert_eq!(prop(conference, "DTSTART"), "20990504");
    assert_eq!(prop(conference, "DTEND"), "20990505");
    assert_eq!(prop(conference, "LOCATION"), "Brno\\; City Hall\\, Brno");

    // The UID is stable: a second export after an edit names the same events.
    c.ok(&["agenda", "item", "add", &s.agenda, "--title", "Lunch"]);
    let again = c.ok(&["export", "--format", "ics"]);
    let uid_lines = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("UID:"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(uid_lines(&again), uid_lines(&text));
    c.fails(&["export", "--format", "ics", "--kind", "project"], 2);
}
