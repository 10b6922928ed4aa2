//! `intercity practice`: good practices owned by this city (or that it may edit).

use std::path::PathBuf;

use clap::Subcommand;
use intercity_protocol::record::{Kind, Partner, Practice, Record};

use super::{Ctx, city_label, commit_edit, done, overlay_file, set_list, set_opt, with_id};
use crate::error::CliError;
use crate::input;
use crate::ui::{bullets, list};

/// Help epilogue.
pub const HELP: &str = "\
Examples:
  intercity practice add --title \"FabriQ social innovation incubator\" --theme \"social innovation\" \\
      --partner \"Fondazione Giordano Dell'Amore:ngo\" --link https://www.fabriq.eu --start 2014-03-01
  intercity practice add --from-file fabriq.json --title \"FabriQ\"
  intercity practice edit 3f2a --outcome \"40 start-ups incubated\" --outcome \"120 jobs\"
  intercity practice show 3f2a
  intercity practice list --json";

/// `practice` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Add a practice owned by this city; prints its id
    #[command(
        after_help = "Example:\n  intercity practice add --title \"FabriQ\" --summary \"Milan's first social innovation incubator\" --theme incubation"
    )]
    Add(AddArgs),
    /// Change fields of a practice; repeatable flags replace the whole list, unspecified fields stay
    #[command(
        after_help = "Examples:\n  intercity practice edit 3f2a --summary \"...\" --theme incubation --theme \"social innovation\"\n  intercity practice edit 3f2a --from-file body.json\n  intercity practice edit 3f2a --contact \"\"   # an empty value clears an optional field"
    )]
    Edit(EditArgs),
    /// Give a practice's title and summary in another language (an English summary beside the
    /// Italian original); search finds the practice in either
    #[command(
        after_help = "Examples:\n  intercity practice translate \"Bilancio partecipativo\" --language en --title \"Participatory budget\" --summary \"Residents decide how to spend 1 % of the budget.\"\n  intercity practice translate 3f2a --language en --remove"
    )]
    Translate(TranslateArgs),
    /// Show a practice
    #[command(after_help = "Example:\n  intercity practice show 3f2a")]
    Show(ShowArgs),
    /// Withdraw a practice (owner only): it leaves the listings; its signed history stays
    #[command(after_help = "Example:\n  intercity practice delete 3f2a")]
    Delete(ShowArgs),
    /// List the practices held by this node
    #[command(after_help = "Example:\n  intercity practice list --json | jq -r '.[].title'")]
    List(super::query::FilterArgs),
}

/// The fields a practice flag can set.
#[derive(clap::Args, Debug)]
pub struct Fields {
    /// Title
    #[arg(long)]
    pub title: Option<String>,
    /// Short summary
    #[arg(long)]
    pub summary: Option<String>,
    /// Full description (long texts: --from-file)
    #[arg(long)]
    pub body: Option<String>,
    /// Display name of the city where it happens [default on add: this city's name]
    #[arg(long)]
    pub city: Option<String>,
    /// ISO 3166 alpha-2 country code, e.g. IT
    #[arg(long, value_name = "CODE")]
    pub country: Option<String>,
    /// A theme / tag (repeatable)
    #[arg(long = "theme", value_name = "THEME")]
    pub themes: Vec<String>,
    /// A partner organisation, NAME:SECTOR with sector private|ngo|university|public (repeatable)
    #[arg(long = "partner", value_name = "NAME:SECTOR", value_parser = input::partner)]
    pub partners: Vec<Partner>,
    /// An outcome, one sentence (repeatable)
    #[arg(long = "outcome", value_name = "TEXT")]
    pub outcomes: Vec<String>,
    /// A link, http(s):// (repeatable)
    #[arg(long = "link", value_name = "URL")]
    pub links: Vec<String>,
    /// Contact: person, e-mail address, ...
    #[arg(long)]
    pub contact: Option<String>,
    /// Language of the text, ISO 639 code [default on add: en]
    #[arg(long, value_name = "CODE")]
    pub language: Option<String>,
    /// Start date, YYYY-MM-DD
    #[arg(long, value_name = "DATE", value_parser = input::date_or_empty)]
    pub start: Option<String>,
    /// End date, YYYY-MM-DD
    #[arg(long, value_name = "DATE", value_parser = input::date_or_empty)]
    pub end: Option<String>,
    /// Id of another city allowed to edit (repeatable)
    #[arg(long = "editor", value_name = "CITY_ID", value_parser = input::city_id)]
    pub editors: Vec<String>,
    /// A JSON object with the practice's fields ("-": stdin); flags override it
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
}

impl Fields {
    fn apply(self, p: &mut Practice) {
        if let Some(v) = self.title {
            p.title = v;
        }
        if let Some(v) = self.summary {
            p.summary = v;
        }
        if let Some(v) = self.body {
            p.body = v;
        }
        if let Some(v) = self.city {
            p.city = v;
        }
        set_opt(&mut p.country, self.country);
        set_list(&mut p.themes, self.themes);
        set_list(&mut p.partners, self.partners);
        set_list(&mut p.outcomes, self.outcomes);
        set_list(&mut p.links, self.links);
        set_opt(&mut p.contact, self.contact);
        if let Some(v) = self.language {
            p.language = v;
        }
        set_opt(&mut p.start, self.start);
        set_opt(&mut p.end, self.end);
        set_list(&mut p.editors, self.editors);
    }
}

/// `practice translate` arguments.
#[derive(clap::Args, Debug)]
pub struct TranslateArgs {
    /// The practice: its id (or a unique prefix) or its title
    id: String,
    /// The language of the translation, an ISO 639 code (en, it, cs, ...)
    #[arg(long, value_parser = crate::input::language)]
    language: String,
    /// The title in that language
    #[arg(long)]
    title: Option<String>,
    /// The summary in that language
    #[arg(long)]
    summary: Option<String>,
    /// Remove the translation into that language
    #[arg(long, conflicts_with_all = ["title", "summary"])]
    remove: bool,
}

/// `practice add` arguments.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    fields: Fields,
}

/// `practice edit` arguments.
#[derive(clap::Args, Debug)]
pub struct EditArgs {
    /// The practice's id (or a unique prefix)
    id: String,
    #[command(flatten)]
    fields: Fields,
}

/// `practice show` arguments.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The practice's id (or a unique prefix)
    id: String,
}

/// Runs a `practice` subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    let cmd = match cmd {
        Command::List(filters) => {
            return super::query::list_kind(
                ctx,
                intercity_node::catalog::UnitKind::Practice,
                filters,
            );
        }
        other => other,
    };
    // Input first: the store is not held while stdin is read.
    let overlay = super::read_overlay(match &cmd {
        Command::Add(a) => a.fields.from_file.as_deref(),
        Command::Edit(a) => a.fields.from_file.as_deref(),
        _ => None,
    })?;
    let city = ctx.open_for(matches!(cmd, Command::Show(_)))?;
    match cmd {
        Command::Add(args) => {
            let mut base = Practice::new(city.id().to_string(), "", "en");
            base.city = city.profile().name.clone();
            let mut p = practice(overlay_file(&Record::from(base), overlay.as_ref())?)?;
            args.fields.apply(&mut p);
            p.owner = city.id().to_string();
            let title = p.title.clone();
            let id = city
                .create(&Record::from(p), &format!("add practice '{title}'"))?
                .to_string();
            done(ctx, &id, &format!("Added practice {id} '{title}'"), true)
        }
        Command::Edit(args) => {
            let id = super::resolve::record(&city, &args.id, Kind::Practice)?;
            let before = city.record(id)?;
            let mut p = practice(overlay_file(&before, overlay.as_ref())?)?;
            args.fields.apply(&mut p);
            let changed = commit_edit(&city, id, &before, Record::from(p), "edit practice")?;
            done(
                ctx,
                &id.to_string(),
                &format!("Updated practice {id}: {}", changed.join(", ")),
                false,
            )
        }
        Command::Delete(args) => super::delete(ctx, &city, &args.id, Kind::Practice),
        Command::Translate(args) => {
            let id = super::resolve::record(&city, &args.id, Kind::Practice)?;
            let before = city.record(id)?;
            let mut p = practice(before.clone())?;
            if args.remove {
                if p.translations.remove(&args.language).is_none() {
                    return Err(intercity_node::CityError::Unchanged.into());
                }
            } else {
                if args.title.is_none() && args.summary.is_none() {
                    return Err(CliError::Invalid(
                        "give the translation with --title and/or --summary (or --remove it)"
                            .into(),
                    )
                    .into());
                }
                if args.language == p.language {
                    return Err(CliError::Invalid(format!(
                        "the practice is written in `{}` already; edit it with `intercity practice edit`",
                        p.language
                    ))
                    .into());
                }
                let t = p.translations.entry(args.language.clone()).or_default();
                if let Some(v) = args.title {
                    t.title = v;
                }
                if let Some(v) = args.summary {
                    t.summary = v;
                }
            }
            let what = format!("translate ({}) practice", args.language);
            commit_edit(&city, id, &before, Record::from(p), &what)?;
            done(
                ctx,
                &id.to_string(),
                &format!("Updated the {} translation of practice {id}", args.language),
                false,
            )
        }
        Command::Show(args) => {
            let id = super::resolve::record(&city, &args.id, Kind::Practice)?;
            let record = city.record(id)?;
            if ctx.ui.is_json() {
                ctx.ui.json(&with_id(&id.to_string(), &record))?;
                return Ok(());
            }
            let p = practice(record)?;
            let place = match &p.country {
                Some(c) if !p.city.is_empty() => format!("{} ({c})", p.city),
                Some(c) => c.clone(),
                None => p.city.clone(),
            };
            let dates = match (&p.start, &p.end) {
                (Some(s), Some(e)) => format!("{s} – {e}"),
                (Some(s), None) => format!("from {s}"),
                (None, Some(e)) => format!("until {e}"),
                (None, None) => String::new(),
            };
            let partners: Vec<String> = p
                .partners
                .iter()
                .map(|x| format!("{} ({})", x.name, x.sector))
                .collect();
            let translations: Vec<String> = p
                .translations
                .iter()
                .map(|(language, t)| {
                    let mut line = format!("{language}: {}", t.title);
                    if !t.summary.is_empty() {
                        line.push_str(&format!(" — {}", t.summary));
                    }
                    line
                })
                .collect();
            ctx.ui.fields(&[
                ("id", id.to_string()),
                ("title", p.title.clone()),
                ("translations", translations.join("\n")),
                ("city", place),
                ("owner", city_label(&city, &p.owner)),
                ("editors", p.editors.join("\n")),
                ("language", p.language.clone()),
                ("dates", dates),
                ("themes", list(&p.themes)),
                ("partners", bullets(&partners)),
                ("contact", p.contact.clone().unwrap_or_default()),
                ("links", p.links.join("\n")),
                ("summary", p.summary.clone()),
                ("outcomes", bullets(&p.outcomes)),
                ("body", p.body.clone()),
            ])?;
            Ok(())
        }
        Command::List(_) => unreachable!("listed above"),
    }
}

fn practice(record: Record) -> anyhow::Result<Practice> {
    match record {
        Record::Practice(p) => Ok(p),
        other => {
            Err(CliError::Invalid(format!("expected a practice, found a {}", other.kind())).into())
        }
    }
}
