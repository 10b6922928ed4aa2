//! Answering a query: candidates from postings or facets, scores (BM25), the best `limit` kept.

use super::*;

impl Store {
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
    pub(super) fn scores(&self, terms: &[QueryTerm]) -> Result<Vec<(UnitKey, f64)>, StoreError> {
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
pub(super) struct UnitKey {
    pub(super) len: u8,
    pub(super) bytes: [u8; 40],
}

impl UnitKey {
    pub(super) fn new(k: &[u8]) -> Option<UnitKey> {
        let mut bytes = [0u8; 40];
        bytes.get_mut(..k.len())?.copy_from_slice(k);
        Some(UnitKey {
            len: u8::try_from(k.len()).ok()?,
            bytes,
        })
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

pub(super) fn by_score(a: &(UnitKey, f64), b: &(UnitKey, f64)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1)
        .then_with(|| a.0.as_slice().cmp(b.0.as_slice()))
}

/// A score ordered best first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Score(pub(super) f64);

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
pub(super) enum SortKey {
    Relevance(Score),
    Updated(std::cmp::Reverse<i64>),
    /// Undated last, then first and last day.
    Date(bool, i32, i32),
    Title(String),
}

impl SortKey {
    pub(super) fn of(sort: Sort, f: &Facets, title: &str, score: f64) -> SortKey {
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

    pub(super) fn score(&self) -> Option<f64> {
        match self {
            SortKey::Relevance(s) => Some(s.0),
            _ => None,
        }
    }
}

/// A kept result: its order, unit key and (when already read) unit row.
pub(super) type Kept = (SortKey, Vec<u8>, Option<Vec<u8>>);

/// A result in order: unit key, unit row if already read, score.
pub(super) type Winner = (Vec<u8>, Option<Vec<u8>>, Option<f64>);

/// The `k` best results offered, or all of them when `k` is 0.
pub(super) struct TopK {
    pub(super) k: usize,
    pub(super) heap: std::collections::BinaryHeap<Kept>,
}

impl TopK {
    pub(super) fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: std::collections::BinaryHeap::new(),
        }
    }

    pub(super) fn offer(&mut self, key: SortKey, unit_key: &[u8], row: Option<&[u8]>) {
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
    pub(super) fn into_sorted(self) -> Vec<Winner> {
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
