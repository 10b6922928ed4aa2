//! Parsers of flag values (used as clap `value_parser`s, so a bad value is a usage error, exit
//! code 2, naming the flag) and of `--from-file` JSON.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use intercity_protocol::identity::CityId;
use intercity_protocol::record::{Figure, Sector, is_valid_date};

use crate::error::CliError;

/// A calendar date `YYYY-MM-DD`; the empty string (to clear an optional date) is accepted.
pub fn date_or_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Ok(String::new())
    } else {
        date(s)
    }
}

/// A calendar date `YYYY-MM-DD`.
pub fn date(s: &str) -> Result<String, String> {
    let s = s.trim();
    if is_valid_date(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a valid date; expected YYYY-MM-DD, e.g. 2017-02-23"
        ))
    }
}

/// A time slot `09:30-11:00` (or one start time), in its normal form; "" clears a slot.
pub fn slot(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Ok(String::new());
    }
    let (start, end) = intercity_node::time::parse_slot(s)?;
    Ok(intercity_node::time::slot_text(start, end))
}

/// An IANA time zone name this program knows (`Europe/Rome`); "" clears it.
pub fn time_zone(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    intercity_node::time::time_zone(s)?;
    Ok(s.to_string())
}

/// An ISO 639 language code: 2 or 3 letters, written in lowercase (`it`, `cs`).
pub fn language(s: &str) -> Result<String, String> {
    let code = s.trim().to_ascii_lowercase();
    if (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(code)
    } else {
        Err(format!(
            "`{s}` is not a language code; use ISO 639 codes such as it, cs, pt"
        ))
    }
}

/// A partner sector: private, ngo, university or public.
pub fn sector(s: &str) -> Result<Sector, String> {
    s.trim().parse::<Sector>().map_err(|e| e.to_string())
}

/// A project status or an agenda status.
pub fn status(s: &str) -> Result<String, String> {
    let s = s.trim().to_ascii_lowercase();
    let known = intercity_node::catalog::STATUSES;
    if known.contains(&s.as_str()) {
        Ok(s)
    } else {
        Err(format!(
            "`{s}` is not a status; use one of {}",
            known.join(", ")
        ))
    }
}

/// An order of results.
pub fn sort(s: &str) -> Result<intercity_node::catalog::Sort, String> {
    s.parse()
}

/// A kind of catalog unit.
pub fn unit_kind(s: &str) -> Result<intercity_node::catalog::UnitKind, String> {
    s.parse()
}

/// A partner organisation `NAME:SECTOR`, sector one of private, ngo, university, public.
pub use intercity_node::exchange::parse_partner as partner;

/// An outcome figure `LABEL=VALUE[ UNIT]`, e.g. `young people trained=120 people`.
pub fn figure(s: &str) -> Result<Figure, String> {
    let usage = "expected LABEL=VALUE[ UNIT], e.g. \"young people trained=120 people\"";
    let Some((label, rest)) = s.split_once('=') else {
        return Err(usage.into());
    };
    let rest = rest.trim();
    let (value, unit) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let value: f64 = value
        .parse()
        .map_err(|_| format!("`{value}` is not a number; {usage}"))?;
    if !value.is_finite() {
        return Err(format!("`{value}` is not a finite number"));
    }
    let label = label.trim();
    if label.is_empty() {
        return Err(format!("the label is empty; {usage}"));
    }
    Ok(Figure {
        label: label.to_string(),
        value,
        unit: unit.trim().to_string(),
    })
}

/// A city id (PeerId string `12D3KooW…` or 64 hex characters), normalized to the PeerId string.
pub fn city_id(s: &str) -> Result<String, String> {
    s.parse::<CityId>()
        .map(|id| id.to_string())
        .map_err(|e| e.to_string())
}

/// A 1-based position.
pub fn position(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a position; positions count from 1")),
    }
}

/// Reads a JSON object from a file (`-`: stdin).
pub fn read_object(path: &Path) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(CliError::Invalid(format!(
            "{}: expected a JSON object with the record's fields",
            path.display()
        ))
        .into()),
        Err(e) => Err(CliError::Invalid(format!("{}: invalid JSON: {e}", path.display())).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partners() {
        let p = partner("Fondazione Cariplo:NGO").expect("valid");
        assert_eq!(
            (p.name.as_str(), p.sector),
            ("Fondazione Cariplo", Sector::Ngo)
        );
        let p = partner("A:B Ltd:private").expect("valid");
        assert_eq!(p.name, "A:B Ltd");
        assert!(partner("Cariplo").is_err());
        assert!(
            partner("Cariplo:charity")
                .expect_err("bad sector")
                .contains("charity")
        );
        assert!(partner(":ngo").is_err());
    }

    #[test]
    fn figures() {
        let f = figure("young people trained=120 people").expect("valid");
        assert_eq!(
            (f.label.as_str(), f.value, f.unit.as_str()),
            ("young people trained", 120.0, "people")
        );
        let f = figure("jobs=3.5").expect("valid");
        assert_eq!((f.value, f.unit.as_str()), (3.5, ""));
        assert!(figure("jobs").is_err());
        assert!(figure("jobs=many").is_err());
        assert!(figure("jobs=inf").is_err());
        assert!(figure("=3").is_err());
    }

    #[test]
    fn dates_and_positions() {
        assert_eq!(date("2017-02-23").as_deref(), Ok("2017-02-23"));
        assert!(date("2017-02-30").is_err());
        assert!(date("").is_err());
        assert_eq!(date_or_empty("").as_deref(), Ok(""));
        assert_eq!(position("2"), Ok(2));
        assert!(position("0").is_err());
        assert!(position("x").is_err());
    }
}
