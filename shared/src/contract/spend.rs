//! Costs: an ended VM's spend moves to the ledger once, with its record's end; budget holds
//! never pass the budget, however many creates race.

use super::*;
use crate::domain::costs::{BudgetCheck, Price, SpendKind};
use crate::ports::CreateInstanceOutcome;

const HOUR: i64 = 3_600_000;
/// 2026-12-01T00:00:00Z: the ledger is kept by month.
const T0: i64 = 1_796_083_200_000;

fn price(usd: f64) -> Option<Price> {
    Some(Price {
        usd_per_hour: usd,
        source: "contract".into(),
    })
}

fn launched(usd: f64, owner: Option<&str>) -> VmChange {
    VmChange::Launched {
        instance_id: "i-spend".into(),
        price: price(usd),
        owner: owner.map(str::to_string),
    }
}

pub(super) async fn spend_moves_to_the_ledger_once(store: &dyn Store) {
    store.insert_vm(&vm("spend-1", T0)).await.expect("insert");
    store
        .update_vm("spend-1", &launched(0.526, None), T0 + HOUR)
        .await
        .expect("launched");
    // A repeat (an adopted machine) keeps the first start and price.
    store
        .update_vm("spend-1", &launched(9.0, None), T0 + 2 * HOUR)
        .await
        .expect("launched again");
    let live = store
        .get_vm("spend-1")
        .await
        .expect("get")
        .and_then(|v| v.spend_record(None))
        .expect("metered");
    assert_eq!((live.started_at, live.kind), (T0 + HOUR, SpendKind::Vm));
    assert!((live.cost_to(T0 + 3 * HOUR) - 2.0 * 0.526).abs() < 1e-9);
    store
        .delete_vm("spend-1", T0 + 4 * HOUR)
        .await
        .expect("delete");
    store
        .delete_vm("spend-1", T0 + 5 * HOUR)
        .await
        .expect("delete again");
    let mine = |records: Vec<crate::domain::costs::SpendRecord>, name: &str| {
        records
            .into_iter()
            .filter(|r| r.name == name)
            .collect::<Vec<_>>()
    };
    let ended = mine(store.ended_spend(T0).await.expect("ledger"), "spend-1");
    assert_eq!(ended.len(), 1, "counted once: {ended:?}");
    assert_eq!(ended[0].ended_at, Some(T0 + 4 * HOUR));
    assert!(
        (ended[0].cost_to(T0 + 100 * HOUR) - 3.0 * 0.526).abs() < 1e-9,
        "price × hours from start to end"
    );
    assert_eq!(
        ended,
        mine(store.ended_spend(0).await.expect("all"), "spend-1")
    );
    assert!(mine(
        store.ended_spend(T0 + 4 * HOUR + 1).await.expect("later"),
        "spend-1"
    )
    .is_empty());
    // A new record under the same hostname is a new machine life: its own entry.
    store
        .insert_vm(&vm("spend-1", T0 + 6 * HOUR))
        .await
        .expect("again");
    store
        .update_vm("spend-1", &launched(1.0, None), T0 + 6 * HOUR)
        .await
        .expect("launched");
    store
        .delete_vm("spend-1", T0 + 7 * HOUR)
        .await
        .expect("delete");
    assert_eq!(
        mine(store.ended_spend(T0).await.expect("ledger"), "spend-1").len(),
        2
    );
    // Never launched: nothing spent, nothing recorded.
    store.insert_vm(&vm("spend-2", T0)).await.expect("insert");
    store.delete_vm("spend-2", T0 + HOUR).await.expect("delete");
    assert!(mine(store.ended_spend(0).await.expect("ledger"), "spend-2").is_empty());
    // A lease's machine keeps its user and request in the ledger.
    let mut leased = vm("spend-3", T0);
    leased.assignment = Some(crate::domain::Assignment::lease("req-spend", 0, T0));
    store.insert_vm(&leased).await.expect("insert");
    store
        .update_vm("spend-3", &launched(2.0, Some("spender")), T0)
        .await
        .expect("launched");
    store
        .delete_vm("spend-3", T0 + HOUR / 2)
        .await
        .expect("delete");
    let lease = mine(store.ended_spend(T0).await.expect("ledger"), "spend-3");
    assert_eq!(lease.len(), 1);
    assert_eq!(lease[0].kind, SpendKind::Lease);
    assert_eq!(lease[0].owner.as_deref(), Some("spender"));
    assert_eq!(lease[0].request_id.as_deref(), Some("req-spend"));
    assert!((lease[0].cost_to(T0 + HOUR) - 1.0).abs() < 1e-9);
    // A machine found gone (reconcile) stops spending then, though its record stays.
    store.insert_vm(&vm("spend-4", T0)).await.expect("insert");
    store
        .update_vm("spend-4", &launched(1.0, None), T0)
        .await
        .expect("launched");
    store
        .update_vm(
            "spend-4",
            &VmChange::MachineGone("instance i-spend no longer exists".into()),
            T0 + HOUR,
        )
        .await
        .expect("gone");
    let gone = store.get_vm("spend-4").await.expect("get").expect("kept");
    assert_eq!(gone.status, VmStatus::Error);
    let record = gone.spend_record(None).expect("metered");
    assert_eq!(record.ended_at, Some(T0 + HOUR), "not running any more");
    store
        .delete_vm("spend-4", T0 + 5 * HOUR)
        .await
        .expect("delete");
    let ended = mine(store.ended_spend(T0).await.expect("ledger"), "spend-4");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].ended_at, Some(T0 + HOUR), "ended when found gone");
    assert!((ended[0].cost_to(T0 + 100 * HOUR) - 1.0).abs() < 1e-9);
}

/// 20 concurrent requests, each holding $2.10 of a $10 budget: exactly 4 recorded, then
/// exactly at the boundary one more fits and nothing after it; instances share the holds.
pub(super) async fn budget_race(store: Arc<dyn Store>) {
    let user = "budget-user";
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let check = BudgetCheck::new(user, 10.0, 0.0, 2.1, T0);
            let mut r = gpu_request(&format!("budget-{i}"), user, 1, T0 + i);
            r.budget_hold = Some(check.hold.clone());
            store
                .create_request(&r, UNLIMITED, None, Some(&check))
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task").expect("create") {
            CreateRequestOutcome::Created => created += 1,
            CreateRequestOutcome::OverBudget { held } => assert_eq!(held, 8_400_000),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 4);
    let month = crate::domain::costs::month_of(T0).1;
    assert_eq!(
        store.budget_held(user, &month).await.expect("held"),
        8_400_000
    );
    assert_eq!(store.budget_held(user, "2026-11").await.expect("held"), 0);
    // A budget of exactly $10.50: one more $2.10 fits to the micro-dollar, then none.
    let exact = BudgetCheck::new(user, 10.5, 0.0, 2.1, T0);
    let outcome = store
        .create_request(
            &gpu_request("budget-exact", user, 1, T0),
            UNLIMITED,
            None,
            Some(&exact),
        )
        .await
        .expect("create");
    assert_eq!(outcome, CreateRequestOutcome::Created);
    let outcome = store
        .create_request(
            &gpu_request("budget-over", user, 1, T0),
            UNLIMITED,
            None,
            Some(&exact),
        )
        .await
        .expect("create");
    assert_eq!(
        outcome,
        CreateRequestOutcome::OverBudget { held: 10_500_000 }
    );
    assert!(
        store
            .get_request("budget-over")
            .await
            .expect("get")
            .is_none(),
        "nothing recorded"
    );
    // Instances hold the same month.
    let instance = cloud_instance("vast_budget", user, T0);
    let outcome = store
        .create_instance(&instance, UNLIMITED, None, Some(&exact))
        .await
        .expect("create");
    assert_eq!(
        outcome,
        CreateInstanceOutcome::OverBudget { held: 10_500_000 }
    );
    // Spend no hold covers counts too: $3 of it and a $2 start fill a $5 budget exactly.
    let other = "budget-other";
    let fits = BudgetCheck::new(other, 5.0, 3.0, 2.0, T0);
    let outcome = store
        .create_instance(
            &cloud_instance("vast_budget2", other, T0),
            UNLIMITED,
            None,
            Some(&fits),
        )
        .await
        .expect("create");
    assert_eq!(outcome, CreateInstanceOutcome::Created);
    let again = BudgetCheck::new(other, 5.0, 3.0, 0.01, T0);
    let outcome = store
        .create_request(
            &gpu_request("budget-other-1", other, 1, T0),
            UNLIMITED,
            None,
            Some(&again),
        )
        .await
        .expect("create");
    assert_eq!(
        outcome,
        CreateRequestOutcome::OverBudget { held: 2_000_000 }
    );
    // Spend alone past the budget refuses whatever the holds.
    let past = BudgetCheck::new("budget-third", 1.0, 1.5, 0.5, T0);
    let outcome = store
        .create_request(
            &gpu_request("budget-third-1", "budget-third", 1, T0),
            UNLIMITED,
            None,
            Some(&past),
        )
        .await
        .expect("create");
    assert_eq!(outcome, CreateRequestOutcome::OverBudget { held: 0 });
}

/// Retries of one create (one Idempotency-Key) racing, with a budget that fits one: one is
/// created and every other is its replay, never a refusal for the budget it took itself.
pub(super) async fn a_retry_replays_even_when_its_first_took_the_budget(store: Arc<dyn Store>) {
    use crate::ports::Idempotency;
    let user = "budget-retry";
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let idem = Idempotency {
                key: "retry-key".into(),
                fingerprint: "same-body".into(),
            };
            let check = BudgetCheck::new(user, 2.0, 0.0, 1.5, T0);
            let mut r = gpu_request(&format!("budget-retry-{i}"), user, 1, T0 + i);
            r.budget_hold = Some(check.hold.clone());
            store
                .create_request(&r, UNLIMITED, Some(&idem), Some(&check))
                .await
        }));
    }
    let (mut created, mut replayed) = (0, 0);
    for task in tasks {
        match task.await.expect("task").expect("create") {
            CreateRequestOutcome::Created => created += 1,
            CreateRequestOutcome::Replayed(_) => replayed += 1,
            other => panic!("a retry must replay: {other:?}"),
        }
    }
    assert_eq!((created, replayed), (1, 9));
    let month = crate::domain::costs::month_of(T0).1;
    assert_eq!(
        store.budget_held(user, &month).await.expect("held"),
        1_500_000
    );
}
