//! `intercity calendar`: each working group's meetings as a calendar that people subscribe to
//! (Outlook, Google Calendar, Thunderbird, Apple Calendar), served by the node over HTTP when it
//! runs with `--calendar ADDR` (or `calendar = "ADDR"` in config.toml).

use clap::Subcommand;
use intercity_node::daemon::{Overrides, resolve};
use serde_json::json;

use super::Ctx;
use crate::error::CliError;

/// Help epilogue.
pub const HELP: &str = "\
A feed's URL holds a secret: whoever has the URL sees the group's meetings (read-only), so
share it like a password. `url --new` replaces the secret (the old URL stops working) and
`revoke` withdraws the feed. The node serves the feeds while it runs with --calendar ADDR; when
people reach it through another name (a reverse proxy, a public host name), pass --base.

Examples:
  intercity node run --calendar 0.0.0.0:8088
  intercity calendar url \"Smart Social Inclusion\" --base https://intercity.comune.milano.it
  intercity calendar list
  intercity calendar revoke \"Smart Social Inclusion\"";

/// `calendar` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the URL of a group's calendar feed (made on first use)
    #[command(
        after_help = "Example:\n  intercity calendar url \"Smart Social Inclusion\" --base https://intercity.example.org"
    )]
    Url(UrlArgs),
    /// The calendar feeds this node serves
    #[command(after_help = "Example:\n  intercity calendar list --json")]
    List(BaseArg),
    /// Withdraw a group's calendar feed: its URL stops working
    #[command(after_help = "Example:\n  intercity calendar revoke 7be0")]
    Revoke(GroupArg),
}

/// `calendar url` arguments.
#[derive(clap::Args, Debug)]
pub struct UrlArgs {
    /// The group: its id (or a unique prefix) or its name
    group: String,
    /// Replace the feed's secret: the old URL stops working
    #[arg(long)]
    new: bool,
    #[command(flatten)]
    base: BaseArg,
}

/// Where subscribers reach the node.
#[derive(clap::Args, Debug)]
pub struct BaseArg {
    /// The start of the URL subscribers use, e.g. https://intercity.example.org [default:
    /// http:// and the node's calendar address]
    #[arg(long, value_name = "URL")]
    base: Option<String>,
}

/// A GROUP argument.
#[derive(clap::Args, Debug)]
pub struct GroupArg {
    /// The group: its id (or a unique prefix) or its name
    group: String,
}

impl BaseArg {
    /// The base URL: --base, else the address the running daemon recorded (`served`), else
    /// the calendar address of this shell's configuration.
    fn url(&self, ctx: &Ctx, served: Option<&str>) -> anyhow::Result<String> {
        if let Some(base) = &self.base {
            return Ok(base.trim_end_matches('/').to_string());
        }
        if let Some(addr) = served.and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            && !addr.ip().is_unspecified()
        {
            return Ok(format!("http://{addr}"));
        }
        let overrides = Overrides::from_env(|name| std::env::var(name).ok())?;
        let resolved = resolve(ctx.data_dir()?, None, &overrides)?;
        match resolved.calendar {
            Some(addr) if !addr.ip().is_unspecified() => Ok(format!("http://{addr}")),
            Some(addr) => Err(CliError::Invalid(format!(
                "the node serves calendars on all addresses ({addr}); pass --base with the name people reach it by, e.g. --base http://intercity.example.org:{}",
                addr.port()
            ))
            .into()),
            None => Err(CliError::Invalid(
                "the node serves no calendars: run it with --calendar ADDR (or set calendar = \"ADDR\" in config.toml), or pass --base".into(),
            )
            .into()),
        }
    }
}

/// Runs a `calendar` subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Url(args) => {
            let city = ctx.open()?;
            let (group, _) = super::resolve::group(&city, &args.group)?;
            let feed = city.calendar_feed(group, args.new)?;
            // The address the running daemon recorded, else this shell's configuration; when
            // neither gives one people can reach, the path is printed, with why.
            let base = args.base.url(ctx, feed.address.as_deref());
            let url = base.as_ref().ok().map(|b| format!("{b}{}", feed.path));
            if ctx.ui.is_json() {
                ctx.ui.json(&json!({
                    "group": feed.group.to_string(),
                    "name": feed.name,
                    "path": feed.path,
                    "url": url,
                }))?;
                return Ok(());
            }
            match base {
                Ok(base) => {
                    ctx.ui.line(format!("{base}{}", feed.path))?;
                    ctx.ui.note(format!(
                        "Subscribe to this URL in a calendar app to follow the meetings of '{}'. Share it only with those who may see them.",
                        feed.name
                    ));
                }
                Err(why) => {
                    ctx.ui.line(&feed.path)?;
                    ctx.ui.note(format!(
                        "That is the feed's path; the URL is the node's calendar address followed by it. {why:#}"
                    ));
                }
            }
            Ok(())
        }
        Command::List(base) => {
            let city = ctx.open_read()?;
            let feeds = city.calendar_feeds()?;
            // Without a known address, the paths (see `calendar url`).
            let base = if feeds.is_empty() {
                String::new()
            } else {
                base.url(ctx, feeds[0].address.as_deref())
                    .unwrap_or_default()
            };
            if ctx.ui.is_json() {
                let out: Vec<_> = feeds
                    .iter()
                    .map(|f| {
                        json!({
                            "group": f.group.to_string(),
                            "name": f.name,
                            "url": format!("{base}{}", f.path),
                        })
                    })
                    .collect();
                ctx.ui.json(&out)?;
                return Ok(());
            }
            if feeds.is_empty() {
                ctx.ui
                    .line("No calendar feeds yet; `intercity calendar url GROUP` makes one.")?;
                return Ok(());
            }
            let mut table = ctx.ui.table(&["GROUP", "URL"]);
            for f in &feeds {
                table.add_row(vec![f.name.clone(), format!("{base}{}", f.path)]);
            }
            ctx.ui.print_table(&table)?;
            Ok(())
        }
        Command::Revoke(args) => {
            let city = ctx.open()?;
            let (group, g) = super::resolve::group(&city, &args.group)?;
            city.calendar_revoke(group)?;
            super::done(
                ctx,
                &group.to_string(),
                &format!("Withdrew the calendar feed of '{}'", g.name),
                false,
            )
        }
    }
}
