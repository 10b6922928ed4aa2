//! `intercity history`: every signed change to a record, re-verified.

use std::collections::BTreeMap;

use comfy_table::{Cell, Color};
use intercity_node::{CityError, Client};
use intercity_protocol::entry::DocId;
use intercity_protocol::record::Record;

use super::Ctx;
use crate::ui::iso8601;

/// Help epilogue.
pub const HELP: &str = "\
RECORD is a practice, project or group id (or a unique prefix); an agenda id shows the history
of its group. Each change shows when it was signed (UTC), by which city, its position (seq) in
that city's feed, whether it was accepted or rejected (and why), its message, and whether its
signature and payload hash verify now.

Examples:
  intercity history 3f2a
  intercity history 3f2a --json | jq '.[] | select(.status == \"rejected\")'";

/// `history` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The record's id (or a unique prefix), or an agenda id
    record: String,
}

/// Runs `history`.
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let city = ctx.open_read()?;
    let id = resolve(&city, &args.record)?;
    let items = city.history(id)?;
    let names = names(&city, id)?;
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
    let mut table = ctx.ui.table(&[
        "WHEN (UTC)",
        "CITY",
        "SEQ",
        "STATUS",
        "MESSAGE",
        "VERIFIED",
        "REASON",
    ]);
    for h in &items {
        let author = h.author.to_string();
        let mut who = match names.get(&author) {
            Some(name) => format!("{name} {}", h.author.short()),
            None => h.author.short(),
        };
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
            ctx.ui.check(h.verified),
            Cell::new(h.reason.clone().unwrap_or_default()),
        ]);
    }
    ctx.ui.print_table(&table)?;
    Ok(())
}

/// A record id prefix, or failing that an agenda id prefix (its group).
fn resolve(city: &Client, prefix: &str) -> anyhow::Result<DocId> {
    match city.resolve(prefix) {
        Err(CityError::NotFound(p)) => {
            let needle = prefix.trim().to_ascii_lowercase();
            for summary in city.list(Some(intercity_protocol::record::Kind::Group))? {
                let gid: DocId = summary.id.parse()?;
                if let Record::Group(g) = city.record(gid)?
                    && !needle.is_empty()
                    && g.agendas.keys().any(|a| a.starts_with(&needle))
                {
                    return Ok(gid);
                }
            }
            Err(CityError::NotFound(p).into())
        }
        other => Ok(other?),
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
