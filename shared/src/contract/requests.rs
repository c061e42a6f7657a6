//! GPU requests: quota, listings, the state machine, idempotency, races.

use super::*;

pub(super) fn gpu_request(
    id: &str,
    user: &str,
    gpus: u32,
    created_at: i64,
) -> crate::domain::GpuRequest {
    let input = crate::domain::NewRequest {
        user_id: user.into(),
        gpu_count: gpus,
        duration_hours: 1,
    };
    crate::domain::GpuRequest::new(id.into(), &input, created_at)
}

pub(super) async fn requests_quota_listing_and_state_machine(store: &dyn Store) {
    use crate::domain::{RequestChange, RequestStatus};

    for (i, gpus) in [(1, 4), (2, 3)] {
        let r = gpu_request(&format!("q-{i}"), "quota-user", gpus, 100 + i);
        assert_eq!(
            store
                .create_request(&r, 8, None, None)
                .await
                .expect("store call"),
            CreateRequestOutcome::Created
        );
    }
    assert_eq!(
        store.gpus_in_use("quota-user").await.expect("store call"),
        7
    );
    // 7 + 2 > 8: refused, nothing recorded.
    assert_eq!(
        store
            .create_request(&gpu_request("q-3", "quota-user", 2, 103), 8, None, None)
            .await
            .expect("store call"),
        CreateRequestOutcome::OverQuota {
            in_use: 7,
            quota: 8
        }
    );
    assert!(store
        .get_request("q-3")
        .await
        .expect("store call")
        .is_none());
    // Another user is unaffected.
    assert_eq!(
        store
            .create_request(&gpu_request("q-4", "other-user", 8, 104), 8, None, None)
            .await
            .expect("store call"),
        CreateRequestOutcome::Created
    );
    // Newest first, per user, with a limit; everyone's for admins.
    let mine = store
        .list_requests(Some("quota-user"), 100)
        .await
        .expect("store call");
    let ids: Vec<&str> = mine.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["q-2", "q-1"]);
    assert_eq!(
        store
            .list_requests(Some("quota-user"), 1)
            .await
            .expect("store call")
            .len(),
        1
    );
    let all = store.list_requests(None, 100).await.expect("store call");
    assert!(all.iter().any(|r| r.request_id == "q-4") && all.len() >= 3);
    // The state machine, and the quota freed exactly once when a request ends.
    store
        .update_request(
            "q-1",
            &RequestChange::Failed {
                error_msg: "no capacity".into(),
            },
            200,
        )
        .await
        .expect("store call");
    assert_eq!(
        store.gpus_in_use("quota-user").await.expect("store call"),
        3
    );
    let again = store
        .update_request("q-1", &RequestChange::Released, 201)
        .await;
    assert!(matches!(again, Err(crate::Error::Conflict(_))), "{again:?}");
    assert_eq!(
        store.gpus_in_use("quota-user").await.expect("store call"),
        3
    );
    let r = store
        .get_request("q-1")
        .await
        .expect("store call")
        .expect("store call");
    assert_eq!(r.status, RequestStatus::Failed);
    assert_eq!(r.error_msg.as_deref(), Some("no capacity"));
    assert!(matches!(
        store
            .update_request("nope", &RequestChange::Released, 1)
            .await,
        Err(crate::Error::NotFound(_))
    ));
    let active: Vec<String> = store
        .active_requests()
        .await
        .expect("store call")
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert!(active.contains(&"q-2".to_string()) && !active.contains(&"q-1".to_string()));
}

pub(super) async fn request_idempotency(store: &dyn Store) {
    use crate::ports::{CreateRequestOutcome, Idempotency};
    let idem = Idempotency {
        key: "key-1".into(),
        fingerprint: "body-a".into(),
    };
    let first = gpu_request("i-1", "idem-user", 1, 300);
    assert_eq!(
        store
            .create_request(&first, 8, Some(&idem), None)
            .await
            .expect("store call"),
        CreateRequestOutcome::Created
    );
    let repeat = gpu_request("i-2", "idem-user", 1, 301);
    assert_eq!(
        store
            .create_request(&repeat, 8, Some(&idem), None)
            .await
            .expect("store call"),
        CreateRequestOutcome::Replayed(Box::new(first.clone()))
    );
    assert!(store
        .get_request("i-2")
        .await
        .expect("store call")
        .is_none());
    let changed = Idempotency {
        key: "key-1".into(),
        fingerprint: "body-b".into(),
    };
    assert_eq!(
        store
            .create_request(&repeat, 8, Some(&changed), None)
            .await
            .expect("store call"),
        CreateRequestOutcome::IdempotencyMismatch
    );
    // Keys are per user.
    let other = gpu_request("i-3", "idem-other", 1, 302);
    assert_eq!(
        store
            .create_request(&other, 8, Some(&idem), None)
            .await
            .expect("store call"),
        CreateRequestOutcome::Created
    );
    assert_eq!(store.gpus_in_use("idem-user").await.expect("store call"), 1);
}

/// 20 concurrent requests of 2 GPUs against a quota of 8: exactly 4 recorded.
pub(super) async fn quota_race(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let r = gpu_request(&format!("race-{i}"), "race-user", 2, 400 + i);
            store.create_request(&r, 8, None, None).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task").expect("create") {
            CreateRequestOutcome::Created => created += 1,
            CreateRequestOutcome::OverQuota { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 4);
    assert_eq!(store.gpus_in_use("race-user").await.expect("store call"), 8);
}

pub(super) async fn leased_vms_are_never_claimed(store: &dyn Store) {
    let before = store.count_assignable(0).await.expect("store call");
    let mut leased = vm("lease-vm-0", 10);
    leased.assignment = Some(crate::domain::Assignment::lease("req-x", 0, 10));
    store.insert_vm(&leased).await.expect("store call");
    store
        .update_vm("lease-vm-0", &VmChange::Status(VmStatus::Running), 11)
        .await
        .expect("store call");
    assert_eq!(store.count_assignable(0).await.expect("store call"), before);
    let got = store
        .get_vm("lease-vm-0")
        .await
        .expect("store call")
        .expect("store call");
    assert_eq!(got.lease_request(), Some("req-x"));
    store.delete_vm("lease-vm-0", 10).await.expect("store call");
}
