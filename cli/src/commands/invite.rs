//! `intercity invite`: bring a new city into the federation with a signed token.

use clap::Subcommand;
use intercity_protocol::identity::CityId;

use super::Ctx;
use crate::ui;

/// Help epilogue.
pub const HELP: &str = "\
The inviting city creates a token and sends it to the new city by any channel; the new city
accepts it, which adds the inviter (with its addresses) to its roster. When both daemons run,
the new city connects and presents the token: the inviter learns the new city then, adds it to
its roster (and to the working group, with --group) and they sync. A daemon run with
--approve-joins (or `approve_joins = true` in config.toml) queues the join for its operator
instead: `invite pending`, then `invite approve` or `invite deny`.

In a federation (`intercity federation show`), only a steward invites, and the city that joins
becomes a member of the federation: every member node trusts, dials and serves it from then on,
with no operator action.

A token is for one city: the new city runs `intercity init` and sends its id (`intercity
whoami`), and the inviter names it with `--for CITY_ID`; only that city can redeem the token,
for 7 days. `--anyone` makes a token that whoever holds it can redeem (once, or --uses times):
it is a secret until it is used, and while it is out any peer may connect to present it (a few
at a time), so prefer `--for`. `invite list` shows the tokens out and `invite revoke` withdraws
one.

Example:
  brno$  intercity whoami
  milan$ intercity invite create --for 12D3KooW...
  milan$ intercity invite create --for 12D3KooW... --group \"Smart Social Inclusion\" --addr /dns4/ic.milano.example/tcp/4001
  milan$ intercity invite create --anyone --uses 3
  brno$  intercity invite accept ic1...
  milan$ intercity invite pending
  milan$ intercity invite approve 12D3KooW...";

/// `invite` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an invitation token (print it and send it to the new city)
    Create {
        /// Only this city may redeem the token (its id, from `intercity whoami`, or the name
        /// of a city this node knows)
        #[arg(long = "for", value_name = "CITY", required_unless_present = "anyone")]
        invitee: Option<String>,
        /// Any city holding the token may redeem it (instead of --for)
        #[arg(long, conflicts_with = "invitee")]
        anyone: bool,
        /// A working group the joining city becomes a member of (id prefix or exact name;
        /// this city must chair it)
        #[arg(long)]
        group: Option<String>,
        /// Address where this city can be dialed, e.g. its public address (repeatable;
        /// default: the running daemon's listen addresses)
        #[arg(long = "addr", value_name = "ADDR")]
        addrs: Vec<String>,
        /// How many cities may join with this token
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        uses: u32,
    },
    /// Accept an invitation token
    Accept {
        /// The token (ic1…)
        token: String,
    },
    /// List the invitations this city has out
    List,
    /// Withdraw an invitation
    Revoke {
        /// Its code (or the first characters of it, at least 4), from `invite list`
        code: String,
    },
    /// List the cities that presented an invitation and wait for approval
    Pending,
    /// Admit a city that waits for approval
    Approve {
        /// The city id, or the name it announced (`invite pending` lists them)
        city: String,
    },
    /// Refuse a city that waits for approval (its token is refused to it from then on)
    Deny {
        /// The city id, or the name it announced
        city: String,
    },
}

/// Runs `invite`.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    let client = ctx.open_for(matches!(cmd, Command::List | Command::Pending))?;
    match cmd {
        Command::Create {
            invitee,
            anyone: _,
            group,
            addrs,
            uses,
        } => {
            intercity_node::daemon::parse_addrs(&addrs)?;
            let invitee = match invitee {
                Some(c) => Some(super::city_arg(&client, &c)?),
                None => None,
            };
            let group = match group {
                Some(g) => Some(super::query::resolve_group(&client, &g)?.parse()?),
                None => None,
            };
            if addrs.is_empty() && !client.via_daemon() {
                ctx.ui.note(
                    "the token names no address, so the invited city cannot reach this one: \
                     give this city's public address with --addr, or create the token while \
                     the daemon runs (it puts its listen addresses in)",
                );
            }
            let token = client.invite(invitee, group, addrs, uses)?;
            if let Some(f) = client.federation()? {
                let name = f.record.map(|g| g.name).unwrap_or_else(|| f.id.to_string());
                ctx.ui.note(format!(
                    "the city that joins with it becomes a member of the federation {name}"
                ));
            }
            if ctx.ui.is_json() {
                ctx.ui.json(&serde_json::json!({ "token": token }))?;
            } else {
                ctx.ui.line(token)?;
            }
        }
        Command::Accept { token } => {
            let e = client.accept(&token)?;
            if ctx.ui.is_json() {
                ctx.ui.json(&e)?;
            } else {
                ctx.ui.line(format!(
                    "added {} ({}) to the roster; the token is presented when the daemon connects to it",
                    e.name, e.id
                ))?;
            }
        }
        Command::List => {
            let list = client.invitations()?;
            if ctx.ui.is_json() {
                ctx.ui.json(&list)?;
                return Ok(());
            }
            let mut table =
                ctx.ui
                    .table(&["code", "for", "group", "uses left", "joined", "expires"]);
            for i in &list {
                table.add_row(vec![
                    ctx.ui.cell(&i.code, comfy_table::Color::Reset),
                    ctx.ui.cell(
                        i.invitee.map(|c| c.to_string()).unwrap_or_default(),
                        comfy_table::Color::Reset,
                    ),
                    ctx.ui.cell(
                        i.group.as_deref().map(|g| ui::short(g, 12)).unwrap_or(""),
                        comfy_table::Color::Reset,
                    ),
                    ctx.ui.cell(i.uses, comfy_table::Color::Reset),
                    ctx.ui.cell(
                        i.joined
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("\n"),
                        comfy_table::Color::Reset,
                    ),
                    ctx.ui
                        .cell(ui::iso8601(i.expires), comfy_table::Color::Reset),
                ]);
            }
            ctx.ui.print_table(&table)?;
        }
        Command::Revoke { code } => {
            let i = client.revoke(&code)?;
            if ctx.ui.is_json() {
                ctx.ui.json(&i)?;
            } else {
                ctx.ui.line(format!("revoked invitation {}", i.code))?;
            }
        }
        Command::Pending => {
            let joins = client.pending_joins()?;
            if ctx.ui.is_json() {
                ctx.ui.json(&joins)?;
                return Ok(());
            }
            let mut table = ctx.ui.table(&["name", "id", "addresses", "group", "asked"]);
            for j in &joins {
                table.add_row(vec![
                    ctx.ui.cell(&j.name, comfy_table::Color::Reset),
                    ctx.ui.cell(j.id, comfy_table::Color::Reset),
                    ctx.ui.cell(j.addrs.join("\n"), comfy_table::Color::Reset),
                    ctx.ui.cell(
                        j.group.as_deref().map(|g| ui::short(g, 12)).unwrap_or(""),
                        comfy_table::Color::Reset,
                    ),
                    ctx.ui
                        .cell(ui::iso8601(j.requested), comfy_table::Color::Reset),
                ]);
            }
            ctx.ui.print_table(&table)?;
        }
        Command::Approve { city } => {
            let id = waiting(&client, &city)?;
            let e = client.approve_join(id)?;
            if ctx.ui.is_json() {
                ctx.ui.json(&e)?;
            } else {
                ctx.ui
                    .line(format!("admitted {} ({}) to the roster", e.name, e.id))?;
            }
        }
        Command::Deny { city } => {
            let id = waiting(&client, &city)?;
            let j = client.deny_join(id)?;
            if ctx.ui.is_json() {
                ctx.ui.json(&j)?;
            } else {
                ctx.ui.line(format!("refused {} ({})", j.name, j.id))?;
            }
        }
    }
    Ok(())
}

/// A city waiting for approval, by id or by the name it announced.
fn waiting(client: &intercity_node::Client, text: &str) -> anyhow::Result<CityId> {
    if let Ok(id) = text.parse::<CityId>() {
        return Ok(id);
    }
    let named = client.pending_joins()?.into_iter().map(|j| (j.name, j.id));
    super::one_named(
        text,
        named,
        "waiting cities",
        format!(
            "no city named `{text}` waits for approval (`intercity invite pending` lists them)"
        ),
    )
}
