//! VMs: inserts, the state machine, claims, liveness, seats, moves and claim races.

use super::*;

pub(super) async fn insert_get_and_duplicates(store: &dyn Store) {
    let mut v = vm("c-insert", 10);
    v.metrics.fields.insert("cloud_init_start".into(), 1.5);
    v.instance_id = Some("i-123".into());
    store.insert_vm(&v).await.expect("insert");
    assert_eq!(
        store.get_vm("c-insert").await.expect("get"),
        Some(v.clone())
    );
    assert!(matches!(store.insert_vm(&v).await, Err(Error::Conflict(_))));
    assert_eq!(store.get_vm("c-missing").await.expect("get"), None);
    assert_eq!(store.list_vms().await.expect("list"), vec![v]);
    clear(store).await;
}

pub(super) async fn updates_follow_the_state_machine(store: &dyn Store) {
    store.insert_vm(&vm("c-upd", 10)).await.expect("insert");
    let v = store
        .update_vm("c-upd", &VmChange::Status(VmStatus::Running), 20)
        .await
        .expect("status");
    assert_eq!(
        (v.status, v.updated_at, v.last_seen_at),
        (VmStatus::Running, 20, Some(20))
    );
    let v = store
        .update_vm("c-upd", &VmChange::GpuHealth(GpuHealth::Unhealthy), 21)
        .await
        .expect("gpu");
    assert_eq!(v.gpu_health, GpuHealth::Unhealthy);
    let v = store
        .update_vm("c-upd", &VmChange::InUse(true), 22)
        .await
        .expect("in use");
    assert!(v.in_use);
    let v = store
        .update_vm("c-upd", &VmChange::Failed("launch failed".into()), 23)
        .await
        .expect("failed");
    assert_eq!(v.status, VmStatus::Error);
    assert_eq!(
        v.last_seen_at,
        Some(22),
        "a system change is not the VM reporting"
    );
    let refused = store
        .update_vm("c-upd", &VmChange::Status(VmStatus::Running), 24)
        .await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    let after = store.get_vm("c-upd").await.expect("get").expect("exists");
    assert_eq!(after, v, "a refused change leaves the record as it was");
    let missing = store.update_vm("c-nope", &VmChange::InUse(true), 25).await;
    assert!(matches!(missing, Err(Error::NotFound(_))));
    clear(store).await;
}

pub(super) async fn free_count_and_claim_use_the_assignable_rule(store: &dyn Store) {
    // One VM for every (status, health) pair; only running & not unhealthy count.
    let mut n = 0;
    for status in VmStatus::ALL {
        for health in GpuHealth::ALL {
            n += 1;
            let hostname = format!("c-rule-{n}");
            store.insert_vm(&vm(&hostname, n)).await.expect("insert");
            store
                .update_vm(&hostname, &VmChange::GpuHealth(health), n)
                .await
                .expect("gpu");
            if status != VmStatus::Initializing {
                store
                    .update_vm(&hostname, &VmChange::Status(status), n)
                    .await
                    .expect("status");
            }
        }
    }
    let expected = store
        .list_vms()
        .await
        .expect("list")
        .iter()
        .filter(|v| v.is_assignable(0))
        .count();
    assert_eq!(expected, 2, "running+healthy and running+n/a");
    assert_eq!(store.count_assignable(0).await.expect("count"), 2);

    let mut got = HashSet::new();
    for email in ["a@x.org", "b@x.org", "c@x.org"] {
        match store.claim_vm(&claim(email)).await.expect("claim") {
            ClaimOutcome::Assigned(v) => {
                assert_eq!(v.status, VmStatus::Running);
                assert_ne!(v.gpu_health, GpuHealth::Unhealthy);
                let a = v.assignment.clone().expect("assigned");
                assert_eq!(a.email, email);
                got.insert(v.hostname);
            }
            ClaimOutcome::NoneFree => assert_eq!(email, "c@x.org"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got.len(), 2);
    assert_eq!(store.count_assignable(0).await.expect("count"), 0);
    clear(store).await;
}

/// Liveness is part of the rule: a VM last heard from before `live_since` is neither
/// counted free nor handed out, whatever its status says; once it calls again it is.
pub(super) async fn quiet_vms_are_never_claimed_nor_counted(store: &dyn Store) {
    running(store, "c-live-old", 100).await; // last heard from at 100
    running(store, "c-live-new", 500).await; // last heard from at 500
    assert_eq!(store.count_assignable(0).await.expect("count"), 2);
    assert_eq!(store.count_assignable(400).await.expect("count"), 1);
    assert_eq!(store.count_assignable(600).await.expect("count"), 0);
    let mut late = claim("late@x.org");
    late.live_since = 600;
    assert_eq!(
        store.claim_vm(&late).await.expect("claim"),
        ClaimOutcome::NoneFree
    );
    let mut first = claim("first@x.org");
    first.live_since = 400;
    match store.claim_vm(&first).await.expect("claim") {
        ClaimOutcome::Assigned(v) => assert_eq!(v.hostname, "c-live-new"),
        other => panic!("unexpected {other:?}"),
    }
    let mut second = claim("second@x.org");
    second.live_since = 400;
    assert_eq!(
        store.claim_vm(&second).await.expect("claim"),
        ClaimOutcome::NoneFree,
        "the quiet VM is not handed out"
    );
    // The sweep's mark is refused while the VM is live, and taken once it is quiet.
    let lost = |live_since| VmChange::Lost {
        reason: "no heartbeat".into(),
        live_since,
    };
    assert!(matches!(
        store.update_vm("c-live-old", &lost(50), 700).await,
        Err(Error::Conflict(_))
    ));
    let marked = store
        .update_vm("c-live-old", &lost(400), 700)
        .await
        .expect("lost");
    assert_eq!(marked.status, VmStatus::Unknown);
    assert_eq!(store.count_assignable(0).await.expect("count"), 0);
    // It calls again: back through the state machine, and free again.
    store
        .update_vm("c-live-old", &VmChange::Status(VmStatus::Running), 800)
        .await
        .expect("back");
    assert_eq!(store.count_assignable(400).await.expect("count"), 1);
    match store.claim_vm(&second).await.expect("claim") {
        ClaimOutcome::Assigned(v) => assert_eq!(v.hostname, "c-live-old"),
        other => panic!("unexpected {other:?}"),
    }
    clear(store).await;
}

/// A seat is found by its token's hash only; re-issuing replaces the hash; a move takes the
/// whole assignment (email, seat, command; new PIN) to a live free VM and leaves the old one
/// in `error`, unassigned; a move with nothing free changes nothing.
pub(super) async fn seats_are_found_reissued_and_moved(store: &dyn Store) {
    running(store, "c-seat-1", 100).await;
    let mut request = claim("seat@x.org");
    let token = SeatToken::generate(1_000);
    request.seat_hash = token.hash();
    let vm = match store.claim_vm(&request).await.expect("claim") {
        ClaimOutcome::Assigned(v) => v,
        other => panic!("unexpected {other:?}"),
    };
    let a = vm.assignment.clone().expect("assigned");
    assert_eq!(a.seat_hash.as_deref(), Some(token.hash().as_str()));
    assert_eq!(a.command_at, 1_000);
    let found = store.vm_by_seat(&token.hash()).await.expect("seat");
    assert_eq!(found.map(|v| v.hostname), Some("c-seat-1".to_string()));
    assert_eq!(
        store
            .vm_by_seat(&SeatToken::generate(1_000).hash())
            .await
            .expect("seat"),
        None
    );
    // A new command replaces the old and moves its time on.
    let updated = store
        .update_vm("c-seat-1", &VmChange::NewCommand("cmd-2".into()), 2_000)
        .await
        .expect("new command");
    let a2 = updated.assignment.clone().expect("assigned");
    assert_eq!((a2.crd_command.as_str(), a2.command_at), ("cmd-2", 2_000));
    assert_eq!(a2.pin, a.pin, "the PIN stays");
    assert_eq!(
        store
            .get_vm("c-seat-1")
            .await
            .expect("get")
            .map(|v| v.assignment),
        Some(Some(a2.clone()))
    );
    // Re-issue: the old token stops working, the new one works.
    let fresh = SeatToken::generate(1_000);
    store
        .reissue_seat("c-seat-1", &fresh.hash(), 2_100)
        .await
        .expect("reissue");
    assert_eq!(store.vm_by_seat(&token.hash()).await.expect("seat"), None);
    assert!(store
        .vm_by_seat(&fresh.hash())
        .await
        .expect("seat")
        .is_some());
    assert!(matches!(
        store.reissue_seat("c-missing", &fresh.hash(), 2_100).await,
        Err(Error::NotFound(_))
    ));
    // Moving with nothing free (a quiet VM does not count) changes nothing.
    running(store, "c-seat-2", 150).await;
    let mut mv = MoveSeat {
        from: "c-seat-1".into(),
        seat_hash: Some(fresh.hash()),
        to: None,
        pin: Pin::generate(),
        reason: "participant moved to another VM: stopped responding".into(),
        live_since: 1_000,
        now: 3_000,
    };
    assert_eq!(
        store.move_seat(&mv).await.expect("move"),
        MoveOutcome::NoneFree
    );
    let unchanged = store.get_vm("c-seat-1").await.expect("get").expect("vm");
    let a3 = Assignment {
        seat_hash: Some(fresh.hash()),
        ..a2.clone()
    };
    assert_eq!(unchanged.assignment, Some(a3));
    // A wrong seat hash is refused.
    mv.live_since = 0;
    mv.seat_hash = Some(token.hash());
    assert!(matches!(
        store.move_seat(&mv).await,
        Err(Error::NotFound(_))
    ));
    mv.seat_hash = Some(fresh.hash());
    let moved = match store.move_seat(&mv).await.expect("move") {
        MoveOutcome::Moved(v) => v,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(moved.hostname, "c-seat-2");
    let m = moved.assignment.clone().expect("assigned");
    assert_eq!(m.email, "seat@x.org");
    assert_eq!(m.crd_command, "cmd-2");
    assert_eq!(m.seat_hash.as_deref(), Some(fresh.hash().as_str()));
    assert_eq!(m.pin, mv.pin.as_str());
    assert_eq!(
        store
            .get_vm("c-seat-2")
            .await
            .expect("get")
            .expect("vm")
            .assignment,
        Some(m)
    );
    let old = store.get_vm("c-seat-1").await.expect("get").expect("vm");
    assert!(old.assignment.as_ref().is_some_and(Assignment::is_retired));
    assert!(!old
        .assignment
        .as_ref()
        .is_some_and(Assignment::is_participant));
    assert_eq!(old.status, VmStatus::Error);
    assert_eq!(old.status_reason.as_deref(), Some(mv.reason.as_str()));
    assert_eq!(
        store
            .vm_by_seat(&fresh.hash())
            .await
            .expect("seat")
            .map(|v| v.hostname),
        Some("c-seat-2".to_string())
    );
    // The retired VM never returns to the pool, even when its agent comes back up.
    for status in [VmStatus::Initializing, VmStatus::Running] {
        store
            .update_vm("c-seat-1", &VmChange::Status(status), 3_100)
            .await
            .expect("agent back");
    }
    assert_eq!(store.count_assignable(0).await.expect("count"), 0);
    // The email moved with the seat: a claim for it returns the new VM, never a second one.
    running(store, "c-seat-3", 160).await;
    match store.claim_vm(&claim("seat@x.org")).await.expect("claim") {
        ClaimOutcome::AlreadyAssigned(v) => assert_eq!(v.hostname, "c-seat-2"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(store.count_assignable(0).await.expect("count"), 1);
    // An admin move to a named VM (no seat hash needed).
    mv.from = "c-seat-2".into();
    mv.seat_hash = None;
    mv.to = Some("c-seat-1".into());
    assert_eq!(
        store.move_seat(&mv).await.expect("move"),
        MoveOutcome::NoneFree,
        "a VM in error is not a target"
    );
    mv.to = Some("c-seat-3".into());
    assert!(matches!(
        store.move_seat(&mv).await.expect("move"),
        MoveOutcome::Moved(v) if v.hostname == "c-seat-3"
    ));
    assert_eq!(store.count_assignable(0).await.expect("count"), 0);
    clear(store).await;
    assert_eq!(store.vm_by_seat(&fresh.hash()).await.expect("seat"), None);
}

/// 200 claims race for 40 VMs of which 10 went quiet: the 30 live ones are each assigned
/// once and the quiet ones never.
pub(super) async fn quiet_race(store: Arc<dyn Store>) {
    for i in 0..40 {
        let last_seen = if i < 10 { 100 } else { 1_000 + i };
        running(&*store, &format!("c-quiet-{i:02}"), last_seen).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut request = claim(&format!("q{i}@race.org"));
            request.live_since = 500;
            store.claim_vm(&request).await
        });
    }
    let mut hostnames = HashSet::new();
    while let Some(result) = tasks.join_next().await {
        if let ClaimOutcome::Assigned(v) = result.expect("task").expect("claim") {
            assert!(v.hostname.as_str() >= "c-quiet-10", "{}", v.hostname);
            assert!(hostnames.insert(v.hostname), "assigned twice");
        }
    }
    assert_eq!(hostnames.len(), 30);
    assert_eq!(store.count_assignable(500).await.expect("count"), 0);
    assert_eq!(store.count_assignable(0).await.expect("count"), 10);
    clear(&*store).await;
}

pub(super) async fn same_email_gets_the_same_vm(store: &dyn Store) {
    running(store, "c-same-1", 1).await;
    running(store, "c-same-2", 2).await;
    let first = match store.claim_vm(&claim("same@x.org")).await.expect("claim") {
        ClaimOutcome::Assigned(v) => v,
        other => panic!("unexpected {other:?}"),
    };
    assert!(first.hostname.starts_with("c-same-"));
    match store.claim_vm(&claim("same@x.org")).await.expect("claim") {
        ClaimOutcome::AlreadyAssigned(v) => {
            assert_eq!(v.hostname, first.hostname);
            assert_eq!(v.assignment, first.assignment, "the PIN does not change");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(store.count_assignable(0).await.expect("count"), 1);
    let a: Option<&Assignment> = first.assignment.as_ref();
    assert_eq!(a.map(|a| a.assigned_at), Some(1_000));
    // With nothing free any more, the returning email still gets its VM.
    let other = store.claim_vm(&claim("other@x.org")).await.expect("claim");
    assert!(matches!(other, ClaimOutcome::Assigned(_)));
    match store.claim_vm(&claim("same@x.org")).await.expect("claim") {
        ClaimOutcome::AlreadyAssigned(v) => assert_eq!(v.hostname, first.hostname),
        other => panic!("unexpected {other:?}"),
    }
    clear(store).await;
}

pub(super) async fn delete_removes(store: &dyn Store) {
    running(store, "c-del", 1).await;
    store.delete_vm("c-del", 10).await.expect("delete");
    store
        .delete_vm("c-del", 10)
        .await
        .expect("deleting twice is fine");
    assert_eq!(store.get_vm("c-del").await.expect("get"), None);
    assert_eq!(store.count_assignable(0).await.expect("count"), 0);
}

/// `claims` distinct emails race for `free` VMs.
pub async fn claim_race(store: Arc<dyn Store>, prefix: &str, claims: usize, free: usize) {
    for i in 0..free {
        running(&*store, &format!("{prefix}-{i:03}"), i as i64).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..claims {
        let store = store.clone();
        tasks.spawn(async move { store.claim_vm(&claim(&format!("user{i}@race.org"))).await });
    }
    let mut hostnames = Vec::new();
    let mut none_free = 0;
    while let Some(result) = tasks.join_next().await {
        match result.expect("task").expect("claim") {
            ClaimOutcome::Assigned(v) => hostnames.push(v.hostname),
            ClaimOutcome::NoneFree => none_free += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let distinct: HashSet<_> = hostnames.iter().collect();
    assert_eq!(hostnames.len(), free, "every free VM assigned once");
    assert_eq!(distinct.len(), free, "no VM assigned twice");
    assert_eq!(none_free, claims - free);
    assert_eq!(store.count_assignable(0).await.expect("count"), 0);
    clear(&*store).await;
}

pub(super) async fn same_email_race(store: Arc<dyn Store>) {
    for i in 0..5 {
        running(&*store, &format!("c-email-{i}"), i).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.spawn(async move { store.claim_vm(&claim("one@race.org")).await });
    }
    let mut hostnames = HashSet::new();
    let mut fresh = 0;
    while let Some(result) = tasks.join_next().await {
        match result.expect("task").expect("claim") {
            ClaimOutcome::Assigned(v) => {
                fresh += 1;
                hostnames.insert(v.hostname);
            }
            ClaimOutcome::AlreadyAssigned(v) => {
                hostnames.insert(v.hostname);
            }
            ClaimOutcome::NoneFree => panic!("VMs were free"),
        }
    }
    assert_eq!(fresh, 1, "one assignment");
    assert_eq!(hostnames.len(), 1, "everyone got the same VM");
    assert_eq!(store.count_assignable(0).await.expect("count"), 4);
    clear(&*store).await;
}

/// The record of `hostname`, which must exist.
async fn stored(store: &dyn Store, hostname: &str) -> Vm {
    store
        .get_vm(hostname)
        .await
        .expect("store call")
        .expect("the record exists")
}

/// A destroy's final-sync request is kept on the record (the long-poll reads it), and an
/// older request never replaces a newer one.
pub(super) async fn final_sync_requests_are_kept(store: &dyn Store) {
    store
        .insert_vm(&vm("collect-1", 1))
        .await
        .expect("store call");
    let got = stored(store, "collect-1").await;
    assert_eq!(got.collect_requested_at, None);
    store
        .update_vm("collect-1", &VmChange::CollectRequested(500), 500)
        .await
        .expect("store call");
    store
        .update_vm("collect-1", &VmChange::CollectRequested(400), 501)
        .await
        .expect("store call");
    let got = stored(store, "collect-1").await;
    assert_eq!(got.collect_requested_at, Some(500));
    assert!(got.final_sync_pending());
    store
        .update_vm("collect-1", &VmChange::CollectAnswered(500), 600)
        .await
        .expect("store call");
    let got = stored(store, "collect-1").await;
    assert_eq!(got.collect_answered_at, Some(500));
    assert!(!got.final_sync_pending());
    assert_eq!(got.last_seen_at, Some(600), "an answer is the VM calling");
    store.delete_vm("collect-1", 10).await.expect("store call");
}
