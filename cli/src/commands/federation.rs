//! `intercity federation`: the federation this city is in, its members and their roles.

use clap::Subcommand;
use comfy_table::Color;
use intercity_node::control::ops;
use intercity_node::roster::{Federation, Standing, steward_word, stewards};
use intercity_protocol::record::Role;

use super::Ctx;
use crate::error::CliError;

/// Help epilogue.
pub const HELP: &str = "\
A federation is one shared, signed membership record: its stewards admit and remove cities,
and every member node trusts, dials and serves every member with no operator action. A city
joins by an invitation from a steward (`intercity invite create`); `peers block` still wins
locally. A node is in one federation at most (docs/operations.md §4).

Examples:
  intercity federation create --name EUROCITIES
  intercity federation members
  intercity federation admit 12D3KooWBrno... --name Brno
  intercity federation role Brno steward
  intercity federation remove Brno";

/// `federation` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a federation with this city as its first steward; prints its id
    #[command(after_help = "Example:\n  intercity federation create --name EUROCITIES")]
    Create {
        /// Its name
        #[arg(long)]
        name: String,
        /// What it is for
        #[arg(long, default_value = "")]
        charter: String,
    },
    /// Show the federation: name, id, stewards, members, this city's role
    #[command(after_help = "Example:\n  intercity federation show")]
    Show,
    /// List the members: role, where they can be reached, and whether this node reached them
    #[command(after_help = "Example:\n  intercity federation members --json")]
    Members,
    /// Admit a city (stewards only); every member node trusts it once the change reaches it
    #[command(
        after_help = "Cities usually join with an invitation (`intercity invite create`); this admits one\nby its id.\n\nExample:\n  intercity federation admit 12D3KooWBrno... --name Brno"
    )]
    Admit {
        /// The city's id (or its name, if this node knows it)
        city: String,
        /// Its display name
        #[arg(long, default_value = "")]
        name: String,
        /// Admit it as a steward
        #[arg(long)]
        steward: bool,
    },
    /// Remove a city (stewards only): every member node disconnects it and refuses its new
    /// entries; its records stay
    #[command(after_help = "Example:\n  intercity federation remove Brno")]
    Remove {
        /// The city's name or id
        city: String,
    },
    /// Stop following the federation: this node no longer trusts its members (but for those
    /// added with `peers add`); the stewards remove this city from the record
    #[command(after_help = "Example:\n  intercity federation leave")]
    Leave,
    /// Make a member a steward, or a steward a member (stewards only)
    #[command(after_help = "Example:\n  intercity federation role Brno steward")]
    Role {
        /// The city's name or id
        city: String,
        /// steward or member
        #[arg(value_parser = parse_role)]
        role: Role,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s.to_ascii_lowercase().as_str() {
        "steward" | "chair" => Ok(Role::Chair),
        "member" => Ok(Role::Member),
        _ => Err(format!("`{s}` is not a role: steward or member")),
    }
}

/// Runs a `federation` subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    let client = ctx.open_for(matches!(cmd, Command::Show | Command::Members))?;
    match cmd {
        Command::Create { name, charter } => {
            let id = client.call(ops::FederationCreate {
                name: name.clone(),
                charter,
            })?;
            super::done(
                ctx,
                &id.to_string(),
                &format!(
                    "Created federation {id} '{name}', stewarded by this city; `intercity invite create` invites cities into it"
                ),
                true,
            )
        }
        Command::Show => show(ctx, &client),
        Command::Members => members(ctx, &client),
        Command::Admit {
            city,
            name,
            steward,
        } => {
            let role = if steward { Role::Chair } else { Role::Member };
            set(ctx, &client, city, name, role, "admitted")
        }
        Command::Role { city, role } => set(ctx, &client, city, String::new(), role, "set"),
        Command::Leave => {
            let id = client.call(ops::FederationLeave {})?;
            super::done(
                ctx,
                &id.to_string(),
                &format!(
                    "This node no longer follows federation {id}: its members are not trusted here any more; ask a steward to remove this city from it"
                ),
                false,
            )
        }
        Command::Remove { city } => {
            let (id, m) = client.call(ops::FederationRemove { city })?;
            if ctx.ui.is_json() {
                ctx.ui
                    .json(&serde_json::json!({"id": id.to_string(), "name": m.name}))?;
            } else {
                ctx.ui.line(format!(
                    "removed {} ({id}) from the federation: member nodes disconnect it as the change reaches them",
                    m.name
                ))?;
            }
            Ok(())
        }
    }
}

fn set(
    ctx: &Ctx,
    client: &intercity_node::Client,
    city: String,
    name: String,
    role: Role,
    verb: &str,
) -> anyhow::Result<()> {
    let (id, m) = client.call(ops::FederationSet { city, name, role })?;
    if ctx.ui.is_json() {
        ctx.ui.json(&serde_json::json!({
            "id": id.to_string(),
            "name": m.name,
            "role": steward_word(m.role),
        }))?;
    } else {
        ctx.ui.line(format!(
            "{verb} {} ({id}) as {}",
            m.name,
            steward_word(m.role)
        ))?;
    }
    Ok(())
}

/// The federation and its record, or a clear error.
fn held(
    client: &intercity_node::Client,
) -> anyhow::Result<(Federation, intercity_protocol::record::Group)> {
    match client.federation()? {
        Some(f) => match f.record.clone() {
            Some(g) => Ok((f, g)),
            None => Err(CliError::Invalid(format!(
                "this city follows federation {} but does not hold its record yet: it comes at the first contact with a member (`intercity node run`)",
                f.id
            ))
            .into()),
        },
        None => Err(CliError::Invalid(
            "this city is in no federation: `intercity federation create` starts one, `intercity invite accept` joins one"
                .into(),
        )
        .into()),
    }
}

fn show(ctx: &Ctx, client: &intercity_node::Client) -> anyhow::Result<()> {
    let (f, g) = held(client)?;
    if ctx.ui.is_json() {
        ctx.ui.json(&f)?;
        return Ok(());
    }
    let me = client.id().to_string();
    let stewards = stewards(&g);
    ctx.ui.fields(&[
        ("federation", g.name.clone()),
        ("id", f.id.to_string()),
        ("charter", g.charter.clone()),
        ("members", g.members.len().to_string()),
        ("stewards", stewards.join(", ")),
        (
            "this city",
            g.members
                .get(&me)
                .map(|m| steward_word(m.role).to_string())
                .unwrap_or_else(|| "not a member (removed, or not admitted yet)".into()),
        ),
    ])?;
    Ok(())
}

fn members(ctx: &Ctx, client: &intercity_node::Client) -> anyhow::Result<()> {
    let (_, g) = held(client)?;
    let peers = client.roster()?;
    let status = client.status()?;
    let me = client.id().to_string();
    let rows: Vec<serde_json::Value> = g
        .members
        .iter()
        .map(|(id, m)| {
            let peer = peers.iter().find(|p| p.entry.id.to_string() == *id);
            let seen = status.peers.iter().find(|p| p.id == *id);
            serde_json::json!({
                "id": id,
                "name": m.name,
                "role": steward_word(m.role),
                "this_city": *id == me,
                "blocked": peer.is_some_and(|p| p.standing == Standing::Blocked),
                "addrs": g.addresses.get(id).map(|a| a.addrs.clone()).unwrap_or_default(),
                "country": g.addresses.get(id).map(|a| a.country.clone()).unwrap_or_default(),
                "connected": seen.is_some_and(|p| p.connected),
                "reached": *id == me || seen.is_some_and(|p| p.connected || p.last_sync.is_some()),
            })
        })
        .collect();
    if ctx.ui.is_json() {
        ctx.ui.json(&rows)?;
        return Ok(());
    }
    let mut table = ctx
        .ui
        .table(&["CITY", "ID", "ROLE", "ADDRESSES", "REACHED"]);
    for r in &rows {
        let name = r["name"].as_str().unwrap_or_default();
        let name = if r["this_city"] == true {
            format!("{name} (this city)")
        } else if r["blocked"] == true {
            format!("{name} (blocked here)")
        } else {
            name.to_string()
        };
        let role = r["role"].as_str().unwrap_or_default();
        let reached = if r["this_city"] == true {
            "-"
        } else if r["connected"] == true {
            "connected"
        } else if r["reached"] == true {
            "yes"
        } else {
            "never"
        };
        table.add_row(vec![
            ctx.ui.cell(name, Color::Reset),
            ctx.ui
                .cell(r["id"].as_str().unwrap_or_default(), Color::Reset),
            ctx.ui.cell(
                role,
                if role == "steward" {
                    Color::Yellow
                } else {
                    Color::Reset
                },
            ),
            ctx.ui.cell(
                r["addrs"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default(),
                Color::Reset,
            ),
            ctx.ui.cell(reached, Color::Reset),
        ]);
    }
    ctx.ui.print_table(&table)?;
    if !client.via_daemon() {
        ctx.ui
            .note("REACHED is known while the daemon runs (`intercity node run`)");
    }
    Ok(())
}
