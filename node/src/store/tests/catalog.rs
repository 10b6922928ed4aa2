//! The catalog's rows as the store's writes leave them, against a catalog built from scratch.

use super::*;
use crate::catalog::{count_terms, encode_posting, posting_key, units_of};

/// Posting rows: (key, value).
type Postings = Vec<(Vec<u8>, Vec<u8>)>;

/// The postings and statistics (units, terms) of a catalog built from the store's records as
/// they read now.
fn catalog_as_built(store: &Store) -> (Postings, (u64, u64)) {
    let mut postings = Vec::new();
    let (mut units, mut terms) = (0, 0);
    for summary in store.records(None).expect("records") {
        let id: DocId = summary.id.parse().expect("id");
        let record = store.record_at_head(&id).expect("read").expect("held");
        for e in units_of(id, &record, summary.updated) {
            let (counts, len) = count_terms(&e.texts);
            postings.extend(
                counts
                    .iter()
                    .map(|(t, c)| (posting_key(t, &e.key), encode_posting(*c, len).to_vec())),
            );
            units += 1;
            terms += u64::from(len);
        }
    }
    postings.sort();
    (postings, (units, terms))
}

/// An edit's postings are mended from the fields it changed, not rebuilt: after any run of
/// edits (words swapped in place, added, removed, repeated; fields emptied; the language and
/// translations changed) they are exactly the postings of the records as they now read. The
/// group is cached, and its later edits mend its postings from the terms the cache notes
/// (reading none); the practice is not, and its edits read the postings they change.
#[test]
fn mended_postings_are_the_postings_of_the_record_as_it_reads() {
    use intercity_protocol::record::{Agenda, Group, Item, Practice, Translation};
    let (_dir, city) = city(9, "Milan");
    let words = [
        "youth",
        "employment",
        "employ",
        "cities",
        "city",
        "the",
        "mobility",
        "2017",
        "Łódź",
        "café",
        "projekte",
        "inclusione",
        "a",
        "green",
        "greener",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % n as u64).expect("small")
    };
    let mut practice = Practice::new(city.id().to_string(), "Youth employment", "en");
    practice.body = "green mobility for the city".into();
    let practice = city
        .create(&Record::Practice(practice), "create")
        .expect("create");
    let mut group = Group::new("Green cities", city.id().to_string(), "Milan");
    let mut agenda = Agenda::new("Study visit", "2027-03-01");
    // Costly to write whole: cached, with the catalog rows its writes leave (`CachedDoc::noted`).
    agenda.minutes = "Notes of the meeting, to be read before it. ".repeat(1600);
    for k in 0..4 {
        let mut item = Item::new(format!("Item {k}"));
        item.id = format!("i{k}");
        agenda.items.push(item);
    }
    group.agendas.insert("visit".into(), agenda);
    let group = city.create(&Record::Group(group), "create").expect("group");
    for round in 0..120 {
        let (w, at, what) = (words[next(words.len())], next(6), next(9));
        let edited = |text: &mut String| {
            let mut t: Vec<&str> = text.split(' ').filter(|s| !s.is_empty()).collect();
            match what {
                0..=3 if !t.is_empty() => {
                    let i = at % t.len();
                    t[i] = w;
                }
                4 | 5 => t.insert(at.min(t.len()), w),
                6 if !t.is_empty() => {
                    t.remove(at % t.len());
                }
                7 => t.clear(),
                _ => t.push(w),
            }
            *text = t.join(" ");
        };
        let result = if round % 2 == 0 {
            city.edit(practice, "edit", |r| {
                let Record::Practice(p) = r else {
                    unreachable!()
                };
                match at {
                    0 => edited(&mut p.summary),
                    1 | 2 => edited(&mut p.body),
                    3 => p.language = ["en", "it", "pl", "de"][what % 4].into(),
                    4 => edited(
                        &mut p
                            .translations
                            .entry(["it", "fr"][what % 2].into())
                            .or_insert_with(Translation::default)
                            .summary,
                    ),
                    _ => edited(&mut p.title),
                }
                Ok(())
            })
        } else {
            city.edit(group, "edit", |r| {
                let Record::Group(g) = r else { unreachable!() };
                // An agenda added or removed: a unit of the group added or gone.
                if at == 5 && g.agendas.remove("extra").is_none() {
                    g.agendas.insert(
                        "extra".into(),
                        Agenda::new(format!("Extra {w}"), "2027-04-01"),
                    );
                }
                let agenda = g.agendas.get_mut("visit").expect("agenda");
                match at {
                    0 => edited(&mut agenda.title),
                    5 => {}
                    _ => edited(&mut agenda.items[at % 4].notes),
                }
                Ok(())
            })
        };
        // An edit that leaves a title empty is refused, and one that changes nothing too.
        if result.is_err() {
            continue;
        }
        assert_catalog_as_built(&city, &format!("round {round}"));
    }
    assert_terms_noted(&city, group, b"visit");
    // Many terms changed at once, the length kept: written again rather than read one by one.
    for prefix in ["w", "v"] {
        city.edit(practice, "many", |r| {
            let Record::Practice(p) = r else {
                unreachable!()
            };
            p.body = (0..40)
                .map(|n| format!("{prefix}{n}x"))
                .collect::<Vec<_>>()
                .join(" ");
            Ok(())
        })
        .expect("edit");
        assert_catalog_as_built(&city, prefix);
    }
}

/// The cache of `city` holds document `id` with its catalog rows, and with the term counts of
/// its unit whose key ends with `unit` (an edited one).
fn assert_terms_noted(city: &crate::City, id: DocId, unit: &[u8]) {
    let cache = city.store().doc_cache.lock().expect("cache");
    let noted = cache
        .iter()
        .find(|held| held.id == id)
        .and_then(|held| held.noted.as_ref());
    assert!(
        noted.is_some_and(|n| n
            .rows
            .iter()
            .any(|r| r.key.ends_with(unit) && r.terms.is_some())),
        "the document is not cached with its catalog rows, the edited unit's terms with them"
    );
}

/// The postings and statistics of `city` are those of a catalog built from its records as
/// they read, and its cache reads true.
fn assert_catalog_as_built(city: &crate::City, at: &str) {
    let store = city.store();
    let held: Postings = store
        .scan("postings", &[])
        .expect("scan")
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    let (built, stats) = catalog_as_built(store);
    assert_eq!(held, built, "{at}");
    assert_eq!(store.catalog_stats().expect("stats"), stats, "{at}");
    assert_cache_reads_true(city);
}

/// A term counted up to its bound in a unit (65,535 times: postings hold u16 counts) is not
/// known exactly: an edit of a cached record that takes a count to the bound, or changes one
/// at it, counts the unit's terms again, and the postings stay those of the record as it
/// reads.
#[test]
fn a_count_at_its_bound_is_counted_again() {
    use intercity_protocol::record::{Agenda, Group, Item};
    let (_dir, city) = city(9, "Milan");
    let item = |k: usize, times: usize| {
        let mut item = Item::new(format!("Item {k}"));
        item.id = format!("i{k}");
        item.notes = "ab ".repeat(times);
        item
    };
    let mut group = Group::new("Green cities", city.id().to_string(), "Milan");
    let mut agenda = Agenda::new("Study visit", "2027-03-01");
    // 19 × 3,333 = 63,327 times "ab": under the bound.
    agenda.items = (0..19).map(|k| item(k, 3_333)).collect();
    group.agendas.insert("visit".into(), agenda);
    let group = city.create(&Record::Group(group), "create").expect("group");
    let edit = |what: &str, f: &dyn Fn(&mut Agenda)| {
        city.edit(group, what, |r| {
            let Record::Group(g) = r else { unreachable!() };
            f(g.agendas.get_mut("visit").expect("agenda"));
            Ok(())
        })
        .expect(what);
        assert_catalog_as_built(&city, what);
    };
    // Cached from here on, with the terms of its units noted.
    edit("title", &|a| a.title = "Study visit to Brno".into());
    edit("to the bound", &|a| a.items.push(item(19, 3_333)));
    edit("at the bound", &|a| a.items[0].notes = "ab ".repeat(1_000));
    edit("under it", &|a| {
        a.items.remove(1);
    });
    edit("under it, mended", &|a| {
        a.items[2].notes = "ab cd ".repeat(100)
    });
    assert_terms_noted(&city, group, b"visit");
}

/// A reindex that stops halfway (here: a `records` row that does not parse) leaves the
/// catalog marked as not current, so that the next open rebuilds it whole; it used to keep
/// saying current over an emptied catalog, and search found nothing, for good.
#[test]
fn a_reindex_that_stops_halfway_is_finished_by_the_next_open() {
    use crate::catalog::Query;
    use intercity_protocol::record::Practice;
    let (dir, city) = city(10, "Milan");
    for title in ["Water reuse", "Water meters", "Rain water gardens"] {
        let practice = Practice::new(city.id().to_string(), title, "en");
        city.create(&Record::Practice(practice), "create")
            .expect("create");
    }
    let water = |city: &crate::City| {
        let q = Query {
            text: Some("water".into()),
            ..Query::default()
        };
        city.query(&q).expect("query").total
    };
    assert_eq!(water(&city), 3);
    let store = city.store();
    store
        .db
        .put_cf(store.cf("records"), [0xaa; 16], b"not json")
        .expect("put");
    assert!(
        city.reindex().is_err(),
        "a row that does not parse stops it"
    );
    store
        .db
        .delete_cf(store.cf("records"), [0xaa; 16])
        .expect("delete");
    drop(city);
    let city = crate::City::open(dir.path()).expect("reopen");
    assert_eq!(water(&city), 3, "the next open rebuilt the catalog");
}
