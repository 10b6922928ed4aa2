//! `intercity invite`: introduce two cities to each other with a signed token.

use clap::Subcommand;
use intercity_protocol::identity::CityId;

use super::Ctx;

/// Help epilogue.
pub const HELP: &str = "\
The invited city first tells the inviter its id (`intercity whoami`). The inviter creates a
token for that id (which also adds it to the inviter's roster); the invited city accepts the
token, which adds the inviter with its addresses and, when the daemon runs, connects.

Example:
  brno$  intercity whoami --json | jq -r .id
  milan$ intercity invite create --for 12D3KooW... --name Brno
  milan$ intercity invite create --for 12D3KooW... --name Brno --group \"Smart Social Inclusion\"
  brno$  intercity invite accept ic1...

With --group, the invited city also becomes a member of that working group (a signed change of
the group, so this city must chair it), and receives the group's records once connected.";

/// `invite` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an invitation token for a city
    Create {
        /// The invited city's id
        #[arg(long = "for", value_name = "CITY_ID")]
        invitee: CityId,
        /// The invited city's display name
        #[arg(long)]
        name: String,
        /// A working group to invite the city into (id prefix or exact name): it is added as a
        /// member (this city must chair the group) and the token names the group
        #[arg(long)]
        group: Option<String>,
        /// Address where this city can be dialed, e.g. its public address (repeatable;
        /// default: the running daemon's listen addresses)
        #[arg(long = "addr", value_name = "ADDR")]
        addrs: Vec<String>,
    },
    /// Accept an invitation token
    Accept {
        /// The token (ic1…)
        token: String,
    },
}

/// Runs `invite`.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    let client = ctx.open()?;
    match cmd {
        Command::Create {
            invitee,
            name,
            group,
            addrs,
        } => {
            intercity_node::daemon::parse_addrs(&addrs)?;
            let group = match group {
                Some(g) => Some(add_member(ctx, &client, &g, &invitee, &name)?),
                None => None,
            };
            let token = client.invite(invitee, &name, group, addrs)?;
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
                ctx.ui
                    .line(format!("added {} ({}) to the roster", e.name, e.id))?;
            }
        }
    }
    Ok(())
}

/// Makes `invitee` a member of the group named by `group` (unless it is one already); returns
/// the group's id.
fn add_member(
    ctx: &Ctx,
    client: &intercity_node::Client,
    group: &str,
    invitee: &CityId,
    name: &str,
) -> anyhow::Result<String> {
    let gid = super::query::resolve_group(client, group)?;
    let (id, mut g) = super::group::load(client, &gid)?;
    let key = invitee.to_string();
    if !g.members.contains_key(&key) {
        g.members.insert(
            key.clone(),
            intercity_protocol::record::Member {
                name: name.to_string(),
                role: intercity_protocol::record::Role::Member,
            },
        );
        super::group::save(client, id, g, &format!("add member {name} ({key}, member)"))?;
        ctx.ui
            .note(format!("Added {name} to group {id} as a member"));
    }
    Ok(id.to_string())
}
