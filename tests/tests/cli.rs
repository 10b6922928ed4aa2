//! The `intercity` binary end to end: real processes, real RocksDB in temporary directories.
//! Every invocation is a separate process, so each test also checks that data persists.

use assert_cmd::Command;
use intercity_tests::cli::{City, bin, str_of, strings};
use predicates::prelude::*;

/// The shortest prefix (at least `min` long) of `id` that no other id shares.
fn unique_prefix<'a>(id: &'a str, others: &[&str], min: usize) -> &'a str {
    let n = (min..id.len())
        .find(|&n| others.iter().all(|o| *o == id || !o.starts_with(&id[..n])))
        .unwrap_or(id.len());
    &id[..n]
}

const SEED_ITEMS: [(&str, &str, &str); 5] = [
    (
        "Makerspace visit: new craft and digital manufacturing",
        "09:30-10:30",
        "Milan Makers",
    ),
    (
        "OpenCare participatory care project",
        "10:45-11:45",
        "WeMake",
    ),
    (
        "FabriQ, Milan's first social innovation incubator",
        "12:00-13:00",
        "FabriQ",
    ),
    (
        "The city's social entrepreneurship strategy",
        "14:30-15:30",
        "City of Milan",
    ),
    (
        "Civic crowdfunding platform",
        "15:45-16:45",
        "City of Milan",
    ),
];

const ATTENDEES: [&str; 9] = [
    "Bialystok",
    "Brno",
    "Katowice",
    "Madrid",
    "Nantes",
    "Porto",
    "Riga",
    "Utrecht",
    "Warsaw",
];

#[test]
fn init_whoami_and_refusing_to_overwrite() {
    let milan = City::empty();
    let out = milan.ok(&["init", "--city", "Milan", "--country", "IT"]);
    assert!(out.contains("12D3KooW"), "init prints the id:\n{out}");
    assert!(
        out.contains(&milan.path().display().to_string()),
        "init prints the data dir:\n{out}"
    );

    let me = milan.json(&["whoami"]);
    assert_eq!(me["name"], "Milan");
    assert_eq!(me["country"], "IT");
    assert!(str_of(&me["id"]).starts_with("12D3KooW"));
    assert_eq!(str_of(&me["data_dir"]), milan.path().display().to_string());
    assert!(milan.ok(&["whoami"]).contains("Milan"));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(milan.path().join("city.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the secret key is private");
    }

    let err = milan.fails(&["init", "--city", "Brno"], 2);
    assert!(err.contains("already holds a city"), "{err}");
    assert_eq!(
        milan.json(&["whoami"])["name"],
        "Milan",
        "the city is untouched"
    );

    // The data dir also comes from the environment.
    let out = Command::new(bin())
        .args(["whoami", "--json"])
        .env("INTERCITY_DATA_DIR", milan.path())
        .output()
        .expect("run intercity");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"Milan\""));

    let nowhere = City::empty();
    let err = nowhere.fails(&["whoami"], 3);
    assert!(err.starts_with("error: no city in"), "{err}");
    assert!(err.contains("hint: run `intercity init"), "{err}");
    nowhere.fails(&["practice", "list"], 3);

    let err = nowhere.fails(&["init", "--city", "Brno", "--country", "cz"], 2);
    assert!(err.contains("country"), "{err}");
}

#[cfg(unix)]
#[test]
fn key_with_wide_permissions_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let milan = City::init("Milan", "IT");
    let key = milan.path().join("city.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = milan.fails(&["whoami"], 3);
    assert!(err.contains("chmod 600"), "{err}");
}

/// Issue #10, scenario 8: the data directory was created with the umask (0755), so every user
/// of the machine could read the database.
#[cfg(unix)]
#[test]
fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("new").join("milan");
    let run = |args: &[&str]| {
        std::process::Command::new(intercity_tests::cli::bin())
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .env_remove("INTERCITY_DATA_DIR")
            .output()
            .expect("run")
    };
    let out = run(&["init", "--city", "Milan", "--country", "IT"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&dir), 0o700, "a new data directory is private");
    // One readable by others (an earlier version's) is made private; one writable by others
    // is refused.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = run(&["whoami"]);
    assert!(out.status.success());
    assert_eq!(mode(&dir), 0o700);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = run(&["whoami"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 700"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn identical_records_are_separate_records() {
    let milan = City::init("Milan", "IT");
    let a = milan.add(&["practice", "add", "--title", "Test"]);
    let b = milan.add(&["practice", "add", "--title", "Test"]);
    assert_ne!(a, b);
    let file = milan.path().join("twice.jsonl");
    std::fs::write(
        &file,
        "{\"kind\":\"practice\",\"title\":\"Same\"}\n{\"kind\":\"practice\",\"title\":\"Same\"}\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    milan.ok(&["import", path]);
    milan.ok(&["import", path]);
    let list = milan.json(&["practice", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(6), "{list}");
}

#[test]
fn practices_add_edit_show_list() {
    let milan = City::init("Milan", "IT");
    let fabriq = milan.add(&[
        "practice",
        "add",
        "--title",
        "FabriQ social innovation incubator",
        "--summary",
        "Milan's first social innovation incubator",
        "--theme",
        "social innovation",
        "--theme",
        "incubation",
        "--partner",
        "Fondazione Giordano Dell'Amore:ngo",
        "--partner",
        "Impact Hub Milano:private",
        "--outcome",
        "40 start-ups incubated",
        "--link",
        "https://www.fabriq.eu",
        "--start",
        "2014-03-01",
    ]);
    let body = milan.path().join("crowdfunding.json");
    std::fs::write(
        &body,
        r#"{"title": "from the file", "body": "Line one.\nLine two.", "themes": ["finance"], "country": "IT"}"#,
    )
    .expect("write json");
    let crowd = milan.add(&[
        "practice",
        "add",
        "--from-file",
        body.to_str().expect("utf-8 path"),
        "--title",
        "Civic crowdfunding platform",
    ]);

    let list = milan.json(&["practice", "list"]);
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    let titles: Vec<&str> = list.iter().filter_map(|r| r["title"].as_str()).collect();
    assert!(
        titles.contains(&"FabriQ social innovation incubator")
            && titles.contains(&"Civic crowdfunding platform")
    );
    for r in list {
        assert_eq!(r["kind"], "practice");
        assert_eq!(r["owner"], milan.id().as_str());
        assert_eq!(r["city"], "Milan", "the city defaults to this city's name");
        assert!(r["updated"].as_i64().is_some_and(|t| t > 1_500_000_000_000));
    }
    let table = milan.ok(&["practice", "list"]);
    assert!(
        table.contains("FabriQ social innovation incubator") && table.contains("TITLE"),
        "{table}"
    );

    // Show, by a short unique prefix.
    let p = unique_prefix(&fabriq, &[&crowd], 4);
    let shown = milan.json(&["practice", "show", p]);
    assert_eq!(shown["id"], fabriq.as_str());
    assert_eq!(shown["language"], "en");
    assert_eq!(
        strings(&shown["themes"]),
        ["social innovation", "incubation"]
    );
    assert_eq!(
        shown["partners"][0],
        serde_json::json!({"name": "Fondazione Giordano Dell'Amore", "sector": "ngo"})
    );
    assert_eq!(shown["partners"][1]["sector"], "private");
    assert_eq!(shown["start"], "2014-03-01");
    let crowd_shown = milan.json(&["practice", "show", &crowd]);
    assert_eq!(
        crowd_shown["title"], "Civic crowdfunding platform",
        "flags override the file"
    );
    assert_eq!(crowd_shown["body"], "Line one.\nLine two.");
    assert_eq!(strings(&crowd_shown["themes"]), ["finance"]);
    let human = milan.ok(&["practice", "show", &fabriq]);
    assert!(
        human.contains("Fondazione Giordano Dell'Amore (ngo)") && human.contains("(this city)"),
        "{human}"
    );

    // Edit: a repeatable flag replaces its list; other fields stay.
    milan.ok(&[
        "practice",
        "edit",
        p,
        "--theme",
        "entrepreneurship",
        "--contact",
        "fabriq@comune.milano.it",
    ]);
    let edited = milan.json(&["practice", "show", &fabriq]);
    assert_eq!(strings(&edited["themes"]), ["entrepreneurship"]);
    assert_eq!(edited["contact"], "fabriq@comune.milano.it");
    assert_eq!(
        edited["summary"],
        "Milan's first social innovation incubator"
    );
    assert_eq!(edited["partners"].as_array().map(Vec::len), Some(2));
    // An empty value clears an optional field; --from-file overwrites the keys it has.
    let patch = milan.path().join("patch.json");
    std::fs::write(
        &patch,
        r#"{"outcomes": ["40 start-ups", "120 jobs"], "summary": "Incubator"}"#,
    )
    .expect("write");
    milan.ok(&[
        "practice",
        "edit",
        &fabriq,
        "--from-file",
        patch.to_str().expect("utf-8"),
        "--contact",
        "",
    ]);
    let edited = milan.json(&["practice", "show", &fabriq]);
    assert_eq!(strings(&edited["outcomes"]), ["40 start-ups", "120 jobs"]);
    assert_eq!(edited["summary"], "Incubator");
    assert!(edited.get("contact").is_none(), "{edited}");
    assert_eq!(strings(&edited["themes"]), ["entrepreneurship"]);

    // Editing to the same values changes nothing: exit 2.
    let err = milan.fails(&["practice", "edit", &fabriq, "--summary", "Incubator"], 2);
    assert!(err.contains("nothing to change"), "{err}");

    // History: every change, verified, with its message.
    let history = milan.json(&["history", p]);
    let history = history.as_array().expect("an array");
    assert_eq!(history.len(), 3);
    for (i, h) in history.iter().enumerate() {
        assert_eq!(h["status"], "accepted");
        assert_eq!(h["verified"], true);
        assert_eq!(h["author"], milan.id().as_str());
        assert_eq!(h["author_name"], "Milan");
        assert!(str_of(&h["when"]).ends_with('Z'));
        assert!(h["seq"].as_u64().is_some(), "{h}");
        if i > 0 {
            assert!(
                h["seq"].as_u64() > history[i - 1]["seq"].as_u64(),
                "feed order"
            );
        }
    }
    assert_eq!(
        history[0]["message"],
        "add practice 'FabriQ social innovation incubator'"
    );
    assert!(
        str_of(&history[1]["message"]).contains("contact, themes"),
        "{}",
        history[1]["message"]
    );
    let table = milan.ok(&["history", &fabriq]);
    assert!(
        table.contains("✓") && table.contains("accepted") && table.contains("Milan"),
        "{table}"
    );
}

#[test]
fn invalid_input_exits_2_naming_the_field() {
    let milan = City::init("Milan", "IT");
    let err = milan.fails(
        &["practice", "add", "--title", "X", "--start", "2017-02-30"],
        2,
    );
    assert!(
        err.contains("--start") && err.contains("2017-02-30"),
        "{err}"
    );
    let err = milan.fails(
        &[
            "practice",
            "add",
            "--title",
            "X",
            "--partner",
            "Cariplo:charity",
        ],
        2,
    );
    assert!(
        err.contains("--partner") && err.contains("charity"),
        "{err}"
    );
    let err = milan.fails(
        &[
            "practice",
            "add",
            "--title",
            "X",
            "--start",
            "2017-03-01",
            "--end",
            "2017-02-01",
        ],
        2,
    );
    assert!(err.contains("`end`"), "{err}");
    let err = milan.fails(&["practice", "add", "--summary", "no title"], 2);
    assert!(err.contains("`title`"), "{err}");
    let err = milan.fails(
        &[
            "practice",
            "add",
            "--title",
            "X",
            "--link",
            "www.example.org",
        ],
        2,
    );
    assert!(err.contains("links[0]"), "{err}");
    let file = milan.path().join("bad.json");
    std::fs::write(&file, r#"{"title": "X", "end": "2017-13-01"}"#).expect("write");
    let err = milan.fails(
        &[
            "practice",
            "add",
            "--from-file",
            file.to_str().expect("utf-8"),
        ],
        2,
    );
    assert!(err.contains("`end`") && err.contains("2017-13-01"), "{err}");
    std::fs::write(&file, r#"{"titel": "X"}"#).expect("write");
    let err = milan.fails(
        &[
            "practice",
            "add",
            "--from-file",
            file.to_str().expect("utf-8"),
        ],
        2,
    );
    assert!(err.contains("titel"), "{err}");
    std::fs::write(&file, r#"{"kind": "project", "name": "X"}"#).expect("write");
    milan.fails(
        &[
            "practice",
            "add",
            "--from-file",
            file.to_str().expect("utf-8"),
        ],
        2,
    );
    let err = milan.fails(
        &["project", "add", "--name", "X", "--outcome", "jobs=many"],
        2,
    );
    assert!(err.contains("--outcome"), "{err}");
    let err = milan.fails(
        &["project", "add", "--name", "X", "--status", "dreaming"],
        2,
    );
    assert!(err.contains("--status"), "{err}");
    milan.fails(
        &["practice", "add", "--title", "X", "--editor", "not-a-city"],
        2,
    );
    milan.fails(&["practice", "frobnicate"], 2);
    assert_eq!(
        milan.json(&["practice", "list"]),
        serde_json::json!([]),
        "nothing was stored"
    );
}

#[test]
fn unknown_and_ambiguous_ids() {
    let milan = City::init("Milan", "IT");
    let err = milan.fails(&["practice", "show", "ffffffffffffffffffffffffffffffff"], 1);
    assert!(err.contains("no practice matches"), "{err}");
    milan.fails(&["practice", "edit", "ffff", "--title", "X"], 1);
    milan.fails(&["history", "ffff"], 1);
    milan.fails(&["agenda", "show", "ffff"], 1);
    milan.fails(&["group", "show", "not-hex"], 1);

    // Add practices until two ids share their first character: that prefix is ambiguous.
    let mut ids: Vec<String> = Vec::new();
    let (a, b) = loop {
        let id = milan.add(&[
            "practice",
            "add",
            "--title",
            &format!("Practice {}", ids.len()),
        ]);
        if let Some(other) = ids.iter().find(|o| o[..1] == id[..1]) {
            break (other.clone(), id);
        }
        ids.push(id);
    };
    let err = milan.fails(&["practice", "show", &a[..1]], 2);
    assert!(
        err.contains("matches") && err.contains("hint: type more characters"),
        "{err}"
    );
    // A unique prefix works; upper case too.
    let all: Vec<&str> = ids.iter().map(String::as_str).chain([b.as_str()]).collect();
    let p = unique_prefix(&b, &all, 1);
    assert_eq!(
        milan.json(&["practice", "show", &p.to_uppercase()])["id"],
        b.as_str()
    );

    // A record of another kind is not found as this kind.
    let project = milan.add(&["project", "add", "--name", "MiGenerationLab"]);
    milan.fails(&["practice", "show", &project], 1);
}

#[test]
fn projects() {
    let milan = City::init("Milan", "IT");
    let practice = milan.add(&["practice", "add", "--title", "FabriQ"]);
    let id = milan.add(&[
        "project",
        "add",
        "--name",
        "MiGenerationLab",
        "--description",
        "Youth employment",
        "--status",
        "running",
        "--start",
        "2016-01-01",
        "--partner",
        "Fondazione Cariplo:ngo",
        "--partner",
        "Politecnico di Milano:university",
        "--partner",
        "Microsoft Italia:private",
        "--partner-city",
        "Brno",
        "--funding",
        "Horizon 2020",
        "--budget-eur",
        "500000",
        "--outcome",
        "young people trained=120 people",
        "--outcome",
        "start-ups=7",
        "--related",
        &practice[..8],
        "--theme",
        "youth employment",
    ]);
    milan.add(&[
        "project",
        "add",
        "--name",
        "Milan Social Innovation Platform",
    ]);
    milan.add(&[
        "project",
        "add",
        "--name",
        "Local Innovation Network",
        "--theme",
        "waste",
        "--theme",
        "recycling",
    ]);

    let p = milan.json(&["project", "show", &id[..10]]);
    assert_eq!(p["lead_city"], "Milan");
    assert_eq!(p["status"], "running");
    let sectors: Vec<String> = p["partners"]
        .as_array()
        .expect("partners")
        .iter()
        .map(|x| str_of(&x["sector"]))
        .collect();
    assert_eq!(sectors, ["ngo", "university", "private"]);
    assert_eq!(
        p["outcomes"][0],
        serde_json::json!({"label": "young people trained", "value": 120.0, "unit": "people"})
    );
    assert_eq!(p["outcomes"][1]["unit"], "");
    assert_eq!(
        strings(&p["related_practices"]),
        vec![practice],
        "the prefix is stored as the full id"
    );
    assert_eq!(p["budget_eur"], 500_000);

    milan.ok(&[
        "project",
        "edit",
        &id,
        "--status",
        "completed",
        "--end",
        "2019-12-31",
    ]);
    let p = milan.json(&["project", "show", &id]);
    assert_eq!(p["status"], "completed");
    assert_eq!(p["end"], "2019-12-31");
    assert_eq!(p["funding"], "Horizon 2020");

    let list = milan.json(&["project", "list"]);
    let mut names: Vec<String> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|r| str_of(&r["title"]))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Local Innovation Network",
            "MiGenerationLab",
            "Milan Social Innovation Platform"
        ]
    );
    let human = milan.ok(&["project", "show", &id]);
    assert!(
        human.contains("young people trained: 120 people"),
        "{human}"
    );
    let history = milan.json(&["history", &id]);
    assert_eq!(
        history[1]["message"],
        "edit project 'MiGenerationLab': end, status"
    );
}

/// Milan's "Smart Social Inclusion" study visit of 23–24 February 2017 (DESIGN.md seed).
#[test]
fn working_group_agenda() {
    let milan = City::init("Milan", "IT");
    let brno = City::init("Brno", "CZ");
    let group = milan.add(&[
        "group",
        "create",
        "--name",
        "Smart Social Inclusion",
        "--charter",
        "Cities for social inclusion",
    ]);
    milan.ok(&[
        "group",
        "member",
        "add",
        &group[..6],
        &brno.id(),
        "--name",
        "Brno",
    ]);
    let g = milan.json(&["group", "show", &group]);
    assert_eq!(g["members"][milan.id()]["role"], "chair");
    assert_eq!(
        g["members"][brno.id()],
        serde_json::json!({"name": "Brno", "role": "member"})
    );
    let err = milan.fails(
        &[
            "group",
            "member",
            "add",
            &group,
            &brno.id(),
            "--name",
            "Brno",
        ],
        2,
    );
    assert!(err.contains("nothing to change"), "{err}");

    let mut create = vec![
        "agenda",
        "create",
        "--group",
        &group[..6],
        "--title",
        "Smart Social Inclusion study visit",
        "--start",
        "2017-02-23",
        "--end",
        "2017-02-24",
        "--venue",
        "Palazzo Marino",
        "--host",
        "Milan",
    ];
    for a in ATTENDEES {
        create.extend(["--attendee", a]);
    }
    let agenda = milan.ok(&create).trim().to_string();
    assert_eq!(agenda.len(), 16, "{agenda}");
    let next = milan.ok(&[
        "agenda",
        "create",
        "--group",
        &group,
        "--title",
        "Next meeting",
        "--start",
        "2017-06-01",
        "--end",
        "2017-06-02",
        "--host",
        "Brno",
    ]);
    let next = next.trim();

    let short = unique_prefix(&agenda, &[next], 3);
    let mut item_ids = Vec::new();
    for (title, slot, presenter) in SEED_ITEMS {
        let id = milan.ok(&[
            "agenda",
            "item",
            "add",
            short,
            "--title",
            title,
            "--slot",
            slot,
            "--presenter",
            presenter,
        ]);
        item_ids.push(id.trim().to_string());
    }
    let titles = |city: &City| -> Vec<String> {
        let a = city.json(&["agenda", "show", &agenda]);
        a["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| str_of(&i["title"]))
            .collect()
    };
    let seed: Vec<String> = SEED_ITEMS.iter().map(|(t, _, _)| t.to_string()).collect();
    assert_eq!(titles(&milan), seed);

    let shown = milan.json(&["agenda", "show", short]);
    assert_eq!(shown["id"], agenda.as_str());
    assert_eq!(shown["group"], group.as_str());
    assert_eq!(shown["status"], "draft");
    assert_eq!(strings(&shown["attendees"]), ATTENDEES);
    assert_eq!(shown["end"], "2017-02-24");
    assert_eq!(
        shown["items"][2]["presenters"],
        serde_json::json!(["FabriQ"])
    );
    let human = milan.ok(&["agenda", "show", short]);
    let positions: Vec<usize> = SEED_ITEMS
        .iter()
        .map(|(t, _, _)| human.find(t).expect("item shown"))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "items in order:\n{human}"
    );
    assert!(
        human.contains("2017-02-23 – 2017-02-24") && human.contains("Bialystok, Brno"),
        "{human}"
    );

    // Move the civic crowdfunding platform (position 5) to the top; FabriQ by id prefix to the end.
    milan.ok(&["agenda", "item", "move", short, "5", "--to", "1"]);
    let mut expected = seed.clone();
    let moved = expected.remove(4);
    expected.insert(0, moved);
    assert_eq!(titles(&milan), expected);
    milan.ok(&[
        "agenda",
        "item",
        "move",
        short,
        &item_ids[2][..6],
        "--to",
        "5",
    ]);
    let fabriq = expected.remove(3);
    expected.push(fabriq);
    assert_eq!(titles(&milan), expected);

    // Insert at a position, edit, remove.
    milan.ok(&[
        "agenda",
        "item",
        "add",
        short,
        "--title",
        "Welcome",
        "--slot",
        "09:00-09:30",
        "--at",
        "1",
    ]);
    expected.insert(0, "Welcome".into());
    assert_eq!(titles(&milan), expected);
    milan.ok(&[
        "agenda",
        "item",
        "edit",
        short,
        "1",
        "--notes",
        "Coffee in the Sala Alessi",
        "--presenter",
        "Mayor of Milan",
    ]);
    let a = milan.json(&["agenda", "show", short]);
    assert_eq!(a["items"][0]["notes"], "Coffee in the Sala Alessi");
    assert_eq!(
        a["items"][0]["presenters"],
        serde_json::json!(["Mayor of Milan"])
    );
    assert_eq!(
        a["items"][0]["slot"], "09:00-09:30",
        "unspecified fields stay"
    );
    milan.ok(&["agenda", "item", "remove", short, "1"]);
    expected.remove(0);
    assert_eq!(titles(&milan), expected);
    milan.fails(&["agenda", "item", "move", short, "1", "--to", "9"], 2);
    milan.fails(&["agenda", "item", "remove", short, "fffffffffff"], 1);
    milan.fails(
        &["agenda", "item", "add", short, "--title", "x", "--at", "0"],
        2,
    );

    milan.ok(&["agenda", "publish", short]);
    assert_eq!(
        milan.json(&["agenda", "show", short])["status"],
        "published"
    );
    milan.fails(&["agenda", "publish", short], 2);

    let list = milan.json(&["agenda", "list", "--group", &group[..8]]);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], agenda.as_str(), "sorted by start date");
    assert_eq!(list[0]["items"], 5);
    assert_eq!(list[1]["city"], "Brno", "the host city");
    assert!(milan.ok(&["agenda", "list"]).contains("Next meeting"));
    assert!(
        milan
            .ok(&["group", "list"])
            .contains("Smart Social Inclusion")
    );

    // The history of the group: every change, accepted and verified, with readable messages.
    let history = milan.json(&["history", &group]);
    let history = history.as_array().expect("array");
    let messages: Vec<String> = history.iter().map(|h| str_of(&h["message"])).collect();
    assert_eq!(messages[0], "create group 'Smart Social Inclusion'");
    assert!(
        messages.contains(
            &"add agenda item 'FabriQ, Milan's first social innovation incubator' at 3".to_string()
        ),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("move agenda item 'Civic crowdfunding platform' from 5 to 1")),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"publish agenda 'Smart Social Inclusion study visit'".to_string()),
        "{messages:?}"
    );
    assert!(
        history
            .iter()
            .all(|h| h["verified"] == true && h["status"] == "accepted")
    );
    // An agenda's history: only that meeting's changes (not the other agenda's, nor the
    // members'), each with the fields it changed and their values.
    let agenda_history = milan.json(&["history", short]);
    let agenda_history = agenda_history.as_array().expect("array");
    assert!(agenda_history.len() < history.len());
    assert!(
        agenda_history
            .iter()
            .all(|h| !str_of(&h["message"]).contains("Next meeting")
                && !str_of(&h["message"]).starts_with("add member")),
        "{agenda_history:?}"
    );
    let published = agenda_history.last().expect("publish");
    assert_eq!(
        published["changes"],
        serde_json::json!([{"path": "status", "before": "draft", "after": "published"}])
    );
    let by_title = milan.json(&["history", "Smart Social Inclusion study visit"]);
    assert_eq!(by_title.as_array(), Some(agenda_history));
    let table = milan.ok(&["history", short]);
    assert!(
        table.contains("✓") && table.contains("status: 'draft' → 'published'"),
        "{table}"
    );
    assert!(
        table.contains("item 'Civic crowdfunding platform': moved"),
        "{table}"
    );
    let table = milan.ok(&["history", &group]);
    assert!(
        table.contains("✓") && table.contains("publish agenda") && table.contains("created"),
        "{table}"
    );

    // Brno's node holds none of this (no sync here); it has its own records.
    assert_eq!(brno.json(&["group", "list"]), serde_json::json!([]));
    brno.fails(&["agenda", "show", &agenda], 1);
    brno.fails(
        &[
            "group",
            "member",
            "add",
            &group,
            &milan.id(),
            "--name",
            "Milan",
        ],
        1,
    );

    // Membership: a chair removes itself after naming Brno chair; its next edit is rejected (exit 4).
    milan.fails(&["group", "member", "remove", &group, &milan.id()], 2);
    milan.ok(&[
        "group",
        "member",
        "add",
        &group,
        &brno.id(),
        "--name",
        "Brno",
        "--role",
        "chair",
    ]);
    milan.ok(&["group", "member", "remove", &group, &milan.id()]);
    let err = milan.fails(&["agenda", "item", "add", short, "--title", "Too late"], 4);
    assert!(err.contains("rejected"), "{err}");
    milan.fails(&["group", "member", "remove", &group, &milan.id()], 1);
}

#[test]
fn an_agenda_goes_from_draft_to_minutes_by_names() {
    let milan = City::init("Milan", "IT");
    milan.add(&["group", "create", "--name", "Smart Social Inclusion"]);
    // The group by its name, in any case; a time zone this program knows.
    let agenda = milan.add(&[
        "agenda",
        "create",
        "--group",
        "smart social inclusion",
        "--title",
        "Study visit to Milan",
        "--start",
        "2017-02-23",
        "--end",
        "2017-02-24",
        "--time-zone",
        "Europe/Rome",
    ]);
    let err = milan.fails(
        &[
            "agenda",
            "create",
            "--group",
            "Smart Social Inclusion",
            "--title",
            "X",
            "--start",
            "2017-02-23",
            "--time-zone",
            "Europe/Atlantis",
        ],
        2,
    );
    assert!(err.contains("Europe/Atlantis"), "{err}");
    let err = milan.fails(
        &[
            "agenda",
            "create",
            "--group",
            "Urban Mobility",
            "--title",
            "X",
            "--start",
            "2017-02-23",
        ],
        1,
    );
    assert!(
        err.contains("no working group matches `Urban Mobility`"),
        "{err}"
    );

    // Items by the agenda's title; slots are times, days are days of the meeting.
    let visit = "Study visit to Milan";
    milan.ok(&[
        "agenda",
        "item",
        "add",
        visit,
        "--title",
        "Makerspace visit",
        "--slot",
        "9:30-11:00",
    ]);
    let err = milan.fails(
        &[
            "agenda",
            "item",
            "add",
            visit,
            "--title",
            "Lunch",
            "--slot",
            "13:00-12:00",
        ],
        2,
    );
    assert!(err.contains("ends before it starts"), "{err}");
    let err = milan.fails(
        &[
            "agenda",
            "item",
            "add",
            visit,
            "--title",
            "Lunch",
            "--day",
            "2017-03-01",
        ],
        2,
    );
    assert!(err.contains("not a day of the meeting"), "{err}");
    milan.ok(&[
        "agenda",
        "item",
        "add",
        &agenda,
        "--title",
        "Wrap-up",
        "--slot",
        "09:30-10:30",
        "--day",
        "2017-02-24",
    ]);
    milan.ok(&[
        "agenda",
        "item",
        "add",
        &agenda,
        "--title",
        "FabriQ visit",
        "--slot",
        "11:00-12:30",
        "--at",
        "2",
    ]);
    milan.ok(&[
        "agenda",
        "item",
        "edit",
        &agenda,
        "fabriq visit",
        "--notes",
        "bus from the station",
    ]);
    milan.ok(&["agenda", "item", "move", &agenda, "Wrap-up", "--to", "1"]);
    milan.ok(&["agenda", "item", "move", &agenda, "1", "--to", "3"]);

    // The meeting itself changes after creation.
    milan.ok(&[
        "agenda",
        "edit",
        visit,
        "--venue",
        "FabriQ, Milan",
        "--host",
        "Milan",
    ]);
    let shown = milan.json(&["agenda", "show", &agenda]);
    assert_eq!(shown["venue"], "FabriQ, Milan");
    assert_eq!(shown["time_zone"], "Europe/Rome");
    assert_eq!(
        strings(&serde_json::Value::Array(
            shown["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["title"].clone())
                .collect()
        )),
        ["Makerspace visit", "FabriQ visit", "Wrap-up"]
    );
    assert_eq!(
        shown["items"][0]["slot"], "09:30-11:00",
        "slots are written in one form"
    );
    assert_eq!(shown["items"][1]["notes"], "bus from the station");
    assert_eq!(shown["items"][2]["day"], "2017-02-24");

    // Published, cancelled, reinstated; the calendar follows.
    milan.ok(&["agenda", "publish", &agenda]);
    milan.ok(&["agenda", "cancel", visit]);
    assert_eq!(
        milan.json(&["agenda", "show", &agenda])["status"],
        "cancelled"
    );
    let err = milan.fails(&["agenda", "decide", &agenda, "Something"], 2);
    assert!(err.contains("cancelled"), "{err}");
    let cancelled = milan.ok(&["export", "--format", "ics"]);
    assert!(cancelled.contains("STATUS:CANCELLED"), "{cancelled}");
    milan.ok(&["agenda", "publish", &agenda]);
    let ics = milan.ok(&["export", "--format", "ics"]);
    assert!(ics.contains("STATUS:CONFIRMED"), "{ics}");
    // 09:30 in Rome on 23 February is 08:30 UTC; the wrap-up ends at 10:30 on the 24th.
    assert!(ics.contains("DTSTART:20170223T083000Z"), "{ics}");
    assert!(ics.contains("DTEND:20170224T093000Z"), "{ics}");
    let sequence = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("SEQUENCE:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("SEQUENCE")
    };
    assert!(
        sequence(&ics) > sequence(&cancelled),
        "a later version has a higher SEQUENCE"
    );

    // Held, with its decisions and minutes.
    let minutes = milan.path().join("minutes.md");
    std::fs::write(
        &minutes,
        "Nine cities attended.\r\nMilan showed FabriQ.\r\n",
    )
    .expect("minutes");
    milan.ok(&[
        "agenda",
        "held",
        &agenda,
        "--decision",
        "Brno hosts the next meeting",
        "--minutes-file",
        minutes.to_str().expect("utf-8"),
    ]);
    milan.ok(&["agenda", "decide", visit, "A shared toolkit by June"]);
    let shown = milan.json(&["agenda", "show", &agenda]);
    assert_eq!(shown["status"], "held");
    assert_eq!(
        strings(&shown["decisions"]),
        ["Brno hosts the next meeting", "A shared toolkit by June"]
    );
    assert_eq!(
        shown["minutes"],
        "Nine cities attended.\nMilan showed FabriQ.\n"
    );
    let err = milan.fails(&["agenda", "cancel", &agenda], 2);
    assert!(err.contains("held"), "{err}");
    milan.ok(&[
        "agenda",
        "minutes",
        &agenda,
        "--minutes",
        "Ten cities attended.",
    ]);
    let table = milan.ok(&["agenda", "show", visit]);
    assert!(
        table.contains("Ten cities attended.") && table.contains("Europe/Rome"),
        "{table}"
    );

    // The agenda's history says what changed, from what to what.
    let history = milan.ok(&["history", visit]);
    for expected in [
        "created 'Study visit to Milan'",
        "venue: '' → 'FabriQ, Milan'",
        "status: 'published' → 'cancelled'",
        "added item 'Wrap-up'",
        "item 'Wrap-up': moved",
        "minutes: 'Nine cities attended. Milan showed FabriQ. ' → 'Ten cities attended.'",
    ] {
        assert!(history.contains(expected), "{expected}\n{history}");
    }

    // Two agendas with one title: the name is ambiguous, and the error lists both.
    let other = milan.add(&[
        "agenda",
        "create",
        "--group",
        "Smart Social Inclusion",
        "--title",
        "Study visit to Milan",
        "--start",
        "2018-02-23",
    ]);
    let err = milan.fails(&["agenda", "show", visit], 2);
    assert!(
        err.contains(&agenda[..8]) && err.contains(&other[..8]) && err.contains("give the id"),
        "{err}"
    );
}

#[test]
fn help_completions_and_colour() {
    let milan = City::init("Milan", "IT");
    milan
        .cmd(&["--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Exit codes").and(predicate::str::contains(
                "4  rejected: this city is not authorized",
            )),
        );
    for sub in [
        vec!["practice", "add", "--help"],
        vec!["project", "edit", "--help"],
        vec!["group", "member", "add", "--help"],
        vec!["agenda", "item", "move", "--help"],
        vec!["history", "--help"],
        vec!["init", "--help"],
    ] {
        milan
            .cmd(&sub)
            .assert()
            .success()
            .stdout(predicate::str::contains("intercity "));
    }
    for shell in ["bash", "zsh", "fish"] {
        milan
            .cmd(&["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains("intercity"));
    }
    milan.fails(&["completions", "tcsh"], 2);

    milan.add(&["practice", "add", "--title", "FabriQ"]);
    let plain = milan.ok(&["practice", "list"]);
    assert!(!plain.contains('\u{1b}'), "no colours when not a terminal");
    let coloured = milan.ok(&["practice", "list", "--color", "always"]);
    assert!(coloured.contains('\u{1b}'), "--color always");
    let out = milan
        .cmd(&["practice", "show", "ffff", "--color", "never"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run");
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{1b}'));
}

#[test]
fn invitations_are_created_listed_accepted_and_revoked() {
    let milan = City::init("Milan", "IT");
    let brno = City::init("Brno", "CZ");
    let riga = City::init("Riga", "LV");
    let group = milan.add(&["group", "create", "--name", "Smart Social Inclusion"]);
    // A token is bound to a city unless --anyone says otherwise.
    milan.fails(&["invite", "create"], 2);
    milan.fails(&["invite", "create", "--anyone", "--for", &brno.id()], 2);
    let out = milan.json(&[
        "invite",
        "create",
        "--anyone",
        "--group",
        "smart social inclusion",
        "--addr",
        "/ip4/127.0.0.1/tcp/4001",
    ]);
    let token = str_of(&out["token"]);
    assert!(token.starts_with("ic1"), "{token}");
    let list = milan.json(&["invite", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["group"], group.as_str());
    assert_eq!(list[0]["uses"], 1);
    // Membership is granted when the city joins, not before.
    assert_eq!(
        milan.json(&["history", &group]).as_array().map(Vec::len),
        Some(1)
    );

    // Accepting adds the inviter with its address and keeps the token to present.
    let accepted = brno.json(&["invite", "accept", &token]);
    assert_eq!(accepted["id"], milan.id().as_str());
    assert!(accepted.to_string().contains("/ip4/127.0.0.1/tcp/4001"));
    assert_eq!(accepted["invitation"], token.as_str());
    let human = riga.ok(&["invite", "accept", &token]);
    assert!(human.contains("added Milan"), "{human}");

    // Without the daemon and without --addr, the token could not be used: the CLI says so.
    let out = riga
        .cmd(&["invite", "create", "--anyone"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("names no address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A token bound to Brno: Riga cannot accept it.
    let bound =
        str_of(&milan.json(&["invite", "create", "--for", &brno.id(), "--uses", "1"])["token"]);
    riga.fails(&["invite", "accept", &bound], 4);
    riga.fails(&["invite", "accept", "ic1nonsense"], 4);

    // Nothing waits for approval yet; revoking by a code prefix withdraws one token.
    assert_eq!(milan.json(&["invite", "pending"]), serde_json::json!([]));
    milan.fails(&["invite", "approve", &brno.id()], 1);
    let code = str_of(&list[0]["code"]);
    milan.ok(&["invite", "revoke", &code[..8]]);
    let list = milan.json(&["invite", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_ne!(list[0]["code"], code.as_str());
    milan.fails(&["invite", "revoke", &code[..8]], 1);

    // An unknown group, or a group this city does not chair, is refused.
    milan.fails(&["invite", "create", "--anyone", "--group", "Nope"], 1);
    milan.fails(&["invite", "create", "--anyone", "--uses", "0"], 2);
}

/// `key show`, `key rotate` and `key guardians` through the binary: the city keeps its id, signs
/// with the new key, and names its guardians; a bad recovery token is refused with a clear
/// message.
#[test]
fn the_key_commands_rotate_and_name_guardians() {
    let milan = City::init("Milan", "IT");
    let brno = City::init("Brno", "CZ");
    let before = milan.json(&["key", "show"]);
    assert_eq!(before["city"], before["key"]);
    milan.add(&["practice", "add", "--title", "Housing first"]);
    let rotated = milan.json(&["key", "rotate"]);
    let after = milan.json(&["key", "show"]);
    assert_eq!(after["city"], before["city"], "the city keeps its id");
    assert_eq!(after["key"], rotated["new"]);
    assert_eq!(after["retired"][0], before["key"]);
    // Records made after the rotation are the city's (owner = its id).
    let id = milan.add(&["practice", "add", "--title", "Urban gardens"]);
    let shown = milan.json(&["practice", "show", &id]);
    assert_eq!(shown["owner"], before["city"]);
    // Guardians, by id; then shown.
    let brno_id = brno.id();
    milan.ok(&["key", "guardians", "set", "--threshold", "1", &brno_id]);
    let g = milan.json(&["key", "guardians", "show"]);
    assert_eq!(g["threshold"], 1);
    assert_eq!(g["guardians"][0].as_str(), Some(brno_id.as_str()));
    let err = milan.fails(
        &["key", "guardians", "set", "--threshold", "1", &brno_id],
        4,
    );
    assert!(err.contains("named its guardians already"), "{err}");
    let err = milan.fails(
        &["key", "guardians", "set", "--threshold", "1", "Nowhere"],
        2,
    );
    assert!(err.contains("neither a city id nor a name"), "{err}");
    let err = milan.fails(&["key", "recovery", "show", "icr1zz"], 4);
    assert!(err.contains("not a valid recovery token"), "{err}");
}

/// `intercity federation`: a city starts a federation, admits a city by its id, makes it a
/// steward by name and removes it; `peers list` says why each city is trusted.
#[test]
fn a_steward_runs_its_federation_from_the_cli() {
    let milan = City::init("Milan", "IT");
    let brno = City::init("Brno", "CZ");
    let none = milan.fails(&["federation", "members"], 2);
    assert!(none.contains("in no federation"), "{none}");
    let fid = milan.add(&["federation", "create", "--name", "EUROCITIES"]);
    let again = milan.fails(&["federation", "create", "--name", "Other"], 2);
    assert!(again.contains("one federation"), "{again}");
    let show = milan.ok(&["federation", "show"]);
    assert!(
        show.contains("EUROCITIES") && show.contains("steward"),
        "{show}"
    );
    assert_eq!(str_of(&milan.json(&["federation", "show"])["id"]), fid);

    let brno_id = brno.id();
    milan.ok(&["federation", "admit", &brno_id, "--name", "Brno"]);
    let members = milan.json(&["federation", "members"]);
    let roles: Vec<(String, String)> = members
        .as_array()
        .expect("array")
        .iter()
        .map(|m| (str_of(&m["name"]), str_of(&m["role"])))
        .collect();
    assert_eq!(
        roles
            .iter()
            .map(|(n, r)| format!("{n}:{r}"))
            .collect::<Vec<_>>()
            .len(),
        2
    );
    assert!(
        roles.contains(&("Brno".into(), "member".into())),
        "{roles:?}"
    );
    assert!(
        roles.contains(&("Milan".into(), "steward".into())),
        "{roles:?}"
    );
    // Names where ids are: the role by name, a working group's member by the name this node
    // knows (from the federation), with that name.
    milan.ok(&["federation", "role", "brno", "steward"]);
    let gid = milan.add(&["group", "create", "--name", "Smart Social Inclusion"]);
    milan.ok(&["group", "member", "add", &gid, "Brno"]);
    let group = milan.json(&["group", "show", &gid]);
    assert_eq!(str_of(&group["members"][&brno_id]["name"]), "Brno");
    let err = milan.fails(&["group", "member", "add", &gid, "Atlantis"], 2);
    assert!(err.contains("neither a city id nor a name"), "{err}");
    milan.ok(&["group", "member", "remove", &gid, "brno"]);
    let peers = milan.json(&["peers", "list"]);
    let brno_row = peers
        .as_array()
        .expect("array")
        .iter()
        .find(|p| str_of(&p["id"]) == brno_id)
        .expect("Brno listed")
        .clone();
    assert_eq!(str_of(&brno_row["standing"]), "federation");
    assert_eq!(str_of(&brno_row["role"]), "chair");
    let table = milan.ok(&["peers", "list"]);
    assert!(table.contains("federation steward"), "{table}");
    // An unknown role is a usage error; an unknown city is not found.
    milan.fails(&["federation", "role", "Brno", "mayor"], 2);
    milan.fails(&["federation", "remove", "Riga"], 1);
    milan.ok(&["federation", "remove", "Brno"]);
    let members = milan.json(&["federation", "members"]);
    assert_eq!(members.as_array().expect("array").len(), 1);
    // Leaving: no federation any more, and another can be started.
    milan.ok(&["federation", "leave"]);
    milan.fails(&["federation", "show"], 2);
    milan.fails(&["federation", "leave"], 1);
    milan.add(&["federation", "create", "--name", "Other"]);
    // A city in no federation cannot admit anyone.
    let milan_id = milan.id();
    let refused = brno.fails(&["federation", "admit", &milan_id, "--name", "X"], 1);
    assert!(refused.contains("in no federation"), "{refused}");
}

/// `intercity backup` and `intercity restore`: the restored city holds what the backup held, and
/// signs nothing until its node has caught up with its own feeds (exit code 3).
#[test]
fn a_backup_restores_into_a_city_that_waits_before_it_signs() {
    let milan = City::init("Milan", "IT");
    milan.add(&["practice", "add", "--title", "FabriQ"]);
    let backups = tempfile::tempdir().expect("tempdir");
    let dir = backups.path().join("milan-backup");
    let dir = dir.to_str().expect("utf-8");
    let info = milan.json(&["backup", dir]);
    assert_eq!(str_of(&info["id"]), milan.id());
    let err = milan.fails(&["backup", dir], 2);
    assert!(err.contains("exists"), "{err}");
    let restored = City::empty();
    restored.ok(&["restore", dir]);
    let list = restored.ok(&["practice", "list"]);
    assert!(list.contains("FabriQ"), "{list}");
    let err = restored.fails(&["practice", "add", "--title", "Too early"], 3);
    assert!(err.contains("restored from a backup"), "{err}");
    let err = milan.fails(&["restore", dir], 2);
    assert!(err.contains("already"), "{err}");
    let err = City::empty().fails(&["restore", "/nonexistent/backup"], 2);
    assert!(err.contains("not an Intercity backup"), "{err}");
}

/// `intercity config show`: each setting's value and where it comes from (default, the config
/// file, an INTERCITY_* variable); boolean flags of `node run` can be set both ways.
#[test]
fn config_show_says_where_each_value_comes_from() {
    let milan = City::init("Milan", "IT");
    std::fs::write(
        milan.path().join("config.toml"),
        "mdns = false\nanti_entropy_secs = 10\n",
    )
    .expect("config");
    let out = milan
        .cmd(&["config", "show", "--json"])
        .env("INTERCITY_ANTI_ENTROPY_SECS", "5")
        .env_remove("INTERCITY_MDNS")
        .env_remove("INTERCITY_NO_MDNS")
        .env_remove("INTERCITY_CONFIG")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let get = |key: &str| {
        settings
            .as_array()
            .expect("array")
            .iter()
            .find(|s| s["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key}"))
    };
    assert_eq!(get("anti_entropy_secs")["value"], "5");
    assert!(str_of(&get("anti_entropy_secs")["source"]).contains("environment"));
    assert_eq!(get("mdns")["value"], "false");
    assert!(str_of(&get("mdns")["source"]).ends_with("config.toml"));
    assert_eq!(get("listen")["source"], "default");
    let table = milan.ok(&["config", "show"]);
    assert!(
        table.contains("anti_entropy_secs") && table.contains("default"),
        "{table}"
    );
    // Both ways, but not both at once.
    let err = milan.fails(&["node", "run", "--mdns", "--no-mdns"], 2);
    assert!(err.contains("cannot be used with"), "{err}");
    let bad = milan
        .cmd(&["config", "show"])
        .env("INTERCITY_ANTI_ENTROPY_SECS", "soon")
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}

/// `intercity init` with the default data directory, on a machine whose node runs as a service
/// (a city in the system data directory): refused, with what to do; with --data-dir, made.
#[test]
fn init_does_not_make_a_second_city_beside_the_service_s() {
    let service = City::init("Milan", "IT");
    let home = tempfile::tempdir().expect("home");
    let init = |system: &std::path::Path, explicit: Option<&std::path::Path>| {
        let mut cmd = Command::new(bin());
        if let Some(dir) = explicit {
            cmd.arg("--data-dir").arg(dir);
        }
        cmd.args(["init", "--city", "Milan"])
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("INTERCITY_SYSTEM_DATA_DIR", system)
            .env_remove("INTERCITY_DATA_DIR")
            .env_remove("RUST_LOG")
            .output()
            .expect("run")
    };
    let out = init(service.path(), None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("second city") && err.contains("sudo -u intercity"),
        "{err}"
    );
    assert!(
        !home
            .path()
            .join("data")
            .join("intercity")
            .join("city.key")
            .exists()
    );
    // Given a directory, the operator means it.
    let own = home.path().join("separate");
    assert!(init(service.path(), Some(&own)).status.success());
    // No city in the system directory: nothing to protect.
    let empty = tempfile::tempdir().expect("empty");
    assert!(init(empty.path(), None).status.success());
}

/// With `--log-format json`, a failing command's error is a JSON log line too, and its exit
/// code is kept.
#[test]
fn with_json_logs_an_error_is_a_json_line() {
    let nobody = City::empty();
    let out = nobody
        .cmd(&["--log-format", "json", "whoami"])
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let error = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        error["fields"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(
        error["fields"]["exit_code"].as_u64(),
        out.status.code().map(|c| c as u64)
    );
}
