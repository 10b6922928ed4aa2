//! The compact encodings of units, facets and postings, and the filters read on them.

use super::*;

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

pub(crate) fn encode_unit(u: &Unit) -> Vec<u8> {
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

pub(crate) fn sector_bit(s: Sector) -> u8 {
    1 << Sector::ALL.iter().position(|x| *x == s).unwrap_or(7)
}

/// FNV-1a of the ASCII-lowercased, trimmed text: how cities and themes are compared in facets
/// (a match is then checked on the unit, so a collision costs only a read).
pub(crate) fn fold_hash(text: &str) -> u32 {
    text.trim().bytes().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193)
    })
}

/// Most theme terms a unit's facets hold (a record has at most 200 themes of a few words).
const MAX_THEME_TERMS: usize = 1024;

/// The terms of a unit's themes, each once, in order: a `--tag` matches a unit when every term
/// of the tag is among them, so `youth` matches the theme "Youth employment".
pub(crate) fn theme_terms<'t>(themes: impl Iterator<Item = &'t str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for term in themes.flat_map(super::analyze::terms) {
        if !out.contains(&term) {
            out.push(term);
        }
    }
    out
}

/// FNV-1a of the exact text.
pub(crate) fn exact_hash(text: &str) -> u32 {
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
    "cancelled",
];

pub(crate) fn status_code(status: &str) -> u8 {
    STATUSES
        .iter()
        .position(|s| s.eq_ignore_ascii_case(status))
        .map_or(0, |i| i as u8 + 1)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub(crate) fn day_number(date: &str) -> Option<i32> {
    crate::time::days_from_civil(date).and_then(|d| i32::try_from(d).ok())
}

/// A language as a facet stores it: its two-letter code where one exists, ASCII, zero-padded to
/// 4 bytes (longer codes: all zeros, the default language).
fn language_code(language: &str) -> [u8; 4] {
    let language = super::analyze::two_letter(language);
    let mut code = [0u8; 4];
    if language.len() <= 4 {
        code[..language.len()].copy_from_slice(language.as_bytes());
    }
    code
}

/// The text of a 4-byte language code (`""`: none).
fn code_text(code: &[u8]) -> &str {
    let n = code.iter().position(|b| *b == 0).unwrap_or(code.len());
    std::str::from_utf8(&code[..n]).unwrap_or_default()
}

/// What filters and orders need of a unit, small: the `facets` row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Facets<'a> {
    pub(crate) kind: UnitKind,
    pub(crate) sectors: u8,
    pub(crate) status: u8,
    pub(crate) updated: i64,
    /// (first, last) day numbers.
    pub(crate) span: Option<(i32, i32)>,
    pub(crate) city: u32,
    pub(crate) owner: u32,
    /// The unit's language, ASCII, zero-padded (all zeros: the default language).
    pub(crate) language: [u8; 4],
    /// The languages of its translations, 4 bytes each like `language`.
    pub(crate) translations: std::borrow::Cow<'a, [u8]>,
    /// Theme hashes, u32 big-endian each (read in place when decoded).
    pub(crate) themes: std::borrow::Cow<'a, [u8]>,
}

impl Facets<'_> {
    pub(crate) fn has_theme(&self, hash: u32) -> bool {
        self.themes
            .chunks_exact(4)
            .any(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) == hash)
    }

    /// The language code as text (`""`: none given).
    pub(crate) fn language(&self) -> &str {
        code_text(&self.language)
    }

    /// Whether the unit is in `language` (a two-letter code where one exists), originally or
    /// translated.
    pub(crate) fn in_language(&self, language: &str) -> bool {
        let original = match self.language() {
            "" => super::analyze::DEFAULT_LANGUAGE,
            l => l,
        };
        original == language
            || self
                .translations
                .chunks_exact(4)
                .any(|c| code_text(c) == language)
    }

    pub(crate) fn of<'t>(
        u: &Unit,
        language: &str,
        translations: impl Iterator<Item = &'t str>,
    ) -> Facets<'static> {
        let code = language_code(language);
        let translations: Vec<u8> = translations
            .take(usize::from(u8::MAX))
            .flat_map(language_code)
            .collect();
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
            language: code,
            translations: translations.into(),
            themes: theme_terms(u.themes.iter().map(String::as_str))
                .iter()
                .take(MAX_THEME_TERMS)
                .flat_map(|t| fold_hash(t).to_be_bytes())
                .collect::<Vec<u8>>()
                .into(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.themes.len());
        out.extend_from_slice(&[self.kind.code(), self.sectors, self.status]);
        out.extend_from_slice(&self.updated.to_be_bytes());
        let (a, b) = self.span.unwrap_or((i32::MIN, i32::MIN));
        out.extend_from_slice(&a.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
        out.extend_from_slice(&self.city.to_be_bytes());
        out.extend_from_slice(&self.owner.to_be_bytes());
        out.extend_from_slice(&self.language);
        // At most 255 translations (`of` keeps no more).
        out.push(u8::try_from(self.translations.len() / 4).unwrap_or(u8::MAX));
        out.extend_from_slice(&self.translations);
        out.extend_from_slice(&self.themes);
        out
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Facets<'_>> {
        let mut r = Reader(v);
        let [kind, sectors, status] = r.array::<3>()?;
        let updated = i64::from_be_bytes(r.array()?);
        let a = i32::from_be_bytes(r.array()?);
        let b = i32::from_be_bytes(r.array()?);
        let city = u32::from_be_bytes(r.array()?);
        let owner = u32::from_be_bytes(r.array()?);
        let language = r.array::<4>()?;
        let [n] = r.array::<1>()?;
        let n = usize::from(n) * 4;
        if r.0.len() < n || (r.0.len() - n) % 4 != 0 {
            return None;
        }
        let (translations, themes) = r.0.split_at(n);
        let (translations, themes) = (translations.into(), themes.into());
        Some(Facets {
            kind: UnitKind::from_code(kind)?,
            sectors,
            status,
            updated,
            span: (a != i32::MIN).then_some((a, b)),
            city,
            owner,
            language,
            translations,
            themes,
        })
    }
}

/// A filter compiled for facets: exact on kind, sector, status, dates and group; by hash on
/// city and tags (those matches are then checked on the unit).
pub(crate) struct FacetFilter<'a> {
    pub(crate) filter: &'a Filter,
    pub(crate) statuses: Vec<u8>,
    pub(crate) since: Option<i32>,
    pub(crate) until: Option<i32>,
    pub(crate) cities: Vec<(u32, u32)>,
    /// Each tag's terms, hashed: a tag matches when all are among the unit's theme terms.
    pub(crate) tags: Vec<Vec<u32>>,
    pub(crate) group: Option<[u8; 16]>,
}

/// The verdict of the facets on a unit.
#[derive(PartialEq, Eq, Debug)]
pub(crate) enum FacetVerdict {
    No,
    Yes,
    /// A city or tag matched by hash: check the unit.
    Check,
}

impl<'a> FacetFilter<'a> {
    pub(crate) fn new(filter: &'a Filter) -> Result<FacetFilter<'a>, QueryError> {
        let group = match &filter.group {
            Some(g) => Some(
                g.parse::<DocId>()
                    .map_err(|e| QueryError::BadGroup(e.to_string()))?
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
            tags: filter
                .tags
                .iter()
                .map(|t| super::analyze::terms(t).map(|w| fold_hash(&w)).collect())
                .collect(),
            group,
        })
    }

    pub(crate) fn check(&self, key: &[u8], f: &Facets) -> FacetVerdict {
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
        if !filter.languages.is_empty()
            && !filter
                .languages
                .iter()
                .any(|l| f.in_language(super::analyze::two_letter(l)))
        {
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
        let has_tag = |t: &Vec<u32>| !t.is_empty() && t.iter().all(|h| f.has_theme(*h));
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

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// A unit read in place from its stored bytes (no allocation), for filtering and ordering.
#[derive(Debug, Clone)]
pub(crate) struct UnitView<'a> {
    pub(crate) kind: UnitKind,
    pub(crate) updated: i64,
    pub(crate) items: u32,
    pub(crate) sectors: u8,
    pub(crate) id: &'a str,
    pub(crate) group: &'a str,
    pub(crate) title: &'a str,
    pub(crate) city: &'a str,
    pub(crate) country: &'a str,
    pub(crate) owner: &'a str,
    pub(crate) status: &'a str,
    pub(crate) start: &'a str,
    pub(crate) end: &'a str,
    pub(crate) group_name: &'a str,
    pub(crate) venue: &'a str,
    /// The encoded themes (count, then strings), read on demand.
    pub(crate) themes: &'a [u8],
}

impl<'a> UnitView<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<UnitView<'a>> {
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

    pub(crate) fn themes(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut r = Reader(self.themes);
        let n = r.array::<2>().map_or(0, u16::from_be_bytes);
        (0..n).map_while(move |_| r.str())
    }

    pub(crate) fn span(&self) -> Option<(&'a str, &'a str)> {
        let opt = |s: &'a str| Some(s).filter(|s| !s.is_empty());
        let first = opt(self.start).or(opt(self.end))?;
        let last = opt(self.end).unwrap_or(first);
        Some((first, last))
    }

    pub(crate) fn to_unit(&self) -> Unit {
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
pub(crate) fn decode_unit(bytes: &[u8]) -> Option<Unit> {
    UnitView::parse(bytes).map(|v| v.to_unit())
}

pub(crate) fn encode_posting(counts: [u16; 3], len: u32) -> [u8; 10] {
    let mut v = [0u8; 10];
    v[0..2].copy_from_slice(&counts[0].to_be_bytes());
    v[2..4].copy_from_slice(&counts[1].to_be_bytes());
    v[4..6].copy_from_slice(&counts[2].to_be_bytes());
    v[6..10].copy_from_slice(&len.to_be_bytes());
    v
}

/// The counts and the unit length a posting value holds.
pub(crate) fn posting_parts(v: &[u8]) -> Option<([u16; 3], u32)> {
    let v: &[u8; 10] = v.try_into().ok()?;
    let c = |i: usize| u16::from_be_bytes([v[i], v[i + 1]]);
    Some((
        [c(0), c(2), c(4)],
        u32::from_be_bytes([v[6], v[7], v[8], v[9]]),
    ))
}

/// (field-weighted term frequency, unit length) of a posting value.
pub(crate) fn decode_posting(v: &[u8]) -> Option<(f64, f64)> {
    let (c, len) = posting_parts(v)?;
    let c = c.map(f64::from);
    Some((4.0 * c[0] + 2.0 * c[1] + c[2], f64::from(len)))
}
