//! The city's files: creating and opening its data directory (`city.key`, `city.json`, the
//! store, a rotation or recovery cut short), private files and directories.

use super::*;

impl City {
    /// Creates a city in `dir`: secret key (mode 0600), profile and an empty store.
    pub fn init(dir: &Path, name: &str, country: Option<&str>) -> Result<City, CityError> {
        Self::init_with_key(dir, name, country, CityKey::generate()?)
    }

    /// Like [`City::init`] with a given key (fixtures, the demo).
    pub fn init_with_key(
        dir: &Path,
        name: &str,
        country: Option<&str>,
        key: CityKey,
    ) -> Result<City, CityError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(CityError::Record(RecordError::Invalid {
                field: "city".into(),
                reason: "a city name is 1 to 100 printable characters".into(),
            }));
        }
        if let Some(c) = country
            && (c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()))
        {
            return Err(CityError::Record(RecordError::Invalid {
                field: "country".into(),
                reason: format!("`{c}` is not an ISO 3166 alpha-2 code such as IT or CZ"),
            }));
        }
        if dir.join("city.key").exists() || dir.join("db").exists() {
            return Err(CityError::Exists(dir.to_path_buf()));
        }
        let existed = fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
        }
        #[cfg(not(unix))]
        fs::create_dir_all(dir).map_err(io(dir))?;
        // A directory that held other files before is the user's own choice (their home, say):
        // checked, not changed.
        secure_dir(dir, !existed)?;
        let key_path = dir.join("city.key");
        write_private(
            &key_path,
            format!("{}\n", hex::encode(key.secret_bytes())).as_bytes(),
        )?;
        let profile = Profile {
            id: key.id(),
            name: name.to_string(),
            country: country.map(str::to_string),
        };
        let profile_path = dir.join("city.json");
        let json = serde_json::to_vec_pretty(&profile).map_err(|e| CityError::BadFile {
            path: profile_path.clone(),
            detail: e.to_string(),
        })?;
        fs::write(&profile_path, json).map_err(io(&profile_path))?;
        let store = Store::create(&dir.join("db"))?;
        Ok(City::assemble(dir, key, profile, store))
    }

    pub(super) fn assemble(dir: &Path, key: CityKey, profile: Profile, store: Store) -> City {
        let root = profile.id;
        // Read once: a restore marks the store before the city is opened.
        let restored = store
            .meta(super::backup::RESTORED_KEY)
            .ok()
            .flatten()
            .is_some();
        City {
            restored: std::sync::atomic::AtomicBool::new(restored),
            dir: dir.to_path_buf(),
            key,
            root,
            profile,
            store,
            write: Mutex::new(()),
            outbox: Mutex::new(None),
            imported: std::sync::atomic::AtomicBool::new(false),
            invitations: Mutex::new(()),
            own_claims: Mutex::new(OwnClaims::new()),
        }
    }

    /// Opens the city in `dir`.
    pub fn open(dir: &Path) -> Result<City, CityError> {
        Self::open_with(dir, false)
    }

    /// Opens the city in `dir`; while another process (a CLI command) holds the store, retries
    /// for up to [`LOCK_WAIT`], calling `waiting` once when it starts to wait.
    pub fn open_waiting(dir: &Path, waiting: impl FnOnce()) -> Result<City, CityError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut waiting = Some(waiting);
        loop {
            match Self::open(dir) {
                Err(CityError::Store(StoreError::Locked(_)))
                    if std::time::Instant::now() < deadline =>
                {
                    if let Some(w) = waiting.take() {
                        w();
                    }
                    std::thread::sleep(LOCK_POLL);
                }
                other => return other,
            }
        }
    }

    /// Opens the city in `dir` for reading only (see [`Store::open_read_only`]); edits through
    /// it fail.
    pub fn open_read_only(dir: &Path) -> Result<City, CityError> {
        Self::open_with(dir, true)
    }

    pub(super) fn open_with(dir: &Path, read_only: bool) -> Result<City, CityError> {
        let key_path = dir.join("city.key");
        if !read_only {
            Self::finish_recovery(dir)?;
        }
        if !key_path.exists() {
            return Err(CityError::NoCity(dir.to_path_buf()));
        }
        secure_dir(dir, true)?;
        let mut key = read_key(&key_path)?;
        let profile = read_profile(dir)?;
        let store = if read_only {
            Store::open_read_only(&dir.join("db"))?
        } else {
            Store::open(&dir.join("db"))?
        };
        // A rotation that stopped between its statement and the key file's swap (§15.6).
        let next_path = dir.join(NEXT_KEY_FILE);
        if next_path.exists() {
            let next = read_key(&next_path)?;
            let done = store
                .feed_city(&own_fed(&next))?
                .is_some_and(|fc| fc.old == key.id());
            if done && !read_only {
                fs::rename(&next_path, &key_path).map_err(io(&key_path))?;
                sync_dir(dir)?;
                key = next;
            } else if done {
                key = next;
            } else if !read_only {
                fs::remove_file(&next_path).map_err(io(&next_path))?;
            }
        }
        let root = store
            .feed_city(&own_fed(&key))?
            .map_or(key.id(), |fc| fc.city);
        if profile.id != root {
            return Err(CityError::BadFile {
                path: dir.join("city.json"),
                detail: "its id does not match city.key".into(),
            });
        }
        Ok(City::assemble(dir, key, profile, store))
    }

    /// A recovery stopped after its statement was stored and before the key file was
    /// replaced (§15.6): the replacement is made now.
    pub(super) fn finish_recovery(dir: &Path) -> Result<(), CityError> {
        let path = dir.join(RECOVERY_KEY_FILE);
        if !path.exists() || !dir.join("db").exists() {
            return Ok(());
        }
        let next = read_key(&path)?;
        let done = {
            let store = match Store::open(&dir.join("db")) {
                Ok(store) => store,
                Err(StoreError::Locked(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            store.feed_city(&own_fed(&next))?.is_some()
        };
        if done {
            fs::rename(&path, dir.join("city.key")).map_err(io(&path))?;
            sync_dir(dir)?;
        }
        Ok(())
    }
}

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CityError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Keeps the data directory private: refuses one that every user may write to (they could
/// replace the store, the key or the control socket), and makes one that its group or others
/// may read or write (as created with the umask by earlier versions: 0755, or 0775 under a
/// umask of 002) mode 0700. `tighten: false` (a directory `init` did not create) only checks.
pub(super) fn secure_dir(dir: &Path, tighten: bool) -> Result<(), CityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir).map_err(io(dir))?.permissions().mode() & 0o777;
        if mode & 0o002 != 0 {
            return Err(CityError::DirPermissions {
                path: dir.to_path_buf(),
                mode,
            });
        }
        // A daemon with a staff group opens it to that group again (0710) once it has opened
        // the city (`ControlSocket::open_to_staff`).
        if mode & 0o077 != 0 && tighten {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
            tracing::info!(dir = %dir.display(), "the data directory was readable by other users: now mode 700");
        }
    }
    Ok(())
}

/// The profile in `dir` (`city.json`).
pub(super) fn read_profile(dir: &Path) -> Result<Profile, CityError> {
    let path = dir.join("city.json");
    let text = fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&text).map_err(|e| CityError::BadFile {
        path,
        detail: e.to_string(),
    })
}

pub(super) fn read_key(path: &Path) -> Result<CityKey, CityError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CityError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let text = fs::read_to_string(path).map_err(io(path))?;
    let bytes = hex::decode(text.trim()).map_err(|_| CityError::BadFile {
        path: path.to_path_buf(),
        detail: "not a hex-encoded key".into(),
    })?;
    Ok(CityKey::from_secret_bytes(&bytes)?)
}
