//! The DynamoDB adapter against the emulator, through the real SDK over HTTP: the same
//! contract suite the SQLite store passes.

use std::sync::Arc;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_store_passes_the_store_contract() {
    let store = dynamo_store().await;
    shared::contract::run_all(Arc::new(store)).await;
}

/// Requests and consumed capacity per operation, printed for docs/dynamodb.md. The request
/// counts are deterministic without contention, so the target is asserted: a claim costs
/// at most 3 requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_request_costs() {
    use shared::domain::{Email, Pin, TokenHash, Vm, VmChange, VmStatus};
    use shared::ports::{ClaimRequest, Store};
    let store = dynamo_store().await;
    let stats = store.stats();
    let store: Arc<dyn Store> = Arc::new(store);
    for i in 0..20 {
        let hostname = format!("cost-{i:02}");
        store
            .insert_vm(&Vm::new(hostname.clone(), TokenHash::of("t"), i))
            .await
            .unwrap();
        store
            .update_vm(&hostname, &VmChange::Status(VmStatus::Running), i)
            .await
            .unwrap();
    }
    let measure = |label: &str, before: (u64, f64), n: u64| {
        let (requests, capacity) = (stats.requests() - before.0, stats.capacity() - before.1);
        println!(
            "COST {label}: {:.2} requests, {:.2} capacity units per call ({n} calls)",
            requests as f64 / n as f64,
            capacity / n as f64
        );
        requests as f64 / n as f64
    };
    let now = || (stats.requests(), stats.capacity());

    let before = now();
    for i in 0..10 {
        let request = ClaimRequest {
            email: Email::parse(&format!("cost{i}@example.org")).unwrap(),
            crd_command: "c".into(),
            pin: Pin::generate(),
            now: 1,
            seat_hash: shared::domain::SeatToken::generate(1).hash(),
            live_since: 0,
        };
        store.claim_vm(&request).await.unwrap();
    }
    let per_claim = measure("claim, no contention", before, 10);
    assert!(per_claim <= 3.0, "a claim costs {per_claim} requests");

    let before = now();
    for _ in 0..10 {
        store.count_assignable(0).await.unwrap();
    }
    measure("free count", before, 10);

    let before = now();
    for i in 10..20 {
        store
            .update_vm(&format!("cost-{i:02}"), &VmChange::InUse(true), 2)
            .await
            .unwrap();
    }
    measure("VM update (no change of assignability)", before, 10);

    let before = now();
    for i in 10..20 {
        store
            .update_vm(
                &format!("cost-{i:02}"),
                &VmChange::Status(VmStatus::Rebooting),
                3,
            )
            .await
            .unwrap();
    }
    measure(
        "VM update (assignability flips: counter in the same transaction)",
        before,
        10,
    );

    let before = now();
    for i in 0..10 {
        store.get_vm(&format!("cost-{i:02}")).await.unwrap();
    }
    measure(
        "long-poll check (one GetItem per poll interval; 25 per 25 s wait at 1 s)",
        before,
        10,
    );

    // Through the use cases, as the HTTP handlers call them (token check included).
    let state = dynamo_app_state(store.clone());
    let token = shared::domain::VmToken::generate();
    let mut vm = Vm::new("cost-uc".into(), token.hash(), 1);
    vm.status = VmStatus::Running;
    store.insert_vm(&vm).await.unwrap();
    let before = now();
    for _ in 0..10 {
        let vm = shared::usecases::vm_agent::authenticate(
            &*state.store,
            "cost-uc",
            Some(token.as_str()),
        )
        .await
        .unwrap();
        shared::usecases::vm_agent::report((&state).into(), &vm, VmChange::InUse(false))
            .await
            .unwrap();
    }
    measure(
        "VM report through the use case (token check + update)",
        before,
        10,
    );
    let before = now();
    let vm =
        shared::usecases::vm_agent::authenticate(&*state.store, "cost-uc", Some(token.as_str()))
            .await
            .unwrap();
    let answer = shared::usecases::vm_agent::wait_for_assignment(
        (&state).into(),
        &vm,
        shared::usecases::vm_agent::Seen::default(),
        std::time::Duration::from_millis(1_050),
    )
    .await
    .unwrap();
    assert_eq!(answer, shared::usecases::vm_agent::StartupAnswer::Waiting);
    measure(
        "long-poll of 1 s with a 100 ms poll interval (token check + one read per poll)",
        before,
        1,
    );
    store.delete_vm("cost-uc", 0).await.unwrap();

    // The race: 200 claims for 50 VMs.
    for i in 0..20 {
        store.delete_vm(&format!("cost-{i:02}"), 0).await.unwrap();
    }
    let before = now();
    shared::contract::claim_race(store.clone(), "cost-race", 200, 50).await;
    let (requests, capacity) = (stats.requests() - before.0, stats.capacity() - before.1);
    println!(
        "COST 200 claims for 50 VMs (including setup of 50 VMs = 150 requests and cleanup): {requests} requests, {capacity:.1} capacity units"
    );
    println!("COST by operation: {:?}", stats.snapshot());
}

/// An AppState over `store` as a Lambda would have it (polling wake-ups, 100 ms interval).
fn dynamo_app_state(store: Arc<dyn shared::ports::Store>) -> shared::AppState {
    use shared::adapters::{InProcessQueue, PollingNotifier, SystemClock};
    let (queue, _worker) = InProcessQueue::new();
    let mut config = shared::config::Config::from_lookup(|_| None).unwrap();
    config.poll_interval = std::time::Duration::from_millis(100);
    shared::AppState {
        store,
        compute: Arc::new(NoCompute),
        queue: Arc::new(queue),
        notifier: Arc::new(PollingNotifier {
            interval: config.poll_interval,
        }),
        clock: Arc::new(SystemClock),
        work: Arc::new(shared::adapters::NotGranted("the work store")),
        network: Arc::new(shared::adapters::NoNetwork("no network in this test")),
        clouds: Default::default(),
        admin: Arc::new(shared::state::AdminCredentials::new("a", "b")),
        config: Arc::new(config),
    }
}

/// The use cases measured here never start machines.
struct NoCompute;

#[async_trait::async_trait]
impl shared::ports::ComputeProvider for NoCompute {
    async fn launch(
        &self,
        _: &shared::ports::LaunchSpec,
    ) -> Result<String, shared::ports::LaunchError> {
        unreachable!("not used by these measurements")
    }
    async fn find_by_hostname(&self, _: &str) -> shared::Result<Option<shared::ports::Instance>> {
        Ok(None)
    }
    async fn list_machines(&self) -> shared::Result<Vec<shared::ports::Instance>> {
        Ok(Vec::new())
    }
    async fn terminate(&self, _: &[String]) -> shared::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn tags(&self) -> Option<&dyn shared::ports::MachineTags> {
        None
    }
}

/// Refused credentials are cheap: a wrong admin password or a flood of bad API keys costs
/// at most one write per request (the failed-login or the per-address counter).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_credentials_cost_at_most_one_write() {
    let store = dynamo_store().await;
    let stats = store.stats();
    let app = spawn_app_with(Options {
        store: Some(Arc::new(store)),
        ..Options::default()
    })
    .await;
    let writes = || -> u64 {
        stats
            .snapshot()
            .iter()
            .filter(|(op, _)| {
                matches!(
                    **op,
                    "PutItem"
                        | "UpdateItem"
                        | "DeleteItem"
                        | "TransactWriteItems"
                        | "BatchWriteItem"
                )
            })
            .map(|(_, (n, _))| n)
            .sum()
    };
    let bad_key = format!("gpf_{}", "7".repeat(64));
    let before = writes();
    for _ in 0..10 {
        let resp = app
            .client
            .post(app.url("/api/v1/instances"))
            .bearer_auth(&bad_key)
            .json(&serde_json::json!({"offer_id": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let per_bad_key = (writes() - before) as f64 / 10.0;
    let before = writes();
    for n in 0..10u8 {
        let resp = client_from(20 + n)
            .get(app.url("/api/v1/instances"))
            .basic_auth(ADMIN_USER, Some("not-the-password"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let per_bad_password = (writes() - before) as f64 / 10.0;
    println!("COST writes per refused request: bad key {per_bad_key:.2}, wrong Basic {per_bad_password:.2}");
    assert!(per_bad_key <= 1.0, "{per_bad_key}");
    assert!(per_bad_password <= 1.0, "{per_bad_password}");
}

/// A log chunk that expires by TTL (DynamoDB deletes it, not the trim) stops counting
/// against the VM's cap: fresh lines are not trimmed early.
#[tokio::test]
async fn expired_log_chunks_stop_counting_against_the_cap() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use shared::ports::LogStore;
    let (store, client, table) = dynamo_store_and_table().await;
    let cap = shared::domain::logs::MIN_CAP_BYTES; // 64 KiB
    let batch = |tag: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("{tag}-{i:03} {}", "x".repeat(990)))
            .collect()
    };
    store
        .append_logs("aging", &batch("old", 40), cap, 1)
        .await
        .unwrap();
    store
        .append_logs("aging", &batch("mid", 20), cap, 2)
        .await
        .unwrap();
    // What TTL does 30 days later: the oldest chunk vanishes, the total is not told.
    client
        .delete_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("LOGS#aging".into()))
        .key("sk", AttributeValue::S(format!("CHUNK#{:020}", 1)))
        .send()
        .await
        .unwrap();
    store
        .append_logs("aging", &batch("new", 20), cap, 3)
        .await
        .unwrap();
    let page = store.read_logs("aging", 0).await.unwrap().unwrap();
    let kept: Vec<&str> = page.lines.iter().map(|l| &l[..7]).collect();
    let mid = kept.iter().filter(|l| l.starts_with("mid")).count();
    let new = kept.iter().filter(|l| l.starts_with("new")).count();
    assert_eq!(
        (mid, new),
        (20, 20),
        "40 KB of live lines fit a 64 KB cap: {kept:?}"
    );
    // The recounted total goes on working: more lines trim the oldest live ones only.
    store
        .append_logs("aging", &batch("more", 40), cap, 4)
        .await
        .unwrap();
    let page = store.read_logs("aging", 0).await.unwrap().unwrap();
    let bytes: usize = page.lines.iter().map(|l| l.len() + 1).sum();
    assert!(bytes <= cap && bytes > cap - 2_000, "{bytes}");
    assert!(page.lines.last().unwrap().starts_with("more-039"));
}
