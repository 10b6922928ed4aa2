//! Keeping the catalog's rows in step with the store: the writes of each batch, statistics,
//! reindex (what the rows hold: [`crate::catalog`]).

use std::collections::HashMap;

use super::*;
use crate::catalog::*;

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

/// The most terms an edit's postings are mended by reading (see `Store::mend_postings`).
const MAX_MENDED_TERMS: usize = 32;

/// One unit's `units` row and its `texts` row's fields, as a write left them: what the next
/// write of the same record replaces (kept with a cached document, so that it need not read
/// them again, nor parse the texts row).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UnitRows {
    pub(crate) key: Vec<u8>,
    pub(crate) unit: Vec<u8>,
    /// The `texts` row, parsed.
    pub(crate) fields: Vec<(u8, String)>,
    /// The unit's postings, when the write knew them all ([`count_terms`] of `fields`): the
    /// next edit then mends them from the fields it changed alone, reading no posting. Kept
    /// for the units of a document that stays in the cache, from the first write that changes
    /// the unit's texts.
    pub(crate) terms: Option<Terms>,
}

impl UnitRows {
    /// About the bytes it holds (what the cache counts it as).
    pub(crate) fn bytes(&self) -> usize {
        let fields: usize = self.fields.iter().map(|(_, t)| t.len() + 32).sum();
        // A count's string and its place in a vector that may have grown to twice its length.
        let terms: usize = self
            .terms
            .as_ref()
            .map_or(0, |t| t.counts.iter().map(|(t, _)| t.len() + 64).sum());
        self.key.len() + self.unit.len() + fields + terms
    }
}

/// A unit's term counts (by field weight, sorted by term) and length: what its postings hold.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Terms {
    pub(crate) counts: Vec<(String, [u16; 3])>,
    pub(crate) len: u32,
}

impl Terms {
    /// The terms of texts `fields`.
    pub(crate) fn of(fields: &[(u8, String)]) -> Terms {
        let (counts, len) = count_terms(fields);
        Terms { counts, len }
    }

    /// The postings of unit `key` these counts make (every one holds the length).
    fn postings<'a>(&'a self, key: &'a [u8]) -> impl Iterator<Item = (Vec<u8>, [u8; 10])> + 'a {
        self.counts
            .iter()
            .map(move |(t, c)| (posting_key(t, key), encode_posting(*c, self.len)))
    }

    /// Where term `t` is in the counts, or would be.
    fn position(&self, t: &str) -> Result<usize, usize> {
        self.counts.binary_search_by(|(c, _)| c.as_str().cmp(t))
    }
}

/// How each term's counts change from texts `old` to texts `new`, in term order, terms whose
/// counts do not change left out; and the lengths of the fields that changed, before and after
/// (see [`changed_fields`]: only those are analyzed).
fn term_change(
    old: &[(u8, String)],
    new: &[(u8, String)],
) -> (std::collections::BTreeMap<String, [i64; 3]>, u32, u32) {
    let (gone, came) = changed_fields(old, new);
    let (gone, gone_len) = count_analyzed(gone);
    let (came, came_len) = count_analyzed(came);
    let mut change: std::collections::BTreeMap<String, [i64; 3]> = Default::default();
    for (sign, counts) in [(-1, gone), (1, came)] {
        for (t, c) in counts {
            let d = change.entry(t).or_default();
            for k in 0..3 {
                d[k] += sign * i64::from(c[k]);
            }
        }
    }
    change.retain(|_, d| *d != [0; 3]);
    (change, gone_len, came_len)
}

/// Counts `held` changed by `d`; None when one is not known exactly (a count cut at its bound,
/// before or after: the unit's terms are then counted again).
fn changed_counts(held: [u16; 3], d: &[i64; 3]) -> Option<[u16; 3]> {
    let mut now = [0u16; 3];
    for k in 0..3 {
        match u16::try_from(i64::from(held[k]) + d[k]) {
            Ok(c) if held[k] < u16::MAX && c < u16::MAX => now[k] = c,
            _ => return None,
        }
    }
    Some(now)
}

/// What a write of a record left that its next write needs, kept with a cached document: its
/// units' rows, and the `updated` time of its `records` row (which that write keeps if later).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Noted {
    pub(crate) rows: Vec<UnitRows>,
    pub(crate) updated: i64,
}

/// The catalog rows a record has before a write ([`Store::catalog_write`]).
pub(crate) enum Held {
    /// None: the record is new.
    New,
    /// These, known from the write before (see [`UnitRows`]); the write may keep their terms.
    Known(Vec<UnitRows>),
    /// Those the store holds: read.
    Stored,
}

impl Store {
    pub(super) fn catalog_stats(&self) -> Result<(u64, u64), StoreError> {
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

    /// Puts the catalog rows of record `id` (as it now reads, with the time of its `records`
    /// row; None: it is gone) into `batch`, replacing the units it has (`held`); unchanged
    /// texts keep their postings. Returns the rows of its units after the write, unless it had
    /// none (`Held::New`: a record's first write notes nothing, most records are never written
    /// again); with their terms where known and `keep` (the document stays in the cache).
    pub(crate) fn catalog_write(
        &self,
        batch: &mut WriteBatch,
        id: &DocId,
        record: Option<(&Record, i64)>,
        held: Held,
        keep: bool,
        delta: &mut CatalogDelta,
    ) -> Result<Option<Vec<UnitRows>>, StoreError> {
        let note = !matches!(held, Held::New);
        let new = record.map_or_else(Vec::new, |(r, updated)| units_of(*id, r, updated));
        let old_rows = match held {
            Held::New => Vec::new(),
            Held::Known(rows) => rows,
            Held::Stored => self.unit_rows(id)?,
        };
        let mut old: HashMap<Vec<u8>, UnitRows> =
            old_rows.into_iter().map(|r| (r.key.clone(), r)).collect();
        let mut rows = Vec::with_capacity(new.len());
        for e in new {
            let held = old.remove(&e.key);
            // A unit the edit left as it was is not written again (its facets derive from it
            // and from its language, which its texts row names).
            let unit = encode_unit(&e.unit);
            // (No texts at all are written again: a texts row that is missing or does not
            // parse is read as none, see `unit_rows`.)
            let same_texts =
                !e.texts.is_empty() && held.as_ref().is_some_and(|h| h.fields == e.texts);
            if !same_texts || held.as_ref().is_none_or(|h| h.unit != unit) {
                batch.put_cf(self.cf("units"), &e.key, &unit);
                batch.put_cf(
                    self.cf("facets"),
                    &e.key,
                    Facets::of(&e.unit, e.language(), e.translations()).encode(),
                );
            }
            let terms = match held {
                Some(h) if same_texts => h.terms,
                Some(h) => {
                    let mended = match h.terms {
                        Some(mut terms) => self
                            .mend_known(batch, &e.key, &mut terms, &h.fields, &e.texts, delta)
                            .then_some(Some(terms)),
                        None => self.mend_postings(batch, &e.key, &h.fields, &e.texts, delta)?,
                    };
                    match mended {
                        Some(terms) => terms.or_else(|| keep.then(|| Terms::of(&e.texts))),
                        None => {
                            self.delete_postings(batch, &e.key, &h.fields, delta);
                            Some(self.put_postings(&e.key, &e.texts, delta))
                        }
                    }
                }
                None => {
                    delta.units += 1;
                    Some(self.put_postings(&e.key, &e.texts, delta))
                }
            };
            // Debug builds (the tests) check the counts a cached record keeps against counting.
            debug_assert!(
                !keep || terms.as_ref().is_none_or(|t| *t == Terms::of(&e.texts)),
                "the term counts kept are not the texts'"
            );
            if !same_texts {
                let texts = serde_json::to_vec(&e.texts).map_err(|x| self.corrupt(x))?;
                batch.put_cf(self.cf("texts"), &e.key, texts);
            }
            if note {
                rows.push(UnitRows {
                    key: e.key,
                    unit,
                    fields: e.texts,
                    terms: terms.filter(|_| keep),
                });
            }
        }
        // The units the record no longer has, with their postings.
        for (k, row) in &old {
            batch.delete_cf(self.cf("units"), k);
            batch.delete_cf(self.cf("facets"), k);
            batch.delete_cf(self.cf("texts"), k);
            delta.units -= 1;
            self.delete_postings(batch, k, &row.fields, delta);
        }
        Ok(note.then_some(rows))
    }

    /// The catalog rows of record `id` as the store holds them (a texts row that is missing or
    /// does not parse reads as no fields, and is written again).
    fn unit_rows(&self, id: &DocId) -> Result<Vec<UnitRows>, StoreError> {
        let mut rows = Vec::new();
        for (k, v) in self.scan("units", &id.0)? {
            let fields = match self.get("texts", &k)? {
                Some(t) => serde_json::from_slice(&t).unwrap_or_default(),
                None => Vec::new(),
            };
            rows.push(UnitRows {
                key: k.to_vec(),
                unit: v.to_vec(),
                fields,
                terms: None,
            });
        }
        Ok(rows)
    }

    /// Deletes the postings of unit `key` whose texts row holds `texts`.
    fn delete_postings(
        &self,
        batch: &mut WriteBatch,
        key: &[u8],
        texts: &[(u8, String)],
        delta: &mut CatalogDelta,
    ) {
        let (counts, len) = count_terms(texts);
        for (t, _) in &counts {
            batch.delete_cf(self.cf("postings"), posting_key(t, key));
        }
        delta.terms -= i64::from(len);
    }

    /// Puts the postings of unit `key` with texts `texts`; returns them.
    fn put_postings(&self, key: &[u8], texts: &[(u8, String)], delta: &mut CatalogDelta) -> Terms {
        let terms = Terms::of(texts);
        delta.postings.extend(terms.postings(key));
        delta.terms += i64::from(terms.len);
        terms
    }

    /// Turns the postings of unit `key` from those of texts `old` into those of texts `new`
    /// by what differs between them: only the fields that changed are analyzed, a term whose
    /// counts are unchanged keeps its posting, and the others are read, counted again and
    /// written (all of them when the unit's length changed, since each posting holds it: then
    /// every term is counted, and the counts are returned). Returns None, with nothing
    /// written, when the stored postings do not add up to what `old` counts (then the caller
    /// replaces them whole).
    fn mend_postings(
        &self,
        batch: &mut WriteBatch,
        key: &[u8],
        old: &[(u8, String)],
        new: &[(u8, String)],
        delta: &mut CatalogDelta,
    ) -> Result<Option<Option<Terms>>, StoreError> {
        let (change, gone_len, came_len) = term_change(old, new);
        // Mending reads a posting per changed term (point lookups in a column family made for
        // scans): past a few, writing them all again is cheaper and bounded.
        if gone_len != came_len || change.len() > MAX_MENDED_TERMS {
            // All of them are written again (the length is in every posting), and the terms
            // the unit no longer has (only a changed field's can go) are deleted.
            let terms = Terms::of(new);
            for t in change.keys() {
                if terms.position(t).is_err() {
                    batch.delete_cf(self.cf("postings"), posting_key(t, key));
                }
            }
            delta.postings.extend(terms.postings(key));
            delta.terms += i64::from(came_len) - i64::from(gone_len);
            return Ok(Some(Some(terms)));
        }
        // The same length: each changed term's counts are its stored ones plus the change. A
        // term whose count went down has a stored posting, which gives the length.
        let mut len = None;
        let mut writes: Vec<(Vec<u8>, Option<[u16; 3]>)> = Vec::with_capacity(change.len());
        for (t, d) in &change {
            let k = posting_key(t, key);
            let held = match self.get("postings", &k)? {
                Some(v) => match posting_parts(&v) {
                    Some((counts, l)) if len.is_none_or(|len| len == l) => {
                        len = Some(l);
                        counts
                    }
                    _ => return Ok(None),
                },
                None => [0; 3],
            };
            let Some(now) = changed_counts(held, d) else {
                return Ok(None);
            };
            writes.push((k, (now != [0; 3]).then_some(now)));
        }
        let Some(len) = len else {
            return Ok(change.is_empty().then_some(None));
        };
        for (k, counts) in writes {
            match counts {
                Some(c) => delta.postings.push((k, encode_posting(c, len))),
                None => batch.delete_cf(self.cf("postings"), k),
            }
        }
        Ok(Some(None))
    }

    /// [`Store::mend_postings`] where the unit's postings are known (`terms`, which become the
    /// new texts'): nothing is read, and when the length changed the postings are written
    /// again from the counts known. Returns false, with nothing written and `terms` no longer
    /// right, when a count reaches its bound (then the caller replaces them whole).
    fn mend_known(
        &self,
        batch: &mut WriteBatch,
        key: &[u8],
        terms: &mut Terms,
        old: &[(u8, String)],
        new: &[(u8, String)],
        delta: &mut CatalogDelta,
    ) -> bool {
        let (change, gone_len, came_len) = term_change(old, new);
        let Some(len) = (terms.len.checked_sub(gone_len)).and_then(|l| l.checked_add(came_len))
        else {
            return false;
        };
        let mut changed = Vec::with_capacity(change.len());
        for (t, d) in change {
            let at = terms.position(&t);
            let held = at.map_or([0; 3], |i| terms.counts[i].1);
            let Some(now) = changed_counts(held, &d) else {
                return false;
            };
            match (at, now == [0; 3]) {
                (Ok(i), true) => {
                    terms.counts.remove(i);
                }
                (Ok(i), false) => terms.counts[i].1 = now,
                (Err(i), false) => terms.counts.insert(i, (t.clone(), now)),
                // A term absent before and after has no change.
                (Err(_), true) => {}
            }
            changed.push((t, now));
        }
        let same_len = len == terms.len;
        terms.len = len;
        for (t, now) in &changed {
            if *now == [0; 3] {
                batch.delete_cf(self.cf("postings"), posting_key(t, key));
            } else if same_len {
                delta
                    .postings
                    .push((posting_key(t, key), encode_posting(*now, len)));
            }
        }
        if !same_len {
            // Every posting holds the length.
            delta.postings.extend(terms.postings(key));
        }
        delta.terms += i64::from(came_len) - i64::from(gone_len);
        true
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
        // The rows cached documents note are rewritten: read again by their next write.
        for held in self
            .doc_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter_mut()
        {
            held.noted = None;
        }
        let mut clear = WriteBatch::default();
        let end = [0xffu8; 64];
        for cf in ["units", "facets", "texts", "postings"] {
            clear.delete_range_cf(self.cf(cf), [0u8].as_slice(), end.as_slice());
            // The empty key sorts before [0]; no catalog key is empty, but be thorough.
            clear.delete_cf(self.cf(cf), []);
        }
        clear.delete_cf(self.cf("meta"), STATS_KEY.as_bytes());
        // Not current until the last batch says so again: a rebuild that stops halfway (an
        // error, a crash) is done again when the store is next opened.
        clear.delete_cf(self.cf("meta"), VERSION_KEY.as_bytes());
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
            self.catalog_write(
                &mut batch,
                &id,
                Some((&record, summary.updated)),
                Held::New,
                false,
                &mut delta,
            )?;
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
}
