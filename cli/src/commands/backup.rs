//! `intercity backup` and `intercity restore`: a consistent copy of the city while its node runs,
//! and a restore that signs nothing until the city has caught up with its own feeds.

use std::path::PathBuf;

use intercity_node::City;
use intercity_node::control::ops;

use super::Ctx;

/// Help epilogue of `backup`.
pub const BACKUP_HELP: &str = "\
Copies the city into DIR (a new directory: it must not exist) while the daemon runs or not: a RocksDB
checkpoint of the store (one consistent point in time), city.key (mode 0600: the backup holds
the city's secret, keep it safe), city.json and config.toml. With the daemon running, it is
the daemon that writes DIR (give a directory its service user can write).

Example:
  intercity backup /srv/backup/intercity-$(date +%F)
  intercity restore /srv/backup/intercity-2026-11-30 --data-dir /var/lib/intercity";

/// Help epilogue of `restore`.
pub const RESTORE_HELP: &str = "\
Restores a backup into the data directory (which must not hold a city). The restored city
signs nothing until its node has exchanged heads with a peer and holds every entry of its own
feeds that the peers show: entries it signed after the backup come back from them first (an
edit before that would sign a second entry at a seq already published, a fork that freezes the
feed on every node). Start the daemon (`intercity node run`) and watch `intercity status`.

Example:
  intercity restore /srv/backup/intercity-2026-11-30 --data-dir /var/lib/intercity";

/// `backup` arguments.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The directory to write the backup to (new: it must not exist)
    pub dir: PathBuf,
}

/// `restore` arguments.
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup's directory (made by `intercity backup`)
    pub backup: PathBuf,
}

/// Runs `backup`.
pub fn backup(ctx: &Ctx, args: BackupArgs) -> anyhow::Result<()> {
    let client = ctx.open()?;
    // The daemon may run elsewhere in the file system's view: give it an absolute path.
    let dir = std::path::absolute(&args.dir)?;
    let info = client.call(ops::Backup { dir })?;
    if ctx.ui.is_json() {
        ctx.ui.json(&info)?;
    } else {
        ctx.ui.line(format!(
            "backed up {} to {} ({} bytes); it holds the city's secret key: keep it safe",
            info.name,
            info.dir.display(),
            info.bytes
        ))?;
    }
    Ok(())
}

/// Runs `restore`.
pub fn restore(ctx: &Ctx, args: RestoreArgs) -> anyhow::Result<()> {
    let dir = ctx.data_dir()?;
    let city = City::restore(&args.backup, dir)?;
    if ctx.ui.is_json() {
        ctx.ui.json(&serde_json::json!({
            "id": city.id().to_string(),
            "name": city.profile().name,
            "dir": dir,
            "signs": false,
        }))?;
    } else {
        ctx.ui.line(format!(
            "restored {} ({}) into {}; it signs nothing until it has synced its own feeds with a peer: start the daemon (`intercity node run`)",
            city.profile().name,
            city.id(),
            dir.display()
        ))?;
    }
    Ok(())
}
