//! `intercity history`: every signed change to a record, re-verified.

use std::collections::BTreeMap;

use comfy_table::{Cell, Color};
use intercity_node::{Client, HistoryItem};
use intercity_protocol::doc::FieldChange;
use intercity_protocol::entry::DocId;
use intercity_protocol::record::{Kind, Record};
use serde_json::Value as Json;

use super::Ctx;
use crate::error::CliError;
use crate::ui::iso8601;

/// Help epilogue.
pub const HELP: &str = "\
RECORD is a practice, project or group (its id, a unique prefix or its title), or an agenda
(its id, prefix or title): an agenda shows only the changes of that meeting. Each change shows
when it was signed (UTC), by which city, its position (seq) in that city's feed, whether it was
accepted or rejected (and why), what it changed, from what to what, and whether its signature
and payload hash verify now.

Examples:
  intercity history 3f2a
  intercity history \"Study visit to Milan\"
  intercity history 3f2a --json | jq '.[] | select(.status == \"rejected\")'";

/// `history` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The record (id, unique prefix or title) or an agenda (id, prefix or title)
    record: String,
}

/// Change lines shown per entry in the table (all of them with --json).
const SHOWN_CHANGES: usize = 8;
/// Characters of a value shown in the table.
const SHOWN_CHARS: usize = 48;

/// Runs `history`.
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let city = ctx.open_read()?;
    let (id, agenda) = resolve(&city, &args.record)?;
    let mut items = city.history(id)?;
    let names = names(&city, id)?;
    let record = city.record(id)?;
    if let Some(agenda_id) = &agenda {
        let total = items.len();
        items = only_agenda(items, agenda_id);
        let hidden = total - items.len();
        if hidden > 0 && !ctx.ui.is_json() {
            ctx.ui.note(format!(
                "{hidden} changes of the group '{}' are not shown (other agendas, members, rejected or pending entries, and accepted ones older than the newest {}, whose values are not read); `intercity history {}` shows them all",
                record.title(),
                intercity_node::city::MAX_HISTORY_VALUES,
                &id.to_string()[..8]
            ));
        }
    }
    if ctx.ui.is_json() {
        let out: Vec<serde_json::Value> = items
            .iter()
            .map(|h| {
                let mut v = serde_json::to_value(h).unwrap_or_default();
                if let Some(map) = v.as_object_mut() {
                    map.insert("when".into(), iso8601(h.timestamp).into());
                    let author = h.author.to_string();
                    if let Some(name) = names.get(&author) {
                        map.insert("author_name".into(), name.clone().into());
                    }
                }
                v
            })
            .collect();
        ctx.ui.json(&out)?;
        return Ok(());
    }
    let mut titles = item_titles(&record, agenda.as_deref());
    // Items removed since are named by the titles they had.
    for c in items.iter().flat_map(|h| &h.changes) {
        for v in [&c.before, &c.after].into_iter().flatten() {
            if let (Some(id), Some(title)) = (
                v.get("id").and_then(Json::as_str),
                v.get("title").and_then(Json::as_str),
            ) {
                titles
                    .entry(id.to_string())
                    .or_insert_with(|| title.to_string());
            }
        }
    }
    let mut table = ctx.ui.table(&[
        "WHEN (UTC)",
        "CITY",
        "SEQ",
        "STATUS",
        "MESSAGE",
        "CHANGED",
        "VERIFIED",
        "REASON",
    ]);
    for h in &items {
        let author = h.author.to_string();
        let mut who = match names.get(&author) {
            Some(name) => format!("{name} {}", h.author.short()),
            None => h.author.short(),
        };
        if let Some(person) = &h.by {
            who = match names.get(&author) {
                Some(name) => format!("{name} ({person}) {}", h.author.short()),
                None => format!("{} ({person})", h.author.short()),
            };
        }
        if let Some(key) = h.key {
            who.push_str(&format!("\nkey {}", key.short()));
        }
        let status = match h.status.as_str() {
            "accepted" => ctx.ui.cell(&h.status, Color::Green),
            "rejected" => ctx.ui.cell(&h.status, Color::Red),
            _ => ctx.ui.cell(&h.status, Color::Yellow),
        };
        table.add_row(vec![
            Cell::new(iso8601(h.timestamp)),
            Cell::new(who),
            Cell::new(h.seq),
            status,
            Cell::new(&h.message),
            Cell::new(describe(&h.changes, &titles)),
            ctx.ui.check(h.verified),
            Cell::new(h.reason.clone().unwrap_or_default()),
        ]);
    }
    ctx.ui.print_table(&table)?;
    Ok(())
}

/// The changes of one agenda: entries that changed it, their paths made relative to it.
fn only_agenda(items: Vec<HistoryItem>, agenda_id: &str) -> Vec<HistoryItem> {
    let prefix = format!("agendas.{agenda_id}");
    items
        .into_iter()
        .filter_map(|mut h| {
            h.changes.retain_mut(|c| {
                let Some(rest) = c.path.strip_prefix(&prefix) else {
                    return false;
                };
                if !rest.is_empty() && !rest.starts_with('.') {
                    return false;
                }
                c.path = rest.trim_start_matches('.').to_string();
                true
            });
            (!h.changes.is_empty()).then_some(h)
        })
        .collect()
}

/// Titles of agenda items by id, for naming them in change lines.
fn item_titles(record: &Record, agenda: Option<&str>) -> BTreeMap<String, String> {
    let Record::Group(g) = record else {
        return BTreeMap::new();
    };
    let mut out: BTreeMap<String, String> = g
        .agendas
        .iter()
        .filter(|(id, _)| agenda.is_none_or(|a| a == id.as_str()))
        .flat_map(|(_, a)| a.items.iter().map(|i| (i.id.clone(), i.title.clone())))
        .collect();
    out.extend(
        g.agendas
            .iter()
            .map(|(id, a)| (format!("agendas.{id}"), a.title.clone())),
    );
    out
}

/// A change's fields in words: `venue: 'Palazzo Marino' → 'FabriQ'`, one per line.
fn describe(changes: &[FieldChange], titles: &BTreeMap<String, String>) -> String {
    if changes
        .iter()
        .any(|c| c.path == "kind" && c.before.is_none())
    {
        return "created".into();
    }
    let mut lines: Vec<String> = Vec::new();
    for c in changes {
        let label = label(&c.path, titles);
        let element = c.path.ends_with(']');
        let line = match (&c.before, &c.after) {
            // An item's first rank is bookkeeping (the agenda was ranked), not a move.
            (None, Some(_)) if c.path.ends_with(".rank") => continue,
            (Some(_), Some(_)) if c.path.ends_with(".rank") => {
                let item = c.path.trim_end_matches(".rank");
                format!("{}: moved", self::label(item, titles))
            }
            (None, Some(v)) if c.path.is_empty() => format!("created{}", titled(v)),
            (None, Some(_)) if element => format!("added {label}"),
            (Some(_), None) if element => format!("removed {label}"),
            (None, Some(v)) => format!("{label}: added{}", titled(v)),
            (Some(v), None) => format!("{label}: removed{}", titled(v)),
            (Some(b), Some(a)) => format!("{label}: {} → {}", value(b), value(a)),
            (None, None) => continue,
        };
        lines.push(line);
    }
    if lines.len() > SHOWN_CHANGES {
        let more = lines.len() - SHOWN_CHANGES;
        lines.truncate(SHOWN_CHANGES);
        lines.push(format!("… and {more} more (--json shows all)"));
    }
    lines.join("\n")
}

/// A path with item ids replaced by the items' titles: `items[a1b2].title` → `item 'FabriQ' title`.
fn label(path: &str, titles: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = path;
    // `agendas.ID` (a whole group's history) names the agenda by its title.
    if let Some(after) = path.strip_prefix("agendas.") {
        let id = after.split(['.', '[']).next().unwrap_or_default();
        let title = titles
            .get(&format!("agendas.{id}"))
            .map_or(id, String::as_str);
        out.push_str(&format!("agenda '{}'", cut(title)));
        rest = &after[id.len()..];
    }
    while let Some(start) = rest.find("items[") {
        let Some(len) = rest[start..].find(']') else {
            break;
        };
        let id = &rest[start + 6..start + len];
        out.push_str(&rest[..start].replace('.', " "));
        match titles.get(id) {
            Some(title) => out.push_str(&format!(" item '{}'", cut(title))),
            None => out.push_str(&format!(" item {id}")),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(&rest.replace('.', " "));
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// ` 'Title'` of an added or removed object that has a title or name, else nothing.
fn titled(v: &Json) -> String {
    v.get("title")
        .or_else(|| v.get("name"))
        .and_then(Json::as_str)
        .map(|t| format!(" '{}'", cut(t)))
        .unwrap_or_default()
}

/// A value in a change line: text quoted and cut, lists joined, objects summarized.
fn value(v: &Json) -> String {
    match v {
        Json::String(s) => format!("'{}'", cut(s)),
        Json::Array(items) if items.iter().all(Json::is_string) => {
            let joined: Vec<&str> = items.iter().filter_map(Json::as_str).collect();
            format!("[{}]", cut(&joined.join(", ")))
        }
        Json::Null => "(none)".into(),
        Json::Object(_) | Json::Array(_) => cut(&v.to_string()),
        other => other.to_string(),
    }
}

/// At most [`SHOWN_CHARS`] characters, on one line.
fn cut(s: &str) -> String {
    let one_line = s.replace('\n', " ");
    match one_line.char_indices().nth(SHOWN_CHARS) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// A record (id or prefix of any kind, or title), or an agenda (id, prefix or title): the
/// record's id, or the agenda's group and id. A title that names both is ambiguous.
fn resolve(city: &Client, text: &str) -> anyhow::Result<(DocId, Option<String>)> {
    match city.resolve(text) {
        Ok(id) => return Ok((id, None)),
        // Through a daemon the error comes back as its category only.
        Err(e) if e.category() == intercity_node::city::Category::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let record = [Kind::Practice, Kind::Project, Kind::Group]
        .into_iter()
        .find_map(|kind| super::resolve::record(city, text, kind).ok());
    match (record, super::agenda::find(city, text)) {
        (Some(id), Ok(found)) => Err(CliError::AmbiguousName {
            what: "record or agenda",
            name: text.trim().to_string(),
            matches: vec![
                format!("{} ({})", city.record(id)?.title(), &id.to_string()[..8]),
                format!(
                    "agenda {} ({})",
                    found.agenda_id,
                    &found.group_id.to_string()[..8]
                ),
            ],
        }
        .into()),
        (Some(id), Err(_)) => Ok((id, None)),
        (None, Ok(found)) => Ok((found.group_id, Some(found.agenda_id))),
        (None, Err(e)) => Err(match e.downcast::<CliError>() {
            Ok(CliError::NotFound { prefix, .. }) => CliError::NotFound {
                what: "record or agenda",
                prefix,
                hint: "`intercity list` shows records; `intercity agenda list` shows agendas"
                    .into(),
            }
            .into(),
            Ok(other) => other.into(),
            Err(e) => e,
        }),
    }
}

/// Display names of the cities the record (and this node) knows, by city id.
fn names(city: &Client, id: DocId) -> anyhow::Result<BTreeMap<String, String>> {
    let mut names = BTreeMap::new();
    match city.record(id)? {
        Record::Practice(p) if !p.city.is_empty() => {
            names.insert(p.owner, p.city);
        }
        Record::Project(p) if !p.lead_city.is_empty() => {
            names.insert(p.owner, p.lead_city);
        }
        Record::Group(g) => {
            names.extend(g.members.into_iter().map(|(id, m)| (id, m.name)));
        }
        _ => {}
    }
    names.insert(city.id().to_string(), city.profile().name.clone());
    Ok(names)
}
