//! Key succession in the store (§15.6 of docs/protocol.md): which keys belong to which city
//! ([`KeyBook`]), and what each old key's statements decide, kept in memory and in `meta`
//! rows.

use super::*;

/// Which keys belong to which city (§15.6 of docs/protocol.md): a city is named by its root id
/// for ever; it signs, and connects, with its current key.
#[derive(Clone, Debug, Default)]
pub struct KeyBook {
    /// Every key a succession statement names (old or new), with its city.
    city_of: std::collections::HashMap<CityId, CityId>,
    /// A city's key whose succession stands and that has not passed its right on.
    current: std::collections::HashMap<CityId, CityId>,
    /// Keys that signed a succession statement: they no longer speak for their city.
    retired: std::collections::HashSet<CityId>,
}

impl KeyBook {
    /// The city `key` belongs to (itself when no statement names it).
    pub fn city_of(&self, key: &CityId) -> CityId {
        self.city_of.get(key).copied().unwrap_or(*key)
    }

    /// The key `city` signs and connects with now: its newest key whose succession stands,
    /// or its root id if it never passed it on; None while its succession is contested or
    /// void (until it recovers, nothing speaks for it).
    pub fn current(&self, city: &CityId) -> Option<CityId> {
        match self.current.get(city) {
            Some(k) => Some(*k),
            None if self.retired.contains(city) => None,
            None => Some(*city),
        }
    }

    /// Every key known of `city`, its root id first.
    pub fn keys_of(&self, city: &CityId) -> Vec<CityId> {
        let mut out = vec![*city];
        let mut more: Vec<CityId> = self
            .city_of
            .iter()
            .filter(|(k, c)| *c == city && *k != city)
            .map(|(k, _)| *k)
            .collect();
        more.sort();
        out.extend(more);
        out
    }

    /// Whether `key` passed its right on.
    pub fn is_retired(&self, key: &CityId) -> bool {
        self.retired.contains(key)
    }
}

/// Succession rows to write: summaries by old key, and successor feeds' cities.
pub(super) type SuccessionRows = (Vec<(CityId, KeyPassed)>, Vec<(FeedId, FeedCity)>);

/// What each old key's statements decide, and successor feeds' cities.
#[derive(Default, Clone)]
pub(crate) struct Succession {
    pub(crate) passed: std::collections::BTreeMap<CityId, KeyPassed>,
    pub(crate) feed_cities: std::collections::BTreeMap<FeedId, FeedCity>,
}

impl Succession {
    /// The rows a commit changes: merged summaries and new feed cities (the first one given
    /// for a feed stays).
    pub(super) fn apply(&mut self, commit: &Commit) -> SuccessionRows {
        let mut passed: Vec<(CityId, KeyPassed)> = Vec::new();
        for (hash, st) in &commit.statements {
            let merged = match self.passed.get_mut(&st.old) {
                Some(k) => {
                    k.add(*hash, st);
                    k.clone()
                }
                None => {
                    let k = KeyPassed::of(*hash, st);
                    self.passed.insert(st.old, k.clone());
                    k
                }
            };
            passed.retain(|(old, _)| *old != st.old);
            passed.push((st.old, merged));
        }
        let mut cities = Vec::new();
        for (feed, city) in &commit.feed_cities {
            if !self.feed_cities.contains_key(feed) {
                self.feed_cities.insert(*feed, city.clone());
                cities.push((*feed, city.clone()));
            }
        }
        (passed, cities)
    }
}

impl Store {
    /// Reads the succession rows (see `Store::succession`).
    pub(super) fn read_succession(&self) -> Result<Succession, StoreError> {
        let mut out = Succession::default();
        for (k, v) in self.scan("meta", b"succ/")? {
            let old = k
                .get(5..37)
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .ok_or_else(|| self.corrupt("a succession key"))?;
            out.passed.insert(
                CityId::from_bytes(old),
                KeyPassed::decode(&v).map_err(|e| self.corrupt(e))?,
            );
        }
        for (k, v) in self.scan("meta", b"fcity/")? {
            let feed = k
                .get(6..)
                .and_then(|f| FeedId::from_bytes(f).ok())
                .ok_or_else(|| self.corrupt("a successor feed key"))?;
            out.feed_cities
                .insert(feed, FeedCity::decode(&v).map_err(|e| self.corrupt(e))?);
        }
        Ok(out)
    }

    /// The succession rows (a copy).
    pub(super) fn succession(&self) -> Result<Succession, StoreError> {
        if let Some(s) = self
            .succession
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Ok(s.clone());
        }
        self.read_succession()
    }

    /// Which keys belong to which city, from the succession statements held (§15.6 of
    /// docs/protocol.md).
    pub fn key_book(&self) -> Result<KeyBook, StoreError> {
        let (rows, retired): (Vec<(FeedId, FeedCity)>, Vec<CityId>) =
            self.with_succession(|s| {
                (
                    s.feed_cities
                        .iter()
                        .filter(|(f, _)| f.scope == intercity_protocol::entry::Scope::Federation)
                        .map(|(f, c)| (*f, c.clone()))
                        .collect(),
                    // Every key a held statement passed on (either branch of a fork included).
                    s.passed.keys().copied().collect(),
                )
            })?;
        let mut book = KeyBook::default();
        book.retired.extend(retired);
        let mut standing = Vec::new();
        for (feed, fc) in rows {
            book.city_of.insert(feed.author, fc.city);
            book.city_of.insert(fc.old, fc.city);
            let accepted = self
                .entry(&feed, 1)
                .map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    detail: e.0,
                })?
                .is_some_and(|e| e.status == Status::Accepted);
            if accepted {
                standing.push((fc.city, feed.author));
            }
        }
        for (city, key) in standing {
            if !book.retired.contains(&key) {
                book.current.insert(city, key);
            }
        }
        Ok(book)
    }

    /// Runs `f` on the succession rows without copying them when they are in memory.
    pub(crate) fn with_succession<T>(
        &self,
        f: impl FnOnce(&Succession) -> T,
    ) -> Result<T, StoreError> {
        if let Some(s) = self
            .succession
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Ok(f(s));
        }
        Ok(f(&self.read_succession()?))
    }
}
