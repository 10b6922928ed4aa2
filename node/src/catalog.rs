//! The catalog: what city staff search and filter. One *unit* per practice, project, working
//! group and meeting agenda (an agenda lives inside its group's record but is found on its own),
//! kept in three column families and updated in the same write batch as every accepted entry,
//! local or from a peer — so a record is searchable the moment it is accepted.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `units` | doc id (16) · agenda id (ASCII, agendas only) | [`Unit`], compact binary |
//! | `facets` | same | what filters and orders need, small and hashed (about 40 bytes) |
//! | `texts` | same | the unit's searchable text fields (JSON `[[field, text], ...]`) |
//! | `postings` | term (UTF-8) · 0x00 · unit key | term counts by field weight (3 × u16 BE) · unit length (u32 BE) |
//!
//! Search is a real inverted index: every query term must match (AND), a trailing `*` matches
//! a prefix, and hits are ranked with BM25 over field-weighted term counts (title ×4; summary,
//! themes and agenda item titles ×2; everything else ×1). Terms are lowercased words stemmed in
//! the record's language (Snowball, where it has one) and folded (`Białystok` → `bialystok`);
//! a query word is looked up in every language at once (docs/data-model.md, "The catalog").
//! Withdrawn records leave the catalog.
//!
//! Filters (kind, city, tag, sector, group, status, dates) are checked first on the small
//! `facets` rows (city and themes as hashes of their lowercase form, dates as day numbers), then,
//! when a city or tag matched by hash, on the full unit. A filtered listing scans the facets
//! (the group's key range only with `--group`) and keeps the best `limit` in a heap; a search
//! reads the facets of its candidates only.
//!
//! Layout: this file holds the public types (units, queries, filters, results) and the tests;
//! `catalog/analyze.rs` turns text into terms and queries, `catalog/units.rs` a record into
//! units, `catalog/encoding.rs` units, facets and postings into bytes (and filters on them),
//! `catalog/rank.rs` orders results. The catalog reads and writes no rows itself: the store
//! does, calling it (`store/catalog.rs` keeps the column families in step with each write and
//! rebuilds them, `store/search.rs` answers queries), so the store depends on the catalog and
//! not the other way round.

use std::fmt;
use std::str::FromStr;

use intercity_protocol::entry::DocId;
use intercity_protocol::record::{Record, Sector};
use serde::{Deserialize, Serialize};

/// Version of the catalog's layout; a store with another version is reindexed when opened.
pub const CATALOG_VERSION: u32 = 5;
/// Longest term indexed, in characters (longer words are cut).
pub const MAX_TERM_CHARS: usize = 32;
/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 500;

pub(crate) const STATS_KEY: &str = "catalog_stats";
pub(crate) const VERSION_KEY: &str = "catalog_version";

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
    /// Any of these languages (ISO 639 codes): a practice's language or one of its
    /// translations'; a record without one (project, group, agenda) counts as written in the
    /// default language (`en`). Search words
    /// are looked up in these languages only.
    #[serde(default)]
    pub languages: Vec<String>,
}

impl Filter {
    /// Whether the unit passes every filter.
    pub(crate) fn matches(&self, unit: &UnitView<'_>) -> bool {
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
        let themes = if self.tags.is_empty() {
            Vec::new()
        } else {
            encoding::theme_terms(unit.themes())
        };
        let has_tag = |t: &String| {
            let mut terms = analyze::terms(t).peekable();
            terms.peek().is_some() && terms.all(|w| themes.contains(&w))
        };
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
    pub(crate) fn is_empty(&self) -> bool {
        self.kinds.is_empty()
            && self.cities.is_empty()
            && self.tags.is_empty()
            && self.sectors.is_empty()
            && self.group.is_none()
            && self.statuses.is_empty()
            && self.since.is_none()
            && self.until.is_none()
            && self.languages.is_empty()
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
    /// The search text only excludes words.
    #[error("`{0}` only excludes words; add a word that results hold")]
    OnlyExcluded(String),
    /// OR next to a phrase of several words.
    #[error(
        "`{0}`: OR joins single words, not phrases; search for each phrase on its own (or drop the quotes)"
    )]
    OrPhrase(String),
    /// The group filter is not a record id.
    #[error("the group filter is not a record id: {0}")]
    BadGroup(String),
}

mod analyze;
mod encoding;
mod rank;
mod units;

pub use analyze::terms;
pub(crate) use analyze::*;
pub use encoding::STATUSES;
pub(crate) use encoding::*;
pub(crate) use rank::*;
pub(crate) use units::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_fold_case_diacritics_stems_and_stop_words() {
        assert_eq!(
            terms("The Cities of Białystok and Brno: Youth-Employment projects, 2017!")
                .collect::<Vec<_>>(),
            vec![
                "citi",
                "bialystok",
                "brno",
                "youth",
                "employ",
                "project",
                "2017"
            ]
        );
        assert_eq!(
            terms("Straße Łódź café").collect::<Vec<_>>(),
            vec!["strasse", "lodz", "cafe"]
        );
        assert_eq!(
            terms("bus process a I").collect::<Vec<_>>(),
            vec!["bus", "process"]
        );
        // Decomposed letters (e + combining acute) belong to their word and fold the same.
        assert_eq!(
            terms("Cafe\u{301} Krako\u{301}w").collect::<Vec<_>>(),
            terms("Café Kraków").collect::<Vec<_>>()
        );
    }

    #[test]
    fn each_language_stems_its_own_words() {
        let same = |lang: &str, a: &str, b: &str| {
            let an = Analyzer::of(lang);
            assert_eq!(an.term(a), an.term(b), "{lang}: {a} / {b}");
            assert!(an.term(a).is_some());
        };
        same("it", "cooperativa", "cooperative");
        same("it", "inclusione", "inclusioni");
        same("es", "proyectos", "proyecto");
        same("pt", "cidades", "cidade");
        same("fr", "innovations", "innovation");
        same("nl", "projecten", "project");
        same("de", "Projekte", "Projekt");
        same("en", "employment", "employ");
        // Czech, Polish and Latvian have no stemmer here: folded only.
        assert_eq!(Analyzer::of("cs").term("Brně").as_deref(), Some("brne"));
        assert_eq!(Analyzer::of("pl").term("Łódź").as_deref(), Some("lodz"));
        assert_eq!(Analyzer::of("lv").term("Rīga").as_deref(), Some("riga"));
        assert_ne!(
            Analyzer::of("cs").term("domy"),
            Analyzer::of("cs").term("dům")
        );
    }

    #[test]
    fn a_remembered_term_is_the_term_worked_out() {
        let words = [
            "Projekte",
            "projects",
            "Café",
            "cafe\u{301}",
            "the",
            "a",
            "2017",
            "Białystok",
            "inclusione",
            "\u{fdfa}\u{fdfa}\u{fdfa}",
            "x",
            "İstanbul",
            "ǅemal",
        ];
        let long = "Donaudampfschifffahrtsgesellschaftskapitänsmützen".repeat(2);
        for analyzer in Analyzer::all() {
            for word in words.iter().copied().chain([long.as_str()]) {
                let worked_out = analyzer.work_out(word);
                // Twice: the first may work it out and remember it, the second finds it.
                assert_eq!(analyzer.term(word), worked_out, "{analyzer:?} {word}");
                assert_eq!(analyzer.term(word), worked_out, "{analyzer:?} {word}");
            }
        }
        // Past its bound the memo starts again, still answering the same.
        let en = Analyzer::of("en");
        for n in 0..MAX_MEMO_TERMS + 10 {
            let word = format!("word{n}s");
            assert_eq!(en.term(&word), en.work_out(&word));
        }
        assert_eq!(en.term("projects").as_deref(), Some("project"));
        // Each analyzer remembers its own terms.
        assert_eq!(
            Analyzer::FOLD_ONLY.term("projects").as_deref(),
            Some("projects")
        );
    }

    #[test]
    fn queries() {
        let q = parse_query("Youth employ*", &[]).expect("query");
        assert_eq!(q.all.len(), 2);
        assert!(q.all[0].0.contains(&QueryTerm::Exact("youth".into())));
        assert_eq!(q.all[1].0, vec![QueryTerm::Prefix("employ".into())]);
        // Each word in every language: the Italian stem of an Italian word is among them.
        let q = parse_query("inclusione", &[]).expect("query");
        let italian = Analyzer::of("it").term("inclusione").expect("term");
        assert!(q.all[0].0.contains(&QueryTerm::Exact(italian.clone())));
        assert!(q.all[0].0.len() > 1, "{q:?}");
        let q = parse_query("inclusione", &["it".into()]).expect("query");
        assert_eq!(q.all[0].0, vec![QueryTerm::Exact(italian)]);
        // OR joins two words into one; -word excludes; quotes make a phrase.
        let q = parse_query("youth OR jobs housing", &["en".into()]).expect("query");
        assert_eq!(q.all.len(), 2);
        assert_eq!(
            q.all[0].0,
            vec![
                QueryTerm::Exact("youth".into()),
                QueryTerm::Exact("job".into())
            ]
        );
        let q = parse_query("youth -housing", &["en".into()]).expect("query");
        assert_eq!((q.all.len(), q.none.len()), (1, 1));
        let not = parse_query("youth NOT housing", &["en".into()]).expect("query");
        assert_eq!(not, q);
        // An excluded phrase excludes the units holding all its words, not either of them.
        let a = parse_query("youth NOT \"social housing\"", &["en".into()]).expect("query");
        let b = parse_query("youth -\"social housing\"", &["en".into()]).expect("query");
        assert_eq!(a, b);
        assert_eq!((a.none.len(), a.none[0].len(), a.all.len()), (1, 2, 1));
        // A prefix is also the word's stem: the index holds stems.
        let p = parse_query("employment*", &["en".into()]).expect("query");
        assert!(
            p.all[0].0.contains(&QueryTerm::Prefix("employ".into())),
            "{p:?}"
        );
        assert_eq!(
            Analyzer::of("ita").term("cooperative"),
            Analyzer::of("it").term("cooperative")
        );
        let q = parse_query("\"civic crowdfunding\" Milan", &["en".into()]).expect("query");
        assert_eq!((q.all.len(), q.phrases.len()), (3, 1));
        // OR joins words: next to a phrase it is refused (it would require the phrase anyway);
        // a quoted single word is a word.
        for text in [
            "\"civic crowdfunding\" OR housing",
            "housing OR \"civic crowdfunding\"",
            "\"civic crowdfunding\" -cafe OR housing",
            "\"civic crowdfunding\" NOT cafe OR housing",
        ] {
            assert!(
                matches!(parse_query(text, &[]), Err(QueryError::OrPhrase(_))),
                "{text}"
            );
        }
        assert_eq!(
            parse_query("youth OR \"jobs\" housing", &["en".into()]).expect("query"),
            parse_query("youth OR jobs housing", &["en".into()]).expect("query")
        );
        assert!(holds_phrase(
            &terms("the civic crowdfunding platform").collect::<Vec<_>>(),
            &q.phrases[0]
        ));
        assert!(!holds_phrase(
            &terms("crowdfunding is civic").collect::<Vec<_>>(),
            &q.phrases[0]
        ));
        assert!(matches!(
            parse_query("-housing", &[]),
            Err(QueryError::OnlyExcluded(_))
        ));
        assert!(matches!(
            parse_query("the of", &[]),
            Err(QueryError::NoTerms(_))
        ));
        assert!(matches!(
            parse_query(&"x".repeat(MAX_QUERY_CHARS + 1), &[]),
            Err(QueryError::TooLong(_))
        ));
    }

    #[test]
    fn snippets_highlight_matches() {
        let text = "Milan opened FabriQ in 2014. The incubator supports social innovation \
                    start-ups with mentoring, and young people find employment there.";
        let q = parse_query("employment", &[]).expect("query").shown();
        let en = Analyzer::of("en");
        let (s, h) = snippet(text, &q, en, 60);
        assert!(s.starts_with('…'), "{s}");
        assert_eq!(h.len(), 1);
        let (a, b) = h[0];
        assert_eq!(&s[a..b], "employment");
        // A non-breaking space (French puts one before a colon) is two bytes.
        let french = format!("{}Objectif\u{a0}: youth employment", "x".repeat(60));
        let (s, h) = snippet(&french, &q, en, 60);
        assert_eq!(h.len(), 1, "{s}");
        let (s, h) = snippet("short text", &q, en, 60);
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
    fn a_translation_without_text_gives_no_language() {
        use intercity_protocol::record::{Practice, Translation};
        let mut p = Practice::new("owner", "Cooperativa", "");
        let text = |title: &str| Translation {
            title: title.into(),
            summary: String::new(),
        };
        p.translations.insert("de".into(), text(" "));
        p.translations.insert("en".into(), text("Cooperative"));
        let units = units::units_of(DocId([1; 16]), &Record::Practice(p), 0);
        let unit = units.first().expect("a unit");
        assert_eq!(
            unit.language(),
            "en",
            "none given: the default, not a translation's"
        );
        assert_eq!(unit.translations().collect::<Vec<_>>(), ["en"]);
    }

    #[test]
    fn facets_round_trip_and_days() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(day_number("2017-02-23"), Some(17_220));
        assert_eq!(day_number("2000-03-01"), Some(11_017));
        let mut u = Unit::new(UnitKind::Project, "01".into(), "Youth", 5);
        u.themes = vec!["Youth employment".into()];
        u.start = Some("2016-01-01".into());
        u.status = "running".into();
        let f = Facets::of(&u, "it", ["en", "cs"].into_iter());
        assert_eq!(Facets::decode(&f.encode()), Some(f.clone()));
        assert_eq!(f.language(), "it");
        assert!(f.in_language("it") && f.in_language("en") && f.in_language("cs"));
        assert!(
            !f.in_language("pt"),
            "neither the original nor a translation"
        );
        assert_eq!(f.span, Some((16_801, 16_801)));
        assert!(f.has_theme(fold_hash("youth")), "the themes' terms");
        assert!(
            !f.has_theme(fold_hash("youth employment")),
            "words, not whole themes"
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
        // A tag matches when each of its words is among the themes' words.
        u.themes = vec!["Youth employment".into(), "social-innovation".into()];
        let tags = |tags: &[&str], all: bool| {
            f(&|f| {
                f.tags = tags.iter().map(|t| (*t).to_string()).collect();
                f.all = all;
            })
            .matches_unit(&u)
        };
        assert!(tags(&["youth", "employment"], true));
        assert!(tags(&["Employment"], false));
        assert!(tags(&["social innovation"], false));
        assert!(tags(&["Social-Innovation", "youth"], true));
        assert!(!tags(&["youth", "housing"], true));
        assert!(tags(&["youth", "housing"], false));
        assert!(!tags(&["social housing"], false));
        assert!(!tags(&["the"], false), "a tag of no words matches nothing");
        u.themes = vec!["Youth".into()];
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
