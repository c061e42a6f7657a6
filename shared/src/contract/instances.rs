//! Cloud instances: records, idempotency, saves, and the one GPU quota they share with requests.

use super::*;

/// An instance record for store tests (a pending vast_ai instance of `owner`).
pub fn cloud_instance(
    id: &str,
    owner: &str,
    created_at: i64,
) -> crate::domain::instances::CloudInstance {
    use crate::domain::instances::{CloudInstance, InstanceStatus};
    CloudInstance {
        id: id.into(),
        owner: owner.into(),
        provider: "vast_ai".into(),
        provider_id: None,
        offer_id: "42".into(),
        name: "train".into(),
        status: InstanceStatus::Pending,
        status_reason: None,
        gpu_model: "RTX 4090".into(),
        gpu_count: 1,
        cpu_count: 8,
        ram_gb: 32.0,
        storage_gb: 100.0,
        price_per_hour: 0.4,
        region: "US".into(),
        image: Some("pytorch/pytorch:latest".into()),
        onstart_script: None,
        ssh_key: None,
        public_ip: None,
        ssh_host: None,
        ssh_port: None,
        offer_data: serde_json::json!({"machine_id": 7}),
        created_at,
        updated_at: created_at,
        version: 0,
        price_source: None,
        started_at: None,
        ended_at: None,
        budget_hold: None,
    }
}

pub(super) async fn instances_records(store: &dyn Store) {
    use crate::domain::instances::InstanceStatus;
    use crate::ports::CreateInstanceOutcome;
    for (id, owner, at) in [
        ("vast_a1", "ann", 10),
        ("vast_b1", "bob", 20),
        ("vast_a2", "ann", 30),
    ] {
        assert_eq!(
            store
                .create_instance(&cloud_instance(id, owner, at), UNLIMITED, None, None)
                .await
                .expect("create"),
            CreateInstanceOutcome::Created
        );
    }
    assert!(matches!(
        store
            .create_instance(&cloud_instance("vast_a1", "ann", 10), UNLIMITED, None, None)
            .await,
        Err(Error::Conflict(_))
    ));
    let ann: Vec<String> = store
        .list_instances(Some("ann"))
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ann, ["vast_a2", "vast_a1"], "the owner's, newest first");
    let all: Vec<String> = store
        .list_instances(None)
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(all, ["vast_a2", "vast_b1", "vast_a1"]);
    assert!(store
        .list_instances(Some("nobody"))
        .await
        .expect("list")
        .is_empty());

    let mut rec = store
        .get_instance("vast_a1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        rec,
        cloud_instance("vast_a1", "ann", 10),
        "stored as written"
    );
    rec.status = InstanceStatus::Running;
    rec.provider_id = Some("777".into());
    let saved = store.save_instance(&rec).await.expect("save");
    assert_eq!(saved.version, 1);
    assert_eq!(
        store.get_instance("vast_a1").await.expect("get"),
        Some(saved.clone())
    );
    // A save from the old version loses, and changes nothing.
    rec.status = InstanceStatus::Stopped;
    assert!(matches!(
        store.save_instance(&rec).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store.get_instance("vast_a1").await.expect("get"),
        Some(saved)
    );
    assert!(matches!(
        store
            .save_instance(&cloud_instance("vast_zz", "ann", 1))
            .await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.get_instance("vast_zz").await.expect("get"), None);
}

pub(super) async fn instance_idempotency(store: &dyn Store) {
    use crate::ports::{CreateInstanceOutcome, Idempotency};
    let idem = |fp: &str| Idempotency {
        key: "k-1".into(),
        fingerprint: fp.into(),
    };
    let first = cloud_instance("vast_i1", "cat", 5);
    assert_eq!(
        store
            .create_instance(&first, UNLIMITED, Some(&idem("f1")), None)
            .await
            .expect("create"),
        CreateInstanceOutcome::Created
    );
    assert_eq!(
        store
            .create_instance(
                &cloud_instance("vast_i2", "cat", 6),
                UNLIMITED,
                Some(&idem("f1")),
                None,
            )
            .await
            .expect("replay"),
        CreateInstanceOutcome::Replayed(Box::new(first))
    );
    assert_eq!(
        store
            .create_instance(
                &cloud_instance("vast_i3", "cat", 7),
                UNLIMITED,
                Some(&idem("f2")),
                None,
            )
            .await
            .expect("mismatch"),
        CreateInstanceOutcome::IdempotencyMismatch
    );
    // Keys are per user.
    assert_eq!(
        store
            .create_instance(
                &cloud_instance("vast_i4", "dan", 8),
                UNLIMITED,
                Some(&idem("f1")),
                None,
            )
            .await
            .expect("other user"),
        CreateInstanceOutcome::Created
    );
    assert_eq!(store.get_instance("vast_i2").await.expect("get"), None);
    assert_eq!(store.get_instance("vast_i3").await.expect("get"), None);
}

/// Concurrent saves of one version: exactly one wins.
pub(super) async fn instance_saves_race(store: Arc<dyn Store>) {
    store
        .create_instance(&cloud_instance("vast_r1", "eve", 1), UNLIMITED, None, None)
        .await
        .expect("create");
    let base = store
        .get_instance("vast_r1")
        .await
        .expect("get")
        .expect("exists");
    let mut tasks = Vec::new();
    for n in 0..20 {
        let store = store.clone();
        let mut rec = base.clone();
        rec.name = format!("writer {n}");
        tasks.push(tokio::spawn(async move {
            store.save_instance(&rec).await.is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.expect("join") {
            wins += 1;
        }
    }
    assert_eq!(wins, 1, "one save per version");
}

/// One GPU quota covers requests and instances: neither API escapes it, ending an instance
/// frees its GPUs exactly once.
pub(super) async fn one_quota_for_requests_and_instances(store: &dyn Store) {
    use crate::domain::instances::InstanceStatus;
    use crate::ports::CreateInstanceOutcome;
    let user = "quota-both";
    let request = gpu_request("qb-r1", user, 4, 1);
    assert_eq!(
        store
            .create_request(&request, 8, None, None)
            .await
            .expect("request"),
        CreateRequestOutcome::Created
    );
    let mut four = cloud_instance("vast_qb1", user, 2);
    four.gpu_count = 4;
    assert_eq!(
        store
            .create_instance(&four, 8, None, None)
            .await
            .expect("instance"),
        CreateInstanceOutcome::Created
    );
    assert_eq!(store.gpus_in_use(user).await.expect("in use"), 8);
    // Full: one more GPU is refused by either API, and nothing is recorded.
    let one = cloud_instance("vast_qb2", user, 3);
    assert_eq!(
        store
            .create_instance(&one, 8, None, None)
            .await
            .expect("over"),
        CreateInstanceOutcome::OverQuota {
            in_use: 8,
            quota: 8
        }
    );
    assert!(store.get_instance("vast_qb2").await.expect("get").is_none());
    assert!(matches!(
        store
            .create_request(&gpu_request("qb-r2", user, 1, 4), 8, None, None)
            .await
            .expect("over"),
        CreateRequestOutcome::OverQuota {
            in_use: 8,
            quota: 8
        }
    ));
    // Running and stopped still hold the GPUs; destroyed frees them, once.
    let mut stored = store
        .get_instance("vast_qb1")
        .await
        .expect("get")
        .expect("there");
    for status in [InstanceStatus::Running, InstanceStatus::Stopped] {
        stored.status = status;
        stored = store.save_instance(&stored).await.expect("save");
        assert_eq!(store.gpus_in_use(user).await.expect("in use"), 8);
    }
    stored.status = InstanceStatus::Destroyed;
    stored = store.save_instance(&stored).await.expect("save");
    assert_eq!(store.gpus_in_use(user).await.expect("in use"), 4);
    stored.status_reason = Some("seen destroyed again".into());
    store.save_instance(&stored).await.expect("save again");
    assert_eq!(
        store.gpus_in_use(user).await.expect("in use"),
        4,
        "freed once"
    );
    assert_eq!(
        store
            .create_instance(&one, 8, None, None)
            .await
            .expect("fits now"),
        CreateInstanceOutcome::Created
    );
    // A failed instance frees its GPUs too.
    let mut failed = store
        .get_instance("vast_qb2")
        .await
        .expect("get")
        .expect("there");
    failed.status = InstanceStatus::Failed;
    store.save_instance(&failed).await.expect("save");
    assert_eq!(store.gpus_in_use(user).await.expect("in use"), 4);
}

/// Concurrent instance creates against one quota: exactly as many as fit.
pub(super) async fn instance_quota_race(store: Arc<dyn Store>) {
    use crate::ports::CreateInstanceOutcome;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut two = cloud_instance(&format!("vast_qr{i:02}"), "quota-race-i", 10 + i);
            two.gpu_count = 2;
            store
                .create_instance(&two, 8, None, None)
                .await
                .expect("create")
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.expect("join") {
            CreateInstanceOutcome::Created => created += 1,
            CreateInstanceOutcome::OverQuota { quota: 8, .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 4, "8 GPUs of quota, 2 each");
    assert_eq!(store.gpus_in_use("quota-race-i").await.expect("in use"), 8);
}
