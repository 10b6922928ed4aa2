//! What the user names, resolved: a record, a working group or an agenda given by its id, a
//! unique prefix of the id, or its name (title, group name, agenda title; exact, any case).
//!
//! An id or id prefix is tried first; a name is tried when no id matches. When a name fits
//! several things, the error lists each as "name (id)".

use intercity_node::{CityError, Client};
use intercity_protocol::entry::DocId;
use intercity_protocol::record::{Group, Kind, Record};

use crate::error::CliError;

/// Characters of an id shown beside a name in an ambiguity error.
const SHOWN_ID: usize = 8;

/// One candidate: its id, its name and what it is.
pub struct Named<T> {
    /// The id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The thing.
    pub value: T,
}

/// Whether `name` is what the user typed: the same text, trimmed, in any case.
fn same_name(name: &str, text: &str) -> bool {
    let (a, b) = (name.trim(), text.trim());
    !b.is_empty() && a.to_lowercase() == b.to_lowercase()
}

/// The candidates that have the name `text`: one is the answer, several an error.
fn by_name<T>(
    what: &'static str,
    text: &str,
    candidates: Vec<Named<T>>,
) -> Result<Option<T>, CliError> {
    let mut found: Vec<Named<T>> = candidates
        .into_iter()
        .filter(|c| same_name(&c.name, text))
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop().map(|c| c.value)),
        _ => Err(CliError::AmbiguousName {
            what,
            name: text.trim().to_string(),
            matches: found
                .iter()
                .map(|c| {
                    format!(
                        "{} ({})",
                        c.name,
                        c.id.chars().take(SHOWN_ID).collect::<String>()
                    )
                })
                .collect(),
        }),
    }
}

/// Picks one candidate by what the user typed: the exact id; else the candidates whose id
/// starts with it (any case) together with those that have it as their exact name. One is the
/// answer; several are an error listing them (a name never silently loses to an id prefix that
/// somebody else chose). `what` and `hint` word the error when nothing fits.
pub fn pick<T>(
    what: &'static str,
    text: &str,
    hint: &str,
    mut candidates: Vec<Named<T>>,
) -> Result<T, CliError> {
    let needle = text.trim().to_ascii_lowercase();
    let prefixed = |c: &Named<T>| !needle.is_empty() && c.id.starts_with(&needle);
    let found: Vec<usize> = (0..candidates.len())
        .filter(|&i| prefixed(&candidates[i]) || same_name(&candidates[i].name, text))
        .collect();
    // The whole id wins over longer ids it starts, not over another thing's name.
    let exact = found.iter().copied().find(|&i| candidates[i].id == needle);
    if let Some(e) = exact
        && found
            .iter()
            .all(|&i| i == e || !same_name(&candidates[i].name, text))
    {
        return Ok(candidates.swap_remove(e).value);
    }
    match found[..] {
        [i] => Ok(candidates.swap_remove(i).value),
        [] => Err(CliError::NotFound {
            what,
            prefix: text.trim().to_string(),
            hint: hint.to_string(),
        }),
        _ if found.iter().all(|&i| prefixed(&candidates[i])) => Err(CliError::Ambiguous {
            what,
            prefix: needle,
            matches: found.iter().map(|&i| candidates[i].id.clone()).collect(),
        }),
        _ => Err(CliError::AmbiguousName {
            what,
            name: text.trim().to_string(),
            matches: found.iter().map(|&i| shown(&candidates[i])).collect(),
        }),
    }
}

/// "name (short id)".
fn shown<T>(c: &Named<T>) -> String {
    format!(
        "{} ({})",
        c.name,
        c.id.chars().take(SHOWN_ID).collect::<String>()
    )
}

/// The word for a kind in messages, and where its ids are listed.
fn words(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Practice => ("practice", "`intercity practice list` shows ids and titles"),
        Kind::Project => ("project", "`intercity project list` shows ids and names"),
        Kind::Group => (
            "working group",
            "`intercity group list` shows ids and names",
        ),
    }
}

/// A record of `kind` by id, id prefix or exact title (a withdrawn record by id only).
pub fn record(city: &Client, text: &str, kind: Kind) -> anyhow::Result<DocId> {
    let by_id = match city.resolve_kind(text, kind) {
        Ok(id) => return Ok(id),
        Err(e) => e,
    };
    let (what, hint) = words(kind);
    let candidates = city
        .list(Some(kind))?
        .into_iter()
        .filter(|r| !r.deleted)
        .map(|r| Named {
            id: r.id.clone(),
            name: r.title,
            value: r.id,
        })
        .collect();
    if let Some(id) = by_name(what, text, candidates)? {
        return Ok(id.parse()?);
    }
    // Nothing by that name: say what the id lookup said, in words for a name.
    Err(match by_id {
        CityError::NotFound(_) => CliError::NotFound {
            what,
            prefix: text.trim().to_string(),
            hint: hint.to_string(),
        }
        .into(),
        other => other.into(),
    })
}

/// A working group by id, id prefix or exact name, with its record.
pub fn group(city: &Client, text: &str) -> anyhow::Result<(DocId, Group)> {
    let id = record(city, text, Kind::Group)?;
    match city.record(id)? {
        Record::Group(g) => Ok((id, g)),
        other => {
            Err(CliError::Invalid(format!("expected a group, found a {}", other.kind())).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(id: &str, name: &str) -> Named<String> {
        Named {
            id: id.into(),
            name: name.into(),
            value: id.into(),
        }
    }

    fn cands() -> Vec<Named<String>> {
        vec![
            named("7be0a1", "Smart Social Inclusion"),
            named("7be0ff", "Urban Mobility"),
            named("c0ffee", "Study visit"),
            named("d00d01", "Study visit"),
            named("e1e1e1", "Kraków visit"),
        ]
    }

    #[test]
    fn ids_prefixes_and_names() {
        let p = |t: &str| pick("group", t, "hint", cands());
        assert_eq!(p("7be0a1").ok().as_deref(), Some("7be0a1"));
        assert_eq!(p("7BE0F").ok().as_deref(), Some("7be0ff"));
        assert_eq!(
            p(" smart social inclusion ").ok().as_deref(),
            Some("7be0a1")
        );
        assert_eq!(p("KRAKÓW VISIT").ok().as_deref(), Some("e1e1e1"));
        assert!(matches!(p("7be0"), Err(CliError::Ambiguous { .. })));
        // A name that is also somebody's id prefix is ambiguous, not silently the prefix.
        let mut tricky = cands();
        tricky.push(named("kickoff", "Another meeting"));
        tricky.push(named("aa01", "Kickoff"));
        assert!(matches!(
            pick("agenda", "Kickoff", "hint", tricky),
            Err(CliError::AmbiguousName { .. })
        ));
        match p("study visit") {
            Err(e @ CliError::AmbiguousName { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("Study visit (c0ffee)") && text.contains("(d00d01)"),
                    "{text}"
                );
            }
            other => panic!("{:?}", other.map_err(|e| e.to_string())),
        }
        assert!(matches!(p("nothing"), Err(CliError::NotFound { .. })));
        assert!(matches!(p(""), Err(CliError::NotFound { .. })));
    }
}
