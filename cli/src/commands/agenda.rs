//! `intercity agenda`: meeting agendas of working groups, and their ordered items.
//!
//! An agenda lives inside its group's record, so every change here is a change of the group,
//! signed by this city (which must be a member). An AGENDA argument is a unique prefix of an
//! agenda id, searched across every group this node holds. An ITEM argument is a 1-based
//! position (a number not above the item count) or a unique prefix of an item id.

use clap::Subcommand;
use comfy_table::Cell;
use intercity_node::Client;
use intercity_protocol::entry::DocId;
use intercity_protocol::record::{Agenda, AgendaStatus, Group, Item, Kind, Record, new_agenda_id};
use serde_json::json;

use super::group;
use super::{Ctx, done};
use crate::error::CliError;
use crate::input;
use crate::ui::list;

/// Help epilogue.
pub const HELP: &str = "\
Examples:
  intercity agenda create --group 7be0 --title \"Smart Social Inclusion study visit\" \\
      --start 2017-02-23 --end 2017-02-24 --host Milan --attendee Brno --attendee Riga
  intercity agenda item add 5d1c --title \"FabriQ visit\" --slot 11:00-12:30 --presenter \"FabriQ\"
  intercity agenda item move 5d1c 3 --to 1
  intercity agenda show 5d1c
  intercity agenda publish 5d1c";

/// `agenda` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a draft agenda in a group; prints its id
    #[command(
        after_help = "Example:\n  intercity agenda create --group 7be0 --title \"Study visit\" --start 2017-02-23 --end 2017-02-24 --venue \"Palazzo Marino\" --host Milan"
    )]
    Create(CreateArgs),
    /// Show an agenda with its items in order
    #[command(after_help = "Example:\n  intercity agenda show 5d1c")]
    Show(AgendaArg),
    /// List agendas of every group, or of one, earliest first
    #[command(
        after_help = "Examples:\n  intercity agenda list --group 7be0\n  intercity agenda list --status published --since 2017-01-01"
    )]
    List(super::query::FilterArgs),
    /// The upcoming meetings: agendas whose last day is today or later, soonest first
    #[command(
        after_help = "Examples:\n  intercity agenda next\n  intercity agenda next --group \"Smart Social Inclusion\" --limit 1 --json"
    )]
    Next(NextArgs),
    /// Publish an agenda (status: published)
    #[command(after_help = "Example:\n  intercity agenda publish 5d1c")]
    Publish(AgendaArg),
    /// Add, edit, move or remove agenda items
    #[command(subcommand)]
    Item(ItemCommand),
}

/// `agenda item` subcommands.
#[derive(Subcommand, Debug)]
pub enum ItemCommand {
    /// Add an item (at the end, or at --at POSITION)
    #[command(
        after_help = "Example:\n  intercity agenda item add 5d1c --title \"Makerspace visit\" --slot 09:30-10:30 --presenter \"Milan Makers\" --at 1"
    )]
    Add(ItemAddArgs),
    /// Change an item's title, slot, presenters or notes
    #[command(
        after_help = "Example:\n  intercity agenda item edit 5d1c 2 --slot 10:30-11:30 --notes \"bus from the station\""
    )]
    Edit(ItemEditArgs),
    /// Move an item to another position
    #[command(after_help = "Example:\n  intercity agenda item move 5d1c 4 --to 1")]
    Move(ItemMoveArgs),
    /// Remove an item
    #[command(after_help = "Example:\n  intercity agenda item remove 5d1c 2")]
    Remove(ItemArg),
}

/// `agenda create` arguments.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The group's id (or a unique prefix)
    #[arg(long)]
    group: String,
    /// Title of the meeting
    #[arg(long)]
    title: String,
    /// First day, YYYY-MM-DD
    #[arg(long, value_name = "DATE", value_parser = input::date)]
    start: String,
    /// Last day, YYYY-MM-DD
    #[arg(long, value_name = "DATE", value_parser = input::date)]
    end: Option<String>,
    /// Venue
    #[arg(long)]
    venue: Option<String>,
    /// Display name of the host city
    #[arg(long, value_name = "CITY")]
    host: Option<String>,
    /// An attending city (repeatable)
    #[arg(long = "attendee", value_name = "CITY")]
    attendees: Vec<String>,
}

/// An AGENDA argument.
#[derive(clap::Args, Debug)]
pub struct AgendaArg {
    /// The agenda's id (or a unique prefix)
    agenda: String,
}

/// `agenda next` arguments.
#[derive(clap::Args, Debug)]
pub struct NextArgs {
    /// Only this working group's meetings: group id prefix or exact name
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Show at most N meetings; 0 shows all
    #[arg(long, value_name = "N", default_value_t = 10)]
    limit: usize,
}

/// `agenda item add` arguments.
#[derive(clap::Args, Debug)]
pub struct ItemAddArgs {
    /// The agenda's id (or a unique prefix)
    agenda: String,
    /// Title of the item
    #[arg(long)]
    title: String,
    /// Time slot, e.g. 09:30-10:30
    #[arg(long)]
    slot: Option<String>,
    /// Who presents (repeatable)
    #[arg(long = "presenter", value_name = "NAME")]
    presenters: Vec<String>,
    /// Notes
    #[arg(long)]
    notes: Option<String>,
    /// Insert at this 1-based position [default: at the end]
    #[arg(long, value_name = "POSITION", value_parser = input::position)]
    at: Option<usize>,
}

/// `agenda item edit` arguments.
#[derive(clap::Args, Debug)]
pub struct ItemEditArgs {
    /// The agenda's id (or a unique prefix)
    agenda: String,
    /// The item: its 1-based position or a unique prefix of its id
    item: String,
    /// Title
    #[arg(long)]
    title: Option<String>,
    /// Time slot, e.g. 09:30-10:30 ("" clears it)
    #[arg(long)]
    slot: Option<String>,
    /// Who presents (repeatable; replaces the list)
    #[arg(long = "presenter", value_name = "NAME")]
    presenters: Vec<String>,
    /// Notes ("" clears them)
    #[arg(long)]
    notes: Option<String>,
}

/// `agenda item move` arguments.
#[derive(clap::Args, Debug)]
pub struct ItemMoveArgs {
    /// The agenda's id (or a unique prefix)
    agenda: String,
    /// The item: its 1-based position or a unique prefix of its id
    item: String,
    /// The new 1-based position
    #[arg(long, value_name = "POSITION", value_parser = input::position)]
    to: usize,
}

/// An AGENDA ITEM pair of arguments.
#[derive(clap::Args, Debug)]
pub struct ItemArg {
    /// The agenda's id (or a unique prefix)
    agenda: String,
    /// The item: its 1-based position or a unique prefix of its id
    item: String,
}

/// An agenda found by id prefix, with the group that holds it.
struct Found {
    group_id: DocId,
    group: Group,
    agenda_id: String,
}

impl Found {
    fn agenda(&self) -> &Agenda {
        // `find` only returns agenda ids present in the group.
        &self.group.agendas[&self.agenda_id]
    }

    fn agenda_mut(&mut self) -> anyhow::Result<&mut Agenda> {
        let id = self.agenda_id.clone();
        self.group
            .agendas
            .get_mut(&id)
            .ok_or_else(|| not_found(&id).into())
    }

    /// Signs the changed group.
    fn save(self, city: &Client, message: &str) -> anyhow::Result<()> {
        group::save(city, self.group_id, self.group, message)
    }
}

fn not_found(prefix: &str) -> CliError {
    CliError::NotFound {
        what: "agenda",
        prefix: prefix.to_string(),
        hint: "`intercity agenda list` shows the ids".into(),
    }
}

/// Every group this node holds, with its id.
fn groups(city: &Client) -> anyhow::Result<Vec<(DocId, Group)>> {
    let mut out = Vec::new();
    for summary in city.list(Some(Kind::Group))? {
        let id: DocId = summary.id.parse()?;
        if let Record::Group(g) = city.record(id)? {
            out.push((id, g));
        }
    }
    Ok(out)
}

/// Finds the agenda whose id is `prefix` or starts with it, across all groups.
fn find(city: &Client, prefix: &str) -> anyhow::Result<Found> {
    let prefix = prefix.trim().to_ascii_lowercase();
    let mut matches = Vec::new();
    for (group_id, g) in groups(city)? {
        for agenda_id in g.agendas.keys().filter(|a| a.starts_with(&prefix)) {
            matches.push(Found {
                group_id,
                group: g.clone(),
                agenda_id: agenda_id.clone(),
            });
        }
    }
    if prefix.is_empty() || matches.is_empty() {
        return Err(not_found(&prefix).into());
    }
    if matches.len() > 1 {
        if let Some(i) = matches.iter().position(|f| f.agenda_id == prefix) {
            return Ok(matches.swap_remove(i));
        }
        return Err(CliError::Ambiguous {
            what: "agenda id",
            prefix,
            matches: matches.into_iter().map(|f| f.agenda_id).collect(),
        }
        .into());
    }
    matches.pop().ok_or_else(|| not_found(&prefix).into())
}

/// The 0-based index of an item given as a 1-based position or an id prefix.
fn item_index(agenda: &Agenda, spec: &str, agenda_id: &str) -> anyhow::Result<usize> {
    let spec = spec.trim().to_ascii_lowercase();
    if let Ok(n) = spec.parse::<usize>()
        && (1..=agenda.items.len()).contains(&n)
    {
        return Ok(n - 1);
    }
    let matches: Vec<usize> = (0..agenda.items.len())
        .filter(|&i| !spec.is_empty() && agenda.items[i].id.starts_with(&spec))
        .collect();
    match matches.as_slice() {
        [i] => Ok(*i),
        [] => Err(CliError::NotFound {
            what: "agenda item",
            prefix: spec,
            hint: format!(
                "the agenda has {} items; `intercity agenda show {agenda_id}` shows their positions and ids",
                agenda.items.len()
            ),
        }
        .into()),
        _ => Err(CliError::Ambiguous {
            what: "item id",
            prefix: spec,
            matches: matches.iter().map(|&i| agenda.items[i].id.clone()).collect(),
        }
        .into()),
    }
}

fn check_position(pos: usize, max: usize) -> anyhow::Result<usize> {
    if pos > max {
        return Err(CliError::Invalid(format!(
            "position {pos} is out of range; the agenda allows 1 to {max} here"
        ))
        .into());
    }
    Ok(pos - 1)
}

/// Runs an `agenda` subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    use intercity_node::catalog::UnitKind;
    let cmd = match cmd {
        Command::List(filters) => return super::query::list_kind(ctx, UnitKind::Agenda, filters),
        Command::Next(args) => {
            let filters = super::query::FilterArgs {
                group: args.group,
                since: Some(intercity_node::time::today(intercity_node::city::now_ms())),
                sort: Some(intercity_node::catalog::Sort::Date),
                limit: Some(args.limit),
                ..Default::default()
            };
            return super::query::list_kind(ctx, UnitKind::Agenda, filters);
        }
        other => other,
    };
    let city = ctx.open_for(matches!(cmd, Command::Show(_)))?;
    match cmd {
        Command::Create(args) => {
            let (group_id, mut g) = group::load(&city, &args.group)?;
            let mut a = Agenda::new(args.title, args.start);
            a.end = args.end;
            a.venue = args.venue.unwrap_or_default();
            a.host_city = args.host.unwrap_or_default();
            a.attendees = args.attendees;
            let agenda_id = new_agenda_id();
            let message = format!("create agenda '{}' ({})", a.title, a.start);
            g.agendas.insert(agenda_id.clone(), a);
            group::save(&city, group_id, g, &message)?;
            if ctx.ui.is_json() {
                ctx.ui
                    .json(&json!({ "id": agenda_id, "group": group_id.to_string() }))?;
            } else {
                ctx.ui.line(&agenda_id)?;
                ctx.ui
                    .note(format!("Created agenda {agenda_id} in group {group_id}"));
            }
            Ok(())
        }
        Command::Show(args) => show(ctx, &find(&city, &args.agenda)?),
        Command::List(_) | Command::Next(_) => unreachable!("listed above"),
        Command::Publish(args) => {
            let mut f = find(&city, &args.agenda)?;
            let a = f.agenda_mut()?;
            if a.status == AgendaStatus::Published {
                return Err(intercity_node::CityError::Unchanged.into());
            }
            a.status = AgendaStatus::Published;
            let message = format!("publish agenda '{}'", a.title);
            let id = f.agenda_id.clone();
            f.save(&city, &message)?;
            done(ctx, &id, &format!("Published agenda {id}"), false)
        }
        Command::Item(cmd) => item(ctx, &city, cmd),
    }
}

fn item(ctx: &Ctx, city: &Client, cmd: ItemCommand) -> anyhow::Result<()> {
    match cmd {
        ItemCommand::Add(args) => {
            let mut f = find(city, &args.agenda)?;
            let a = f.agenda_mut()?;
            let mut item = Item::new(args.title);
            item.slot = args.slot.unwrap_or_default();
            item.presenters = args.presenters;
            item.notes = args.notes.unwrap_or_default();
            let at = match args.at {
                Some(pos) => check_position(pos, a.items.len() + 1)?,
                None => a.items.len(),
            };
            let message = format!("add agenda item '{}' at {}", item.title, at + 1);
            let item_id = item.id.clone();
            a.items.insert(at, item);
            f.save(city, &message)?;
            if ctx.ui.is_json() {
                ctx.ui.json(&json!({ "id": item_id, "position": at + 1 }))?;
            } else {
                ctx.ui.line(&item_id)?;
                ctx.ui
                    .note(format!("Added item {item_id} at position {}", at + 1));
            }
            Ok(())
        }
        ItemCommand::Edit(args) => {
            let mut f = find(city, &args.agenda)?;
            let agenda_id = f.agenda_id.clone();
            let a = f.agenda_mut()?;
            let i = item_index(a, &args.item, &agenda_id)?;
            let item = &mut a.items[i];
            let before = item.clone();
            if let Some(v) = args.title {
                item.title = v;
            }
            if let Some(v) = args.slot {
                item.slot = v;
            }
            super::set_list(&mut item.presenters, args.presenters);
            if let Some(v) = args.notes {
                item.notes = v;
            }
            let mut changed = Vec::new();
            for (name, differs) in [
                ("title", before.title != item.title),
                ("slot", before.slot != item.slot),
                ("presenters", before.presenters != item.presenters),
                ("notes", before.notes != item.notes),
            ] {
                if differs {
                    changed.push(name);
                }
            }
            if changed.is_empty() {
                return Err(intercity_node::CityError::Unchanged.into());
            }
            let message = format!("edit agenda item '{}': {}", item.title, changed.join(", "));
            let item_id = item.id.clone();
            f.save(city, &message)?;
            done(
                ctx,
                &item_id,
                &format!("Updated item {item_id}: {}", changed.join(", ")),
                false,
            )
        }
        ItemCommand::Move(args) => {
            let mut f = find(city, &args.agenda)?;
            let agenda_id = f.agenda_id.clone();
            let a = f.agenda_mut()?;
            let from = item_index(a, &args.item, &agenda_id)?;
            let to = check_position(args.to, a.items.len())?;
            if from == to {
                return Err(intercity_node::CityError::Unchanged.into());
            }
            let item = a.items.remove(from);
            let message = format!(
                "move agenda item '{}' from {} to {}",
                item.title,
                from + 1,
                to + 1
            );
            let item_id = item.id.clone();
            a.items.insert(to, item);
            f.save(city, &message)?;
            done(
                ctx,
                &item_id,
                &format!(
                    "Moved item {item_id} from position {} to {}",
                    from + 1,
                    to + 1
                ),
                false,
            )
        }
        ItemCommand::Remove(args) => {
            let mut f = find(city, &args.agenda)?;
            let agenda_id = f.agenda_id.clone();
            let a = f.agenda_mut()?;
            let i = item_index(a, &args.item, &agenda_id)?;
            let item = a.items.remove(i);
            let message = format!("remove agenda item '{}'", item.title);
            f.save(city, &message)?;
            done(
                ctx,
                &item.id,
                &format!("Removed item {} '{}'", item.id, item.title),
                false,
            )
        }
    }
}

fn show(ctx: &Ctx, f: &Found) -> anyhow::Result<()> {
    let a = f.agenda();
    if ctx.ui.is_json() {
        let mut out = serde_json::Map::new();
        out.insert("id".into(), f.agenda_id.clone().into());
        out.insert("group".into(), f.group_id.to_string().into());
        out.insert("group_name".into(), f.group.name.clone().into());
        if let serde_json::Value::Object(map) = serde_json::to_value(a)? {
            out.extend(map);
        }
        ctx.ui.json(&out)?;
        return Ok(());
    }
    let dates = match &a.end {
        Some(end) if *end != a.start => format!("{} – {end}", a.start),
        _ => a.start.clone(),
    };
    ctx.ui.fields(&[
        ("id", f.agenda_id.clone()),
        ("group", format!("{} ({})", f.group.name, f.group_id)),
        ("title", a.title.clone()),
        ("dates", dates),
        ("venue", a.venue.clone()),
        ("host", a.host_city.clone()),
        ("status", a.status.to_string()),
        ("attendees", list(&a.attendees)),
        ("decisions", crate::ui::bullets(&a.decisions)),
    ])?;
    ctx.ui.line("")?;
    if a.items.is_empty() {
        ctx.ui.line(format!(
            "No items yet; add one with `intercity agenda item add {} --title ...`",
            f.agenda_id
        ))?;
        return Ok(());
    }
    let mut table = ctx
        .ui
        .table(&["#", "SLOT", "TITLE", "PRESENTERS", "NOTES", "ID"]);
    for (i, item) in a.items.iter().enumerate() {
        table.add_row(vec![
            Cell::new(i + 1),
            Cell::new(&item.slot),
            Cell::new(&item.title),
            Cell::new(list(&item.presenters)),
            Cell::new(&item.notes),
            Cell::new(&item.id),
        ]);
    }
    ctx.ui.print_table(&table)?;
    Ok(())
}
