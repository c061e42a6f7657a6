//! Launch and destroy operations: one at a time.

use super::*;

pub(super) async fn operations_one_at_a_time(store: &dyn Store) {
    let mut first = Operation::start(OperationKind::Launch, 1_000_000);
    store.begin_operation(&first, 60_000).await.expect("begin");
    let second = Operation::start(OperationKind::Destroy, 1_000_100);
    assert!(matches!(
        store.begin_operation(&second, 60_000).await,
        Err(Error::Conflict(_))
    ));
    first.hostnames.push("vm-a".into());
    first.finish(1_000_200);
    store.save_operation(&first).await.expect("save");
    assert_eq!(
        store.get_operation(&first.id).await.expect("get"),
        Some(first.clone())
    );
    store
        .begin_operation(&second, 60_000)
        .await
        .expect("after the first finished");
    // A running operation older than the stale limit does not block forever.
    let third = Operation::start(OperationKind::Launch, 1_000_100 + 60_001);
    store
        .begin_operation(&third, 60_000)
        .await
        .expect("stale one ignored");
    assert_eq!(store.get_operation("nope").await.expect("get"), None);
}
