//! The node crate's layout holds (issue #12): its top-level modules depend on each other one
//! way only (no import circle), and no source file grows past `MAX_LINES` lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file allowed in `node/src` (a longer one is split along its jobs).
const MAX_LINES: usize = 800;

fn node_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("node/src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The code of a file without its comments (line comments only: the crate has no others).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules each top-level module names through `crate::`.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = node_src();
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .expect("node/src")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let stem = path.file_stem()?.to_str()?.to_string();
            (path.extension().is_some_and(|x| x == "rs") && stem != "lib").then_some(stem)
        })
        .collect();
    let mut deps = BTreeMap::new();
    for module in &modules {
        let mut files = vec![src.join(format!("{module}.rs"))];
        if src.join(module).is_dir() {
            files.extend(sources(&src.join(module)));
        }
        let mut named = BTreeSet::new();
        for file in files {
            let text = code(&file);
            // `crate::foo` and the names in `crate::{foo, bar::X}`.
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .collect(),
                    None => vec![rest],
                };
                for name in names {
                    let name: String = name
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if modules.contains(&name) && name != *module {
                        named.insert(name);
                    }
                }
            }
        }
        deps.insert(module.clone(), named);
    }
    deps
}

#[test]
fn node_modules_depend_one_way() {
    let deps = dependencies();
    assert!(deps.len() > 5, "modules found: {deps:?}");
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for d in deps.get(&m).into_iter().flatten() {
                if d == to {
                    return true;
                }
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        false
    };
    let circles: Vec<String> = deps
        .iter()
        .flat_map(|(m, ds)| ds.iter().map(move |d| (m.clone(), d.clone())))
        .filter(|(m, d)| reaches(d, m))
        .map(|(m, d)| format!("{m} -> {d} -> ... -> {m}"))
        .collect();
    assert!(circles.is_empty(), "import circles in node/: {circles:#?}");
}

#[test]
fn no_node_source_file_is_too_long() {
    let long: Vec<String> = sources(&node_src())
        .into_iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(&p).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}
