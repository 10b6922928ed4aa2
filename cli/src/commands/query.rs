//! `intercity search` and `intercity list`, and the filters every listing shares (`--city`,
//! `--tag`, `--sector`, `--group`, `--status`, `--since`, `--until`, `--sort`, `--limit`).
//! Both read the catalog (see `intercity_node::catalog`), locally or through the daemon.

use comfy_table::Color;
use intercity_node::Client;
use intercity_node::catalog::{Filter, Found, Hit, Query, Sort, UnitKind};
use intercity_protocol::record::{Kind, Sector};

use super::Ctx;
use crate::error::CliError;
use crate::input;
use crate::ui::{iso8601, short, unique_prefix_len};

/// Help epilogue of `search`.
pub const SEARCH_HELP: &str = "\
Every word must match; a trailing * matches the start of a word (employ* finds employment).
Titles weigh more than summaries and themes, which weigh more than bodies.

Examples:
  intercity search youth employment
  intercity search \"social innov*\" --kind practice --city Milan
  intercity search employment --kind project --sector private,ngo,university --all
  intercity search inclusion --since 2017-01-01 --limit 5 --json";

/// Help epilogue of `list`.
pub const LIST_HELP: &str = "\
Examples:
  intercity list --kind project --status running --sort title
  intercity list --tag youth,employment --all
  intercity list --kind project --sector private,ngo,university --all
  intercity list --kind agenda --since 2017-01-01 --until 2017-12-31 --sort date";

/// The filters of every listing command (the kind is chosen by the command or `--kind`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only this city's records: display name (any case) or city id; repeatable
    #[arg(long = "city", value_name = "CITY")]
    pub cities: Vec<String>,
    /// Only records with one of these themes (comma-separated; all of them with --all); a tag
    /// matches a theme holding its words: youth matches "youth employment"
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Partner sectors: private, ngo, university, public (comma-separated; all with --all)
    #[arg(long = "sector", value_name = "SECTOR", value_delimiter = ',', value_parser = input::sector)]
    pub sectors: Vec<Sector>,
    /// Require every --tag and every --sector given, not just one
    #[arg(long)]
    pub all: bool,
    /// Only this working group and its agendas: group id prefix or exact name
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Project status (planned, running, completed) or agenda status (draft, published, held);
    /// comma-separated
    #[arg(long = "status", value_name = "STATUS", value_delimiter = ',', value_parser = input::status)]
    pub statuses: Vec<String>,
    /// Only records in these languages or translated into them, ISO 639 codes
    /// (comma-separated); search words are then looked up in these languages only. Projects,
    /// groups and agendas count as English
    #[arg(long = "language", value_name = "LANG", value_delimiter = ',', value_parser = input::language)]
    pub languages: Vec<String>,
    /// Only dates reaching this day or later (record dates, meeting days), YYYY-MM-DD
    #[arg(long, value_name = "DATE", value_parser = input::date)]
    pub since: Option<String>,
    /// Only dates beginning this day or earlier, YYYY-MM-DD
    #[arg(long, value_name = "DATE", value_parser = input::date)]
    pub until: Option<String>,
    /// Order: relevance, updated (newest first), date (earliest first) or title
    /// [default: relevance for search, date for agendas, else updated]
    #[arg(long, value_name = "ORDER", value_parser = input::sort)]
    pub sort: Option<Sort>,
    /// Show at most N results; 0 shows all [default: 20 for search, 100 for lists]
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// `--kind`, for the commands that span kinds.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KindArg {
    /// Only these kinds: practice, project, group, agenda (comma-separated)
    #[arg(long = "kind", value_name = "KIND", value_delimiter = ',', value_parser = input::unit_kind)]
    pub kinds: Vec<UnitKind>,
}

/// `search` arguments.
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// The words to find: every word must match; `a OR b`, `NOT word` (or `-word` inside a
    /// quoted query) to exclude, `'"a phrase"'`, `word*` for a prefix
    #[arg(required = true, num_args = 1.., value_name = "TEXT")]
    pub text: Vec<String>,
    #[command(flatten)]
    pub kind: KindArg,
    #[command(flatten)]
    pub filters: FilterArgs,
}

/// `list` arguments.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub kind: KindArg,
    #[command(flatten)]
    pub filters: FilterArgs,
}

impl FilterArgs {
    /// The catalog query for these flags (resolving `--group` through `city`).
    pub fn query(
        &self,
        city: &Client,
        kinds: Vec<UnitKind>,
        text: Option<String>,
        default_limit: usize,
    ) -> anyhow::Result<Query> {
        let group = match &self.group {
            Some(g) => Some(resolve_group(city, g)?),
            None => None,
        };
        if self.sort == Some(Sort::Relevance) && text.is_none() {
            return Err(CliError::Invalid(
                "--sort relevance needs search words (`intercity search`)".into(),
            )
            .into());
        }
        Ok(Query {
            text,
            filter: Filter {
                kinds,
                cities: self.cities.clone(),
                tags: self.tags.clone(),
                sectors: self.sectors.clone(),
                all: self.all,
                group,
                statuses: self.statuses.clone(),
                since: self.since.clone(),
                until: self.until.clone(),
                languages: self.languages.clone(),
            },
            sort: self.sort,
            limit: self.limit.unwrap_or(default_limit),
        })
    }
}

/// A group's record id from an id prefix or its exact name (any case).
pub fn resolve_group(city: &Client, text: &str) -> anyhow::Result<String> {
    Ok(super::resolve::record(city, text, Kind::Group)?.to_string())
}

/// Runs `search`.
pub fn search(ctx: &Ctx, args: SearchArgs) -> anyhow::Result<()> {
    let city = ctx.open_read()?;
    let text = args.text.join(" ");
    let query = args
        .filters
        .query(&city, args.kind.kinds, Some(text.clone()), 20)?;
    let found = city.query(&query)?;
    if ctx.ui.is_json() {
        ctx.ui.json(&found)?;
        return Ok(());
    }
    if found.hits.is_empty() {
        ctx.ui.note(format!(
            "No results for \"{text}\". Try fewer words, a prefix such as `employ*`, or fewer filters."
        ));
        return Ok(());
    }
    let n = id_len(&found);
    let mut out = String::new();
    for (i, hit) in found.hits.iter().enumerate() {
        let u = &hit.unit;
        let title = ctx.ui.paint(&u.title, Color::White);
        out.push_str(&format!("{:>2}. {title}\n", i + 1));
        let mut facts = vec![u.kind.to_string()];
        for s in [&u.city, &u.group_name, &u.status] {
            if !s.is_empty() && !facts.contains(s) {
                facts.push(s.clone());
            }
        }
        if let Some(d) = dates(hit) {
            facts.push(d);
        }
        facts.push(short(&u.id, n).to_string());
        out.push_str(&format!("    {}\n", facts.join(" · ")));
        if let Some(snippet) = &hit.snippet {
            out.push_str(&format!(
                "    {}\n",
                highlight(ctx, snippet, &hit.highlights)
            ));
        }
    }
    ctx.ui.line(out.trim_end())?;
    shown_note(ctx, &found);
    Ok(())
}

/// Runs `list`.
pub fn list(ctx: &Ctx, args: ListArgs) -> anyhow::Result<()> {
    let city = ctx.open_read()?;
    let query = args.filters.query(&city, args.kind.kinds, None, 100)?;
    let found = city.query(&query)?;
    print(ctx, &found, Layout::Mixed)
}

/// Runs a per-kind `list` (`practice list`, `project list`, `agenda list`).
pub fn list_kind(ctx: &Ctx, kind: UnitKind, filters: FilterArgs) -> anyhow::Result<()> {
    let city = ctx.open_read()?;
    let mut query = filters.query(&city, vec![kind], None, 100)?;
    if kind == UnitKind::Agenda && query.sort.is_none() {
        query.sort = Some(Sort::Date);
    }
    let found = city.query(&query)?;
    let layout = match kind {
        UnitKind::Practice => Layout::Practice,
        UnitKind::Project => Layout::Project,
        UnitKind::Agenda => Layout::Agenda,
        UnitKind::Group => Layout::Mixed,
    };
    print(ctx, &found, layout)
}

/// Columns of a listing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Any kinds.
    Mixed,
    /// Practices.
    Practice,
    /// Projects.
    Project,
    /// Meeting agendas.
    Agenda,
}

/// Prints a listing: a table, or with --json the array of units.
pub fn print(ctx: &Ctx, found: &Found, layout: Layout) -> anyhow::Result<()> {
    if ctx.ui.is_json() {
        let rows: Vec<_> = found.hits.iter().map(|h| &h.unit).collect();
        ctx.ui.json(&rows)?;
        shown_note(ctx, found);
        return Ok(());
    }
    let header: &[&str] = match layout {
        Layout::Mixed => &["ID", "KIND", "TITLE", "CITY", "DATES", "STATUS", "UPDATED"],
        Layout::Practice => &["ID", "TITLE", "CITY", "THEMES", "DATES", "UPDATED"],
        Layout::Project => &["ID", "NAME", "LEAD CITY", "STATUS", "DATES", "UPDATED"],
        Layout::Agenda => &["ID", "GROUP", "TITLE", "DATES", "HOST", "STATUS", "ITEMS"],
    };
    let mut table = ctx.ui.table(header);
    let n = id_len(found);
    for hit in &found.hits {
        let u = &hit.unit;
        let id = short(&u.id, n).to_string();
        let dates = dates(hit).unwrap_or_default();
        let updated = iso8601(u.updated)[..10].to_string();
        table.add_row(match layout {
            Layout::Mixed => vec![
                id,
                u.kind.to_string(),
                u.title.clone(),
                u.city.clone(),
                dates,
                u.status.clone(),
                updated,
            ],
            Layout::Practice => vec![
                id,
                u.title.clone(),
                u.city.clone(),
                u.themes.join(", "),
                dates,
                updated,
            ],
            Layout::Project => vec![
                id,
                u.title.clone(),
                u.city.clone(),
                u.status.clone(),
                dates,
                updated,
            ],
            Layout::Agenda => vec![
                id,
                u.group_name.clone(),
                u.title.clone(),
                dates,
                u.city.clone(),
                u.status.clone(),
                u.items.to_string(),
            ],
        });
    }
    if found.hits.is_empty() {
        ctx.ui.note("Nothing matches.");
        return Ok(());
    }
    ctx.ui.print_table(&table)?;
    shown_note(ctx, found);
    Ok(())
}

/// "Showing 100 of 2,345" on stderr when the limit cut the results.
fn shown_note(ctx: &Ctx, found: &Found) {
    if found.hits.len() < found.total {
        ctx.ui.note(format!(
            "Showing {} of {} results; --limit N shows more, --limit 0 all.",
            found.hits.len(),
            found.total
        ));
    }
}

/// Id characters shown: unique among the rows shown, at least 8.
fn id_len(found: &Found) -> usize {
    let ids: Vec<&str> = found.hits.iter().map(|h| h.unit.id.as_str()).collect();
    unique_prefix_len(&ids, 8)
}

fn dates(hit: &Hit) -> Option<String> {
    let (first, last) = hit.unit.span()?;
    Some(if first == last {
        first.to_string()
    } else {
        format!("{first} – {last}")
    })
}

/// The snippet with its matches highlighted: bold yellow with colours, else `*word*`.
fn highlight(ctx: &Ctx, snippet: &str, ranges: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(snippet.len() + 8 * ranges.len());
    let mut at = 0;
    for &(a, b) in ranges {
        let (Some(before), Some(word)) = (snippet.get(at..a), snippet.get(a..b)) else {
            continue;
        };
        out.push_str(before);
        if ctx.ui.colours() {
            out.push_str(&ctx.ui.paint(word, Color::Yellow));
        } else {
            out.push('*');
            out.push_str(word);
            out.push('*');
        }
        at = b;
    }
    out.push_str(snippet.get(at..).unwrap_or_default());
    out
}

/// Runs `reindex`.
pub fn reindex(ctx: &Ctx) -> anyhow::Result<()> {
    let city = ctx.open()?;
    let started = std::time::Instant::now();
    let spinner = ctx.ui.spinner("Rebuilding the search catalog…");
    let units = city.reindex()?;
    spinner.finish_and_clear();
    if ctx.ui.is_json() {
        ctx.ui.json(&serde_json::json!({ "units": units }))?;
    } else {
        ctx.ui.note(format!(
            "Reindexed {units} practices, projects, groups and agendas in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}
