//! Rate-limit counters.

use super::*;

/// Every concurrent hit is counted once; windows and buckets are separate.
pub(super) async fn rate_counters(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..150 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .count_hit("ip:198.51.100.1", 60_000, 180_000)
                .await
                .expect("hit")
        }));
    }
    let mut counts: Vec<u64> = Vec::new();
    for t in tasks {
        counts.push(t.await.expect("join"));
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=150).collect::<Vec<u64>>(),
        "each hit sees a distinct count"
    );
    assert_eq!(
        store
            .count_hit("ip:198.51.100.2", 60_000, 180_000)
            .await
            .expect("hit"),
        1
    );
    assert_eq!(
        store
            .count_hit("ip:198.51.100.1", 120_000, 240_000)
            .await
            .expect("hit"),
        1
    );
    assert_eq!(
        store
            .count_hit("ip:198.51.100.1", 60_000, 180_000)
            .await
            .expect("hit"),
        151
    );
    // Reading a count writes nothing.
    for _ in 0..3 {
        assert_eq!(
            store.hits("ip:198.51.100.1", 60_000).await.expect("read"),
            151
        );
    }
    assert_eq!(
        store.hits("ip:203.0.113.99", 60_000).await.expect("read"),
        0
    );
    assert_eq!(store.hits("ip:198.51.100.1", 0).await.expect("read"), 0);
}
