//! Backups while the node runs, and a restore that signs nothing until the city has caught up
//! with its own feeds (issue #14): real nodes, real RocksDB checkpoints.

use std::sync::Arc;
use std::time::Duration;

use intercity_node::{City, CityError};
use intercity_protocol::record::{Practice, Record};
use intercity_tests::{TestNode, eventually, practice, titles};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_city_catches_up_with_its_own_feed_before_it_signs() {
    let milan = TestNode::spawn("Milan", 1).await;
    let brno = TestNode::spawn("Brno", 2).await;
    milan.link(&brno).await;
    practice(&milan.city, "FabriQ");
    assert!(eventually(WAIT, || titles(&brno.city) == ["FabriQ"]).await);

    // A backup while the node runs, then more of Milan's own entries that only Brno keeps.
    let backups = tempfile::tempdir().expect("tempdir");
    let info = milan
        .city
        .backup(&backups.path().join("milan"))
        .expect("backup");
    assert_eq!(info.id, milan.id());
    assert!(info.bytes > 0);
    practice(&milan.city, "OpenCare");
    practice(&milan.city, "Civic crowdfunding");
    assert!(eventually(WAIT, || titles(&brno.city).len() == 3).await);
    let mut milan = milan;
    milan.stop().await;

    // The restore: Milan's store as it was at the backup.
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let city = City::restore(&backups.path().join("milan"), dir.path()).expect("restore");
    assert_eq!(titles(&city), ["FabriQ"]);
    assert!(city.restored().expect("restored").is_some());
    // It signs nothing yet, even before its node starts: seq 2 is Brno's to give back.
    let mut p = Practice::new(city.id().to_string(), "Too early", "en");
    p.city = "Milan".into();
    assert!(matches!(
        city.create(&Record::Practice(p.clone()), "create practice"),
        Err(CityError::Busy(_))
    ));
    // Nor statements: naming guardians signs the federation feed too.
    assert!(matches!(
        city.designate_guardians(1, vec![brno.id()]),
        Err(CityError::Busy(_))
    ));
    // The restore is not over while no peer has shown this city's own federation feed (a peer
    // sharing no scope with it, or one whose heads leave it out, does not end it).
    assert!(
        !city
            .caught_up_after_restore(&std::collections::HashMap::new())
            .expect("check")
    );
    assert!(city.restored().expect("restored").is_some());
    let restored = TestNode::start_with(Arc::new(city), dir, milan.cfg.clone()).await;
    assert!(
        eventually(WAIT, || titles(&restored.city).len() == 3
            && restored.city.restored().ok().flatten().is_none())
        .await,
        "the restored city did not catch up: {:?}",
        titles(&restored.city)
    );
    // Now it signs, after what it had signed before: no fork anywhere.
    p.title = "After the restore".into();
    restored
        .city
        .create(&Record::Practice(p), "create practice")
        .expect("signs again");
    assert!(
        eventually(WAIT, || titles(&brno.city)
            .contains(&"After the restore".to_string()))
        .await
    );
    assert_eq!(brno.city.store().fork_count().expect("forks"), 0);
    // A backup is not restored over a city.
    let again = City::restore(&backups.path().join("milan"), restored.dir.path());
    assert!(matches!(again, Err(CityError::Exists(_))), "{again:?}");
}
