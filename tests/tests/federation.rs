//! One federation, agreed by its members (issue #13): real nodes (libp2p on 127.0.0.1, RocksDB
//! in temp dirs) that share one signed membership record and address book.

use std::time::{Duration, Instant};

use intercity_node::CityError;
use intercity_node::roster::Standing;
use intercity_protocol::entry::DocId;
use intercity_protocol::record::{Group, Record, Role};
use intercity_tests::{TestNode, eventually, practice, titles};

const WAIT: Duration = Duration::from_secs(30);

/// The federation's record as `node` holds it.
fn record(node: &TestNode, id: DocId) -> Option<Group> {
    match node.city.record(id) {
        Ok(Record::Group(g)) => Some(g),
        _ => None,
    }
}

/// `node` is connected to every other node of `all`.
async fn meshed(node: &TestNode, all: &[&TestNode]) -> bool {
    let status = node.status().await;
    all.iter().filter(|o| o.id() != node.id()).all(|o| {
        status
            .peers
            .iter()
            .any(|p| p.id == o.id().to_string() && p.connected)
    })
}

/// `city` joins the federation with an invitation from `steward`, bound to it.
async fn join(steward: &TestNode, city: &TestNode) {
    let token = steward
        .city
        .invite(Some(city.id()), vec![steward.addr()], None, 1)
        .expect("invite");
    steward.net().roster_changed().await.expect("net");
    city.city.accept_invitation(&token).expect("accept");
    city.net().roster_changed().await.expect("net");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_federation_admits_reaches_and_removes_cities_with_no_operator_action() {
    let names = ["Milan", "Brno", "Porto", "Riga", "Utrecht", "Nantes"];
    let mut six = Vec::new();
    for (i, name) in names.iter().enumerate() {
        six.push(TestNode::spawn(name, i as u8 + 1).await);
    }
    let milan = &six[0];
    let fid = milan
        .city
        .federation_create("EUROCITIES", "Cities sharing what works")
        .expect("create");
    // Five cities join, each with Milan's invitation only: none of them knows another.
    for city in &six[1..] {
        join(milan, city).await;
    }
    let all: Vec<&TestNode> = six.iter().collect();
    let formed = eventually(WAIT, || {
        six.iter()
            .all(|n| record(n, fid).is_some_and(|g| g.members.len() == 6 && g.addresses.len() == 6))
    })
    .await;
    assert!(
        formed,
        "the six did not all hold the federation and its address book"
    );
    // They found each other through the address book.
    let started = Instant::now();
    let mut all_meshed = false;
    while started.elapsed() < WAIT && !all_meshed {
        all_meshed = true;
        for n in &six {
            all_meshed &= meshed(n, &all).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !all_meshed {
        let mut matrix = Vec::new();
        for n in &six {
            let status = n.status().await;
            let peers: Vec<(String, bool)> = status
                .peers
                .iter()
                .map(|p| (p.name.clone(), p.connected))
                .collect();
            let roster: Vec<(String, Standing)> = n
                .city
                .peers()
                .expect("peers")
                .into_iter()
                .map(|p| (p.entry.name, p.standing))
                .collect();
            matrix.push(format!(
                "{}: {peers:?} trusted {roster:?}",
                n.city.profile().name
            ));
        }
        panic!(
            "the six are not all connected to each other:\n{}",
            matrix.join("\n")
        );
    }
    // No operator added anyone but by accepting Milan's invitation.
    for n in &six[2..] {
        assert!(n.city.roster_entry(&six[1].id()).expect("roster").is_none());
        assert!(n.city.trusts(&six[1].id()).expect("trusts"));
    }

    // A seventh city joins with one invitation from Milan.
    let warsaw = TestNode::spawn("Warsaw", 7).await;
    for (n, title) in six.iter().zip([
        "FabriQ",
        "Brno makerspace",
        "Porto",
        "Riga",
        "Utrecht",
        "Nantes",
    ]) {
        practice(&n.city, title);
    }
    let started = Instant::now();
    join(milan, &warsaw).await;
    practice(&warsaw.city, "Warsaw youth hub");
    let mut everywhere = six.iter().map(|n| &n.city).collect::<Vec<_>>();
    everywhere.push(&warsaw.city);
    let synced = eventually(Duration::from_secs(10), || {
        everywhere.iter().all(|c| titles(c).len() == 7)
    })
    .await;
    let took = started.elapsed();
    assert!(
        synced,
        "within 10 s: {:?}",
        everywhere
            .iter()
            .map(|c| titles(c).len())
            .collect::<Vec<_>>()
    );
    eprintln!("the seventh city synced with all six in {took:?}");
    let mut together = all.clone();
    together.push(&warsaw);
    // Warsaw is connected to all six (it knew only Milan: the others dialed it from the
    // address book, or it dialed them).
    let started = Instant::now();
    let mut reached = false;
    while !reached && started.elapsed() < Duration::from_secs(10) {
        reached = meshed(&warsaw, &together).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reached, "Warsaw is not connected to all six");
    // Every member trusts Warsaw, and only Milan has it in its roster.
    for n in &six[1..] {
        assert!(n.city.trusts(&warsaw.id()).expect("trusts"));
        assert!(n.city.roster_entry(&warsaw.id()).expect("roster").is_none());
        let peers = n.city.peers().expect("peers");
        let w = peers
            .iter()
            .find(|p| p.entry.id == warsaw.id())
            .expect("listed");
        assert_eq!(
            (w.standing, w.role),
            (Standing::Federation, Some(Role::Member))
        );
    }

    // A member that is not a steward cannot admit or remove.
    let brno = &six[1];
    assert!(matches!(
        brno.city.federation_remove(&six[2].id()),
        Err(CityError::Rejected(_))
    ));
    assert!(matches!(
        brno.city.federation_set(warsaw.id(), "", Role::Chair),
        Err(CityError::Rejected(_))
    ));

    // A steward removes Porto: every node disconnects it and refuses its new entries; its old
    // records stay.
    let porto = &six[2];
    let removing = Instant::now();
    milan.city.federation_remove(&porto.id()).expect("remove");
    // Within one default anti-entropy period (30 s; these nodes tick every second, and the
    // removal travels by push: 0.45 s measured).
    let period = intercity_node::net::NetConfig::default().anti_entropy;
    let removed = eventually(period, || {
        together
            .iter()
            .filter(|n| n.id() != porto.id())
            .all(|n| !n.city.trusts(&porto.id()).unwrap_or(true))
    })
    .await;
    assert!(removed, "not every node stopped trusting Porto");
    let mut disconnected = false;
    while !disconnected && removing.elapsed() < period {
        disconnected = true;
        for n in together.iter().filter(|n| n.id() != porto.id()) {
            let status = n.status().await;
            disconnected &= !status
                .peers
                .iter()
                .any(|p| p.id == porto.id().to_string() && p.connected);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(disconnected, "Porto is still connected somewhere");
    eprintln!(
        "every node stopped trusting Porto and disconnected it {:?} after the removal",
        removing.elapsed()
    );
    practice(&porto.city, "After the removal");
    // A member relays it anyway (Porto is disconnected everywhere): it is skipped.
    let porto_feed = intercity_protocol::entry::FeedId {
        author: porto.id(),
        scope: intercity_protocol::entry::Scope::Federation,
    };
    let relayed = intercity_tests::wire_entries(&porto.city, &porto_feed);
    six[3]
        .net()
        .push_raw(&milan.id(), relayed.into_iter().rev().take(1).collect())
        .await
        .expect("push");
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in together.iter().filter(|n| n.id() != porto.id()) {
        let t = titles(&n.city);
        assert!(
            t.contains(&"Porto".to_string()),
            "old records stay readable"
        );
        assert!(!t.contains(&"After the removal".to_string()));
    }

    // Two stewards acting at once end the same on every node: Milan removes Utrecht while
    // Brno, on the record as it was before (a change concurrent with the removal), makes
    // Utrecht a steward. The removal wins on every node (§15.5; a delete beats an edit inside).
    milan
        .city
        .federation_set(brno.id(), "", Role::Chair)
        .expect("brno steward");
    assert!(
        eventually(WAIT, || brno
            .city
            .federation_set(six[3].id(), "", Role::Chair)
            .is_ok())
        .await,
        "Brno never became a steward"
    );
    let utrecht = six[4].id().to_string();
    let (_, base) = brno.city.record_and_heads(fid).expect("base");
    milan.city.federation_remove(&six[4].id()).expect("remove");
    let promoted = utrecht.clone();
    brno.city
        .edit_from(fid, &base, "make Utrecht a steward", move |r| {
            if let Record::Group(g) = r {
                g.members
                    .get_mut(&promoted)
                    .expect("member at the base")
                    .role = Role::Chair;
            }
            Ok(())
        })
        .expect("concurrent role change");
    let members = |n: &TestNode| record(n, fid).map(|g| g.members);
    let agreed = eventually(WAIT, || {
        let first = members(milan);
        together
            .iter()
            .filter(|n| n.id() != porto.id() && n.id() != six[4].id())
            .all(|n| members(n) == first)
    })
    .await;
    assert!(
        agreed,
        "the stewards' concurrent changes did not end the same everywhere"
    );
    assert!(
        members(milan).is_some_and(|m| !m.contains_key(&utrecht) && m.len() == 5),
        "{:?}",
        members(milan)
    );
    let mut warsaw = warsaw;
    warsaw.stop().await;
    for n in &mut six {
        n.stop().await;
    }
}

/// Entries signed by keys nobody trusts, relayed into the federation's scope (judged whoever
/// signed them, §18): a member that is not a steward gets none stored; a steward gets at most
/// `MAX_FOREIGN_AUTHORS` such feeds stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_fill_the_federation_s_scope_with_puppet_feeds() {
    use intercity_node::net::MAX_FOREIGN_AUTHORS;
    use intercity_protocol::entry::Scope;
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let fid = milan
        .city
        .federation_create("EUROCITIES", "")
        .expect("create");
    join(&milan, &brno).await;
    assert!(eventually(WAIT, || record(&brno, fid).is_some()).await);
    let foreign = || {
        milan
            .heads()
            .iter()
            .filter(|(f, _)| {
                f.scope == Scope::Group(fid) && f.author != milan.id() && f.author != brno.id()
            })
            .count()
    };
    let n = u16::try_from(MAX_FOREIGN_AUTHORS).expect("small") + 16;
    let puppets = intercity_tests::hostile::puppet_entries(fid, n);
    let relay = |entries: &[intercity_protocol::sync::WireEntry]| {
        let entries = entries.to_vec();
        let (brno, milan) = (brno.net().clone(), milan.id());
        async move {
            for chunk in entries.chunks(intercity_node::net::MAX_PUSH_JUDGED) {
                brno.push_raw(&milan, chunk.to_vec()).await.expect("push");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Brno, a member, relays 64 of them: none is judged.
    relay(&puppets[..64]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        foreign(),
        0,
        "a member's relay of untrusted keys was judged"
    );
    // Brno, a steward now, relays them all: the first MAX_FOREIGN_AUTHORS are.
    milan
        .city
        .federation_set(brno.id(), "", Role::Chair)
        .expect("steward");
    assert!(
        eventually(WAIT, || record(&brno, fid)
            .is_some_and(
                |g| g.members[&brno.id().to_string()].role == Role::Chair
            ))
        .await
    );
    milan.net().roster_changed().await.expect("net");
    relay(&puppets).await;
    assert!(
        eventually(WAIT, || foreign() >= MAX_FOREIGN_AUTHORS).await,
        "the puppets' feeds were not judged: {}",
        foreign()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(foreign(), MAX_FOREIGN_AUTHORS);
}

/// A city that moves (restarts on another port) publishes its new address, and every member
/// holds it in the address book, with no operator action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_that_moves_tells_every_member() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let porto = TestNode::spawn("Porto", 3).await;
    let fid = milan
        .city
        .federation_create("EUROCITIES", "")
        .expect("create");
    join(&milan, &brno).await;
    join(&milan, &porto).await;
    let brno_id = brno.id().to_string();
    let address_of = |n: &TestNode, id: &str| {
        record(n, fid).and_then(|g| g.addresses.get(id).map(|a| a.addrs.clone()))
    };
    let old = vec![brno.addr()];
    assert!(
        eventually(WAIT, || address_of(&porto, &brno_id) == Some(old.clone())).await,
        "Porto never learned Brno's address: {:?}",
        address_of(&porto, &brno_id)
    );
    let brno = brno.restart().await;
    let new = vec![brno.addr()];
    assert_ne!(new, old, "the restart moved Brno to another port");
    assert!(
        eventually(WAIT, || [&milan, &porto].iter().all(|n| address_of(
            n, &brno_id
        ) == Some(
            new.clone()
        )))
        .await,
        "the members did not learn Brno's new address: {:?} {:?}",
        address_of(&milan, &brno_id),
        address_of(&porto, &brno_id)
    );
}
