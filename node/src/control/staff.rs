//! Staff on the server: the Unix side of the staff group (who is in it, by peer credentials,
//! and which staff member a Unix user is).
//!
//! Linux: group membership is read from `/proc/PID/status` of the connecting process (the
//! groups it runs with, supplementary ones included), users and groups from `/etc/passwd` and
//! `/etc/group` (local accounts; a numeric group id works for any).

use std::path::Path;

use super::server::Caller;
use crate::city::{Access, City, CityError};

/// The id of the group `name` (a name in `/etc/group`, or a number).
pub(super) fn group_id(name: &str) -> Result<u32, CityError> {
    if let Ok(gid) = name.trim().parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(n, _)| *n == name.trim())
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| {
            CityError::Invalid(format!(
                "no group `{name}` on this machine: create it (`groupadd {name}`) and add the staff's accounts to it (`usermod -aG {name} USER`), or give its number"
            ))
        })
}

/// The groups the process `pid` runs with (its `Groups:` line, and its effective group).
pub(super) fn groups_of(pid: i32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    parse_groups(&status)
}

fn parse_groups(status: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Groups:") {
            out.extend(
                rest.split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok()),
            );
        } else if let Some(rest) = line.strip_prefix("Gid:") {
            // Real, effective, saved, filesystem.
            out.extend(
                rest.split_whitespace()
                    .nth(1)
                    .and_then(|g| g.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// The name of the Unix user `uid`, from `/etc/passwd`.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// Who a member of the staff group running as `uid` is to this city.
pub(super) fn staff_caller(city: &City, uid: u32) -> Caller {
    let Some(user) = user_name(uid) else {
        return Caller::Unknown(format!(
            "Unix user {uid} has no name in /etc/passwd: the city cannot tell who it is"
        ));
    };
    match city.staff_member(&Access::User(user.clone())) {
        Ok(Some(_)) => Caller::Staff(Access::User(user)),
        Ok(None) => Caller::Unknown(format!(
            "Unix user `{user}` is in the staff group but not one of this city's staff: ask the operator to run `intercity staff add \"YOUR NAME\" --user {user}`"
        )),
        Err(e) => Caller::Unknown(format!("reading this city's staff failed: {e}")),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CityError {
    let path = path.to_path_buf();
    move |source| CityError::Io { path, source }
}

/// Gives `path` to the group `gid`: only a member of it (or root) may.
fn chgrp(path: &Path, gid: u32) -> Result<(), CityError> {
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
        CityError::Invalid(format!(
            "cannot give {} to the staff group ({gid}): {e}; the node's own user must be in that group (`usermod -aG GROUP USER`, then restart the node)",
            path.display()
        ))
    })
}

/// Opens the control socket at `socket` to the group `gid`: mode 0660 in that group.
pub(super) fn open_socket_to_group(socket: &Path, gid: u32) -> Result<(), CityError> {
    use std::os::unix::fs::PermissionsExt;
    chgrp(socket, gid)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660)).map_err(io(socket))
}

/// Opens the data directory to the group `gid`: 0710 in that group (reach the socket, list
/// nothing), and `db/` 0700.
pub(super) fn open_dir_to_group(dir: &Path, gid: u32) -> Result<(), CityError> {
    use std::os::unix::fs::PermissionsExt;
    chgrp(dir, gid)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710)).map_err(io(dir))?;
    let db = dir.join("db");
    if db.exists() {
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o700)).map_err(io(&db))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_s_groups_are_read_from_its_status() {
        let status = "Name:\tintercity\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1001\t1000\t1000\nGroups:\t4 24 998 \n";
        assert_eq!(parse_groups(status), vec![1001, 4, 24, 998]);
        assert!(parse_groups("Name:\tx\nGroups:\t\n").is_empty());
        // This process: its effective group is among its groups.
        let mine = groups_of(std::process::id() as i32);
        let gid = std::fs::metadata("/proc/self").map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.gid()
        });
        assert!(gid.is_ok_and(|g| mine.contains(&g)), "{mine:?}");
    }

    #[test]
    fn groups_and_users_are_found_by_name_or_number() {
        assert_eq!(group_id("0").ok(), Some(0));
        assert_eq!(group_id("root").ok(), Some(0));
        assert!(group_id("no-such-group-here").is_err());
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
