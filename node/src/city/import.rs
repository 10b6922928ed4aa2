//! Importing records in bulk: each line checked, new records prepared on worker threads and
//! written in batches, in file order; lines naming a record this city may edit update it.

use super::*;

impl City {
    /// Imports records as this city's (each becomes a signed entry; an `id` naming a record
    /// this city may edit updates it). With `dry_run` nothing is written and the result says
    /// what would happen. A record that fails writes nothing. Call [`City::finish_import`] after
    /// the last batch.
    pub fn import(&self, items: Vec<Imported>, dry_run: bool) -> Vec<ImportResult> {
        self.import_by(items, dry_run, None)
    }

    /// [`City::import`] for a staff member: the changes name `person` ([`signed_by`]).
    ///
    /// [`signed_by`]: super::signed_by
    pub fn import_by(
        &self,
        items: Vec<Imported>,
        dry_run: bool,
        person: Option<&str>,
    ) -> Vec<ImportResult> {
        let result = |line: usize, r: Result<(ImportOutcome, Option<String>), CityError>| match r {
            Ok((outcome, id)) => ImportResult {
                line,
                outcome,
                id,
                error: None,
            },
            Err(e) => ImportResult {
                line,
                outcome: ImportOutcome::Failed,
                id: None,
                error: Some(e.to_string()),
            },
        };
        if dry_run {
            return items
                .iter()
                .map(|item| result(item.line, self.import_one(item, true, person)))
                .collect();
        }
        // Building a new record's document is the costly part and needs no store writes: worker
        // threads build them ahead (worker w takes items w, w + n, ...), while this thread signs
        // and stores the records in file order, new ones in batches of up to IMPORT_BATCH
        // written at once.
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, 8);
        let mut out = Vec::with_capacity(items.len());
        let mut wrote = false;
        std::thread::scope(|scope| {
            let receivers: Vec<_> = (0..workers)
                .map(|w| {
                    // Room for a whole batch each, so that the workers keep building while a
                    // batch is written.
                    let (tx, rx) = std::sync::mpsc::sync_channel(IMPORT_BATCH);
                    let items = &items;
                    scope.spawn(move || {
                        for item in items.iter().skip(w).step_by(workers) {
                            if tx.send(self.prepare_import(item, person)).is_err() {
                                break;
                            }
                        }
                    });
                    rx
                })
                .collect();
            // New records waiting for the next batch write: (index in `out`, doc, kind, change).
            let mut batch: Vec<(usize, DocId, Kind, Authored)> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                // A worker that stopped leaves the preparing to `import_one`.
                let prepared = receivers[i % workers].recv().ok().flatten();
                // The worker looked for the record named by `id` a while ago; it may have
                // arrived since (by sync, through the daemon): then the line is an update.
                match prepared.filter(|_| self.import_creates(item)) {
                    Some((kind, authored)) => {
                        let id = DocId::for_genesis(&authored.change.hash());
                        out.push(result(item.line, Ok((ImportOutcome::Created, None))));
                        batch.push((out.len() - 1, id, kind, authored));
                        if batch.len() >= IMPORT_BATCH {
                            wrote |= self.write_imported(&mut batch, &mut out);
                        }
                    }
                    None => {
                        // Updates read the store: the batch before them is written first.
                        wrote |= self.write_imported(&mut batch, &mut out);
                        let r = self.import_one(item, false, person);
                        wrote |=
                            matches!(r, Ok((ImportOutcome::Created | ImportOutcome::Updated, _)));
                        out.push(result(item.line, r));
                    }
                }
            }
            wrote |= self.write_imported(&mut batch, &mut out);
        });
        if wrote {
            self.imported
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        out
    }

    /// Signs and writes a batch of imported new records and fills in their results.
    /// Returns whether anything was written.
    fn write_imported(
        &self,
        batch: &mut Vec<(usize, DocId, Kind, Authored)>,
        out: &mut [ImportResult],
    ) -> bool {
        if batch.is_empty() {
            return false;
        }
        let slots: Vec<(usize, DocId)> = batch.iter().map(|(i, id, ..)| (*i, *id)).collect();
        let items = batch
            .drain(..)
            .map(|(_, id, kind, authored)| (id, kind, authored))
            .collect();
        let results = match self.publish_all(items) {
            Ok(results) => results
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect(),
            Err(e) => vec![Err(format!("not stored: {e}")); slots.len()],
        };
        let mut wrote = false;
        for ((i, id), r) in slots.into_iter().zip(results) {
            let Some(slot) = out.get_mut(i) else { continue };
            match r {
                Ok(_) => {
                    wrote = true;
                    slot.id = Some(id.to_string());
                }
                Err(e) => {
                    slot.outcome = ImportOutcome::Failed;
                    slot.error = Some(e);
                }
            }
        }
        wrote
    }

    /// Ends a bulk load: the store is flushed (the next process to open it has no large log to
    /// replay, and the unsynced imported entries are on disk) and the catalog's facets are
    /// compacted for quick listings. Does nothing if nothing was imported.
    pub fn finish_import(&self) -> Result<(), CityError> {
        if self
            .imported
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.store.flush()?;
            self.store.compact_facets();
        }
        Ok(())
    }

    /// The kind and genesis change of an imported record that will be created (None for an
    /// update, and when preparing fails: `import_one` then reports the error).
    fn prepare_import(&self, item: &Imported, person: Option<&str>) -> Option<(Kind, Authored)> {
        if !self.import_creates(item) {
            return None;
        }
        let record = self.fixup(item.record.clone()).ok()?;
        let authored = self
            .prepare(&record, &import_message(&record, person), Texts::Plain)
            .ok()?;
        Some((record.kind(), authored))
    }

    /// Whether importing `item` creates a record: it names none, or names by a valid id one
    /// this store does not hold. A line naming a stored record updates it, and one whose id
    /// does not parse fails: both go through `import_one`.
    fn import_creates(&self, item: &Imported) -> bool {
        match &item.id {
            None => true,
            Some(id) => id
                .parse::<DocId>()
                .is_ok_and(|id| matches!(self.store.has_doc(&id), Ok(false))),
        }
    }

    /// An imported record made this city's: owner set, language and city defaulted.
    fn fixup(&self, mut record: Record) -> Result<Record, CityError> {
        let me = self.id().to_string();
        match &mut record {
            Record::Practice(p) => {
                p.owner.clone_from(&me);
                if p.language.is_empty() {
                    p.language = "en".into();
                }
                if p.city.is_empty() {
                    p.city.clone_from(&self.profile.name);
                }
            }
            Record::Project(p) => {
                p.owner.clone_from(&me);
                if p.lead_city.is_empty() {
                    p.lead_city.clone_from(&self.profile.name);
                }
            }
            Record::Group(_) => {
                return Err(CityError::Invalid(
                    "groups cannot be imported; create one with `intercity group create`".into(),
                ));
            }
        }
        Ok(record)
    }

    fn import_one(
        &self,
        item: &Imported,
        dry_run: bool,
        person: Option<&str>,
    ) -> Result<(ImportOutcome, Option<String>), CityError> {
        let me = self.id().to_string();
        let mut record = self.fixup(item.record.clone())?;
        let existing = match &item.id {
            Some(id) => {
                let id: DocId = id.parse().map_err(|_| {
                    CityError::Record(RecordError::Invalid {
                        field: "id".into(),
                        reason: format!("`{id}` is not a record id (32 hex characters)"),
                    })
                })?;
                self.store.has_doc(&id)?.then_some(id)
            }
            None => None,
        };
        let Some(id) = existing else {
            record.validate()?;
            if dry_run {
                return Ok((ImportOutcome::WouldCreate, None));
            }
            let authored = self.prepare(&record, &import_message(&record, person), Texts::Plain)?;
            let id = DocId::for_genesis(&authored.change.hash());
            self.publish(id, record.kind(), authored)?;
            return Ok((ImportOutcome::Created, Some(id.to_string())));
        };
        let current = self.record(id)?;
        if current.kind() != record.kind() {
            return Err(CityError::WrongKind {
                id: id.to_string(),
                expected: record.kind(),
                found: current.kind(),
            });
        }
        let owner = current.owner().unwrap_or_default().to_string();
        if owner != me && !current.editors().contains(&me) {
            return Err(CityError::Rejected(format!(
                "record {id} belongs to {owner} and this city may not edit it; remove its id to import a copy"
            )));
        }
        match &mut record {
            Record::Practice(p) => p.owner = owner,
            Record::Project(p) => p.owner = owner,
            Record::Group(_) => {}
        }
        record.validate()?;
        if current == record {
            return Ok((ImportOutcome::Unchanged, Some(id.to_string())));
        }
        if dry_run {
            return Ok((ImportOutcome::WouldUpdate, Some(id.to_string())));
        }
        let message = super::signed_by(
            &format!("import: update {} '{}'", record.kind(), record.title()),
            person,
        );
        match self.edit_with(id, None, &message, |r| {
            *r = record;
            Ok(())
        }) {
            Ok(_) => Ok((ImportOutcome::Updated, Some(id.to_string()))),
            Err(CityError::Unchanged) => Ok((ImportOutcome::Unchanged, Some(id.to_string()))),
            Err(e) => Err(e),
        }
    }
}

/// The change message of an imported new record.
fn import_message(record: &Record, person: Option<&str>) -> String {
    super::signed_by(
        &format!("import {} '{}'", record.kind(), record.title()),
        person,
    )
}
