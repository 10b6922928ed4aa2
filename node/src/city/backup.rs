//! Backups while the node runs (issue #14): a consistent RocksDB checkpoint with the key, the
//! profile and the configuration; and a restore that keeps the city from signing until a peer
//! has confirmed its own feeds (docs/operations.md §6).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::*;

/// The meta key set by a restore: while it is there, this city signs nothing.
pub(super) const RESTORED_KEY: &str = "restored";

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
    /// Backs this city up into `dir` (a new directory, given as an absolute path), while it
    /// runs: a RocksDB checkpoint of the store (consistent: one point in time, every synced
    /// write in it), the key (mode 0600), `city.json`, `config.toml` if there is one, and
    /// `backup.json` last (a backup without it is incomplete). Files are created new (never
    /// through an existing file or link) and synced.
    pub fn backup(&self, dir: &Path) -> Result<BackupInfo, CityError> {
        if !dir.is_absolute() {
            return Err(CityError::Invalid(format!(
                "{}: give the backup's directory as an absolute path",
                dir.display()
            )));
        }
        if fs::symlink_metadata(dir).is_ok() {
            return Err(CityError::Invalid(format!(
                "{} exists: back up into a new directory",
                dir.display()
            )));
        }
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        create_private_dir(dir)?;
        self.store().checkpoint(&dir.join("db"))?;
        copy_new(&self.dir().join("city.key"), &dir.join("city.key"))?;
        copy_new(&self.dir().join("city.json"), &dir.join("city.json"))?;
        let config = self.dir().join("config.toml");
        if config.exists() {
            copy_new(&config, &dir.join("config.toml"))?;
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
        write_new(&dir.join("backup.json"), &json)?;
        info.bytes = size_of(dir)?;
        Ok(info)
    }

    /// Restores the backup in `backup` into the data directory `dir` (which must not hold a
    /// city). The restored city signs nothing until a peer has confirmed its own feeds
    /// ([`City::restored`]).
    pub fn restore(backup: &Path, dir: &Path) -> Result<City, CityError> {
        for needed in ["city.key", "city.json", "db", "backup.json"] {
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
        if !dir.exists() {
            create_private_dir(dir)?;
        }
        let db = dir.join("db");
        create_private_dir(&db)?;
        for file in fs::read_dir(backup.join("db")).map_err(io(backup))? {
            let file = file.map_err(io(backup))?.path();
            // A checkpoint holds regular files only: anything else is not copied.
            let regular = fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_file());
            if let (true, Some(name)) = (regular, file.file_name()) {
                copy_new(&file, &db.join(name))?;
            }
        }
        // The mark first, the key last: a restore stopped half-way is no city, or a city that
        // does not sign (a crash between the key and the mark would leave one that signs at
        // seqs already published).
        Store::open(&db)?.set_meta(RESTORED_KEY, now_ms().to_string().as_bytes())?;
        copy_new(&backup.join("city.json"), &dir.join("city.json"))?;
        if backup.join("config.toml").exists() {
            copy_new(&backup.join("config.toml"), &dir.join("config.toml"))?;
        }
        copy_new(&backup.join("city.key"), &dir.join("city.key"))?;
        City::open(dir)
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

    /// Whether the restore is over: every own feed this node holds was shown by a peer's
    /// heads (`shown`: the highest seq of this city's own feed per scope in the heads of the
    /// connected peers), and no peer's report of an own feed ahead of this node still holds
    /// ([`City::own_feeds_behind`]: reports a peer does not back with entries lapse). Then the
    /// mark is removed and the city signs again; true if it was restored and is not any more.
    pub fn caught_up_after_restore(
        &self,
        shown: &std::collections::HashMap<Scope, u64>,
    ) -> Result<bool, CityError> {
        if self.restored()?.is_none() || !self.own_feeds_behind()?.is_empty() {
            return Ok(false);
        }
        use intercity_protocol::ingest::Ledger;
        for feed in self
            .store()
            .feeds_of(&self.key_id())
            .map_err(IngestError::Ledger)?
        {
            // A peer that shares the scope showed the feed (what it shows beyond this node's
            // copy is a report: `own_feeds_behind` above, until it lapses unbacked).
            if !shown.contains_key(&feed.scope) {
                return Ok(false);
            }
        }
        self.store().delete_meta(RESTORED_KEY)?;
        self.restored
            .store(false, std::sync::atomic::Ordering::Release);
        Ok(true)
    }

    /// The refusal of a write while the city is restored.
    pub(super) fn check_not_restored(&self) -> Result<(), CityError> {
        // The flag read at open, cleared with the mark: no store read per signed entry.
        match self.restored.load(std::sync::atomic::Ordering::Acquire) {
            false => Ok(()),
            true => Err(CityError::Busy(
                "this city was restored from a backup: it signs again once its node has synced its own feeds with a peer \
                 (start the daemon, `intercity node run`, and watch `intercity status`)"
                    .into(),
            )),
        }
    }
}

/// Copies `from` into the new file `to` (mode 0600, never through an existing file or link),
/// synced.
fn copy_new(from: &Path, to: &Path) -> Result<(), CityError> {
    let bytes = fs::read(from).map_err(io(from))?;
    write_new(to, &bytes)
}

/// Writes the new file `path` (mode 0600, created exclusively), synced.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), CityError> {
    use std::io::Write as _;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Creates the new directory `path`, mode 0700.
fn create_private_dir(path: &Path) -> Result<(), CityError> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(io(path))
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
