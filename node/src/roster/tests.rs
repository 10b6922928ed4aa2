//! Tests of the roster and invitations, on real stores in temporary directories.

use intercity_protocol::identity::CityKey;

use super::*;

/// Milan, Brno, Riga and Porto, each in its own temporary directory (kept alive with them).
fn four_cities() -> (Vec<tempfile::TempDir>, [City; 4]) {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let names = ["Milan", "Brno", "Riga", "Porto"];
    let cities = std::array::from_fn(|i| {
        let key = CityKey::from_secret([i as u8 + 1; 32]);
        City::init_with_key(dirs[i].path(), names[i], None, key).expect("init")
    });
    (dirs, cities)
}

/// Listing invitations only reads: a read-only store (the CLI without a daemon) lists
/// them even when one has expired (it used to fail: "Not supported operation in read only
/// mode", deleting it). The next invitation made deletes the expired one.
#[test]
fn expired_invitations_are_hidden_by_readers_and_pruned_by_the_next_invite() {
    let dir = tempfile::tempdir().expect("tmp");
    let milan = City::init_with_key(dir.path(), "Milan", None, CityKey::from_secret([1; 32]))
        .expect("init");
    milan.invite(None, Vec::new(), None, 1).expect("invite");
    let mut old = milan.invitations().expect("list").remove(0);
    old.expires = now_ms() - 1;
    milan
        .put_json(&invitation_key(&old.code), &old)
        .expect("age it");
    drop(milan);
    let reader = City::open_read_only(dir.path()).expect("read-only");
    assert!(
        reader
            .invitations()
            .expect("a read-only listing")
            .is_empty()
    );
    assert!(
        reader
            .pending_joins()
            .expect("a read-only listing")
            .is_empty()
    );
    drop(reader);
    let milan = City::open(dir.path()).expect("open");
    milan.invite(None, Vec::new(), None, 1).expect("invite");
    let held = milan
        .store()
        .meta_with_prefix(INVITATION_KEY)
        .expect("rows");
    assert_eq!(held.len(), 1, "the expired invitation was not pruned");
}

#[test]
fn an_invitation_admits_its_holder_once_and_into_the_group() {
    let (_dirs, [milan, brno, riga, porto]) = four_cities();
    let group = Group::new("Smart Social Inclusion", milan.id().to_string(), "Milan");
    let gid = milan
        .create(&Record::Group(group), "create group")
        .expect("group");
    assert_eq!(milan.guests().expect("guests"), Guests::default());

    let token = milan
        .invite(None, vec!["/ip4/127.0.0.1/tcp/4001".into()], Some(gid), 1)
        .expect("invite");
    assert!(milan.guests().expect("guests").anyone);
    // The invitee keeps the token to present; the inviter is in its roster.
    let entry = brno.accept_invitation(&token).expect("accept");
    assert_eq!(entry.invitation.as_deref(), Some(token.as_str()));
    assert_eq!(entry.addrs, vec!["/ip4/127.0.0.1/tcp/4001".to_string()]);

    let addrs: Vec<String> = [
        "/ip4/10.0.0.2/tcp/4001",
        "junk",
        "/ip4/0.0.0.0/tcp/4001",
        "/memory/7",
        "/ip4/224.0.0.1/udp/4001/quic-v1",
    ]
    .map(String::from)
    .to_vec();
    let JoinOutcome::Admitted(e) = milan
        .redeem(brno.id(), &token, "Brno\u{7}", &addrs, false)
        .expect("redeem")
    else {
        panic!("not admitted");
    };
    assert_eq!((e.name.as_str(), e.addrs.len()), ("Brno", 1));
    assert!(milan.trusts(&brno.id()).expect("trusts"));
    let Record::Group(g) = milan.record(gid).expect("group") else {
        panic!("not a group");
    };
    assert_eq!(g.members[&brno.id().to_string()].role, Role::Member);
    // Presenting it again is harmless; another city cannot use it up again.
    assert!(matches!(
        milan.redeem(brno.id(), &token, "Brno", &[], false),
        Ok(JoinOutcome::Admitted(_))
    ));
    assert!(matches!(
        milan.redeem(riga.id(), &token, "Riga", &[], false),
        Err(CityError::Invitation(m)) if m.contains("used")
    ));
    assert_eq!(milan.guests().expect("guests"), Guests::default());
    assert_eq!(
        milan.invitations().expect("list")[0].joined,
        vec![brno.id()]
    );
    // A token of another city, or for another city, or revoked, admits nobody.
    let foreign = brno.invite(None, Vec::new(), None, 1).expect("invite");
    assert!(matches!(
        milan.redeem(riga.id(), &foreign, "Riga", &[], false),
        Err(CityError::Invitation(_))
    ));
    let bound = milan
        .invite(Some(porto.id()), Vec::new(), None, 1)
        .expect("invite");
    assert_eq!(
        milan.guests().expect("guests"),
        Guests {
            named: HashSet::from([porto.id()]),
            anyone: false
        }
    );
    assert!(riga.accept_invitation(&bound).is_err());
    assert!(matches!(
        milan.redeem(riga.id(), &bound, "Riga", &[], false),
        Err(CityError::Invitation(m)) if m.contains("for city")
    ));
    let code = milan.invitations().expect("list")[0].code.clone();
    milan.revoke_invitation(&code[..6]).expect("revoke");
    assert!(matches!(
        milan.redeem(porto.id(), &bound, "Porto", &[], false),
        Err(CityError::Invitation(m)) if m.contains("revoked")
    ));
    // Only a chair invites into a group.
    assert!(matches!(
        brno.invite(None, Vec::new(), Some(gid), 1),
        Err(CityError::NotFound(_) | CityError::Invitation(_))
    ));
}

#[test]
fn a_join_waits_for_approval_when_configured() {
    let (_dirs, [milan, brno, riga, porto]) = four_cities();
    let token = milan.invite(None, Vec::new(), None, 2).expect("invite");
    for c in [&brno, &riga] {
        assert_eq!(
            milan
                .redeem(c.id(), &token, &c.profile().name, &[], true)
                .expect("redeem"),
            JoinOutcome::Waiting
        );
    }
    assert!(!milan.trusts(&brno.id()).expect("trusts"));
    let pending = milan.pending_joins().expect("pending");
    assert_eq!(pending.len(), 2);
    // Both uses wait: a third city is told to come back later.
    assert!(matches!(
        milan.redeem(porto.id(), &token, "Porto", &[], true),
        Err(CityError::Busy(_))
    ));
    assert_eq!(
        milan.approve_join(&brno.id()).expect("approve").name,
        "Brno"
    );
    assert!(milan.trusts(&brno.id()).expect("trusts"));
    assert_eq!(milan.deny_join(&riga.id()).expect("deny").name, "Riga");
    assert!(!milan.trusts(&riga.id()).expect("trusts"));
    assert!(milan.pending_joins().expect("pending").is_empty());
    assert!(matches!(
        milan.redeem(riga.id(), &token, "Riga", &[], true),
        Err(CityError::Invitation(m)) if m.contains("denied")
    ));
    assert!(matches!(
        milan.approve_join(&riga.id()),
        Err(CityError::Missing(_))
    ));
    assert_eq!(milan.invitations().expect("list")[0].uses, 1);
    // Once approved, presenting the token again admits at once.
    assert!(matches!(
        milan.redeem(brno.id(), &token, "Brno", &[], true),
        Ok(JoinOutcome::Admitted(_))
    ));
    // A blocked city is not approved; revoking drops the joins waiting with the token.
    assert_eq!(
        milan
            .redeem(porto.id(), &token, "Porto", &[], true)
            .expect("redeem"),
        JoinOutcome::Waiting
    );
    milan.roster_block(&porto.id()).expect("block");
    assert!(matches!(
        milan.approve_join(&porto.id()),
        Err(CityError::Invitation(m)) if m.contains("blocked")
    ));
    let code = milan.invitations().expect("list")[0].code.clone();
    milan.revoke_invitation(&code).expect("revoke");
    assert!(milan.pending_joins().expect("pending").is_empty());
    assert_eq!(milan.guests().expect("guests"), Guests::default());
}

/// `federation leave` forgets the cities that were in the roster for the federation's sake
/// (they were trusted again as "inviter" once another federation was followed), and keeps the
/// cities the operator added.
#[test]
fn leaving_a_federation_forgets_the_cities_it_brought() {
    let (_dirs, [milan, brno, riga, _]) = four_cities();
    milan
        .federation_create("EUROCITIES", "")
        .expect("federation");
    let token = milan
        .invite(Some(brno.id()), Vec::new(), None, 1)
        .expect("invite");
    brno.accept_invitation(&token).expect("accept");
    let standing = |c: &City, id: CityId| {
        c.peers()
            .expect("peers")
            .into_iter()
            .find(|p| p.entry.id == id)
            .map(|p| p.standing)
    };
    // Before Brno holds the record, Milan brings it.
    assert_eq!(standing(&brno, milan.id()), Some(Standing::Inviter));
    assert!(brno.trusts(&milan.id()).expect("trusts"));
    brno.roster_add(riga.id(), "Riga", &[]).expect("add");
    brno.federation_leave().expect("leave");
    assert!(brno.federation().expect("federation").is_none());
    assert!(!brno.trusts(&milan.id()).expect("trusts"));
    assert!(brno.roster_entry(&milan.id()).expect("roster").is_none());
    assert!(brno.trusts(&riga.id()).expect("trusts"));
    assert!(matches!(
        brno.federation_leave(),
        Err(CityError::Missing(_))
    ));
}

/// A token may name any record as its federation: one that is not a group lists nobody, and
/// the roster still reads (it used to fail every read, freezing the gate).
#[test]
fn a_federation_that_is_not_a_group_breaks_nothing() {
    let (_dirs, [milan, brno, _, _]) = four_cities();
    let mut practice =
        intercity_protocol::record::Practice::new(brno.id().to_string(), "FabriQ", "en");
    practice.city = "Brno".into();
    let pid = brno
        .create(&Record::Practice(practice), "create practice")
        .expect("practice");
    let inv = Invitation {
        inviter: milan.key_id(),
        name: "Milan".into(),
        addrs: Vec::new(),
        invitee: Some(brno.id()),
        group: None,
        federation: Some(pid.to_string()),
        code: Invitation::new_code().expect("code"),
        expires: now_ms() + 60_000,
    };
    brno.accept_invitation(&inv.to_token(milan.key()))
        .expect("accept");
    let federation = brno.federation().expect("reads").expect("followed");
    assert_eq!((federation.id, federation.record), (pid, None));
    assert!(brno.trusted_roster().expect("the roster reads").len() == 1);
}

/// A city blocked without having been added is not trusted on its own once unblocked.
#[test]
fn unblocking_gives_back_the_trust_there_was() {
    let (_dirs, [milan, brno, riga, _]) = four_cities();
    milan.roster_add(brno.id(), "Brno", &[]).expect("add");
    milan.roster_block(&brno.id()).expect("block");
    milan.roster_block(&riga.id()).expect("block");
    assert!(!milan.trusts(&brno.id()).expect("trusts"));
    milan.roster_unblock(&brno.id()).expect("unblock");
    milan.roster_unblock(&riga.id()).expect("unblock");
    assert!(milan.trusts(&brno.id()).expect("trusts"));
    assert!(!milan.trusts(&riga.id()).expect("trusts"));
    // A bare block leaves nothing behind once lifted (so it cannot stand as an inviter).
    assert!(milan.roster_entry(&riga.id()).expect("roster").is_none());
    assert!(matches!(
        milan.roster_unblock(&riga.id()),
        Err(CityError::Missing(_))
    ));
}

/// A name another city chose is shown beside its id (status, `key recovery show`): nothing in
/// it may move the terminal's cursor or reorder the text around it (found by a review: an
/// inviter's name reached the roster uncleaned).
#[test]
fn names_from_the_network_show_as_one_plain_line() {
    assert_eq!(
        clean_name("Ostrava\n\u{1b}[4A\u{1b}[2Knew key 12D3"),
        "Ostrava[4A[2Knew key 12D3"
    );
    assert_eq!(clean_name("Brno\u{202e}ytiC"), "BrnoytiC");
    assert_eq!(clean_name("\u{200b} Riga \u{feff}"), "Riga");
}

/// A block is not undone by a roster write that read the entry before it: the network's lane
/// dropping a spent token (`joined`) and the operator's block at once, many times over. Each
/// read and wrote the whole entry with no lock they shared, and the block could be lost.
#[test]
fn a_block_is_not_lost_to_a_concurrent_roster_write() {
    let (_dirs, [milan, brno, ..]) = four_cities();
    let id = brno.id();
    let barrier = std::sync::Barrier::new(2);
    for round in 0..300 {
        let mut entry = milan.roster_add(id, "Brno", &[]).expect("add");
        entry.invitation = Some(format!("token {round}"));
        milan.put_roster(&entry).expect("token");
        std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                milan.joined(&id).expect("joined");
            });
            s.spawn(|| {
                barrier.wait();
                milan.roster_block(&id).expect("block");
            });
        });
        let held = milan.roster_entry(&id).expect("read").expect("held");
        assert!(held.blocked, "round {round}: the block was lost");
    }
}

/// Two federations created at once on one city (two operators' commands) make one: the other
/// is refused before it writes anything. Both passed the check before either followed its
/// record: the second published a group record and then failed to follow it.
#[test]
fn two_federations_created_at_once_make_one() {
    use intercity_protocol::record::Kind;
    let (_dirs, [milan, ..]) = four_cities();
    let barrier = std::sync::Barrier::new(2);
    let results: Vec<Result<DocId, CityError>> = std::thread::scope(|s| {
        let create = |name: &'static str| {
            let (milan, barrier) = (&milan, &barrier);
            s.spawn(move || {
                barrier.wait();
                milan.federation_create(name, "")
            })
        };
        let (a, b) = (create("Eurocities"), create("Urbact"));
        [a, b]
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .collect()
    });
    let made: Vec<&DocId> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(made.len(), 1, "{results:?}");
    assert_eq!(milan.federation_id().expect("read"), Some(*made[0]));
    assert!(
        results.iter().any(
            |r| matches!(r, Err(CityError::Invalid(m)) if m.contains("in a federation already"))
        ),
        "{results:?}"
    );
    let groups = milan.list(Some(Kind::Group)).expect("list");
    assert_eq!(groups.len(), 1, "one record published: {groups:?}");
}
