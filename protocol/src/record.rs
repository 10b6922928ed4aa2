//! Record schemas — practices, projects and working groups — and their validation.
//!
//! A record is plain data with a JSON form. That JSON form is what an Automerge document's root
//! map mirrors (see [`crate::doc`]), what `intercity` imports and exports, and what
//! [`Record::validate`] checks.
//!
//! # JSON shape
//!
//! - Field names are `snake_case`; every record carries `"kind": "practice" | "project" | "group"`.
//! - Unknown fields are rejected (`deny_unknown_fields`), so a typo in imported JSON fails with a
//!   message naming the field.
//! - Missing list, map and optional fields default to empty / absent. Missing optional text fields
//!   default to `""`; required ones are reported by [`Record::validate`] as
//!   [`RecordError::Missing`].
//! - Lists, maps and text fields are always serialized, even when empty, so that every Automerge
//!   document has those containers from its first change. (If two cities concurrently created the
//!   same list, one of the two lists would win and the other city's entries would be lost.)
//!   `None` optional fields are omitted.
//!
//! # Validation
//!
//! Parsing ([`Record::from_json`]) only checks the shape; [`Record::validate`] checks the content:
//! required fields, length and count limits (the `MAX_*` constants), calendar dates
//! (`YYYY-MM-DD`, end not before start), country and language codes, link schemes, ids, control
//! characters, and that a group has a chair. Errors name the field by its full path, e.g.
//! `agendas.3f2a9c0d1e2b4a5c.items[2].title`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Maximum length, in characters, of a practice title, an agenda title and an agenda item title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Maximum length, in characters, of a practice summary, and of each practice outcome and each
/// agenda decision.
pub const MAX_SUMMARY_CHARS: usize = 2_000;
/// Maximum length, in characters, of a practice body.
pub const MAX_BODY_CHARS: usize = 100_000;
/// Maximum length, in characters, of short one-line fields: names, city names and ids, venue,
/// slot, contact, funding, themes, presenters, attendees, figure labels and units.
pub const MAX_SHORT_CHARS: usize = 200;
/// Maximum length, in characters, of a project description, a group charter and agenda item notes.
pub const MAX_NOTES_CHARS: usize = 10_000;
/// Maximum length, in characters, of a link.
pub const MAX_URL_CHARS: usize = 2_000;
/// Maximum length, in characters, of an agenda or item id.
pub const MAX_ID_CHARS: usize = 64;
/// Maximum number of entries of any list (themes, links, partners, editors, items, attendees,
/// decisions, outcomes, presenters, partner cities, related practices).
pub const MAX_LIST_LEN: usize = 200;
/// Maximum number of members of a working group.
pub const MAX_MEMBERS: usize = 500;
/// Maximum number of agendas of a working group.
pub const MAX_AGENDAS: usize = 1_000;

/// Number of random bytes in a new agenda id (see [`new_agenda_id`]).
pub const AGENDA_ID_BYTES: usize = 8;
/// Number of random bytes in a new agenda item id (see [`new_item_id`]).
pub const ITEM_ID_BYTES: usize = 6;

/// Why a record is not acceptable.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A text field is longer than its limit.
    #[error("field `{field}` is {len} characters long; the limit is {max}")]
    TooLong {
        /// Path of the field, e.g. `agendas.<id>.items[2].title`.
        field: String,
        /// The limit, in characters.
        max: usize,
        /// The actual length, in characters.
        len: usize,
    },
    /// A list or map has more entries than its limit.
    #[error("field `{field}` has {len} entries; the limit is {max}")]
    TooMany {
        /// Path of the field.
        field: String,
        /// The limit, in entries.
        max: usize,
        /// The actual number of entries.
        len: usize,
    },
    /// A required field is missing or empty.
    #[error("field `{field}` is required and must not be empty")]
    Missing {
        /// Path of the field.
        field: String,
    },
    /// A date field is not a valid calendar date in the form `YYYY-MM-DD`.
    #[error("field `{field}` is not a valid date (expected YYYY-MM-DD): `{value}`")]
    InvalidDate {
        /// Path of the field.
        field: String,
        /// The offending value.
        value: String,
    },
    /// A field has a value that is not allowed.
    #[error("field `{field}` is invalid: {reason}")]
    Invalid {
        /// Path of the field.
        field: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The JSON does not have the shape of a record (serde's message names the field).
    #[error("invalid record JSON: {0}")]
    Json(String),
    /// Automerge could not read the document (it panicked on it; the panic was caught).
    #[error("the document cannot be read: {0}")]
    Unreadable(String),
}

/// Declares a fieldless enum with a lowercase string form: serde, `as_str`, `Display`, `FromStr`
/// (case-insensitive) and `ALL`.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lowercase string form, as used in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = RecordError;

            /// Parses the string form, ignoring ASCII case (`"NGO"` is [`Sector::Ngo`]).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(
                    if s.eq_ignore_ascii_case($text) {
                        return Ok($name::$variant);
                    }
                )+
                Err(RecordError::Invalid {
                    field: $what.to_string(),
                    reason: format!(
                        "`{s}` is not one of {}",
                        [$($text),+].join(", ")
                    ),
                })
            }
        }
    };
}

string_enum! {
    /// Which kind of record a document holds.
    Kind, "kind" {
        /// A good practice ([`Practice`]).
        Practice => "practice",
        /// A project ([`Project`]).
        Project => "project",
        /// A working group with its agendas ([`Group`]).
        Group => "group",
    }
}

string_enum! {
    /// The sector of a partner organisation.
    Sector, "sector" {
        /// A company.
        Private => "private",
        /// A non-governmental / non-profit organisation.
        Ngo => "ngo",
        /// A university or research institute.
        University => "university",
        /// A public body.
        Public => "public",
    }
}

string_enum! {
    /// Where a project stands.
    #[derive(Default)]
    ProjectStatus, "status" {
        /// Not started yet.
        #[default]
        Planned => "planned",
        /// Under way.
        Running => "running",
        /// Finished.
        Completed => "completed",
    }
}

string_enum! {
    /// Where a meeting agenda stands.
    #[derive(Default)]
    AgendaStatus, "status" {
        /// Being prepared; may change freely.
        #[default]
        Draft => "draft",
        /// Announced to the members.
        Published => "published",
        /// The meeting took place (its decisions and minutes are recorded).
        Held => "held",
        /// The meeting was called off.
        Cancelled => "cancelled",
    }
}

string_enum! {
    /// A city's role in a working group.
    #[derive(Default)]
    Role, "role" {
        /// Chairs the group.
        Chair => "chair",
        /// An ordinary member.
        #[default]
        Member => "member",
    }
}

/// A partner organisation of a practice or project.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    /// Name of the organisation; it identifies the partner within its list.
    pub name: String,
    /// Its sector.
    pub sector: Sector,
}

/// A good practice, owned by one city.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Practice {
    /// Always [`Kind::Practice`].
    pub kind: Kind,
    /// City id of the owning city.
    pub owner: String,
    /// City ids of the other cities allowed to edit.
    #[serde(default)]
    pub editors: Vec<String>,
    /// Title (required). Merges character-wise.
    pub title: String,
    /// Short summary. Merges character-wise.
    #[serde(default)]
    pub summary: String,
    /// Full description. Merges character-wise.
    #[serde(default)]
    pub body: String,
    /// Display name of the city where the practice happens.
    #[serde(default)]
    pub city: String,
    /// ISO 3166-1 alpha-2 country code, e.g. `IT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Themes / tags.
    #[serde(default)]
    pub themes: Vec<String>,
    /// Partner organisations.
    #[serde(default)]
    pub partners: Vec<Partner>,
    /// Outcomes, one sentence each.
    #[serde(default)]
    pub outcomes: Vec<String>,
    /// Links (`http://` or `https://`).
    #[serde(default)]
    pub links: Vec<String>,
    /// Contact (person, e-mail address, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Language of the text, 2–3 lowercase letters (ISO 639), e.g. `en` (required).
    #[serde(default)]
    pub language: String,
    /// Start date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// End date, `YYYY-MM-DD`, not before `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Withdrawn by its owner: kept (its history stays verifiable) but hidden from listings.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
    /// The title and summary in other languages, by ISO 639 code (an English summary beside
    /// the Italian original); at most [`MAX_TRANSLATIONS`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub translations: BTreeMap<String, Translation>,
}

/// A practice's title and summary in another language.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Translation {
    /// The title. Merges character-wise.
    #[serde(default)]
    pub title: String,
    /// The summary. Merges character-wise.
    #[serde(default)]
    pub summary: String,
}

/// Most languages a practice is translated into.
pub const MAX_TRANSLATIONS: usize = 16;

/// An outcome / impact figure of a project, e.g. `{label: "young people trained", value: 120,
/// unit: "people"}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// What is measured; it identifies the figure within its list.
    pub label: String,
    /// The value (finite).
    pub value: f64,
    /// The unit, possibly empty.
    #[serde(default)]
    pub unit: String,
}

/// A project, led by one city.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Always [`Kind::Project`].
    pub kind: Kind,
    /// City id of the lead city, which owns the record.
    pub owner: String,
    /// City ids of the other cities allowed to edit.
    #[serde(default)]
    pub editors: Vec<String>,
    /// Name of the project (required).
    pub name: String,
    /// Description. Merges character-wise.
    #[serde(default)]
    pub description: String,
    /// Display name of the lead city.
    #[serde(default)]
    pub lead_city: String,
    /// Display names of the partner cities.
    #[serde(default)]
    pub partner_cities: Vec<String>,
    /// Partner organisations.
    #[serde(default)]
    pub partners: Vec<Partner>,
    /// Status.
    #[serde(default)]
    pub status: ProjectStatus,
    /// Start date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// End date, `YYYY-MM-DD`, not before `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Funding programme, e.g. `Horizon 2020`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding: Option<String>,
    /// Budget in euros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_eur: Option<u64>,
    /// Outcome / impact figures.
    #[serde(default)]
    pub outcomes: Vec<Figure>,
    /// Document ids of related practices.
    #[serde(default)]
    pub related_practices: Vec<String>,
    /// Themes / tags.
    #[serde(default)]
    pub themes: Vec<String>,
    /// Withdrawn by its owner: kept (its history stays verifiable) but hidden from listings.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

/// A member city of a working group.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Display name of the city.
    pub name: String,
    /// Its role.
    #[serde(default)]
    pub role: Role,
}

/// Where a city can be reached, as it publishes itself in a group's `addresses` (the
/// federation's address book): only that city changes its own entry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// The city's display name, as it calls itself.
    #[serde(default)]
    pub name: String,
    /// ISO 3166-1 alpha-2 country code (e.g. `IT`), or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country: String,
    /// Multiaddresses to dial it at, e.g. `/ip4/192.0.2.7/tcp/4001`.
    #[serde(default)]
    pub addrs: Vec<String>,
}

/// Most multiaddresses in one [`Address`].
pub const MAX_ADDRS: usize = 16;

/// One item of a meeting agenda.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Id of the item, unique within its agenda (see [`new_item_id`]); it identifies the item when
    /// documents are reconciled.
    pub id: String,
    /// Time slot, e.g. `09:30-10:30` (in the agenda's time zone); may be empty. Records made
    /// before times were checked may hold free text here.
    #[serde(default)]
    pub slot: String,
    /// The day of the item, `YYYY-MM-DD`, in a meeting of several days; empty: the first day.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub day: String,
    /// Where the item stands: items are shown in `rank` order (see [`Agenda::sort_items`]), so that a
    /// move changes one value instead of deleting and re-inserting the item. Digits and
    /// lowercase letters, at most [`MAX_RANK_CHARS`]; made by [`rank_between`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rank: String,
    /// Title (required). Merges character-wise.
    pub title: String,
    /// Who presents.
    #[serde(default)]
    pub presenters: Vec<String>,
    /// Notes. Merges character-wise.
    #[serde(default)]
    pub notes: String,
}

/// A working group meeting's agenda.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Agenda {
    /// Title (required). Merges character-wise.
    pub title: String,
    /// First day, `YYYY-MM-DD` (required).
    pub start: String,
    /// Last day, `YYYY-MM-DD`, not before `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Venue.
    #[serde(default)]
    pub venue: String,
    /// Display name of the host city.
    #[serde(default)]
    pub host_city: String,
    /// The ordered items.
    #[serde(default)]
    pub items: Vec<Item>,
    /// Attending cities.
    #[serde(default)]
    pub attendees: Vec<String>,
    /// Status.
    #[serde(default)]
    pub status: AgendaStatus,
    /// Decisions taken, one per entry.
    #[serde(default)]
    pub decisions: Vec<String>,
    /// IANA time zone of the meeting's times, e.g. `Europe/Rome`; empty: none given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time_zone: String,
    /// The minutes, once the meeting is held. Merges character-wise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub minutes: String,
}

/// A working group: its members and its meeting agendas.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Always [`Kind::Group`].
    pub kind: Kind,
    /// Name of the group (required).
    pub name: String,
    /// What the group is for. Merges character-wise.
    #[serde(default)]
    pub charter: String,
    /// Members by city id. At least one must be [`Role::Chair`].
    #[serde(default)]
    pub members: BTreeMap<String, Member>,
    /// Agendas by agenda id (see [`new_agenda_id`]).
    #[serde(default)]
    pub agendas: BTreeMap<String, Agenda>,
    /// Where members can be reached, by city id: each city writes its own entry only. A
    /// federation's record is its address book.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, Address>,
}

/// Any record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A good practice.
    Practice(Practice),
    /// A project.
    Project(Project),
    /// A working group.
    Group(Group),
}

impl From<Practice> for Record {
    fn from(p: Practice) -> Self {
        Record::Practice(p)
    }
}

impl From<Project> for Record {
    fn from(p: Project) -> Self {
        Record::Project(p)
    }
}

impl From<Group> for Record {
    fn from(g: Group) -> Self {
        Record::Group(g)
    }
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Record::Practice(p) => p.serialize(serializer),
            Record::Project(p) => p.serialize(serializer),
            Record::Group(g) => g.serialize(serializer),
        }
    }
}

/// Through [`Record::from_json`] (the shape is checked, not the content).
impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Record::from_json(value).map_err(serde::de::Error::custom)
    }
}

impl Record {
    /// Parses a record from JSON, dispatching on its `"kind"` field.
    ///
    /// This checks the shape only (field names and types); call [`Record::validate`] to check
    /// the content.
    pub fn from_json(value: serde_json::Value) -> Result<Record, RecordError> {
        let kind = match value.get("kind") {
            None | Some(serde_json::Value::Null) => {
                return Err(RecordError::Missing {
                    field: "kind".to_string(),
                });
            }
            Some(serde_json::Value::String(s)) => match s.as_str() {
                "practice" => Kind::Practice,
                "project" => Kind::Project,
                "group" => Kind::Group,
                other => {
                    // (At most 64 characters of it: a reason is stored with the verdict.)
                    let shown: String = other.chars().take(64).collect();
                    return Err(RecordError::Invalid {
                        field: "kind".to_string(),
                        reason: format!("`{shown}` is not one of practice, project, group"),
                    });
                }
            },
            Some(other) => {
                // The value's type, not the value: a reason is stored with the verdict, and a
                // few bytes of change can make a value of megabytes.
                let got = match other {
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::Array(_) => "a list",
                    _ => "an object",
                };
                return Err(RecordError::Invalid {
                    field: "kind".to_string(),
                    reason: format!("expected a string, got {got}"),
                });
            }
        };
        let json = |e: serde_json::Error| RecordError::Json(format!("{kind}: {e}"));
        Ok(match kind {
            Kind::Practice => Record::Practice(serde_json::from_value(value).map_err(json)?),
            Kind::Project => Record::Project(serde_json::from_value(value).map_err(json)?),
            Kind::Group => {
                let mut group: Group = serde_json::from_value(value).map_err(json)?;
                for agenda in group.agendas.values_mut() {
                    agenda.sort_items();
                }
                Record::Group(group)
            }
        })
    }

    /// Parses a record from JSON text; see [`Record::from_json`].
    pub fn from_json_str(text: &str) -> Result<Record, RecordError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| RecordError::Json(e.to_string()))?;
        Record::from_json(value)
    }

    /// The JSON form of the record (the shape an Automerge document's root mirrors).
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing these types cannot fail: every map has string keys and every `Serialize`
        // impl is derived (a non-finite f64 becomes `null`, which `validate` rejects up front).
        serde_json::to_value(self).expect("records always serialize to JSON")
    }

    /// Which kind of record this is (by variant).
    pub fn kind(&self) -> Kind {
        match self {
            Record::Practice(_) => Kind::Practice,
            Record::Project(_) => Kind::Project,
            Record::Group(_) => Kind::Group,
        }
    }

    /// The record's headline: a practice's title, a project's or a group's name.
    pub fn title(&self) -> &str {
        match self {
            Record::Practice(p) => &p.title,
            Record::Project(p) => &p.name,
            Record::Group(g) => &g.name,
        }
    }

    /// City id of the owner (practice owner, project lead city); `None` for a group, which is
    /// written by its members.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Record::Practice(p) => Some(&p.owner),
            Record::Project(p) => Some(&p.owner),
            Record::Group(_) => None,
        }
    }

    /// True once the owner has withdrawn the record (never for a group).
    pub fn is_deleted(&self) -> bool {
        match self {
            Record::Practice(p) => p.deleted,
            Record::Project(p) => p.deleted,
            Record::Group(_) => false,
        }
    }

    /// Withdraws (or restores) a practice or project; a group has no tombstone.
    pub fn set_deleted(&mut self, deleted: bool) {
        match self {
            Record::Practice(p) => p.deleted = deleted,
            Record::Project(p) => p.deleted = deleted,
            Record::Group(_) => {}
        }
    }

    /// City ids the owner allows to edit; empty for a group.
    pub fn editors(&self) -> &[String] {
        match self {
            Record::Practice(p) => &p.editors,
            Record::Project(p) => &p.editors,
            Record::Group(_) => &[],
        }
    }

    /// Checks the record's content against the rules described in the [module docs](self).
    pub fn validate(&self) -> Result<(), RecordError> {
        match self {
            Record::Practice(p) => p.validate(),
            Record::Project(p) => p.validate(),
            Record::Group(g) => g.validate(),
        }
    }
}

impl Practice {
    /// A practice with the given owner, title and language and every other field empty.
    pub fn new(owner: impl Into<String>, title: impl Into<String>, language: &str) -> Practice {
        Practice {
            deleted: false,
            translations: BTreeMap::new(),
            kind: Kind::Practice,
            owner: owner.into(),
            editors: Vec::new(),
            title: title.into(),
            summary: String::new(),
            body: String::new(),
            city: String::new(),
            country: None,
            themes: Vec::new(),
            partners: Vec::new(),
            outcomes: Vec::new(),
            links: Vec::new(),
            contact: None,
            language: language.to_string(),
            start: None,
            end: None,
        }
    }

    /// Checks the practice's content; see [`Record::validate`].
    pub fn validate(&self) -> Result<(), RecordError> {
        check_kind(self.kind, Kind::Practice)?;
        check_city_id("owner", &self.owner)?;
        check_list("editors", &self.editors, |f, e| check_city_id(f, e))?;
        check_required("title", &self.title, MAX_TITLE_CHARS)?;
        check_long("summary", &self.summary, MAX_SUMMARY_CHARS)?;
        check_long("body", &self.body, MAX_BODY_CHARS)?;
        check_short("city", &self.city, MAX_SHORT_CHARS)?;
        if let Some(country) = &self.country {
            check_country("country", country)?;
        }
        check_list("themes", &self.themes, |f, t| {
            check_required(f, t, MAX_SHORT_CHARS)
        })?;
        check_partners("partners", &self.partners)?;
        check_list("outcomes", &self.outcomes, |f, o| {
            check_required_long(f, o, MAX_SUMMARY_CHARS)
        })?;
        check_list("links", &self.links, |f, l| check_link(f, l))?;
        if let Some(contact) = &self.contact {
            check_required("contact", contact, MAX_SHORT_CHARS)?;
        }
        check_language("language", &self.language)?;
        check_count("translations", self.translations.len(), MAX_TRANSLATIONS)?;
        for (language, t) in &self.translations {
            let at = Joined(Some("translations"), language.as_str());
            check_language(at, language)?;
            check_short(Joined(Some(at), "title"), &t.title, MAX_TITLE_CHARS)?;
            check_long(Joined(Some(at), "summary"), &t.summary, MAX_SUMMARY_CHARS)?;
        }
        check_dates(self.start.as_deref(), self.end.as_deref(), "start", "end")
    }
}

impl Project {
    /// A project with the given owner (lead city id) and name and every other field empty.
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Project {
        Project {
            deleted: false,
            kind: Kind::Project,
            owner: owner.into(),
            editors: Vec::new(),
            name: name.into(),
            description: String::new(),
            lead_city: String::new(),
            partner_cities: Vec::new(),
            partners: Vec::new(),
            status: ProjectStatus::Planned,
            start: None,
            end: None,
            funding: None,
            budget_eur: None,
            outcomes: Vec::new(),
            related_practices: Vec::new(),
            themes: Vec::new(),
        }
    }

    /// Checks the project's content; see [`Record::validate`].
    pub fn validate(&self) -> Result<(), RecordError> {
        check_kind(self.kind, Kind::Project)?;
        check_city_id("owner", &self.owner)?;
        check_list("editors", &self.editors, |f, e| check_city_id(f, e))?;
        check_required("name", &self.name, MAX_SHORT_CHARS)?;
        check_long("description", &self.description, MAX_NOTES_CHARS)?;
        check_short("lead_city", &self.lead_city, MAX_SHORT_CHARS)?;
        check_list("partner_cities", &self.partner_cities, |f, c| {
            check_required(f, c, MAX_SHORT_CHARS)
        })?;
        check_partners("partners", &self.partners)?;
        check_dates(self.start.as_deref(), self.end.as_deref(), "start", "end")?;
        if let Some(funding) = &self.funding {
            check_required("funding", funding, MAX_SHORT_CHARS)?;
        }
        check_list("outcomes", &self.outcomes, |f, fig| {
            check_required(Joined(Some(f), "label"), &fig.label, MAX_SHORT_CHARS)?;
            if !fig.value.is_finite() {
                return Err(RecordError::Invalid {
                    field: format!("{f}.value"),
                    reason: format!("must be a finite number, got {}", fig.value),
                });
            }
            check_short(Joined(Some(f), "unit"), &fig.unit, MAX_SHORT_CHARS)
        })?;
        check_list("related_practices", &self.related_practices, |f, d| {
            check_required(f, d, MAX_SHORT_CHARS)
        })?;
        check_list("themes", &self.themes, |f, t| {
            check_required(f, t, MAX_SHORT_CHARS)
        })
    }
}

impl Group {
    /// A group with the given name, no charter, no agendas and one member, its chair.
    pub fn new(
        name: impl Into<String>,
        chair_id: impl Into<String>,
        chair_name: impl Into<String>,
    ) -> Group {
        let mut members = BTreeMap::new();
        members.insert(
            chair_id.into(),
            Member {
                name: chair_name.into(),
                role: Role::Chair,
            },
        );
        Group {
            kind: Kind::Group,
            name: name.into(),
            charter: String::new(),
            members,
            agendas: BTreeMap::new(),
            addresses: BTreeMap::new(),
        }
    }

    /// Checks the group's content; see [`Record::validate`].
    pub fn validate(&self) -> Result<(), RecordError> {
        check_kind(self.kind, Kind::Group)?;
        check_required("name", &self.name, MAX_SHORT_CHARS)?;
        check_long("charter", &self.charter, MAX_NOTES_CHARS)?;
        check_count("members", self.members.len(), MAX_MEMBERS)?;
        for (id, member) in &self.members {
            let at = Joined(Some("members"), id.as_str());
            check_city_id(at, id)?;
            check_required(Joined(Some(at), "name"), &member.name, MAX_SHORT_CHARS)?;
        }
        if !self.members.values().any(|m| m.role == Role::Chair) {
            return Err(RecordError::Invalid {
                field: "members".to_string(),
                reason: "a group needs at least one member with role `chair`".to_string(),
            });
        }
        check_count("addresses", self.addresses.len(), MAX_MEMBERS)?;
        for (id, address) in &self.addresses {
            let field = Joined(Some("addresses"), id.as_str());
            check_city_id(field, id)?;
            check_short(Joined(Some(field), "name"), &address.name, MAX_SHORT_CHARS)?;
            if !address.country.is_empty() {
                check_country(Joined(Some(field), "country"), &address.country)?;
            }
            let addrs = Joined(Some(field), "addrs");
            check_count(addrs, address.addrs.len(), MAX_ADDRS)?;
            for (i, a) in address.addrs.iter().enumerate() {
                let f = Index(addrs, i);
                check_short(f, a, MAX_SHORT_CHARS)?;
                if !a.starts_with('/') || a.chars().any(char::is_whitespace) {
                    return Err(RecordError::Invalid {
                        field: f.to_string(),
                        reason: format!(
                            "a multiaddress starts with `/` and has no spaces (e.g. `/ip4/192.0.2.7/tcp/4001`), got `{a}`"
                        ),
                    });
                }
            }
        }
        check_count("agendas", self.agendas.len(), MAX_AGENDAS)?;
        for (id, agenda) in &self.agendas {
            let at = Joined(Some("agendas"), id.as_str());
            check_id(at, id)?;
            agenda.validate_at(Some(at))?;
        }
        Ok(())
    }
}

impl Agenda {
    /// An agenda with the given title and start date and every other field empty.
    pub fn new(title: impl Into<String>, start: impl Into<String>) -> Agenda {
        Agenda {
            title: title.into(),
            start: start.into(),
            end: None,
            venue: String::new(),
            host_city: String::new(),
            items: Vec::new(),
            attendees: Vec::new(),
            status: AgendaStatus::Draft,
            decisions: Vec::new(),
            time_zone: String::new(),
            minutes: String::new(),
        }
    }

    /// Puts the items in the order they are shown: by `rank`, an item without one first, and
    /// list order between equal ranks. Every node holding the same document shows the same
    /// order. (Reading a group does this; validation is not affected by the order.)
    pub fn sort_items(&mut self) {
        self.items.sort_by(|a, b| a.rank.cmp(&b.rank));
    }

    /// Keeps the first item of each id: an older version moved an item by deleting it and
    /// inserting a copy, so two concurrent moves left two. A writer calls this before it
    /// signs, so that its change removes the extra copy (a record with two items of one id is
    /// invalid).
    pub fn dedupe_items(&mut self) {
        let mut seen = std::collections::BTreeSet::new();
        self.items.retain(|item| seen.insert(item.id.clone()));
    }

    /// Gives every item a rank, spread evenly in the current order: what an edit does before it
    /// moves or inserts items in an agenda whose items have none (or whose ranks grew long).
    pub fn rerank(&mut self) {
        let slots = self.items.len() + 1;
        // Fixed-width fractions i/slots, i = 1..slots-1, wide enough to tell them apart.
        let mut width = 1;
        while 36usize.pow(width) < slots * 36 {
            width += 1;
        }
        let scale = 36usize.pow(width);
        for (i, item) in self.items.iter_mut().enumerate() {
            let mut n = (i + 1) * scale / slots;
            let mut digits = vec![0u8; width as usize];
            for d in digits.iter_mut().rev() {
                *d = RANK_DIGITS[n % 36];
                n /= 36;
            }
            while digits.last() == Some(&b'0') {
                digits.pop();
            }
            item.rank = digits.into_iter().map(char::from).collect();
        }
    }

    /// Whether the items' ranks leave room to insert between them: every item has one, short
    /// enough, each greater than the one before (else [`Agenda::rerank`]).
    pub fn ranked(&self) -> bool {
        self.items.iter().all(|i| {
            !i.rank.is_empty()
                && i.rank.len() < MAX_RANK_CHARS - 2
                && check_rank("rank", &i.rank).is_ok()
        }) && self.items.windows(2).all(|w| w[0].rank < w[1].rank)
    }

    /// Moves the item at `from` to `to` (0-based positions in shown order) by giving it a rank
    /// between its new neighbours; ranks the items first if needed.
    pub fn move_item(&mut self, from: usize, to: usize) {
        if !self.ranked() {
            self.rerank();
        }
        let item = self.items.remove(from);
        let before = to.checked_sub(1).map(|i| self.items[i].rank.clone());
        let after = self.items.get(to).map(|i| i.rank.clone());
        let mut item = item;
        item.rank = rank_between(before.as_deref().unwrap_or(""), after.as_deref());
        self.items.insert(to, item);
    }

    /// Inserts `item` at `at` (0-based, in shown order) with a rank between its neighbours.
    pub fn insert_item(&mut self, at: usize, mut item: Item) {
        if !self.ranked() {
            self.rerank();
        }
        let before = at.checked_sub(1).map(|i| self.items[i].rank.clone());
        let after = self.items.get(at).map(|i| i.rank.clone());
        item.rank = rank_between(before.as_deref().unwrap_or(""), after.as_deref());
        self.items.insert(at, item);
    }

    /// Checks the agenda's content, naming fields relative to it (`title`, `items[2].title`).
    pub fn validate(&self) -> Result<(), RecordError> {
        self.validate_at(None::<&str>)
    }

    fn validate_at(&self, prefix: Option<impl fmt::Display + Copy>) -> Result<(), RecordError> {
        let p = |f: &'static str| Joined(prefix, f);
        check_required(p("title"), &self.title, MAX_TITLE_CHARS)?;
        if self.start.is_empty() {
            return Err(RecordError::Missing {
                field: p("start").to_string(),
            });
        }
        check_dates(Some(&self.start), self.end.as_deref(), p("start"), p("end"))?;
        check_short(p("venue"), &self.venue, MAX_SHORT_CHARS)?;
        check_short(p("host_city"), &self.host_city, MAX_SHORT_CHARS)?;
        check_list(p("items"), &self.items, |f, item| item.validate_at(Some(f)))?;
        for (i, item) in self.items.iter().enumerate() {
            if let Some(first) = self.items[..i].iter().position(|x| x.id == item.id) {
                return Err(RecordError::Invalid {
                    field: Joined(Some(Index(p("items"), i)), "id").to_string(),
                    reason: format!("`{}` is the id of items[{first}] too", item.id),
                });
            }
        }
        check_list(p("attendees"), &self.attendees, |f, a| {
            check_required(f, a, MAX_SHORT_CHARS)
        })?;
        check_list(p("decisions"), &self.decisions, |f, d| {
            check_required_long(f, d, MAX_SUMMARY_CHARS)
        })?;
        check_time_zone(p("time_zone"), &self.time_zone)?;
        check_long(p("minutes"), &self.minutes, MAX_BODY_CHARS)
    }
}

impl Item {
    /// An item with a fresh random id ([`new_item_id`]), the given title and no slot, presenters
    /// or notes.
    pub fn new(title: impl Into<String>) -> Item {
        Item {
            id: new_item_id(),
            slot: String::new(),
            day: String::new(),
            rank: String::new(),
            title: title.into(),
            presenters: Vec::new(),
            notes: String::new(),
        }
    }

    fn validate_at(&self, prefix: Option<impl fmt::Display + Copy>) -> Result<(), RecordError> {
        let p = |f: &'static str| Joined(prefix, f);
        check_id(p("id"), &self.id)?;
        check_short(p("slot"), &self.slot, MAX_SHORT_CHARS)?;
        if !self.day.is_empty() {
            check_date(p("day"), &self.day)?;
        }
        check_rank(p("rank"), &self.rank)?;
        check_required(p("title"), &self.title, MAX_TITLE_CHARS)?;
        check_list(p("presenters"), &self.presenters, |f, pr| {
            check_required(f, pr, MAX_SHORT_CHARS)
        })?;
        check_long(p("notes"), &self.notes, MAX_NOTES_CHARS)
    }
}

/// Longest item rank, in characters.
pub const MAX_RANK_CHARS: usize = 32;

/// The digits of a rank, in order.
const RANK_DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A rank that sorts after `before` and before `after` (`""` and `None`: no bound), both ranks
/// as made here (no trailing `0`), `before < after`. Ranks are base-36 fractions: `"i"` is
/// 18/36, `"i9"` lies between `"i"` and `"j"`. The result never ends in `0`, so there is always
/// room below it.
pub fn rank_between(before: &str, after: Option<&str>) -> String {
    let digit = |c: u8| RANK_DIGITS.iter().position(|d| *d == c).unwrap_or(0);
    let a: Vec<usize> = before.bytes().map(digit).collect();
    let b: Option<Vec<usize>> = after.map(|s| s.bytes().map(digit).collect());
    let out = midpoint(&a, b.as_deref());
    out.into_iter()
        .map(|d| char::from(RANK_DIGITS[d]))
        .collect()
}

/// Digits strictly between the fractions `a` and `b` (`None`: one), with no trailing zero.
fn midpoint(a: &[usize], b: Option<&[usize]>) -> Vec<usize> {
    const BASE: usize = 36;
    if let Some(b) = b {
        // A common prefix (`a` padded with zeros) is kept as it is.
        let n = (0..b.len())
            .take_while(|&i| a.get(i).copied().unwrap_or(0) == b[i])
            .count();
        if n > 0 {
            let mut out = b[..n].to_vec();
            out.extend(midpoint(a.get(n..).unwrap_or_default(), Some(&b[n..])));
            return out;
        }
    }
    let da = a.first().copied().unwrap_or(0);
    let db = b.and_then(|b| b.first().copied()).unwrap_or(BASE);
    // Callers pass valid ranks in order (`Agenda::ranked`); anything else gets a rank after `a`.
    if db <= da {
        let mut out = a.to_vec();
        out.push(BASE / 2);
        return out;
    }
    if db - da > 1 {
        return vec![(da + db) / 2];
    }
    // Adjacent first digits: `b`'s first digit alone lies between when `b` goes on; else keep
    // `a`'s first digit and look between the rest of `a` and one.
    if b.is_some_and(|b| b.len() > 1) {
        return vec![db];
    }
    let mut out = vec![da];
    out.extend(midpoint(a.get(1..).unwrap_or_default(), None));
    out
}

/// A rank: empty, or digits and lowercase letters not ending in `0`.
fn check_rank(field: impl fmt::Display + Copy, value: &str) -> Result<(), RecordError> {
    check_len(field, value, MAX_RANK_CHARS)?;
    if value.bytes().all(|b| RANK_DIGITS.contains(&b)) && !value.ends_with('0') {
        Ok(())
    } else {
        Err(RecordError::Invalid {
            field: field.to_string(),
            reason: format!(
                "a rank holds digits and lowercase letters and does not end in 0, got `{value}`"
            ),
        })
    }
}

/// A time zone name: empty, or shaped like an IANA name (`Europe/Rome`, `UTC`, `Etc/GMT+1`).
/// Whether the zone exists is checked where it is entered, not here: time zone databases differ
/// between machines, and every node must judge a record the same.
fn check_time_zone(field: impl fmt::Display + Copy, value: &str) -> Result<(), RecordError> {
    check_len(field, value, MAX_ID_CHARS)?;
    let ok = value.split('/').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b))
    });
    if value.is_empty() || ok {
        Ok(())
    } else {
        Err(RecordError::Invalid {
            field: field.to_string(),
            reason: format!("`{value}` is not a time zone name such as Europe/Rome"),
        })
    }
}

/// A new random id: `bytes` random bytes as lowercase hex (`2 * bytes` characters).
///
/// # Panics
///
/// If the operating system's random number generator fails (see [`try_new_id`] for a fallible
/// version).
pub fn new_id(bytes: usize) -> String {
    try_new_id(bytes).expect("the operating system's random number generator failed")
}

/// A new random id like [`new_id`], reporting a failure of the random number generator.
pub fn try_new_id(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

/// A new agenda id: [`AGENDA_ID_BYTES`] random bytes as hex.
pub fn new_agenda_id() -> String {
    new_id(AGENDA_ID_BYTES)
}

/// A new agenda item id: [`ITEM_ID_BYTES`] random bytes as hex.
pub fn new_item_id() -> String {
    new_id(ITEM_ID_BYTES)
}

/// Whether `s` is a valid calendar date in the form `YYYY-MM-DD` (years 0001–9999, leap years
/// per the Gregorian calendar).
pub fn is_valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    if year == 0 || !(1..=12).contains(&month) {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days).contains(&day)
}

/// A field's name under a prefix (`agendas.x.title`; `title` with none), written out only when a
/// check fails: a valid record is checked without building names.
#[derive(Clone, Copy)]
struct Joined<P, F>(Option<P>, F);

impl<P: fmt::Display, F: fmt::Display> fmt::Display for Joined<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(prefix) => write!(f, "{prefix}.{}", self.1),
            None => write!(f, "{}", self.1),
        }
    }
}

/// An element of a list field (`items[2]`), written out like [`Joined`].
#[derive(Clone, Copy)]
struct Index<F>(F, usize);

impl<F: fmt::Display> fmt::Display for Index<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

fn check_kind(actual: Kind, expected: Kind) -> Result<(), RecordError> {
    if actual == expected {
        Ok(())
    } else {
        Err(RecordError::Invalid {
            field: "kind".to_string(),
            reason: format!("must be `{expected}` for a {expected}, got `{actual}`"),
        })
    }
}

fn check_len(field: impl fmt::Display + Copy, value: &str, max: usize) -> Result<(), RecordError> {
    let len = value.chars().count();
    if len > max {
        return Err(RecordError::TooLong {
            field: field.to_string(),
            max,
            len,
        });
    }
    Ok(())
}

fn check_count(field: impl fmt::Display + Copy, len: usize, max: usize) -> Result<(), RecordError> {
    if len > max {
        return Err(RecordError::TooMany {
            field: field.to_string(),
            max,
            len,
        });
    }
    Ok(())
}

/// A one-line field: limited length and no control characters at all.
fn check_short(
    field: impl fmt::Display + Copy,
    value: &str,
    max: usize,
) -> Result<(), RecordError> {
    check_len(field, value, max)?;
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(RecordError::Invalid {
            field: field.to_string(),
            reason: format!("contains the control character {c:?}"),
        });
    }
    Ok(())
}

/// A multi-line field: limited length, no control characters other than `\n` and `\t`.
fn check_long(field: impl fmt::Display + Copy, value: &str, max: usize) -> Result<(), RecordError> {
    check_len(field, value, max)?;
    if let Some(c) = value
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(RecordError::Invalid {
            field: field.to_string(),
            reason: format!(
                "contains the control character {c:?} (only newlines and tabs are allowed)"
            ),
        });
    }
    Ok(())
}

fn check_not_blank(field: impl fmt::Display + Copy, value: &str) -> Result<(), RecordError> {
    if value.trim().is_empty() {
        return Err(RecordError::Missing {
            field: field.to_string(),
        });
    }
    Ok(())
}

/// A required one-line field.
fn check_required(
    field: impl fmt::Display + Copy,
    value: &str,
    max: usize,
) -> Result<(), RecordError> {
    check_not_blank(field, value)?;
    check_short(field, value, max)
}

/// A required multi-line field.
fn check_required_long(
    field: impl fmt::Display + Copy,
    value: &str,
    max: usize,
) -> Result<(), RecordError> {
    check_not_blank(field, value)?;
    check_long(field, value, max)
}

fn check_city_id(field: impl fmt::Display + Copy, value: &str) -> Result<(), RecordError> {
    check_required(field, value, MAX_SHORT_CHARS)?;
    // A member's or an address's id is a map key, and a change with a longer key is refused
    // whole (protocol.md §7): a record that validates can always be written.
    if value.len() > crate::chunk::MAX_KEY_BYTES {
        return Err(RecordError::Invalid {
            field: field.to_string(),
            reason: format!(
                "a city id is at most {} bytes, got {}",
                crate::chunk::MAX_KEY_BYTES,
                value.len()
            ),
        });
    }
    if value.chars().any(char::is_whitespace) {
        return Err(RecordError::Invalid {
            field: field.to_string(),
            reason: format!("a city id contains no whitespace, got `{value}`"),
        });
    }
    Ok(())
}

fn check_id(field: impl fmt::Display + Copy, value: &str) -> Result<(), RecordError> {
    if value.is_empty() {
        return Err(RecordError::Missing {
            field: field.to_string(),
        });
    }
    check_len(field, value, MAX_ID_CHARS)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(RecordError::Invalid {
            field: field.to_string(),
            reason: format!(
                "an id may contain only ASCII letters, digits, `-` and `_`, got `{value}`"
            ),
        });
    }
    Ok(())
}

fn check_list<T, F: fmt::Display + Copy>(
    field: F,
    list: &[T],
    mut check: impl FnMut(Index<F>, &T) -> Result<(), RecordError>,
) -> Result<(), RecordError> {
    check_count(field, list.len(), MAX_LIST_LEN)?;
    for (i, entry) in list.iter().enumerate() {
        check(Index(field, i), entry)?;
    }
    Ok(())
}

fn check_partners(
    field: impl fmt::Display + Copy,
    partners: &[Partner],
) -> Result<(), RecordError> {
    check_list(field, partners, |f, p| {
        check_required(Joined(Some(f), "name"), &p.name, MAX_SHORT_CHARS)
    })
}

fn check_link(field: impl fmt::Display + Copy, link: &str) -> Result<(), RecordError> {
    check_short(field, link, MAX_URL_CHARS)?;
    let rest = link
        .strip_prefix("https://")
        .or_else(|| link.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(RecordError::Invalid {
            field: field.to_string(),
            reason: format!(
                "a link must start with http:// or https:// and contain no spaces, got `{link}`"
            ),
        }),
    }
}

fn check_country(field: impl fmt::Display + Copy, value: &str) -> Result<(), RecordError> {
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(RecordError::Invalid {
            field: field.to_string(),
            reason: format!(
                "must be an ISO 3166-1 alpha-2 code of two uppercase letters (e.g. `IT`), got `{value}`"
            ),
        })
    }
}

fn check_language(field: impl fmt::Display + Copy, value: &str) -> Result<(), RecordError> {
    if value.is_empty() {
        return Err(RecordError::Missing {
            field: field.to_string(),
        });
    }
    if (2..=3).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(RecordError::Invalid {
            field: field.to_string(),
            reason: format!(
                "must be an ISO 639 code of 2 or 3 lowercase letters (e.g. `en`), got `{value}`"
            ),
        })
    }
}

fn check_date(field: impl fmt::Display + Copy, value: &str) -> Result<(), RecordError> {
    if is_valid_date(value) {
        Ok(())
    } else {
        Err(RecordError::InvalidDate {
            field: field.to_string(),
            value: value.to_string(),
        })
    }
}

fn check_dates(
    start: Option<&str>,
    end: Option<&str>,
    start_field: impl fmt::Display + Copy,
    end_field: impl fmt::Display + Copy,
) -> Result<(), RecordError> {
    if let Some(start) = start {
        check_date(start_field, start)?;
    }
    if let Some(end) = end {
        check_date(end_field, end)?;
    }
    if let (Some(start), Some(end)) = (start, end) {
        // Valid YYYY-MM-DD dates order lexicographically.
        if end < start {
            return Err(RecordError::Invalid {
                field: end_field.to_string(),
                reason: format!("ends on {end}, before it starts ({start})"),
            });
        }
    }
    Ok(())
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// City ids used in fixtures (shaped like libp2p peer ids; never parsed here).
    pub(crate) const MILAN: &str = "12D3KooWMilanMilanMilanMilanMilanMilanMilanMilan1";
    pub(crate) const BRNO: &str = "12D3KooWBrnoBrnoBrnoBrnoBrnoBrnoBrnoBrnoBrnoBrn1";
    pub(crate) const PORTO: &str = "12D3KooWPortoPortoPortoPortoPortoPortoPortoPorto1";

    pub(crate) fn practice() -> Practice {
        Practice {
            deleted: false,
            translations: BTreeMap::new(),
            kind: Kind::Practice,
            owner: MILAN.to_string(),
            editors: vec![BRNO.to_string()],
            title: "FabriQ social innovation incubator".to_string(),
            summary: "Milan's first social innovation incubator.".to_string(),
            body: "FabriQ supports start-ups with a social impact.\n\tSince 2014.".to_string(),
            city: "Milan".to_string(),
            country: Some("IT".to_string()),
            themes: vec!["social innovation".to_string(), "incubation".to_string()],
            partners: vec![
                Partner {
                    name: "Fondazione Giacomo Brodolini".to_string(),
                    sector: Sector::Ngo,
                },
                Partner {
                    name: "Impact Hub Milano".to_string(),
                    sector: Sector::Private,
                },
            ],
            outcomes: vec!["40 start-ups incubated".to_string()],
            links: vec!["https://www.fabriq.eu".to_string()],
            contact: Some("innovazione@comune.milano.it".to_string()),
            language: "en".to_string(),
            start: Some("2014-03-01".to_string()),
            end: None,
        }
    }

    pub(crate) fn project() -> Project {
        Project {
            deleted: false,
            kind: Kind::Project,
            owner: MILAN.to_string(),
            editors: vec![],
            name: "MiGenerationLab".to_string(),
            description: "Youth employment through intergenerational labs.".to_string(),
            lead_city: "Milan".to_string(),
            partner_cities: vec!["Brno".to_string()],
            partners: vec![
                Partner {
                    name: "Politecnico di Milano".to_string(),
                    sector: Sector::University,
                },
                Partner {
                    name: "Cariplo".to_string(),
                    sector: Sector::Ngo,
                },
            ],
            status: ProjectStatus::Running,
            start: Some("2016-01-01".to_string()),
            end: Some("2018-12-31".to_string()),
            funding: Some("Horizon 2020".to_string()),
            budget_eur: Some(1_250_000),
            outcomes: vec![
                Figure {
                    label: "young people trained".to_string(),
                    value: 120.0,
                    unit: "people".to_string(),
                },
                Figure {
                    label: "placement rate".to_string(),
                    value: 0.45,
                    unit: "%".to_string(),
                },
            ],
            related_practices: vec!["doc-fabriq".to_string()],
            themes: vec!["youth employment".to_string()],
        }
    }

    pub(crate) fn agenda() -> Agenda {
        Agenda {
            title: "Smart Social Inclusion study visit".to_string(),
            start: "2017-02-23".to_string(),
            end: Some("2017-02-24".to_string()),
            venue: "Palazzo Marino".to_string(),
            host_city: "Milan".to_string(),
            items: vec![
                Item {
                    id: "a1".to_string(),
                    slot: "09:30-10:30".to_string(),
                    title: "Makerspace visit".to_string(),
                    presenters: vec!["Milan".to_string()],
                    notes: "New craft and digital manufacturing.".to_string(),
                    day: String::new(),
                    rank: String::new(),
                },
                Item {
                    id: "a2".to_string(),
                    slot: "10:30-11:30".to_string(),
                    title: "OpenCare".to_string(),
                    presenters: vec![],
                    notes: String::new(),
                    day: String::new(),
                    rank: String::new(),
                },
                Item {
                    id: "a3".to_string(),
                    slot: String::new(),
                    title: "FabriQ".to_string(),
                    presenters: vec![],
                    notes: String::new(),
                    day: String::new(),
                    rank: String::new(),
                },
            ],
            attendees: vec!["Brno".to_string(), "Porto".to_string(), "Riga".to_string()],
            status: AgendaStatus::Published,
            decisions: vec!["Next meeting in Brno on 1-2 June.".to_string()],
            time_zone: String::new(),
            minutes: String::new(),
        }
    }

    pub(crate) fn group() -> Group {
        let mut g = Group::new("Smart Social Inclusion", MILAN, "Milan");
        g.charter = "Cities working on social inclusion.".to_string();
        g.members.insert(
            BRNO.to_string(),
            Member {
                name: "Brno".to_string(),
                role: Role::Member,
            },
        );
        g.agendas.insert("3f2a9c0d1e2b4a5c".to_string(), agenda());
        g
    }

    fn err(r: impl Into<Record>) -> RecordError {
        match r.into().validate() {
            Ok(()) => panic!("expected a validation error"),
            Err(e) => e,
        }
    }

    fn field_of(e: &RecordError) -> &str {
        match e {
            RecordError::TooLong { field, .. }
            | RecordError::TooMany { field, .. }
            | RecordError::Missing { field }
            | RecordError::InvalidDate { field, .. }
            | RecordError::Invalid { field, .. } => field,
            RecordError::Json(_) | RecordError::Unreadable(_) => "",
        }
    }

    const AGENDA: &str = "agendas.3f2a9c0d1e2b4a5c";

    /// A failing check names its field in full, however deep it is (names are written out only
    /// when a check fails).
    #[test]
    fn deep_fields_are_named_in_full() {
        let address = |f: &dyn Fn(&mut Address)| {
            let mut g = group();
            let mut a = Address {
                name: "Brno".into(),
                country: "CZ".into(),
                addrs: vec!["/ip4/192.0.2.7/tcp/4001".into()],
            };
            f(&mut a);
            g.addresses.insert(BRNO.to_string(), a);
            field_of(&err(g)).to_string()
        };
        assert_eq!(
            address(&|a| a.name = "a\u{7}".into()),
            format!("addresses.{BRNO}.name")
        );
        assert_eq!(
            address(&|a| a.country = "cz".into()),
            format!("addresses.{BRNO}.country")
        );
        assert_eq!(
            address(&|a| a.addrs = vec!["/ip4/x".into(); MAX_ADDRS + 1]),
            format!("addresses.{BRNO}.addrs")
        );
        assert_eq!(
            address(&|a| a.addrs.push("192.0.2.8".into())),
            format!("addresses.{BRNO}.addrs[1]")
        );
        let mut g = group();
        g.members.get_mut(BRNO).expect("member").name = " ".into();
        assert_eq!(field_of(&err(g)), format!("members.{BRNO}.name"));
        let mut g = group();
        let held = g.agendas.values_mut().next().expect("agenda");
        held.items[1].presenters.push("\u{7}".into());
        assert_eq!(
            field_of(&err(g)),
            format!("{AGENDA}.items[1].presenters[0]")
        );
        let mut g = group();
        let held = g.agendas.values_mut().next().expect("agenda");
        held.items[1].id = held.items[0].id.clone();
        assert_eq!(field_of(&err(g)), format!("{AGENDA}.items[1].id"));
        let mut a = agenda();
        a.attendees.push(String::new());
        let last = a.attendees.len() - 1;
        assert_eq!(
            field_of(&err(group_with(a.clone()))),
            format!("{AGENDA}.attendees[{last}]")
        );
        assert_eq!(
            a.validate().map_err(|e| field_of(&e).to_string()),
            Err(format!("attendees[{last}]"))
        );
        let mut p = project();
        p.outcomes[0].unit = "\u{7}".into();
        assert_eq!(field_of(&err(p)), "outcomes[0].unit");
        let mut p = practice();
        p.translations.insert(
            "fr".into(),
            Translation {
                title: "Titre".into(),
                summary: "\u{7}".into(),
            },
        );
        assert_eq!(field_of(&err(p)), "translations.fr.summary");
    }

    fn group_with(a: Agenda) -> Group {
        let mut g = group();
        g.agendas.insert("3f2a9c0d1e2b4a5c".to_string(), a);
        g
    }

    #[test]
    fn fixtures_are_valid() {
        for r in [
            Record::from(practice()),
            Record::from(project()),
            Record::from(group()),
        ] {
            assert_eq!(r.validate(), Ok(()), "{r:?}");
        }
    }

    #[test]
    fn json_round_trip() {
        for r in [
            Record::from(practice()),
            Record::from(project()),
            Record::from(group()),
        ] {
            let json = r.to_json();
            assert_eq!(Record::from_json(json.clone()), Ok(r.clone()));
            assert_eq!(Record::from_json_str(&json.to_string()), Ok(r));
        }
    }

    #[test]
    fn json_shape() {
        let json = Record::from(practice()).to_json();
        assert_eq!(json["kind"], "practice");
        assert_eq!(json["partners"][0]["sector"], "ngo");
        assert!(json.get("end").is_none(), "None fields are omitted");
        let mut p = practice();
        p.themes.clear();
        assert_eq!(
            Record::from(p).to_json()["themes"],
            json!([]),
            "empty lists are kept"
        );
        let g = Record::from(group()).to_json();
        assert_eq!(g["members"][MILAN]["role"], "chair");
        assert_eq!(g["agendas"]["3f2a9c0d1e2b4a5c"]["status"], "published");
        assert_eq!(Record::from(project()).to_json()["status"], "running");
    }

    #[test]
    fn minimal_json_uses_defaults() {
        let r = Record::from_json(json!({
            "kind": "practice", "owner": MILAN, "title": "T", "language": "en"
        }))
        .expect("parses");
        assert_eq!(r, Record::from(Practice::new(MILAN, "T", "en")));
        assert_eq!(r.validate(), Ok(()));
        let r = Record::from_json(json!({"kind": "group", "name": "G"})).expect("parses");
        let Record::Group(g) = r else {
            panic!("not a group")
        };
        assert!(g.members.is_empty() && g.agendas.is_empty());
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = Record::from_json(json!({"kind": "practice", "owner": MILAN, "titel": "x"}))
            .expect_err("unknown field");
        assert!(
            matches!(&e, RecordError::Json(m) if m.contains("titel")),
            "{e}"
        );
        let e = Record::from_json(json!({"kind": "practice", "owner": MILAN}))
            .expect_err("missing title");
        assert!(
            matches!(&e, RecordError::Json(m) if m.contains("title")),
            "{e}"
        );
        let e = Record::from_json(json!({"kind": "project", "owner": MILAN, "name": "x",
            "partners": [{"name": "a", "sector": "charity"}]}))
        .expect_err("bad sector");
        assert!(
            matches!(&e, RecordError::Json(m) if m.contains("charity")),
            "{e}"
        );
        assert_eq!(
            Record::from_json(json!({"title": "x"})),
            Err(RecordError::Missing {
                field: "kind".into()
            })
        );
        assert!(matches!(
            Record::from_json(json!({"kind": "agenda"})),
            Err(RecordError::Invalid { field, .. }) if field == "kind"
        ));
        assert!(matches!(
            Record::from_json(json!({"kind": 3})),
            Err(RecordError::Invalid { field, .. }) if field == "kind"
        ));
        assert!(matches!(
            Record::from_json_str("{not json"),
            Err(RecordError::Json(_))
        ));
    }

    #[test]
    fn accessors() {
        let p = Record::from(practice());
        assert_eq!(p.kind(), Kind::Practice);
        assert_eq!(p.title(), "FabriQ social innovation incubator");
        assert_eq!(p.owner(), Some(MILAN));
        assert_eq!(p.editors(), [BRNO.to_string()]);
        let pr = Record::from(project());
        assert_eq!(pr.kind(), Kind::Project);
        assert_eq!(pr.title(), "MiGenerationLab");
        assert_eq!(pr.owner(), Some(MILAN));
        assert!(pr.editors().is_empty());
        let g = Record::from(group());
        assert_eq!(g.kind(), Kind::Group);
        assert_eq!(g.title(), "Smart Social Inclusion");
        assert_eq!(g.owner(), None);
        assert!(g.editors().is_empty());
    }

    #[test]
    fn enums_parse_case_insensitively() {
        assert_eq!("NGO".parse::<Sector>(), Ok(Sector::Ngo));
        assert_eq!("University".parse::<Sector>(), Ok(Sector::University));
        assert_eq!("private".parse::<Sector>(), Ok(Sector::Private));
        assert_eq!("PUBLIC".parse::<Sector>(), Ok(Sector::Public));
        assert!(matches!(
            "charity".parse::<Sector>(),
            Err(RecordError::Invalid { field, .. }) if field == "sector"
        ));
        for k in Kind::ALL {
            assert_eq!(k.to_string().parse::<Kind>(), Ok(*k));
        }
        assert_eq!("Group".parse::<Kind>(), Ok(Kind::Group));
        assert_eq!("HELD".parse::<AgendaStatus>(), Ok(AgendaStatus::Held));
        assert_eq!(
            "completed".parse::<ProjectStatus>(),
            Ok(ProjectStatus::Completed)
        );
        assert_eq!("Chair".parse::<Role>(), Ok(Role::Chair));
        assert_eq!(Sector::Ngo.to_string(), "ngo");
    }

    #[test]
    fn error_messages() {
        let e = RecordError::TooLong {
            field: "title".into(),
            max: 200,
            len: 250,
        };
        assert_eq!(
            e.to_string(),
            "field `title` is 250 characters long; the limit is 200"
        );
        let e = RecordError::Missing {
            field: "name".into(),
        };
        assert_eq!(
            e.to_string(),
            "field `name` is required and must not be empty"
        );
    }

    #[test]
    fn required_fields() {
        let mut p = practice();
        p.title = "  ".into();
        assert_eq!(
            err(p),
            RecordError::Missing {
                field: "title".into()
            }
        );
        let mut p = practice();
        p.owner.clear();
        assert_eq!(
            err(p),
            RecordError::Missing {
                field: "owner".into()
            }
        );
        let mut p = project();
        p.name.clear();
        assert_eq!(
            err(p),
            RecordError::Missing {
                field: "name".into()
            }
        );
        let mut g = group();
        g.name.clear();
        assert_eq!(
            err(g),
            RecordError::Missing {
                field: "name".into()
            }
        );
        let mut g = group();
        g.agendas.values_mut().for_each(|a| a.title.clear());
        assert_eq!(
            err(g),
            RecordError::Missing {
                field: format!("{AGENDA}.title")
            }
        );
        let mut g = group();
        g.agendas.values_mut().for_each(|a| a.start.clear());
        assert_eq!(
            err(g),
            RecordError::Missing {
                field: format!("{AGENDA}.start")
            }
        );
        let mut g = group();
        g.agendas
            .values_mut()
            .for_each(|a| a.items[2].title.clear());
        assert_eq!(
            err(g),
            RecordError::Missing {
                field: format!("{AGENDA}.items[2].title")
            }
        );
        let mut p = practice();
        p.partners[1].name.clear();
        assert_eq!(
            err(p),
            RecordError::Missing {
                field: "partners[1].name".into()
            }
        );
        let mut p = practice();
        p.themes.push(String::new());
        assert_eq!(
            err(p),
            RecordError::Missing {
                field: "themes[2]".into()
            }
        );
        let mut g = group();
        g.members.values_mut().for_each(|m| m.name.clear());
        assert!(matches!(err(g), RecordError::Missing { field } if field.starts_with("members.")));
    }

    #[test]
    fn length_limits() {
        let mut p = practice();
        p.title = "x".repeat(250);
        assert_eq!(
            err(p).to_string(),
            "field `title` is 250 characters long; the limit is 200"
        );
        let mut p = practice();
        p.title = "é".repeat(MAX_TITLE_CHARS);
        assert_eq!(
            Record::from(p).validate(),
            Ok(()),
            "limits count characters, not bytes"
        );
        let mut p = practice();
        p.summary = "x".repeat(MAX_SUMMARY_CHARS + 1);
        assert!(matches!(err(p), RecordError::TooLong { field, .. } if field == "summary"));
        let mut p = practice();
        p.body = "x".repeat(MAX_BODY_CHARS + 1);
        assert!(matches!(err(p), RecordError::TooLong { field, .. } if field == "body"));
        let mut p = project();
        p.funding = Some("x".repeat(MAX_SHORT_CHARS + 1));
        assert!(matches!(err(p), RecordError::TooLong { field, .. } if field == "funding"));
        let mut g = group();
        g.agendas
            .values_mut()
            .for_each(|a| a.items[1].notes = "x".repeat(MAX_NOTES_CHARS + 1));
        assert!(matches!(err(g), RecordError::TooLong { field, .. }
            if field == format!("{AGENDA}.items[1].notes")));
        let mut g = group();
        g.agendas
            .values_mut()
            .for_each(|a| a.venue = "x".repeat(MAX_SHORT_CHARS + 1));
        assert!(matches!(err(g), RecordError::TooLong { field, .. }
            if field == format!("{AGENDA}.venue")));
    }

    #[test]
    fn count_limits() {
        let mut p = practice();
        p.themes = vec!["t".to_string(); MAX_LIST_LEN + 1];
        assert_eq!(
            err(p),
            RecordError::TooMany {
                field: "themes".into(),
                max: MAX_LIST_LEN,
                len: MAX_LIST_LEN + 1
            }
        );
        let mut g = group();
        g.agendas.values_mut().for_each(|a| {
            let item = a.items[0].clone();
            a.items = vec![item; MAX_LIST_LEN + 1];
        });
        assert!(matches!(err(g), RecordError::TooMany { field, .. }
            if field == format!("{AGENDA}.items")));
        let mut g = group();
        for i in 0..MAX_MEMBERS {
            g.members.insert(
                format!("city{i}"),
                Member {
                    name: format!("City {i}"),
                    role: Role::Member,
                },
            );
        }
        assert!(matches!(err(g), RecordError::TooMany { field, .. } if field == "members"));
        let mut g = group();
        for i in 0..MAX_AGENDAS {
            g.agendas.insert(format!("ag{i}"), agenda());
        }
        assert!(matches!(err(g), RecordError::TooMany { field, .. } if field == "agendas"));
    }

    #[test]
    fn date_parser() {
        for ok in [
            "2017-02-23",
            "2000-02-29",
            "2016-02-29",
            "2017-12-31",
            "0001-01-01",
        ] {
            assert!(is_valid_date(ok), "{ok}");
        }
        for bad in [
            "2017-02-30",
            "1900-02-29",
            "2017-02-29",
            "2017-13-01",
            "2017-00-10",
            "2017-04-31",
            "2017-01-00",
            "2017-1-01",
            "17-01-01",
            "2017/01/01",
            "2017-01-01T00:00",
            "",
            "0000-01-01",
            "２０１７-01-01",
            "+017-01-01",
        ] {
            assert!(!is_valid_date(bad), "{bad}");
        }
    }

    #[test]
    fn dates() {
        let mut p = practice();
        p.start = Some("2017-02-30".into());
        assert_eq!(
            err(p),
            RecordError::InvalidDate {
                field: "start".into(),
                value: "2017-02-30".into()
            }
        );
        let mut p = project();
        p.end = Some("2015-12-31".into());
        assert!(matches!(err(p), RecordError::Invalid { field, .. } if field == "end"));
        let mut p = project();
        p.end = p.start.clone();
        assert_eq!(Record::from(p).validate(), Ok(()), "end may equal start");
        let mut g = group();
        g.agendas
            .values_mut()
            .for_each(|a| a.end = Some("2017-02-22".into()));
        assert!(matches!(err(g), RecordError::Invalid { field, .. }
            if field == format!("{AGENDA}.end")));
        let mut g = group();
        g.agendas
            .values_mut()
            .for_each(|a| a.start = "23/02/2017".into());
        assert!(matches!(err(g), RecordError::InvalidDate { field, .. }
            if field == format!("{AGENDA}.start")));
    }

    #[test]
    fn country_language_links() {
        for bad in ["it", "ITA", "I", "1T"] {
            let mut p = practice();
            p.country = Some(bad.into());
            assert!(matches!(err(p), RecordError::Invalid { field, .. } if field == "country"));
        }
        for bad in ["EN", "e", "engl", "e1"] {
            let mut p = practice();
            p.language = bad.into();
            assert!(matches!(err(p), RecordError::Invalid { field, .. } if field == "language"));
        }
        let mut p = practice();
        p.language.clear();
        assert_eq!(
            err(p),
            RecordError::Missing {
                field: "language".into()
            }
        );
        let mut p = practice();
        p.language = "ita".into();
        assert_eq!(Record::from(p).validate(), Ok(()));
        for bad in [
            "www.fabriq.eu",
            "ftp://x",
            "https://",
            "javascript:alert(1)",
            "https://a b",
        ] {
            let mut p = practice();
            p.links.push(bad.into());
            assert!(
                matches!(err(p), RecordError::Invalid { field, .. } if field == "links[1]"),
                "{bad}"
            );
        }
        let mut p = practice();
        p.links.push("http://example.org/x?y=1".into());
        assert_eq!(Record::from(p).validate(), Ok(()));
    }

    #[test]
    fn control_characters() {
        let mut p = practice();
        p.body = "line\nline\ttab".into();
        assert_eq!(
            Record::from(p).validate(),
            Ok(()),
            "newline and tab allowed in long text"
        );
        let mut p = practice();
        p.body = "bell\u{7}".into();
        assert!(matches!(err(p), RecordError::Invalid { field, .. } if field == "body"));
        let mut p = practice();
        p.title = "two\nlines".into();
        assert!(matches!(err(p), RecordError::Invalid { field, .. } if field == "title"));
        let mut p = practice();
        p.summary = "nul\0".into();
        assert!(matches!(err(p), RecordError::Invalid { field, .. } if field == "summary"));
        let mut g = group();
        g.agendas
            .values_mut()
            .for_each(|a| a.items[0].notes = "esc\u{1b}[0m".into());
        assert!(matches!(err(g), RecordError::Invalid { field, .. }
            if field == format!("{AGENDA}.items[0].notes")));
    }

    #[test]
    fn group_rules() {
        let mut g = group();
        g.members.values_mut().for_each(|m| m.role = Role::Member);
        assert!(matches!(err(g), RecordError::Invalid { field, .. } if field == "members"));
        let mut g = group();
        let a = agenda();
        g.agendas.insert("bad id!".into(), a);
        assert!(matches!(err(g), RecordError::Invalid { field, .. } if field == "agendas.bad id!"));
        let mut g = group();
        g.agendas.values_mut().for_each(|a| a.items[1].id.clear());
        assert_eq!(
            err(g),
            RecordError::Missing {
                field: format!("{AGENDA}.items[1].id")
            }
        );
        let mut g = group();
        g.members.insert(
            "has space".into(),
            Member {
                name: "X".into(),
                role: Role::Member,
            },
        );
        assert!(
            matches!(err(g), RecordError::Invalid { field, .. } if field == "members.has space")
        );
    }

    #[test]
    fn kind_must_match_variant() {
        let mut p = practice();
        p.kind = Kind::Project;
        assert!(matches!(err(p), RecordError::Invalid { field, .. } if field == "kind"));
        let e = Record::from_json(json!({"kind": "group", "name": "G"})).map(|r| r.kind());
        assert_eq!(e, Ok(Kind::Group));
    }

    #[test]
    fn figures_must_be_finite() {
        let mut p = project();
        p.outcomes[1].value = f64::NAN;
        assert!(
            matches!(err(p), RecordError::Invalid { field, .. } if field == "outcomes[1].value")
        );
        let mut p = project();
        p.outcomes[0].label.clear();
        assert!(matches!(err(p), RecordError::Missing { field } if field == "outcomes[0].label"));
    }

    #[test]
    fn error_field_paths_are_specific() {
        let mut g = group();
        g.agendas
            .values_mut()
            .for_each(|a| a.items[2].presenters.push("x\ny".into()));
        assert_eq!(
            field_of(&err(g)),
            format!("{AGENDA}.items[2].presenters[0]")
        );
        assert_eq!(field_of(&RecordError::Json("x".into())), "");
    }

    #[test]
    fn ids() {
        let a = new_agenda_id();
        let i = new_item_id();
        assert_eq!(a.len(), 2 * AGENDA_ID_BYTES);
        assert_eq!(i.len(), 2 * ITEM_ID_BYTES);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(new_agenda_id(), a);
        assert_eq!(new_id(0), "");
        assert!(check_id("id", &a).is_ok() && check_id("id", &i).is_ok());
        let item = Item::new("x");
        assert_eq!(item.id.len(), 12);
    }

    #[test]
    fn ranks_order_and_spread() {
        assert_eq!(rank_between("", None), "i");
        assert_eq!(rank_between("i", None), "r");
        assert_eq!(rank_between("", Some("i")), "9");
        assert_eq!(rank_between("i", Some("j")), "ii");
        assert_eq!(rank_between("iz", Some("j")), "izi");
        assert_eq!(rank_between("i", Some("i1")), "i0i");
        let mut a = agenda();
        a.rerank();
        let ranks: Vec<&str> = a.items.iter().map(|i| i.rank.as_str()).collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
        assert!(a.ranked());
        for r in &ranks {
            assert!(check_rank("rank", r).is_ok(), "{r}");
        }
        a.items = (0..MAX_LIST_LEN)
            .map(|i| Item::new(format!("item {i}")))
            .collect();
        a.rerank();
        assert!(a.ranked());
        assert!(a.items.iter().all(|i| i.rank.len() <= 3));
        // Appending at the end many times stays valid: the agenda is ranked again when its ranks
        // grow long.
        let mut a = agenda();
        a.items.clear();
        for i in 0..500 {
            let at = a.items.len().min(MAX_LIST_LEN - 1);
            if a.items.len() == MAX_LIST_LEN {
                a.items.remove(0);
            }
            a.insert_item(at, Item::new(format!("item {i}")));
            assert!(a.validate().is_ok(), "{i}: {:?}", a.validate());
        }
        assert!(check_rank("rank", "i0").is_err());
        assert!(check_rank("rank", "I").is_err());
        assert!(check_rank("rank", &"i".repeat(MAX_RANK_CHARS + 1)).is_err());
    }

    #[test]
    fn items_read_in_rank_order_and_ids_are_unique() {
        let mut a = agenda();
        a.items[0].rank = "r".into();
        a.items[1].rank = "i".into();
        a.items[2].rank = String::new();
        let mut g = group();
        g.agendas.insert("ag".into(), a.clone());
        let Ok(Record::Group(read)) = Record::from_json(Record::Group(g.clone()).to_json()) else {
            panic!("group");
        };
        let ids: Vec<&str> = read.agendas["ag"]
            .items
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(ids, ["a3", "a2", "a1"]);
        // A copy of an item (with any content) makes the record invalid; a writer drops it.
        let mut copy = a.items[0].clone();
        copy.rank = "z".into();
        a.items.push(copy);
        let err = a.validate().expect_err("two items with one id");
        assert!(err.to_string().contains("items[3].id"), "{err}");
        a.dedupe_items();
        assert_eq!(a.items.len(), 3);
        assert!(a.validate().is_ok());
    }

    #[test]
    fn ranks_outside_the_alphabet_are_ranked_again_before_an_insert() {
        let mut a = agenda();
        a.items[0].rank = "9".into();
        a.items[1].rank = "A".into();
        a.items[2].rank = "é".into();
        assert!(!a.ranked());
        a.insert_item(1, Item::new("Lunch"));
        assert!(a.ranked());
        assert_eq!(a.items[1].title, "Lunch");
        // Out-of-order bounds never panic.
        assert!(!rank_between("z", Some("a")).is_empty());
    }
    #[test]
    fn translations_are_checked_like_their_fields() {
        let mut p = practice();
        p.translations.insert(
            "en".into(),
            Translation {
                title: "Civic crowdfunding".into(),
                summary: "The city doubles what citizens give.".into(),
            },
        );
        assert!(p.validate().is_ok());
        let back = Record::from_json(Record::from(p.clone()).to_json()).expect("json");
        assert_eq!(back, Record::from(p.clone()));
        let mut bad = p.clone();
        bad.translations
            .insert("English".into(), Translation::default());
        assert!(bad.validate().is_err());
        let mut bad = p.clone();
        if let Some(t) = bad.translations.get_mut("en") {
            t.title = "x".repeat(MAX_TITLE_CHARS + 1);
        }
        let err = bad.validate().expect_err("long title");
        assert!(err.to_string().contains("translations.en.title"), "{err}");
        let mut many = p;
        for i in 0..=MAX_TRANSLATIONS {
            many.translations.insert(
                format!(
                    "{}{}",
                    (b'a' + (i / 26) as u8) as char,
                    (b'a' + (i % 26) as u8) as char
                ),
                Translation::default(),
            );
        }
        assert!(many.validate().is_err());
    }

    #[test]
    fn time_zones_are_checked_for_shape_only() {
        for ok in [
            "",
            "Europe/Rome",
            "UTC",
            "Etc/GMT+1",
            "America/Argentina/Buenos_Aires",
        ] {
            assert!(check_time_zone("time_zone", ok).is_ok(), "{ok}");
        }
        for bad in ["Europe/", "/Rome", "Europe Rome", "Europe//Rome", "Évora"] {
            assert!(check_time_zone("time_zone", bad).is_err(), "{bad}");
        }
        let mut a = agenda();
        a.status = AgendaStatus::Cancelled;
        a.minutes = "Met at 9:30.\nDecided to meet again in June.".into();
        a.items[0].day = "2017-02-24".into();
        assert!(a.validate().is_ok());
        a.items[0].day = "2017-02-30".into();
        assert!(a.validate().is_err());
    }

    proptest::proptest! {
        /// A rank made between two ranks sorts strictly between them and is a valid rank.
        #[test]
        fn a_rank_between_two_lies_between(
            x in "[0-9a-z]{0,6}[1-9a-z]",
            y in "[0-9a-z]{0,6}[1-9a-z]",
        ) {
            let (lo, hi) = if x < y { (x, y) } else { (y, x) };
            if lo != hi {
                let m = rank_between(&lo, Some(&hi));
                proptest::prop_assert!(lo < m && m < hi, "{} < {} < {}", lo, m, hi);
                proptest::prop_assert!(check_rank("rank", &m).is_ok(), "{}", m);
            }
            let after = rank_between(&hi, None);
            proptest::prop_assert!(hi < after && check_rank("rank", &after).is_ok());
            let before = rank_between("", Some(&lo));
            proptest::prop_assert!(before < lo && check_rank("rank", &before).is_ok(), "{}", before);
        }
    }
}
