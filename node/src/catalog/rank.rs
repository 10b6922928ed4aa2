//! Ranking a query's results: unit keys, scores ordered best first, sort keys, and the heap
//! that keeps the best `limit`.

use super::*;

/// A unit's key in the catalog: doc id (16 bytes) and, for an agenda, its id (up to 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct UnitKey {
    pub(crate) len: u8,
    pub(crate) bytes: [u8; 40],
}

impl UnitKey {
    pub(crate) fn new(k: &[u8]) -> Option<UnitKey> {
        let mut bytes = [0u8; 40];
        bytes.get_mut(..k.len())?.copy_from_slice(k);
        Some(UnitKey {
            len: u8::try_from(k.len()).ok()?,
            bytes,
        })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

pub(crate) fn by_score(a: &(UnitKey, f64), b: &(UnitKey, f64)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1)
        .then_with(|| a.0.as_slice().cmp(b.0.as_slice()))
}

/// A score ordered best first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Score(pub(crate) f64);

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
pub(crate) enum SortKey {
    Relevance(Score),
    Updated(std::cmp::Reverse<i64>),
    /// Undated last, then first and last day.
    Date(bool, i32, i32),
    Title(String),
}

impl SortKey {
    pub(crate) fn of(sort: Sort, f: &Facets, title: &str, score: f64) -> SortKey {
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

    pub(crate) fn score(&self) -> Option<f64> {
        match self {
            SortKey::Relevance(s) => Some(s.0),
            _ => None,
        }
    }
}

/// A kept result: its order, unit key and (when already read) unit row.
pub(crate) type Kept = (SortKey, Vec<u8>, Option<Vec<u8>>);

/// A result in order: unit key, unit row if already read, score.
pub(crate) type Winner = (Vec<u8>, Option<Vec<u8>>, Option<f64>);

/// The `k` best results offered, or all of them when `k` is 0.
pub(crate) struct TopK {
    pub(crate) k: usize,
    pub(crate) heap: std::collections::BinaryHeap<Kept>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: std::collections::BinaryHeap::new(),
        }
    }

    pub(crate) fn offer(&mut self, key: SortKey, unit_key: &[u8], row: Option<&[u8]>) {
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
    pub(crate) fn into_sorted(self) -> Vec<Winner> {
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
