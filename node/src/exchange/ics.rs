//! iCalendar (RFC 5545): one `VEVENT` per meeting, with a stable UID so that calendars update
//! an event when the file is imported again.

use intercity_protocol::record::{Agenda, Group};

use intercity_protocol::record::AgendaStatus;

use crate::time;

/// One meeting for the calendar: a group's agenda.
#[derive(Clone, Debug)]
pub struct Meeting<'a> {
    /// The group's record id.
    pub group_id: &'a str,
    /// The group.
    pub group: &'a Group,
    /// The agenda id.
    pub agenda_id: &'a str,
    /// The agenda.
    pub agenda: &'a Agenda,
    /// Newest change of the group, ms since the epoch.
    pub updated: i64,
    /// The group's number of accepted changes: the event's `SEQUENCE`, which grows with every
    /// change, so calendar apps take a changed meeting over the copy they hold.
    pub sequence: usize,
}

/// The day after a `YYYY-MM-DD` date, as `YYYYMMDD` (iCalendar's exclusive DTEND).
fn ics_day_after(date: &str) -> Option<String> {
    Some(time::add_days(date, 1)?.replace('-', ""))
}

/// A UTC timestamp (ms) as iCalendar DATE-TIME `YYYYMMDDTHHMMSSZ`.
pub fn ics_timestamp(ms: i64) -> String {
    time::ics_utc(ms)
}

/// The `DTSTART` and `DTEND` lines of a meeting: its times when its items have times (in UTC
/// when the agenda names its time zone, else floating local times), else whole days.
fn ics_when(a: &Agenda) -> Option<(String, Option<String>)> {
    if let Some((start, end)) = time::meeting_span(a) {
        let zone = (!a.time_zone.is_empty())
            .then(|| time::time_zone(&a.time_zone).ok())
            .flatten();
        let at = |t: jiff::civil::DateTime| match &zone {
            Some(tz) => t
                .to_zoned(tz.clone())
                .ok()
                .map(|z| z.timestamp().strftime("%Y%m%dT%H%M%SZ").to_string()),
            None => Some(t.strftime("%Y%m%dT%H%M%S").to_string()),
        };
        let end = if end > start {
            Some(format!("DTEND:{}", at(end)?))
        } else {
            None
        };
        return Some((format!("DTSTART:{}", at(start)?), end));
    }
    let start = a.start.replace('-', "");
    let end = ics_day_after(a.end.as_deref().unwrap_or(&a.start))?;
    Some((
        format!("DTSTART;VALUE=DATE:{start}"),
        Some(format!("DTEND;VALUE=DATE:{end}")),
    ))
}

/// Escapes a TEXT value (RFC 5545 §3.3.11).
fn ics_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends a content line folded at 75 octets (RFC 5545 §3.1), ending in CRLF.
fn ics_line(out: &mut String, line: &str) {
    let mut width = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

/// The stable UID of a meeting: the same agenda always has the same UID, so calendars update
/// the event when the file is imported again.
pub fn meeting_uid(group_id: &str, agenda_id: &str) -> String {
    format!("{agenda_id}-{group_id}@intercity")
}

/// An iCalendar (RFC 5545) document with one `VEVENT` per meeting.
pub fn ics(meetings: &[Meeting<'_>], stamp_ms: i64) -> String {
    let mut out = String::new();
    for l in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        concat!(
            "PRODID:-//Intercity//intercity ",
            env!("CARGO_PKG_VERSION"),
            "//EN"
        ),
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ] {
        ics_line(&mut out, l);
    }
    for m in meetings {
        let a = m.agenda;
        let Some((start, end)) = ics_when(a) else {
            continue;
        };
        let mut description = vec![format!("Working group: {}", m.group.name)];
        if !a.host_city.is_empty() {
            description.push(format!("Host: {}", a.host_city));
        }
        description.push(format!("Status: {}", a.status));
        if !a.time_zone.is_empty() {
            description.push(format!("Times: {}", a.time_zone));
        }
        if !a.items.is_empty() {
            description.push(String::new());
            description.push("Agenda:".into());
        }
        for (i, item) in a.items.iter().enumerate() {
            let mut line = format!("{}. ", i + 1);
            if !item.slot.is_empty() {
                line.push_str(&format!("{} ", item.slot));
            }
            line.push_str(&item.title);
            if !item.presenters.is_empty() {
                line.push_str(&format!(" ({})", item.presenters.join(", ")));
            }
            description.push(line);
        }
        if !a.decisions.is_empty() {
            description.push(String::new());
            description.push("Decisions:".into());
            description.extend(a.decisions.iter().map(|d| format!("- {d}")));
        }
        let location: Vec<&str> = [a.venue.as_str(), a.host_city.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let status = match a.status {
            AgendaStatus::Draft => "TENTATIVE",
            AgendaStatus::Cancelled => "CANCELLED",
            AgendaStatus::Published | AgendaStatus::Held => "CONFIRMED",
        };
        ics_line(&mut out, "BEGIN:VEVENT");
        ics_line(
            &mut out,
            &format!("UID:{}", meeting_uid(m.group_id, m.agenda_id)),
        );
        ics_line(&mut out, &format!("DTSTAMP:{}", ics_timestamp(stamp_ms)));
        ics_line(
            &mut out,
            &format!("LAST-MODIFIED:{}", ics_timestamp(m.updated)),
        );
        ics_line(&mut out, &format!("SEQUENCE:{}", m.sequence));
        ics_line(&mut out, &start);
        if let Some(end) = end {
            ics_line(&mut out, &end);
        }
        ics_line(&mut out, &format!("SUMMARY:{}", ics_text(&a.title)));
        if !location.is_empty() {
            ics_line(
                &mut out,
                &format!("LOCATION:{}", ics_text(&location.join(", "))),
            );
        }
        ics_line(
            &mut out,
            &format!("DESCRIPTION:{}", ics_text(&description.join("\n"))),
        );
        ics_line(&mut out, &format!("CATEGORIES:{}", ics_text(&m.group.name)));
        ics_line(&mut out, &format!("STATUS:{status}"));
        ics_line(&mut out, &format!("X-INTERCITY-GROUP:{}", m.group_id));
        ics_line(&mut out, "END:VEVENT");
    }
    ics_line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(ics_day_after("2017-02-23").as_deref(), Some("20170224"));
        assert_eq!(ics_day_after("2016-02-28").as_deref(), Some("20160229"));
        assert_eq!(ics_day_after("2017-12-31").as_deref(), Some("20180101"));
        assert_eq!(ics_timestamp(1_487_842_200_000), "20170223T093000Z");
    }

    #[test]
    fn folding_and_escaping() {
        let mut out = String::new();
        ics_line(&mut out, &format!("SUMMARY:{}", "é".repeat(60)));
        for l in out.split("\r\n") {
            assert!(l.len() <= 75, "{l}");
        }
        assert_eq!(ics_text("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
    }
}
