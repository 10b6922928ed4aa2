//! `intercity key`: the key this city signs and connects with, and passing it on.

use clap::Subcommand;

use intercity_protocol::identity::CityId;

use intercity_node::Client;

use super::Ctx;
use crate::error::CliError;

/// Help epilogue.
pub const HELP: &str = "\
A city's id is its first key, for ever: records, groups and rosters name it. The key it signs
and connects with may change. `rotate` makes a new key and a succession statement, signed by
the old key and carried by the new one (docs/protocol.md §15.6): every node then takes the new
key's entries as this city's, and voids anything the old key signs later. Do it when a key may
have leaked, or a person who held it has left. Stop the node first; when it starts again it
shows its peers the statement, and they take the new key.

Example:
  intercity key show
  systemctl stop intercity && intercity key rotate && systemctl start intercity";

/// `key` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show this city's id, its current key, and the keys before it
    Show,
    /// Make a new key and pass this city's signing right to it (the node must be stopped)
    Rotate,
    /// The cities that can vouch for a new key of this city if its key is lost
    #[command(subcommand)]
    Guardians(GuardiansCommand),
    /// Recover a city's key with its guardians' vouches
    #[command(subcommand, after_help = RECOVERY_HELP)]
    Recovery(RecoveryCommand),
}

/// `key guardians` subcommands.
#[derive(Subcommand, Debug)]
pub enum GuardiansCommand {
    /// Show this city's guardians
    Show,
    /// Name this city's guardians (roster names or city ids) and how many must vouch
    Set {
        /// How many guardians must vouch for a new key
        #[arg(long)]
        threshold: u8,
        /// The guardians: roster names or city ids (1 to 16)
        #[arg(required = true)]
        guardians: Vec<String>,
    },
}

/// Help epilogue of `key recovery`.
pub const RECOVERY_HELP: &str = "\
When a city has lost its key (or a thief holds it), its guardians move the city to a new key:

  1. the city, on its node (stopped):   intercity key recovery new-key
     (proposes the recovery from its own store: a token for the guardians. Without a store it
     prints the new key's id, and one guardian starts it from its node:
     intercity key recovery start --city Milan --new-key 12D3KooW...)
  2. each guardian:                      intercity key recovery vouch <token>
     (shows it beside what its node holds; then again with --yes to vouch)
  3. the city, with enough vouches:     intercity key recovery finish <token>
     then start the node: it shows its peers the recovery.

A guardian checks before it vouches: the token names the city, the new key and the last entry
the lost key keeps in each feed. A recovery resting on the city's earliest designation wins over
any other, and over any statement signed with the lost key (docs/protocol.md §15.6).";

/// `key recovery` subcommands.
#[derive(Subcommand, Debug)]
pub enum RecoveryCommand {
    /// The city: make the new key (kept apart until the recovery is finished) and propose the
    /// recovery from this city's store (a token for the guardians)
    NewKey {
        /// The key to recover (default: the city's current key in this store; name the lost
        /// one when a thief's rotation made another key current)
        #[arg(long)]
        key: Option<CityId>,
    },
    /// A guardian: start the recovery of a city to its new key, with this city's vouch
    Start {
        /// The city (roster name or city id)
        #[arg(long)]
        city: String,
        /// The new key's id, as `key recovery new-key` printed it
        #[arg(long)]
        new_key: CityId,
        /// The key to recover (default: the city's current key)
        #[arg(long)]
        key: Option<CityId>,
    },
    /// A guardian: show a recovery token beside what this node holds, then (with --yes) add
    /// this city's vouch
    Vouch {
        /// The token
        token: String,
        /// Vouch: you checked the new key's id with the city, and what stays valid
        #[arg(long)]
        yes: bool,
    },
    /// Anyone: show what a recovery token says
    Show {
        /// The token
        token: String,
    },
    /// The city: finish the recovery with a token enough guardians vouched for
    Finish {
        /// The token
        token: String,
    },
}

/// Feeds and seqs, a line each.
fn seqs(v: &[(String, u64)]) -> String {
    v.iter()
        .map(|(s, n)| format!("{s} up to seq {n}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_recovery(
    ctx: &Ctx,
    client: Option<&Client>,
    info: &intercity_node::city::RecoveryInfo,
) -> anyhow::Result<()> {
    if ctx.ui.is_json() {
        return Ok(ctx.ui.json(info)?);
    }
    let label = super::city_labels(client);
    let list = |v: &[CityId]| {
        v.iter()
            .map(|id| label(&id.to_string()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    ctx.ui.fields(&[
        ("city", label(&info.city.to_string())),
        ("lost key", info.old.to_string()),
        ("new key", info.new.to_string()),
        ("kept of the lost key", seqs(&info.caps)),
        (
            "vouches",
            format!("{} of {} needed", info.vouched.len(), info.threshold),
        ),
        ("guardians", list(&info.guardians)),
        ("vouched", list(&info.vouched)),
        ("held here of the lost key", seqs(&info.held_here)),
        (
            "current key here",
            info.current_here
                .map_or_else(|| "none stands".to_string(), |k| k.to_string()),
        ),
    ])?;
    Ok(ctx.ui.line(&info.token)?)
}

/// Runs `key`.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Show => {
            let info = ctx.open_read()?.key_info()?;
            if ctx.ui.is_json() {
                ctx.ui.json(&info)?;
            } else {
                let retired: Vec<String> = info.retired.iter().map(ToString::to_string).collect();
                ctx.ui.fields(&[
                    ("city", info.city.to_string()),
                    ("key", info.key.to_string()),
                    ("earlier keys", retired.join("\n")),
                ])?;
            }
        }
        Command::Rotate => {
            let done = ctx.open()?.rotate_key()?;
            if ctx.ui.is_json() {
                ctx.ui.json(&done)?;
            } else {
                ctx.ui.fields(&[
                    ("city", done.city.to_string()),
                    ("new key", done.new.to_string()),
                    ("old key", done.old.to_string()),
                    ("statement", done.statement.clone()),
                ])?;
                ctx.ui.note(format!(
                    "The old key's entries after seq {} of its feeds are void on every node from now on. \
                     Start the node: it shows its peers the new key.",
                    done.caps
                        .iter()
                        .map(|(s, n)| format!("{n} ({s})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Command::Guardians(GuardiansCommand::Show) => {
            let g = ctx.open_read()?.guardians()?;
            if ctx.ui.is_json() {
                ctx.ui.json(&g)?;
            } else if let Some(g) = g {
                ctx.ui.fields(&[
                    ("threshold", g.threshold.to_string()),
                    (
                        "guardians",
                        g.guardians
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                ])?;
            } else {
                ctx.ui.note("No guardians named: `intercity key guardians set --threshold 2 Brno Warsaw Utrecht`");
            }
        }
        Command::Guardians(GuardiansCommand::Set {
            threshold,
            guardians,
        }) => {
            let client = ctx.open()?;
            let ids = guardians
                .iter()
                .map(|g| super::city_arg(&client, g))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let g = client.designate_guardians(threshold, ids)?;
            if ctx.ui.is_json() {
                ctx.ui.json(&g)?;
            } else {
                ctx.ui.note(format!(
                    "{} guardians named; {} of them can vouch for a new key of this city",
                    g.guardians.len(),
                    g.threshold
                ));
            }
        }
        Command::Recovery(RecoveryCommand::NewKey { key }) => {
            let dir = ctx.data_dir()?;
            let id = intercity_node::City::recovery_new_key(dir)?;
            match intercity_node::City::recovery_propose(dir, key) {
                Ok(info) => {
                    print_recovery(ctx, None, &info)?;
                    ctx.ui.note(
                        "Send this token to your guardians: each runs `intercity key recovery vouch <token>`, \
                         then passes the token on; finish with `intercity key recovery finish <token>`.",
                    );
                }
                Err(e) => {
                    if ctx.ui.is_json() {
                        ctx.ui
                            .json(&serde_json::json!({ "new_key": id.to_string() }))?;
                    } else {
                        ctx.ui.line(id.to_string())?;
                        ctx.ui.note(format!(
                            "No recovery could be proposed from this data directory ({e}). Give this id to one of \
                             your guardians: `intercity key recovery start --city <this city> --new-key <id>`"
                        ));
                    }
                }
            }
        }
        Command::Recovery(RecoveryCommand::Start { city, new_key, key }) => {
            let client = ctx.open()?;
            let city = super::city_arg(&client, &city)?;
            print_recovery(
                ctx,
                Some(&client),
                &client.recovery_start(city, new_key, key)?,
            )?;
        }
        Command::Recovery(RecoveryCommand::Vouch { token, yes: false }) => {
            let client = ctx.open_read()?;
            print_recovery(ctx, Some(&client), &client.recovery_check(&token)?)?;
            ctx.ui.note(
                "Not vouched yet. Check the new key's id with the city (call someone you know \
                 there) and what stays valid of the lost key; then run again with --yes.",
            );
        }
        Command::Recovery(RecoveryCommand::Vouch { token, yes: true }) => {
            let client = ctx.open()?;
            print_recovery(ctx, Some(&client), &client.recovery_vouch(&token)?)?;
        }
        Command::Recovery(RecoveryCommand::Show { token }) => match ctx.open_read() {
            Ok(client) => print_recovery(ctx, Some(&client), &client.recovery_check(&token)?)?,
            Err(_) => print_recovery(ctx, None, &intercity_node::City::recovery_read(&token)?)?,
        },
        Command::Recovery(RecoveryCommand::Finish { token }) => {
            let dir = ctx.data_dir()?;
            if intercity_node::control::ControlClient::connect(dir).is_some() {
                return Err(CliError::Invalid(
                    "the node runs: stop it first, finish the recovery, then start it again".into(),
                )
                .into());
            }
            let done = intercity_node::City::recovery_finish(dir, &token)?;
            if ctx.ui.is_json() {
                ctx.ui.json(&done)?;
            } else {
                ctx.ui.fields(&[
                    ("city", done.city.to_string()),
                    ("new key", done.new.to_string()),
                    ("lost key", done.old.to_string()),
                ])?;
                ctx.ui
                    .note("Recovered. Start the node: it shows its peers the recovery.");
            }
        }
    }
    Ok(())
}
