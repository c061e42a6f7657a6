//! VM logs: append, read, trim, many writers.

use super::*;

pub(super) async fn logs_append_read_and_trim(store: &dyn Store) {
    use crate::domain::logs::{MAX_CHUNK_BYTES, MIN_CAP_BYTES};
    assert_eq!(
        store.read_logs("c-log", 0).await.expect("read"),
        None,
        "never logged"
    );
    let first: Vec<String> = vec!["one".into(), "two".into()];
    store
        .append_logs("c-log", &first, 1 << 20, 1)
        .await
        .expect("append");
    let page = store
        .read_logs("c-log", 0)
        .await
        .expect("read")
        .expect("logged");
    assert_eq!(page.lines, first);
    store
        .append_logs("c-log", &["three".to_string()], 1 << 20, 2)
        .await
        .expect("append");
    let newer = store
        .read_logs("c-log", page.cursor)
        .await
        .expect("read")
        .expect("logged");
    assert_eq!(newer.lines, vec!["three".to_string()]);
    let none_newer = store
        .read_logs("c-log", newer.cursor)
        .await
        .expect("read")
        .expect("logged");
    assert!(none_newer.lines.is_empty());

    // Cap: push 3x the cap in numbered lines of 100 bytes, across chunk boundaries.
    let cap = MIN_CAP_BYTES.max(2 * MAX_CHUNK_BYTES);
    let line = |i: usize| format!("{i:08} {}", "x".repeat(90));
    let total_lines = 3 * cap / 100;
    for batch in (0..total_lines).collect::<Vec<_>>().chunks(700) {
        let lines: Vec<String> = batch.iter().map(|i| line(*i)).collect();
        store
            .append_logs("c-cap", &lines, cap, 3)
            .await
            .expect("append");
    }
    let kept = store
        .read_logs("c-cap", 0)
        .await
        .expect("read")
        .expect("logged")
        .lines;
    let kept_bytes: usize = kept.iter().map(|l| l.len() + 1).sum();
    assert!(kept_bytes <= cap, "{kept_bytes} > {cap}");
    assert!(
        kept_bytes > cap - 100,
        "no more than one line short of the cap"
    );
    assert!(
        kept.iter().all(|l| l.len() == 99),
        "every kept line is whole"
    );
    let first_kept: usize = kept[0]
        .get(..8)
        .unwrap_or_default()
        .parse()
        .expect("numbered");
    let expected: Vec<String> = (first_kept..total_lines).map(line).collect();
    assert_eq!(kept, expected, "the newest lines, in order, none missing");

    store.delete_logs("c-log").await.expect("delete");
    store.delete_logs("c-cap").await.expect("delete");
    assert_eq!(store.read_logs("c-log", 0).await.expect("read"), None);
}

pub(super) async fn logs_from_many_writers_are_all_kept(store: Arc<dyn Store>) {
    let mut tasks = tokio::task::JoinSet::new();
    for vm in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            for batch in 0..10 {
                let lines: Vec<String> = (0..25)
                    .map(|i| format!("vm{vm} batch{batch} line{i}"))
                    .collect();
                store
                    .append_logs(&format!("c-many-{vm}"), &lines, 1 << 20, 1)
                    .await
                    .expect("append");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
    for vm in 0..20 {
        let hostname = format!("c-many-{vm}");
        let lines = store
            .read_logs(&hostname, 0)
            .await
            .expect("read")
            .expect("logged")
            .lines;
        assert_eq!(lines.len(), 250, "{hostname}");
        assert_eq!(lines[0], format!("vm{vm} batch0 line0"));
        assert_eq!(lines[249], format!("vm{vm} batch9 line24"));
        store.delete_logs(&hostname).await.expect("delete");
    }
}
