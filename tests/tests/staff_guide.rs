//! docs/staff-guide.md, run as written (issue #15): every command of its `sh` blocks, in order,
//! through a shell and the real binary, as a staff member of Milan would type it, with Milan's
//! node running from the moment the city exists. Brno is a second city on the same machine (its
//! lines say `# in Brno`). What the guide leaves to the reader is filled in: the ids it abbreviates
//! (`3f2a`, `9c1e`, `7be0`, `12D3KooW...`) become the real ones, the tokens it elides (`ic1...`,
//! `icr1…`) the ones printed by the command before, `/var/lib/intercity` Milan's data folder.
//! The only steps that are not the guide's are IT's: starting the nodes, and Brno naming Milan
//! its guardian and losing its key before the guide's recovery lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use intercity_tests::{NodeProcess, free_port, intercity_bin};
use serde_json::Value;

/// One command of the guide: its text (continuation lines joined), the section it is in, and
/// whether its comment says it runs in Brno.
struct Step {
    section: u32,
    text: String,
    in_brno: bool,
}

fn steps(guide: &str) -> Vec<Step> {
    let (mut out, mut section, mut in_block, mut pending) = (Vec::new(), 0, false, String::new());
    for line in guide.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading
                .split('.')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(section);
        }
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block || line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start.trim_start());
            continue;
        }
        let text = format!("{pending}{}", line.trim_start());
        pending.clear();
        out.push(Step {
            section,
            in_brno: text.contains("# in Brno"),
            text,
        });
    }
    out
}

fn run_daemon(dir: &Path) -> NodeProcess {
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let args = ["--anti-entropy-secs", "1", "--listen", &listen];
    intercity_tests::start_node(dir, &args, Duration::from_secs(20))
}

struct Desk {
    _tmp: tempfile::TempDir,
    milan: PathBuf,
    brno: PathBuf,
    home: PathBuf,
    work: PathBuf,
    path: String,
    /// What the guide abbreviates, and what stands for it now.
    known: Vec<(&'static str, String)>,
}

impl Desk {
    fn new() -> Desk {
        let tmp = tempfile::tempdir().expect("tmp");
        let [milan, brno, home, work, bin] =
            ["milan", "brno", "home", "work", "bin"].map(|d| tmp.path().join(d));
        for dir in [&home, &work, &bin] {
            std::fs::create_dir_all(dir).expect("dir");
        }
        std::os::unix::fs::symlink(intercity_bin(), bin.join("intercity")).expect("link");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Desk {
            _tmp: tmp,
            milan,
            brno,
            home,
            work,
            path,
            known: Vec::new(),
        }
    }

    /// Runs one line in bash (pipefail, so a failing `intercity` before a pipe counts).
    fn sh(&self, dir: &Path, line: &str) -> Output {
        Command::new("bash")
            .args(["-c", &format!("set -o pipefail; {line}")])
            .current_dir(&self.work)
            .env("HOME", &self.home)
            .env("PATH", &self.path)
            .env("INTERCITY_DATA_DIR", dir)
            .env_remove("INTERCITY_NODE")
            .env_remove("INTERCITY_STAFF_KEY")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("bash")
    }

    fn ok(&self, dir: &Path, line: &str) -> String {
        let out = self.sh(dir, line);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "`{line}` failed ({}):\n{stdout}{stderr}",
            out.status
        );
        stdout.into_owned()
    }

    /// The id of the record of Milan's titled `title`.
    fn id_of(&self, title: &str) -> String {
        let list: Value =
            serde_json::from_str(&self.ok(&self.milan, "intercity list --json --limit 0"))
                .expect("json");
        let rows = list.as_array().expect("array");
        let row = rows.iter().find(|r| r["title"] == title);
        let row = row.unwrap_or_else(|| panic!("no {title:?} in {list}"));
        row["id"].as_str().expect("id").to_string()
    }

    fn city_id(&self, dir: &Path) -> String {
        let who: Value =
            serde_json::from_str(&self.ok(dir, "intercity whoami --json")).expect("json");
        who["id"].as_str().expect("id").to_string()
    }

    /// The guide's line with what it abbreviates filled in.
    fn fill(&mut self, text: &str) -> String {
        let lookups: [(&'static str, &str); 3] = [
            ("3f2a", "FabriQ social innovation incubator"),
            ("9c1e", "MiGenerationLab"),
            ("7be0", "Smart Social Inclusion"),
        ];
        for (short, title) in lookups {
            if text.contains(short) && !self.known.iter().any(|(k, _)| *k == short) {
                let id = self.id_of(title);
                self.known.push((short, id));
            }
        }
        let mut line = text.replace("/var/lib/intercity", &self.milan.display().to_string());
        for (short, full) in &self.known {
            line = line.replace(short, full);
        }
        if line.contains("| man -l -")
            && self.sh(&self.work, "command -v man").status.code() != Some(0)
        {
            // No man on this machine: the manual is read by `cat` instead.
            line = line.replace("| man -l -", "| cat >/dev/null");
        }
        line
    }
}

/// Lines whose output must show something, and what.
const SHOWS: [(&str, &str); 11] = [
    ("intercity practice show", "120 jobs"),
    ("intercity search youth employment", "MiGenerationLab"),
    (
        "intercity search cooperativa",
        "Cooperativa sociale di comunità",
    ),
    (
        "intercity list --tag youth,employment --all",
        "MiGenerationLab",
    ),
    (
        "intercity project list --sector university",
        "MiGenerationLab",
    ),
    ("intercity group show", "Brno"),
    ("intercity agenda show", "Wrap-up"),
    (
        "intercity history \"Study visit to Milan\"",
        "FabriQ, Milan",
    ),
    ("intercity invite create", "ic1"),
    ("intercity key recovery vouch icr1… --yes", "icr1"),
    ("intercity key recovery show", "Brno"),
];

#[test]
fn every_command_of_the_staff_guide_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/staff-guide.md")).expect("guide");
    let steps = steps(&guide);
    assert!(steps.len() > 40, "only {} commands found", steps.len());

    let mut desk = Desk::new();
    std::fs::write(desk.work.join("minutes.md"), "Ten cities attended.\n").expect("minutes");
    let brno = desk.brno.clone();
    desk.ok(&brno, "intercity init --city Brno --country CZ");
    let brno_id = desk.city_id(&brno);
    desk.known.push(("12D3KooW...", brno_id.clone()));
    let mut daemons: Vec<Option<NodeProcess>> = vec![None, Some(run_daemon(&brno))];

    let (mut ran, mut last) = (0, String::new());
    for step in &steps {
        let dir = if step.in_brno {
            desk.brno.clone()
        } else {
            desk.milan.clone()
        };
        if step.text.contains("icr1…") && !desk.known.iter().any(|(k, _)| *k == "icr1…") {
            // IT's part, before a guardian's first look: Brno names Milan its guardian (Milan
            // holds it once the nodes synced), then loses its key; its node is down.
            let entries = |desk: &Desk| {
                let status: Value =
                    serde_json::from_str(&desk.ok(&desk.milan, "intercity --json status"))
                        .expect("json");
                // Accepted, rejected, pending and quarantined.
                let counts = status["entries"].as_array().expect("entries");
                counts.iter().filter_map(Value::as_u64).sum::<u64>()
            };
            let before = entries(&desk);
            desk.ok(&brno, "intercity key guardians set --threshold 1 Milan");
            // Brno's node stays up until Milan holds the designation (its one new entry).
            let deadline = Instant::now() + Duration::from_secs(30);
            while entries(&desk) == before {
                assert!(
                    Instant::now() < deadline,
                    "Milan never got Brno's guardians"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            daemons[1] = None;
            let proposed = desk.ok(&brno, "intercity --json key recovery new-key");
            let token: Value = serde_json::from_str(&proposed).expect("json");
            let token = token["token"].as_str().expect("token").to_string();
            desk.known.push(("icr1…", token.clone()));
            let deadline = Instant::now() + Duration::from_secs(30);
            while !desk
                .sh(
                    &desk.milan,
                    // With --yes: only the vouch checks the designation it rests on (it
                    // writes nothing; the guide's own step vouches again).
                    &format!("intercity key recovery vouch {token} --yes"),
                )
                .status
                .success()
            {
                assert!(
                    Instant::now() < deadline,
                    "Milan never held Brno's guardians"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let line = desk.fill(&step.text);
        let out = desk.sh(&dir, &line);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        let first_look = daemons[0].is_none() && !desk.milan.join("city.key").exists();
        if first_look && step.section == 1 && step.text.ends_with("whoami") {
            // Section 1 starts by checking for a city: there is none yet, and the error says
            // what to do.
            assert_eq!(out.status.code(), Some(3), "`{line}`: {stdout}{stderr}");
            assert!(stderr.contains("intercity init"), "{stderr}");
            continue;
        }
        assert!(
            out.status.success(),
            "staff-guide.md §{}: `{}` failed ({}):\n{stdout}{stderr}",
            step.section,
            step.text,
            out.status
        );
        for (start, shows) in SHOWS {
            if step.text.starts_with(start) {
                assert!(
                    stdout.contains(shows),
                    "`{line}` does not show {shows:?}:\n{stdout}"
                );
            }
        }
        if step.text.starts_with("intercity invite create") {
            desk.known.push(("ic1...", stdout.trim().to_string()));
        }
        if step.text.starts_with("intercity init") {
            daemons[0] = Some(run_daemon(&desk.milan));
        }
        last = step.text.clone();
        ran += 1;
    }
    assert!(ran + 2 >= steps.len(), "ran {ran} of {}", steps.len());
    assert!(daemons[0].is_some(), "no city was created (last: {last})");
    for (short, _) in ["3f2a", "9c1e", "7be0", "12D3KooW...", "ic1...", "icr1…"]
        .iter()
        .map(|s| (*s, ()))
    {
        assert!(
            desk.known.iter().any(|(k, _)| *k == short),
            "the guide no longer uses {short}: update this test"
        );
    }
}
