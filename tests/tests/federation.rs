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
    assert!(all_meshed, "the six are not all connected to each other");
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
    // Warsaw reached every member itself, from the address book (it knew only Milan).
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
    milan.city.federation_remove(&porto.id()).expect("remove");
    let removed = eventually(WAIT, || {
        together
            .iter()
            .filter(|n| n.id() != porto.id())
            .all(|n| !n.city.trusts(&porto.id()).unwrap_or(true))
    })
    .await;
    assert!(removed, "not every node stopped trusting Porto");
    let mut disconnected = false;
    let started = Instant::now();
    while !disconnected && started.elapsed() < WAIT {
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
    practice(&porto.city, "After the removal");
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in together.iter().filter(|n| n.id() != porto.id()) {
        let t = titles(&n.city);
        assert!(
            t.contains(&"Porto".to_string()),
            "old records stay readable"
        );
        assert!(!t.contains(&"After the removal".to_string()));
    }

    // Two stewards acting at once end the same on every node.
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
    milan.city.federation_remove(&six[4].id()).expect("remove");
    brno.city
        .federation_set(six[4].id(), "", Role::Chair)
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
    let mut warsaw = warsaw;
    warsaw.stop().await;
    for n in &mut six {
        n.stop().await;
    }
}

/// A member relaying entries signed by keys nobody trusts into the federation's scope (judged
/// whoever signed them, §18) gets at most `MAX_FOREIGN_AUTHORS` such feeds stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_fill_the_federation_s_scope_with_puppet_feeds() {
    use intercity_protocol::entry::Scope;
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    let fid = milan
        .city
        .federation_create("EUROCITIES", "")
        .expect("create");
    join(&milan, &brno).await;
    assert!(eventually(WAIT, || record(&brno, fid).is_some()).await);
    let puppets = intercity_tests::hostile::puppet_entries(fid, 100);
    for chunk in puppets.chunks(10) {
        brno.net()
            .push_raw(&milan.id(), chunk.to_vec())
            .await
            .expect("push");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let foreign = || {
        milan
            .heads()
            .iter()
            .filter(|(f, _)| {
                f.scope == Scope::Group(fid) && f.author != milan.id() && f.author != brno.id()
            })
            .count()
    };
    assert!(
        eventually(WAIT, || foreign()
            >= intercity_node::net::MAX_FOREIGN_AUTHORS)
        .await,
        "the first puppets' feeds were not judged: {}",
        foreign()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(foreign(), intercity_node::net::MAX_FOREIGN_AUTHORS);
}
