//! Keeping the catalog's rows in step with the store: the writes of each batch, statistics,
//! reindex (what the rows hold: [`crate::catalog`]).

use std::collections::{HashMap, HashSet};

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

/// One unit's `units` and `texts` rows, as a write left them: what the next write of the same
/// record replaces (kept with a cached document, so that it need not read them again).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UnitRows {
    pub(crate) key: Vec<u8>,
    pub(crate) unit: Vec<u8>,
    pub(crate) texts: Vec<u8>,
}

/// What a write of a record left that its next write needs, kept with a cached document: its
/// units' rows, and the `updated` time of its `records` row (which that write keeps if later).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Noted {
    pub(crate) rows: Vec<UnitRows>,
    pub(crate) updated: i64,
}

/// The catalog rows a record has before a write ([`Store::catalog_write`]).
pub(crate) enum Held<'a> {
    /// None: the record is new.
    New,
    /// These, known from the write before (see [`UnitRows`]).
    Known(&'a [UnitRows]),
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

    /// Puts the catalog rows of record `id` (as it now reads; None: it is gone) into
    /// `batch`, replacing the units it has (`held`); unchanged texts keep their postings.
    /// Returns the rows of its units after the write, unless it had none (`Held::New`: a
    /// record's first write notes nothing, most records are never written again).
    pub(crate) fn catalog_write(
        &self,
        batch: &mut WriteBatch,
        id: &DocId,
        record: Option<&Record>,
        updated: i64,
        held: Held<'_>,
        delta: &mut CatalogDelta,
    ) -> Result<Option<Vec<UnitRows>>, StoreError> {
        let note = !matches!(held, Held::New);
        let new = record.map_or_else(Vec::new, |r| units_of(*id, r, updated));
        let new_keys: HashSet<&[u8]> = new.iter().map(|e| e.key.as_slice()).collect();
        let mut old_texts: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut old_units: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        match held {
            Held::New => {}
            Held::Known(rows) => {
                for row in rows {
                    old_units.insert(row.key.clone(), row.unit.clone());
                    old_texts.insert(row.key.clone(), row.texts.clone());
                }
            }
            Held::Stored => {
                for (k, v) in self.scan("units", &id.0)? {
                    if let Some(t) = self.get("texts", &k)? {
                        old_texts.insert(k.to_vec(), t);
                    }
                    old_units.insert(k.to_vec(), v.to_vec());
                }
            }
        }
        for k in old_units.keys() {
            if !new_keys.contains(&k[..]) {
                batch.delete_cf(self.cf("units"), k);
                batch.delete_cf(self.cf("facets"), k);
                batch.delete_cf(self.cf("texts"), k);
                delta.units -= 1;
            }
        }
        let new_texts = new
            .iter()
            .map(|e| serde_json::to_vec(&e.texts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|x| self.corrupt(x))?;
        for (key, old) in &old_texts {
            // A unit still there has its postings mended below; a unit gone loses them all.
            if new_keys.contains(&key[..]) {
                continue;
            }
            let texts: Vec<(u8, String)> = serde_json::from_slice(old).unwrap_or_default();
            self.delete_postings(batch, key, &texts, delta);
        }
        let mut rows = Vec::with_capacity(new.len());
        for (e, texts) in new.iter().zip(new_texts) {
            // A unit the edit left as it was is not written again (its facets derive from it
            // and from its language, which its texts row names).
            let unit = encode_unit(&e.unit);
            if old_units.get(&e.key) != Some(&unit) || old_texts.get(&e.key) != Some(&texts) {
                batch.put_cf(self.cf("units"), &e.key, &unit);
                batch.put_cf(
                    self.cf("facets"),
                    &e.key,
                    Facets::of(&e.unit, e.language(), e.translations()).encode(),
                );
            }
            if note {
                rows.push(UnitRows {
                    key: e.key.clone(),
                    unit,
                    texts: texts.clone(),
                });
            }
            match old_texts.get(&e.key) {
                Some(old) if *old == texts => continue,
                Some(old) => {
                    let old: Vec<(u8, String)> = serde_json::from_slice(old).unwrap_or_default();
                    if !self.mend_postings(batch, &e.key, &old, &e.texts, delta)? {
                        self.delete_postings(batch, &e.key, &old, delta);
                        self.put_postings(&e.key, &e.texts, delta);
                    }
                }
                None => {
                    delta.units += 1;
                    self.put_postings(&e.key, &e.texts, delta);
                }
            }
            batch.put_cf(self.cf("texts"), &e.key, texts);
        }
        Ok(note.then_some(rows))
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

    /// Puts the postings of unit `key` with texts `texts`.
    fn put_postings(&self, key: &[u8], texts: &[(u8, String)], delta: &mut CatalogDelta) {
        let (counts, len) = count_terms(texts);
        delta.postings.extend(
            counts
                .iter()
                .map(|(t, c)| (posting_key(t, key), encode_posting(*c, len))),
        );
        delta.terms += i64::from(len);
    }

    /// Turns the postings of unit `key` from those of texts `old` into those of texts `new`
    /// by what differs between them: only the fields that changed are analyzed, a term whose
    /// counts are unchanged keeps its posting, and the others are read, counted again and
    /// written (all of them when the unit's length changed, since each posting holds it).
    /// Returns false, with nothing written, when the stored postings do not add up to what
    /// `old` counts (then the caller replaces them whole).
    fn mend_postings(
        &self,
        batch: &mut WriteBatch,
        key: &[u8],
        old: &[(u8, String)],
        new: &[(u8, String)],
        delta: &mut CatalogDelta,
    ) -> Result<bool, StoreError> {
        let (gone, came) = changed_fields(old, new);
        let (gone, gone_len) = count_analyzed(gone);
        let (came, came_len) = count_analyzed(came);
        // Term → change of its counts, in term order (the postings' key order).
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
        // Mending reads a posting per changed term (point lookups in a column family made for
        // scans): past a few, writing them all again is cheaper and bounded.
        if gone_len != came_len || change.len() > MAX_MENDED_TERMS {
            // All of them are written again (the length is in every posting), and the terms
            // the unit no longer has (only a changed field's can go) are deleted.
            let (counts, len) = count_terms(new);
            for t in change.keys() {
                if counts.binary_search_by(|(c, _)| c.as_str().cmp(t)).is_err() {
                    batch.delete_cf(self.cf("postings"), posting_key(t, key));
                }
            }
            delta.postings.extend(
                counts
                    .iter()
                    .map(|(t, c)| (posting_key(t, key), encode_posting(*c, len))),
            );
            delta.terms += i64::from(came_len) - i64::from(gone_len);
            return Ok(true);
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
                    _ => return Ok(false),
                },
                None => [0; 3],
            };
            let mut now = [0u16; 3];
            for k in 0..3 {
                // A count that was cut at its bound is not known exactly: counted again.
                match u16::try_from(i64::from(held[k]) + d[k]) {
                    Ok(c) if held[k] < u16::MAX && c < u16::MAX => now[k] = c,
                    _ => return Ok(false),
                }
            }
            writes.push((k, (now != [0; 3]).then_some(now)));
        }
        let Some(len) = len else {
            return Ok(change.is_empty());
        };
        for (k, counts) in writes {
            match counts {
                Some(c) => delta.postings.push((k, encode_posting(c, len))),
                None => batch.delete_cf(self.cf("postings"), k),
            }
        }
        Ok(true)
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
                Some(&record),
                summary.updated,
                Held::New,
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
