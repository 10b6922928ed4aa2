//! Every node decides the same (issue #11): a city never forks its own feed, real nodes on
//! 127.0.0.1.

use std::time::Duration;

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
    use intercity_protocol::sync::{Request, Response, WireEntry};
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
    let held: Vec<WireEntry> = first
        .store()
        .feed_range(&feed, 1, 16, usize::MAX)
        .expect("range")
        .into_iter()
        .map(|(e, payload)| WireEntry {
            entry: e.entry.encode().to_vec(),
            payload,
        })
        .collect();
    drop(first);

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
                                    .send_response(channel, Response::Heads(vec![(feed, 3)]));
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
