//! `intercity export` and `intercity import`: records out to JSON, JSON Lines, CSV or
//! iCalendar, and records in from JSON Lines or CSV (each becomes an entry signed by this city).

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use intercity_node::catalog::UnitKind;
use intercity_node::exchange::{self, Exported, Imported, LineError, Meeting};
use intercity_node::{ImportOutcome, ImportResult};
use intercity_protocol::record::Record;

use super::Ctx;
use super::query::{FilterArgs, KindArg};
use crate::error::CliError;

/// Help epilogue of `export`.
pub const EXPORT_HELP: &str = "\
JSON and JSON Lines carry whole records with their provenance (which city created the
record, which city made the newest change and when, and whether every signature verified).
CSV has one row per record with the columns listed in docs/cli.md. iCalendar has one event
per meeting, with a UID that stays the same, so importing the file again updates the events.
An agenda matched by the filters exports its whole group in JSON, JSON Lines and CSV.

Examples:
  intercity export --format csv --kind project -o projects.csv
  intercity export --format csv --bom -o for-excel.csv
  intercity export --format jsonl -o milan.jsonl --city Milan
  intercity export --format ics --group \"Smart Social Inclusion\" -o meetings.ics
  intercity export --format json --tag youth | jq '.[].title'";

/// Help epilogue of `import`.
pub const IMPORT_HELP: &str = "\
Each record of the file becomes a practice or project of this city, signed by it and sent to
peers: an element of a JSON array (.json, what `export --format json` writes), a line (JSON
Lines, .jsonl) or a row (CSV, .csv, the columns of `export --format csv`). A record with the
`id` of a record this city may edit updates that record instead. Every record is checked
first: if any is bad, each bad one is reported with its line number and field, and nothing is
written (unless --skip-invalid). Whatever `export` writes imports again, in every format,
without duplicates.

Examples:
  intercity import all.json --dry-run
  intercity import practices.jsonl
  intercity import projects.csv
  intercity import partial.csv --skip-invalid";

/// `export --format` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// CSV, one row per record.
    Csv,
    /// iCalendar (RFC 5545), one event per meeting.
    Ics,
}

/// `import --format` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    /// One JSON array of records (what `export --format json` writes), or JSON Lines.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// `export` arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Output format
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write to FILE instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Start a CSV file with a UTF-8 byte-order mark, so that Excel shows accented names
    /// (Kraków, São Paulo) correctly
    #[arg(long)]
    pub bom: bool,
    #[command(flatten)]
    pub kind: KindArg,
    #[command(flatten)]
    pub filters: FilterArgs,
}

/// `import` arguments.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The file (.json, .jsonl or .csv); "-" reads standard input
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The file's format [default: from its extension; json for "-", which also reads JSON Lines]
    #[arg(long, value_enum)]
    pub format: Option<ImportFormat>,
    /// Check every line and say what would happen; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Import the valid lines even if some are bad (bad lines are still reported)
    #[arg(long)]
    pub skip_invalid: bool,
}

/// Records per request to the store or daemon.
const CHUNK: usize = 1000;
/// Records per export request through the daemon: a record's JSON can reach about a megabyte,
/// and a control answer is bounded (see `intercity_node::control`).
const EXPORT_CHUNK_VIA_DAEMON: usize = 50;
/// About how many bytes of records one import request to the daemon carries (its requests are
/// bounded at 16 MiB).
const IMPORT_BYTES_VIA_DAEMON: usize = 8 << 20;
/// Largest import file read.
const MAX_IMPORT_FILE: u64 = 1 << 30;

/// Splits `items` into requests: `CHUNK` records, and through the daemon also at most about
/// `IMPORT_BYTES_VIA_DAEMON` bytes of JSON.
fn import_chunks(items: &[Imported], via_daemon: bool) -> Vec<&[Imported]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let size = if via_daemon {
            item.record.to_json().to_string().len()
        } else {
            0
        };
        if i > start && (i - start == CHUNK || bytes + size > IMPORT_BYTES_VIA_DAEMON) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Runs `export`.
pub fn export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<()> {
    if args.bom && args.format != ExportFormat::Csv {
        return Err(CliError::Invalid(
            "--bom is for CSV files only (Excel needs it to read UTF-8); use --format csv".into(),
        )
        .into());
    }
    let city = ctx.open_read()?;
    let mut kinds = args.kind.kinds.clone();
    if args.format == ExportFormat::Ics {
        if kinds.iter().any(|k| *k != UnitKind::Agenda) {
            return Err(CliError::Invalid(
                "iCalendar holds meetings only: leave out --kind or use --kind agenda".into(),
            )
            .into());
        }
        kinds = vec![UnitKind::Agenda];
    }
    let mut query = args.filters.query(&city, kinds, None, 0)?;
    if args.format == ExportFormat::Ics && query.sort.is_none() {
        query.sort = Some(intercity_node::catalog::Sort::Date);
    }
    let spinner = ctx.ui.spinner("Exporting…");
    let found = city.query(&query)?;
    let mut bytes = Vec::new();
    let count;
    if args.format == ExportFormat::Ics {
        // Each group once, with its number of changes (the events' SEQUENCE).
        let mut groups: BTreeMap<String, (Record, i64, usize)> = BTreeMap::new();
        for hit in &found.hits {
            if let Some(g) = &hit.unit.group
                && !groups.contains_key(g)
                && let Some(e) = city.export(std::slice::from_ref(g))?.pop()
            {
                groups.insert(
                    g.clone(),
                    (e.record, hit.unit.updated, e.provenance.changes),
                );
            }
        }
        let mut meetings = Vec::new();
        for hit in &found.hits {
            let Some(gid) = &hit.unit.group else { continue };
            let Some((Record::Group(group), updated, sequence)) = groups.get(gid) else {
                continue;
            };
            if let Some(agenda) = group.agendas.get(&hit.unit.id) {
                meetings.push(Meeting {
                    group_id: gid,
                    group,
                    agenda_id: &hit.unit.id,
                    agenda,
                    updated: *updated,
                    sequence: *sequence,
                });
            }
        }
        count = meetings.len();
        bytes = exchange::ics(&meetings, intercity_node::city::now_ms()).into_bytes();
    } else {
        let mut seen = HashSet::new();
        let ids: Vec<String> = found
            .hits
            .iter()
            .map(|h| h.unit.group.clone().unwrap_or_else(|| h.unit.id.clone()))
            .filter(|id| seen.insert(id.clone()))
            .collect();
        let mut records: Vec<Exported> = Vec::with_capacity(ids.len());
        let per_request = if city.via_daemon() {
            EXPORT_CHUNK_VIA_DAEMON
        } else {
            CHUNK
        };
        for chunk in ids.chunks(per_request) {
            records.extend(city.export(chunk)?);
        }
        count = records.len();
        match args.format {
            ExportFormat::Json => {
                let all: Vec<_> = records.iter().map(Exported::to_json).collect();
                serde_json::to_writer_pretty(&mut bytes, &all)?;
                bytes.push(b'\n');
            }
            ExportFormat::Jsonl => {
                for r in &records {
                    serde_json::to_writer(&mut bytes, &r.to_json())?;
                    bytes.push(b'\n');
                }
            }
            ExportFormat::Csv => {
                if args.bom {
                    bytes.extend_from_slice("\u{feff}".as_bytes());
                }
                exchange::write_csv(&mut bytes, &records)?;
            }
            ExportFormat::Ics => {}
        }
    }
    spinner.finish_and_clear();
    let what = if args.format == ExportFormat::Ics {
        "meetings"
    } else {
        "records"
    };
    match &args.output {
        Some(path) => {
            write_file(path, &bytes)?;
            ctx.ui
                .note(format!("Exported {count} {what} to {}", path.display()));
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file, so a failed export leaves no half file.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs `import`.
pub fn import(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<()> {
    let stdin = args.file == Path::new("-");
    let format = match args.format {
        Some(f) => f,
        None if stdin => ImportFormat::Json,
        None => match args
            .file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => ImportFormat::Json,
            Some("jsonl" | "ndjson") => ImportFormat::Jsonl,
            Some("csv") => ImportFormat::Csv,
            _ => {
                return Err(CliError::Invalid(format!(
                    "cannot tell the format of {} from its extension; pass --format json, jsonl or csv",
                    args.file.display()
                ))
                .into());
            }
        },
    };
    let mut text = String::new();
    let too_big = || {
        CliError::Invalid(format!(
            "{} is larger than {} GiB; split it into several files",
            args.file.display(),
            MAX_IMPORT_FILE >> 30
        ))
    };
    if stdin {
        std::io::stdin()
            .take(MAX_IMPORT_FILE + 1)
            .read_to_string(&mut text)?;
        if text.len() as u64 > MAX_IMPORT_FILE {
            return Err(too_big().into());
        }
    } else {
        if std::fs::metadata(&args.file).is_ok_and(|m| m.len() > MAX_IMPORT_FILE) {
            return Err(too_big().into());
        }
        text = std::fs::read_to_string(&args.file)
            .map_err(|e| CliError::Invalid(format!("cannot read {}: {e}", args.file.display())))?;
    }
    // A byte-order mark (Excel writes one) is not part of the first record.
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    let (items, mut bad) = match format {
        ImportFormat::Json => exchange::parse_json(&text),
        ImportFormat::Jsonl => exchange::parse_jsonl(&text),
        ImportFormat::Csv => {
            exchange::parse_csv(&text).map_err(|e| CliError::Invalid(e.to_string()))?
        }
    };
    drop(text);
    // What `export` writes includes working groups; a group is shared by its members and
    // changes only through `intercity group`, so an import skips it and says so.
    let (groups, items): (Vec<Imported>, Vec<Imported>) = items
        .into_iter()
        .partition(|i| matches!(i.record, Record::Group(_)));
    if !groups.is_empty() {
        let at: Vec<String> = groups.iter().map(|g| g.line.to_string()).collect();
        ctx.ui.note(format!(
            "{}: skipping {} working group{} (line {}): a group is shared by its members and is not imported; `intercity group` edits it",
            args.file.display(),
            groups.len(),
            if groups.len() == 1 { "" } else { "s" },
            at.join(", ")
        ));
    }
    let city = ctx.open()?;
    let lines = items.len() + bad.len() + groups.len();

    // First pass: check every line without writing.
    let mut good = Vec::with_capacity(items.len());
    let mut planned: Vec<ImportResult> = Vec::with_capacity(items.len());
    for chunk in import_chunks(&items, city.via_daemon()) {
        let results = city.import(chunk.to_vec(), true)?;
        for (item, r) in chunk.iter().zip(results) {
            if let Some(error) = &r.error {
                bad.push(LineError {
                    line: r.line,
                    message: error.clone(),
                });
            } else {
                good.push(item.clone());
                planned.push(r);
            }
        }
    }
    bad.sort_by_key(|e| e.line);
    for e in &bad {
        ctx.ui.note(format!("{}: {e}", args.file.display()));
    }
    let count =
        |rs: &[ImportResult], o: ImportOutcome| rs.iter().filter(|r| r.outcome == o).count();
    if args.dry_run {
        let summary = serde_json::json!({
            "lines": lines,
            "would_create": count(&planned, ImportOutcome::WouldCreate),
            "would_update": count(&planned, ImportOutcome::WouldUpdate),
            "unchanged": count(&planned, ImportOutcome::Unchanged),
            "groups_skipped": groups.len(),
            "errors": bad,
        });
        if ctx.ui.is_json() {
            ctx.ui.json(&summary)?;
        } else {
            ctx.ui.note(format!(
                "Dry run: {lines} records read; would create {}, update {}, leave {} unchanged; {} bad. Nothing was written.",
                summary["would_create"], summary["would_update"], summary["unchanged"], bad.len()
            ));
        }
        return if bad.is_empty() {
            Ok(())
        } else {
            Err(CliError::Invalid(format!("{} of {lines} records are invalid", bad.len())).into())
        };
    }
    if !bad.is_empty() && !args.skip_invalid {
        return Err(CliError::Invalid(format!(
            "{} of {lines} records are invalid (listed above); nothing was imported. Fix them, or pass --skip-invalid to import the {} valid ones",
            bad.len(),
            good.len()
        ))
        .into());
    }

    // Second pass: sign and store, with progress on a terminal.
    let started = Instant::now();
    let progress = ctx.ui.progress(good.len() as u64, "records");
    let mut results: Vec<ImportResult> = Vec::with_capacity(good.len());
    for chunk in import_chunks(&good, city.via_daemon()) {
        results.extend(city.import(chunk.to_vec(), false)?);
        progress.inc(chunk.len() as u64);
    }
    progress.set_message("records; flushing the store");
    city.finish_import()?;
    progress.finish_and_clear();
    let failed: Vec<&ImportResult> = results.iter().filter(|r| r.error.is_some()).collect();
    for r in &failed {
        ctx.ui.note(format!(
            "{}: line {}: {}",
            args.file.display(),
            r.line,
            r.error.as_deref().unwrap_or_default()
        ));
    }
    let secs = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "lines": lines,
        "created": count(&results, ImportOutcome::Created),
        "updated": count(&results, ImportOutcome::Updated),
        "unchanged": count(&results, ImportOutcome::Unchanged),
        "skipped": bad.len(),
        "groups_skipped": groups.len(),
        "failed": failed.len(),
        "seconds": secs,
    });
    if ctx.ui.is_json() {
        ctx.ui.json(&summary)?;
    } else {
        let rate = if secs > 0.0 {
            results.len() as f64 / secs
        } else {
            0.0
        };
        ctx.ui.note(format!(
            "Imported {} of {lines} records: {} created, {} updated, {} unchanged, {} skipped as invalid ({:.1} s, {:.0} records/s)",
            results.len() - failed.len(),
            summary["created"],
            summary["updated"],
            summary["unchanged"],
            bad.len(),
            secs,
            rate
        ));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Invalid(format!("{} records were refused", failed.len())).into())
    }
}
