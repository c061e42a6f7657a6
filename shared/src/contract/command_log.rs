//! The admin command log: pages and clears.

use super::*;

/// Entries come back newest first in pages; a clear hides older entries only from the
/// filtered view; clears only move forward.
pub(super) async fn command_log_pages_and_clears(store: &dyn Store) {
    use crate::domain::command_log::CommandEntry;
    assert_eq!(store.last_clear().await.expect("clear"), None);
    assert!(store
        .list_commands(10, None, None)
        .await
        .expect("list")
        .is_empty());
    let mut ids = Vec::new();
    for at in 1..=7 {
        let e = CommandEntry::new(
            at * 1000,
            format!("cmd {at}"),
            at % 2 == 0,
            None,
            5,
            "system".into(),
        );
        store.append_command(&e).await.expect("append");
        ids.push(e.id);
    }
    let first = store.list_commands(3, None, None).await.expect("page 1");
    let commands = |v: &[CommandEntry]| v.iter().map(|e| e.command.clone()).collect::<Vec<_>>();
    assert_eq!(commands(&first), ["cmd 7", "cmd 6", "cmd 5"]);
    let second = store
        .list_commands(3, Some(&first[2].id), None)
        .await
        .expect("page 2");
    assert_eq!(
        commands(&second),
        ["cmd 4", "cmd 3", "cmd 2"],
        "older than the cursor, no repeat"
    );
    let last = store
        .list_commands(3, Some(&second[2].id), None)
        .await
        .expect("page 3");
    assert_eq!(commands(&last), ["cmd 1"]);
    assert_eq!(first[1].status, "success");
    assert_eq!(first[0].status, "error");

    store.record_clear(4500).await.expect("clear");
    store
        .record_clear(3000)
        .await
        .expect("an older clear is ignored");
    assert_eq!(store.last_clear().await.expect("clear"), Some(4500));
    let visible = store
        .list_commands(10, None, Some(4500))
        .await
        .expect("since");
    assert_eq!(commands(&visible), ["cmd 7", "cmd 6", "cmd 5"]);
    let all = store.list_commands(10, None, None).await.expect("all");
    assert_eq!(all.len(), 7, "nothing deleted");
    assert_eq!(
        all.iter().map(|e| e.id.clone()).rev().collect::<Vec<_>>(),
        ids
    );
}
