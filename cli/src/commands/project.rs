//! `intercity project`: projects led by this city (or that it may edit).

use std::path::PathBuf;

use clap::Subcommand;
use intercity_node::Client;
use intercity_protocol::record::{Figure, Kind, Partner, Project, ProjectStatus, Record};

use super::{Ctx, city_label, commit_edit, done, overlay_file, set_list, set_opt, with_id};
use crate::error::CliError;
use crate::input;
use crate::ui::{bullets, list};

/// Help epilogue.
pub const HELP: &str = "\
Examples:
  intercity project add --name MiGenerationLab --status running --theme \"youth employment\" \\
      --partner \"Fondazione Cariplo:ngo\" --partner \"Politecnico di Milano:university\" \\
      --outcome \"young people trained=120 people\" --budget-eur 500000
  intercity project edit 9c1e --status completed --end 2019-12-31
  intercity project show 9c1e
  intercity project list";

/// `project` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Add a project led by this city; prints its id
    #[command(
        after_help = "Example:\n  intercity project add --name \"Milan Social Innovation Platform\" --status running --start 2016-01-01"
    )]
    Add(AddArgs),
    /// Change fields of a project; repeatable flags replace the whole list, unspecified fields stay
    #[command(
        after_help = "Example:\n  intercity project edit 9c1e --status completed --related 3f2a --partner-city Brno --partner-city Riga"
    )]
    Edit(EditArgs),
    /// Show a project
    #[command(after_help = "Example:\n  intercity project show 9c1e")]
    Show(ShowArgs),
    /// Withdraw a project (owner only): it leaves the listings; its signed history stays
    #[command(after_help = "Example:\n  intercity project delete 3f2a")]
    Delete(ShowArgs),
    /// List the projects held by this node
    #[command(after_help = "Example:\n  intercity project list --json")]
    List(super::query::FilterArgs),
}

/// The fields a project flag can set.
#[derive(clap::Args, Debug)]
pub struct Fields {
    /// Name of the project
    #[arg(long)]
    pub name: Option<String>,
    /// Description (long texts: --from-file)
    #[arg(long)]
    pub description: Option<String>,
    /// Display name of the lead city [default on add: this city's name]
    #[arg(long, value_name = "CITY")]
    pub lead_city: Option<String>,
    /// Display name of a partner city (repeatable)
    #[arg(long = "partner-city", value_name = "CITY")]
    pub partner_cities: Vec<String>,
    /// A partner organisation, NAME:SECTOR with sector private|ngo|university|public (repeatable)
    #[arg(long = "partner", value_name = "NAME:SECTOR", value_parser = input::partner)]
    pub partners: Vec<Partner>,
    /// Status: planned, running or completed
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    pub status: Option<ProjectStatus>,
    /// Start date, YYYY-MM-DD
    #[arg(long, value_name = "DATE", value_parser = input::date_or_empty)]
    pub start: Option<String>,
    /// End date, YYYY-MM-DD
    #[arg(long, value_name = "DATE", value_parser = input::date_or_empty)]
    pub end: Option<String>,
    /// Funding programme, e.g. "Horizon 2020"
    #[arg(long)]
    pub funding: Option<String>,
    /// Budget in euros
    #[arg(long, value_name = "EUR")]
    pub budget_eur: Option<u64>,
    /// An outcome figure LABEL=VALUE[ UNIT], e.g. "young people trained=120 people" (repeatable)
    #[arg(long = "outcome", value_name = "LABEL=VALUE[ UNIT]", value_parser = input::figure)]
    pub outcomes: Vec<Figure>,
    /// Id (or unique prefix) of a related practice (repeatable)
    #[arg(long = "related", value_name = "PRACTICE_ID")]
    pub related: Vec<String>,
    /// A theme / tag (repeatable)
    #[arg(long = "theme", value_name = "THEME")]
    pub themes: Vec<String>,
    /// Id of another city allowed to edit (repeatable)
    #[arg(long = "editor", value_name = "CITY_ID", value_parser = input::city_id)]
    pub editors: Vec<String>,
    /// A JSON object with the project's fields ("-": stdin); flags override it
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
}

fn parse_status(s: &str) -> Result<ProjectStatus, String> {
    s.parse()
        .map_err(|e: intercity_protocol::record::RecordError| e.to_string())
}

impl Fields {
    fn apply(self, city: &Client, p: &mut Project) -> anyhow::Result<()> {
        let related = self
            .related
            .iter()
            .map(|r| Ok(super::resolve::record(city, r, Kind::Practice)?.to_string()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some(v) = self.name {
            p.name = v;
        }
        if let Some(v) = self.description {
            p.description = v;
        }
        if let Some(v) = self.lead_city {
            p.lead_city = v;
        }
        set_list(&mut p.partner_cities, self.partner_cities);
        set_list(&mut p.partners, self.partners);
        if let Some(v) = self.status {
            p.status = v;
        }
        set_opt(&mut p.start, self.start);
        set_opt(&mut p.end, self.end);
        set_opt(&mut p.funding, self.funding);
        if let Some(v) = self.budget_eur {
            p.budget_eur = Some(v);
        }
        set_list(&mut p.outcomes, self.outcomes);
        set_list(&mut p.related_practices, related);
        set_list(&mut p.themes, self.themes);
        set_list(&mut p.editors, self.editors);
        Ok(())
    }
}

/// `project add` arguments.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    fields: Fields,
}

/// `project edit` arguments.
#[derive(clap::Args, Debug)]
pub struct EditArgs {
    /// The project's id (or a unique prefix)
    id: String,
    #[command(flatten)]
    fields: Fields,
}

/// `project show` arguments.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The project's id (or a unique prefix)
    id: String,
}

/// Runs a `project` subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    let cmd = match cmd {
        Command::List(filters) => {
            return super::query::list_kind(
                ctx,
                intercity_node::catalog::UnitKind::Project,
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
            let mut base = Project::new(city.id().to_string(), "");
            base.lead_city = city.profile().name.clone();
            let mut p = project(overlay_file(&Record::from(base), overlay.as_ref())?)?;
            args.fields.apply(&city, &mut p)?;
            p.owner = city.id().to_string();
            let name = p.name.clone();
            let id = city
                .create(&Record::from(p), &format!("add project '{name}'"))?
                .to_string();
            done(ctx, &id, &format!("Added project {id} '{name}'"), true)
        }
        Command::Edit(args) => {
            let id = super::resolve::record(&city, &args.id, Kind::Project)?;
            let before = city.record(id)?;
            let mut p = project(overlay_file(&before, overlay.as_ref())?)?;
            args.fields.apply(&city, &mut p)?;
            let changed = commit_edit(&city, id, &before, Record::from(p), "edit project")?;
            done(
                ctx,
                &id.to_string(),
                &format!("Updated project {id}: {}", changed.join(", ")),
                false,
            )
        }
        Command::Delete(args) => super::delete(ctx, &city, &args.id, Kind::Project),
        Command::Show(args) => {
            let id = super::resolve::record(&city, &args.id, Kind::Project)?;
            let record = city.record(id)?;
            if ctx.ui.is_json() {
                ctx.ui.json(&with_id(&id.to_string(), &record))?;
                return Ok(());
            }
            let p = project(record)?;
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
            let outcomes: Vec<String> = p
                .outcomes
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}{}",
                        f.label,
                        f.value,
                        if f.unit.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", f.unit)
                        }
                    )
                })
                .collect();
            ctx.ui.fields(&[
                ("id", id.to_string()),
                ("name", p.name.clone()),
                ("status", p.status.to_string()),
                ("lead city", p.lead_city.clone()),
                ("owner", city_label(&city, &p.owner)),
                ("editors", p.editors.join("\n")),
                ("partner cities", list(&p.partner_cities)),
                ("partners", bullets(&partners)),
                ("dates", dates),
                ("funding", p.funding.clone().unwrap_or_default()),
                (
                    "budget",
                    p.budget_eur.map(|b| format!("€{b}")).unwrap_or_default(),
                ),
                ("themes", list(&p.themes)),
                ("outcomes", bullets(&outcomes)),
                ("related", p.related_practices.join("\n")),
                ("description", p.description.clone()),
            ])?;
            Ok(())
        }
        Command::List(_) => unreachable!("listed above"),
    }
}

fn project(record: Record) -> anyhow::Result<Project> {
    match record {
        Record::Project(p) => Ok(p),
        other => {
            Err(CliError::Invalid(format!("expected a project, found a {}", other.kind())).into())
        }
    }
}
