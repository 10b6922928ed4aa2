//! The federation demo (`intercity demo`): the working group "Smart Social Inclusion" as real
//! city nodes on this machine — real libp2p on 127.0.0.1, real RocksDB in a temporary
//! directory, a federation formed by invitations — publishing, co-editing, rejecting a forgery,
//! converging.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intercity_protocol::entry::{DocId, FeedId, Hash32, Scope, sign_entry};
use intercity_protocol::identity::CityKey;
use intercity_protocol::ingest::Ledger;
use intercity_protocol::record::{
    Agenda, AgendaStatus, Group, Item, Member, Partner, Practice, Project, ProjectStatus, Record,
    Role, Sector,
};
use tokio_util::sync::CancellationToken;

use crate::city::{City, CityError};
use crate::daemon::Daemon;
use crate::net::NetConfig;

/// The seed cities, host first.
pub const CITIES: &[(&str, &str)] = &[
    ("Milan", "IT"),
    ("Bialystok", "PL"),
    ("Brno", "CZ"),
    ("Katowice", "PL"),
    ("Madrid", "ES"),
    ("Nantes", "FR"),
    ("Porto", "PT"),
    ("Riga", "LV"),
    ("Utrecht", "NL"),
    ("Warsaw", "PL"),
];

/// Demo options.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Number of cities (2 to 10 named ones; more get numbered names).
    pub cities: usize,
    /// Keep the data directories here instead of a temporary directory.
    pub keep: Option<PathBuf>,
    /// Seed of the cities' keys.
    pub seed: u64,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            cities: 10,
            keep: None,
            seed: 2017,
            timeout: Duration::from_secs(120),
        }
    }
}

/// One city's state at the end.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CityReport {
    /// Name.
    pub name: String,
    /// Records held.
    pub records: usize,
    /// Entries accepted.
    pub accepted: u64,
    /// Entries rejected.
    pub rejected: u64,
    /// Items on the study-visit agenda.
    pub agenda_items: usize,
    /// Connected peers.
    pub peers: usize,
    /// Converged with every other city.
    pub converged: bool,
}

/// The demo's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DemoReport {
    /// Per city.
    pub cities: Vec<CityReport>,
    /// Time from the first publication to full convergence.
    pub convergence_ms: u128,
    /// All converged.
    pub converged: bool,
    /// Where the data directories are.
    pub dir: PathBuf,
}

fn key_for(seed: u64, i: usize) -> CityKey {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&seed.to_be_bytes());
    secret[8..16].copy_from_slice(&(i as u64).to_be_bytes());
    secret[31] = 0x1c;
    CityKey::from_secret(intercity_protocol::entry::Hash32::of(&secret).0)
}

fn name_of(i: usize) -> (String, String) {
    CITIES.get(i).map_or_else(
        || (format!("City {i}"), "EU".to_string()),
        |(n, c)| (n.to_string(), c.to_string()),
    )
}

/// A fingerprint of a city's replica: every feed head.
fn heads(city: &City) -> BTreeMap<FeedId, u64> {
    city.store()
        .feeds()
        .unwrap_or_default()
        .into_iter()
        .map(|(f, h)| (f, h.seq))
        .collect()
}

/// Runs the demo; `say` receives progress lines.
pub async fn run(opts: DemoOptions, mut say: impl FnMut(String)) -> Result<DemoReport, CityError> {
    let n = opts.cities.clamp(2, 64);
    let (_tmp, root) = match &opts.keep {
        Some(dir) => (None, dir.clone()),
        None => {
            let tmp = std::env::temp_dir().join(format!(
                "intercity-demo-{}-{}",
                std::process::id(),
                opts.seed
            ));
            (Some(TempDir(tmp.clone())), tmp)
        }
    };
    say(format!("Starting {n} city nodes under {}", root.display()));
    let shutdown = CancellationToken::new();
    let mut cities: Vec<Arc<City>> = Vec::new();
    for i in 0..n {
        let (name, country) = name_of(i);
        let dir = root.join(name.to_lowercase().replace(' ', "-"));
        cities.push(Arc::new(City::init_with_key(
            &dir,
            &name,
            Some(&country),
            key_for(opts.seed, i),
        )?));
    }
    let cfg = NetConfig {
        listen: vec![
            "/ip4/127.0.0.1/tcp/0"
                .parse()
                .map_err(|e| CityError::Internal(format!("{e}")))?,
        ],
        dial: Vec::new(),
        mdns: false,
        anti_entropy: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        max_connections: 32,
        approve_joins: false,
        ..NetConfig::default()
    };
    let mut daemons = Vec::new();
    for c in &cities {
        daemons.push(Daemon::start_with(c.clone(), cfg.clone(), shutdown.clone()).await?);
    }
    let net_err = |e: crate::net::NetError| CityError::Network(e.to_string());
    // The federation: Milan starts it, the others join by Milan's invitations (none of them
    // knows another: they find each other in the federation's address book). The last city
    // joins last, once the others formed the federation.
    let fid = cities[0].federation_create("EUROCITIES", "Cities sharing what works")?;
    let milan_addr = daemons[0].listening[0].to_string();
    let invite =
        |i: usize| cities[0].invite(Some(cities[i].id()), vec![milan_addr.clone()], None, 1);
    for (i, city) in cities.iter().enumerate().take(n - 1).skip(1) {
        city.accept_invitation(&invite(i)?)?;
    }
    daemons[0].net.roster_changed().await.map_err(net_err)?;
    for d in &daemons[1..n - 1] {
        d.net.roster_changed().await.map_err(net_err)?;
    }
    let formed = |c: &City| -> bool {
        matches!(c.record(fid), Ok(Record::Group(g)) if g.members.len() >= n - 1 && g.addresses.len() >= n - 1)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cities[..n - 1].iter().all(|c| formed(c)) {
        if Instant::now() > deadline {
            return Err(CityError::Network(
                "the cities did not form the federation within 60 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    say(format!(
        "{n} nodes listening on 127.0.0.1; Milan started the federation EUROCITIES and {} cities joined by its invitations, finding each other in its address book",
        n - 2
    ));
    // The newcomer: one invitation from Milan, and every member reaches it.
    let joined = Instant::now();
    let token = invite(n - 1)?;
    daemons[0].net.roster_changed().await.map_err(net_err)?;
    cities[n - 1].accept_invitation(&token)?;
    daemons[n - 1].net.roster_changed().await.map_err(net_err)?;
    let newcomer = cities[n - 1].id().to_string();
    let newcomer_name = cities[n - 1].profile().name.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut reached = 0;
        for d in &daemons[..n - 1] {
            let status = d.net.status().await.map_err(net_err)?;
            if status.peers.iter().any(|p| p.id == newcomer && p.connected) {
                reached += 1;
            }
        }
        if reached == n - 1 {
            break;
        }
        if Instant::now() > deadline {
            return Err(CityError::Network(format!(
                "{newcomer_name} joined by Milan's invitation, but only {reached} of {} cities reached it within 30 s",
                n - 1
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    say(format!(
        "{newcomer_name} accepted Milan's invitation and joined: all {} cities reached it in {:.1} s, with no operator action",
        n - 1,
        joined.elapsed().as_secs_f64()
    ));

    let started = Instant::now();
    let milan = &cities[0];
    let me = milan.id().to_string();
    // Milan publishes its practices and projects.
    let practices = [
        (
            "Makerspace visit: new craft and digital manufacturing",
            "makers",
        ),
        ("OpenCare: participatory care", "care"),
        (
            "FabriQ, Milan's first social innovation incubator",
            "social-innovation",
        ),
        ("Social entrepreneurship strategy", "social-economy"),
        ("Civic crowdfunding platform", "crowdfunding"),
    ];
    for (title, theme) in practices {
        let mut p = Practice::new(me.clone(), title, "en");
        p.city = "Milan".into();
        p.country = Some("IT".into());
        p.themes = vec![theme.into(), "smart-social-inclusion".into()];
        milan.create(&Record::Practice(p), "create practice")?;
    }
    let projects: [(&str, &str, Vec<Partner>); 3] = [
        (
            "MiGenerationLab",
            "Youth employment",
            vec![
                Partner {
                    name: "Impact Hub Milano".into(),
                    sector: Sector::Private,
                },
                Partner {
                    name: "Fondazione Cariplo".into(),
                    sector: Sector::Ngo,
                },
                Partner {
                    name: "Politecnico di Milano".into(),
                    sector: Sector::University,
                },
            ],
        ),
        (
            "Milan Social Innovation Platform",
            "Matching social innovators with the city",
            vec![],
        ),
        (
            "Local Innovation Network",
            "Waste, recycling and resources",
            vec![],
        ),
    ];
    for (name, description, partners) in projects {
        let mut p = Project::new(me.clone(), name);
        p.description = description.into();
        p.lead_city = "Milan".into();
        p.partners = partners;
        p.status = ProjectStatus::Running;
        milan.create(&Record::Project(p), "create project")?;
    }
    say("Milan published 5 practices and 3 projects".into());
    // The working group with every city as a member, and the study-visit agenda.
    let mut group = Group::new("Smart Social Inclusion", me.clone(), "Milan");
    for c in cities.iter().skip(1) {
        group.members.insert(
            c.id().to_string(),
            Member {
                name: c.profile().name.clone(),
                role: Role::Member,
            },
        );
    }
    // Dates relative to today, so that `agenda next` after the demo shows the visit.
    let today = crate::time::today(crate::city::now_ms());
    let in_days = |n: i32| crate::time::add_days(&today, n).unwrap_or_else(|| today.clone());
    let mut agenda = Agenda::new("Study visit to Milan", in_days(21));
    agenda.end = Some(in_days(22));
    agenda.time_zone = "Europe/Rome".into();
    agenda.venue = "FabriQ, Milan".into();
    agenda.host_city = "Milan".into();
    agenda.attendees = cities
        .iter()
        .skip(1)
        .map(|c| c.profile().name.clone())
        .collect();
    for (slot, title) in [
        (
            "09:30-11:00",
            "Makerspace visit: new craft and digital manufacturing",
        ),
        ("11:00-12:30", "OpenCare participatory care project"),
        (
            "14:00-15:00",
            "FabriQ, Milan's first social innovation incubator",
        ),
        ("15:00-16:00", "The city's social entrepreneurship strategy"),
        ("16:00-17:00", "The civic crowdfunding platform"),
    ] {
        let mut item = Item::new(title);
        item.slot = slot.into();
        agenda.items.push(item);
    }
    let mut wrap_up = Item::new("Wrap-up and next steps");
    wrap_up.slot = "09:30-11:00".into();
    wrap_up.day = in_days(22);
    agenda.items.push(wrap_up);
    agenda.rerank();
    agenda.status = AgendaStatus::Published;
    let agenda_id = intercity_protocol::record::new_agenda_id();
    group.agendas.insert(agenda_id.clone(), agenda);
    // The kick-off meeting, held two months ago, with its decision and minutes.
    let mut kickoff = Agenda::new("Kick-off meeting in Brno", in_days(-60));
    kickoff.time_zone = "Europe/Prague".into();
    kickoff.venue = "Brno City Hall".into();
    kickoff.host_city = "Brno".into();
    kickoff.status = AgendaStatus::Held;
    kickoff.decisions = vec!["Milan hosts the study visit".into()];
    kickoff.minutes = "Nine cities attended. Milan offered to host a study visit.".into();
    group
        .agendas
        .insert(intercity_protocol::record::new_agenda_id(), kickoff);
    let gid = milan.create(
        &Record::Group(group),
        "create working group with the study-visit agenda",
    )?;
    say(format!(
        "Milan created the working group and the study-visit agenda (group {})",
        &gid.to_string()[..8]
    ));

    // Wait until every city holds the group, then three cities add items concurrently.
    wait_until(opts.timeout, || {
        cities.iter().all(|c| c.record(gid).is_ok())
    })
    .await;
    say(format!(
        "every city received the group after {} ms",
        started.elapsed().as_millis()
    ));
    let editors: Vec<usize> = [2usize, 9, 6].into_iter().filter(|&i| i < n).collect();
    for &i in &editors {
        let c = &cities[i];
        let title = format!("{} presents its own inclusion practice", c.profile().name);
        let aid = agenda_id.clone();
        c.edit(gid, &format!("add agenda item '{title}'"), move |r| {
            if let Record::Group(g) = r
                && let Some(a) = g.agendas.get_mut(&aid)
            {
                let mut item = Item::new(title);
                item.slot = "17:00-17:30".into();
                // Before the wrap-up on the second day.
                a.insert_item(a.items.len().saturating_sub(1), item);
            }
            Ok(())
        })?;
        say(format!(
            "{} added an agenda item (concurrently)",
            c.profile().name
        ));
    }

    // A forgery: an entry claiming to be Milan's, signed by an outsider, pushed into one node.
    let outsider = CityKey::from_secret([0xee; 32]);
    let target = &cities[n - 1];
    let milan_feed = FeedId {
        author: milan.id(),
        scope: Scope::Federation,
    };
    let head = target.store().head(&milan_feed).ok().flatten();
    let forged = sign_entry(
        &outsider,
        Scope::Federation,
        head.map_or(1, |h| h.seq + 1),
        head.map_or(Hash32::default(), |h| h.hash),
        DocId([0; 16]),
        b"forged",
        0,
    );
    let mut bytes = forged.encode();
    bytes[1..33].copy_from_slice(milan.id().as_bytes()); // claim Milan as author
    match target.ingest_remote(&bytes, b"forged") {
        Err(e) => say(format!(
            "{} dropped a forged entry claiming to be Milan's: {e}",
            target.profile().name
        )),
        Ok(v) => say(format!("UNEXPECTED: forged entry was {v:?}")),
    }
    // And a validly signed but unauthorized edit: Katowice retitles Milan's first practice.
    let practice_id = milan
        .list(Some(intercity_protocol::record::Kind::Practice))?
        .first()
        .and_then(|s| s.id.parse().ok());
    if let (Some(pid), Some(katowice)) = (practice_id, cities.get(3)) {
        wait_until(opts.timeout, || katowice.record(pid).is_ok()).await;
        let _ = raw_unauthorized_edit(katowice, pid);
        say("Katowice signed an edit of Milan's practice without being an editor; every node will reject it".into());
    }

    // Convergence: every city holds the same feed heads, nothing pending.
    let converged = wait_until(opts.timeout, || {
        let first = heads(&cities[0]);
        cities.iter().all(|c| {
            heads(c) == first && c.store().entry_counts().map(|x| x.2 == 0).unwrap_or(false)
        })
    })
    .await;
    let convergence_ms = started.elapsed().as_millis();
    let mut reports = Vec::new();
    for (c, d) in cities.iter().zip(&daemons) {
        let (accepted, rejected, ..) = c.store().entry_counts().unwrap_or_default();
        let items = match c.record(gid) {
            Ok(Record::Group(g)) => g.agendas.get(&agenda_id).map_or(0, |a| a.items.len()),
            _ => 0,
        };
        let peers = d
            .net
            .status()
            .await
            .map(|s| s.peers.iter().filter(|p| p.connected).count())
            .unwrap_or(0);
        reports.push(CityReport {
            name: c.profile().name.clone(),
            records: c.list(None).map(|l| l.len()).unwrap_or(0),
            accepted,
            rejected,
            agenda_items: items,
            peers,
            converged: heads(c) == heads(&cities[0]),
        });
    }
    shutdown.cancel();
    for d in daemons {
        d.join().await;
    }
    drop(cities);
    Ok(DemoReport {
        cities: reports,
        convergence_ms,
        converged,
        dir: root,
    })
}

/// Builds Katowice's unauthorized edit straight from its replica (as a misbehaving node would)
/// and ingests it there; the entry then syncs like any other and is rejected everywhere.
fn raw_unauthorized_edit(city: &City, id: DocId) -> Result<(), CityError> {
    let mut doc = city.load(id)?;
    let mut record = city.record(id)?;
    if let Record::Practice(p) = &mut record {
        p.title = "Katowice's practice now".into();
    }
    let actor = automerge::ActorId::from(city.id().as_bytes().to_vec());
    let Some(change) = intercity_protocol::doc::edit_document(&mut doc, actor, &record, "retitle")?
    else {
        return Ok(());
    };
    let feed = FeedId {
        author: city.id(),
        scope: Scope::Federation,
    };
    let head = city.store().head(&feed)?;
    let (seq, prev) = head.map_or((1, Hash32::default()), |h| (h.seq + 1, h.hash));
    let entry = sign_entry(
        city.key(),
        Scope::Federation,
        seq,
        prev,
        id,
        change.raw_bytes(),
        crate::city::now_ms(),
    );
    city.ingest_remote(&entry.encode(), change.raw_bytes())?;
    Ok(())
}

async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// Removes a temporary directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a demo keeps a city's data directory.
pub fn city_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name.to_lowercase().replace(' ', "-"))
}
