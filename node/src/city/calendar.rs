//! Calendar feeds: each working group's meetings as an iCalendar document that calendar apps
//! subscribe to over HTTP (the daemon's `--calendar ADDR`). A feed's URL holds a secret that
//! this city makes for the group (`intercity calendar url`) and can replace (`--new`) or
//! withdraw (`intercity calendar revoke`); without the secret a group's feed does not exist.

use intercity_protocol::entry::DocId;
use intercity_protocol::record::{Kind, Record};
use serde::{Deserialize, Serialize};

use super::{City, CityError};
use crate::exchange::{Meeting, ics};

/// Metadata key prefix of a feed's secret (followed by the group id).
const FEED_KEY: &str = "calendar_feed/";
/// Metadata key of the address the running daemon serves calendar feeds on.
const ADDRESS_KEY: &str = "calendar_address";
/// Metadata key prefix of the highest `SEQUENCE` a feed served (followed by the group id).
const SEQUENCE_KEY: &str = "calendar_sequence/";
/// Random bytes of a feed secret (32 hex characters).
const SECRET_BYTES: usize = 16;

/// A group's calendar feed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalendarFeed {
    /// The group's record id.
    pub group: DocId,
    /// The group's name.
    pub name: String,
    /// The secret in the feed's URL.
    pub secret: String,
    /// The feed's path on the daemon's calendar address: `/calendar/GROUP/SECRET.ics`.
    pub path: String,
    /// The address the running daemon serves calendars on, as it recorded it when it started
    /// (`--calendar`); None when it serves none.
    #[serde(default)]
    pub address: Option<String>,
}

impl CalendarFeed {
    fn new(group: DocId, name: String, secret: String, address: Option<String>) -> CalendarFeed {
        let path = format!("/calendar/{group}/{secret}.ics");
        CalendarFeed {
            group,
            name,
            secret,
            path,
            address,
        }
    }
}

impl City {
    /// The calendar feed of `group`, made on first use; with `renew`, under a new secret (the
    /// old URL stops working).
    pub fn calendar_feed(&self, group: DocId, renew: bool) -> Result<CalendarFeed, CityError> {
        let name = self.group_name(group)?;
        // One writer at a time: two first uses must not hand out two secrets.
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = format!("{FEED_KEY}{group}");
        let secret = match self.store.meta(&key)? {
            Some(s) if !renew => String::from_utf8_lossy(&s).into_owned(),
            _ => {
                let secret = intercity_protocol::record::try_new_id(SECRET_BYTES)
                    .map_err(|e| CityError::Internal(format!("no random numbers: {e}")))?;
                self.store.set_meta(&key, secret.as_bytes())?;
                secret
            }
        };
        Ok(CalendarFeed::new(
            group,
            name,
            secret,
            self.calendar_address(),
        ))
    }

    /// Every calendar feed this city serves.
    pub fn calendar_feeds(&self) -> Result<Vec<CalendarFeed>, CityError> {
        let mut out = Vec::new();
        for (key, secret) in self.store.scan("meta", FEED_KEY.as_bytes())? {
            let key = String::from_utf8_lossy(&key);
            let Some(Ok(group)) = key.get(FEED_KEY.len()..).map(str::parse::<DocId>) else {
                continue;
            };
            let name = self.group_name(group).unwrap_or_default();
            out.push(CalendarFeed::new(
                group,
                name,
                String::from_utf8_lossy(&secret).into_owned(),
                self.calendar_address(),
            ));
        }
        Ok(out)
    }

    /// Records the address the daemon serves calendar feeds on (None: none), so that
    /// `intercity calendar url` can say the whole URL.
    pub fn set_calendar_address(
        &self,
        address: Option<std::net::SocketAddr>,
    ) -> Result<(), CityError> {
        match address {
            Some(a) => self.store.set_meta(ADDRESS_KEY, a.to_string().as_bytes())?,
            None => self.store.delete_meta(ADDRESS_KEY)?,
        }
        Ok(())
    }

    fn calendar_address(&self) -> Option<String> {
        let bytes = self.store.meta(ADDRESS_KEY).ok()??;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Withdraws the calendar feed of `group`: its URL stops working.
    pub fn calendar_revoke(&self, group: DocId) -> Result<(), CityError> {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = format!("{FEED_KEY}{group}");
        if self.store.meta(&key)?.is_none() {
            return Err(CityError::Missing(format!(
                "group {group} has no calendar feed"
            )));
        }
        Ok(self.store.delete_meta(&key)?)
    }

    /// The iCalendar document of the feed at `group` (its id as text) and `secret`; None when
    /// there is no such feed (an unknown group, no feed, another secret, or a group this city
    /// is no longer a member of, whose copy here is frozen: all look the same).
    pub fn calendar_ics(&self, group: &str, secret: &str, now_ms: i64) -> Option<String> {
        let group: DocId = group.parse().ok()?;
        let held = self.store.meta(&format!("{FEED_KEY}{group}")).ok()??;
        if !same_secret(&held, secret.as_bytes()) {
            return None;
        }
        // One read of the document gives both the group and its number of changes.
        let doc = self.shared(group).ok()?;
        let Ok(Record::Group(g)) = intercity_protocol::doc::read_record(&doc, None) else {
            return None;
        };
        if !g.members.contains_key(&self.id().to_string()) {
            return None;
        }
        let sequence = self
            .calendar_sequence(group, automerge::ReadDoc::stats(&*doc).num_changes as usize)
            .ok()?;
        let updated = self
            .list(Some(Kind::Group))
            .ok()?
            .into_iter()
            .find(|r| r.id == group.to_string())
            .map_or(0, |r| r.updated);
        let gid = group.to_string();
        let mut meetings: Vec<Meeting<'_>> = g
            .agendas
            .iter()
            .map(|(agenda_id, agenda)| Meeting {
                group_id: &gid,
                group: &g,
                agenda_id,
                agenda,
                updated,
                sequence,
            })
            .collect();
        meetings
            .sort_by(|a, b| (&a.agenda.start, a.agenda_id).cmp(&(&b.agenda.start, b.agenda_id)));
        Some(ics(&meetings, now_ms))
    }

    /// The feed's `SEQUENCE`: the group's number of changes (`count`), never less than one
    /// served before (a settled removal can void changes, and calendar apps ignore a lower one).
    fn calendar_sequence(&self, group: DocId, count: usize) -> Result<usize, CityError> {
        let key = format!("{SEQUENCE_KEY}{group}");
        let served = self
            .store
            .meta(&key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, |b| {
                usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX)
            });
        if count > served {
            self.store.set_meta(&key, &(count as u64).to_be_bytes())?;
            return Ok(count);
        }
        Ok(served)
    }

    fn group_name(&self, group: DocId) -> Result<String, CityError> {
        match self.record(group)? {
            Record::Group(g) => Ok(g.name),
            other => Err(CityError::WrongKind {
                id: group.to_string(),
                expected: Kind::Group,
                found: other.kind(),
            }),
        }
    }
}

/// Compares a secret in time that does not depend on where the two differ.
fn same_secret(held: &[u8], given: &[u8]) -> bool {
    held.len() == given.len() && held.iter().zip(given).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}
