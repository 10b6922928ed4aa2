//! Every node decides the same (issue #11): a city never forks its own feed, real nodes on
//! 127.0.0.1.

use std::time::Duration;

use intercity_protocol::entry::{FeedId, Scope};
use intercity_protocol::record::Record;
use intercity_tests::{TestNode, eventually, practice, titles};

const WAIT: Duration = Duration::from_secs(20);

/// Scenario 4: a city whose store lost its latest entries (a crash before they were on disk, a
/// restored backup, a lost disk with the key kept) while its peers hold them. An edit made
/// before it has them back would sign a seq already published: a fork of its own feed, frozen
/// on every node for good. The node refuses local writes while a peer reports its own feed
/// ahead, and takes them again once it has fetched its entries back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_behind_its_own_feed_refuses_edits_until_it_has_it_back() {
    use futures::StreamExt;
    use intercity_protocol::entry::{FeedId, Scope};
    use intercity_protocol::sync::{Request, Response};
    use libp2p::request_response;

    // Milan's first life: three practices, which Brno holds.
    let before = tempfile::tempdir().expect("tmp");
    let first =
        intercity_node::City::init_with_key(before.path(), "Milan", None, intercity_tests::key(1))
            .expect("init");
    for n in 0..3 {
        practice(&first, &format!("Before the loss {n}"));
    }
    let feed = FeedId {
        author: first.id(),
        scope: Scope::Federation,
    };
    let held = intercity_tests::wire_entries(&first, &feed);
    drop(first);
    let head_hash =
        intercity_protocol::entry::SignedEntry::decode(&held.last().expect("three entries").entry)
            .expect("decodes")
            .hash();

    // Milan again, from the same key and an empty store. Brno (a raw peer) reports Milan's
    // feed at 3 and answers the range only after a while.
    let milan = TestNode::spawn("Milan", 1).await;
    let brno_key = intercity_tests::key(2);
    milan
        .city
        .roster_add(brno_key.id(), "Brno", &[])
        .expect("roster");
    milan.net().roster_changed().await.expect("net");
    let mut brno = intercity_tests::hostile::sync_peer(&brno_key);
    brno.dial(milan.addr().parse::<libp2p::Multiaddr>().expect("addr"))
        .expect("dial");
    let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let peer = tokio::spawn(async move {
        let mut waiting = Vec::new();
        loop {
            tokio::select! {
                event = brno.select_next_some() => {
                    if let libp2p::swarm::SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    }) = event
                    {
                        match request {
                            Request::Heads(_) => {
                                let _ = brno
                                    .behaviour_mut()
                                    .send_response(channel, Response::Heads { heads: vec![(feed, 3, head_hash)], more: false });
                            }
                            Request::Digest(_) => {
                                let _ = brno.behaviour_mut().send_response(channel, Response::Differ);
                            }
                            Request::Range { .. } => {
                                let _ = asked_tx.send(());
                                waiting.push((tokio::time::Instant::now(), channel));
                            }
                            _ => {}
                        }
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            while waiting
                .first()
                .is_some_and(|(at, _)| at.elapsed() > Duration::from_millis(2_000))
            {
                let (_, channel) = waiting.remove(0);
                let _ = brno.behaviour_mut().send_response(
                    channel,
                    Response::Entries {
                        entries: held.clone(),
                        more: false,
                    },
                );
            }
        }
    });
    tokio::time::timeout(WAIT, asked.recv())
        .await
        .expect("Milan asked Brno for its own feed");

    // Milan knows it is behind: an edit now is refused, and says why.
    let p = intercity_protocol::record::Practice::new(milan.id().to_string(), "Too early", "en");
    let early = milan.city.create(&p.into(), "create");
    let refused = early.as_ref().err().map(ToString::to_string);
    eprintln!("edit while behind: {refused:?}");
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("seq 3")),
        "an edit while behind its own feed was not refused: {early:?}"
    );
    // Once its entries are back, it writes on from seq 4, and nothing forked.
    assert!(eventually(WAIT, || titles(&milan.city).len() == 3).await);
    practice(&milan.city, "After the recovery");
    let head = milan
        .heads()
        .into_iter()
        .find(|(f, _)| *f == feed)
        .map(|(_, seq)| seq);
    assert_eq!(head, Some(4));
    assert_eq!(milan.status().await.forks, 0);
    peer.abort();
}

/// One branch's entries as (entry, payload).
type Branch = Vec<(Vec<u8>, Vec<u8>)>;
/// Two branches of one feed, and its author.
type Histories = (Branch, Branch, intercity_protocol::identity::CityId);

/// Mallory's feed signed twice: `shared` practices both branches hold, then `a` on one branch
/// and `b` on the other. Returns each branch's entries (entry, payload), and Mallory's id.
fn two_histories(shared: usize, a: &[&str], b: &[&str]) -> Histories {
    use intercity_node::City;
    use intercity_protocol::entry::{FeedId, Scope};
    let (da, db) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let branch_a =
        City::init_with_key(da.path(), "Mallory", None, intercity_tests::key(3)).expect("init");
    let branch_b =
        City::init_with_key(db.path(), "Mallory", None, intercity_tests::key(3)).expect("init");
    let feed = FeedId {
        author: branch_a.id(),
        scope: Scope::Federation,
    };
    let entries = |city: &City| -> Vec<(Vec<u8>, Vec<u8>)> {
        city.store()
            .feed_range(&feed, 1, 64, usize::MAX)
            .expect("range")
            .into_iter()
            .map(|(e, p)| (e.entry.encode().to_vec(), p))
            .collect()
    };
    for n in 0..shared {
        practice(&branch_a, &format!("Shared {n}"));
    }
    for (e, p) in entries(&branch_a) {
        branch_b.ingest_remote(&e, &p).expect("the shared start");
    }
    for title in a {
        practice(&branch_a, title);
    }
    for title in b {
        practice(&branch_b, title);
    }
    (entries(&branch_a), entries(&branch_b), branch_a.id())
}

/// Milan holding one of Mallory's histories and Brno the other, linked.
async fn holding((a, b, mallory): Histories) -> (TestNode, TestNode) {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    for (node, branch) in [(&milan, a), (&brno, b)] {
        node.city
            .roster_add(mallory, "Mallory", &[])
            .expect("roster");
        for (e, p) in branch {
            node.city.ingest_remote(&e, &p).expect("its branch");
        }
    }
    milan.link(&brno).await;
    (milan, brno)
}

/// Scenario 1, different lengths: Mallory signs one history (seq 1-5) to Milan and another
/// (the same 1-2, then a different 3-8) to Brno. Milan, fetching seq 6 from Brno, gets an
/// entry that does not chain on its seq 5. That is Mallory's doing, not Brno's: Milan used to
/// count it as a strike against Brno (and ban it after five) and never saw the fork. Now it
/// fetches Brno's seq 5, which proves the fork, and freezes the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_by_length_is_detected_and_the_relay_is_not_struck() {
    let a = ["Branch A 2", "Branch A 3", "Branch A 4"];
    let b = [
        "Branch B 2",
        "Branch B 3",
        "Branch B 4",
        "Branch B 5",
        "Branch B 6",
        "Branch B 7",
    ];
    let (milan, brno) = holding(two_histories(2, &a, &b)).await;
    // Milan saw it; and several anti-entropy rounds later, Brno was never struck for it.
    assert!(
        eventually(WAIT, || milan
            .city
            .store()
            .forks()
            .is_ok_and(|f| f.len() == 1))
        .await,
        "Milan did not see the fork"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let brno_id = brno.id().to_string();
    let struck: u64 = milan
        .status()
        .await
        .peers
        .iter()
        .filter(|p| p.id == brno_id)
        .map(|p| p.invalid)
        .sum();
    assert_eq!(
        struck, 0,
        "Brno relayed Mallory's entries and was struck for them"
    );
    practice(&brno.city, "Brno still syncs");
    assert!(
        eventually(WAIT, || titles(&milan.city)
            .contains(&"Brno still syncs".to_string()))
        .await
    );
}

/// Scenario 1, same length: Mallory signs a different seq 3 for Milan and for Brno. Heads used
/// to carry only (feed, seq): both nodes showed different content under one record for ever
/// and nobody noticed. Heads now carry the head's hash, and each node fetches the other's
/// entry at that seq, which proves the fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocation_at_the_same_seq_is_detected_by_both() {
    let histories = two_histories(2, &["What Milan is told"], &["What Brno is told"]);
    let mallory = histories.2;
    let (milan, brno) = holding(histories).await;
    let forked = |node: &TestNode| node.city.store().forks().is_ok_and(|f| f.len() == 1);
    assert!(
        eventually(WAIT, || forked(&milan) && forked(&brno)).await,
        "the equivocation went unnoticed (Milan {}, Brno {})",
        forked(&milan),
        forked(&brno)
    );
    for node in [&milan, &brno] {
        let status = node.status().await;
        assert!(
            status.peers.iter().all(|p| p.invalid == 0),
            "an honest peer was struck"
        );
        // `status` names the forked city.
        assert_eq!(
            status.forked,
            vec![format!("{mallory} in federation at seq 3")]
        );
    }
}

/// Five cities split 2 | 3 for a while; both sides edit the same agenda (items added on each
/// side, the venue set on both); then the partition heals. Every city ends with the same
/// record: every item once, one venue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_with_nothing_lost_or_duplicated() {
    use intercity_protocol::record::{Agenda, Group, Item, Member, Record, Role};
    let names = ["Milan", "Brno", "Warsaw", "Utrecht", "Porto"];
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        nodes.push(TestNode::spawn(name, i as u8 + 1).await);
    }
    for a in &nodes {
        for b in &nodes {
            if a.id() != b.id() {
                a.city
                    .roster_add(b.id(), &b.city.profile().name, &[])
                    .expect("roster");
            }
        }
    }
    for i in 0..nodes.len() {
        nodes[i].dial(&nodes[(i + 1) % nodes.len()]).await; // a ring
    }
    let chair = &nodes[0].city;
    let mut g = Group::new("Mobility", chair.id().to_string(), "Milan");
    for n in &nodes[1..] {
        g.members.insert(
            n.id().to_string(),
            Member {
                name: n.city.profile().name.clone(),
                role: Role::Member,
            },
        );
    }
    let aid = "b0b0b0b0b0b0b0b0".to_string();
    g.agendas
        .insert(aid.clone(), Agenda::new("Meeting in Porto", "2027-05-10"));
    let gid = chair.create(&Record::Group(g), "create").expect("group");
    let agenda = |node: &TestNode| match node.city.record(gid) {
        Ok(Record::Group(g)) => g.agendas.get(&aid).cloned(),
        _ => None,
    };
    assert!(eventually(WAIT, || nodes.iter().all(|n| agenda(n).is_some())).await);

    // The partition: {Milan, Brno} | {Warsaw, Utrecht, Porto}.
    let (left, right) = nodes.split_at(2);
    for (a, b) in left.iter().flat_map(|a| right.iter().map(move |b| (a, b))) {
        a.city.roster_block(&b.id()).expect("block");
        b.city.roster_block(&a.id()).expect("block");
    }
    for n in &nodes {
        n.net().roster_changed().await.expect("net");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let edit = |node: &TestNode, title: String, venue: Option<String>| {
        let aid = aid.clone();
        node.city
            .edit(gid, "edit", move |r| {
                if let Record::Group(g) = r {
                    let a = g.agendas.get_mut(&aid).expect("agenda");
                    a.items.push(Item::new(title));
                    if let Some(v) = venue {
                        a.venue = v;
                    }
                }
                Ok(())
            })
            .expect("edit");
    };
    for (i, node) in nodes.iter().enumerate() {
        let venue = (i == 0 || i == 3).then(|| format!("Venue chosen in {}", names[i]));
        edit(node, format!("Item from {}", names[i]), venue);
    }
    edit(&nodes[1], "Second item from Brno".into(), None);
    edit(&nodes[4], "Second item from Porto".into(), None);
    // While split, each side converges on its own edits only.
    assert!(
        eventually(WAIT, || agenda(&nodes[0])
            .is_some_and(|a| a.items.len() == 3)
            && agenda(&nodes[2]).is_some_and(|a| a.items.len() == 4))
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(agenda(&nodes[0]).map(|a| a.items.len()), Some(3));

    // Heal.
    for (a, b) in left.iter().flat_map(|a| right.iter().map(move |b| (a, b))) {
        a.city
            .roster_add(b.id(), &b.city.profile().name, &[b.addr()])
            .expect("roster");
        b.city
            .roster_add(a.id(), &a.city.profile().name, &[])
            .expect("roster");
    }
    for n in &nodes {
        n.net().roster_changed().await.expect("net");
    }
    let converged = || {
        let first = agenda(&nodes[0]);
        first.as_ref().is_some_and(|a| a.items.len() == 7)
            && nodes.iter().all(|n| agenda(n) == first)
    };
    assert!(
        eventually(WAIT, converged).await,
        "the sides did not converge"
    );
    let a = agenda(&nodes[0]).expect("agenda");
    let mut titles: Vec<&str> = a.items.iter().map(|i| i.title.as_str()).collect();
    titles.sort_unstable();
    titles.dedup();
    assert_eq!(
        titles.len(),
        7,
        "an item was lost or duplicated: {:?}",
        a.items
    );
    assert!(a.venue.starts_with("Venue chosen in "), "{}", a.venue);
    for n in &nodes {
        assert_eq!(n.status().await.forks, 0);
    }
}

/// Scenario 1, fork proofs travel: Warsaw holds the same branch as Milan and syncs only with
/// Milan, so nothing in its own sync shows the fork. Milan, once it has found the fork (from
/// Brno), hands Warsaw the proof; Warsaw checks it and freezes the feed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_proof_reaches_a_node_that_never_saw_the_other_branch() {
    let (a, b, mallory) = two_histories(2, &["What Milan is told"], &["What Brno is told"]);
    let (milan, brno) = holding((a.clone(), b, mallory)).await;
    let warsaw = TestNode::spawn("Warsaw", 4).await;
    warsaw
        .city
        .roster_add(mallory, "Mallory", &[])
        .expect("roster");
    for (e, p) in &a {
        warsaw.city.ingest_remote(e, p).expect("Milan's branch");
    }
    let forked = |node: &TestNode| node.city.store().forks().is_ok_and(|f| f.len() == 1);
    assert!(eventually(WAIT, || forked(&milan) && forked(&brno)).await);
    warsaw.link(&milan).await;
    assert!(
        eventually(WAIT, || forked(&warsaw)).await,
        "Warsaw never learned of the fork"
    );
    assert_eq!(
        warsaw.status().await.forked,
        vec![format!("{mallory} in federation at seq 3")]
    );
    assert!(
        milan.status().await.peers.iter().all(|p| p.invalid == 0)
            && warsaw.status().await.peers.iter().all(|p| p.invalid == 0)
    );
}

/// The other side of scenario 4: a hostile roster city claims this city's own feed at
/// u64::MAX and serves nothing. The claim must not stop this city's edits for good: it holds
/// only while the peer backs it, and a refused or empty answer ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_claim_on_a_citys_own_feed_does_not_block_it() {
    use intercity_protocol::entry::{FeedId, Hash32, Scope};
    use intercity_protocol::sync::{Request, Response};

    let milan = TestNode::spawn("Milan", 1).await;
    practice(&milan.city, "Before the claim");
    let feed = FeedId {
        author: milan.id(),
        scope: Scope::Federation,
    };
    let mallory_key = intercity_tests::key(3);
    milan.trust_key(&mallory_key, "Mallory").await;
    let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let peer = intercity_tests::hostile::answering(&mallory_key, &milan.addr(), move |request| {
        match request {
            Request::Heads(_) => Response::Heads {
                heads: vec![(feed, u64::MAX, Hash32([9; 32]))],
                more: false,
            },
            Request::Range { .. } => {
                let _ = asked_tx.send(());
                Response::Error {
                    code: 4,
                    message: "busy".into(),
                }
            }
            _ => Response::Error {
                code: 3,
                message: "no".into(),
            },
        }
    });
    tokio::time::timeout(WAIT, asked.recv())
        .await
        .expect("Milan asked Mallory for its own feed");
    let p = intercity_protocol::record::Practice::new(milan.id().to_string(), "After", "en");
    let record = intercity_protocol::record::Record::from(p);
    assert!(
        eventually(WAIT, || milan.city.create(&record, "create").is_ok()).await,
        "a false claim blocked Milan's edits"
    );
    peer.abort();
}

/// A peer whose heads show a feed at this node's seq with another hash gets a fork probe; one
/// that then serves the very entry this node holds made the difference up. That is a strike
/// (else it could make the node probe at every heads exchange for nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_head_hash_is_a_strike() {
    use intercity_protocol::entry::{FeedId, Hash32, Scope};
    use intercity_protocol::sync::{Request, Response};

    let milan = TestNode::spawn("Milan", 1).await;
    for n in 0..2 {
        practice(&milan.city, &format!("Practice {n}"));
    }
    let feed = FeedId {
        author: milan.id(),
        scope: Scope::Federation,
    };
    let held = intercity_tests::wire_entries(&milan.city, &feed);
    let mallory_key = intercity_tests::key(3);
    milan.trust_key(&mallory_key, "Mallory").await;
    let peer = intercity_tests::hostile::answering(&mallory_key, &milan.addr(), move |request| {
        match request {
            Request::Heads(_) => Response::Heads {
                heads: vec![(feed, 2, Hash32([9; 32]))],
                more: false,
            },
            Request::Range { from, .. } => Response::Entries {
                entries: held.iter().skip(from as usize - 1).cloned().collect(),
                more: false,
            },
            _ => Response::Forks(Vec::new()),
        }
    });
    let struck = milan.strikes(&mallory_key.id().to_string(), WAIT).await;
    peer.abort();
    assert!(struck, "a made-up head hash cost Mallory nothing");
    assert_eq!(milan.status().await.forks, 0);
}

/// Scenario 1, settled: Mallory's two branches reach three cities in different orders: Milan
/// holds branch A, Brno branch B, Warsaw the shared start and the first entry of branch B, and
/// each learns the rest from the others. Freezing the feed used to leave each node with the
/// branch it saw first, for ever. Every node now settles a forked feed by the same rule: the
/// entries from the fork's seq on are void, on every node, whatever order they came in. All
/// three end with the same records (the shared ones), and nobody honest is struck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_feed_is_settled_the_same_everywhere() {
    let (a, b, mallory) = two_histories(
        2,
        &["Branch A 3", "Branch A 4"],
        &["Branch B 3", "Branch B 4", "Branch B 5"],
    );
    let (milan, brno) = holding((a, b.clone(), mallory)).await;
    let warsaw = TestNode::spawn("Warsaw", 4).await;
    warsaw
        .city
        .roster_add(mallory, "Mallory", &[])
        .expect("roster");
    for (e, p) in &b[..3] {
        warsaw
            .city
            .ingest_remote(e, p)
            .expect("the start of Brno's branch");
    }
    warsaw.link(&milan).await;
    let shared = vec!["Shared 0".to_string(), "Shared 1".to_string()];
    let settled = || {
        [&milan, &brno, &warsaw]
            .iter()
            .all(|n| titles(&n.city) == shared)
    };
    assert!(
        eventually(WAIT, settled).await,
        "the nodes did not settle the fork the same way: Milan {:?}, Brno {:?}, Warsaw {:?}",
        titles(&milan.city),
        titles(&brno.city),
        titles(&warsaw.city)
    );
    for node in [&milan, &brno, &warsaw] {
        let status = node.status().await;
        assert_eq!(
            status.forked,
            vec![format!("{mallory} in federation at seq 3")]
        );
        assert!(
            status.peers.iter().all(|p| p.invalid == 0),
            "an honest peer was struck"
        );
        // The void entries are kept, as rejected, with the rule's reason.
        let history = node.city.store().entry_counts().expect("counts");
        assert!(history.1 >= 1, "no entry was voided: {history:?}");
    }
}

/// Scenario 1, settled, for an honest member: Brno edits a group on top of Mallory's branch A;
/// the fork reaches it and its document is built again without those changes (its own edit
/// included). Its next edit must not reuse the (actor, seq) of its void edit: Warsaw, which
/// still holds the void edit when the new one comes, would refuse it (Automerge keeps one
/// change per actor and seq), while a node that settled first takes it. Brno now edits a
/// rebuilt document with a fresh actor, and both nodes end the same.
#[test]
fn an_edit_after_a_settlement_is_taken_everywhere() {
    use intercity_node::City;
    use intercity_protocol::record::{Group, Item, Member, Role};
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let init = |i: usize, name: &str, seed: u8| {
        City::init_with_key(dirs[i].path(), name, None, intercity_tests::key(seed)).expect("init")
    };
    let (mallory_a, mallory_b, brno) = (
        init(0, "Mallory", 3),
        init(1, "Mallory", 3),
        init(2, "Brno", 2),
    );
    let (warsaw, riga) = (init(3, "Warsaw", 4), init(4, "Riga", 5));
    let mut g = Group::new(
        "Smart Social Inclusion",
        mallory_a.id().to_string(),
        "Milan",
    );
    g.members.insert(
        brno.id().to_string(),
        Member {
            name: "Brno".into(),
            role: Role::Member,
        },
    );
    let id = mallory_a
        .create(&Record::Group(g), "create")
        .expect("group");
    let entries = |city: &City| {
        intercity_tests::wire_entries(
            city,
            &FeedId {
                author: mallory_a.id(),
                scope: Scope::Group(id),
            },
        )
    };
    let genesis = entries(&mallory_a);
    for city in [&mallory_b, &brno, &warsaw, &riga] {
        for w in &genesis {
            city.ingest_remote(&w.entry, &w.payload).expect("genesis");
        }
    }
    let add = |city: &City, title: &str| {
        let title = title.to_string();
        city.edit(id, "add", move |r| {
            if let Record::Group(g) = r {
                let agenda = g
                    .agendas
                    .entry("a1a1a1a1a1a1a1a1".into())
                    .or_insert_with(|| {
                        intercity_protocol::record::Agenda::new("Study visit", "2027-02-23")
                    });
                let mut item = Item::new(title.clone());
                item.id = format!("{:016x}", title.len() as u64 * 7919);
                agenda.items.push(item);
            }
            Ok(())
        })
        .expect("edit");
    };
    add(&mallory_a, "A one");
    add(&mallory_b, "B one");
    let (a, b) = (entries(&mallory_a), entries(&mallory_b));
    brno.ingest_remote(&a[1].entry, &a[1].payload)
        .expect("branch A");
    add(&brno, "Brno on branch A");
    let brno_feed = FeedId {
        author: brno.id(),
        scope: Scope::Group(id),
    };
    let void_edit = intercity_tests::wire_entries(&brno, &brno_feed);
    assert_eq!(
        brno.ingest_remote(&b[1].entry, &b[1].payload)
            .expect("the fork"),
        intercity_protocol::ingest::Verdict::Fork
    );
    add(&brno, "Brno after the settlement");
    let brno_entries = intercity_tests::wire_entries(&brno, &brno_feed);
    // Warsaw: branch A, Brno's void edit and its new one, then the fork. Riga: the fork first.
    for w in [&a[1]].into_iter().chain(&brno_entries).chain([&b[1]]) {
        let _ = warsaw.ingest_remote(&w.entry, &w.payload);
    }
    for w in [&a[1], &b[1]].into_iter().chain(&brno_entries) {
        let _ = riga.ingest_remote(&w.entry, &w.payload);
    }
    assert_eq!(void_edit.len(), 1);
    let last = brno_entries.last().expect("the new edit");
    let status = |city: &City| {
        let seq = intercity_protocol::entry::SignedEntry::decode(&last.entry)
            .expect("entry")
            .header
            .seq;
        intercity_protocol::ingest::Ledger::entry(city.store(), &brno_feed, seq)
            .expect("entry")
            .expect("held")
            .status
    };
    assert_eq!(
        status(&warsaw),
        intercity_protocol::ingest::Status::Accepted
    );
    assert_eq!(status(&riga), intercity_protocol::ingest::Status::Accepted);
    let json = |city: &City| city.record(id).expect("record").to_json();
    assert_eq!(json(&warsaw), json(&riga));
    assert_eq!(json(&warsaw), json(&brno));
}

/// Removal is final (issue #11, scenario 3), between real nodes. Milan chairs a group with Brno
/// and Warsaw. While Milan is apart, it removes Brno; Brno, not having seen that, adds an item,
/// and Warsaw builds on Brno's item. Then the three connect. On the old code Brno's item stayed
/// (a change made without seeing the removal was judged at its own dependencies, where Brno was
/// a member). Now Milan and Warsaw void Brno's item and Warsaw's change built on it, and show
/// the same group, without Brno. (Brno is not served the group any more, §12.7: its own node
/// does not learn of the removal from them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_s_unseen_edits_are_void_on_every_node() {
    use intercity_protocol::entry::{FeedId, Scope};
    use intercity_protocol::record::{Agenda, Group, Item, Member, Role};

    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let warsaw = TestNode::spawn("Warsaw", 4).await;
    let mut g = Group::new("Smart Social Inclusion", milan.id().to_string(), "Milan");
    for (node, name) in [(&brno, "Brno"), (&warsaw, "Warsaw")] {
        g.members.insert(
            node.id().to_string(),
            Member {
                name: name.into(),
                role: Role::Member,
            },
        );
    }
    g.agendas.insert(
        "a1a1a1a1a1a1a1a1".into(),
        Agenda::new("Study visit", "2027-02-23"),
    );
    let id = milan
        .city
        .create(&Record::Group(g), "create")
        .expect("group");
    let feed_of = |node: &TestNode| FeedId {
        author: node.id(),
        scope: Scope::Group(id),
    };
    let hand = |from: &TestNode, to: &TestNode| {
        for w in intercity_tests::wire_entries(&from.city, &feed_of(from)) {
            let _ = to.city.ingest_remote(&w.entry, &w.payload);
        }
    };
    hand(&milan, &brno);
    hand(&milan, &warsaw);
    let add = |node: &TestNode, title: &str| {
        let title = title.to_string();
        node.city
            .edit(id, "add an item", move |r| {
                if let Record::Group(g) = r {
                    let mut item = Item::new(title.clone());
                    item.id = format!("{:016x}", title.len() as u64 * 7919);
                    g.agendas
                        .get_mut("a1a1a1a1a1a1a1a1")
                        .expect("agenda")
                        .items
                        .push(item);
                }
                Ok(())
            })
            .expect("edit");
    };
    let brno_id = brno.id().to_string();
    milan
        .city
        .edit(id, "remove Brno", move |r| {
            if let Record::Group(g) = r {
                g.members.remove(&brno_id);
            }
            Ok(())
        })
        .expect("removal");
    add(&brno, "Brno's item");
    hand(&brno, &warsaw);
    add(&warsaw, "Warsaw's item on Brno's");
    // Everyone meets.
    milan.link(&brno).await;
    milan.link(&warsaw).await;
    brno.link(&warsaw).await;
    let heads = |node: &TestNode| {
        [&milan, &brno, &warsaw]
            .iter()
            .map(|n| {
                intercity_protocol::ingest::Ledger::head(node.city.store(), &feed_of(n))
                    .expect("head")
                    .map(|h| h.seq)
            })
            .collect::<Vec<_>>()
    };
    let expected = vec![Some(2), Some(1), Some(1)];
    assert!(
        eventually(WAIT, || [&milan, &warsaw]
            .iter()
            .all(|n| heads(n) == expected))
        .await,
        "the entries did not spread: Milan {:?}, Brno {:?}, Warsaw {:?}",
        heads(&milan),
        heads(&brno),
        heads(&warsaw)
    );
    for node in [&milan, &warsaw] {
        for (author, why) in [
            (&brno, "its author had lost this right"),
            (&warsaw, "depends on a change void by a removal"),
        ] {
            let status =
                intercity_protocol::ingest::Ledger::entry(node.city.store(), &feed_of(author), 1)
                    .expect("entry")
                    .expect("held")
                    .status;
            assert!(
                status.is_void() && status.reason().is_some_and(|r| r.contains(why)),
                "{}: {status:?}",
                node.city.profile().name
            );
        }
        let Record::Group(g) = node.city.record(id).expect("record") else {
            panic!("a group")
        };
        assert!(g.agendas["a1a1a1a1a1a1a1a1"].items.is_empty());
        assert!(!g.members.contains_key(&brno.id().to_string()));
    }
    let json = |node: &TestNode| node.city.record(id).expect("record").to_json();
    assert_eq!(json(&milan), json(&warsaw));
}
