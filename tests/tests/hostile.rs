//! A member's bytes cannot take a node down (issue #10): hostile roster cities and outsiders
//! against real nodes on 127.0.0.1.

use std::time::Duration;

use intercity_tests::{TestNode, eventually, hostile, practice, titles};

const WAIT: Duration = Duration::from_secs(20);

/// Scenario 1: a genesis change whose chunk lists an unused actor. Automerge applies it but
/// panics loading its bytes; stored as the document, it used to kill the network task on the
/// first read (and the CLI with it), and again after every restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_change_is_quarantined_and_the_node_keeps_syncing() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let mallory = TestNode::spawn("Mallory", 3).await; // a roster city gone bad
    milan.link(&brno).await;
    mallory.link(&milan).await;
    let pid = practice(&mallory.city, "Honest first");
    assert!(eventually(WAIT, || milan.city.record(pid).is_ok()).await);

    let (poison, id) = hostile::poison_practice(&mallory.city, "Poison");
    mallory
        .net()
        .push_raw(&milan.id(), vec![poison])
        .await
        .expect("push");
    assert!(
        eventually(WAIT, || milan.city.history(id).is_ok_and(|h| !h.is_empty())).await,
        "Milan did not keep the poison entry"
    );
    // Reading it is an answer, not a panic; if it was applied, the document loads.
    let history = milan.city.history(id).expect("history");
    assert_eq!(history.len(), 1);
    let verdict = history[0].status.clone();
    eprintln!("poison verdict: {verdict} ({:?})", history[0].reason);
    assert!(
        verdict == "quarantined" || verdict == "accepted",
        "unexpected verdict {verdict}: {:?}",
        history[0].reason
    );
    if verdict == "accepted" {
        milan.city.record(id).expect("an accepted document loads");
    } else {
        assert!(milan.city.record(id).is_err());
        let entries = milan.status().await.entries;
        assert_eq!(entries.3, 1, "status counts the quarantined entry");
    }

    // The network task is alive: Brno's new practice still reaches Milan, and Milan's reaches
    // Brno.
    practice(&brno.city, "After the poison");
    practice(&milan.city, "Milan after the poison");
    assert!(
        eventually(WAIT, || titles(&milan.city)
            .contains(&"After the poison".to_string()))
        .await,
        "Milan stopped syncing"
    );
    assert!(
        eventually(WAIT, || titles(&brno.city)
            .contains(&"Milan after the poison".to_string()))
        .await
    );

    // And it survives a restart with the entry stored.
    let milan = milan.restart().await;
    let _ = milan.city.record(id);
    milan.dial(&brno).await;
    practice(&brno.city, "After the restart");
    assert!(
        eventually(WAIT, || titles(&milan.city)
            .contains(&"After the restart".to_string()))
        .await,
        "Milan stopped syncing after a restart"
    );
}

/// Whether `node` shows `peer` connected within `limit`.
async fn connects_within(node: &TestNode, peer: &TestNode, limit: Duration) -> bool {
    let id = peer.id().to_string();
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if node
            .status()
            .await
            .peers
            .iter()
            .any(|p| p.id == id && p.connected)
        {
            eprintln!("connected after {} ms", started.elapsed().as_millis());
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The TCP port a node listens on.
fn port_of(node: &TestNode) -> u16 {
    let addr = node.addr();
    let port = addr
        .rsplit_once("/tcp/")
        .and_then(|(_, p)| p.split('/').next())
        .expect("a TCP address");
    port.parse().expect("a port")
}

/// Keeps `n` silent TCP connections open to `port` from 127.0.0.2 (a second host on the loopback
/// network), each for 8 s and then replaced, until `stop` fires: the half-open sockets of an
/// outsider.
async fn hold_half_open(port: u16, n: usize, stop: tokio_util::sync::CancellationToken) {
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut held: Vec<(tokio::net::TcpStream, std::time::Instant)> = Vec::new();
    while !stop.is_cancelled() {
        held.retain(|(_, at)| at.elapsed() < Duration::from_secs(8));
        while held.len() < n {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(std::net::SocketAddr::from(([127, 0, 0, 2], 0)))
                .expect("bind 127.0.0.2");
            match tokio::time::timeout(Duration::from_secs(1), socket.connect(target)).await {
                Ok(Ok(stream)) => held.push((stream, std::time::Instant::now())),
                _ => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scenario 5 (a): 40 half-open sockets from one host filled libp2p's 32 slots for connections
/// in their handshake, and every inbound dial was refused, roster cities included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sockets_from_one_host_do_not_keep_roster_cities_out() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    milan.trust(&brno).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let attack = tokio::spawn(hold_half_open(port_of(&milan), 40, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    brno.dial(&milan).await;
    // About 50 ms alone; the bound is wide because the other tests of this file (floods) run
    // beside it in CI and it failed twice at 5 s there. Before the fix it never connected.
    let connected = connects_within(&milan, &brno, Duration::from_secs(15)).await;
    stop.cancel();
    let _ = attack.await;
    assert!(
        connected,
        "Brno could not connect to Milan within 15 s while an outsider held half-open sockets"
    );
}

/// A request-response codec that sends frames claiming `FLOOD_FRAME` bytes and then sends them
/// all: what a guest flooding `/intercity/sync/7` writes.
#[derive(Clone, Default)]
struct Flood;

const FLOOD_FRAME: usize = 8 * 1024 * 1024;

impl libp2p::request_response::Codec for Flood {
    type Protocol = libp2p::StreamProtocol;
    type Request = ();
    type Response = ();

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
    ) -> std::io::Result<()> {
        Ok(())
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
    ) -> std::io::Result<()> {
        Ok(())
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        (): (),
    ) -> std::io::Result<()> {
        use futures::AsyncWriteExt;
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        io.write_all(&(FLOOD_FRAME as u32 - 1).to_be_bytes())
            .await?;
        for _ in 0..FLOOD_FRAME / ZEROS.len() {
            io.write_all(&ZEROS).await?;
        }
        io.close().await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
        (): (),
    ) -> std::io::Result<()> {
        Ok(())
    }
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    status_bytes("VmRSS:")
}

/// This process's peak resident memory so far, in bytes.
fn peak_rss() -> u64 {
    status_bytes("VmHWM:")
}

/// A size in `/proc/self/status` (the line starting with `field`), in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect(field);
    kib * 1024
}

/// A roster city's genesis change of 20,000 maps under one key of 100,000 bytes: 120 KB of
/// payload, which the readers of a record copied into 2 GB of JSON (a payload's 256 KiB could
/// make gigabytes more, and the node was killed for its memory). A change with a key over 256
/// bytes is now refused before anything reads it (protocol.md §7): a feed-level failure held
/// against the sender, nothing stored, memory barely moves, and the node keeps syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_read_once_per_map_is_refused_before_it_is_read() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let mallory = TestNode::spawn("Mallory", 3).await; // a roster city gone bad
    milan.link(&brno).await;
    mallory.link(&milan).await;
    let (bomb, id) = hostile::key_bomb(&mallory.city, 20_000, 100_000);
    assert!(bomb.payload.len() < 160 * 1024, "{}", bomb.payload.len());
    let before = peak_rss();
    mallory
        .net()
        .push_raw(&milan.id(), vec![bomb])
        .await
        .expect("push");
    assert!(
        milan.strikes(&mallory.id().to_string(), WAIT).await,
        "Mallory was not held to account for the entry"
    );
    assert!(milan.city.history(id).is_ok_and(|h| h.is_empty()));
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 512 << 20, "peak RSS grew by {} MB", grown >> 20);
    practice(&brno.city, "After the key");
    assert!(
        eventually(WAIT, || titles(&milan.city)
            .contains(&"After the key".to_string()))
        .await,
        "Milan stopped syncing"
    );
}

/// A roster city's change of 65,536 overwrites of one key, each naming the one before, is a few
/// hundred bytes that leave one value in view: it was accepted, and every node kept the
/// operations in the record's history (262,144 of them made each read of the record 100–335 ms
/// in a release build). It is now rejected (protocol.md §7.3): the practice stays as its genesis
/// made it, and the node keeps syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_nobody_sees_are_rejected() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let mallory = TestNode::spawn("Mallory", 3).await; // a roster city gone bad
    milan.link(&brno).await;
    mallory.link(&milan).await;
    let (entries, id) = hostile::overwrite_bomb(&mallory.city, 65_536);
    assert!(
        entries[1].payload.len() < 400,
        "{}",
        entries[1].payload.len()
    );
    mallory
        .net()
        .push_raw(&milan.id(), entries)
        .await
        .expect("push");
    assert!(
        eventually(WAIT, || milan.city.history(id).is_ok_and(|h| h.len() == 2)).await,
        "Milan did not judge both entries"
    );
    let history = milan.city.history(id).expect("history");
    let statuses: Vec<(&str, Option<&String>)> = history
        .iter()
        .map(|h| (h.status.as_str(), h.reason.as_ref()))
        .collect();
    assert!(
        statuses.contains(&("accepted", None))
            && history.iter().any(|h| h.status == "rejected"
                && h.reason.as_ref().is_some_and(|r| r.contains("out of view"))),
        "{statuses:?}"
    );
    match milan.city.record(id).expect("the practice loads") {
        intercity_protocol::record::Record::Practice(p) => {
            assert_eq!(p.country.as_deref(), Some("IT"));
        }
        other => panic!("{other:?}"),
    }
    practice(&brno.city, "After the overwrites");
    assert!(
        eventually(WAIT, || titles(&milan.city)
            .contains(&"After the overwrites".to_string()))
        .await,
        "Milan stopped syncing"
    );
}

/// Scenario 5 (b): while an invitation is out, a guest opened sync streams and sent frames of
/// 8 MiB, each read into a buffer allocated from the length it claimed (64 streams at once):
/// half a gigabyte for a few seconds of loopback traffic. A guest now gets a handler that reads
/// 16 KiB at most, and a roster city still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_flooding_large_frames_costs_little_memory() {
    use futures::StreamExt;
    use libp2p::request_response::{self, ProtocolSupport};

    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    milan.trust(&brno).await;
    milan
        .city
        .invite(None, vec![milan.addr()], None, 1)
        .expect("invite");
    milan.net().roster_changed().await.expect("net");
    let before = rss();

    let mut guest = hostile::sync_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        Flood,
        ProtocolSupport::Outbound,
    );
    let milan_peer: libp2p::PeerId = milan.id().to_string().parse().expect("peer id");
    let addr: libp2p::Multiaddr = milan.addr().parse().expect("addr");
    guest.add_peer_address(milan_peer, addr);
    for _ in 0..128 {
        guest.behaviour_mut().send_request(&milan_peer, ());
    }
    let mut peak = 0u64;
    let mut done = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while done < 128 && tokio::time::Instant::now() < deadline {
        if let Ok(libp2p::swarm::SwarmEvent::Behaviour(
            request_response::Event::Message { .. }
            | request_response::Event::OutboundFailure { .. },
        )) = tokio::time::timeout(Duration::from_millis(100), guest.select_next_some()).await
        {
            done += 1;
        }
        peak = peak.max(rss());
    }
    // A roster city still connects.
    brno.dial(&milan).await;
    assert!(
        connects_within(&milan, &brno, Duration::from_secs(5)).await,
        "Brno could not connect during the flood"
    );
    let rise = peak.saturating_sub(before);
    eprintln!(
        "flood: {done} of 128 requests ended, RSS rose by {} KiB",
        rise / 1024
    );
    assert!(
        rise < 128 * 1024 * 1024,
        "the node's memory rose by {} MiB while a guest flooded it",
        rise / (1024 * 1024)
    );
}

/// Scenario 3: pending entries were kept per document, and every verdict on the document
/// decoded and judged all of them again: 10,000 hostile pending entries on one document made
/// each honest change to it cost seconds. They now wait for the change they miss, each author
/// may keep at most `MAX_PENDING_PER_AUTHOR` of them, and an honest change reads none.
#[test]
fn hostile_pending_entries_do_not_slow_honest_changes_to_their_document() {
    use intercity_protocol::ingest::{IngestError, MAX_PENDING_PER_AUTHOR, Status, Verdict};
    let tmp = tempfile::tempdir().expect("tmp");
    let milan =
        intercity_node::City::init_with_key(tmp.path(), "Milan", None, intercity_tests::key(1))
            .expect("init");
    let id = practice(&milan, "Makerspace");
    // Counted now, kept by every write from here on.
    assert_eq!(milan.store().entry_counts().expect("counts"), (1, 0, 0, 0));
    // Ten hostile authors, a thousand pending entries each, all on Milan's practice.
    for author in 0..10u8 {
        let key = intercity_tests::key(100 + author);
        let flood = hostile::pending_flood(&key, id, MAX_PENDING_PER_AUTHOR + 1);
        let verdicts = milan
            .ingest_remote_all(|batch| {
                flood
                    .iter()
                    .map(|w| batch.ingest(&w.entry, &w.payload))
                    .collect::<Vec<_>>()
            })
            .expect("store");
        let pending = verdicts
            .iter()
            .filter(|v| matches!(v, Ok(Verdict::Stored(Status::Pending))))
            .count() as u64;
        assert_eq!(pending, MAX_PENDING_PER_AUTHOR, "author {author}");
        // One more is over the author's quota (for the tenth author, the node's 10,000 too).
        assert!(
            matches!(
                verdicts.last(),
                Some(Err(
                    IngestError::PendingQuota(_) | IngestError::PendingFull(_)
                ))
            ),
            "the author's quota: {:?}",
            verdicts.last()
        );
    }
    assert_eq!(milan.store().entry_counts().expect("counts").2, 10_000);

    // An honest change from another city arrives: judged without touching the 10,000.
    let tmp2 = tempfile::tempdir().expect("tmp");
    let brno =
        intercity_node::City::init_with_key(tmp2.path(), "Brno", None, intercity_tests::key(2))
            .expect("init");
    for (stored, payload) in milan.store().doc_entries(&id).expect("entries") {
        if stored.status == Status::Accepted {
            brno.ingest_remote(&stored.entry.encode(), &payload.expect("payload"))
                .expect("genesis");
        }
    }
    milan
        .edit(id, "add Brno as editor", |r| {
            if let intercity_protocol::record::Record::Practice(p) = r {
                p.editors.push(brno.id().to_string());
            }
            Ok(())
        })
        .expect("edit");
    for (stored, payload) in milan.store().doc_entries(&id).expect("entries") {
        if stored.status == Status::Accepted {
            let _ = brno.ingest_remote(&stored.entry.encode(), &payload.expect("payload"));
        }
    }
    brno.edit(id, "edit", |r| {
        if let intercity_protocol::record::Record::Practice(p) = r {
            p.summary = "Edited in Brno".into();
        }
        Ok(())
    })
    .expect("brno edits");
    let (entry, payload) = brno
        .store()
        .doc_entries(&id)
        .expect("entries")
        .into_iter()
        .find(|(e, _)| e.entry.header.author == brno.id())
        .map(|(e, p)| (e.entry.encode().to_vec(), p.expect("payload")))
        .expect("brno's entry");
    let started = std::time::Instant::now();
    let verdict = milan.ingest_remote(&entry, &payload).expect("honest edit");
    let took = started.elapsed();
    eprintln!("honest change judged in {took:?} beside 10,000 pending entries");
    assert_eq!(verdict, Verdict::Stored(Status::Accepted));
    assert!(
        took < Duration::from_millis(50),
        "an honest change took {took:?} beside 10,000 pending entries"
    );
    match milan.record(id).expect("record") {
        intercity_protocol::record::Record::Practice(p) => assert_eq!(p.summary, "Edited in Brno"),
        other => panic!("not a practice: {other:?}"),
    }
}

/// Scenario 4: received entries were judged and written in the task that owns the swarm, so a
/// roster city pushing heavy entries at full rate delayed every other peer's entries (and
/// `status`). They are now judged by a worker that serves the peers in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_does_not_delay_another_peers_entries() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let mallory = TestNode::spawn("Mallory", 3).await;
    milan.link(&brno).await;
    mallory.link(&milan).await;
    practice(&brno.city, "Warm-up");
    assert!(
        eventually(WAIT, || titles(&milan.city)
            .contains(&"Warm-up".to_string()))
        .await,
        "no sync before the flood"
    );
    assert!(connects_within(&milan, &mallory, WAIT).await);

    let flood = hostile::heavy_practices(&mallory.city, 400, 60_000);
    let net = mallory.net().clone();
    let milan_id = milan.id();
    let pusher = tokio::spawn(async move {
        // Pushes of 16 entries (the most a node judges of one push), in order, faster than
        // Milan can judge them.
        for batch in flood.chunks(16) {
            if net.push_raw(&milan_id, batch.to_vec()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // Let the flood build up.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let _ = milan.status().await;
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = std::time::Instant::now();
    practice(&brno.city, "During the flood");
    let arrived = eventually(Duration::from_secs(10), || {
        titles(&milan.city).contains(&"During the flood".to_string())
    })
    .await;
    let took = started.elapsed();
    let flooded = milan.status().await;
    let from_mallory = flooded
        .peers
        .iter()
        .find(|p| p.id == mallory.id().to_string())
        .map_or(0, |p| p.accepted);
    eprintln!(
        "flood: status answered in {slowest:?} at worst; Brno's entry arrived in {took:?}; \
         {from_mallory} heavy entries from Mallory accepted by then"
    );
    pusher.abort();
    assert!(arrived, "Brno's entry never arrived during the flood");
    assert!(from_mallory > 0, "the flood did not reach Milan");
    assert!(
        slowest < Duration::from_millis(200),
        "status took {slowest:?} during the flood"
    );
    // 150–400 ms alone on the 2-core machine, up to 540 ms with the other hostile tests beside
    // it; behind the flood's queue (up to 64 pushes of 16 heavy entries) it would take seconds.
    assert!(
        took < Duration::from_millis(1_000),
        "Brno's entry took {took:?} to reach Milan during the flood"
    );
}

/// Scenario 6: only one peer fetches a feed at a time, so a roster city that claims a feed at
/// seq u64::MAX and answers each `Range` just before the timeout held that feed for everyone,
/// and was never penalized. Now another peer may fetch the feed once a fetch has waited an
/// anti-entropy period, an answer must start where it was asked, and a peer that claims entries
/// it does not serve is struck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holding_a_feed_hostage_is_bypassed_and_penalized() {
    use futures::StreamExt;
    use intercity_protocol::entry::{FeedId, Scope};
    use intercity_protocol::sync::{Request, Response};
    use libp2p::request_response;

    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    for n in 0..30 {
        practice(&brno.city, &format!("Brno practice {n}"));
    }
    let feed = FeedId {
        author: brno.id(),
        scope: Scope::Federation,
    };
    // Mallory, a roster city of Milan's, claims Brno's feed and stalls every range of it.
    let mallory_key = intercity_tests::key(3);
    milan
        .city
        .roster_add(mallory_key.id(), "Mallory", &[])
        .expect("roster");
    milan
        .city
        .roster_add(brno.id(), "Brno", &[])
        .expect("roster");
    milan.net().roster_changed().await.expect("net");
    let mut mallory = hostile::sync_peer(&mallory_key);
    mallory
        .dial(milan.addr().parse::<libp2p::Multiaddr>().expect("addr"))
        .expect("dial");
    let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let hostile = tokio::spawn(async move {
        let mut stalled = Vec::new();
        loop {
            tokio::select! {
                event = mallory.select_next_some() => {
                    if let libp2p::swarm::SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    }) = event
                    {
                        match request {
                            Request::Heads(_) => {
                                let _ = mallory
                                    .behaviour_mut()
                                    .send_response(channel, Response::Heads { heads: vec![(feed, u64::MAX, intercity_protocol::entry::Hash32::default())], more: false });
                            }
                            Request::Digest(_) => {
                                let _ = mallory.behaviour_mut().send_response(channel, Response::Differ);
                            }
                            Request::Range { .. } => {
                                let _ = asked_tx.send(());
                                stalled.push((tokio::time::Instant::now(), channel));
                            }
                            _ => {}
                        }
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            // Each range is answered, with nothing, just before Milan's 10 s timeout.
            while stalled
                .first()
                .is_some_and(|(at, _)| at.elapsed() > Duration::from_millis(9_000))
            {
                let (_, channel) = stalled.remove(0);
                let _ = mallory.behaviour_mut().send_response(
                    channel,
                    Response::Entries {
                        entries: Vec::new(),
                        more: true,
                    },
                );
            }
        }
    });
    tokio::time::timeout(WAIT, asked.recv())
        .await
        .expect("Milan asked Mallory for the feed");
    // Brno connects now: Milan has the feed from it within a few anti-entropy periods (1 s).
    let started = std::time::Instant::now();
    brno.dial(&milan).await;
    let complete = eventually(Duration::from_secs(5), || titles(&milan.city).len() == 30).await;
    eprintln!(
        "feed fetched from the honest peer in {:?} ({} of 30)",
        started.elapsed(),
        titles(&milan.city).len()
    );
    assert!(complete, "Mallory kept Brno's feed from Milan");
    // Mallory's empty answer to a feed it claimed is a strike.
    let struck = milan
        .strikes(&mallory_key.id().to_string(), Duration::from_secs(15))
        .await;
    hostile.abort();
    assert!(struck, "Mallory was not penalized");
}

/// Scenario 7: a roster city signs entries that every node rejects. A node used to keep (and
/// serve) every one of them for ever; now a feed holds at most `MAX_REJECTED_BYTES_PER_FEED`
/// bytes of rejected payload, after which nothing more is taken from it, and every node stops
/// at the same seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_of_rejected_entries_is_cut_off_at_its_budget() {
    use intercity_protocol::ingest::MAX_REJECTED_BYTES_PER_FEED;
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let mallory = TestNode::spawn("Mallory", 3).await;
    milan.link(&brno).await;
    mallory.link(&milan).await;
    brno.trust(&mallory).await; // Brno takes Mallory's entries, fetched from Milan
    let first = practice(&mallory.city, "Honest first");
    assert!(eventually(WAIT, || milan.city.record(first).is_ok()).await);

    let flood = hostile::rejected_flood(&mallory.city, 200, 100_000);
    // The budget is used up by the entry that brings the rejected bytes to the limit.
    let mut total = 0;
    let budget = 1 + flood
        .iter()
        .position(|e| {
            total += e.payload.len() as u64;
            total >= MAX_REJECTED_BYTES_PER_FEED
        })
        .expect("the flood exceeds the budget") as u64;
    for chunk in flood.chunks(8) {
        mallory
            .net()
            .push_raw(&milan.id(), chunk.to_vec())
            .await
            .expect("push");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mallory_feed = |node: &TestNode| {
        node.heads()
            .into_iter()
            .find(|(f, _)| f.author == mallory.id())
            .map_or(0, |(_, seq)| seq)
    };
    // Everything Milan will take has arrived once its rejected count settles.
    assert!(eventually(WAIT, || mallory_feed(&milan) > budget / 2).await);
    let mut last = (0, 0);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = (milan.status().await.entries.1, mallory_feed(&milan));
        if now == last {
            break;
        }
        last = now;
    }
    let (rejected, head) = last;
    eprintln!(
        "Milan keeps {rejected} rejected entries (budget {budget}); Mallory's feed head at {head}"
    );
    assert_eq!(rejected, budget, "Milan kept more than the budget");
    assert_eq!(
        head,
        1 + budget,
        "the feed is cut off right after its budget"
    );

    // Brno, fetching Mallory's feed from Milan, stops at the same seq.
    assert!(eventually(WAIT, || mallory_feed(&brno) == 1 + budget).await);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(mallory_feed(&brno), 1 + budget);
    assert_eq!(brno.status().await.entries.1, budget);
    // And honest sync goes on.
    practice(&brno.city, "After the flood");
    assert!(
        eventually(WAIT, || titles(&milan.city)
            .contains(&"After the flood".to_string()))
        .await
    );
}

/// What a peer is offered on one connection: the protocols the node's identify lists there.
async fn protocols_offered(node: &TestNode, keypair: libp2p::identity::Keypair) -> Vec<String> {
    use futures::StreamExt;
    let mut swarm = hostile::tcp_swarm(keypair, |key| {
        libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
            "/intercity/id/1".into(),
            key.public(),
        ))
    });
    swarm
        .dial(node.addr().parse::<libp2p::Multiaddr>().expect("addr"))
        .expect("dial");
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let libp2p::swarm::SwarmEvent::Behaviour(libp2p::identify::Event::Received {
                info,
                ..
            }) = swarm.select_next_some().await
            {
                return info.protocols;
            }
        }
    })
    .await
    .expect("identify answered");
    got.into_iter().map(|p| p.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_is_not_offered_the_relay_autonat_or_hole_punching() {
    // Any peer may connect as a guest for a while (to present an invitation). The relay,
    // AutoNAT and DCUtR must not serve it: a slot on the relay, dial-backs to addresses of its
    // choosing, or telling this node which address to publish.
    let mut cfg = intercity_tests::config(Duration::from_secs(1));
    cfg.relay_service = Some(true);
    let rome = TestNode::spawn_config("Rome", 41, cfg).await;
    let stranger = intercity_tests::key(42);
    let keypair =
        || libp2p::identity::Keypair::ed25519_from_bytes(stranger.secret_bytes()).expect("key");
    let guest = protocols_offered(&rome, keypair()).await;
    let nat = [
        "/libp2p/circuit/relay/0.2.0/hop",
        "/libp2p/circuit/relay/0.2.0/stop",
        "/libp2p/autonat/1.0.0",
    ];
    for p in nat.iter().chain(&["/libp2p/dcutr"]) {
        assert!(
            !guest.iter().any(|g| g == p),
            "a guest is offered {p}: {guest:?}"
        );
    }
    assert!(guest.iter().any(|g| g == "/intercity/sync/7"), "{guest:?}");
    // The same peer once in the roster is offered them (DCUtR only ever on relayed connections).
    rome.trust_key(&stranger, "Riga").await;
    let member = protocols_offered(&rome, keypair()).await;
    for p in nat {
        assert!(
            member.iter().any(|g| g == p),
            "a member is not offered {p}: {member:?}"
        );
    }
}

/// A roster city asks for one large range 64 times on one connection and reads none of the
/// answers. Each answer waited in its stream until the request timed out (20 s), with a second
/// copy beside it: peak RSS +210 MB for one connection's streams (seen; +126 MB in this test's
/// 4 s with the copy gone but no bound), renewable every 20 s with a few kilobytes of requests.
/// A peer now has at most 8 answers under way; its other requests wait their turn, unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_peer_leaves_unread_are_few_at_a_time() {
    use futures::StreamExt;
    use intercity_protocol::entry::{FeedId, Scope};
    use intercity_protocol::sync::Request;

    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    // Brno's feed, held by Milan: 30 practices of 90,000 random letters (2.7 MB; an answer
    // holds 2 MiB of it, about 1.3 MB once packed).
    for w in hostile::random_practices(&brno.city, 30, 90_000) {
        milan
            .city
            .ingest_remote(&w.entry, &w.payload)
            .expect("ingest");
    }
    let feed = FeedId {
        author: brno.id(),
        scope: Scope::Federation,
    };
    let mallory_key = intercity_tests::key(3);
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(mallory_key.secret_bytes())
        .expect("an ed25519 key");
    let mut mallory = hostile::sync_swarm(
        keypair,
        hostile::DeafSync,
        libp2p::request_response::ProtocolSupport::Full,
    );
    let peer = connect_raw(&milan, &mallory_key, &mut mallory).await;
    let before = peak_rss();
    for _ in 0..64 {
        mallory.behaviour_mut().send_request(
            &peer,
            Request::Range {
                feed,
                from: 1,
                max: 512,
            },
        );
    }
    // Mallory's swarm runs (its requests go out; it reads no answer) while Milan answers.
    let _ = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            mallory.select_next_some().await;
        }
    })
    .await;
    let grown = peak_rss().saturating_sub(before);
    eprintln!("peak RSS grew by {} MB", grown >> 20);
    assert!(grown < 64 << 20, "peak RSS grew by {} MB", grown >> 20);
}

/// A roster city that presents an invitation on its connection, again and again: each `Join`
/// took the invitations lock, a redemption and a store reader, with no limit (a guest has one
/// per connection). A roster city now has one per connection too; the next is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_city_presents_one_invitation_per_connection() {
    use futures::StreamExt;
    use intercity_protocol::sync::{Request, Response};
    use libp2p::request_response;

    let milan = TestNode::spawn("Milan", 1).await;
    let mallory_key = intercity_tests::key(3);
    let mut mallory = hostile::sync_peer(&mallory_key);
    let peer = connect_raw(&milan, &mallory_key, &mut mallory).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let join = Request::Join {
            token: "icj1-not-a-token".into(),
            name: "Mallory".into(),
            addrs: Vec::new(),
        };
        let id = mallory.behaviour_mut().send_request(&peer, join);
        let answer = tokio::time::timeout(WAIT, async {
            loop {
                if let libp2p::swarm::SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) = mallory.select_next_some().await
                    && request_id == id
                {
                    break response;
                }
            }
        })
        .await
        .expect("an answer");
        answers.push(answer);
    }
    eprintln!("answers: {answers:?}");
    assert!(
        matches!(&answers[0], Response::Error { code: 5, .. }),
        "{:?}",
        answers[0]
    );
    assert!(
        matches!(&answers[1], Response::Error { code: 3, message } if message.contains("one invitation")),
        "{:?}",
        answers[1]
    );
}

/// Puts `key`'s city in `milan`'s roster and connects `swarm` (a raw peer with that key) to
/// it; gives Milan's peer id.
async fn connect_raw<B: libp2p::swarm::NetworkBehaviour>(
    milan: &TestNode,
    key: &intercity_protocol::identity::CityKey,
    swarm: &mut libp2p::Swarm<B>,
) -> libp2p::PeerId {
    use futures::StreamExt;
    milan
        .city
        .roster_add(key.id(), "Mallory", &[])
        .expect("roster");
    milan.net().roster_changed().await.expect("net");
    swarm
        .dial(milan.addr().parse::<libp2p::Multiaddr>().expect("addr"))
        .expect("dial");
    loop {
        if let libp2p::swarm::SwarmEvent::ConnectionEstablished { peer_id, .. } =
            swarm.select_next_some().await
        {
            return peer_id;
        }
    }
}
