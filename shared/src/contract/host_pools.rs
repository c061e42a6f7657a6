//! Capacity-pool membership: conditional moves.

use super::*;

/// A move succeeds only from the pool the host is recorded in; of concurrent moves from the
/// same pool exactly one wins.
pub(super) async fn host_pools_move_conditionally(store: Arc<dyn Store>) {
    assert!(store.host_pools().await.expect("pools").is_empty());
    store
        .move_host("h1", None, "T4-spot", 1)
        .await
        .expect("first move");
    assert!(matches!(
        store.move_host("h1", None, "T4-runpod", 2).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store
            .move_host("h1", Some("T4-ondemand"), "T4-runpod", 2)
            .await,
        Err(Error::Conflict(_))
    ));
    store
        .move_host("h1", Some("T4-spot"), "T4-ondemand", 3)
        .await
        .expect("second move");
    let mut tasks = Vec::new();
    for n in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .move_host("h1", Some("T4-ondemand"), &format!("pool-{n}"), 4)
                .await
                .is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.expect("join") {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    let pools = store.host_pools().await.expect("pools");
    assert_eq!(pools.len(), 1);
    assert!(pools["h1"].starts_with("pool-"));
}
