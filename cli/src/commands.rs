//! The command tree (clap derive) and its dispatch. One module per command group, as in jj.

pub mod agenda;
pub mod backup;
pub mod calendar;
pub mod completions;
pub mod demo;
pub mod exchange;
pub mod federation;
pub mod group;
pub mod history;
pub mod init;
pub mod invite;
pub mod key;
pub mod man;
pub mod node;
pub mod peers;
pub mod practice;
pub mod project;
pub mod query;
pub mod resolve;
pub mod staff;
pub mod status;
pub mod whoami;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use intercity_node::Client;
use intercity_protocol::identity::CityId;
use intercity_protocol::record::Record;

use crate::error::{CliError, EXIT_CODES_HELP};
use crate::ui::{ColorArg, ColorChoice, LogFormat, Ui};

/// Share good practices, projects and working-group agendas between cities, peer to peer.
#[derive(Parser, Debug)]
#[command(name = "intercity", version, after_help = EXIT_CODES_HELP, max_term_width = 100)]
pub struct Cli {
    /// Options of every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every command.
#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// The city's data directory [default: the platform's data directory, e.g.
    /// ~/.local/share/intercity]
    #[arg(long, global = true, env = "INTERCITY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print JSON instead of tables (lists are arrays; `show` prints the record with its "id")
    #[arg(long, global = true)]
    pub json: bool,
    /// When to use colours (NO_COLOR is respected by `auto`)
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
    /// Log lines on stderr as text, or as one JSON object per line (for a log collector;
    /// RUST_LOG chooses what is logged)
    #[arg(long, global = true, value_enum, value_name = "FORMAT", env = "INTERCITY_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Work as a staff member on the city's node at this address, from another machine (over
    /// libp2p, with this machine's staff key; see `intercity staff --help`), e.g.
    /// /ip4/203.0.113.5/tcp/4001/p2p/12D3KooW…
    #[arg(long, global = true, env = "INTERCITY_NODE", value_name = "ADDR")]
    pub node: Option<String>,
    /// This machine's staff key [default: staff.key in the platform's configuration directory,
    /// e.g. ~/.config/intercity]
    #[arg(long, global = true, env = "INTERCITY_STAFF_KEY", value_name = "FILE")]
    pub staff_key: Option<PathBuf>,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create this node's city: a new key pair, a profile and an empty store
    #[command(after_help = init::HELP)]
    Init(init::Args),
    /// Show this city's id, name, country and data directory
    #[command(after_help = whoami::HELP)]
    Whoami,
    /// Good practices: add, edit, show, list
    #[command(subcommand, after_help = practice::HELP)]
    Practice(practice::Command),
    /// Projects: add, edit, show, list
    #[command(subcommand, after_help = project::HELP)]
    Project(project::Command),
    /// Working groups and their members
    #[command(subcommand, after_help = group::HELP)]
    Group(group::Command),
    /// Meeting agendas of working groups, and their items
    #[command(subcommand, after_help = agenda::HELP)]
    Agenda(agenda::Command),
    /// Search practices, projects, groups and agendas: ranked, with highlighted snippets
    #[command(after_help = query::SEARCH_HELP)]
    Search(query::SearchArgs),
    /// List practices, projects, groups and agendas, filtered and sorted
    #[command(after_help = query::LIST_HELP)]
    List(query::ListArgs),
    /// Export records (JSON, JSON Lines, CSV) or meetings (iCalendar)
    #[command(after_help = exchange::EXPORT_HELP)]
    Export(exchange::ExportArgs),
    /// Import practices and projects from JSON Lines or CSV, signed by this city
    #[command(after_help = exchange::IMPORT_HELP)]
    Import(exchange::ImportArgs),
    /// Back the city up while its node runs: store checkpoint, key, profile, config
    #[command(after_help = backup::BACKUP_HELP)]
    Backup(backup::BackupArgs),
    /// Restore a backup into the data directory; it signs again once caught up with its feeds
    #[command(after_help = backup::RESTORE_HELP)]
    Restore(backup::RestoreArgs),
    /// Calendar feeds: each working group's meetings, for calendar apps to subscribe to
    #[command(subcommand, after_help = calendar::HELP)]
    Calendar(calendar::Command),
    /// The city's staff: who may use this node, on the server or from their own machine
    #[command(subcommand, after_help = staff::HELP)]
    Staff(staff::Command),
    /// Rebuild the search catalog from the stored records
    #[command(after_help = "Example:\n  intercity reindex")]
    Reindex,
    /// Every change to a record: when, by which city, verified or rejected
    #[command(after_help = history::HELP)]
    History(history::Args),
    /// Run this city's node (the daemon that syncs with peers)
    #[command(subcommand)]
    Node(node::Command),
    /// The daemon's configuration: what it would run with, and from where
    #[command(subcommand, after_help = node::CONFIG_HELP)]
    Config(node::ConfigCommand),
    /// This city, its peers, and whether it is up to date with each
    #[command(after_help = status::HELP)]
    Status,
    /// The federation: its members, stewards and address book
    #[command(subcommand, after_help = federation::HELP)]
    Federation(federation::Command),
    /// The roster: cities this node trusts, and why
    #[command(subcommand, after_help = peers::HELP)]
    Peers(peers::Command),
    /// Invitations: introduce two cities to each other
    #[command(subcommand, after_help = invite::HELP)]
    Invite(invite::Command),
    /// This city's key: show it, or pass the city's signing right to a new one
    #[command(subcommand, after_help = key::HELP)]
    Key(key::Command),
    /// Run the local multi-city federation demo
    #[command(after_help = demo::HELP)]
    Demo(demo::Args),
    /// Print a shell completion script
    #[command(after_help = completions::HELP)]
    Completions(completions::Args),
    /// Print the manual: a man page, one page per command, or the Markdown reference
    #[command(after_help = man::HELP)]
    Man(man::Args),
}

/// What every command gets: where the city lives and how to print.
#[derive(Debug)]
pub struct Ctx {
    /// The output channel.
    pub ui: Ui,
    /// Logs are JSON lines: the daemon says what it says on stderr as log events then.
    pub log_json: bool,
    /// The data directory was given (`--data-dir` or `INTERCITY_DATA_DIR`), not the default.
    pub explicit_dir: bool,
    data_dir: Option<PathBuf>,
    /// The node to reach as a staff member (`--node`), and this machine's staff key file.
    node: Option<String>,
    staff_key: Option<PathBuf>,
}

impl Ctx {
    /// The data directory: `--data-dir`, `INTERCITY_DATA_DIR` or the platform default.
    pub fn data_dir(&self) -> anyhow::Result<&Path> {
        if let Some(node) = &self.node {
            return Err(CliError::Invalid(format!(
                "this command works on this machine's own data directory, not on the node at {node}: run it without --node (or on the node's server)"
            ))
            .into());
        }
        self.data_dir.as_deref().ok_or_else(|| {
            CliError::Invalid(
                "cannot determine a data directory (no home directory); pass --data-dir DIR".into(),
            )
            .into()
        })
    }

    /// This machine's staff key file: `--staff-key`, or `staff.key` in the configuration
    /// directory.
    pub fn staff_key_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.staff_key {
            return Ok(p.clone());
        }
        directories::ProjectDirs::from("eu", "Intercity", "intercity")
            .map(|p| p.config_dir().join("staff.key"))
            .ok_or_else(|| {
                CliError::Invalid(
                    "cannot determine a configuration directory (no home directory); pass --staff-key FILE"
                        .into(),
                )
                .into()
            })
    }

    /// The city's node on another machine, reached as a staff member (`--node`).
    fn remote(&self, addr: &str) -> anyhow::Result<Client> {
        let addr: libp2p::Multiaddr = addr.trim().parse().map_err(|e| {
            CliError::Invalid(format!(
                "--node {addr}: not a multiaddress (e.g. /ip4/203.0.113.5/tcp/4001/p2p/12D3KooW…): {e}"
            ))
        })?;
        let key = staff::load_key(&self.staff_key_path()?)?;
        Ok(Client::remote(&addr, &key)?)
    }

    /// Opens the city in the data directory.
    pub fn open(&self) -> anyhow::Result<Client> {
        if let Some(addr) = &self.node {
            return self.remote(addr);
        }
        let dir = self.data_dir()?;
        tracing::debug!(dir = %dir.display(), "opening city");
        Ok(Client::open(dir)?)
    }

    /// Opens the city read-only when `read_only` (see [`Ctx::open_read`]), else for writing.
    pub fn open_for(&self, read_only: bool) -> anyhow::Result<Client> {
        if read_only {
            self.open_read()
        } else {
            self.open()
        }
    }

    /// Opens the city for a command that only reads (quicker; no lock on the store).
    pub fn open_read(&self) -> anyhow::Result<Client> {
        if let Some(addr) = &self.node {
            return self.remote(addr);
        }
        let dir = self.data_dir()?;
        tracing::debug!(dir = %dir.display(), "opening city to read");
        Ok(Client::open_read_only(dir)?)
    }
}

/// Runs the command.
pub fn run(cli: Cli, color: ColorChoice) -> anyhow::Result<()> {
    let explicit_dir = cli.global.data_dir.is_some();
    let data_dir = cli.global.data_dir.or_else(|| {
        directories::ProjectDirs::from("eu", "Intercity", "intercity")
            .map(|p| p.data_dir().to_path_buf())
    });
    let ctx = Ctx {
        ui: Ui::new(cli.global.json, color),
        log_json: cli.global.log_format == LogFormat::Json,
        explicit_dir,
        data_dir,
        node: cli.global.node,
        staff_key: cli.global.staff_key,
    };
    match cli.command {
        Command::Init(args) => init::run(&ctx, args),
        Command::Whoami => whoami::run(&ctx),
        Command::Practice(cmd) => practice::run(&ctx, cmd),
        Command::Project(cmd) => project::run(&ctx, cmd),
        Command::Group(cmd) => group::run(&ctx, cmd),
        Command::Agenda(cmd) => agenda::run(&ctx, cmd),
        Command::History(args) => history::run(&ctx, args),
        Command::Node(cmd) => node::run(&ctx, cmd),
        Command::Config(cmd) => node::config(&ctx, cmd),
        Command::Status => status::run(&ctx),
        Command::Federation(cmd) => federation::run(&ctx, cmd),
        Command::Calendar(cmd) => calendar::run(&ctx, cmd),
        Command::Staff(cmd) => staff::run(&ctx, cmd),
        Command::Peers(cmd) => peers::run(&ctx, cmd),
        Command::Invite(cmd) => invite::run(&ctx, cmd),
        Command::Key(cmd) => key::run(&ctx, cmd),
        Command::Demo(args) => demo::run(&ctx, args),
        Command::Completions(args) => completions::run(args),
        Command::Search(args) => query::search(&ctx, args),
        Command::List(args) => query::list(&ctx, args),
        Command::Export(args) => exchange::export(&ctx, args),
        Command::Import(args) => exchange::import(&ctx, args),
        Command::Reindex => query::reindex(&ctx),
        Command::Backup(args) => backup::backup(&ctx, args),
        Command::Restore(args) => backup::restore(&ctx, args),
        Command::Man(args) => man::run(args),
    }
}

/// The record overlaid with the keys of a `--from-file` JSON object (when given), parsed back.
/// The result must be of the same kind as `base`.
pub fn overlay_file(base: &Record, file: Option<&Overlay>) -> anyhow::Result<Record> {
    let Some((file, overlay)) = file else {
        return Ok(base.clone());
    };
    let mut json = base.to_json();
    let overlay = overlay.clone();
    if let Some(map) = json.as_object_mut() {
        map.extend(overlay);
    }
    let record = Record::from_json(json).with_context(|| format!("in {}", file.display()))?;
    if record.kind() != base.kind() {
        return Err(CliError::Invalid(format!(
            "{}: \"kind\" is {}, but this command works on a {}",
            file.display(),
            record.kind(),
            base.kind()
        ))
        .into());
    }
    Ok(record)
}

/// A `--from-file` read: the file's name and its JSON object.
pub type Overlay = (PathBuf, serde_json::Map<String, serde_json::Value>);

/// Reads a `--from-file` (`-`: stdin) before the store is opened: a command must not hold the
/// store (or a daemon connection) while it waits for its input.
pub fn read_overlay(file: Option<&Path>) -> anyhow::Result<Option<Overlay>> {
    file.map(|f| Ok((f.to_path_buf(), crate::input::read_object(f)?)))
        .transpose()
}

/// Names of the top-level fields that differ between two records, for commit messages.
pub fn changed_fields(before: &Record, after: &Record) -> Vec<String> {
    let (a, b) = (before.to_json(), after.to_json());
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Sets an optional text field from a flag: absent leaves it, empty clears it.
pub fn set_opt(field: &mut Option<String>, flag: Option<String>) {
    if let Some(v) = flag {
        *field = if v.is_empty() { None } else { Some(v) };
    }
}

/// Replaces a list when the repeatable flag was given at least once.
pub fn set_list<T>(field: &mut Vec<T>, flag: Vec<T>) {
    if !flag.is_empty() {
        *field = flag;
    }
}

/// Prints the result of a change: with --json `{"id": ...}` (plus `extra`), else the id on stdout
/// when `print_id`, and a confirmation on stderr.
pub fn done(ctx: &Ctx, id: &str, confirmation: &str, print_id: bool) -> anyhow::Result<()> {
    if ctx.ui.is_json() {
        ctx.ui.json(&serde_json::json!({ "id": id }))?;
    } else {
        if print_id {
            ctx.ui.line(id)?;
        }
        ctx.ui.note(confirmation);
    }
    Ok(())
}

/// `practice delete` / `project delete`: the owner's tombstone edit.
pub fn delete(
    ctx: &Ctx,
    city: &Client,
    prefix: &str,
    kind: intercity_protocol::record::Kind,
) -> anyhow::Result<()> {
    let id = resolve::record(city, prefix, kind)?;
    city.edit(id, &format!("delete {kind}"), |r| {
        r.set_deleted(true);
        Ok(())
    })?;
    done(ctx, &id.to_string(), &format!("Deleted {kind} {id}"), false)
}

/// The record's JSON with its `"id"` first.
pub use intercity_node::exchange::with_id;

/// Signs the change from `before` to `after` of record `id` with a message naming the changed
/// fields (`"<what> '<title>': field, field"`); returns those fields.
pub fn commit_edit(
    city: &Client,
    id: intercity_protocol::entry::DocId,
    before: &Record,
    after: Record,
    what: &str,
) -> anyhow::Result<Vec<String>> {
    let changed = changed_fields(before, &after);
    if changed.is_empty() {
        return Err(intercity_node::CityError::Unchanged.into());
    }
    let message = format!("{what} '{}': {}", after.title(), changed.join(", "));
    city.edit(id, &message, |r| {
        *r = after;
        Ok(())
    })?;
    Ok(changed)
}

/// How many characters of a record id tables show: at least 8, unique among all records.
pub fn short_id_len(city: &Client) -> anyhow::Result<usize> {
    let all = city.list(None)?;
    let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    Ok(crate::ui::unique_prefix_len(&ids, 8))
}

/// The city id with " (this city)" when it is ours, or after the name this node knows it by
/// (roster or federation): "Brno (12D3KooW…)".
pub fn city_label(city: &Client, id: &str) -> String {
    city_labels(Some(city))(id)
}

/// [`city_label`] for many ids, reading the roster once; without a client, ids as they are.
pub fn city_labels(city: Option<&Client>) -> impl Fn(&str) -> String {
    let own = city.map(|c| c.id().to_string());
    let names: Vec<(String, String)> = city
        .and_then(|c| c.roster().ok())
        .unwrap_or_default()
        .into_iter()
        // Names come from other cities: nothing in them may move the cursor or reorder text.
        .map(|p| {
            (
                p.entry.id.to_string(),
                intercity_node::roster::clean_name(&p.entry.name),
            )
        })
        .collect();
    move |id: &str| {
        if own.as_deref() == Some(id) {
            return format!("{id} (this city)");
        }
        match names.iter().find(|(known, _)| known == id) {
            Some((_, name)) => format!("{name} ({id})"),
            None => id.to_string(),
        }
    }
}

/// A city id, or the name of a city in the roster or the federation (`intercity peers list`).
pub fn city_arg(client: &Client, text: &str) -> anyhow::Result<CityId> {
    if let Ok(id) = text.parse::<CityId>() {
        return Ok(id);
    }
    let named = client
        .roster()?
        .into_iter()
        .map(|p| (p.entry.name, p.entry.id));
    one_named(
        text,
        named,
        "cities",
        format!("`{text}` is neither a city id nor a name this node knows (intercity peers list)"),
    )
}

/// The one city of `candidates` (name, id) named `text` (ASCII case ignored): `none` is the
/// error when there is none, and several give an error listing their ids (`what` names them).
pub fn one_named(
    text: &str,
    candidates: impl IntoIterator<Item = (String, CityId)>,
    what: &str,
    none: String,
) -> anyhow::Result<CityId> {
    let found: Vec<CityId> = candidates
        .into_iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(text.trim()))
        .map(|(_, id)| id)
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(CliError::Invalid(none).into()),
        many => Err(CliError::Invalid(format!(
            "`{text}` names {} {what} ({}); give the id",
            many.len(),
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words of a shell command line up to a pipe or a second command: spaces split,
    /// single and double quotes group, a backslash escapes the next character (what the
    /// guides' commands use).
    fn shell_words(line: &str) -> Vec<String> {
        let (mut out, mut word, mut quote, mut any) = (Vec::new(), String::new(), None, false);
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, ' ') => {
                    if any {
                        out.push(std::mem::take(&mut word));
                    }
                    any = false;
                }
                (None, '#') if !any => break,
                // A pipe or a second command: the rest is not this program's.
                (None, '|' | ';' | '&' | '>') => break,
                (None, '\'' | '"') => (quote, any) = (Some(c), true),
                (Some(q), c) if c == q => quote = None,
                (Some('\''), c) | (None | Some(_), c) if c != '\\' || quote == Some('\'') => {
                    word.push(c);
                    any = true;
                }
                (_, _) => {
                    word.extend(chars.next());
                    any = true;
                }
            }
        }
        if any {
            out.push(word);
        }
        out
    }

    /// Every `intercity …` command of a guide's shell blocks (continued lines joined), except
    /// those holding an elided id or a placeholder (`...`, `…`, `<GROUP>`), which only a person
    /// completes.
    fn commands_of(markdown: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut in_block = false;
        let mut pending = String::new();
        for line in markdown.lines() {
            if line.starts_with("```") {
                in_block = line == "```sh";
                continue;
            }
            if !in_block {
                continue;
            }
            let line = line.trim();
            if let Some(start) = line.strip_suffix('\\') {
                pending.push_str(start);
                continue;
            }
            let whole = format!("{pending}{line}");
            pending.clear();
            let elided = ["...", "…", "<"].iter().any(|e| whole.contains(e));
            if whole.starts_with("intercity ") && !elided {
                out.push(whole);
            }
        }
        out
    }

    #[test]
    fn every_command_of_the_staff_guide_and_the_readme_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut checked = 0;
        for doc in ["docs/staff-guide.md", "README.md", "docs/operations.md"] {
            let text = std::fs::read_to_string(root.join(doc)).expect("guide");
            for command in commands_of(&text) {
                let words = shell_words(&command);
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("{doc}: `{command}` does not parse:\n{e}");
                }
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} commands found");
    }

    #[test]
    fn shell_words_follow_quotes() {
        assert_eq!(
            shell_words(r#"intercity a "b c" 'd "e"' f\ g  # note"#),
            ["intercity", "a", "b c", "d \"e\"", "f g"]
        );
    }
}
