//! Backups while the node runs (issue #14): a consistent RocksDB checkpoint with the key, the
//! profile and the configuration; and a restore that keeps the city from signing until a peer
//! has confirmed its own feeds (docs/operations.md §6).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::*;

/// The meta key set by a restore: while it is there, this city signs nothing.
const RESTORED_KEY: &str = "restored";

/// What `intercity backup` made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The backup's directory.
    pub dir: PathBuf,
    /// The city.
    pub id: CityId,
    /// Its name.
    pub name: String,
    /// When it was made, ms since the epoch.
    pub created: i64,
    /// Bytes in the backup's files.
    pub bytes: u64,
}

impl City {
    /// Backs this city up into `dir` (a new or empty directory), while it runs: a RocksDB
    /// checkpoint of the store (consistent: one point in time, every synced write in it), the
    /// key (mode 0600), `city.json`, `config.toml` if there is one, and `backup.json`.
    pub fn backup(&self, dir: &Path) -> Result<BackupInfo, CityError> {
        if dir.exists() && fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
            return Err(CityError::Invalid(format!(
                "{} is not empty: back up into a new directory",
                dir.display()
            )));
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        // The checkpoint makes the directory itself.
        if dir.exists() {
            fs::remove_dir(dir).map_err(io(dir))?;
        }
        fs::create_dir(dir).map_err(io(dir))?;
        restrict(dir, 0o700)?;
        self.store().checkpoint(&dir.join("db"))?;
        let key = dir.join("city.key");
        copy(&self.dir().join("city.key"), &key)?;
        restrict(&key, 0o600)?;
        copy(&self.dir().join("city.json"), &dir.join("city.json"))?;
        let config = self.dir().join("config.toml");
        if config.exists() {
            copy(&config, &dir.join("config.toml"))?;
        }
        let mut info = BackupInfo {
            dir: dir.to_path_buf(),
            id: self.id(),
            name: self.profile().name.clone(),
            created: now_ms(),
            bytes: 0,
        };
        let json =
            serde_json::to_vec_pretty(&info).map_err(|e| CityError::Internal(e.to_string()))?;
        fs::write(dir.join("backup.json"), json).map_err(io(dir))?;
        info.bytes = size_of(dir)?;
        Ok(info)
    }

    /// Restores the backup in `backup` into the data directory `dir` (which must not hold a
    /// city). The restored city signs nothing until a peer has confirmed its own feeds
    /// ([`City::restored`]).
    pub fn restore(backup: &Path, dir: &Path) -> Result<City, CityError> {
        for needed in ["city.key", "city.json", "db"] {
            if !backup.join(needed).exists() {
                return Err(CityError::Invalid(format!(
                    "{} is not an Intercity backup: it has no {needed} (`intercity backup DIR` makes one)",
                    backup.display()
                )));
            }
        }
        if dir.join("city.key").exists() || dir.join("db").exists() {
            return Err(CityError::Exists(dir.to_path_buf()));
        }
        fs::create_dir_all(dir).map_err(io(dir))?;
        restrict(dir, 0o700)?;
        let db = dir.join("db");
        fs::create_dir(&db).map_err(io(&db))?;
        for file in fs::read_dir(backup.join("db")).map_err(io(backup))? {
            let file = file.map_err(io(backup))?.path();
            if let Some(name) = file.file_name() {
                copy(&file, &db.join(name))?;
            }
        }
        let key = dir.join("city.key");
        copy(&backup.join("city.key"), &key)?;
        restrict(&key, 0o600)?;
        copy(&backup.join("city.json"), &dir.join("city.json"))?;
        if backup.join("config.toml").exists() {
            copy(&backup.join("config.toml"), &dir.join("config.toml"))?;
        }
        let city = City::open(dir)?;
        city.store()
            .set_meta(RESTORED_KEY, now_ms().to_string().as_bytes())?;
        Ok(city)
    }

    /// When this city was restored from a backup, while it has not caught up with its own
    /// feeds: it signs nothing then (a restored store may lack entries it signed after the
    /// backup, and signing again at their seqs would fork its feed on every node).
    pub fn restored(&self) -> Result<Option<i64>, CityError> {
        Ok(self
            .store()
            .meta(RESTORED_KEY)?
            .map(|v| String::from_utf8_lossy(&v).parse().unwrap_or(0)))
    }

    /// Peers have exchanged heads with this node, and `claimed` (the highest seq of this
    /// city's own feed in each scope that their heads show) is held here: the restore is over,
    /// and the city signs again. True if it was restored and is not any more.
    pub fn caught_up_after_restore(
        &self,
        claimed: &std::collections::HashMap<Scope, u64>,
    ) -> Result<bool, CityError> {
        if self.restored()?.is_none() || !self.own_feeds_behind()?.is_empty() {
            return Ok(false);
        }
        for (scope, seq) in claimed {
            let feed = intercity_protocol::entry::FeedId {
                author: self.key_id(),
                scope: *scope,
            };
            if self.store().head(&feed)?.map_or(0, |h| h.seq) < *seq {
                return Ok(false);
            }
        }
        self.store().delete_meta(RESTORED_KEY)?;
        Ok(true)
    }

    /// The refusal of a write while the city is restored.
    pub(super) fn check_not_restored(&self) -> Result<(), CityError> {
        match self.restored()? {
            None => Ok(()),
            Some(_) => Err(CityError::Busy(
                "this city was restored from a backup: it signs again once its node has synced its own feeds with a peer \
                 (start the daemon, `intercity node run`, and watch `intercity status`)"
                    .into(),
            )),
        }
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), CityError> {
    fs::copy(from, to).map_err(io(from))?;
    Ok(())
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> Result<(), CityError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) -> Result<(), CityError> {
    Ok(())
}

/// Bytes in the files under `dir`.
fn size_of(dir: &Path) -> Result<u64, CityError> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let meta = entry.metadata().map_err(io(dir))?;
        total += if meta.is_dir() {
            size_of(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
