//! `intercity staff`: who may use this city's node besides its operator, and this machine's
//! staff key.

use std::path::Path;

use clap::Subcommand;
use intercity_node::city::{Access, StaffMember};
use intercity_node::control::ops;
use intercity_protocol::identity::CityKey;

use super::Ctx;
use crate::error::CliError;
use crate::ui;

/// Help epilogue.
pub const HELP: &str = "\
Staff members work on the city's records through its node: they read, search, create, edit,
import and export; keys, the roster, the federation, invitations and backups stay the
operator's. Every change a staff member makes names them: `history` shows \"Milan (Anna Rossi)\"
on every node of the federation.

On the server, a staff member uses their own Unix account: the operator runs the node with
--staff-group GROUP (or staff_group = \"GROUP\" in config.toml), puts the account in that group,
and adds it here with --user. From another machine, the staff member makes a staff key there
(`intercity staff key`), gives its id to the operator, who adds it with --key; then every command
takes --node ADDR (the node's address with its city id). `staff remove` ends either at once.

Examples:
  intercity staff add \"Anna Rossi\" --user anna
  intercity staff key                     # on Anna's laptop: prints her key's id
  intercity staff add \"Anna Rossi (laptop)\" --key 12D3KooWAnna…
  intercity --node /ip4/203.0.113.5/tcp/4001/p2p/12D3KooWMilan… practice list
  intercity staff list
  intercity staff remove \"Anna Rossi (laptop)\"";

/// `staff` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Let a person use this node: a Unix user of the staff group, or a staff key
    #[command(
        after_help = "Examples:\n  intercity staff add \"Anna Rossi\" --user anna\n  intercity staff add \"Anna Rossi\" --key 12D3KooW…"
    )]
    Add(AddArgs),
    /// End a staff member's access (by name, Unix user or key)
    #[command(after_help = "Example:\n  intercity staff remove \"Anna Rossi\"")]
    Remove {
        /// Their name, Unix user or key
        who: String,
    },
    /// This city's staff
    #[command(after_help = "Example:\n  intercity staff list --json")]
    List,
    /// This machine's staff key: made on first use; prints its id for the city's operator
    #[command(
        after_help = "The key is a file (mode 0600) in the configuration directory, or --staff-key FILE.\n\nExample:\n  intercity staff key"
    )]
    Key {
        /// Replace the key with a new one (the old id stops working once the operator removes it)
        #[arg(long)]
        new: bool,
    },
}

/// `staff add` arguments.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// Their name, as their changes will show it
    name: String,
    /// Their Unix user on this server (a member of the node's staff group)
    #[arg(
        long,
        value_name = "USER",
        conflicts_with = "key",
        required_unless_present = "key"
    )]
    user: Option<String>,
    /// Their staff key's id, from `intercity staff key` on their machine
    #[arg(long, value_name = "ID")]
    key: Option<String>,
}

/// Reads a staff key file (64 hex characters).
pub fn load_key(path: &Path) -> anyhow::Result<CityKey> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Invalid(format!(
            "no staff key at {} ({e}): make one with `intercity staff key` and give its id to your city's operator",
            path.display()
        ))
    })?;
    let bytes = hex::decode(text.trim())
        .map_err(|e| CliError::Invalid(format!("{} is not a staff key: {e}", path.display())))?;
    Ok(CityKey::from_secret_bytes(&bytes)
        .map_err(|e| CliError::Invalid(format!("{} is not a staff key: {e}", path.display())))?)
}

/// Makes a staff key file (mode 0600), replacing one with `replace`.
fn make_key(path: &Path, replace: bool) -> anyhow::Result<CityKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = CityKey::generate()?;
    let tmp = path.with_extension("key.new");
    // A file left by an earlier try keeps its mode when opened: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(hex::encode(key.secret_bytes()).as_bytes())?;
    f.sync_all()?;
    if path.exists() && !replace {
        std::fs::remove_file(&tmp)?;
        return load_key(path);
    }
    std::fs::rename(&tmp, path)?;
    Ok(key)
}

fn print(ctx: &Ctx, staff: &[StaffMember]) -> anyhow::Result<()> {
    if ctx.ui.is_json() {
        ctx.ui.json(&staff)?;
        return Ok(());
    }
    let mut table = ctx.ui.table(&["name", "access", "added"]);
    for s in staff {
        table.add_row(vec![
            ctx.ui.cell(&s.name, comfy_table::Color::Reset),
            ctx.ui.cell(s.access.to_string(), comfy_table::Color::Reset),
            ctx.ui.cell(ui::iso8601(s.added), comfy_table::Color::Reset),
        ]);
    }
    ctx.ui.print_table(&table)?;
    Ok(())
}

/// Runs a `staff` subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Add(args) => {
            let access = match (args.user, args.key) {
                (Some(u), _) => Access::User(u),
                (None, Some(k)) => Access::Key(k.trim().to_string()),
                (None, None) => unreachable!("clap requires --user or --key"),
            };
            let city = ctx.open()?;
            let member = city.call(ops::StaffAdd {
                name: args.name,
                access,
            })?;
            if ctx.ui.is_json() {
                ctx.ui.json(&member)?;
            } else {
                ctx.ui
                    .line(format!("added {} ({})", member.name, member.access))?;
                match &member.access {
                    Access::User(u) => ctx.ui.note(format!(
                        "{u} uses the node's control socket: run the node with --staff-group GROUP and put {u} in GROUP"
                    )),
                    Access::Key(_) => ctx.ui.note(format!(
                        "from their machine: intercity --node ADDR/p2p/{} status (ADDR: an address of this node they can reach)",
                        city.id()
                    )),
                }
            }
            Ok(())
        }
        Command::Remove { who } => {
            let city = ctx.open()?;
            let member = city.call(ops::StaffRemove { who })?;
            if ctx.ui.is_json() {
                ctx.ui.json(&member)?;
            } else {
                ctx.ui
                    .line(format!("removed {} ({})", member.name, member.access))?;
            }
            Ok(())
        }
        Command::List => {
            let city = ctx.open_read()?;
            let staff = city.call(ops::StaffList {})?;
            print(ctx, &staff)
        }
        Command::Key { new } => {
            let path = ctx.staff_key_path()?;
            let key = if path.exists() && !new {
                load_key(&path)?
            } else {
                make_key(&path, new)?
            };
            if ctx.ui.is_json() {
                ctx.ui.json(&serde_json::json!({
                    "id": key.id().to_string(),
                    "file": path.display().to_string(),
                }))?;
            } else {
                ctx.ui.line(key.id().to_string())?;
                ctx.ui.note(format!(
                    "This machine's staff key ({}). Give the id above to your city's operator: `intercity staff add \"YOUR NAME\" --key {}`",
                    path.display(),
                    key.id()
                ));
            }
            Ok(())
        }
    }
}
