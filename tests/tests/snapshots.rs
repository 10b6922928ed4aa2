//! Snapshot tests of `--help` and of human output, and the check that `docs/cli.md` is what
//! `intercity man --markdown` prints. After an intended change, regenerate every snapshot (and
//! docs/cli.md) with `UPDATE_SNAPSHOTS=1 cargo test --workspace --test snapshots`, and review
//! the diff.

use std::path::{Path, PathBuf};

use intercity_tests::cli::City;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compares `actual` with the file at `path` (relative to the workspace), or rewrites it.
fn check(path: &str, actual: &str) {
    let file = root().join(path);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&file, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&file).unwrap_or_else(|_| {
        panic!("{path} is missing; run UPDATE_SNAPSHOTS=1 cargo test --workspace --test snapshots")
    });
    assert!(
        actual == expected,
        "{path} differs from the output; if the change is intended, run \
         UPDATE_SNAPSHOTS=1 cargo test --workspace --test snapshots\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

/// Runs a command at a fixed width, without colours.
fn output(city: &City, args: &[&str]) -> String {
    let out = city
        .cmd(args)
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn help_texts() {
    let city = City::empty();
    for (args, file) in [
        (&["--help"][..], "help.txt"),
        (&["search", "--help"], "help-search.txt"),
        (&["list", "--help"], "help-list.txt"),
        (&["export", "--help"], "help-export.txt"),
        (&["import", "--help"], "help-import.txt"),
        (&["agenda", "next", "--help"], "help-agenda-next.txt"),
    ] {
        check(&format!("tests/snapshots/{file}"), &output(&city, args));
    }
}

#[test]
fn the_command_reference_is_generated_from_the_help() {
    let city = City::empty();
    check("docs/cli.md", &output(&city, &["man", "--markdown"]));
    let man = output(&city, &["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH intercity"),
        "{}",
        &man[..200.min(man.len())]
    );
}

#[test]
fn tables_and_search_results() {
    let city = City::init("Milan", "IT");
    let a = city.add(&[
        "practice",
        "add",
        "--title",
        "FabriQ social innovation incubator",
        "--summary",
        "Milan's first incubator: social start-ups that create employment.",
        "--theme",
        "incubation",
        "--theme",
        "social innovation",
        "--start",
        "2014-03-01",
    ]);
    let b = city.add(&[
        "project",
        "add",
        "--name",
        "Youth employment desk",
        "--status",
        "running",
        "--lead-city",
        "Milan",
        "--start",
        "2016-01-01",
        "--end",
        "2018-12-31",
    ]);
    let today = &intercity_node::time::today(intercity_node::city::now_ms());
    let normalize = |s: String| {
        s.replace(&a[..8], "xxxxxxxx")
            .replace(&b[..8], "yyyyyyyy")
            .replace(today.as_str(), "YYYY-MM-DD")
    };
    check(
        "tests/snapshots/list.txt",
        &normalize(output(&city, &["list", "--sort", "title"])),
    );
    check(
        "tests/snapshots/practice-list.txt",
        &normalize(output(&city, &["practice", "list"])),
    );
    check(
        "tests/snapshots/search.txt",
        &normalize(output(&city, &["search", "employment"])),
    );
}
