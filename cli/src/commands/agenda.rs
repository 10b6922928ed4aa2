//! `intercity agenda`: meeting agendas of working groups, from draft to minutes.
//!
//! An agenda lives inside its group's record, so every change here is a change of the group,
//! signed by this city (which must be a member). An AGENDA argument is an agenda id, a unique
//! prefix of one, or an agenda's title, searched across every group this node holds. An ITEM
//! argument is a 1-based position, a unique prefix of an item id, or an item's title.
//!
//! Life cycle: `create` makes a draft; `publish` announces it; `edit` and `item ...` change it at
//! any time; `held` records that the meeting took place (with `decide` and `minutes`); `cancel`
//! calls it off (`publish` again reinstates it).

use clap::Subcommand;
use comfy_table::Cell;
use intercity_node::Client;
use intercity_protocol::entry::DocId;
use intercity_protocol::record::{Agenda, AgendaStatus, Group, Item, Kind, Record, new_agenda_id};
use serde_json::json;

use super::group;
use super::resolve::{self, Named};
use super::{Ctx, done};
use crate::error::CliError;
use crate::input;
use crate::ui::list;

/// Help epilogue.
pub const HELP: &str = "\
A meeting goes from draft to published (announced), then held (with decisions and minutes) or
cancelled. AGENDA is an agenda id (or a unique prefix) or its title.

Examples:
  intercity agenda create --group \"Smart Social Inclusion\" --title \"Study visit to Milan\" \\
      --start 2017-02-23 --end 2017-02-24 --time-zone Europe/Rome --host Milan --attendee Brno
  intercity agenda item add \"Study visit to Milan\" --title \"FabriQ visit\" --slot 11:00-12:30
  intercity agenda item move 5d1c 3 --to 1
  intercity agenda publish 5d1c
  intercity agenda edit 5d1c --venue \"Palazzo Marino\"
  intercity agenda held 5d1c --decision \"Next meeting in Brno on 1-2 June\" --minutes-file minutes.md
  intercity history 5d1c";

/// `agenda` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a draft agenda in a group; prints its id
    #[command(
        after_help = "Example:\n  intercity agenda create --group \"Smart Social Inclusion\" --title \"Study visit\" --start 2017-02-23 --end 2017-02-24 --time-zone Europe/Rome --venue \"Palazzo Marino\" --host Milan"
    )]
    Create(CreateArgs),
    /// Change an agenda's title, dates, time zone, venue, host or attendees
    #[command(
        after_help = "Examples:\n  intercity agenda edit 5d1c --start 2017-03-02 --end 2017-03-03\n  intercity agenda edit \"Study visit\" --venue \"FabriQ, Milan\" --attendee Brno --attendee Riga"
    )]
    Edit(EditArgs),
    /// Show an agenda with its items in order
    #[command(after_help = "Example:\n  intercity agenda show 5d1c")]
    Show(AgendaArg),
    /// List agendas of every group, or of one, earliest first
    #[command(
        after_help = "Examples:\n  intercity agenda list --group 7be0\n  intercity agenda list --status published --since 2017-01-01"
    )]
    List(super::query::FilterArgs),
    /// The upcoming meetings: agendas whose last day is today or later, soonest first (not
    /// cancelled ones)
    #[command(
        after_help = "Examples:\n  intercity agenda next\n  intercity agenda next --group \"Smart Social Inclusion\" --limit 1 --json"
    )]
    Next(NextArgs),
    /// Publish an agenda (status: published); also reinstates a cancelled meeting
    #[command(after_help = "Example:\n  intercity agenda publish 5d1c")]
    Publish(AgendaArg),
    /// Call a meeting off (status: cancelled)
    #[command(after_help = "Example:\n  intercity agenda cancel 5d1c")]
    Cancel(AgendaArg),
    /// Record that the meeting took place (status: held), with its decisions and minutes
    #[command(
        after_help = "Example:\n  intercity agenda held 5d1c --decision \"Next meeting in Brno on 1-2 June\" --minutes-file minutes.md"
    )]
    Held(HeldArgs),
    /// Add a decision taken at the meeting
    #[command(
        after_help = "Example:\n  intercity agenda decide 5d1c \"Brno hosts the next meeting\""
    )]
    Decide(DecideArgs),
    /// Set the minutes of the meeting (from text or a file; "" clears them)
    #[command(
        after_help = "Examples:\n  intercity agenda minutes 5d1c --file minutes.md\n  intercity agenda minutes 5d1c --text \"Ten cities attended.\""
    )]
    Minutes(MinutesArgs),
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
    /// Change an item's title, day, slot, presenters or notes
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
    /// The group: its id (or a unique prefix) or its name
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
    /// Time zone of the meeting's times, an IANA name such as Europe/Rome
    #[arg(long, value_name = "ZONE", value_parser = input::time_zone)]
    time_zone: Option<String>,
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

/// `agenda edit` arguments.
#[derive(clap::Args, Debug)]
pub struct EditArgs {
    /// The agenda: its id (or a unique prefix) or its title
    agenda: String,
    /// Title of the meeting
    #[arg(long)]
    title: Option<String>,
    /// First day, YYYY-MM-DD
    #[arg(long, value_name = "DATE", value_parser = input::date)]
    start: Option<String>,
    /// Last day, YYYY-MM-DD ("" makes it a one-day meeting)
    #[arg(long, value_name = "DATE", value_parser = input::date_or_empty)]
    end: Option<String>,
    /// Time zone, an IANA name such as Europe/Rome ("" clears it)
    #[arg(long, value_name = "ZONE", value_parser = input::time_zone)]
    time_zone: Option<String>,
    /// Venue ("" clears it)
    #[arg(long)]
    venue: Option<String>,
    /// Display name of the host city ("" clears it)
    #[arg(long, value_name = "CITY")]
    host: Option<String>,
    /// An attending city (repeatable; replaces the list)
    #[arg(long = "attendee", value_name = "CITY")]
    attendees: Vec<String>,
}

/// An AGENDA argument.
#[derive(clap::Args, Debug)]
pub struct AgendaArg {
    /// The agenda: its id (or a unique prefix) or its title
    agenda: String,
}

/// `agenda held` arguments.
#[derive(clap::Args, Debug)]
pub struct HeldArgs {
    /// The agenda: its id (or a unique prefix) or its title
    agenda: String,
    /// A decision taken (repeatable; added to those recorded)
    #[arg(long = "decision", value_name = "TEXT")]
    decisions: Vec<String>,
    #[command(flatten)]
    minutes: MinutesSource,
}

/// `agenda decide` arguments.
#[derive(clap::Args, Debug)]
pub struct DecideArgs {
    /// The agenda: its id (or a unique prefix) or its title
    agenda: String,
    /// The decision, in one sentence or a few
    decision: String,
}

/// `agenda minutes` arguments.
#[derive(clap::Args, Debug)]
pub struct MinutesArgs {
    /// The agenda: its id (or a unique prefix) or its title
    agenda: String,
    #[command(flatten)]
    minutes: MinutesSource,
}

/// Where minutes come from.
#[derive(clap::Args, Debug)]
#[group(multiple = false)]
pub struct MinutesSource {
    /// The minutes as text ("" clears them)
    #[arg(long = "minutes", alias = "text", value_name = "TEXT")]
    text: Option<String>,
    /// Read the minutes from a UTF-8 text file (Markdown is fine)
    #[arg(long = "minutes-file", alias = "file", value_name = "FILE")]
    file: Option<std::path::PathBuf>,
}

impl MinutesSource {
    /// The minutes given, if any.
    fn read(&self) -> anyhow::Result<Option<String>> {
        if let Some(text) = &self.text {
            return Ok(Some(text.clone()));
        }
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        Ok(Some(text.replace("\r\n", "\n")))
    }
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
    /// The agenda: its id (or a unique prefix) or its title
    agenda: String,
    /// Title of the item
    #[arg(long)]
    title: String,
    /// Time slot in the agenda's time zone, e.g. 09:30-10:30
    #[arg(long, value_parser = input::slot)]
    slot: Option<String>,
    /// The day of the item in a meeting of several days, YYYY-MM-DD [default: the first day]
    #[arg(long, value_name = "DATE", value_parser = input::date)]
    day: Option<String>,
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
    /// The agenda: its id (or a unique prefix) or its title
    agenda: String,
    /// The item: its 1-based position, a unique prefix of its id, or its title
    item: String,
    /// Title
    #[arg(long)]
    title: Option<String>,
    /// Time slot, e.g. 09:30-10:30 ("" clears it)
    #[arg(long, value_parser = input::slot)]
    slot: Option<String>,
    /// The day of the item, YYYY-MM-DD ("" means the first day)
    #[arg(long, value_name = "DATE", value_parser = input::date_or_empty)]
    day: Option<String>,
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
    /// The agenda: its id (or a unique prefix) or its title
    agenda: String,
    /// The item: its 1-based position, a unique prefix of its id, or its title
    item: String,
    /// The new 1-based position
    #[arg(long, value_name = "POSITION", value_parser = input::position)]
    to: usize,
}

/// An AGENDA ITEM pair of arguments.
#[derive(clap::Args, Debug)]
pub struct ItemArg {
    /// The agenda: its id (or a unique prefix) or its title
    agenda: String,
    /// The item: its 1-based position, a unique prefix of its id, or its title
    item: String,
}

/// An agenda found, with the group that holds it.
pub struct Found {
    /// The group's record id.
    pub group_id: DocId,
    /// The group.
    pub group: Group,
    /// The agenda's id.
    pub agenda_id: String,
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
        hint: "`intercity agenda list` shows the ids and titles".into(),
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

/// Finds the agenda with id, id prefix or title `text`, across all groups.
pub fn find(city: &Client, text: &str) -> anyhow::Result<Found> {
    let mut candidates = Vec::new();
    let all = groups(city)?;
    for (i, (_, g)) in all.iter().enumerate() {
        for (agenda_id, a) in &g.agendas {
            candidates.push(Named {
                id: agenda_id.clone(),
                name: a.title.clone(),
                value: (i, agenda_id.clone()),
            });
        }
    }
    let (i, agenda_id) = resolve::pick(
        "agenda",
        text,
        "`intercity agenda list` shows the ids and titles",
        candidates,
    )?;
    let (group_id, group) = all.into_iter().nth(i).ok_or_else(|| not_found(text))?;
    Ok(Found {
        group_id,
        group,
        agenda_id,
    })
}

/// The 0-based index of an item given as a 1-based position, an id prefix or a title.
fn item_index(agenda: &Agenda, spec: &str, agenda_id: &str) -> anyhow::Result<usize> {
    if let Ok(n) = spec.trim().parse::<usize>()
        && (1..=agenda.items.len()).contains(&n)
    {
        return Ok(n - 1);
    }
    let candidates = agenda
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| Named {
            id: item.id.clone(),
            name: item.title.clone(),
            value: i,
        })
        .collect();
    let hint = format!(
        "the agenda has {} items; `intercity agenda show {agenda_id}` shows their positions, ids and titles",
        agenda.items.len()
    );
    Ok(resolve::pick("agenda item", spec, &hint, candidates)?)
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

/// The names of the fields an edit changed, in order; nothing changed is an error.
fn changed<'a>(fields: &[(&'a str, bool)]) -> anyhow::Result<Vec<&'a str>> {
    let names: Vec<&str> = fields
        .iter()
        .filter_map(|(name, differs)| differs.then_some(*name))
        .collect();
    if names.is_empty() {
        return Err(intercity_node::CityError::Unchanged.into());
    }
    Ok(names)
}

/// Checks that `day` (an item's) lies within the meeting's days.
fn check_day(a: &Agenda, day: &str) -> anyhow::Result<()> {
    let last = a.end.as_deref().unwrap_or(&a.start);
    if !day.is_empty() && (day < a.start.as_str() || day > last) {
        return Err(CliError::Invalid(format!(
            "{day} is not a day of the meeting ({} to {last}); change the meeting's dates first with `intercity agenda edit`",
            a.start
        ))
        .into());
    }
    Ok(())
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
                // A cancelled meeting is not coming up.
                statuses: vec!["draft".into(), "published".into(), "held".into()],
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
            a.time_zone = args.time_zone.unwrap_or_default();
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
        Command::Edit(args) => edit(ctx, &city, args),
        Command::Show(args) => show(ctx, &find(&city, &args.agenda)?),
        Command::List(_) | Command::Next(_) => unreachable!("listed above"),
        Command::Publish(args) => set_status(ctx, &city, &args.agenda, AgendaStatus::Published),
        Command::Cancel(args) => set_status(ctx, &city, &args.agenda, AgendaStatus::Cancelled),
        Command::Held(args) => held(ctx, &city, args),
        Command::Decide(args) => {
            let mut f = find(&city, &args.agenda)?;
            let a = f.agenda_mut()?;
            refuse_if_cancelled(a, "record a decision")?;
            a.decisions.push(args.decision.trim().to_string());
            let message = format!("record a decision of '{}'", a.title);
            let id = f.agenda_id.clone();
            f.save(&city, &message)?;
            done(
                ctx,
                &id,
                &format!("Recorded the decision in agenda {id}"),
                false,
            )
        }
        Command::Minutes(args) => {
            let Some(minutes) = args.minutes.read()? else {
                return Err(CliError::Invalid(
                    "give the minutes with --minutes TEXT or --minutes-file FILE".into(),
                )
                .into());
            };
            let mut f = find(&city, &args.agenda)?;
            let a = f.agenda_mut()?;
            refuse_if_cancelled(a, "attach minutes")?;
            if a.minutes == minutes {
                return Err(intercity_node::CityError::Unchanged.into());
            }
            a.minutes = minutes;
            let message = format!("set the minutes of '{}'", a.title);
            let id = f.agenda_id.clone();
            f.save(&city, &message)?;
            done(ctx, &id, &format!("Set the minutes of agenda {id}"), false)
        }
        Command::Item(cmd) => item(ctx, &city, cmd),
    }
}

fn refuse_if_cancelled(a: &Agenda, what: &str) -> anyhow::Result<()> {
    if a.status == AgendaStatus::Cancelled {
        return Err(CliError::Invalid(format!(
            "the meeting '{}' is cancelled, so you cannot {what}; `intercity agenda publish` reinstates it",
            a.title
        ))
        .into());
    }
    Ok(())
}

/// `agenda publish` / `agenda cancel`.
fn set_status(ctx: &Ctx, city: &Client, text: &str, to: AgendaStatus) -> anyhow::Result<()> {
    let mut f = find(city, text)?;
    let a = f.agenda_mut()?;
    if a.status == to {
        return Err(intercity_node::CityError::Unchanged.into());
    }
    if a.status == AgendaStatus::Held {
        return Err(CliError::Invalid(format!(
            "the meeting '{}' was held; its status stays held",
            a.title
        ))
        .into());
    }
    let (verb, done_word) = match to {
        AgendaStatus::Cancelled => ("cancel", "Cancelled"),
        _ if a.status == AgendaStatus::Cancelled => ("reinstate", "Reinstated"),
        _ => ("publish", "Published"),
    };
    a.status = to;
    let message = format!("{verb} agenda '{}'", a.title);
    let id = f.agenda_id.clone();
    f.save(city, &message)?;
    done(ctx, &id, &format!("{done_word} agenda {id}"), false)
}

/// `agenda held`.
fn held(ctx: &Ctx, city: &Client, args: HeldArgs) -> anyhow::Result<()> {
    let minutes = args.minutes.read()?;
    let mut f = find(city, &args.agenda)?;
    let a = f.agenda_mut()?;
    refuse_if_cancelled(a, "mark it held")?;
    let before = a.clone();
    a.status = AgendaStatus::Held;
    for d in &args.decisions {
        let d = d.trim().to_string();
        if !a.decisions.contains(&d) {
            a.decisions.push(d);
        }
    }
    if let Some(m) = minutes {
        a.minutes = m;
    }
    if *a == before {
        return Err(intercity_node::CityError::Unchanged.into());
    }
    let message = format!("mark agenda '{}' held", a.title);
    let id = f.agenda_id.clone();
    f.save(city, &message)?;
    done(ctx, &id, &format!("Agenda {id} is held"), false)
}

/// `agenda edit`.
fn edit(ctx: &Ctx, city: &Client, args: EditArgs) -> anyhow::Result<()> {
    let mut f = find(city, &args.agenda)?;
    let a = f.agenda_mut()?;
    let before = a.clone();
    if let Some(v) = args.title {
        a.title = v;
    }
    if let Some(v) = args.start {
        a.start = v;
    }
    super::set_opt(&mut a.end, args.end);
    if let Some(v) = args.time_zone {
        a.time_zone = v;
    }
    if let Some(v) = args.venue {
        a.venue = v;
    }
    if let Some(v) = args.host {
        a.host_city = v;
    }
    super::set_list(&mut a.attendees, args.attendees);
    let changed = changed(&[
        ("title", before.title != a.title),
        ("start", before.start != a.start),
        ("end", before.end != a.end),
        ("time zone", before.time_zone != a.time_zone),
        ("venue", before.venue != a.venue),
        ("host", before.host_city != a.host_city),
        ("attendees", before.attendees != a.attendees),
    ])?;
    let outside: Vec<String> = a
        .items
        .iter()
        .filter(|i| check_day(a, &i.day).is_err())
        .map(|i| format!("'{}' ({})", i.title, i.day))
        .collect();
    let message = format!("edit agenda '{}': {}", a.title, changed.join(", "));
    let id = f.agenda_id.clone();
    f.save(city, &message)?;
    if !outside.is_empty() {
        ctx.ui.note(format!(
            "Note: these items are now outside the meeting's days: {}; move them with `intercity agenda item edit {id} ITEM --day DATE`",
            outside.join(", ")
        ));
    }
    done(
        ctx,
        &id,
        &format!("Updated agenda {id}: {}", changed.join(", ")),
        false,
    )
}

fn item(ctx: &Ctx, city: &Client, cmd: ItemCommand) -> anyhow::Result<()> {
    match cmd {
        ItemCommand::Add(args) => {
            let mut f = find(city, &args.agenda)?;
            let a = f.agenda_mut()?;
            let mut item = Item::new(args.title);
            item.slot = args.slot.unwrap_or_default();
            item.day = args.day.unwrap_or_default();
            check_day(a, &item.day)?;
            item.presenters = args.presenters;
            item.notes = args.notes.unwrap_or_default();
            let at = match args.at {
                Some(pos) => check_position(pos, a.items.len() + 1)?,
                None => a.items.len(),
            };
            let message = format!("add agenda item '{}' at {}", item.title, at + 1);
            let item_id = item.id.clone();
            a.insert_item(at, item);
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
            if let Some(day) = &args.day {
                check_day(a, day)?;
            }
            let item = &mut a.items[i];
            let before = item.clone();
            if let Some(v) = args.title {
                item.title = v;
            }
            if let Some(v) = args.slot {
                item.slot = v;
            }
            if let Some(v) = args.day {
                item.day = v;
            }
            super::set_list(&mut item.presenters, args.presenters);
            if let Some(v) = args.notes {
                item.notes = v;
            }
            let changed = changed(&[
                ("title", before.title != item.title),
                ("slot", before.slot != item.slot),
                ("day", before.day != item.day),
                ("presenters", before.presenters != item.presenters),
                ("notes", before.notes != item.notes),
            ])?;
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
            let (item_id, title) = (a.items[from].id.clone(), a.items[from].title.clone());
            a.move_item(from, to);
            let message = format!("move agenda item '{title}' from {} to {}", from + 1, to + 1);
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
    let mut fields = vec![
        ("id", f.agenda_id.clone()),
        ("group", format!("{} ({})", f.group.name, f.group_id)),
        ("title", a.title.clone()),
        ("dates", dates),
    ];
    if !a.time_zone.is_empty() {
        fields.push(("time zone", a.time_zone.clone()));
    }
    fields.extend([
        ("venue", a.venue.clone()),
        ("host", a.host_city.clone()),
        ("status", a.status.to_string()),
        ("attendees", list(&a.attendees)),
        ("decisions", crate::ui::bullets(&a.decisions)),
    ]);
    if !a.minutes.is_empty() {
        fields.push(("minutes", a.minutes.clone()));
    }
    ctx.ui.fields(&fields)?;
    ctx.ui.line("")?;
    if a.items.is_empty() {
        ctx.ui.line(format!(
            "No items yet; add one with `intercity agenda item add {} --title ...`",
            f.agenda_id
        ))?;
        return Ok(());
    }
    let several_days = a.end.as_ref().is_some_and(|e| *e != a.start);
    let mut header = vec!["#"];
    if several_days {
        header.push("DAY");
    }
    header.extend(["SLOT", "TITLE", "PRESENTERS", "NOTES", "ID"]);
    let mut table = ctx.ui.table(&header);
    for (i, item) in a.items.iter().enumerate() {
        let mut row = vec![Cell::new(i + 1)];
        if several_days {
            let day = if item.day.is_empty() {
                &a.start
            } else {
                &item.day
            };
            row.push(Cell::new(day));
        }
        row.extend([
            Cell::new(&item.slot),
            Cell::new(&item.title),
            Cell::new(list(&item.presenters)),
            Cell::new(&item.notes),
            Cell::new(&item.id),
        ]);
        table.add_row(row);
    }
    ctx.ui.print_table(&table)?;
    Ok(())
}
