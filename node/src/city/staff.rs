//! A city's staff: the people whom the city's operator lets use its node, each by name, through
//! a Unix account on the server (the control socket, for members of the staff group) or a staff
//! key from another machine (libp2p, `intercity --node`). The daemon knows who is asking, so
//! the changes a staff member makes carry their name ("Milan (Anna Rossi)" in `history`), and
//! a staff member runs the record work of [`crate::control::Operation::STAFF`] operations only:
//! keys, the roster, the federation, invitations and backups stay the operator's.
//!
//! The list is this node's (metadata in the store), not the federation's: other cities see the
//! names in the changes, signed by this city's key, and trust them as they trust the city.

use serde::{Deserialize, Serialize};

use super::{City, CityError};

/// Metadata key prefix of a staff member (followed by `user:NAME` or `key:PEER_ID`).
const STAFF_KEY: &str = "staff/";
/// Longest staff member's name, in characters.
pub const MAX_STAFF_NAME: usize = 100;
/// Staff members of one city, at most.
pub const MAX_STAFF: usize = 1000;
/// The line that names the person in a change's message: the message's last line.
pub const BY_PREFIX: &str = "By: ";

/// How a staff member reaches the node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// A Unix account on the node's server, in the staff group: the control socket.
    User(String),
    /// A staff key (a libp2p peer id, `12D3KooW…`) on another machine: `intercity --node`.
    Key(String),
}

impl Access {
    fn meta_key(&self) -> String {
        match self {
            Access::User(u) => format!("{STAFF_KEY}user:{u}"),
            Access::Key(k) => format!("{STAFF_KEY}key:{k}"),
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::User(u) => write!(f, "Unix user {u}"),
            Access::Key(k) => write!(f, "staff key {k}"),
        }
    }
}

/// A staff member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StaffMember {
    /// Their name, as changes show it.
    pub name: String,
    /// How they reach the node.
    pub access: Access,
    /// When they were added, ms since the epoch.
    pub added: i64,
}

/// A character that changes how text around it shows without showing itself: line and
/// paragraph separators, zero-width characters, bidirectional controls, soft hyphen, BOM.
pub fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
            | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Whether `name` may stand as a person's name: 1 to [`MAX_STAFF_NAME`] characters, trimmed,
/// nothing invisible (shown beside a city's name, it must not pass for another's).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name == name.trim()
        && name.chars().count() <= MAX_STAFF_NAME
        && !name.chars().any(invisible)
}

/// Checks a staff member's name: shown in every change they make, so one plain line.
fn check_name(name: &str) -> Result<String, CityError> {
    let name = name.trim();
    if !plain_name(name) {
        return Err(CityError::Invalid(format!(
            "a staff member's name has 1 to {MAX_STAFF_NAME} characters, on one line, without control or invisible characters"
        )));
    }
    Ok(name.to_string())
}

/// Checks how a staff member reaches the node.
fn check_access(access: &Access) -> Result<(), CityError> {
    match access {
        Access::User(u) => {
            let ok = !u.is_empty()
                && u.len() <= 32
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok {
                return Err(CityError::Invalid(format!("`{u}` is not a Unix user name")));
            }
        }
        Access::Key(k) => {
            if k.parse::<intercity_protocol::identity::CityId>().is_err() {
                return Err(CityError::Invalid(format!(
                    "`{k}` is not a staff key id (12D3KooW…, from `intercity staff key` on the staff member's machine)"
                )));
            }
        }
    }
    Ok(())
}

/// `message` with the person's line: the client's own `By:` lines are dropped (a staff member
/// cannot sign as somebody else), and the daemon's is added when a staff member asks.
pub fn signed_by(message: &str, person: Option<&str>) -> String {
    let mut lines: Vec<&str> = message.lines().collect();
    while lines
        .last()
        .is_some_and(|l| l.starts_with(BY_PREFIX) || l.trim().is_empty())
    {
        lines.pop();
    }
    let mut out = lines.join("\n");
    if let Some(p) = person {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(BY_PREFIX);
        out.push_str(p);
    }
    out
}

/// A change's message without its person's line, and the person. Any city may write a message:
/// a last line whose name is not a plain name (too long, invisible characters, escapes) names
/// nobody and stays in the message.
pub fn split_by(message: &str) -> (String, Option<String>) {
    let (rest, last) = match message.rsplit_once('\n') {
        Some((rest, last)) => (rest, last),
        None => ("", message),
    };
    match last.strip_prefix(BY_PREFIX) {
        Some(person) if plain_name(person) => (rest.to_string(), Some(person.to_string())),
        _ => (message.to_string(), None),
    }
}

impl City {
    /// Adds a staff member (or renames one already added with the same access).
    pub fn staff_add(&self, name: &str, access: Access) -> Result<StaffMember, CityError> {
        let name = check_name(name)?;
        check_access(&access)?;
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let staff = self.staff()?;
        if let Some(other) = staff
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&name) && s.access != access)
        {
            return Err(CityError::Invalid(format!(
                "another staff member is called `{}` ({}): names must tell people apart",
                other.name, other.access
            )));
        }
        if staff.len() >= MAX_STAFF && !staff.iter().any(|s| s.access == access) {
            return Err(CityError::Invalid(format!(
                "this city has {MAX_STAFF} staff members already"
            )));
        }
        let member = StaffMember {
            name,
            access,
            added: super::now_ms(),
        };
        let value = serde_json::to_vec(&member).map_err(|e| CityError::Internal(e.to_string()))?;
        self.store.set_meta(&member.access.meta_key(), &value)?;
        Ok(member)
    }

    /// Removes a staff member, named by name, Unix user or key; their access ends at once (a
    /// remote staff member's connection is closed).
    pub fn staff_remove(&self, who: &str) -> Result<StaffMember, CityError> {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let staff = self.staff()?;
        let found: Vec<&StaffMember> = staff
            .iter()
            .filter(|s| {
                s.name.eq_ignore_ascii_case(who.trim())
                    || matches!(&s.access, Access::User(u) | Access::Key(u) if u == who.trim())
            })
            .collect();
        match found.as_slice() {
            [one] => {
                self.store.delete_meta(&one.access.meta_key())?;
                Ok((*one).clone())
            }
            [] => Err(CityError::Missing(format!(
                "no staff member `{who}` (`intercity staff list`)"
            ))),
            many => Err(CityError::Invalid(format!(
                "`{who}` names {} staff members: give the user or the key",
                many.len()
            ))),
        }
    }

    /// Every staff member.
    pub fn staff(&self) -> Result<Vec<StaffMember>, CityError> {
        let mut out: Vec<StaffMember> = self
            .store
            .meta_with_prefix(STAFF_KEY)?
            .iter()
            .filter_map(|v| serde_json::from_slice(v).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The staff member with this access, if any.
    pub fn staff_member(&self, access: &Access) -> Result<Option<StaffMember>, CityError> {
        Ok(self
            .store
            .meta(&access.meta_key())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_its_person_on_its_last_line_and_nobody_else_can() {
        assert_eq!(
            signed_by("edit venue", Some("Anna Rossi")),
            "edit venue\nBy: Anna Rossi"
        );
        assert_eq!(signed_by("edit venue", None), "edit venue");
        // A client's own line is dropped: the daemon's is the only one.
        assert_eq!(
            signed_by("edit venue\nBy: The Mayor", Some("Anna Rossi")),
            "edit venue\nBy: Anna Rossi"
        );
        assert_eq!(signed_by("x\nBy: The Mayor\n\n", None), "x");
        assert_eq!(signed_by("", Some("Anna")), "By: Anna");
        assert_eq!(
            split_by("edit venue\nBy: Anna Rossi"),
            ("edit venue".into(), Some("Anna Rossi".into()))
        );
        assert_eq!(split_by("By: Anna"), (String::new(), Some("Anna".into())));
        assert_eq!(split_by("edit venue"), ("edit venue".into(), None));
        assert_eq!(
            split_by("By: Anna\nedit"),
            ("By: Anna\nedit".into(), None),
            "only the last line names the person"
        );
        // Another city's message may hold anything: what is not a plain name names nobody.
        for forged in [
            "x\nBy: Anna\u{2028}Brno (Mayor)",
            "x\nBy: \u{202E}anna",
            "x\nBy: Anna\r",
            "x\nBy: \u{1b}[31mAnna",
        ] {
            assert_eq!(split_by(forged), (forged.to_string(), None), "{forged:?}");
        }
        assert_eq!(
            split_by(&format!("x\nBy: {}", "a".repeat(MAX_STAFF_NAME + 1))).1,
            None
        );
    }

    #[test]
    fn names_and_accesses_are_checked() {
        assert!(check_name("Anna Rossi").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("Anna\nBy: Mayor").is_err());
        assert!(check_name("Anna\u{2028}Mayor").is_err());
        assert!(check_name("Anna\u{200B}").is_err());
        assert!(check_name(&"a".repeat(MAX_STAFF_NAME + 1)).is_err());
        assert!(check_access(&Access::User("anna.rossi".into())).is_ok());
        assert!(check_access(&Access::User("anna rossi".into())).is_err());
        assert!(check_access(&Access::Key("12D3KooWnot".into())).is_err());
    }
}
