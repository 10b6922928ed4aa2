//! `intercity peers`: the roster of trusted cities.

use clap::Subcommand;
use intercity_node::roster::{Standing, steward_word};
use intercity_protocol::identity::CityId;

use super::Ctx;
use crate::ui;

/// Help epilogue.
pub const HELP: &str = "\
Only trusted cities may connect to this node, and only their entries are accepted: the
members of its federation (`intercity federation members`) and the cities added here by hand
(a private link outside the federation). A block always wins here.

Example:
  intercity peers list
  intercity peers add 12D3KooW... --name Brno --addr /ip4/192.0.2.7/tcp/4001
  intercity peers block Brno
  intercity peers unblock Brno";

/// `peers` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the roster
    List,
    /// Add (or update) a city by its id
    Add {
        /// The city id (PeerId, 12D3KooW…)
        id: CityId,
        /// Its display name
        #[arg(long)]
        name: String,
        /// A multiaddress to dial it at (repeatable)
        #[arg(long = "addr", value_name = "ADDR")]
        addrs: Vec<String>,
    },
    /// Remove a city from the roster
    Remove {
        /// The city's id or name
        city: String,
    },
    /// Block a city: never connect, drop its entries (wins over the federation)
    Block {
        /// The city's id or name
        city: String,
    },
    /// Unblock a city: trusted again as before the block (added here, or as a federation
    /// member)
    Unblock {
        /// The city's id or name
        city: String,
    },
}

/// Runs `peers`.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    let client = ctx.open_for(matches!(cmd, Command::List))?;
    match cmd {
        Command::List => {
            let roster = client.roster()?;
            if ctx.ui.is_json() {
                ctx.ui.json(&roster)?;
                return Ok(());
            }
            let mut table = ctx
                .ui
                .table(&["name", "id", "addresses", "trusted as", "added"]);
            for p in &roster {
                let e = &p.entry;
                let (why, color) = match (p.standing, p.role) {
                    (Standing::Federation, role) => (
                        format!("federation {}", steward_word(role.unwrap_or_default())),
                        comfy_table::Color::Reset,
                    ),
                    (Standing::Local, Some(role)) => (
                        format!("local addition; federation {}", steward_word(role)),
                        comfy_table::Color::Reset,
                    ),
                    (Standing::Local, None) => ("local addition".into(), comfy_table::Color::Reset),
                    (Standing::Inviter, _) => (
                        "inviter (until the federation's record arrives)".into(),
                        comfy_table::Color::Reset,
                    ),
                    (Standing::Blocked, _) => ("blocked".into(), comfy_table::Color::Red),
                    (Standing::Former, _) => (
                        "not trusted: left the federation".into(),
                        comfy_table::Color::Red,
                    ),
                };
                table.add_row(vec![
                    ctx.ui.cell(&e.name, comfy_table::Color::Reset),
                    ctx.ui.cell(e.id, comfy_table::Color::Reset),
                    ctx.ui.cell(e.addrs.join("\n"), comfy_table::Color::Reset),
                    ctx.ui.cell(why, color),
                    ctx.ui.cell(
                        if e.added > 0 {
                            ui::iso8601(e.added)
                        } else {
                            "-".into()
                        },
                        comfy_table::Color::Reset,
                    ),
                ]);
            }
            ctx.ui.print_table(&table)?;
        }
        Command::Add { id, name, addrs } => {
            intercity_node::daemon::parse_addrs(&addrs)?;
            let e = client.roster_add(id, &name, &addrs)?;
            report(ctx, &e, "added")?;
        }
        Command::Remove { city } => {
            let id = super::city_arg(&client, &city)?;
            client.roster_remove(id)?;
            ctx.ui.note(format!("removed {id} from the roster"));
            if client
                .roster()?
                .iter()
                .any(|p| p.entry.id == id && p.standing == Standing::Federation)
            {
                ctx.ui.note(format!(
                    "{id} stays trusted as a member of the federation: `intercity peers block {id}` keeps it out of this node"
                ));
            }
        }
        Command::Block { city } => {
            let id = super::city_arg(&client, &city)?;
            let e = client.roster_block(id)?;
            report(ctx, &e, "blocked")?;
        }
        Command::Unblock { city } => {
            let id = super::city_arg(&client, &city)?;
            let e = client.call(intercity_node::control::ops::RosterUnblock { id })?;
            report(ctx, &e, "unblocked")?;
        }
    }
    Ok(())
}

fn report(ctx: &Ctx, e: &intercity_node::roster::RosterEntry, what: &str) -> anyhow::Result<()> {
    if ctx.ui.is_json() {
        ctx.ui.json(e)?;
    } else {
        ctx.ui.line(format!("{what} {} ({})", e.name, e.id))?;
    }
    Ok(())
}
