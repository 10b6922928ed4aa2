//! `intercity group`: working groups and their members.

use clap::Subcommand;
use comfy_table::Color;
use intercity_node::Client;
use intercity_protocol::entry::DocId;
use intercity_protocol::record::{Group, Kind, Member, Record, Role};

use super::{Ctx, done, with_id};
use crate::error::CliError;
use crate::ui::{iso8601, short};

/// Help epilogue.
pub const HELP: &str = "\
A group holds its charter, members and agendas; every member may edit it, only chairs add or
remove members.

Examples:
  intercity group create --name \"Smart Social Inclusion\" --charter \"...\"
  intercity group member add 7be0 12D3KooWBrno... --name Brno
  intercity group show 7be0
  intercity group list";

/// `group` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a working group chaired by this city; prints its id
    #[command(after_help = "Example:\n  intercity group create --name \"Smart Social Inclusion\"")]
    Create(CreateArgs),
    /// Show a group: charter, members, agendas
    #[command(after_help = "Example:\n  intercity group show 7be0")]
    Show(ShowArgs),
    /// List the groups held by this node
    #[command(after_help = "Example:\n  intercity group list --json")]
    List,
    /// Add or remove members (chairs only)
    #[command(subcommand)]
    Member(MemberCommand),
}

/// `group member` subcommands.
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a member city, or change its name or role
    #[command(
        after_help = "Examples:\n  intercity group member add 7be0 12D3KooWBrno... --name Brno --role member\n  intercity group member add 7be0 Brno          # a city this node knows (federation, roster)"
    )]
    Add(MemberAddArgs),
    /// Remove a member city
    #[command(after_help = "Example:\n  intercity group member remove 7be0 12D3KooWBrno...")]
    Remove(MemberRemoveArgs),
}

/// `group create` arguments.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Name of the group
    #[arg(long)]
    name: String,
    /// What the group is for
    #[arg(long)]
    charter: Option<String>,
}

/// `group show` arguments.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The group's id (or a unique prefix)
    group: String,
}

/// `group member add` arguments.
#[derive(clap::Args, Debug)]
pub struct MemberAddArgs {
    /// The group's id (or a unique prefix)
    group: String,
    /// The member city's id, or the name of a city this node knows (`intercity peers list`)
    city: String,
    /// The city's display name, e.g. Brno [default: the name this node knows it by]
    #[arg(long)]
    name: Option<String>,
    /// Its role: chair or member
    #[arg(long, default_value = "member", value_parser = parse_role)]
    role: Role,
}

/// `group member add`, resolved.
struct MemberAdd {
    city_id: String,
    name: String,
    role: Role,
}

/// `group member remove` arguments.
#[derive(clap::Args, Debug)]
pub struct MemberRemoveArgs {
    /// The group's id (or a unique prefix)
    group: String,
    /// The member city's id, or its name in the group
    city: String,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: intercity_protocol::record::RecordError| e.to_string())
}

/// Runs a `group` subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    let city = ctx.open_for(matches!(cmd, Command::Show(_) | Command::List))?;
    match cmd {
        Command::Create(args) => {
            let mut g = Group::new(
                args.name,
                city.id().to_string(),
                city.profile().name.clone(),
            );
            if let Some(c) = args.charter {
                g.charter = c;
            }
            let name = g.name.clone();
            let id = city
                .create(&Record::from(g), &format!("create group '{name}'"))?
                .to_string();
            done(ctx, &id, &format!("Created group {id} '{name}'"), true)
        }
        Command::Show(args) => show(ctx, &city, &args.group),
        Command::List => list(ctx, &city),
        Command::Member(MemberCommand::Add(args)) => {
            let (id, mut g) = load(&city, &args.group)?;
            let city_id = super::city_arg(&city, &args.city)?.to_string();
            let name = match args.name {
                Some(n) => n,
                None => city
                    .roster()?
                    .into_iter()
                    .find(|p| p.entry.id.to_string() == city_id && !p.entry.name.is_empty())
                    .map(|p| p.entry.name)
                    .ok_or_else(|| {
                        CliError::Invalid(format!(
                            "this node knows no name for {city_id}: give one with --name"
                        ))
                    })?,
            };
            let args = MemberAdd {
                city_id,
                name,
                role: args.role,
            };
            let member = Member {
                name: args.name.clone(),
                role: args.role,
            };
            if g.members.get(&args.city_id) == Some(&member) {
                return Err(intercity_node::CityError::Unchanged.into());
            }
            let verb = if g.members.contains_key(&args.city_id) {
                "update"
            } else {
                "add"
            };
            g.members.insert(args.city_id.clone(), member);
            let message = format!(
                "{verb} member {} ({}, {})",
                args.name, args.city_id, args.role
            );
            save(&city, id, g, &message)?;
            done(
                ctx,
                &id.to_string(),
                &format!("Group {id}: {message}"),
                false,
            )
        }
        Command::Member(MemberCommand::Remove(args)) => {
            let (id, mut g) = load(&city, &args.group)?;
            let named: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| m.name.eq_ignore_ascii_case(args.city.trim()))
                .map(|(k, _)| k.clone())
                .collect();
            let key = match named.as_slice() {
                [one] => one.clone(),
                [] => args.city.trim().to_string(),
                many => {
                    return Err(CliError::Invalid(format!(
                        "`{}` names {} members ({}); give the id",
                        args.city,
                        many.len(),
                        many.join(", ")
                    ))
                    .into());
                }
            };
            let Some(member) = g.members.remove(&key) else {
                return Err(CliError::NotFound {
                    what: "member",
                    prefix: args.city,
                    hint: format!("`intercity group show {id}` lists the members"),
                }
                .into());
            };
            let message = format!("remove member {} ({key})", member.name);
            save(&city, id, g, &message)?;
            done(
                ctx,
                &id.to_string(),
                &format!("Group {id}: {message}"),
                false,
            )
        }
    }
}

/// Resolves a group (id, id prefix or name) and reads it.
pub fn load(city: &Client, text: &str) -> anyhow::Result<(DocId, Group)> {
    super::resolve::group(city, text)
}

/// Signs the new state of a group as one change (dropping copies of an agenda item that an
/// older version's concurrent moves left, which would make the record invalid).
pub fn save(city: &Client, id: DocId, mut group: Group, message: &str) -> anyhow::Result<()> {
    for agenda in group.agendas.values_mut() {
        agenda.dedupe_items();
    }
    city.edit(id, message, |r| {
        *r = Record::from(group);
        Ok(())
    })?;
    Ok(())
}

fn show(ctx: &Ctx, city: &Client, prefix: &str) -> anyhow::Result<()> {
    let (id, g) = load(city, prefix)?;
    if ctx.ui.is_json() {
        ctx.ui.json(&with_id(&id.to_string(), &Record::from(g)))?;
        return Ok(());
    }
    ctx.ui.fields(&[
        ("id", id.to_string()),
        ("name", g.name.clone()),
        ("charter", g.charter.clone()),
    ])?;
    let me = city.id().to_string();
    let mut members = ctx.ui.table(&["CITY", "ID", "ROLE"]);
    for (cid, m) in &g.members {
        let name = if *cid == me {
            format!("{} (this city)", m.name)
        } else {
            m.name.clone()
        };
        let role = if m.role == Role::Chair {
            ctx.ui.cell(m.role, Color::Yellow)
        } else {
            ctx.ui.cell(m.role, Color::Reset)
        };
        members.add_row(vec![
            comfy_table::Cell::new(name),
            comfy_table::Cell::new(cid),
            role,
        ]);
    }
    ctx.ui.line("")?;
    ctx.ui.line("Members")?;
    ctx.ui.print_table(&members)?;
    if !g.agendas.is_empty() {
        ctx.ui.line("")?;
        ctx.ui.line("Agendas")?;
        let mut agendas = ctx.ui.table(&["ID", "TITLE", "START", "STATUS", "ITEMS"]);
        let mut rows: Vec<_> = g.agendas.iter().collect();
        rows.sort_by(|a, b| a.1.start.cmp(&b.1.start));
        for (aid, a) in rows {
            agendas.add_row(vec![
                aid.clone(),
                a.title.clone(),
                a.start.clone(),
                a.status.to_string(),
                a.items.len().to_string(),
            ]);
        }
        ctx.ui.print_table(&agendas)?;
    }
    Ok(())
}

fn list(ctx: &Ctx, city: &Client) -> anyhow::Result<()> {
    let rows = city.list(Some(Kind::Group))?;
    if ctx.ui.is_json() {
        ctx.ui.json(&rows)?;
        return Ok(());
    }
    let n = super::short_id_len(city)?;
    let mut table = ctx
        .ui
        .table(&["ID", "NAME", "MEMBERS", "AGENDAS", "UPDATED"]);
    for r in &rows {
        let (members, agendas) = match r
            .id
            .parse()
            .map_err(anyhow::Error::from)
            .and_then(|id| Ok(city.record(id)?))
        {
            Ok(Record::Group(g)) => (g.members.len().to_string(), g.agendas.len().to_string()),
            _ => (String::new(), String::new()),
        };
        table.add_row(vec![
            short(&r.id, n).to_string(),
            r.title.clone(),
            members,
            agendas,
            iso8601(r.updated),
        ]);
    }
    ctx.ui.print_table(&table)?;
    Ok(())
}
