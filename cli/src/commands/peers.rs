//! `intercity peers`: the roster of trusted cities.

use clap::Subcommand;
use intercity_protocol::identity::CityId;

use super::Ctx;
use crate::ui;

/// Help epilogue.
pub const HELP: &str = "\
Only roster cities may connect to this node, and only their entries are accepted.

Example:
  intercity peers list
  intercity peers add 12D3KooW... --name Brno --addr /ip4/192.0.2.7/tcp/4001
  intercity peers block 12D3KooW...";

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
        /// The city id
        id: CityId,
    },
    /// Block a city: never connect, drop its entries
    Block {
        /// The city id
        id: CityId,
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
                .table(&["name", "id", "addresses", "blocked", "added"]);
            for e in &roster {
                table.add_row(vec![
                    ctx.ui.cell(&e.name, comfy_table::Color::Reset),
                    ctx.ui.cell(e.id, comfy_table::Color::Reset),
                    ctx.ui.cell(e.addrs.join("\n"), comfy_table::Color::Reset),
                    ctx.ui.cell(
                        if e.blocked { "blocked" } else { "" },
                        comfy_table::Color::Red,
                    ),
                    ctx.ui.cell(ui::iso8601(e.added), comfy_table::Color::Reset),
                ]);
            }
            ctx.ui.print_table(&table)?;
        }
        Command::Add { id, name, addrs } => {
            intercity_node::daemon::parse_addrs(&addrs)?;
            let e = client.roster_add(id, &name, &addrs)?;
            report(ctx, &e, "added")?;
        }
        Command::Remove { id } => {
            client.roster_remove(id)?;
            ctx.ui.note(format!("removed {id} from the roster"));
        }
        Command::Block { id } => {
            let e = client.roster_block(id)?;
            report(ctx, &e, "blocked")?;
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
