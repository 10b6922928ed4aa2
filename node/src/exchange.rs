//! Export and import formats: JSON, JSON Lines, CSV (one row per record, stable columns) and
//! iCalendar (RFC 5545, one `VEVENT` per meeting). Pure functions over records; the CLI reads
//! and writes the files, the city signs what is imported.
//!
//! CSV columns, in this order (lists are one item per line inside the cell):
//!
//! | column | practice | project | group |
//! |---|---|---|---|
//! | `id` | record id | record id | record id |
//! | `kind` | `practice` | `project` | `group` |
//! | `title` | title | name | name |
//! | `summary` | summary | — | — |
//! | `body` | body | description | charter |
//! | `city` | city | lead city | — |
//! | `country` | country | — | — |
//! | `language` | language | — | — |
//! | `status` | — | status | — |
//! | `start`, `end` | dates | dates | — |
//! | `themes` | themes | themes | — |
//! | `partners` | `NAME:SECTOR` lines | same | — |
//! | `partner_cities` | — | partner cities | — |
//! | `outcomes` | sentences | `LABEL=VALUE UNIT` lines | — |
//! | `links` | links | — | — |
//! | `contact` | contact | — | — |
//! | `funding`, `budget_eur` | — | funding, budget | — |
//! | `related_practices` | — | record ids | — |
//! | `editors` | city ids | city ids | — |
//! | `owner` | city id | city id | — |
//! | `updated`, `created_by`, `last_change_by`, `changes`, `verified` | provenance (ignored on import) |||

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod ics;
pub use ics::{Meeting, ics, ics_timestamp, meeting_uid};

use intercity_protocol::record::{
    Figure, Group, Partner, Practice, Project, ProjectStatus, Record, Sector,
};

/// Where a record comes from, as this node verified it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// The city that signed the record's first change.
    pub created_by: String,
    /// The city that signed its newest accepted change.
    pub last_change_by: String,
    /// When that change was signed (UTC, ISO 8601).
    pub updated: String,
    /// Hash of the newest accepted entry (hex).
    pub last_entry: String,
    /// Accepted changes.
    pub changes: usize,
    /// Every accepted change's signature and payload hash verified at export time.
    pub verified: bool,
}

/// A record as exported: id, content and provenance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Exported {
    /// Record id (hex).
    pub id: String,
    /// The record.
    #[serde(with = "record_json")]
    pub record: Record,
    /// Its provenance.
    pub provenance: Provenance,
}

impl Exported {
    /// The JSON object: `id`, the record's fields, `provenance`.
    pub fn to_json(&self) -> Value {
        let mut out = with_id(&self.id, &self.record);
        if let Value::Object(map) = &mut out {
            map.insert(
                "provenance".into(),
                serde_json::to_value(&self.provenance).unwrap_or_default(),
            );
        }
        out
    }
}

/// A record's JSON form with its `"id"` first (as `show --json` and exports print it).
pub fn with_id(id: &str, record: &Record) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), id.into());
    if let Value::Object(map) = record.to_json() {
        out.extend(map);
    }
    Value::Object(out)
}

/// One record read from an import file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Imported {
    /// Line number in the file (1-based; for CSV, the record's first line).
    pub line: usize,
    /// The record id given in the file, if any: an existing record of this city is updated.
    pub id: Option<String>,
    /// The record (owner not yet set).
    #[serde(with = "record_json")]
    pub record: Record,
}

/// Records travel as their JSON form.
mod record_json {
    use intercity_protocol::record::Record;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(r: &Record, s: S) -> Result<S::Ok, S::Error> {
        r.to_json().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Record, D::Error> {
        Record::from_json(serde_json::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An error of one line of an import file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LineError {
    /// Line number (1-based).
    pub line: usize,
    /// What is wrong, naming the field.
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The CSV header, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "kind",
    "title",
    "summary",
    "body",
    "city",
    "country",
    "language",
    "status",
    "start",
    "end",
    "themes",
    "partners",
    "partner_cities",
    "outcomes",
    "links",
    "contact",
    "funding",
    "budget_eur",
    "related_practices",
    "editors",
    "owner",
    "updated",
    "created_by",
    "last_change_by",
    "changes",
    "verified",
];

fn lines(items: &[String]) -> String {
    items.join("\n")
}

fn split_lines(cell: &str) -> Vec<String> {
    cell.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn partner_lines(partners: &[Partner]) -> String {
    let items: Vec<String> = partners
        .iter()
        .map(|x| format!("{}:{}", x.name, x.sector))
        .collect();
    lines(&items)
}

fn figure_text(f: &Figure) -> String {
    if f.unit.is_empty() {
        format!("{}={}", f.label, f.value)
    } else {
        format!("{}={} {}", f.label, f.value, f.unit)
    }
}

fn parse_figure(s: &str) -> Result<Figure, String> {
    // The label may hold '=': take the last '=' whose right side starts with a number.
    for (i, _) in s.rmatch_indices('=') {
        let rest = s[i + 1..].trim();
        let (value, unit) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if let Ok(value) = value.parse::<f64>()
            && value.is_finite()
        {
            return Ok(Figure {
                label: s[..i].trim().to_string(),
                value,
                unit: unit.trim().to_string(),
            });
        }
    }
    Err(format!("`{s}` is not LABEL=VALUE[ UNIT]"))
}

/// A partner organisation `NAME:SECTOR` (the name may hold ':'), sector one of private, ngo,
/// university, public: the form of CSV cells and of the CLI's `--partner`.
pub fn parse_partner(s: &str) -> Result<Partner, String> {
    let sectors = Sector::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let Some((name, sector)) = s.rsplit_once(':') else {
        return Err(format!(
            "expected NAME:SECTOR (sector: {sectors}), e.g. \"Fondazione Cariplo:ngo\""
        ));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("the partner's name is empty; expected NAME:SECTOR".into());
    }
    let sector = sector
        .trim()
        .parse::<Sector>()
        .map_err(|_| format!("`{sector}` is not a sector; use one of {sectors}"))?;
    Ok(Partner {
        name: name.to_string(),
        sector,
    })
}

/// One CSV row of an exported record, in [`CSV_COLUMNS`] order.
pub fn csv_row(e: &Exported) -> Vec<String> {
    let mut row: Vec<String> = vec![String::new(); CSV_COLUMNS.len()];
    let mut set = |col: &str, v: String| {
        if let Some(i) = CSV_COLUMNS.iter().position(|c| *c == col) {
            row[i] = v;
        }
    };
    set("id", e.id.clone());
    set("kind", e.record.kind().to_string());
    match &e.record {
        Record::Practice(p) => {
            set("title", p.title.clone());
            set("summary", p.summary.clone());
            set("body", p.body.clone());
            set("city", p.city.clone());
            set("country", p.country.clone().unwrap_or_default());
            set("language", p.language.clone());
            set("start", p.start.clone().unwrap_or_default());
            set("end", p.end.clone().unwrap_or_default());
            set("themes", lines(&p.themes));
            set("partners", partner_lines(&p.partners));
            set("outcomes", lines(&p.outcomes));
            set("links", lines(&p.links));
            set("contact", p.contact.clone().unwrap_or_default());
            set("editors", lines(&p.editors));
            set("owner", p.owner.clone());
        }
        Record::Project(p) => {
            set("title", p.name.clone());
            set("body", p.description.clone());
            set("city", p.lead_city.clone());
            set("status", p.status.to_string());
            set("start", p.start.clone().unwrap_or_default());
            set("end", p.end.clone().unwrap_or_default());
            set("themes", lines(&p.themes));
            set("partners", partner_lines(&p.partners));
            set("partner_cities", lines(&p.partner_cities));
            let outcomes: Vec<String> = p.outcomes.iter().map(figure_text).collect();
            set("outcomes", lines(&outcomes));
            set("funding", p.funding.clone().unwrap_or_default());
            set(
                "budget_eur",
                p.budget_eur.map(|b| b.to_string()).unwrap_or_default(),
            );
            set("related_practices", lines(&p.related_practices));
            set("editors", lines(&p.editors));
            set("owner", p.owner.clone());
        }
        Record::Group(g) => {
            set("title", g.name.clone());
            set("body", g.charter.clone());
        }
    }
    let p = &e.provenance;
    set("updated", p.updated.clone());
    set("created_by", p.created_by.clone());
    set("last_change_by", p.last_change_by.clone());
    set("changes", p.changes.to_string());
    set("verified", p.verified.to_string());
    row.into_iter().map(neutralize).collect()
}

/// Characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A CSV cell that a spreadsheet will not run as a formula: one starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return gets a leading `'` (which [`parse_csv`] removes again).
fn neutralize(cell: String) -> String {
    if cell.starts_with(FORMULA_STARTS) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// Undoes [`neutralize`].
fn unneutralize(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => cell,
    }
}

/// Writes exported records as CSV with the header row.
pub fn write_csv(out: impl std::io::Write, records: &[Exported]) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_COLUMNS)?;
    for e in records {
        w.write_record(csv_row(e))?;
    }
    w.flush()?;
    Ok(())
}

/// Parses a JSON Lines file: every non-blank line is one record object (`id` and `provenance`
/// keys, as exported, are allowed). Returns the records and the errors of bad lines.
pub fn parse_jsonl(text: &str) -> (Vec<Imported>, Vec<LineError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(value) => object(value, i + 1, &mut ok, &mut bad),
            Err(e) => bad.push(LineError {
                line: i + 1,
                message: format!("not JSON: {e}"),
            }),
        }
    }
    (ok, bad)
}

/// Parses a JSON import file: one array of record objects, as `export --format json` writes
/// it, or else JSON Lines ([`parse_jsonl`]) when the text does not start with `[`. An error
/// names the line on which the bad record starts.
pub fn parse_json(text: &str) -> (Vec<Imported>, Vec<LineError>) {
    if !text.trim_start().starts_with('[') {
        return parse_jsonl(text);
    }
    let elements: Vec<&serde_json::value::RawValue> = match serde_json::from_str(text) {
        Ok(elements) => elements,
        Err(e) => {
            let error = LineError {
                line: e.line(),
                message: format!("not a JSON array of records: {e}"),
            };
            return (Vec::new(), vec![error]);
        }
    };
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    // Each element borrows from `text`, in order: its line is counted from the previous one's.
    let (mut counted, mut line) = (0, 1);
    for raw in elements {
        let at = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        let at = at.clamp(counted, text.len());
        line += text.as_bytes()[counted..at]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        counted = at;
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(value) => object(value, line, &mut ok, &mut bad),
            Err(e) => bad.push(LineError {
                line,
                message: format!("not JSON: {e}"),
            }),
        }
    }
    (ok, bad)
}

/// One record object of a JSON or JSON Lines file, found at `line`.
fn object(value: Value, line: usize, ok: &mut Vec<Imported>, bad: &mut Vec<LineError>) {
    let Value::Object(mut map) = value else {
        bad.push(LineError {
            line,
            message: "not a JSON object".into(),
        });
        return;
    };
    map.remove("provenance");
    // The importing city becomes the owner; the file need not name one. (A group has none.)
    if map.get("kind").and_then(Value::as_str) != Some("group") {
        map.entry("owner")
            .or_insert_with(|| Value::String(String::new()));
    }
    let id = match map.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            bad.push(LineError {
                line,
                message: "field `id` must be a string".into(),
            });
            return;
        }
    };
    match Record::from_json(Value::Object(map)) {
        Ok(record) => ok.push(Imported { line, id, record }),
        Err(e) => bad.push(LineError {
            line,
            message: e.to_string(),
        }),
    }
}

/// Parses a CSV file with a header row of [`CSV_COLUMNS`] (any order; `kind` and `title`
/// required; provenance columns ignored).
pub fn parse_csv(text: &str) -> Result<(Vec<Imported>, Vec<LineError>), LineError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| LineError {
            line: 1,
            message: format!("cannot read the header row: {e}"),
        })?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for h in &header {
        if !CSV_COLUMNS.contains(&h.as_str()) {
            return Err(LineError {
                line: 1,
                message: format!(
                    "unknown column `{h}`; the columns are {}",
                    CSV_COLUMNS.join(", ")
                ),
            });
        }
    }
    for required in ["kind", "title"] {
        if !header.iter().any(|h| h == required) {
            return Err(LineError {
                line: 1,
                message: format!("the header has no `{required}` column"),
            });
        }
    }
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for row in reader.records() {
        let (line, row) = match row {
            Ok(r) => (
                r.position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0)),
                r,
            ),
            Err(e) => {
                let line = e
                    .position()
                    .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                bad.push(LineError {
                    line,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let cell = |col: &str| -> String {
            header
                .iter()
                .position(|h| h == col)
                .and_then(|i| row.get(i))
                .map(|c| unneutralize(c.trim()))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        match record_from_cells(&cell) {
            Ok(record) => {
                let id = Some(cell("id")).filter(|s| !s.is_empty());
                ok.push(Imported { line, id, record });
            }
            Err(message) => bad.push(LineError { line, message }),
        }
    }
    Ok((ok, bad))
}

fn opt(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

fn record_from_cells(cell: &dyn Fn(&str) -> String) -> Result<Record, String> {
    let kind = cell("kind");
    let not_for = |cols: &[&str], what: &str| -> Result<(), String> {
        for c in cols {
            if !cell(c).is_empty() {
                return Err(format!("column `{c}` does not apply to a {what}"));
            }
        }
        Ok(())
    };
    let partners = |c: &str| -> Result<Vec<Partner>, String> {
        split_lines(&cell(c))
            .iter()
            .enumerate()
            .map(|(i, p)| parse_partner(p).map_err(|e| format!("field `{c}[{i}]`: {e}")))
            .collect()
    };
    match kind.to_ascii_lowercase().as_str() {
        "practice" => {
            not_for(
                &[
                    "status",
                    "partner_cities",
                    "funding",
                    "budget_eur",
                    "related_practices",
                ],
                "practice",
            )?;
            let mut p = Practice::new(cell("owner"), cell("title"), &cell("language"));
            p.summary = cell("summary");
            p.body = cell("body");
            p.city = cell("city");
            p.country = opt(cell("country"));
            p.start = opt(cell("start"));
            p.end = opt(cell("end"));
            p.themes = split_lines(&cell("themes"));
            p.partners = partners("partners")?;
            p.outcomes = split_lines(&cell("outcomes"));
            p.links = split_lines(&cell("links"));
            p.contact = opt(cell("contact"));
            p.editors = split_lines(&cell("editors"));
            Ok(Record::Practice(p))
        }
        "project" => {
            not_for(
                &["summary", "country", "language", "links", "contact"],
                "project",
            )?;
            let mut p = Project::new(cell("owner"), cell("title"));
            p.description = cell("body");
            p.lead_city = cell("city");
            let status = cell("status");
            if !status.is_empty() {
                p.status = status.parse::<ProjectStatus>().map_err(|e| e.to_string())?;
            }
            p.start = opt(cell("start"));
            p.end = opt(cell("end"));
            p.themes = split_lines(&cell("themes"));
            p.partners = partners("partners")?;
            p.partner_cities = split_lines(&cell("partner_cities"));
            p.outcomes = split_lines(&cell("outcomes"))
                .iter()
                .enumerate()
                .map(|(i, f)| parse_figure(f).map_err(|e| format!("field `outcomes[{i}]`: {e}")))
                .collect::<Result<_, _>>()?;
            p.funding = opt(cell("funding"));
            let budget = cell("budget_eur");
            if !budget.is_empty() {
                p.budget_eur = Some(budget.parse().map_err(|_| {
                    format!("field `budget_eur`: `{budget}` is not a whole number of euros")
                })?);
            }
            p.related_practices = split_lines(&cell("related_practices"));
            p.editors = split_lines(&cell("editors"));
            Ok(Record::Project(p))
        }
        // Read so that the importer can say it skips it: a group is not imported.
        "group" => Ok(Record::Group(Group {
            charter: cell("body"),
            ..Group::new(cell("title"), "", "")
        })),
        "" => Err("field `kind` is empty; use practice or project".to_string()),
        other => Err(format!(
            "field `kind`: `{other}` is not practice or project"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_partners() {
        let f = parse_figure("ratio=a=b=1.5 %").expect("figure");
        assert_eq!(
            (f.label.as_str(), f.value, f.unit.as_str()),
            ("ratio=a=b", 1.5, "%")
        );
        assert_eq!(figure_text(&f), "ratio=a=b=1.5 %");
        let p = parse_partner("Politecnico: Milano:university").expect("partner");
        assert_eq!(p.name, "Politecnico: Milano");
        assert!(parse_partner("x:army").is_err());
    }

    #[test]
    fn jsonl_lines_report_their_errors() {
        let text = "{\"kind\":\"practice\",\"owner\":\"\",\"title\":\"A\",\"language\":\"en\"}\n\n\
                    not json\n{\"kind\":\"practice\",\"title\":\"B\",\"colour\":1}\n[1]\n";
        let (ok, bad) = parse_jsonl(text);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].line, 1);
        let lines: Vec<usize> = bad.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5]);
        assert!(bad[1].message.contains("colour"), "{}", bad[1].message);
    }

    #[test]
    fn json_arrays_read_what_the_export_writes_and_name_the_line_of_a_bad_record() {
        let good = Exported {
            id: "r1".into(),
            record: Practice::new("", "Civic crowdfunding", "it").into(),
            provenance: Provenance {
                created_by: "c".into(),
                last_change_by: "c".into(),
                updated: "2026-11-30T20:00:00Z".into(),
                last_entry: "00".into(),
                changes: 1,
                verified: true,
            },
        };
        let text =
            serde_json::to_string_pretty(&vec![good.to_json(), good.to_json()]).expect("json");
        let (ok, bad) = parse_json(&text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].id.as_deref(), Some("r1"));
        assert_eq!(ok[0].record, good.record);
        assert_eq!(ok[0].line, 2);
        assert!(ok[1].line > ok[0].line, "{}", ok[1].line);

        let (ok, bad) = parse_json(
            "[\n  {\"kind\": \"practice\", \"title\": \"A\", \"language\": \"en\"},\n  {\"kind\": \"practice\", \"colour\": 1},\n  3\n]\n",
        );
        assert_eq!(ok.len(), 1);
        let lines: Vec<usize> = bad.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4]);
        assert!(bad[0].message.contains("colour"), "{}", bad[0].message);

        let (ok, bad) = parse_json("[{\"kind\": \"practice\"},\n");
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0].message.contains("not a JSON array"),
            "{}",
            bad[0].message
        );
        // JSON Lines still read as such.
        let (ok, _) = parse_json("{\"kind\":\"practice\",\"title\":\"A\",\"language\":\"en\"}\n");
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn csv_cells_that_look_like_formulas_are_neutralized_and_read_back() {
        for (cell, written) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-5", "'-5"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("plain", "plain"),
            ("'quoted", "'quoted"),
        ] {
            assert_eq!(neutralize(cell.to_string()), written);
            assert_eq!(unneutralize(written), cell);
        }
    }

    #[test]
    fn csv_rows_name_line_and_field() {
        let text = "kind,title,partners,status\n\
                    project,Youth Guarantee,\"Acme:private\nUni:university\",running\n\
                    project,Bad,Acme:army,\n\
                    practice,Also bad,,running\n";
        let (ok, bad) = parse_csv(text).expect("header");
        assert_eq!(ok.len(), 1);
        let Record::Project(p) = &ok[0].record else {
            panic!("a project")
        };
        assert_eq!(p.partners.len(), 2);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].line, 4, "{bad:?}");
        assert!(bad[0].message.contains("partners[0]"), "{}", bad[0].message);
        assert!(bad[1].message.contains("status"), "{}", bad[1].message);
        assert!(parse_csv("kind,title,colour\n").is_err());
    }
}
