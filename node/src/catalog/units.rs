//! The units of a record (a practice, a project, a group, each agenda) with their searchable texts.

use std::collections::HashMap;

use super::*;

/// A unit with its key and text fields, as written to the catalog.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) key: Vec<u8>,
    pub(crate) unit: Unit,
    /// The texts, the first one the language's ([`F_LANGUAGE`]) when the record names one.
    pub(crate) texts: Vec<(u8, String)>,
}

impl Entry {
    /// The unit's language (`""`: the default language).
    pub(crate) fn language(&self) -> &str {
        language_of(&self.texts)
    }

    /// The languages of the unit's translations (the language entries after the first).
    pub(crate) fn translations(&self) -> impl Iterator<Item = &str> {
        self.texts
            .iter()
            .filter(|(f, _)| *f == F_LANGUAGE)
            .skip(1)
            .map(|(_, l)| l.as_str())
    }
}

/// The language a texts row names first, the record's (`""`: none, the default language).
pub(crate) fn language_of(texts: &[(u8, String)]) -> &str {
    texts
        .iter()
        .find(|(f, _)| *f == F_LANGUAGE)
        .map_or("", |(_, l)| l.as_str())
}

/// A text field of a unit: (field, text, the analyzer of its language).
pub(crate) type AnalyzedField<'a> = (u8, &'a str, Analyzer);

/// The text fields of a texts row, each with the analyzer of its language: a language entry
/// sets the language of the fields after it (a translation's title and summary).
pub(crate) fn analyzed_fields(texts: &[(u8, String)]) -> Vec<AnalyzedField<'_>> {
    let mut analyzer = Analyzer::of(DEFAULT_LANGUAGE);
    let mut out = Vec::with_capacity(texts.len());
    for (field, text) in texts {
        if *field == F_LANGUAGE {
            analyzer = Analyzer::of(text);
        } else {
            out.push((*field, text.as_str(), analyzer));
        }
    }
    out
}

pub(crate) fn sectors(partners: &[intercity_protocol::record::Partner]) -> Vec<Sector> {
    let mut out: Vec<Sector> = partners.iter().map(|p| p.sector).collect();
    out.sort();
    out.dedup();
    out
}

pub(crate) fn partner_names(partners: &[intercity_protocol::record::Partner]) -> String {
    let names: Vec<&str> = partners.iter().map(|x| x.name.as_str()).collect();
    names.join(", ")
}

pub(crate) fn push(texts: &mut Vec<(u8, String)>, field: u8, text: &str) {
    if !text.trim().is_empty() {
        texts.push((field, text.to_string()));
    }
}

/// The catalog units of record `id` (none for a withdrawn record).
pub(crate) fn units_of(id: DocId, record: &Record, updated: i64) -> Vec<Entry> {
    if record.is_deleted() {
        return Vec::new();
    }
    let hex = id.to_string();
    let mut out = Vec::new();
    match record {
        Record::Practice(p) => {
            let mut texts = Vec::new();
            // The record's language comes first even when it gives none, so that a
            // translation's language is never taken for the record's.
            let language = match p.language.trim() {
                "" => DEFAULT_LANGUAGE,
                l => l,
            };
            push(&mut texts, F_LANGUAGE, language);
            push(&mut texts, F_TITLE, &p.title);
            push(&mut texts, F_SUMMARY, &p.summary);
            push(&mut texts, F_BODY, &p.body);
            push(&mut texts, F_THEMES, &p.themes.join(", "));
            push(&mut texts, F_PARTNERS, &partner_names(&p.partners));
            push(&mut texts, F_OUTCOMES, &p.outcomes.join("\n"));
            push(&mut texts, F_PLACES, &p.city);
            // Each translation in its own language (the fields after a language entry are in it).
            // (A translation with no text is no translation: its language is not the record's.)
            for (language, t) in p
                .translations
                .iter()
                .filter(|(_, t)| !(t.title.trim().is_empty() && t.summary.trim().is_empty()))
            {
                push(&mut texts, F_LANGUAGE, language);
                push(&mut texts, F_TITLE, &t.title);
                push(&mut texts, F_SUMMARY, &t.summary);
            }
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
pub(crate) fn count_terms(texts: &[(u8, String)]) -> (Vec<(String, [u16; 3])>, u32) {
    count_analyzed(analyzed_fields(texts))
}

/// [`count_terms`] of analyzed text fields.
pub(crate) fn count_analyzed<'a>(
    fields: impl IntoIterator<Item = (u8, &'a str, Analyzer)>,
) -> (Vec<(String, [u16; 3])>, u32) {
    let mut all: Vec<(String, usize)> = Vec::new();
    for (field, text, analyzer) in fields {
        let class = match FIELDS.get(usize::from(field)).map_or(1, |f| f.1) {
            4 => 0,
            2 => 1,
            _ => 2,
        };
        all.extend(analyzer.terms(text).map(|t| (t, class)));
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

/// The text fields in which two texts rows of a unit differ, each with its analyzer: those only
/// in `old` (`.0`) and those only in `new` (`.1`), counted as multisets. The terms of the fields
/// they share count alike in both, so the difference of the rows' term counts is the
/// difference of these fields' counts.
pub(crate) fn changed_fields<'a>(
    old: &'a [(u8, String)],
    new: &'a [(u8, String)],
) -> (Vec<AnalyzedField<'a>>, Vec<AnalyzedField<'a>>) {
    let (mut old, mut new) = (analyzed_fields(old), analyzed_fields(new));
    // Fields equal at the same place, from either end, are in both: the difference is that of
    // the rest (an edit changes a field or two of dozens; only those are counted).
    let same = |a: &AnalyzedField<'_>, b: &AnalyzedField<'_>| {
        a.0 == b.0 && a.1 == b.1 && a.2.number() == b.2.number()
    };
    let tail = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take_while(|(a, b)| same(a, b))
        .count();
    old.truncate(old.len() - tail);
    new.truncate(new.len() - tail);
    let head = old.iter().zip(&new).take_while(|(a, b)| same(a, b)).count();
    old.drain(..head);
    new.drain(..head);
    if old.is_empty() || new.is_empty() {
        return (old, new);
    }
    let mut count: HashMap<(u8, &str, usize), i64> = HashMap::new();
    for (field, text, analyzer) in &old {
        *count.entry((*field, *text, analyzer.number())).or_default() -= 1;
    }
    for (field, text, analyzer) in &new {
        *count.entry((*field, *text, analyzer.number())).or_default() += 1;
    }
    // Each side keeps its fields beyond what the other has of them, in its own order.
    let mut take = |fields: Vec<AnalyzedField<'a>>, sign: i64| {
        fields
            .into_iter()
            .filter(|(field, text, analyzer)| {
                let n = count
                    .get_mut(&(*field, *text, analyzer.number()))
                    .filter(|n| **n * sign > 0);
                n.map(|n| *n -= sign).is_some()
            })
            .collect::<Vec<_>>()
    };
    (take(old, -1), take(new, 1))
}

pub(crate) fn posting_key(term: &str, unit_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(term.len() + 1 + unit_key.len());
    k.extend_from_slice(term.as_bytes());
    k.push(0);
    k.extend_from_slice(unit_key);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `changed_fields` gives the multiset difference of two texts rows' analyzed fields, each
    /// side in its own order, however the rows differ: fields changed, added, removed, moved or
    /// repeated, and the language switched part-way.
    #[test]
    fn changed_fields_are_the_multiset_difference() {
        let seed = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15_u64);
        let next = |n: usize| {
            let mut s = seed.get();
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            seed.set(s);
            usize::try_from(s % n as u64).expect("small")
        };
        let texts = ["a b", "youth", "", "green city", "café"];
        let row = |len: usize| -> Vec<(u8, String)> {
            (0..len)
                .map(|_| match next(12) {
                    0 => (F_LANGUAGE, ["en", "it", "pl"][next(3)].to_string()),
                    k => (
                        [F_TITLE, F_NOTES, F_ITEM][k % 3],
                        texts[next(texts.len())].to_string(),
                    ),
                })
                .collect()
        };
        let key = |f: &AnalyzedField<'_>| (f.0, f.1.to_string(), f.2.number());
        for round in 0..3_000 {
            let old = row(next(9));
            // The new row: the old one edited at a few places, or another row altogether.
            let mut new = old.clone();
            if round % 5 == 0 {
                new = row(next(9));
            } else {
                for _ in 0..next(3) {
                    match next(3) {
                        0 if !new.is_empty() => {
                            let at = next(new.len());
                            new.remove(at);
                        }
                        1 => {
                            let at = next(new.len() + 1);
                            new.insert(at, row(1).remove(0));
                        }
                        _ if !new.is_empty() => {
                            let at = next(new.len());
                            new[at] = row(1).remove(0);
                        }
                        _ => {}
                    }
                }
            }
            let (gone, came) = changed_fields(&old, &new);
            // The difference by counting every field of both rows.
            let mut count: HashMap<(u8, String, usize), i64> = HashMap::new();
            for f in analyzed_fields(&old) {
                *count.entry(key(&f)).or_default() -= 1;
            }
            for f in analyzed_fields(&new) {
                *count.entry(key(&f)).or_default() += 1;
            }
            let mut expected: HashMap<(u8, String, usize), i64> = count;
            expected.retain(|_, n| *n != 0);
            let mut got: HashMap<(u8, String, usize), i64> = HashMap::new();
            for f in &gone {
                *got.entry(key(f)).or_default() -= 1;
            }
            for f in &came {
                *got.entry(key(f)).or_default() += 1;
            }
            assert_eq!(got, expected, "{old:?} -> {new:?}");
            // Each side is a part of its row, in the row's order.
            for (side, row) in [(&gone, &old), (&came, &new)] {
                let all = analyzed_fields(row);
                let mut at = 0;
                for f in side.iter() {
                    at += all[at..]
                        .iter()
                        .position(|g| key(g) == key(f))
                        .expect("in its row, in order")
                        + 1;
                }
            }
        }
    }
}
