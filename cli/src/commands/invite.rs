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
  brno$  intercity invite accept ic1...";

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
        /// A working group (id) the invitation is about
        #[arg(long)]
        group: Option<String>,
        /// Address where this city can be dialed (repeatable; default: the daemon's)
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
