//! The roster as the network sees it: read off the loop ([`RosterView`]), in its own lane of
//! store work ([`Lane`]), and applied to the gate, the dials and the guests.

use intercity_protocol::entry::DocId;

use super::*;

/// What the network needs of the roster, read off the loop: the roster, which keys are whose
/// (§15.6), and the invitations out. `generation` orders the reads.
pub(super) struct RosterView {
    pub(super) generation: u64,
    roster: Vec<crate::roster::RosterEntry>,
    book: Option<crate::store::KeyBook>,
    guests: Option<Guests>,
    /// The statements that made this city's key its own (empty for a root key; None if they
    /// could not be read).
    succession: Option<Vec<WireEntry>>,
    /// The remote staff members' keys, with their names.
    staff: Option<HashMap<PeerId, String>>,
    /// The federation's record id, if this city follows one: its entries are judged whoever
    /// signed them (the record's own rules decide) when a steward relays them.
    federation: Option<DocId>,
    /// The federation's stewards (and, before the record is held, the inviter bringing it).
    stewards: HashSet<CityId>,
    /// Told once the view is applied (an operator's command waits for it).
    done: Option<oneshot::Sender<()>>,
}

impl RosterView {
    /// Reads it (a blocking store read), taking the next generation first; None if the
    /// roster cannot be read (the gate is then kept as it is rather than everyone
    /// disconnected).
    /// The federation's record is read once: for the trusted cities and, with `publish`
    /// (this node's listen addresses and the failed-publication cache), for this city's
    /// address-book entry, published here when it says otherwise ([`publish_address`]).
    pub(super) fn read(
        city: &City,
        generations: &std::sync::atomic::AtomicU64,
        publish: Option<(&[String], &FailedPublish)>,
    ) -> Option<RosterView> {
        let generation = generations.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        let read = city
            .federation()
            .map_err(|e| warn!(error = %e, "reading the federation's record failed"))
            .ok()?;
        if let Some((addrs, failed)) = publish {
            publish_address(city, read.as_ref(), addrs, failed);
        }
        // The roster with the federation's members (the gate, the dials and the trusted
        // authors follow it).
        let peers = city
            .trusted_peers_of(read.as_ref())
            .map_err(|e| warn!(error = %e, "reading the roster failed"))
            .ok()?;
        let federation = read.map(|f| f.id);
        // The peers whose relays of the federation's scope are judged whoever signed them.
        let stewards = peers
            .iter()
            .filter(|p| {
                p.standing == crate::roster::Standing::Inviter
                    || (p.standing == crate::roster::Standing::Federation
                        && p.role == Some(intercity_protocol::record::Role::Chair))
            })
            .map(|p| p.entry.id)
            .collect();
        let roster: Vec<crate::roster::RosterEntry> = peers.into_iter().map(|p| p.entry).collect();
        let book = city
            .store()
            .key_book()
            .map_err(|e| warn!(error = %e, "reading the succession statements failed"))
            .ok();
        let guests = city
            .guests()
            .map_err(|e| warn!(error = %e, "reading the invitations out failed"))
            .ok();
        let succession = city
            .succession_entries()
            .map_err(|e| warn!(error = %e, "reading this city's succession statements failed"))
            .ok();
        let staff = city
            .staff()
            .map_err(|e| warn!(error = %e, "reading this city's staff failed"))
            .ok()
            .map(|staff| {
                staff
                    .into_iter()
                    .filter_map(|s| match s.access {
                        crate::city::Access::Key(k) => {
                            let id: CityId = k.parse().ok()?;
                            Some((super::peer_id(&id), s.name))
                        }
                        crate::city::Access::User(_) => None,
                    })
                    .collect()
            });
        Some(RosterView {
            staff,
            generation,
            roster,
            book,
            guests,
            succession,
            federation,
            stewards,
            done: None,
        })
    }
}

/// Publishes this city's addresses in the federation's address book when its entry says
/// otherwise (a blocking store write, checked at every roster read); `failed` keeps the
/// addresses whose publication failed, so that a failure is not tried again at every tick
/// (it is when the addresses change).
fn publish_address(
    city: &City,
    federation: Option<&crate::roster::Federation>,
    addrs: &[String],
    failed: &FailedPublish,
) {
    let mut failed = failed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if failed.as_deref() == Some(addrs) {
        return;
    }
    match city.publish_address(federation, addrs) {
        Ok(true) => {
            info!(
                ?addrs,
                "published this city's addresses in the federation's address book"
            );
            *failed = None;
        }
        Ok(false) => *failed = None,
        // Refused for now (a restored city before it caught up): tried again at the next read.
        Err(CityError::Busy(_)) => {}
        Err(e) => {
            warn!(error = %e, "publishing this city's addresses failed");
            *failed = Some(addrs.to_vec());
        }
    }
}

/// The addresses whose publication in the federation's address book failed last.
pub(super) type FailedPublish = std::sync::Mutex<Option<Vec<String>>>;

/// A lane of store work off the loop ([`EventLoop::store_later`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// Answers to peers (`Range`, `Forks`, redemptions).
    Answer,
    /// Roster reads.
    Roster,
    /// Roster writes (ban rows, join records): done even while the loop stops.
    RosterWrite,
}

impl EventLoop {
    /// Reads the roster again off the loop (at most [`session::MAX_STORE_READERS`] store
    /// reads run at once) and applies it when it comes back ([`EventLoop::apply_roster`]).
    pub(super) fn refresh_roster(&mut self, done: Option<oneshot::Sender<()>>) {
        use std::sync::atomic::Ordering;
        // A read that has not started yet will see whatever changed since it was asked for:
        // at most one waits (a stream of changes to the federation's record, or of
        // succession statements, costs one read at a time). An operator's command, which
        // waits for its own read, always asks one.
        if done.is_none() && self.roster_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let queued = self.roster_queued.clone();
        let (tx, generations) = (self.roster_tx.clone(), self.roster_reads.clone());
        let addrs: Vec<String> = self.advertised().iter().map(ToString::to_string).collect();
        let published = self.published.clone();
        self.store_later(Lane::Roster, move |city| {
            queued.store(false, Ordering::Release);
            // Dropped if the loop has enough to apply: a later refresh reads again.
            if let Some(mut view) = RosterView::read(city, &generations, Some((&addrs, &published)))
            {
                view.done = done;
                let _ = tx.try_send(view);
            }
        });
    }

    /// Runs store work on a blocking thread, in its lane: the loop does not wait on RocksDB for
    /// it. Answers to peers share [`session::MAX_STORE_READERS`] permits; the roster's reads
    /// and writes (roster, ban rows, join records) have one of their own, so no backlog of
    /// peers' reads can hold back a block or a ban, and its writes land in order. Once the
    /// loop stops, the work not started is dropped, but for roster writes.
    pub(super) fn store_later(&self, lane: Lane, work: impl FnOnce(&City) + Send + 'static) {
        let city = self.city.clone();
        let stopping = self.stopping.clone();
        let permits = match lane {
            Lane::Answer => self.readers.clone(),
            Lane::Roster | Lane::RosterWrite => self.roster_lane.clone(),
        };
        tokio::spawn(async move {
            let Ok(permit) = permits.acquire_owned().await else {
                return;
            };
            if lane != Lane::RosterWrite && stopping.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            let _ = tokio::task::spawn_blocking(move || {
                work(&city);
                // The city is let go of before the permit: shutdown waits for the permits,
                // then closes the store.
                drop(city);
                drop(permit);
            })
            .await;
        });
    }

    /// Syncs the gate with the roster (and the invitations out), disconnects cities that left
    /// it, promotes guests that entered it, and dials roster cities we are not connected to.
    pub(super) fn apply_roster(&mut self, mut view: RosterView) {
        let done = view.done.take();
        self.apply_view(view);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn apply_view(&mut self, view: RosterView) {
        // A read asked earlier that came back later than a newer one is stale.
        if view.generation < self.roster_applied {
            return;
        }
        self.roster_applied = view.generation;
        let RosterView {
            roster,
            book,
            guests,
            succession,
            federation,
            stewards,
            staff,
            ..
        } = view;
        if let Some(staff) = staff {
            self.apply_staff(staff);
        }
        self.federation = federation;
        if let Some(book) = book {
            self.keys = book;
        }
        self.stewards = stewards.iter().filter_map(|c| self.peer_of(c)).collect();
        if let Some(succession) = succession {
            self.succession = succession;
        }
        self.invitations = roster
            .iter()
            .filter_map(|e| Some((peer_id(&e.id), e.invitation.clone()?)))
            .collect();
        // A roster entry may name any key of its city: its city is what counts, and a city
        // blocked under any of its keys is blocked under all of them.
        let blocked: HashSet<CityId> = roster
            .iter()
            .filter(|e| e.blocked)
            .map(|e| self.keys.city_of(&e.id))
            .collect();
        let cities: HashSet<CityId> = roster
            .iter()
            .map(|e| self.keys.city_of(&e.id))
            .filter(|c| !blocked.contains(c))
            .chain([self.city.id()])
            .collect();
        let trusted: HashSet<CityId> = cities.iter().flat_map(|c| self.keys.keys_of(c)).collect();
        self.trusted = Arc::new(trusted);
        self.swarm
            .behaviour()
            .sync
            .read_ahead
            .set(self.trusted.clone());
        self.cities = Arc::new(cities);
        let admits = match guests {
            Some(Guests { named, .. }) => Admits {
                named: named.iter().map(peer_id).collect(),
            },
            None => Admits::default(),
        };
        let now = Instant::now();
        self.guest_bans.retain(|_, until| *until > now);
        // A city connects with its current key only (§15.6): a retired key is nobody's.
        let mut allowed = HashSet::new();
        for e in &roster {
            let Some(pid) = self.peer_of(&e.id) else {
                continue;
            };
            self.peers.entry(pid).or_default().name.clone_from(&e.name);
            if !blocked.contains(&self.keys.city_of(&e.id)) && !self.banned.contains_key(&pid) {
                allowed.insert(pid);
            }
        }
        self.swarm.behaviour_mut().sync.trusted.clone_from(&allowed);
        self.reach.members.set(&allowed);
        let gate = &mut self.swarm.behaviour_mut().gate;
        gate.trusted.clone_from(&allowed);
        gate.banned = self
            .banned
            .keys()
            .chain(self.guest_bans.keys())
            .copied()
            .chain(
                blocked
                    .iter()
                    .flat_map(|c| self.keys.keys_of(c))
                    .map(|k| peer_id(&k)),
            )
            .collect();
        gate.admits = admits;
        let connected: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.connected)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in connected {
            if !allowed.contains(&pid) {
                info!(peer = %pid, "no longer in the roster: disconnected");
                let _ = self.swarm.disconnect_peer_id(pid);
                // Not connected from now on: a new connection, should the city be trusted
                // again before these close, starts a session of its own.
                if let Some(p) = self.peers.get_mut(&pid) {
                    p.connected = false;
                }
                self.drive(Event::Disconnected(pid));
                self.sync.forget(&pid);
            }
        }
        let promoted: Vec<PeerId> = self
            .guests
            .keys()
            .filter(|pid| allowed.contains(pid))
            .copied()
            .collect();
        for pid in promoted {
            self.promote(pid);
        }
        for e in &roster {
            let Some(pid) = self.peer_of(&e.id) else {
                continue;
            };
            if e.invitation.is_some() && self.peers.get(&pid).is_some_and(|p| p.connected) {
                // Accepted while already connected to the inviter.
                self.present_invitation(pid);
            }
            if allowed.contains(&pid) && !self.swarm.is_connected(&pid) {
                let addrs: Vec<Multiaddr> = e.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                if !addrs.is_empty() {
                    let opts = DialOpts::peer_id(pid)
                        .addresses(addrs)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
        }
    }
}

impl EventLoop {
    /// The remote staff members' keys: admitted by the gate, served the control protocol; a
    /// key removed is disconnected at once.
    fn apply_staff(&mut self, staff: HashMap<PeerId, String>) {
        let gone: Vec<PeerId> = self
            .staff
            .keys()
            .filter(|p| !staff.contains_key(p))
            .copied()
            .collect();
        let keys: HashSet<PeerId> = staff.keys().copied().collect();
        self.staff_keys.set(&keys);
        self.swarm.behaviour_mut().gate.staff = keys;
        self.staff = staff;
        for peer in gone {
            if !self.is_trusted(&peer) {
                info!(%peer, "a staff key was removed: disconnected");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }
}
