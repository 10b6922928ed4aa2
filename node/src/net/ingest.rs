//! Ingestion off the event loop: entries received from peers are judged and written by a
//! worker thread, fed by one bounded queue per peer and served round-robin, so that the task
//! that owns the swarm never waits on RocksDB, Automerge or the city's write lock, and one
//! flooding peer cannot delay another's entries: a job runs for at most [`SLICE`] while other
//! peers have jobs waiting, then the rest of it waits for its peer's next turn.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use intercity_protocol::entry::{FeedId, SignedEntry};
use intercity_protocol::identity::CityId;
use intercity_protocol::ingest::{IngestError, Verdict};
use intercity_protocol::sync::{Response, WireEntry};
use libp2p::request_response::ResponseChannel;
use libp2p::{PeerId, gossipsub};
use tokio::sync::mpsc;

use crate::city::City;

/// Jobs (a gossip message, a push or a range response) waiting per peer; more are refused
/// (gossip ignored, a push answered "busy", a range dropped and fetched again later).
pub const MAX_QUEUED_JOBS_PER_PEER: usize = 64;
/// Payload bytes waiting per peer (with what was read ahead of them); more are refused like
/// jobs over the count.
pub const MAX_QUEUED_BYTES_PER_PEER: usize = 16 * 1024 * 1024;
// One answer, with what was read ahead of it, always fits an empty queue.
const _: () = assert!(
    intercity_protocol::sync::MAX_FRAME_BYTES
        + 2 * intercity_protocol::sync::MAX_PREPARED_ANSWER_BYTES
        <= MAX_QUEUED_BYTES_PER_PEER
);
/// How long one turn of the worker lasts at most while other peers wait (it ends after the
/// entry that passes it).
pub const SLICE: std::time::Duration = std::time::Duration::from_millis(200);

/// Where the entries of a job came from, and what to do once they are judged.
pub(super) enum Origin {
    /// A gossip message, to be validated.
    Gossip(gossipsub::MessageId),
    /// A `Push` request, to be answered.
    Push(ResponseChannel<Response>),
    /// An `Entries` answer to a `Range` request of this feed from `from`; `more` if the peer
    /// has more.
    Range { feed: FeedId, from: u64, more: bool },
    /// The two entries of a verified fork proof a peer handed over (without payloads: a
    /// fork is found before the payload is read). Nothing about them counts against the peer.
    Proof,
}

/// Entries from one peer to judge.
pub(super) struct Job {
    pub peer: PeerId,
    pub origin: Origin,
    pub items: Vec<WireEntry>,
    /// The keys whose entries are judged (every key of this city and of the unblocked
    /// roster cities).
    pub trusted: Arc<HashSet<CityId>>,
    /// This city and the unblocked roster cities: a succession statement of one of them is
    /// judged whatever key carries it (it is how that key becomes theirs, §15.6).
    pub cities: Arc<HashSet<CityId>>,
    /// The federation's scope: its entries are judged whoever signed them (the record's own
    /// rules decide, and a new member needs the whole history, former members' changes too).
    pub open: Option<intercity_protocol::entry::Scope>,
    /// Verdicts on the first entries, from earlier turns.
    pub judged: Vec<Judged>,
}

/// The verdict on one entry: None if its author is not trusted (skipped); with the entry
/// decoded, if it decodes.
pub(super) type Judged = (Option<Result<Verdict, IngestError>>, Option<SignedEntry>);

/// A job done.
pub(super) struct Done {
    pub peer: PeerId,
    pub origin: Origin,
    pub items: Vec<WireEntry>,
    /// One verdict per entry judged (a range stops at the first entry that does not follow),
    /// or the store's error, in which case nothing was written.
    pub judged: Result<Vec<Judged>, String>,
}

#[derive(Default)]
struct Queues {
    per_peer: HashMap<PeerId, VecDeque<Job>>,
    /// Bytes held by each peer's queued jobs ([`held_bytes`]).
    bytes: HashMap<PeerId, usize>,
    /// Peers with jobs, in the order they are served.
    turn: VecDeque<PeerId>,
    closed: bool,
}

/// Takes the first job of the peer whose turn it is; that peer waits for its next turn.
fn next_job(q: &mut Queues) -> Option<Job> {
    if q.closed {
        return None;
    }
    while let Some(peer) = q.turn.pop_front() {
        let Some(jobs) = q.per_peer.get_mut(&peer) else {
            continue;
        };
        let job = jobs.pop_front();
        if jobs.is_empty() {
            q.per_peer.remove(&peer);
            q.bytes.remove(&peer);
        } else {
            q.turn.push_back(peer);
            if let (Some(job), Some(b)) = (&job, q.bytes.get_mut(&peer)) {
                *b = b.saturating_sub(held_bytes(job));
            }
        }
        if job.is_some() {
            return job;
        }
    }
    None
}

/// The bounded per-peer queues between the event loop and the worker.
#[derive(Clone, Default)]
pub(super) struct Queue {
    inner: Arc<(Mutex<Queues>, Condvar)>,
}

impl Queue {
    /// Queues a job; gives it back if its peer has [`MAX_QUEUED_JOBS_PER_PEER`] waiting.
    pub fn push(&self, job: Job) -> Result<(), Box<Job>> {
        let (lock, ready) = &*self.inner;
        let mut q = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let peer = job.peer;
        let bytes = held_bytes(&job);
        let queued_jobs = q.per_peer.get(&peer).map_or(0, VecDeque::len);
        let queued_bytes = q.bytes.get(&peer).copied().unwrap_or(0);
        if queued_jobs >= MAX_QUEUED_JOBS_PER_PEER
            || queued_bytes + bytes > MAX_QUEUED_BYTES_PER_PEER
        {
            return Err(Box::new(job));
        }
        q.per_peer.entry(peer).or_default().push_back(job);
        *q.bytes.entry(peer).or_default() += bytes;
        if queued_jobs == 0 {
            q.turn.push_back(peer);
        }
        ready.notify_one();
        Ok(())
    }

    /// Puts a job back at the head of its peer's queue: the rest of a job cut short, for the
    /// peer's next turn (after every peer now waiting), or a job taken but not started
    /// (`started: false`), where it was (its peer first in turn).
    fn put_back(&self, job: Job, started: bool) {
        let (lock, ready) = &*self.inner;
        let mut q = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let peer = job.peer;
        *q.bytes.entry(peer).or_default() += held_bytes(&job);
        q.per_peer.entry(peer).or_default().push_front(job);
        q.turn.retain(|p| *p != peer);
        if started {
            q.turn.push_back(peer);
        } else {
            q.turn.push_front(peer);
        }
        ready.notify_one();
    }

    /// Whether a peer other than `peer` has a job waiting.
    fn others_waiting(&self, peer: &PeerId) -> bool {
        let (lock, _) = &*self.inner;
        let q = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.turn.iter().any(|p| p != peer)
    }

    /// The next job, round-robin across peers; None once closed.
    fn pop(&self) -> Option<Job> {
        let (lock, ready) = &*self.inner;
        let mut q = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if q.closed {
                return None;
            }
            if let Some(job) = next_job(&mut q) {
                return Some(job);
            }
            q = ready
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The next job, round-robin across peers, if one waits.
    fn try_pop(&self) -> Option<Job> {
        let (lock, _) = &*self.inner;
        let mut q = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        next_job(&mut q)
    }

    /// Stops the worker (jobs still queued are dropped).
    pub fn close(&self) {
        let (lock, ready) = &*self.inner;
        lock.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .closed = true;
        ready.notify_all();
    }

    /// Jobs waiting, in all.
    pub fn len(&self) -> usize {
        let (lock, _) = &*self.inner;
        lock.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .per_peer
            .values()
            .map(VecDeque::len)
            .sum()
    }
}

/// Jobs judged together in one round (one write to the store).
const MAX_ROUND_JOBS: usize = 64;
/// Entries judged together in one round, about.
const MAX_ROUND_ENTRIES: usize = 1_024;
/// Payload bytes judged together in one round, about: most of the cost of an entry is writing
/// and indexing it, which happens when the round is written, so the round is bounded by what
/// it will write as well as by [`SLICE`].
pub const MAX_ROUND_BYTES: usize = 256 * 1024;

/// Rounds judged at once in this process: as many as there are cores. A process runs one node
/// (one worker), except the demo and the benchmarks, which run many: their workers take turns
/// instead of crowding the cores.
struct Slot;

static SLOTS: Mutex<Option<usize>> = Mutex::new(None);
static SLOT_FREED: Condvar = Condvar::new();

impl Slot {
    fn take() -> Slot {
        let mut free = SLOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            let n = free.get_or_insert_with(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
            });
            if *n > 0 {
                *n -= 1;
                return Slot;
            }
            free = SLOT_FREED
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut free = SLOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = free.as_mut() {
            *n += 1;
        }
        SLOT_FREED.notify_one();
    }
}

/// Payload bytes of a job's entries not judged yet (what a round's bound counts).
fn remaining_bytes(job: &Job) -> usize {
    job.items[job.judged.len()..]
        .iter()
        .map(|w| w.payload.len())
        .sum()
}

/// What a job's entries not judged yet hold: their payloads, and what was read ahead of them
/// (what a queue's bound counts).
fn held_bytes(job: &Job) -> usize {
    remaining_bytes(job)
        + job.items[job.judged.len()..]
            .iter()
            .filter_map(|w| w.checked.as_ref())
            .map(intercity_protocol::entry::Checked::prepared_bytes)
            .sum::<usize>()
}

/// Starts the worker thread: it judges the jobs of `queue` and sends each back on `done`, until
/// the queue is closed or `done`'s receiver is gone. The jobs waiting when it wakes up are
/// judged in one round, written as one batch (a burst of gossip costs one write, not one
/// each), in the order the queue gives them; a round ends after [`SLICE`], and what it did not
/// reach goes back to the head of its peer's queue.
pub(super) fn spawn_worker(
    city: Arc<City>,
    queue: Queue,
    done: mpsc::Sender<Done>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("intercity-ingest".into())
        .spawn(move || {
            // After a round failed to write, this many rounds of one job each: the job that
            // fails is found, and fails alone.
            let mut solo = 0usize;
            while let Some(first) = queue.pop() {
                let mut entries = first.items.len() - first.judged.len();
                let mut bytes = remaining_bytes(&first);
                let mut round = vec![first];
                let alone = solo > 0;
                solo = solo.saturating_sub(1);
                while !alone
                    && round.len() < MAX_ROUND_JOBS
                    && entries < MAX_ROUND_ENTRIES
                    && bytes < MAX_ROUND_BYTES
                {
                    let Some(job) = queue.try_pop() else { break };
                    entries += job.items.len() - job.judged.len();
                    bytes += remaining_bytes(&job);
                    round.push(job);
                }
                let turns = {
                    let _slot = Slot::take();
                    judge_round(&city, &mut round, |peer| queue.others_waiting(peer))
                };
                let mut finished = Vec::new();
                let mut again = Vec::new();
                let mut unreached = Vec::new();
                match turns {
                    Ok(turns) => {
                        let reached = turns.len();
                        for (mut job, (mut verdicts, complete)) in round.drain(..reached).zip(turns)
                        {
                            job.judged.append(&mut verdicts);
                            if complete {
                                let judged = Ok(std::mem::take(&mut job.judged));
                                finished.push((job, judged));
                            } else {
                                again.push(job);
                            }
                        }
                        unreached.extend(round);
                    }
                    Err(_) if round.len() > 1 => {
                        solo = round.len();
                        unreached.extend(round);
                    }
                    Err(e) => {
                        // Alone, this job fails: what earlier rounds wrote of it stands, the rest
                        // of it is dropped (a range is asked for again later).
                        for mut job in round {
                            let judged = if job.judged.is_empty() {
                                Err(e.clone())
                            } else {
                                Ok(std::mem::take(&mut job.judged))
                            };
                            finished.push((job, judged));
                        }
                    }
                }
                // Back to the head of their peers' queues, in their order: a job cut short after
                // its peers' turn, a job not reached in its place.
                for job in unreached.into_iter().rev() {
                    queue.put_back(job, false);
                }
                for job in again.into_iter().rev() {
                    queue.put_back(job, true);
                }
                for (job, judged) in finished {
                    let d = Done {
                        peer: job.peer,
                        origin: job.origin,
                        items: job.items,
                        judged,
                    };
                    if done.blocking_send(d).is_err() {
                        return;
                    }
                }
            }
        })
}

/// Most authors outside the trusted cities whose feeds a node holds in the federation's scope
/// (docs/protocol.md §18): former members' changes are part of the record's history, but
/// entries by any key a steward relays must not multiply without bound.
pub const MAX_FOREIGN_AUTHORS: usize = 1_024;

/// Whether an entry of the federation's scope by an untrusted author is judged: its feed is
/// held already, or fewer than [`MAX_FOREIGN_AUTHORS`] untrusted authors have one.
fn open_room(
    city: &City,
    batch: &intercity_protocol::ingest::Batch<'_, crate::store::Store>,
    trusted: &HashSet<CityId>,
    e: &SignedEntry,
    foreign: &mut Option<HashSet<CityId>>,
) -> bool {
    use intercity_protocol::ingest::Ledger;
    if batch.head(&e.header.feed()).ok().flatten().is_some() {
        return true;
    }
    let scope = e.header.scope;
    let held = foreign.get_or_insert_with(|| {
        city.store()
            .feeds()
            .unwrap_or_default()
            .into_iter()
            .filter(|(f, _)| f.scope == scope && !trusted.contains(&f.author))
            .map(|(f, _)| f.author)
            .collect()
    });
    if held.contains(&e.header.author) || held.len() < MAX_FOREIGN_AUTHORS {
        held.insert(e.header.author);
        return true;
    }
    false
}

/// Runs the jobs of a round through the acceptance pipeline, written in one batch (see
/// [`City::ingest_remote_all`]), each from the first entry it has no verdict for. Returns, for
/// the jobs reached (a prefix of `round`), the new verdicts and whether the job is complete.
///
/// Of a range response (`Origin::Range`), the first entry that is not of that feed, or not
/// stored or known, ends the job (the rest of the range cannot follow it): fewer verdicts than
/// entries. After [`SLICE`] or [`MAX_ROUND_BYTES`] the round ends before the next job (it is not
/// reached), or within a job if `others_waiting` says other peers wait (the job is
/// incomplete).
///
/// What was read ahead of an entry's payload is moved out of its job into the pipeline: a job
/// put back after a failed round has its entries judged again without it (the same verdicts,
/// read again).
fn judge_round(
    city: &City,
    round: &mut [Job],
    others_waiting: impl Fn(&PeerId) -> bool,
) -> Result<Vec<(Vec<Judged>, bool)>, String> {
    let run = || {
        city.ingest_remote_all(|batch| {
            // Counted from when the city's write lock is held (an import may hold it first).
            let started = std::time::Instant::now();
            let spent = |bytes: usize| started.elapsed() >= SLICE || bytes >= MAX_ROUND_BYTES;
            let mut turns = Vec::with_capacity(round.len());
            let mut bytes = 0usize;
            // The untrusted authors of the federation's scope held (read when first needed).
            let mut foreign: Option<HashSet<CityId>> = None;
            for k in 0..round.len() {
                let (done, later) = round.split_at_mut(k + 1);
                let job = &mut done[k];
                // Another peer waits if it has a job queued, or one later in this round.
                let peer = job.peer;
                let waiting = || later.iter().any(|j| j.peer != peer) || others_waiting(&peer);
                // A round lasts one slice at most: the jobs not reached keep their place.
                if !turns.is_empty() && spent(bytes) {
                    break;
                }
                let range = match &job.origin {
                    Origin::Range { feed, .. } => Some(*feed),
                    _ => None,
                };
                let items = &mut job.items[job.judged.len()..];
                let count = items.len();
                let mut out = Vec::with_capacity(count);
                let mut complete = true;
                for (i, w) in items.iter_mut().enumerate() {
                    // Entries by cities outside the roster are not ours to judge: dropped, not
                    // held against the peer that relayed them.
                    let decoded = SignedEntry::decode(&w.entry).ok();
                    let taken = decoded.as_ref().is_none_or(|e| {
                        job.trusted.contains(&e.header.author)
                            || statement_of(e, &w.payload, &job.cities)
                            || (job.open == Some(e.header.scope)
                                && open_room(city, batch, &job.trusted, e, &mut foreign))
                    });
                    let r = taken
                        .then(|| batch.ingest_checked(&w.entry, &w.payload, w.checked.as_mut()));
                    let in_range = range.is_none_or(|feed| {
                        decoded.as_ref().is_some_and(|e| e.header.feed() == feed)
                    });
                    let ok = matches!(r, Some(Ok(_)));
                    out.push((r, decoded));
                    bytes += w.payload.len();
                    if range.is_some() && !(ok && in_range) {
                        break;
                    }
                    if i + 1 < count && spent(bytes) && waiting() {
                        complete = false;
                        break;
                    }
                }
                let stop = !complete;
                turns.push((out, complete));
                if stop {
                    break;
                }
            }
            turns
        })
    };
    // Automerge is isolated inside the pipeline; anything else that panics loses this round,
    // not the worker.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(written) => written.map_err(|e| e.to_string()),
        Err(_) => Err("the ingestion of these entries panicked".into()),
    }
}

/// Whether `e` is a succession statement (§15.6 of docs/protocol.md) of one of `cities`: the
/// first entry of a new key's federation feed, which is how that key becomes the city's. Its
/// signatures are checked here and again by the pipeline.
fn statement_of(e: &SignedEntry, payload: &[u8], cities: &HashSet<CityId>) -> bool {
    use intercity_protocol::succession::{SUCCESSION_DOC, Statement};
    e.header.doc == SUCCESSION_DOC
        && e.header.seq == 1
        && Statement::decode(payload).is_ok_and(|s| cities.contains(&s.city))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(peer: PeerId, n: u8) -> Job {
        Job {
            peer,
            origin: Origin::Gossip(gossipsub::MessageId::from(vec![n])),
            items: Vec::new(),
            trusted: Arc::new(HashSet::new()),
            open: None,
            cities: Arc::new(HashSet::new()),
            judged: Vec::new(),
        }
    }

    fn id(job: &Job) -> u8 {
        match &job.origin {
            Origin::Gossip(m) => m.0[0],
            _ => 0,
        }
    }

    #[test]
    fn peers_are_served_in_turn_and_each_queue_is_bounded() {
        let q = Queue::default();
        let (flood, quiet) = (PeerId::random(), PeerId::random());
        for n in 0..MAX_QUEUED_JOBS_PER_PEER as u8 {
            assert!(q.push(job(flood, n)).is_ok());
        }
        assert!(
            q.push(job(flood, 255)).is_err(),
            "the flooding peer's queue is full"
        );
        assert!(
            q.push(job(quiet, 200)).is_ok(),
            "another peer is not affected"
        );
        // The quiet peer's job comes second, not after the flood.
        let first = q.pop().expect("job");
        let second = q.pop().expect("job");
        assert_eq!((first.peer, id(&first)), (flood, 0));
        assert_eq!((second.peer, id(&second)), (quiet, 200));
        assert_eq!(q.len(), MAX_QUEUED_JOBS_PER_PEER - 1);
        // A job whose turn ended comes back first for its peer, after the other peers.
        assert!(q.others_waiting(&quiet));
        assert!(q.push(job(quiet, 201)).is_ok());
        q.put_back(first, true);
        let next = q.pop().expect("job");
        assert_eq!((next.peer, id(&next)), (quiet, 201), "the other peer first");
        let next = q.pop().expect("job");
        assert_eq!((next.peer, id(&next)), (flood, 0), "the resumed job next");
        let next = q.pop().expect("job");
        assert_eq!((next.peer, id(&next)), (flood, 1));
        // Payload bytes are bounded too, and counted out again as jobs leave.
        let heavy = |n: u8| {
            let mut j = job(quiet, n);
            j.items = vec![WireEntry {
                entry: Vec::new(),
                payload: vec![0; MAX_QUEUED_BYTES_PER_PEER / 2],
                checked: None,
            }];
            j
        };
        assert!(q.push(heavy(1)).is_ok());
        assert!(q.push(heavy(2)).is_ok());
        assert!(q.push(heavy(3)).is_err(), "over the byte budget");
        while q.try_pop().is_some_and(|j| j.peer != quiet || id(&j) != 2) {}
        assert!(q.push(heavy(4)).is_ok(), "room again once jobs left");
        q.close();
        assert!(q.pop().is_none());
    }
}
