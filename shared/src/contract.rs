//! The store contract: every behaviour the core relies on, written once and run against
//! each `Store` adapter (SQLite here; DynamoDB in the integration tests).

use std::collections::HashSet;
use std::sync::Arc;

use crate::domain::{
    Assignment, Email, GpuHealth, Operation, OperationKind, Pin, SeatToken, TokenHash, Vm,
    VmChange, VmStatus,
};
use crate::error::Error;
use crate::ports::{
    ClaimOutcome, ClaimRequest, CreateRequestOutcome, MoveOutcome, MoveSeat, Store,
};

/// Runs every contract check against a fresh, empty store.
pub async fn run_all(store: Arc<dyn Store>) {
    insert_get_and_duplicates(&*store).await;
    updates_follow_the_state_machine(&*store).await;
    free_count_and_claim_use_the_assignable_rule(&*store).await;
    same_email_gets_the_same_vm(&*store).await;
    quiet_vms_are_never_claimed_nor_counted(&*store).await;
    seats_are_found_reissued_and_moved(&*store).await;
    quiet_race(store.clone()).await;
    delete_removes(&*store).await;
    operations_one_at_a_time(&*store).await;
    logs_append_read_and_trim(&*store).await;
    logs_from_many_writers_are_all_kept(store.clone()).await;
    claim_race(store.clone(), "race", 200, 50).await;
    same_email_race(store.clone()).await;
    requests_quota_listing_and_state_machine(&*store).await;
    request_idempotency(&*store).await;
    quota_race(store.clone()).await;
    leased_vms_are_never_claimed(&*store).await;
    api_keys(&*store).await;
    instances_records(&*store).await;
    instance_idempotency(&*store).await;
    instance_saves_race(store.clone()).await;
    one_quota_for_requests_and_instances(&*store).await;
    instance_quota_race(store.clone()).await;
    rate_counters(store.clone()).await;
    command_log_pages_and_clears(&*store).await;
    host_pools_move_conditionally(store.clone()).await;
}

/// A move succeeds only from the pool the host is recorded in; of concurrent moves from the
/// same pool exactly one wins.
async fn host_pools_move_conditionally(store: Arc<dyn Store>) {
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

/// Entries come back newest first in pages; a clear hides older entries only from the
/// filtered view; clears only move forward.
async fn command_log_pages_and_clears(store: &dyn Store) {
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

/// A quota no test reaches (the quota has checks of its own).
const UNLIMITED: u32 = 1_000_000;

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
    }
}

async fn instances_records(store: &dyn Store) {
    use crate::domain::instances::InstanceStatus;
    use crate::ports::CreateInstanceOutcome;
    for (id, owner, at) in [
        ("vast_a1", "ann", 10),
        ("vast_b1", "bob", 20),
        ("vast_a2", "ann", 30),
    ] {
        assert_eq!(
            store
                .create_instance(&cloud_instance(id, owner, at), UNLIMITED, None)
                .await
                .expect("create"),
            CreateInstanceOutcome::Created
        );
    }
    assert!(matches!(
        store
            .create_instance(&cloud_instance("vast_a1", "ann", 10), UNLIMITED, None)
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

async fn instance_idempotency(store: &dyn Store) {
    use crate::ports::{CreateInstanceOutcome, Idempotency};
    let idem = |fp: &str| Idempotency {
        key: "k-1".into(),
        fingerprint: fp.into(),
    };
    let first = cloud_instance("vast_i1", "cat", 5);
    assert_eq!(
        store
            .create_instance(&first, UNLIMITED, Some(&idem("f1")))
            .await
            .expect("create"),
        CreateInstanceOutcome::Created
    );
    assert_eq!(
        store
            .create_instance(
                &cloud_instance("vast_i2", "cat", 6),
                UNLIMITED,
                Some(&idem("f1"))
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
                Some(&idem("f2"))
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
                Some(&idem("f1"))
            )
            .await
            .expect("other user"),
        CreateInstanceOutcome::Created
    );
    assert_eq!(store.get_instance("vast_i2").await.expect("get"), None);
    assert_eq!(store.get_instance("vast_i3").await.expect("get"), None);
}

/// Concurrent saves of one version: exactly one wins.
async fn instance_saves_race(store: Arc<dyn Store>) {
    store
        .create_instance(&cloud_instance("vast_r1", "eve", 1), UNLIMITED, None)
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

/// Every concurrent hit is counted once; windows and buckets are separate.
async fn rate_counters(store: Arc<dyn Store>) {
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

fn gpu_request(id: &str, user: &str, gpus: u32, created_at: i64) -> crate::domain::GpuRequest {
    let input = crate::domain::NewRequest {
        user_id: user.into(),
        gpu_count: gpus,
        duration_hours: 1,
    };
    crate::domain::GpuRequest::new(id.into(), &input, created_at)
}

async fn requests_quota_listing_and_state_machine(store: &dyn Store) {
    use crate::domain::{RequestChange, RequestStatus};

    for (i, gpus) in [(1, 4), (2, 3)] {
        let r = gpu_request(&format!("q-{i}"), "quota-user", gpus, 100 + i);
        assert_eq!(
            store.create_request(&r, 8, None).await.expect("store call"),
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
            .create_request(&gpu_request("q-3", "quota-user", 2, 103), 8, None)
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
            .create_request(&gpu_request("q-4", "other-user", 8, 104), 8, None)
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

async fn request_idempotency(store: &dyn Store) {
    use crate::ports::{CreateRequestOutcome, Idempotency};
    let idem = Idempotency {
        key: "key-1".into(),
        fingerprint: "body-a".into(),
    };
    let first = gpu_request("i-1", "idem-user", 1, 300);
    assert_eq!(
        store
            .create_request(&first, 8, Some(&idem))
            .await
            .expect("store call"),
        CreateRequestOutcome::Created
    );
    let repeat = gpu_request("i-2", "idem-user", 1, 301);
    assert_eq!(
        store
            .create_request(&repeat, 8, Some(&idem))
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
            .create_request(&repeat, 8, Some(&changed))
            .await
            .expect("store call"),
        CreateRequestOutcome::IdempotencyMismatch
    );
    // Keys are per user.
    let other = gpu_request("i-3", "idem-other", 1, 302);
    assert_eq!(
        store
            .create_request(&other, 8, Some(&idem))
            .await
            .expect("store call"),
        CreateRequestOutcome::Created
    );
    assert_eq!(store.gpus_in_use("idem-user").await.expect("store call"), 1);
}

/// 20 concurrent requests of 2 GPUs against a quota of 8: exactly 4 recorded.
async fn quota_race(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let r = gpu_request(&format!("race-{i}"), "race-user", 2, 400 + i);
            store.create_request(&r, 8, None).await
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

async fn leased_vms_are_never_claimed(store: &dyn Store) {
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
    store.delete_vm("lease-vm-0").await.expect("store call");
}

async fn api_keys(store: &dyn Store) {
    use crate::domain::ApiKey;
    store.ping().await.expect("store call");
    let (key, plain) = ApiKey::generate("key-user", "laptop", 6, 500);
    store.insert_api_key(&key).await.expect("store call");
    let found = store
        .api_key_by_hash(&crate::domain::api_keys::hash_key(&plain))
        .await
        .expect("store call")
        .expect("store call");
    assert_eq!(found, key);
    assert!(store
        .api_key_by_hash("0".repeat(64).as_str())
        .await
        .expect("store call")
        .is_none());
    assert!(store
        .list_api_keys()
        .await
        .expect("store call")
        .iter()
        .any(|k| k.key_id == key.key_id));
    let revoked = store
        .revoke_api_key(&key.key_id, 600)
        .await
        .expect("store call");
    assert_eq!(revoked.revoked_at, Some(600));
    assert!(!store
        .api_key_by_hash(&key.key_hash)
        .await
        .expect("store call")
        .expect("store call")
        .is_active());
    assert!(matches!(
        store.revoke_api_key("unknown", 1).await,
        Err(crate::Error::NotFound(_))
    ));
}

fn vm(hostname: &str, created_at: i64) -> Vm {
    Vm::new(hostname.to_string(), TokenHash::of(hostname), created_at)
}

fn claim(email: &str) -> ClaimRequest {
    ClaimRequest {
        email: Email::parse(email).expect("test email"),
        crd_command: "DISPLAY= start-host --code=\"4/x\"".into(),
        pin: Pin::generate(),
        now: 1_000,
        seat_hash: SeatToken::generate(1_000).hash(),
        live_since: 0,
    }
}

async fn running(store: &dyn Store, hostname: &str, created_at: i64) {
    store
        .insert_vm(&vm(hostname, created_at))
        .await
        .expect("insert");
    store
        .update_vm(hostname, &VmChange::Status(VmStatus::Running), created_at)
        .await
        .expect("running");
}

async fn clear(store: &dyn Store) {
    for vm in store.list_vms().await.expect("list") {
        store.delete_vm(&vm.hostname).await.expect("delete");
    }
}

async fn insert_get_and_duplicates(store: &dyn Store) {
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

async fn updates_follow_the_state_machine(store: &dyn Store) {
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

async fn free_count_and_claim_use_the_assignable_rule(store: &dyn Store) {
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
async fn quiet_vms_are_never_claimed_nor_counted(store: &dyn Store) {
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
async fn seats_are_found_reissued_and_moved(store: &dyn Store) {
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
async fn quiet_race(store: Arc<dyn Store>) {
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

async fn same_email_gets_the_same_vm(store: &dyn Store) {
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

async fn delete_removes(store: &dyn Store) {
    running(store, "c-del", 1).await;
    store.delete_vm("c-del").await.expect("delete");
    store
        .delete_vm("c-del")
        .await
        .expect("deleting twice is fine");
    assert_eq!(store.get_vm("c-del").await.expect("get"), None);
    assert_eq!(store.count_assignable(0).await.expect("count"), 0);
}

async fn operations_one_at_a_time(store: &dyn Store) {
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

async fn logs_append_read_and_trim(store: &dyn Store) {
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

async fn logs_from_many_writers_are_all_kept(store: Arc<dyn Store>) {
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

async fn same_email_race(store: Arc<dyn Store>) {
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

/// One GPU quota covers requests and instances: neither API escapes it, ending an instance
/// frees its GPUs exactly once.
async fn one_quota_for_requests_and_instances(store: &dyn Store) {
    use crate::domain::instances::InstanceStatus;
    use crate::ports::CreateInstanceOutcome;
    let user = "quota-both";
    let request = gpu_request("qb-r1", user, 4, 1);
    assert_eq!(
        store
            .create_request(&request, 8, None)
            .await
            .expect("request"),
        CreateRequestOutcome::Created
    );
    let mut four = cloud_instance("vast_qb1", user, 2);
    four.gpu_count = 4;
    assert_eq!(
        store
            .create_instance(&four, 8, None)
            .await
            .expect("instance"),
        CreateInstanceOutcome::Created
    );
    assert_eq!(store.gpus_in_use(user).await.expect("in use"), 8);
    // Full: one more GPU is refused by either API, and nothing is recorded.
    let one = cloud_instance("vast_qb2", user, 3);
    assert_eq!(
        store.create_instance(&one, 8, None).await.expect("over"),
        CreateInstanceOutcome::OverQuota {
            in_use: 8,
            quota: 8
        }
    );
    assert!(store.get_instance("vast_qb2").await.expect("get").is_none());
    assert!(matches!(
        store
            .create_request(&gpu_request("qb-r2", user, 1, 4), 8, None)
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
            .create_instance(&one, 8, None)
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
async fn instance_quota_race(store: Arc<dyn Store>) {
    use crate::ports::CreateInstanceOutcome;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut two = cloud_instance(&format!("vast_qr{i:02}"), "quota-race-i", 10 + i);
            two.gpu_count = 2;
            store.create_instance(&two, 8, None).await.expect("create")
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
