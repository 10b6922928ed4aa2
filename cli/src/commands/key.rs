//! `intercity key`: the key this city signs and connects with, and passing it on.

use clap::Subcommand;

use super::Ctx;

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
    }
    Ok(())
}
