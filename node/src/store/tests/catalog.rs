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
/// translations changed) they are exactly the postings of the records as they now read.
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
        let store = city.store();
        let held: Postings = store
            .scan("postings", &[])
            .expect("scan")
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let (built, stats) = catalog_as_built(store);
        assert_eq!(held, built, "round {round}");
        assert_eq!(
            store.catalog_stats().expect("stats"),
            stats,
            "round {round}"
        );
        assert_cache_reads_true(&city);
    }
    assert!(
        city.store()
            .doc_cache
            .lock()
            .expect("cache")
            .iter()
            .any(|held| held.id == group && held.noted.is_some()),
        "the group is not cached with its catalog rows"
    );
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
        let held: Postings = city
            .store()
            .scan("postings", &[])
            .expect("scan")
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(held, catalog_as_built(city.store()).0, "{prefix}");
    }
}
