//! Answering a catalog query over the catalog's rows: candidates from postings or facets,
//! scores (BM25), the best `limit` kept (the ranking pieces are in `catalog/rank.rs`).

use super::*;
use crate::catalog::*;

impl Store {
    /// Answers a catalog query.
    pub fn query(&self, q: &Query) -> Result<Found, StoreError> {
        let terms = match &q.text {
            Some(text) => Some(
                parse_query(text, &q.filter.languages)
                    .map_err(|e| StoreError::Query(e.to_string()))?,
            ),
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
                self.add_snippet(&key, &terms.shown(), &mut hit)?;
            }
            hits.push(hit);
        }
        Ok(Found { total, hits })
    }

    /// Offers one unit to `best` if it passes `filter`; returns 1 if it did, else 0. The unit
    /// row is read only when the facets cannot decide or the order needs the title.
    pub(super) fn consider(
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

    pub(super) fn add_snippet(
        &self,
        key: &[u8],
        query: &[QueryTerm],
        hit: &mut Hit,
    ) -> Result<(), StoreError> {
        let texts = self.texts(key)?;
        let fields = analyzed_fields(&texts);
        let matched = fields
            .iter()
            .filter(|(f, _, _)| *f != F_TITLE)
            .find(|(_, t, a)| a.terms(t).any(|x| query.iter().any(|q| q.matches(&x))))
            .or_else(|| {
                fields
                    .iter()
                    .find(|(f, _, _)| [F_SUMMARY, F_BODY, F_ITEM].contains(f))
            });
        if let Some((_, text, analyzer)) = matched {
            let (s, h) = snippet(text, query, *analyzer, 160);
            hit.snippet = Some(s);
            hit.highlights = h;
        }
        Ok(())
    }

    /// The postings of one query term: (unit key, weighted term frequency, unit length),
    /// sorted by unit key.
    pub(super) fn postings(&self, qt: &QueryTerm) -> Result<Vec<(UnitKey, f64, f64)>, StoreError> {
        let seek = match qt {
            QueryTerm::Exact(t) => {
                let mut s = t.as_bytes().to_vec();
                s.push(0);
                s
            }
            QueryTerm::Prefix(p) => p.as_bytes().to_vec(),
        };
        let mut out = Vec::new();
        // The iterator stops at the end of the term's range instead of stepping past it.
        let mut opts = rocksdb::ReadOptions::default();
        // (Terms are UTF-8, which has no 0xff byte, so the last byte can always be raised.)
        if let Some((&last, head)) = seek.split_last()
            && last < u8::MAX
        {
            opts.set_iterate_upper_bound([head, &[last + 1]].concat());
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf("postings"), opts);
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
            merge_units(&mut out);
        }
        Ok(out)
    }

    /// A unit's texts row (its language first, when it names one).
    fn texts(&self, key: &[u8]) -> Result<Vec<(u8, String)>, StoreError> {
        Ok(match self.get("texts", key)? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| self.corrupt(e))?,
            None => Vec::new(),
        })
    }

    /// The postings of one query word: the union of its terms' (a unit holding several of them
    /// counts them all), sorted by unit key.
    fn word_postings(
        &self,
        word: &Word,
        analyzers: &[Analyzer],
        budget: &mut usize,
    ) -> Result<Vec<(UnitKey, f64, f64)>, StoreError> {
        let mut out = Vec::new();
        let mut lists = 0;
        for qt in &word.0 {
            let list = self.postings(qt)?;
            lists += usize::from(!list.is_empty());
            if out.is_empty() {
                out = list;
            } else {
                out.extend(list);
            }
        }
        if out.is_empty() {
            // A word found in no language may be mistyped: the terms one edit away stand in,
            // and the stems of the word with two letters swapped or one dropped.
            for t in self.near_terms(word, budget)? {
                out.extend(self.postings(&QueryTerm::Exact(t))?);
            }
            for t in word
                .1
                .iter()
                .flat_map(|w| typo_terms(w, analyzers, &word.0))
            {
                out.extend(self.postings(&QueryTerm::Exact(t))?);
            }
            merge_units(&mut out);
        } else if lists > 1 {
            // One list is sorted already; several (a word's terms in several languages) merge.
            merge_units(&mut out);
        }
        Ok(out)
    }

    /// Indexed terms one edit (insertion, deletion, substitution or swap of neighbours) away
    /// from the exact terms of `word` that have at least [`MIN_FUZZY_CHARS`] characters, sharing
    /// their first two characters (typos there are rare; this bounds the scan): at most
    /// [`MAX_NEAR_TERMS`], looking at no more terms than `budget` has left (the query's
    /// [`MAX_FUZZY_SCAN`]).
    fn near_terms(&self, word: &Word, budget: &mut usize) -> Result<Vec<String>, StoreError> {
        let mut near: Vec<String> = Vec::new();
        let wanted: Vec<&String> = word
            .0
            .iter()
            .filter_map(|qt| match qt {
                QueryTerm::Exact(t) if t.chars().count() >= MIN_FUZZY_CHARS => Some(t),
                _ => None,
            })
            .collect();
        let mut leads: Vec<String> = wanted.iter().map(|t| t.chars().take(2).collect()).collect();
        leads.sort();
        leads.dedup();
        for lead in leads {
            let mut it = self.db.raw_iterator_cf(self.cf("postings"));
            it.seek(lead.as_bytes());
            while let Some(k) = it.key() {
                if !k.starts_with(lead.as_bytes()) || *budget == 0 {
                    break;
                }
                *budget -= 1;
                let end = k.iter().position(|&b| b == 0).unwrap_or(k.len());
                let term = String::from_utf8_lossy(&k[..end]).into_owned();
                if wanted.iter().any(|t| one_edit_apart(&term, t)) && !near.contains(&term) {
                    near.push(term.clone());
                    if near.len() >= MAX_NEAR_TERMS {
                        return Ok(near);
                    }
                }
                // Past this term's postings: the next key is the next term.
                let mut next = term.into_bytes();
                next.push(1);
                it.seek(&next);
            }
            it.status().map_err(|e| self.classify(e))?;
        }
        Ok(near)
    }

    /// The units that hold every word of `q` and none it excludes, with their BM25 scores,
    /// sorted by unit key; with phrases, only the units holding each phrase in one field.
    pub(super) fn scores(&self, q: &ParsedQuery) -> Result<Vec<(UnitKey, f64)>, StoreError> {
        let mut scored = self.bm25(&q.all, &q.analyzers)?;
        for group in &q.none {
            // Excluded words are taken as written: a typo there must not exclude a neighbour.
            let mut held: Option<Vec<UnitKey>> = None;
            for word in group {
                let mut keys = Vec::new();
                for qt in &word.0 {
                    keys.extend(self.postings(qt)?.into_iter().map(|p| p.0));
                }
                keys.sort_unstable();
                keys.dedup();
                held = Some(match held {
                    None => keys,
                    Some(prev) => prev
                        .into_iter()
                        .filter(|k| keys.binary_search(k).is_ok())
                        .collect(),
                });
            }
            let held = held.unwrap_or_default();
            scored.retain(|(k, _)| held.binary_search(k).is_err());
        }
        if !q.phrases.is_empty() {
            let mut kept = Vec::with_capacity(scored.len());
            for (key, score) in scored {
                let texts = self.texts(key.as_slice())?;
                let fields: Vec<Vec<String>> = analyzed_fields(&texts)
                    .into_iter()
                    .map(|(_, t, a)| a.terms(t).collect())
                    .collect();
                if q.phrases
                    .iter()
                    .all(|p| fields.iter().any(|terms| holds_phrase(terms, p)))
                {
                    kept.push((key, score));
                }
            }
            scored = kept;
        }
        Ok(scored)
    }

    /// The units holding every word, with their BM25 scores, sorted by unit key.
    fn bm25(
        &self,
        words: &[Word],
        analyzers: &[Analyzer],
    ) -> Result<Vec<(UnitKey, f64)>, StoreError> {
        const K1: f64 = 1.2;
        const B: f64 = 0.75;
        let (n_units, n_tokens) = self.catalog_stats()?;
        let n = n_units.max(1) as f64;
        let avg = (n_tokens as f64 / n).max(1.0);
        let mut budget = MAX_FUZZY_SCAN;
        let mut lists = words
            .iter()
            .map(|w| self.word_postings(w, analyzers, &mut budget))
            .collect::<Result<Vec<_>, _>>()?;
        // Intersect starting from the shortest list, in place: the most common word's 100,000
        // postings are scored where they lie rather than copied (their pages' first touch was
        // a third of such a search).
        lists.sort_by_key(Vec::len);
        let score = |df: usize| {
            let df = df as f64;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            move |tf: f64, len: f64| idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg))
        };
        let mut lists = lists.into_iter();
        let Some(first) = lists.next() else {
            return Ok(Vec::new());
        };
        let first_score = score(first.len());
        let mut acc: Vec<(UnitKey, f64)> = first
            .into_iter()
            .map(|(k, tf, len)| (k, first_score(tf, len)))
            .collect();
        for list in lists {
            let add = score(list.len());
            let mut j = 0;
            acc.retain_mut(|(k, s)| {
                while j < list.len() && list[j].0 < *k {
                    j += 1;
                }
                match list.get(j) {
                    Some((k2, tf, len)) if k2 == k => {
                        *s += add(*tf, *len);
                        true
                    }
                    _ => false,
                }
            });
        }
        Ok(acc)
    }
}

/// Postings of several terms as one list: sorted by unit, a unit's term frequencies added.
fn merge_units(postings: &mut Vec<(UnitKey, f64, f64)>) {
    postings.sort_by_key(|a| a.0);
    postings.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1 += later.1;
        }
        same
    });
}

/// Most stand-in terms for a mistyped word.
const MAX_NEAR_TERMS: usize = 8;
/// Most indexed terms looked at for the mistyped words of one query.
const MAX_FUZZY_SCAN: usize = 20_000;

/// Whether `a` and `b` differ by one edit: a character inserted, deleted or replaced, or two
/// neighbours swapped (`crowdfudning`).
fn one_edit_apart(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a == b || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    match ra.len().cmp(&rb.len()) {
        std::cmp::Ordering::Equal => {
            ra[1..] == rb[1..]
                || (ra.len() >= 2 && ra[0] == rb[1] && ra[1] == rb[0] && ra[2..] == rb[2..])
        }
        std::cmp::Ordering::Less => ra == &rb[1..],
        std::cmp::Ordering::Greater => &ra[1..] == rb,
    }
}

#[cfg(test)]
mod tests {
    use super::one_edit_apart;

    #[test]
    fn one_edit() {
        assert!(one_edit_apart("crowdfunding", "crowdfuding"));
        assert!(one_edit_apart("crowdfunding", "crowdfudning"));
        assert!(one_edit_apart("incubator", "incubater"));
        assert!(one_edit_apart("cafe", "cafes"));
        assert!(!one_edit_apart("cafe", "cafe"));
        assert!(!one_edit_apart("incubator", "incubat"));
        assert!(!one_edit_apart("abcd", "badc"));
        assert!(one_edit_apart("łódź", "lódź"));
    }
}
