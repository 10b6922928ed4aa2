//! Dates and times, with `jiff`: calendar days of `YYYY-MM-DD` dates, UTC timestamps (ms since
//! the epoch) as text, and meeting times in a time zone. Used by the catalog (date filters), the
//! exports and the CLI.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Unit};

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub(crate) fn days_from_civil(date: &str) -> Option<i64> {
    let date = parse_date(date)?;
    let days = Date::constant(1970, 1, 1).until((Unit::Day, date)).ok()?;
    Some(i64::from(days.get_days()))
}

/// A `YYYY-MM-DD` date (exactly that form).
pub fn parse_date(text: &str) -> Option<Date> {
    if text.len() != 10 {
        return None;
    }
    jiff::fmt::strtime::parse("%Y-%m-%d", text)
        .ok()?
        .to_date()
        .ok()
}

/// A timestamp (ms since the epoch), clamped to the years jiff knows (-9999 to 9999): a peer's
/// timestamp is whatever it signed.
fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// A timestamp (ms since the epoch) in UTC ISO 8601, e.g. `2017-02-23T09:30:00Z`.
pub fn iso8601(ms: i64) -> String {
    timestamp(ms).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A timestamp (ms since the epoch) as iCalendar's UTC DATE-TIME, e.g. `20170223T093000Z`.
pub fn ics_utc(ms: i64) -> String {
    timestamp(ms).strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today(now_ms: i64) -> String {
    iso8601(now_ms)[..10].to_string()
}

/// The date `days` days after `date` (`YYYY-MM-DD`, or None when out of range).
pub fn add_days(date: &str, days: i32) -> Option<String> {
    let date = parse_date(date)?
        .checked_add(jiff::Span::new().days(days))
        .ok()?;
    Some(date.strftime("%Y-%m-%d").to_string())
}

/// A time zone by its IANA name (`Europe/Rome`), from the database bundled with this program,
/// so that every machine knows the same zones. The error says what is wrong, in words.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| {
        format!(
            "`{name}` is not a time zone this program knows; use an IANA name such as Europe/Rome"
        )
    })
}

/// A meeting time slot, `HH:MM-HH:MM` (also `H:MM`, an en dash, or one time for a start only):
/// the start and the end, which must come after the start.
pub fn parse_slot(text: &str) -> Result<(Time, Option<Time>), String> {
    let bad = || format!("`{text}` is not a time slot such as 09:30-11:00");
    let one = |t: &str| -> Result<Time, String> {
        let t = t.trim();
        let (h, m) = t.split_once(':').ok_or_else(bad)?;
        if !(1..=2).contains(&h.len())
            || m.len() != 2
            || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        Time::new(h, m, 0, 0).map_err(|_| bad())
    };
    let text = text.trim();
    match text.split_once(['-', '–']) {
        Some((start, end)) => {
            let (start, end) = (one(start)?, one(end)?);
            if end <= start {
                return Err(format!("the slot `{text}` ends before it starts"));
            }
            Ok((start, Some(end)))
        }
        None => Ok((one(text)?, None)),
    }
}

/// A slot in the normal form `09:30-11:00` (or `09:30`).
pub fn slot_text(start: Time, end: Option<Time>) -> String {
    let hm = |t: Time| t.strftime("%H:%M").to_string();
    match end {
        Some(end) => format!("{}-{}", hm(start), hm(end)),
        None => hm(start),
    }
}

/// The start and end of a meeting, from its timed items: the earliest start and the latest end
/// (an item without an end lasts until its start), each on the item's day (the meeting's first
/// day when it has none). None when no item has a slot that reads as times.
pub fn meeting_span(agenda: &intercity_protocol::record::Agenda) -> Option<(DateTime, DateTime)> {
    let first = parse_date(&agenda.start)?;
    let mut span: Option<(DateTime, DateTime)> = None;
    for item in &agenda.items {
        let Ok((start, end)) = parse_slot(&item.slot) else {
            continue;
        };
        let day = if item.day.is_empty() {
            first
        } else {
            parse_date(&item.day).unwrap_or(first)
        };
        let (s, e) = (
            day.to_datetime(start),
            day.to_datetime(end.unwrap_or(start)),
        );
        span = Some(match span {
            Some((a, b)) => (a.min(s), b.max(e)),
            None => (s, e),
        });
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(days_from_civil("1970-01-01"), Some(0));
        assert_eq!(days_from_civil("2017-02-23"), Some(17_220));
        assert_eq!(days_from_civil("1969-12-31"), Some(-1));
        assert_eq!(days_from_civil("2017-02-30"), None);
        assert_eq!(days_from_civil("20170223"), None);
        assert_eq!(iso8601(1_487_842_200_000), "2017-02-23T09:30:00Z");
        assert_eq!(ics_utc(1_487_842_200_000), "20170223T093000Z");
        assert!(
            iso8601(i64::MAX).starts_with("9999-12-30"),
            "clamped, not a panic"
        );
        assert!(iso8601(i64::MIN).starts_with('-'), "{}", iso8601(i64::MIN));
        assert_eq!(add_days("2016-02-28", 1).as_deref(), Some("2016-02-29"));
        assert_eq!(add_days("2017-12-31", 1).as_deref(), Some("2018-01-01"));
    }

    #[test]
    fn slots_and_zones() {
        let t = |h, m| Time::new(h, m, 0, 0).expect("time");
        assert_eq!(parse_slot("09:30-11:00"), Ok((t(9, 30), Some(t(11, 0)))));
        assert_eq!(parse_slot(" 9:30 – 11:00 "), Ok((t(9, 30), Some(t(11, 0)))));
        assert_eq!(parse_slot("14:00"), Ok((t(14, 0), None)));
        for bad in [
            "11:00-09:30",
            "25:00-26:00",
            "9-10",
            "09:300",
            "lunch",
            "09:30-",
        ] {
            assert!(parse_slot(bad).is_err(), "{bad}");
        }
        assert_eq!(slot_text(t(9, 30), Some(t(11, 0))), "09:30-11:00");
        assert!(time_zone("Europe/Rome").is_ok());
        assert!(time_zone("Europe/Atlantis").is_err());
    }
}
