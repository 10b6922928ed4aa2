//! Multi-node end-to-end tests: real nodes (libp2p on 127.0.0.1, RocksDB in temp dirs) that
//! sync, and what converged.

use std::time::Duration;

use intercity_node::City;
use intercity_node::catalog::Query;
use intercity_protocol::entry::{DocId, FeedId, Hash32, Scope, sign_entry};
use intercity_protocol::record::{Agenda, Group, Item, Member, Record, Role};
use intercity_protocol::sync::WireEntry;
use intercity_tests::{TestNode, eventually, key, practice, titles};

const WAIT: Duration = Duration::from_secs(20);

fn group(chair: &City, members: &[&City]) -> (DocId, String) {
    let mut g = Group::new(
        "Smart Social Inclusion",
        chair.id().to_string(),
        chair.profile().name.clone(),
    );
    for m in members {
        g.members.insert(
            m.id().to_string(),
            Member {
                name: m.profile().name.clone(),
                role: Role::Member,
            },
        );
    }
    let aid = "a0a0a0a0a0a0a0a0".to_string();
    g.agendas
        .insert(aid.clone(), Agenda::new("Study visit Milan", "2017-02-23"));
    (
        chair
            .create(&Record::Group(g), "create group")
            .expect("group"),
        aid,
    )
}

fn add_item(city: &City, gid: DocId, aid: &str, title: &str) {
    let aid = aid.to_string();
    let title = title.to_string();
    city.edit(gid, "add item", move |r| {
        if let Record::Group(g) = r {
            g.agendas
                .get_mut(&aid)
                .expect("agenda")
                .items
                .push(Item::new(title));
        }
        Ok(())
    })
    .expect("edit");
}

fn items(city: &City, gid: DocId, aid: &str) -> Vec<String> {
    match city.record(gid) {
        Ok(Record::Group(g)) => g.agendas[aid]
            .items
            .iter()
            .map(|i| i.title.clone())
            .collect(),
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sync_both_ways_while_running() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    milan.link(&brno).await;
    practice(&milan.city, "FabriQ");
    practice(&brno.city, "Brno makerspace");
    let both = vec!["Brno makerspace".to_string(), "FabriQ".to_string()];
    assert!(
        eventually(WAIT, || titles(&milan.city) == both
            && titles(&brno.city) == both)
        .await,
        "milan {:?} brno {:?}",
        titles(&milan.city),
        titles(&brno.city)
    );
    // A later edit travels too.
    let id = practice(&milan.city, "OpenCare");
    milan
        .city
        .edit(id, "summary", |r| {
            if let Record::Practice(p) = r {
                p.summary = "participatory care".into();
            }
            Ok(())
        })
        .expect("edit");
    assert!(eventually(WAIT, || matches!(brno.city.record(id), Ok(Record::Practice(p)) if p.summary == "participatory care")).await);
    // The catalog is written in the same batch as the entry: searchable once accepted.
    let found = brno
        .city
        .query(&Query {
            text: Some("participatory".into()),
            ..Query::default()
        })
        .expect("search");
    assert_eq!(found.hits.len(), 1, "{found:?}");
    assert_eq!(found.hits[0].unit.id, id.to_string());
    assert_eq!(found.hits[0].unit.title, "OpenCare");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_five_converges_and_gossip_crosses_it_without_anti_entropy() {
    // Anti-entropy far beyond the test's patience: only the initial exchange and gossip count.
    let mut nodes = Vec::new();
    for i in 0..5u8 {
        nodes.push(
            TestNode::spawn_with(&format!("City {i}"), 10 + i, Duration::from_secs(3600)).await,
        );
    }
    // Everyone trusts everyone (one federation), but each dials only its right neighbour.
    for a in &nodes {
        for b in &nodes {
            if a.id() != b.id() {
                a.trust(b).await;
            }
        }
    }
    practice(&nodes[2].city, "From the middle");
    for i in 0..4 {
        nodes[i].dial(&nodes[i + 1]).await;
    }
    assert!(
        eventually(WAIT, || nodes.iter().all(|n| titles(&n.city).len() == 1)).await,
        "initial convergence"
    );
    // Let gossipsub form its mesh, then publish at one end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = std::time::Instant::now();
    practice(&nodes[0].city, "Live from the end");
    assert!(
        eventually(Duration::from_secs(10), || titles(&nodes[4].city).len()
            == 2)
        .await,
        "gossip did not cross the chain"
    );
    eprintln!(
        "one entry crossed 4 hops in {} ms",
        start.elapsed().as_millis()
    );
    assert!(eventually(WAIT, || nodes.iter().all(|n| n.heads() == nodes[0].heads())).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_cities_edit_one_agenda_concurrently_and_keep_every_item_in_one_order() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let porto = TestNode::spawn("Porto", 3).await;
    milan.link(&brno).await;
    brno.link(&porto).await;
    porto.link(&milan).await;
    let (gid, aid) = group(&milan.city, &[&brno.city, &porto.city]);
    assert!(
        eventually(WAIT, || brno.city.record(gid).is_ok()
            && porto.city.record(gid).is_ok())
        .await
    );
    // Concurrent edits: each city adds items on its own copy at the same time.
    add_item(&milan.city, gid, &aid, "Makerspace visit");
    add_item(&brno.city, gid, &aid, "Brno's social housing");
    add_item(&porto.city, gid, &aid, "Porto's civic labs");
    add_item(&brno.city, gid, &aid, "Brno's second item");
    let done = || {
        let m = items(&milan.city, gid, &aid);
        m.len() == 4 && m == items(&brno.city, gid, &aid) && m == items(&porto.city, gid, &aid)
    };
    assert!(
        eventually(WAIT, done).await,
        "milan {:?} brno {:?} porto {:?}",
        items(&milan.city, gid, &aid),
        items(&brno.city, gid, &aid),
        items(&porto.city, gid, &aid)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_catches_up_without_loss_or_duplicates() {
    let milan = TestNode::spawn("Milan", 1).await;
    let mut brno = TestNode::spawn("Brno", 2).await;
    brno.link(&milan).await;
    practice(&milan.city, "Before the outage");
    assert!(eventually(WAIT, || titles(&brno.city).len() == 1).await);
    brno.stop().await;
    for i in 0..20 {
        practice(&milan.city, &format!("During the outage {i}"));
    }
    let brno = brno.restart().await;
    brno.dial(&milan).await;
    assert!(
        eventually(WAIT, || titles(&brno.city).len() == 21).await,
        "brno has {}",
        titles(&brno.city).len()
    );
    assert_eq!(titles(&brno.city), titles(&milan.city));
    assert_eq!(
        brno.city.store().entry_counts().expect("counts"),
        (21, 0, 0, 0)
    );
    assert_eq!(brno.heads(), milan.heads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_get_nothing_and_group_entries_stay_in_the_group() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let warsaw = TestNode::spawn("Warsaw", 3).await; // roster member, not in the group
    let stranger = TestNode::spawn("Stranger", 4).await; // not in Milan's roster
    milan.link(&brno).await;
    milan.link(&warsaw).await;
    stranger.dial(&milan).await; // Milan does not trust it: refused
    let (gid, aid) = group(&milan.city, &[&brno.city]);
    add_item(&milan.city, gid, &aid, "Members only");
    practice(&milan.city, "Public practice");
    assert!(
        eventually(WAIT, || items(&brno.city, gid, &aid).len() == 1
            && titles(&warsaw.city).len() == 1)
        .await
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // several anti-entropy rounds
    assert!(
        warsaw.city.record(gid).is_err(),
        "a non-member received the group"
    );
    assert!(
        warsaw
            .heads()
            .iter()
            .all(|(f, _)| f.scope == Scope::Federation)
    );
    assert!(
        stranger.city.list(None).expect("list").is_empty(),
        "the stranger received records"
    );
    assert!(stranger.heads().is_empty());
    let status = milan.status().await;
    let s = status
        .peers
        .iter()
        .find(|p| p.id == stranger.id().to_string());
    assert!(
        s.is_none_or(|p| !p.connected),
        "the stranger is connected to Milan"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_city_joins_on_first_contact_and_a_guest_gets_nothing() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let stranger = TestNode::spawn("Stranger", 4).await;
    let (gid, aid) = group(&milan.city, &[]);
    add_item(&milan.city, gid, &aid, "Welcome");
    // Neither Milan nor Brno knows the other: Brno holds only Milan's token.
    let token = milan
        .city
        .invite(None, vec![milan.addr()], Some(gid), 1)
        .expect("invite");
    milan.net().roster_changed().await.expect("net");
    // While the invitation is out, a stranger connects as a guest. It trusts Milan, so the
    // first entry of Milan's federation feed would be stored if it were gossiped to it.
    stranger.dial(&milan).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    practice(&milan.city, "Before the join");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        stranger.city.list(None).expect("list").is_empty(),
        "a guest received gossip"
    );
    brno.city.accept_invitation(&token).expect("accept");
    brno.net().roster_changed().await.expect("net");

    assert!(
        eventually(WAIT, || items(&brno.city, gid, &aid) == ["Welcome"]
            && titles(&brno.city) == ["Before the join"])
        .await,
        "Brno did not receive Milan's records after joining"
    );
    let entry = milan.city.roster_entry(&brno.id()).expect("roster");
    assert_eq!(entry.map(|e| e.name), Some("Brno".to_string()));
    let Record::Group(g) = milan.city.record(gid).expect("group") else {
        panic!("not a group");
    };
    assert!(g.members.contains_key(&brno.id().to_string()));
    let invitation = brno.city.roster_entry(&milan.id()).expect("roster");
    assert_eq!(
        invitation.and_then(|e| e.invitation),
        None,
        "token presented once"
    );

    // Both ways, live, on the connection the join was made on.
    practice(&milan.city, "After the join");
    practice(&brno.city, "From Brno");
    assert!(
        eventually(WAIT, || titles(&brno.city).len() == 3
            && titles(&milan.city).len() == 3)
        .await
    );

    // The token was for one city: the stranger presenting it later is refused.
    stranger
        .city
        .accept_invitation(&token)
        .expect("the token itself is valid");
    stranger.net().roster_changed().await.expect("net");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        stranger.city.list(None).expect("list").is_empty(),
        "a guest received records"
    );
    assert!(stranger.heads().is_empty());
    assert!(!milan.city.trusts(&stranger.id()).expect("trusts"));
    // The refusal is final: the stranger forgot the token.
    assert!(
        eventually(WAIT, || stranger
            .city
            .roster_entry(&milan.id())
            .ok()
            .flatten()
            .is_some_and(|e| e.invitation.is_none()))
        .await
    );
    let status = milan.status().await;
    assert!(
        status
            .peers
            .iter()
            .all(|p| p.id != stranger.id().to_string() || !p.connected),
        "the guest is listed as connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_waits_for_the_operator_when_configured() {
    let mut cfg = intercity_tests::config(Duration::from_secs(1));
    cfg.approve_joins = true;
    let milan = TestNode::spawn_config("Milan", 1, cfg).await;
    let brno = TestNode::spawn("Brno", 2).await;
    practice(&milan.city, "Needs approval");
    let token = milan
        .city
        .invite(None, vec![milan.addr()], None, 1)
        .expect("invite");
    milan.net().roster_changed().await.expect("net");
    brno.city.accept_invitation(&token).expect("accept");
    brno.net().roster_changed().await.expect("net");
    assert!(
        eventually(WAIT, || milan.city.pending_joins().expect("pending").len()
            == 1)
        .await,
        "the join was not queued"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(titles(&brno.city).is_empty(), "records before approval");
    milan.city.approve_join(&brno.id()).expect("approve");
    milan.net().roster_changed().await.expect("net");
    assert!(
        eventually(WAIT, || titles(&brno.city) == ["Needs approval"]).await,
        "no records after approval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_entries_are_dropped_the_sender_is_cut_off_and_honest_sync_continues() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let mallory = TestNode::spawn("Mallory", 3).await; // a roster member gone bad
    milan.link(&brno).await;
    mallory.link(&milan).await;
    let pid = practice(&milan.city, "FabriQ");
    assert!(eventually(WAIT, || mallory.city.record(pid).is_ok()).await);
    let before = milan.city.store().entry_counts().expect("counts");
    // Forged signatures (Milan as author, signed by someone else), a broken chain, an oversized payload.
    let feed = FeedId {
        author: milan.id(),
        scope: Scope::Federation,
    };
    let head = milan
        .city
        .store()
        .feeds()
        .expect("feeds")
        .into_iter()
        .find(|(f, _)| *f == feed)
        .map(|(_, h)| h)
        .expect("head");
    let mut forged = Vec::new();
    for i in 0..6u8 {
        let e = sign_entry(
            &key(99),
            Scope::Federation,
            head.seq + 1,
            head.hash,
            pid,
            &[i],
            0,
        );
        let mut bytes = e.encode().to_vec();
        bytes[1..33].copy_from_slice(milan.id().as_bytes());
        forged.push(WireEntry {
            entry: bytes,
            payload: vec![i],
            checked: None,
        });
    }
    let broken_chain = sign_entry(
        mallory.city.key(),
        Scope::Federation,
        2,
        Hash32([7; 32]),
        pid,
        b"x",
        0,
    );
    forged.push(WireEntry {
        entry: broken_chain.encode().to_vec(),
        payload: b"x".to_vec(),
        checked: None,
    });
    let net = mallory.net();
    net.push_raw(&milan.id(), forged).await.expect("push");
    let milan_net = milan.net().clone();
    let mallory_id = mallory.id().to_string();
    let cut_off = eventually(WAIT, || {
        let status = futures_lite_block(&milan_net);
        status
            .peers
            .iter()
            .any(|p| p.id == mallory_id && p.invalid >= 5 && !p.connected)
    })
    .await;
    assert!(cut_off, "Milan did not penalize and disconnect Mallory");
    assert_eq!(
        milan.city.store().entry_counts().expect("counts"),
        before,
        "a forged entry was stored"
    );
    // Honest sync continues.
    practice(&brno.city, "Still syncing");
    assert!(
        eventually(WAIT, || titles(&milan.city)
            .contains(&"Still syncing".to_string()))
        .await
    );
    // The ban outlives a restart: Milan, told where Mallory listens, does not dial it, and
    // Mallory cannot connect.
    let milan = milan.restart().await;
    milan.dial(&mallory).await;
    mallory.dial(&milan).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = milan.status().await;
    assert!(
        status
            .peers
            .iter()
            .all(|p| p.id != mallory_id || !p.connected),
        "Milan reconnected to the banned Mallory after a restart"
    );
    assert!(
        status
            .peers
            .iter()
            .any(|p| p.id == brno.id().to_string() && p.connected)
            || eventually(WAIT, || futures_lite_block(milan.net())
                .peers
                .iter()
                .any(|p| p.id == brno.id().to_string() && p.connected))
            .await,
        "Milan did not reconnect to Brno"
    );
}

fn futures_lite_block(net: &intercity_node::net::NetHandle) -> intercity_node::net::NetStatus {
    let net = net.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt")
            .block_on(async move { net.status().await })
    })
    .join()
    .expect("thread")
    .expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_but_unauthorized_edit_is_rejected_identically_everywhere() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let porto = TestNode::spawn("Porto", 3).await;
    milan.link(&brno).await;
    brno.link(&porto).await;
    porto.trust(&milan).await; // one federation: Porto trusts Milan, though it only talks to Brno
    milan.trust(&porto).await;
    let pid = practice(&milan.city, "FabriQ");
    assert!(eventually(WAIT, || porto.city.record(pid).is_ok()).await);
    // Porto signs an edit of Milan's practice without being an editor.
    let mut doc = porto.city.load(pid).expect("doc");
    let mut rec = porto.city.record(pid).expect("record");
    if let Record::Practice(p) = &mut rec {
        p.title = "Hijacked".into();
    }
    let actor = automerge::ActorId::from(porto.id().as_bytes().to_vec());
    let change = intercity_protocol::doc::edit_document(&mut doc, actor, &rec, "hijack")
        .expect("edit")
        .expect("change");
    let e = sign_entry(
        porto.city.key(),
        Scope::Federation,
        1,
        Hash32::default(),
        pid,
        change.raw_bytes(),
        0,
    );
    porto
        .city
        .ingest_remote(&e.encode(), change.raw_bytes())
        .expect("stored as rejected");
    let rejected = |c: &City| {
        c.history(pid)
            .expect("history")
            .iter()
            .filter(|h| h.status == "rejected")
            .count()
    };
    assert!(
        eventually(WAIT, || rejected(&milan.city) == 1
            && rejected(&brno.city) == 1
            && rejected(&porto.city) == 1)
        .await
    );
    for c in [&milan.city, &brno.city, &porto.city] {
        assert_eq!(c.record(pid).expect("record").title(), "FabriQ");
    }
}

/// A city added to a working group while it was not connected receives the group at its next
/// contact with any member, from the heads exchange alone: no member edits the group again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_added_to_a_group_receives_it_at_the_next_contact_without_a_new_edit() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let porto = TestNode::spawn("Porto", 3).await;
    milan.link(&brno).await;
    let (gid, aid) = group(&milan.city, &[&brno.city]);
    add_item(&milan.city, gid, &aid, "Makerspace visit");
    // Porto, not connected to anyone, is added by the chair.
    let porto_id = porto.id().to_string();
    milan
        .city
        .edit(gid, "add member Porto", move |r| {
            if let Record::Group(g) = r {
                g.members.insert(
                    porto_id,
                    Member {
                        name: "Porto".into(),
                        role: Role::Member,
                    },
                );
            }
            Ok(())
        })
        .expect("add porto");
    let porto_key = porto.id().to_string();
    assert!(
        eventually(WAIT, || match brno.city.record(gid) {
            Ok(Record::Group(g)) => g.members.contains_key(&porto_key),
            _ => false,
        })
        .await
    );
    // Porto meets Brno only (it trusts Milan as an author, but never connects to it).
    porto.trust(&milan).await;
    brno.link(&porto).await;
    assert!(
        eventually(Duration::from_secs(10), || items(&porto.city, gid, &aid)
            == ["Makerspace visit"])
        .await,
        "Porto did not receive the group within 10 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cities_behind_nat_reach_each_other_only_through_a_members_relay() {
    // Rome is publicly reachable and relays for members. Riga and Lyon listen on no address at
    // all and reach Rome each through its own NAT (`nat`: what Rome observes of them cannot be
    // dialed, so hole punching fails as behind a symmetric NAT); each reserves a slot on Rome's
    // relay, and Lyon dials Riga's relayed address. They share a working group that Rome is not
    // in, so the group's entries cannot travel through Rome's own sync: they cross the circuit.
    let mut relay_cfg = intercity_tests::config(Duration::from_secs(1));
    relay_cfg.relay_service = Some(true);
    let rome = TestNode::spawn_config("Rome", 21, relay_cfg).await;
    let behind_nat = async |name: &str, seed: u8| {
        let rome_seen_through_nat = intercity_tests::nat(&rome.addr()).await;
        let mut cfg = intercity_tests::config(Duration::from_secs(1));
        cfg.listen = Vec::new();
        let relay = format!("{rome_seen_through_nat}/p2p/{}", rome.id());
        cfg.relays = vec![relay.parse().expect("relay address")];
        // Started before Rome knows it: a stranger gets no slot, so it asks again once Rome
        // trusts it and it connects.
        let node = TestNode::spawn_config(name, seed, cfg).await;
        node.city
            .roster_add(rome.id(), "Rome", &[rome_seen_through_nat])
            .expect("roster");
        node
    };
    let riga = behind_nat("Riga", 22).await;
    let lyon = behind_nat("Lyon", 23).await;
    rome.trust(&riga).await;
    rome.trust(&lyon).await;
    riga.trust(&lyon).await;
    // Riga's relayed address, as its address-book entry would carry it.
    let mut circuit = None;
    // (The slot is reported held a moment before the circuit address is listed; a slot asked
    // for as a stranger is asked again after RELAY_RETRY, 10 s.)
    for _ in 0..400 {
        let s = riga.status().await;
        if s.relays.iter().any(|r| r.held) && !s.listen.is_empty() {
            assert!(
                s.listen.iter().all(|a| a.contains("/p2p-circuit")),
                "Riga listens directly: {:?}",
                s.listen
            );
            circuit = s.listen.into_iter().next();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let circuit = circuit.expect("Riga listens through Rome's relay");
    lyon.city
        .roster_add(riga.id(), "Riga", &[circuit])
        .expect("roster");
    lyon.roster_changed_now().await;

    let (gid, aid) = group(&riga.city, &[&lyon.city]);
    add_item(&riga.city, gid, &aid, "From Riga");
    assert!(
        eventually(WAIT, || items(&lyon.city, gid, &aid).len() == 1).await,
        "the group did not reach Lyon through the relay"
    );
    add_item(&lyon.city, gid, &aid, "From Lyon");
    assert!(
        eventually(WAIT, || items(&riga.city, gid, &aid).len() == 2).await,
        "Lyon's edit did not reach Riga through the relay: {:?}",
        items(&riga.city, gid, &aid)
    );
    practice(&riga.city, "Riga bike lanes");
    assert!(
        eventually(WAIT, || titles(&lyon.city)
            == vec!["Riga bike lanes".to_string()])
        .await
    );
    assert!(rome.city.record(gid).is_err(), "the relay read the group");

    let via = |s: &intercity_node::net::NetStatus, id: String| {
        s.peers
            .iter()
            .find(|p| p.id == id)
            .and_then(|p| p.via.clone())
    };
    let (l, r, m) = (
        lyon.status().await,
        riga.status().await,
        rome.status().await,
    );
    assert_eq!(via(&l, riga.id().to_string()).as_deref(), Some("relayed"));
    assert_eq!(via(&r, lyon.id().to_string()).as_deref(), Some("relayed"));
    assert_eq!(via(&r, rome.id().to_string()).as_deref(), Some("direct"));
    assert_eq!(m.relay_reservations, 2, "{m:?}");
    assert!(m.relay_circuits >= 1, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_serves_members_only() {
    let mut relay_cfg = intercity_tests::config(Duration::from_secs(1));
    relay_cfg.relay_service = Some(true);
    let rome = TestNode::spawn_config("Rome", 24, relay_cfg).await;
    let relay_addr = format!("{}/p2p/{}", rome.addr(), rome.id());
    let mut hidden_cfg = intercity_tests::config(Duration::from_secs(1));
    hidden_cfg.listen = Vec::new();
    hidden_cfg.relays = vec![relay_addr.parse().expect("relay address")];
    // Riga trusts Rome, Rome does not trust Riga: Riga connects as a guest (an open slot), is
    // not offered the relay's protocol, and gets no slot.
    let riga = TestNode::spawn_config("Riga", 25, hidden_cfg).await;
    riga.city
        .roster_add(rome.id(), "Rome", &[rome.addr()])
        .expect("roster");
    riga.roster_changed_now().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (r, m) = (riga.status().await, rome.status().await);
    assert!(r.relays.iter().all(|s| !s.held), "{r:?}");
    assert!(r.listen.is_empty(), "{:?}", r.listen);
    assert_eq!(m.relay_reservations, 0);
}
