//! The catalog: what city staff search and filter. One *unit* per practice, project, working
//! group and meeting agenda (an agenda lives inside its group's record but is found on its own),
//! kept in three column families and updated in the same write batch as every accepted entry,
//! local or from a peer — so a record is searchable the moment it is accepted.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `units` | doc id (16) · agenda id (ASCII, agendas only) | [`Unit`], compact binary |
//! | `facets` | same | what filters and orders need, fixed-size and hashed (about 40 bytes) |
//! | `texts` | same | the unit's searchable text fields (JSON `[[field, text], ...]`) |
//! | `postings` | term (UTF-8) · 0x00 · unit key | term counts by field weight (3 × u16 BE) · unit length (u32 BE) |
//!
//! Search is a real inverted index: every query term must match (AND), a trailing `*` matches
//! a prefix, and hits are ranked with BM25 over field-weighted term counts (title ×4; summary,
//! themes and agenda item titles ×2; everything else ×1). Terms are lowercased words with
//! diacritics folded (`Białystok` → `bialystok`), English plurals folded (`cities` → `city`)
//! and a short list of English stop words dropped. Withdrawn records leave the catalog.
//!
//! Filters (kind, city, tag, sector, group, status, dates) are checked first on the small
//! `facets` rows (city and themes as hashes of their lowercase form, dates as day numbers), then,
//! when a city or tag matched by hash, on the full unit. A filtered listing scans the facets
//! (the group's key range only with `--group`) and keeps the best `limit` in a heap; a search
//! reads the facets of its candidates only.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use intercity_protocol::entry::DocId;
use intercity_protocol::record::{Record, Sector};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// Version of the catalog's layout; a store with another version is reindexed when opened.
pub const CATALOG_VERSION: u32 = 2;
/// Longest term indexed, in characters (longer words are cut).
pub const MAX_TERM_CHARS: usize = 32;
/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 500;

const STATS_KEY: &str = "catalog_stats";
const VERSION_KEY: &str = "catalog_version";

/// What a catalog unit is.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    /// A good practice.
    Practice,
    /// A project.
    Project,
    /// A working group.
    Group,
    /// A meeting agenda of a working group.
    Agenda,
}

impl UnitKind {
    /// Every kind.
    pub const ALL: &'static [UnitKind] = &[
        UnitKind::Practice,
        UnitKind::Project,
        UnitKind::Group,
        UnitKind::Agenda,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Practice => "practice",
            UnitKind::Project => "project",
            UnitKind::Group => "group",
            UnitKind::Agenda => "agenda",
        }
    }

    fn code(self) -> u8 {
        match self {
            UnitKind::Practice => 0,
            UnitKind::Project => 1,
            UnitKind::Group => 2,
            UnitKind::Agenda => 3,
        }
    }

    fn from_code(c: u8) -> Option<UnitKind> {
        UnitKind::ALL.get(usize::from(c)).copied()
    }
}

impl fmt::Display for UnitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UnitKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnitKind::ALL
            .iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .copied()
            .ok_or_else(|| format!("`{s}` is not a kind; use practice, project, group or agenda"))
    }
}

/// One entry of the catalog: the facts listings show and filters check.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Unit {
    /// The record id (hex); for an agenda, the agenda id.
    pub id: String,
    /// What it is.
    pub kind: UnitKind,
    /// For an agenda: the id of the group record holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Title, project name, group name or meeting title.
    pub title: String,
    /// Practice city, project lead city or meeting host city (empty for groups).
    pub city: String,
    /// ISO country code of a practice (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country: String,
    /// Owner city id (practices and projects).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// Project status or agenda status (empty otherwise).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Start date or first meeting day, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// End date or last meeting day, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Themes (tags).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub themes: Vec<String>,
    /// Sectors of the partner organisations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sectors: Vec<Sector>,
    /// For groups and agendas: the group's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_name: String,
    /// For agendas: the venue.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub venue: String,
    /// For agendas: the number of items; for groups: the number of agendas.
    #[serde(default)]
    pub items: u32,
    /// Newest accepted change of the record, ms since the epoch.
    pub updated: i64,
}

impl Unit {
    /// A unit with only its identity, title and time set.
    fn new(kind: UnitKind, id: String, title: &str, updated: i64) -> Unit {
        Unit {
            id,
            kind,
            group: None,
            title: title.to_string(),
            city: String::new(),
            country: String::new(),
            owner: String::new(),
            status: String::new(),
            start: None,
            end: None,
            themes: Vec::new(),
            sectors: Vec::new(),
            group_name: String::new(),
            venue: String::new(),
            items: 0,
            updated,
        }
    }

    /// The (first, last) day of the unit's dates, when it has any.
    pub fn span(&self) -> Option<(&str, &str)> {
        let first = self.start.as_deref().or(self.end.as_deref())?;
        let last = self.end.as_deref().unwrap_or(first);
        Some((first, last))
    }
}

/// A catalog query: optional search text, filters, order and limit.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Query {
    /// Words to search for (all must match; `word*` matches a prefix). None lists.
    #[serde(default)]
    pub text: Option<String>,
    /// Filters.
    #[serde(default)]
    pub filter: Filter,
    /// Order of the results.
    #[serde(default)]
    pub sort: Option<Sort>,
    /// At most this many results (0: all).
    #[serde(default)]
    pub limit: usize,
}

/// Filters of a query; empty lists do not filter.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Filter {
    /// Any of these kinds.
    #[serde(default)]
    pub kinds: Vec<UnitKind>,
    /// Any of these cities: display name (case-insensitive) or city id of the owner.
    #[serde(default)]
    pub cities: Vec<String>,
    /// Themes (case-insensitive): any of them, or all with `all`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Partner sectors: any of them, or all with `all`.
    #[serde(default)]
    pub sectors: Vec<Sector>,
    /// Tags and sectors must all be present.
    #[serde(default)]
    pub all: bool,
    /// Only this group (its record and its agendas): the group's record id.
    #[serde(default)]
    pub group: Option<String>,
    /// Any of these statuses (project or agenda status).
    #[serde(default)]
    pub statuses: Vec<String>,
    /// Dates that reach this day or later (`YYYY-MM-DD`); undated units do not match.
    #[serde(default)]
    pub since: Option<String>,
    /// Dates that begin on this day or earlier; undated units do not match.
    #[serde(default)]
    pub until: Option<String>,
}

impl Filter {
    /// Whether the unit passes every filter.
    fn matches(&self, unit: &UnitView<'_>) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&unit.kind) {
            return false;
        }
        if !self.cities.is_empty()
            && !self
                .cities
                .iter()
                .any(|c| unit.city.eq_ignore_ascii_case(c.trim()) || unit.owner == c)
        {
            return false;
        }
        let has_tag = |t: &String| unit.themes().any(|x| x.eq_ignore_ascii_case(t.trim()));
        let has_sector = |s: &Sector| unit.sectors & sector_bit(*s) != 0;
        if self.all {
            if !self.tags.iter().all(has_tag) || !self.sectors.iter().all(has_sector) {
                return false;
            }
        } else {
            if !self.tags.is_empty() && !self.tags.iter().any(has_tag) {
                return false;
            }
            if !self.sectors.is_empty() && !self.sectors.iter().any(has_sector) {
                return false;
            }
        }
        if let Some(g) = &self.group {
            let own = match unit.kind {
                UnitKind::Agenda => unit.group == g,
                UnitKind::Group => unit.id == g,
                _ => false,
            };
            if !own {
                return false;
            }
        }
        if !self.statuses.is_empty()
            && !self
                .statuses
                .iter()
                .any(|s| unit.status.eq_ignore_ascii_case(s))
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some((first, last)) = unit.span() else {
                return false;
            };
            if self.since.as_deref().is_some_and(|s| last < s)
                || self.until.as_deref().is_some_and(|u| first > u)
            {
                return false;
            }
        }
        true
    }

    #[cfg(test)]
    fn matches_unit(&self, u: &Unit) -> bool {
        let bytes = encode_unit(u);
        UnitView::parse(&bytes).is_some_and(|v| self.matches(&v))
    }

    /// Whether no filter is set.
    fn is_empty(&self) -> bool {
        self.kinds.is_empty()
            && self.cities.is_empty()
            && self.tags.is_empty()
            && self.sectors.is_empty()
            && self.group.is_none()
            && self.statuses.is_empty()
            && self.since.is_none()
            && self.until.is_none()
    }
}

/// Orders of results.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Best match first (searches only).
    Relevance,
    /// Most recently changed first.
    Updated,
    /// Earliest date first; undated last.
    Date,
    /// By title, A to Z.
    Title,
}

impl FromStr for Sort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "relevance" => Ok(Sort::Relevance),
            "updated" => Ok(Sort::Updated),
            "date" => Ok(Sort::Date),
            "title" => Ok(Sort::Title),
            _ => Err(format!(
                "`{s}` is not an order; use relevance, updated, date or title"
            )),
        }
    }
}

/// One result of a query.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hit {
    /// The unit.
    #[serde(flatten)]
    pub unit: Unit,
    /// BM25 score (searches only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// An excerpt around the first match (searches only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    /// Byte ranges `[start, end)` of the matched words within `snippet`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub highlights: Vec<(usize, usize)>,
}

/// The answer to a query.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Found {
    /// How many units matched (before the limit).
    pub total: usize,
    /// The results, in order, at most `limit`.
    pub hits: Vec<Hit>,
}

/// Errors of a query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The search text holds no searchable word.
    #[error(
        "`{0}` has no searchable word (words of one letter and common words such as `the` are not indexed)"
    )]
    NoTerms(String),
    /// The search text is too long.
    #[error("the search text is {0} characters long; at most {MAX_QUERY_CHARS} are allowed")]
    TooLong(usize),
}

// ---------------------------------------------------------------------------------------------
// Text analysis
// ---------------------------------------------------------------------------------------------

/// Text fields of a unit: (id, name, weight).
const FIELDS: &[(&str, u8)] = &[
    ("title", 4),
    ("summary", 2),
    ("body", 1),
    ("themes", 2),
    ("partners", 1),
    ("outcomes", 1),
    ("places", 1),
    ("item", 2),
    ("notes", 1),
];
const F_TITLE: u8 = 0;
const F_SUMMARY: u8 = 1;
const F_BODY: u8 = 2;
const F_THEMES: u8 = 3;
const F_PARTNERS: u8 = 4;
const F_OUTCOMES: u8 = 5;
const F_PLACES: u8 = 6;
const F_ITEM: u8 = 7;
const F_NOTES: u8 = 8;

const STOP_WORDS: &[&str] = &[
    "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "its",
    "of", "on", "or", "that", "the", "their", "this", "to", "was", "were", "with",
];

fn fold_char(c: char, out: &mut String) {
    let folded = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => "c",
        'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' | 'ġ' | 'ģ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ķ' => "k",
        'ł' | 'ľ' | 'ĺ' | 'ļ' => "l",
        'ñ' | 'ń' | 'ň' | 'ņ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'ŕ' | 'ř' => "r",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'ť' | 'ţ' | 'ț' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ů' | 'ū' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        _ => {
            out.push(c);
            return;
        }
    };
    out.push_str(folded);
}

/// Lowercases and folds the diacritics of one word (no plural folding).
fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars().flat_map(char::to_lowercase) {
        fold_char(c, &mut out);
    }
    out
}

/// The term of one word: folded, cut to [`MAX_TERM_CHARS`], English plural folded; None for
/// stop words and single letters.
fn term(word: &str) -> Option<String> {
    let mut t = fold(word);
    if let Some((i, _)) = t.char_indices().nth(MAX_TERM_CHARS) {
        t.truncate(i);
    }
    if t.chars().count() < 2 && !t.chars().all(|c| c.is_numeric()) {
        return None;
    }
    if STOP_WORDS.contains(&t.as_str()) {
        return None;
    }
    if t.len() > 4 && t.ends_with("ies") {
        t.truncate(t.len() - 3);
        t.push('y');
    } else if t.len() > 3
        && t.ends_with('s')
        && !t.ends_with("ss")
        && !t.ends_with("us")
        && !t.ends_with("is")
    {
        t.pop();
    }
    Some(t)
}

/// Words of `text` with their byte ranges: maximal runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some(&(_, c)) = rest.peek() {
            if c.is_alphanumeric() {
                break;
            }
            rest.next();
        }
        let (start, _) = *rest.peek()?;
        let mut end = start;
        while let Some(&(i, c)) = rest.peek() {
            if !c.is_alphanumeric() {
                break;
            }
            end = i + c.len_utf8();
            rest.next();
        }
        Some((start, &text[start..end]))
    })
}

/// The terms of a text, in order (what the index holds and a query looks for).
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    words(text).filter_map(|(_, w)| term(w))
}

/// One word of a query.
#[derive(Clone, Debug, PartialEq)]
enum QueryTerm {
    /// The exact term.
    Exact(String),
    /// Any term starting with this (folded, not plural-folded).
    Prefix(String),
}

impl QueryTerm {
    fn matches(&self, t: &str) -> bool {
        match self {
            QueryTerm::Exact(e) => t == e,
            QueryTerm::Prefix(p) => t.starts_with(p.as_str()),
        }
    }
}

fn parse_query(text: &str) -> Result<Vec<QueryTerm>, QueryError> {
    let n = text.chars().count();
    if n > MAX_QUERY_CHARS {
        return Err(QueryError::TooLong(n));
    }
    let mut out = Vec::new();
    for raw in text.split_whitespace() {
        if let Some(stem) = raw.strip_suffix('*') {
            let ws: Vec<_> = words(stem).map(|(_, w)| fold(w)).collect();
            let last = ws.len().saturating_sub(1);
            for (i, w) in ws.into_iter().enumerate() {
                if i == last && !w.is_empty() {
                    out.push(QueryTerm::Prefix(w));
                } else if let Some(t) = term(&w) {
                    out.push(QueryTerm::Exact(t));
                }
            }
        } else {
            out.extend(terms(raw).map(QueryTerm::Exact));
        }
    }
    out.dedup();
    if out.is_empty() {
        return Err(QueryError::NoTerms(text.to_string()));
    }
    Ok(out)
}

/// An excerpt of `text` around the first word matching one of `query` (or its beginning),
/// about `width` characters, with the byte ranges of every matching word in it.
fn snippet(text: &str, query: &[QueryTerm], width: usize) -> (String, Vec<(usize, usize)>) {
    let is_match = |w: &str| {
        term(w).is_some_and(|t| query.iter().any(|q| q.matches(&t)))
            || query
                .iter()
                .any(|q| matches!(q, QueryTerm::Prefix(p) if fold(w).starts_with(p.as_str())))
    };
    let first = words(text).find(|(_, w)| is_match(w)).map_or(0, |(i, _)| i);
    // Start a few words before the match, at a char boundary.
    let lead = width / 4;
    let start = text[..first]
        .char_indices()
        .rev()
        .take(lead)
        .last()
        .map_or(first, |(i, _)| i);
    let mut start = start;
    if start > 0
        && let Some(sp) = text[start..first].find(char::is_whitespace)
    {
        start += sp + 1;
    }
    let end = text[start..]
        .char_indices()
        .nth(width)
        .map_or(text.len(), |(i, _)| start + i);
    let mut end = end;
    if end < text.len()
        && let Some(sp) = text[start..end].rfind(char::is_whitespace)
        && start + sp > first
    {
        end = start + sp;
    }
    let prefix = if start > 0 { "…" } else { "" };
    let suffix = if end < text.len() { "…" } else { "" };
    let body = text[start..end].replace(['\n', '\t'], " ");
    let mut highlights = Vec::new();
    for (i, w) in words(&body) {
        if is_match(w) {
            highlights.push((prefix.len() + i, prefix.len() + i + w.len()));
        }
    }
    (format!("{prefix}{body}{suffix}"), highlights)
}

// ---------------------------------------------------------------------------------------------
// Units of a record
// ---------------------------------------------------------------------------------------------

/// A unit with its key and text fields, as written to the catalog.
#[derive(Debug)]
struct Entry {
    key: Vec<u8>,
    unit: Unit,
    texts: Vec<(u8, String)>,
}

fn sectors(partners: &[intercity_protocol::record::Partner]) -> Vec<Sector> {
    let mut out: Vec<Sector> = partners.iter().map(|p| p.sector).collect();
    out.sort();
    out.dedup();
    out
}

fn partner_names(partners: &[intercity_protocol::record::Partner]) -> String {
    let names: Vec<&str> = partners.iter().map(|x| x.name.as_str()).collect();
    names.join(", ")
}

fn push(texts: &mut Vec<(u8, String)>, field: u8, text: &str) {
    if !text.trim().is_empty() {
        texts.push((field, text.to_string()));
    }
}

/// The catalog units of record `id` (none for a withdrawn record).
fn units_of(id: DocId, record: &Record, updated: i64) -> Vec<Entry> {
    if record.is_deleted() {
        return Vec::new();
    }
    let hex = id.to_string();
    let mut out = Vec::new();
    match record {
        Record::Practice(p) => {
            let mut texts = Vec::new();
            push(&mut texts, F_TITLE, &p.title);
            push(&mut texts, F_SUMMARY, &p.summary);
            push(&mut texts, F_BODY, &p.body);
            push(&mut texts, F_THEMES, &p.themes.join(", "));
            push(&mut texts, F_PARTNERS, &partner_names(&p.partners));
            push(&mut texts, F_OUTCOMES, &p.outcomes.join("\n"));
            push(&mut texts, F_PLACES, &p.city);
            out.push(Entry {
                key: id.0.to_vec(),
                unit: Unit {
                    city: p.city.clone(),
                    country: p.country.clone().unwrap_or_default(),
                    owner: p.owner.clone(),
                    start: p.start.clone(),
                    end: p.end.clone(),
                    themes: p.themes.clone(),
                    sectors: sectors(&p.partners),
                    ..Unit::new(UnitKind::Practice, hex, &p.title, updated)
                },
                texts,
            });
        }
        Record::Project(p) => {
            let mut texts = Vec::new();
            push(&mut texts, F_TITLE, &p.name);
            push(&mut texts, F_BODY, &p.description);
            push(&mut texts, F_THEMES, &p.themes.join(", "));
            push(&mut texts, F_PARTNERS, &partner_names(&p.partners));
            let outcomes: Vec<&str> = p.outcomes.iter().map(|f| f.label.as_str()).collect();
            push(&mut texts, F_OUTCOMES, &outcomes.join("\n"));
            let mut places = vec![p.lead_city.as_str()];
            places.extend(p.partner_cities.iter().map(String::as_str));
            push(&mut texts, F_PLACES, &places.join(", "));
            push(
                &mut texts,
                F_NOTES,
                p.funding.as_deref().unwrap_or_default(),
            );
            out.push(Entry {
                key: id.0.to_vec(),
                unit: Unit {
                    city: p.lead_city.clone(),
                    owner: p.owner.clone(),
                    status: p.status.to_string(),
                    start: p.start.clone(),
                    end: p.end.clone(),
                    themes: p.themes.clone(),
                    sectors: sectors(&p.partners),
                    ..Unit::new(UnitKind::Project, hex, &p.name, updated)
                },
                texts,
            });
        }
        Record::Group(g) => {
            let mut texts = Vec::new();
            push(&mut texts, F_TITLE, &g.name);
            push(&mut texts, F_BODY, &g.charter);
            out.push(Entry {
                key: id.0.to_vec(),
                unit: Unit {
                    group_name: g.name.clone(),
                    items: u32::try_from(g.agendas.len()).unwrap_or(u32::MAX),
                    ..Unit::new(UnitKind::Group, hex.clone(), &g.name, updated)
                },
                texts,
            });
            for (aid, a) in &g.agendas {
                let mut texts = Vec::new();
                push(&mut texts, F_TITLE, &a.title);
                for item in &a.items {
                    push(&mut texts, F_ITEM, &item.title);
                    push(&mut texts, F_NOTES, &item.notes);
                    push(&mut texts, F_NOTES, &item.presenters.join(", "));
                }
                push(&mut texts, F_NOTES, &a.decisions.join("\n"));
                push(
                    &mut texts,
                    F_PLACES,
                    &format!("{}, {}", a.venue, a.host_city),
                );
                let mut key = id.0.to_vec();
                key.extend_from_slice(aid.as_bytes());
                out.push(Entry {
                    key,
                    unit: Unit {
                        group: Some(hex.clone()),
                        city: a.host_city.clone(),
                        status: a.status.to_string(),
                        start: Some(a.start.clone()),
                        end: a.end.clone(),
                        group_name: g.name.clone(),
                        venue: a.venue.clone(),
                        items: u32::try_from(a.items.len()).unwrap_or(u32::MAX),
                        ..Unit::new(UnitKind::Agenda, aid.clone(), &a.title, updated)
                    },
                    texts,
                });
            }
        }
    }
    out
}

/// Term counts of a unit's texts by weight class (×4, ×2, ×1), in term order (the order of the
/// posting keys), and the unit's length in terms.
fn count_terms(texts: &[(u8, String)]) -> (Vec<(String, [u16; 3])>, u32) {
    let mut all: Vec<(String, usize)> = Vec::new();
    for (field, text) in texts {
        let class = match FIELDS.get(usize::from(*field)).map_or(1, |f| f.1) {
            4 => 0,
            2 => 1,
            _ => 2,
        };
        all.extend(terms(text).map(|t| (t, class)));
    }
    let len = u32::try_from(all.len()).unwrap_or(u32::MAX);
    // Sorting and counting runs is cheaper than hashing every occurrence.
    all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut counts: Vec<(String, [u16; 3])> = Vec::new();
    for (t, class) in all {
        match counts.last_mut() {
            Some((last, c)) if *last == t => c[class] = c[class].saturating_add(1),
            _ => {
                let mut c = [0u16; 3];
                c[class] = 1;
                counts.push((t, c));
            }
        }
    }
    (counts, len)
}

fn posting_key(term: &str, unit_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(term.len() + 1 + unit_key.len());
    k.extend_from_slice(term.as_bytes());
    k.push(0);
    k.extend_from_slice(unit_key);
    k
}

// ---------------------------------------------------------------------------------------------
// Compact encoding of a unit
// ---------------------------------------------------------------------------------------------

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

fn encode_unit(u: &Unit) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(u.kind.code());
    out.extend_from_slice(&u.updated.to_be_bytes());
    out.extend_from_slice(&u.items.to_be_bytes());
    let mask = u.sectors.iter().fold(0u8, |m, s| {
        m | 1 << Sector::ALL.iter().position(|x| x == s).unwrap_or(7)
    });
    out.push(mask);
    for s in [
        u.id.as_str(),
        u.group.as_deref().unwrap_or_default(),
        &u.title,
        &u.city,
        &u.country,
        &u.owner,
        &u.status,
        u.start.as_deref().unwrap_or_default(),
        u.end.as_deref().unwrap_or_default(),
        &u.group_name,
        &u.venue,
    ] {
        put_str(&mut out, s);
    }
    out.extend_from_slice(&u16::try_from(u.themes.len()).unwrap_or(0).to_be_bytes());
    for t in &u.themes {
        put_str(&mut out, t);
    }
    out
}

fn sector_bit(s: Sector) -> u8 {
    1 << Sector::ALL.iter().position(|x| *x == s).unwrap_or(7)
}

/// FNV-1a of the ASCII-lowercased, trimmed text: how cities and themes are compared in facets
/// (a match is then checked on the unit, so a collision costs only a read).
fn fold_hash(text: &str) -> u32 {
    text.trim().bytes().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193)
    })
}

/// FNV-1a of the exact text.
fn exact_hash(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Every status a unit can have: project statuses, then agenda statuses.
pub const STATUSES: &[&str] = &[
    "planned",
    "running",
    "completed",
    "draft",
    "published",
    "held",
];

fn status_code(status: &str) -> u8 {
    STATUSES
        .iter()
        .position(|s| s.eq_ignore_ascii_case(status))
        .map_or(0, |i| i as u8 + 1)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn day_number(date: &str) -> Option<i32> {
    crate::exchange::days_from_civil(date).and_then(|d| i32::try_from(d).ok())
}

/// What filters and orders need of a unit, fixed-size: the `facets` row.
#[derive(Debug, Clone, PartialEq)]
struct Facets<'a> {
    kind: UnitKind,
    sectors: u8,
    status: u8,
    updated: i64,
    /// (first, last) day numbers.
    span: Option<(i32, i32)>,
    city: u32,
    owner: u32,
    /// Theme hashes, u32 big-endian each (read in place when decoded).
    themes: std::borrow::Cow<'a, [u8]>,
}

impl Facets<'_> {
    fn has_theme(&self, hash: u32) -> bool {
        self.themes
            .chunks_exact(4)
            .any(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) == hash)
    }

    fn of(u: &Unit) -> Facets<'static> {
        let span = u
            .span()
            .and_then(|(first, last)| Some((day_number(first)?, day_number(last)?)));
        Facets {
            kind: u.kind,
            sectors: u.sectors.iter().fold(0u8, |m, s| m | sector_bit(*s)),
            status: status_code(&u.status),
            updated: u.updated,
            span,
            city: fold_hash(&u.city),
            owner: exact_hash(&u.owner),
            themes: u
                .themes
                .iter()
                .take(usize::from(u8::MAX))
                .flat_map(|t| fold_hash(t).to_be_bytes())
                .collect::<Vec<u8>>()
                .into(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.themes.len());
        out.extend_from_slice(&[self.kind.code(), self.sectors, self.status]);
        out.extend_from_slice(&self.updated.to_be_bytes());
        let (a, b) = self.span.unwrap_or((i32::MIN, i32::MIN));
        out.extend_from_slice(&a.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
        out.extend_from_slice(&self.city.to_be_bytes());
        out.extend_from_slice(&self.owner.to_be_bytes());
        out.extend_from_slice(&self.themes);
        out
    }

    fn decode(v: &[u8]) -> Option<Facets<'_>> {
        let mut r = Reader(v);
        let [kind, sectors, status] = r.array::<3>()?;
        let updated = i64::from_be_bytes(r.array()?);
        let a = i32::from_be_bytes(r.array()?);
        let b = i32::from_be_bytes(r.array()?);
        let city = u32::from_be_bytes(r.array()?);
        let owner = u32::from_be_bytes(r.array()?);
        if r.0.len() % 4 != 0 {
            return None;
        }
        let themes = r.0.into();
        Some(Facets {
            kind: UnitKind::from_code(kind)?,
            sectors,
            status,
            updated,
            span: (a != i32::MIN).then_some((a, b)),
            city,
            owner,
            themes,
        })
    }
}

/// A filter compiled for facets: exact on kind, sector, status, dates and group; by hash on
/// city and tags (those matches are then checked on the unit).
struct FacetFilter<'a> {
    filter: &'a Filter,
    statuses: Vec<u8>,
    since: Option<i32>,
    until: Option<i32>,
    cities: Vec<(u32, u32)>,
    tags: Vec<u32>,
    group: Option<[u8; 16]>,
}

/// The verdict of the facets on a unit.
#[derive(PartialEq, Eq, Debug)]
enum FacetVerdict {
    No,
    Yes,
    /// A city or tag matched by hash: check the unit.
    Check,
}

impl<'a> FacetFilter<'a> {
    fn new(filter: &'a Filter) -> Result<FacetFilter<'a>, StoreError> {
        let group = match &filter.group {
            Some(g) => Some(
                g.parse::<DocId>()
                    .map_err(|e| StoreError::Query(e.to_string()))?
                    .0,
            ),
            None => None,
        };
        Ok(FacetFilter {
            filter,
            statuses: filter.statuses.iter().map(|s| status_code(s)).collect(),
            since: filter.since.as_deref().and_then(day_number),
            until: filter.until.as_deref().and_then(day_number),
            cities: filter
                .cities
                .iter()
                .map(|c| (fold_hash(c), exact_hash(c)))
                .collect(),
            tags: filter.tags.iter().map(|t| fold_hash(t)).collect(),
            group,
        })
    }

    fn check(&self, key: &[u8], f: &Facets) -> FacetVerdict {
        let filter = self.filter;
        if !filter.kinds.is_empty() && !filter.kinds.contains(&f.kind) {
            return FacetVerdict::No;
        }
        if let Some(g) = &self.group
            && (!key.starts_with(g) || !matches!(f.kind, UnitKind::Agenda | UnitKind::Group))
        {
            return FacetVerdict::No;
        }
        if !self.statuses.is_empty() && !self.statuses.contains(&f.status) {
            return FacetVerdict::No;
        }
        if filter.since.is_some() || filter.until.is_some() {
            let Some((first, last)) = f.span else {
                return FacetVerdict::No;
            };
            if self.since.is_some_and(|s| last < s) || self.until.is_some_and(|u| first > u) {
                return FacetVerdict::No;
            }
        }
        let has_sector = |s: &Sector| f.sectors & sector_bit(*s) != 0;
        let has_tag = |t: &u32| f.has_theme(*t);
        let (sectors_ok, tags_ok) = if filter.all {
            (
                filter.sectors.iter().all(has_sector),
                self.tags.iter().all(has_tag),
            )
        } else {
            (
                filter.sectors.is_empty() || filter.sectors.iter().any(has_sector),
                self.tags.is_empty() || self.tags.iter().any(has_tag),
            )
        };
        if !sectors_ok || !tags_ok {
            return FacetVerdict::No;
        }
        if !self.cities.is_empty()
            && !self
                .cities
                .iter()
                .any(|(c, o)| *c == f.city || *o == f.owner)
        {
            return FacetVerdict::No;
        }
        if self.cities.is_empty() && self.tags.is_empty() {
            FacetVerdict::Yes
        } else {
            FacetVerdict::Check
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn str(&mut self) -> Option<&'a str> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// A unit read in place from its stored bytes (no allocation), for filtering and ordering.
#[derive(Debug, Clone)]
struct UnitView<'a> {
    kind: UnitKind,
    updated: i64,
    items: u32,
    sectors: u8,
    id: &'a str,
    group: &'a str,
    title: &'a str,
    city: &'a str,
    country: &'a str,
    owner: &'a str,
    status: &'a str,
    start: &'a str,
    end: &'a str,
    group_name: &'a str,
    venue: &'a str,
    /// The encoded themes (count, then strings), read on demand.
    themes: &'a [u8],
}

impl<'a> UnitView<'a> {
    fn parse(bytes: &'a [u8]) -> Option<UnitView<'a>> {
        let mut r = Reader(bytes);
        let kind = UnitKind::from_code(r.array::<1>()?[0])?;
        let updated = i64::from_be_bytes(r.array()?);
        let items = u32::from_be_bytes(r.array()?);
        let sectors = r.array::<1>()?[0];
        let v = UnitView {
            kind,
            updated,
            items,
            sectors,
            id: r.str()?,
            group: r.str()?,
            title: r.str()?,
            city: r.str()?,
            country: r.str()?,
            owner: r.str()?,
            status: r.str()?,
            start: r.str()?,
            end: r.str()?,
            group_name: r.str()?,
            venue: r.str()?,
            themes: r.0,
        };
        // Check the themes once, so reading them later cannot fail.
        let mut t = Reader(v.themes);
        let n = u16::from_be_bytes(t.array()?);
        for _ in 0..n {
            t.str()?;
        }
        t.0.is_empty().then_some(v)
    }

    fn themes(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut r = Reader(self.themes);
        let n = r.array::<2>().map_or(0, u16::from_be_bytes);
        (0..n).map_while(move |_| r.str())
    }

    fn span(&self) -> Option<(&'a str, &'a str)> {
        let opt = |s: &'a str| Some(s).filter(|s| !s.is_empty());
        let first = opt(self.start).or(opt(self.end))?;
        let last = opt(self.end).unwrap_or(first);
        Some((first, last))
    }

    fn to_unit(&self) -> Unit {
        let opt = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        Unit {
            id: self.id.to_string(),
            kind: self.kind,
            group: opt(self.group),
            title: self.title.to_string(),
            city: self.city.to_string(),
            country: self.country.to_string(),
            owner: self.owner.to_string(),
            status: self.status.to_string(),
            start: opt(self.start),
            end: opt(self.end),
            themes: self.themes().map(str::to_string).collect(),
            sectors: Sector::ALL
                .iter()
                .filter(|s| self.sectors & sector_bit(**s) != 0)
                .copied()
                .collect(),
            group_name: self.group_name.to_string(),
            venue: self.venue.to_string(),
            items: self.items,
            updated: self.updated,
        }
    }
}

#[cfg(test)]
fn decode_unit(bytes: &[u8]) -> Option<Unit> {
    UnitView::parse(bytes).map(|v| v.to_unit())
}

fn encode_posting(counts: [u16; 3], len: u32) -> [u8; 10] {
    let mut v = [0u8; 10];
    v[0..2].copy_from_slice(&counts[0].to_be_bytes());
    v[2..4].copy_from_slice(&counts[1].to_be_bytes());
    v[4..6].copy_from_slice(&counts[2].to_be_bytes());
    v[6..10].copy_from_slice(&len.to_be_bytes());
    v
}

/// (field-weighted term frequency, unit length) of a posting value.
fn decode_posting(v: &[u8]) -> Option<(f64, f64)> {
    let v: &[u8; 10] = v.try_into().ok()?;
    let c = |i: usize| f64::from(u16::from_be_bytes([v[i], v[i + 1]]));
    let len = u32::from_be_bytes([v[6], v[7], v[8], v[9]]);
    Some((4.0 * c(0) + 2.0 * c(2) + c(4), f64::from(len)))
}

// ---------------------------------------------------------------------------------------------
// The catalog in the store
// ---------------------------------------------------------------------------------------------

/// What the catalog writes of one store batch add up to: the change of the statistics (units,
/// terms) and the postings to put. The postings are put last, all of the batch's in key order:
/// the postings of one term from several records then go into the memtable side by side, each
/// insert next to the one before.
#[derive(Default)]
pub(crate) struct CatalogDelta {
    units: i64,
    terms: i64,
    postings: Vec<(Vec<u8>, [u8; 10])>,
}

impl Store {
    fn catalog_stats(&self) -> Result<(u64, u64), StoreError> {
        let v = self.meta(STATS_KEY)?.unwrap_or_default();
        Ok(match <[u8; 16]>::try_from(&v[..]) {
            Ok(b) => (
                u64::from_be_bytes(b[..8].try_into().unwrap_or_default()),
                u64::from_be_bytes(b[8..].try_into().unwrap_or_default()),
            ),
            Err(_) => (0, 0),
        })
    }

    /// Puts the postings and the new statistics into the batch (after every
    /// [`Store::catalog_write`] of the batch).
    pub(crate) fn catalog_finish(
        &self,
        batch: &mut WriteBatch,
        delta: &mut CatalogDelta,
    ) -> Result<(), StoreError> {
        delta.postings.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in delta.postings.drain(..) {
            batch.put_cf(self.cf("postings"), k, v);
        }
        if delta.units == 0 && delta.terms == 0 {
            return Ok(());
        }
        let (units, tokens) = self.catalog_stats()?;
        let units = units.saturating_add_signed(delta.units);
        let tokens = tokens.saturating_add_signed(delta.terms);
        let mut v = units.to_be_bytes().to_vec();
        v.extend_from_slice(&tokens.to_be_bytes());
        batch.put_cf(self.cf("meta"), STATS_KEY.as_bytes(), v);
        Ok(())
    }

    /// Puts the catalog rows of record `id` (as it now reads) into `batch`, replacing its old
    /// units; unchanged texts keep their postings. `new_doc`: the record has no catalog rows
    /// yet (its first accepted change), so there is nothing to read or replace.
    pub(crate) fn catalog_write(
        &self,
        batch: &mut WriteBatch,
        id: &DocId,
        record: &Record,
        updated: i64,
        new_doc: bool,
        delta: &mut CatalogDelta,
    ) -> Result<(), StoreError> {
        let new = units_of(*id, record, updated);
        let new_keys: HashSet<&[u8]> = new.iter().map(|e| e.key.as_slice()).collect();
        let mut old_texts: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut old_units: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let old_rows = if new_doc {
            Vec::new()
        } else {
            self.scan("units", &id.0)?
        };
        for (k, v) in old_rows {
            old_units.insert(k.to_vec(), v.to_vec());
            if let Some(t) = self.get("texts", &k)? {
                old_texts.insert(k.to_vec(), t);
            }
            if !new_keys.contains(&k[..]) {
                batch.delete_cf(self.cf("units"), &k);
                batch.delete_cf(self.cf("facets"), &k);
                batch.delete_cf(self.cf("texts"), &k);
                delta.units -= 1;
            }
        }
        let new_texts = new
            .iter()
            .map(|e| serde_json::to_vec(&e.texts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|x| self.corrupt(x))?;
        for (key, old) in &old_texts {
            let unchanged = new
                .iter()
                .zip(&new_texts)
                .any(|(e, texts)| e.key == *key && texts == old);
            if unchanged {
                continue;
            }
            let texts: Vec<(u8, String)> = serde_json::from_slice(old).unwrap_or_default();
            let (counts, len) = count_terms(&texts);
            for (t, _) in &counts {
                batch.delete_cf(self.cf("postings"), posting_key(t, key));
            }
            delta.terms -= i64::from(len);
        }
        for (e, texts) in new.iter().zip(new_texts) {
            // A unit the edit left as it was is not written again (its facets derive from it).
            let unit = encode_unit(&e.unit);
            if old_units.get(&e.key) != Some(&unit) {
                batch.put_cf(self.cf("units"), &e.key, unit);
                batch.put_cf(self.cf("facets"), &e.key, Facets::of(&e.unit).encode());
            }
            match old_texts.get(&e.key) {
                Some(old) if *old == texts => continue,
                Some(_) => {}
                None => delta.units += 1,
            }
            let (counts, len) = count_terms(&e.texts);
            delta.postings.extend(
                counts
                    .iter()
                    .map(|(t, c)| (posting_key(t, &e.key), encode_posting(*c, len))),
            );
            batch.put_cf(self.cf("texts"), &e.key, texts);
            delta.terms += i64::from(len);
        }
        Ok(())
    }

    /// Compacts the facets into one sorted run, which filtered listings scan (after bulk
    /// writes: a scan over many overlapping files merges them row by row).
    pub(crate) fn compact_facets(&self) {
        self.db
            .compact_range_cf(self.cf("facets"), None::<&[u8]>, None::<&[u8]>);
    }

    /// Whether the catalog was built by this version (else [`Store::reindex`] is due).
    pub(crate) fn catalog_current(&self) -> Result<bool, StoreError> {
        Ok(self
            .meta(VERSION_KEY)?
            .is_some_and(|v| v == CATALOG_VERSION.to_be_bytes()))
    }

    /// Marks an empty catalog as current (a new store).
    pub(crate) fn catalog_mark_current(&self, batch: &mut WriteBatch) {
        batch.put_cf(
            self.cf("meta"),
            VERSION_KEY.as_bytes(),
            CATALOG_VERSION.to_be_bytes(),
        );
    }

    /// Rebuilds the catalog from the documents; returns the number of units indexed. The caller
    /// must keep other writers out (see `City::reindex`).
    pub fn reindex(&self) -> Result<usize, StoreError> {
        let mut clear = WriteBatch::default();
        let end = [0xffu8; 64];
        for cf in ["units", "facets", "texts", "postings"] {
            clear.delete_range_cf(self.cf(cf), [0u8].as_slice(), end.as_slice());
            // The empty key sorts before [0]; no catalog key is empty, but be thorough.
            clear.delete_cf(self.cf(cf), []);
        }
        clear.delete_cf(self.cf("meta"), STATS_KEY.as_bytes());
        self.write_batch(clear, true)?;
        let mut units = 0;
        let mut batch = WriteBatch::default();
        let mut delta = CatalogDelta::default();
        let mut in_batch = 0;
        for summary in self.records(None)? {
            let Ok(id) = summary.id.parse::<DocId>() else {
                continue;
            };
            let Some(record) = self.record_at_head(&id)? else {
                continue;
            };
            self.catalog_write(&mut batch, &id, &record, summary.updated, true, &mut delta)?;
            units += units_of(id, &record, 0).len();
            in_batch += 1;
            if in_batch == 1000 {
                self.catalog_finish(&mut batch, &mut delta)?;
                self.write_batch(std::mem::take(&mut batch), false)?;
                delta = CatalogDelta::default();
                in_batch = 0;
            }
        }
        self.catalog_finish(&mut batch, &mut delta)?;
        self.catalog_mark_current(&mut batch);
        self.write_batch(batch, true)?;
        // Flushed so that the next process opening the store has no large log to replay.
        self.flush()?;
        self.compact_facets();
        Ok(units)
    }

    /// Answers a catalog query.
    pub fn query(&self, q: &Query) -> Result<Found, StoreError> {
        let terms = match &q.text {
            Some(text) => Some(parse_query(text).map_err(|e| StoreError::Query(e.to_string()))?),
            None => None,
        };
        let sort = q.sort.unwrap_or(if terms.is_some() {
            Sort::Relevance
        } else {
            Sort::Updated
        });
        let filter = FacetFilter::new(&q.filter)?;
        let mut best = TopK::new(q.limit);
        let mut total = 0;
        match &terms {
            None => {
                let prefix = filter.group.map(|g| g.to_vec()).unwrap_or_default();
                let mut opts = rocksdb::ReadOptions::default();
                // One pass over the whole column family: read ahead, keep the cache for others.
                opts.set_readahead_size(4 << 20);
                opts.fill_cache(false);
                let mut it = self.db.raw_iterator_cf_opt(self.cf("facets"), opts);
                it.seek(&prefix);
                while let (Some(k), Some(v)) = (it.key(), it.value()) {
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    let facets = Facets::decode(v).ok_or_else(|| self.corrupt("catalog facets"))?;
                    total += self.consider(&filter, sort, k, &facets, 0.0, &mut best)?;
                    it.next();
                }
                it.status().map_err(|e| self.classify(e))?;
            }
            Some(terms) => {
                let scored = self.scores(terms)?;
                if q.filter.is_empty() && sort == Sort::Relevance {
                    // The order needs no facet: rank first, read only the units shown.
                    total = scored.len();
                    let mut ranked: Vec<&(UnitKey, f64)> = scored.iter().collect();
                    let keep = if q.limit == 0 {
                        ranked.len()
                    } else {
                        q.limit.min(ranked.len())
                    };
                    if keep < ranked.len() {
                        ranked.select_nth_unstable_by(keep, |a, b| by_score(a, b));
                        ranked.truncate(keep);
                    }
                    for (key, score) in ranked {
                        best.offer(SortKey::Relevance(Score(*score)), key.as_slice(), None);
                    }
                } else {
                    for chunk in scored.chunks(1024) {
                        let rows = self.db.multi_get_cf(
                            chunk.iter().map(|(k, _)| (self.cf("facets"), k.as_slice())),
                        );
                        for ((key, score), row) in chunk.iter().zip(rows) {
                            let Some(v) = row.map_err(|e| self.classify(e))? else {
                                continue;
                            };
                            let facets =
                                Facets::decode(&v).ok_or_else(|| self.corrupt("catalog facets"))?;
                            total += self.consider(
                                &filter,
                                sort,
                                key.as_slice(),
                                &facets,
                                *score,
                                &mut best,
                            )?;
                        }
                    }
                }
            }
        }
        let winners = best.into_sorted();
        let missing: Vec<&[u8]> = winners
            .iter()
            .filter(|w| w.1.is_none())
            .map(|w| w.0.as_slice())
            .collect();
        let mut fetched = self
            .db
            .multi_get_cf(missing.iter().map(|k| (self.cf("units"), *k)))
            .into_iter();
        let mut hits = Vec::with_capacity(winners.len());
        for (key, row, score) in winners {
            let row = match row {
                Some(r) => r,
                None => match fetched.next() {
                    Some(r) => match r.map_err(|e| self.classify(e))? {
                        Some(r) => r,
                        None => continue,
                    },
                    None => continue,
                },
            };
            let view = UnitView::parse(&row).ok_or_else(|| self.corrupt("catalog unit"))?;
            let mut hit = Hit {
                unit: view.to_unit(),
                score,
                snippet: None,
                highlights: Vec::new(),
            };
            if let Some(terms) = &terms {
                self.add_snippet(&key, terms, &mut hit)?;
            }
            hits.push(hit);
        }
        Ok(Found { total, hits })
    }

    /// Offers one unit to `best` if it passes `filter`; returns 1 if it did, else 0. The unit
    /// row is read only when the facets cannot decide or the order needs the title.
    fn consider(
        &self,
        filter: &FacetFilter<'_>,
        sort: Sort,
        key: &[u8],
        facets: &Facets,
        score: f64,
        best: &mut TopK,
    ) -> Result<usize, StoreError> {
        let verdict = filter.check(key, facets);
        if verdict == FacetVerdict::No {
            return Ok(0);
        }
        if verdict == FacetVerdict::Yes && sort != Sort::Title {
            best.offer(SortKey::of(sort, facets, "", score), key, None);
            return Ok(1);
        }
        let Some(row) = self.get("units", key)? else {
            return Ok(0);
        };
        let view = UnitView::parse(&row).ok_or_else(|| self.corrupt("catalog unit"))?;
        if verdict == FacetVerdict::Check && !filter.filter.matches(&view) {
            return Ok(0);
        }
        best.offer(
            SortKey::of(sort, facets, view.title, score),
            key,
            Some(&row),
        );
        Ok(1)
    }

    fn add_snippet(
        &self,
        key: &[u8],
        query: &[QueryTerm],
        hit: &mut Hit,
    ) -> Result<(), StoreError> {
        let texts: Vec<(u8, String)> = match self.get("texts", key)? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| self.corrupt(e))?,
            None => Vec::new(),
        };
        let matched = texts
            .iter()
            .filter(|(f, _)| *f != F_TITLE)
            .find(|(_, t)| terms(t).any(|x| query.iter().any(|q| q.matches(&x))))
            .or_else(|| {
                texts
                    .iter()
                    .find(|(f, _)| [F_SUMMARY, F_BODY, F_ITEM].contains(f))
            });
        if let Some((_, text)) = matched {
            let (s, h) = snippet(text, query, 160);
            hit.snippet = Some(s);
            hit.highlights = h;
        }
        Ok(())
    }

    /// The postings of one query term: (unit key, weighted term frequency, unit length),
    /// sorted by unit key.
    fn postings(&self, qt: &QueryTerm) -> Result<Vec<(UnitKey, f64, f64)>, StoreError> {
        let seek = match qt {
            QueryTerm::Exact(t) => {
                let mut s = t.as_bytes().to_vec();
                s.push(0);
                s
            }
            QueryTerm::Prefix(p) => p.as_bytes().to_vec(),
        };
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf("postings"));
        it.seek(&seek);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&seek) {
                break;
            }
            if let Some(zero) = k.iter().position(|&b| b == 0)
                && let Some(key) = UnitKey::new(&k[zero + 1..])
            {
                let (tf, len) = decode_posting(v).ok_or_else(|| self.corrupt("posting"))?;
                out.push((key, tf, len));
            }
            it.next();
        }
        it.status().map_err(|e| self.classify(e))?;
        if matches!(qt, QueryTerm::Prefix(_)) {
            // Several terms: merge the units they share.
            out.sort_by_key(|a| a.0);
            out.dedup_by(|later, first| {
                let same = later.0 == first.0;
                if same {
                    first.1 += later.1;
                }
                same
            });
        }
        Ok(out)
    }

    /// The units holding every term, with their BM25 scores, sorted by unit key.
    fn scores(&self, terms: &[QueryTerm]) -> Result<Vec<(UnitKey, f64)>, StoreError> {
        const K1: f64 = 1.2;
        const B: f64 = 0.75;
        let (n_units, n_tokens) = self.catalog_stats()?;
        let n = n_units.max(1) as f64;
        let avg = (n_tokens as f64 / n).max(1.0);
        let mut lists = terms
            .iter()
            .map(|t| self.postings(t))
            .collect::<Result<Vec<_>, _>>()?;
        // Intersect starting from the shortest list.
        lists.sort_by_key(Vec::len);
        let mut acc: Option<Vec<(UnitKey, f64)>> = None;
        for list in &lists {
            let df = list.len() as f64;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            let score =
                |tf: f64, len: f64| idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg));
            acc = Some(match acc {
                None => list
                    .iter()
                    .map(|(k, tf, len)| (*k, score(*tf, *len)))
                    .collect(),
                Some(prev) => {
                    let mut out = Vec::with_capacity(prev.len());
                    let mut j = 0;
                    for (k, s) in prev {
                        while j < list.len() && list[j].0 < k {
                            j += 1;
                        }
                        if let Some((k2, tf, len)) = list.get(j)
                            && *k2 == k
                        {
                            out.push((k, s + score(*tf, *len)));
                        }
                    }
                    out
                }
            });
        }
        Ok(acc.unwrap_or_default())
    }
}

/// A unit's key in the catalog: doc id (16 bytes) and, for an agenda, its id (up to 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct UnitKey {
    len: u8,
    bytes: [u8; 40],
}

impl UnitKey {
    fn new(k: &[u8]) -> Option<UnitKey> {
        let mut bytes = [0u8; 40];
        bytes.get_mut(..k.len())?.copy_from_slice(k);
        Some(UnitKey {
            len: u8::try_from(k.len()).ok()?,
            bytes,
        })
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

fn by_score(a: &(UnitKey, f64), b: &(UnitKey, f64)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1)
        .then_with(|| a.0.as_slice().cmp(b.0.as_slice()))
}

/// A score ordered best first.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.total_cmp(&self.0)
    }
}

/// What results are ordered by; smaller is shown first. Ties go to the unit key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Relevance(Score),
    Updated(std::cmp::Reverse<i64>),
    /// Undated last, then first and last day.
    Date(bool, i32, i32),
    Title(String),
}

impl SortKey {
    fn of(sort: Sort, f: &Facets, title: &str, score: f64) -> SortKey {
        match sort {
            Sort::Relevance => SortKey::Relevance(Score(score)),
            Sort::Updated => SortKey::Updated(std::cmp::Reverse(f.updated)),
            Sort::Date => match f.span {
                Some((a, b)) => SortKey::Date(false, a, b),
                None => SortKey::Date(true, 0, 0),
            },
            Sort::Title => SortKey::Title(fold(title)),
        }
    }

    fn score(&self) -> Option<f64> {
        match self {
            SortKey::Relevance(s) => Some(s.0),
            _ => None,
        }
    }
}

/// A kept result: its order, unit key and (when already read) unit row.
type Kept = (SortKey, Vec<u8>, Option<Vec<u8>>);

/// A result in order: unit key, unit row if already read, score.
type Winner = (Vec<u8>, Option<Vec<u8>>, Option<f64>);

/// The `k` best results offered, or all of them when `k` is 0.
struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<Kept>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: std::collections::BinaryHeap::new(),
        }
    }

    fn offer(&mut self, key: SortKey, unit_key: &[u8], row: Option<&[u8]>) {
        if self.k > 0
            && self.heap.len() >= self.k
            && let Some(worst) = self.heap.peek()
            && (&key, unit_key) >= (&worst.0, worst.1.as_slice())
        {
            return;
        }
        self.heap
            .push((key, unit_key.to_vec(), row.map(<[u8]>::to_vec)));
        if self.k > 0 && self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    /// (unit key, row if read, score), best first.
    fn into_sorted(self) -> Vec<Winner> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|(key, k, row)| {
                let score = key.score();
                (k, row, score)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_fold_case_diacritics_plurals_and_stop_words() {
        assert_eq!(
            terms("The Cities of Białystok and Brno: Youth-Employment projects, 2017!")
                .collect::<Vec<_>>(),
            vec![
                "city",
                "bialystok",
                "brno",
                "youth",
                "employment",
                "project",
                "2017"
            ]
        );
        assert_eq!(
            terms("Straße Łódź café").collect::<Vec<_>>(),
            vec!["strasse", "lodz", "cafe"]
        );
        assert_eq!(
            terms("bus process analysis a I").collect::<Vec<_>>(),
            vec!["bus", "process", "analysis"]
        );
    }

    #[test]
    fn queries() {
        assert_eq!(
            parse_query("Youth employ*").expect("query"),
            vec![
                QueryTerm::Exact("youth".into()),
                QueryTerm::Prefix("employ".into())
            ]
        );
        assert!(matches!(parse_query("the of"), Err(QueryError::NoTerms(_))));
        assert!(matches!(
            parse_query(&"x".repeat(MAX_QUERY_CHARS + 1)),
            Err(QueryError::TooLong(_))
        ));
    }

    #[test]
    fn snippets_highlight_matches() {
        let text = "Milan opened FabriQ in 2014. The incubator supports social innovation \
                    start-ups with mentoring, and young people find employment there.";
        let q = parse_query("employment").expect("query");
        let (s, h) = snippet(text, &q, 60);
        assert!(s.starts_with('…'), "{s}");
        assert_eq!(h.len(), 1);
        let (a, b) = h[0];
        assert_eq!(&s[a..b], "employment");
        let (s, h) = snippet("short text", &q, 60);
        assert_eq!(s, "short text");
        assert!(h.is_empty());
    }

    #[test]
    fn unit_encoding_round_trips() {
        let u = Unit {
            id: "00ff".into(),
            kind: UnitKind::Agenda,
            group: Some("abcd".into()),
            title: "Study visit — Milan".into(),
            city: "Milan".into(),
            country: String::new(),
            owner: String::new(),
            status: "published".into(),
            start: Some("2017-02-23".into()),
            end: None,
            themes: vec!["inclusion".into(), "youth".into()],
            sectors: vec![Sector::Ngo, Sector::University],
            group_name: "Smart Social Inclusion".into(),
            venue: "Palazzo Marino".into(),
            items: 5,
            updated: 1_487_842_200_000,
        };
        assert_eq!(decode_unit(&encode_unit(&u)), Some(u.clone()));
        let bytes = encode_unit(&u);
        assert_eq!(decode_unit(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn facets_round_trip_and_days() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(day_number("2017-02-23"), Some(17_220));
        assert_eq!(day_number("2000-03-01"), Some(11_017));
        let mut u = Unit::new(UnitKind::Project, "01".into(), "Youth", 5);
        u.themes = vec!["Youth".into(), "Employment".into()];
        u.start = Some("2016-01-01".into());
        u.status = "running".into();
        let f = Facets::of(&u);
        assert_eq!(Facets::decode(&f.encode()), Some(f.clone()));
        assert_eq!(f.span, Some((16_801, 16_801)));
        assert!(
            f.has_theme(fold_hash(" youth ")),
            "hashes ignore case and spaces"
        );
        assert_eq!(Facets::decode(&f.encode()[..5]), None);
    }

    #[test]
    fn filters() {
        let mut u = Unit {
            id: "01".into(),
            kind: UnitKind::Project,
            group: None,
            title: "Youth Guarantee".into(),
            city: "Brno".into(),
            country: String::new(),
            owner: "12D3KooWBrno".into(),
            status: "running".into(),
            start: Some("2016-01-01".into()),
            end: Some("2018-12-31".into()),
            themes: vec!["Youth".into()],
            sectors: vec![Sector::Private, Sector::University],
            group_name: String::new(),
            venue: String::new(),
            items: 0,
            updated: 0,
        };
        let f = |edit: &dyn Fn(&mut Filter)| {
            let mut f = Filter::default();
            edit(&mut f);
            f
        };
        assert!(f(&|_| {}).matches_unit(&u));
        assert!(f(&|f| f.kinds = vec![UnitKind::Project]).matches_unit(&u));
        assert!(!f(&|f| f.kinds = vec![UnitKind::Practice]).matches_unit(&u));
        assert!(f(&|f| f.cities = vec!["brno".into()]).matches_unit(&u));
        assert!(f(&|f| f.cities = vec!["12D3KooWBrno".into()]).matches_unit(&u));
        assert!(f(&|f| f.tags = vec!["youth".into(), "x".into()]).matches_unit(&u));
        assert!(
            !f(&|f| {
                f.tags = vec!["youth".into(), "x".into()];
                f.all = true;
            })
            .matches_unit(&u)
        );
        let all3 = |f: &mut Filter| {
            f.sectors = vec![Sector::Private, Sector::Ngo, Sector::University];
            f.all = true;
        };
        assert!(!f(&all3).matches_unit(&u));
        u.sectors.push(Sector::Ngo);
        assert!(f(&all3).matches_unit(&u));
        assert!(f(&|f| f.statuses = vec!["RUNNING".into()]).matches_unit(&u));
        assert!(f(&|f| f.since = Some("2018-12-31".into())).matches_unit(&u));
        assert!(!f(&|f| f.since = Some("2019-01-01".into())).matches_unit(&u));
        assert!(!f(&|f| f.until = Some("2015-12-31".into())).matches_unit(&u));
        assert!(!f(&|f| f.group = Some("01".into())).matches_unit(&u));
        u.start = None;
        u.end = None;
        assert!(!f(&|f| f.until = Some("2030-01-01".into())).matches_unit(&u));
    }
}
