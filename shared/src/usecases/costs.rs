//! What things cost, where people look: the price a machine starts with, the spend of
//! VMs, leases and instances, each user's month, the fleet's figures for the dashboard,
//! and the budget checks a start must pass. The arithmetic is in `domain::costs`.

use std::collections::{BTreeMap, HashMap};

use crate::config::Config;
use crate::domain::api_keys::Caller;
use crate::domain::costs::{
    day_start, month_of, over_budget, total, unheld_spend, BudgetCheck, BudgetHold, CostView,
    Price, PriceTable, SpendKind, SpendRecord, SpendTotals,
};
use crate::domain::instances::CloudInstance;
use crate::domain::{GpuRequest, Millis, Vm, VmChange, VmStatus};
use crate::error::{Error, Result};
use crate::ports::{ComputeProvider, Market, Store};

/// The hourly price of a machine of `instance_type` starting now on `market`: the spot
/// price read now, else the on-demand list price of the configured region (for spot, an
/// upper bound, and its source says so). `None` when neither is known.
pub async fn launch_price(
    compute: &dyn ComputeProvider,
    config: &Config,
    instance_type: &str,
    market: Market,
) -> Option<Price> {
    if market == Market::Spot {
        match compute.spot_price(instance_type).await {
            Ok(Some(usd)) => return Some(Price::spot(usd)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%instance_type, error = ?e, "no spot price; using the list price")
            }
        }
    }
    let table = PriceTable::shipped().ok()?;
    let mut price = table.on_demand(&config.costs.price_region, instance_type)?;
    if market == Market::Spot {
        price.source = format!("{} (spot price unknown: an upper bound)", price.source);
    }
    Some(price)
}

/// The change that records a machine's start: its instance id, its price now and, for a
/// lease, the user it serves.
pub async fn launched(
    store: &dyn Store,
    compute: &dyn ComputeProvider,
    config: &Config,
    vm: &Vm,
    instance_id: String,
    instance_type: Option<&str>,
    market: Market,
) -> Result<VmChange> {
    let request = match vm.lease_request() {
        Some(id) => store.get_request(id).await?,
        None => None,
    };
    // A lease adopted without its job (reconcile) is priced as its request planned it.
    let planned = request.as_ref().and_then(|r| {
        let index = r.hosts.iter().position(|h| *h == vm.hostname)?;
        let plan = crate::domain::requests::plan_machines(r.gpu_count, &config.gpu_shapes).ok()?;
        plan.into_iter().nth(index).map(|shape| shape.instance_type)
    });
    let instance_type = instance_type
        .or(planned.as_deref())
        .unwrap_or(&config.instance_type);
    Ok(VmChange::Launched {
        instance_id,
        price: launch_price(compute, config, instance_type, market).await,
        owner: request.map(|r| r.user_id),
    })
}

/// Every spend record that runs at or after `since`: running VMs (from their records),
/// ended ones (from the ledger) and instances.
pub async fn records_since(store: &dyn Store, since: Millis) -> Result<Vec<SpendRecord>> {
    Ok(Spend::read(store, since).await?.records)
}

/// The VMs and every spend record that runs at or after a time, each read once: the
/// figures computed from one snapshot agree with each other.
struct Spend {
    vms: Vec<Vm>,
    records: Vec<SpendRecord>,
}

impl Spend {
    async fn read(store: &dyn Store, since: Millis) -> Result<Self> {
        let vms = store.list_vms().await?;
        let running = vms.iter().filter_map(|vm| vm.spend_record(None)).collect();
        let mut records = with_ledger(running, store.ended_spend(since).await?);
        records.extend(
            store
                .list_instances(None)
                .await?
                .iter()
                .filter_map(CloudInstance::spend_record)
                .filter(|r| r.runs_since(since)),
        );
        Ok(Spend { vms, records })
    }
}

/// Running VMs' records and the ledger's, read one after the other: a VM deleted between
/// the two reads is in both, and counts once, as ended.
fn with_ledger(running: Vec<SpendRecord>, ended: Vec<SpendRecord>) -> Vec<SpendRecord> {
    let ended_ids: std::collections::HashSet<&str> = ended.iter().map(|r| r.id.as_str()).collect();
    let mut records: Vec<SpendRecord> = running
        .into_iter()
        .filter(|r| !ended_ids.contains(r.id.as_str()))
        .collect();
    records.extend(ended);
    records
}

/// One VM's price and spend.
pub fn vm_cost(vm: &Vm, now: Millis) -> CostView {
    CostView::of(vm.spend_record(None).as_ref(), now)
}

/// A request's price and spend: its machines still running and those ended.
pub async fn request_cost(
    store: &dyn Store,
    request: &GpuRequest,
    now: Millis,
) -> Result<CostView> {
    let mut running = Vec::new();
    for host in &request.hosts {
        if let Some(r) = store
            .get_vm(host)
            .await?
            .and_then(|vm| vm.spend_record(None))
        {
            running.push(r);
        }
    }
    let ended = store
        .ended_spend(request.created_at)
        .await?
        .into_iter()
        .filter(|r| r.request_id.as_deref() == Some(request.request_id.as_str()))
        .collect();
    Ok(CostView::of(&with_ledger(running, ended), now))
}

pub fn instance_cost(instance: &CloudInstance, now: Millis) -> CostView {
    CostView::of(instance.spend_record().as_ref(), now)
}

/// Each API user's spend this month and in all, from every record ever kept.
pub async fn spend_by_user(store: &dyn Store, now: Millis) -> Result<HashMap<String, SpendTotals>> {
    let records = records_since(store, 0).await?;
    let mut by_user: HashMap<String, Vec<&SpendRecord>> = HashMap::new();
    for r in &records {
        if let Some(owner) = &r.owner {
            by_user.entry(owner.clone()).or_default().push(r);
        }
    }
    Ok(by_user
        .into_iter()
        .map(|(user, rs)| (user, SpendTotals::of(rs, now)))
        .collect())
}

/// A user's monthly budget: the smallest among their active keys (the caller's too, read
/// when it authenticated), so another key without a budget does not lift it. `None`: none.
pub async fn user_budget(store: &dyn Store, caller: &Caller) -> Result<Option<f64>> {
    let keys = budgets_by_user(store).await?;
    Ok(
        match (keys.get(&caller.user_id).copied(), caller.budget_usd) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    )
}

/// Each user's budget: the smallest `budget_usd` among their active keys.
async fn budgets_by_user(store: &dyn Store) -> Result<HashMap<String, f64>> {
    let mut budgets: HashMap<String, f64> = HashMap::new();
    for key in store.list_api_keys().await? {
        if let (None, Some(budget)) = (key.revoked_at, key.budget_usd) {
            budgets
                .entry(key.user_id)
                .and_modify(|b| *b = b.min(budget))
                .or_insert(budget);
        }
    }
    Ok(budgets)
}

/// The check of `user` (whose budget is `budget`, see [`user_budget`]) starting something
/// that costs at least `minimum_usd`. Its hold is what the store adds atomically.
pub async fn budget_check(
    store: &dyn Store,
    user: &str,
    budget: f64,
    minimum_usd: f64,
    now: Millis,
) -> Result<BudgetCheck> {
    let (month_start, _) = month_of(now);
    let records: Vec<SpendRecord> = records_since(store, month_start)
        .await?
        .into_iter()
        .filter(|r| r.owner.as_deref() == Some(user))
        .collect();
    let requests = store.list_requests(Some(user), usize::MAX).await?;
    let instances = store.list_instances(Some(user)).await?;
    // Group each thing's records with the hold its start made.
    let mut things: BTreeMap<String, (Vec<&SpendRecord>, Option<&BudgetHold>)> = BTreeMap::new();
    for r in &records {
        let thing = match r.kind {
            SpendKind::Instance => r.name.clone(),
            _ => r.request_id.clone().unwrap_or_else(|| r.id.clone()),
        };
        things.entry(thing).or_default().0.push(r);
    }
    for request in &requests {
        if let Some(entry) = things.get_mut(&request.request_id) {
            entry.1 = request.budget_hold.as_ref();
        }
    }
    for instance in &instances {
        if let Some(entry) = things.get_mut(&instance.id) {
            entry.1 = instance.budget_hold.as_ref();
        }
    }
    let unheld = unheld_spend(things.into_values(), now);
    Ok(BudgetCheck::new(user, budget, unheld, minimum_usd, now))
}

/// The least a request for these machines costs: the first hour of each, at the price it
/// would start with. A machine type with no known price cannot be held against a budget.
pub async fn request_minimum(
    compute: &dyn ComputeProvider,
    config: &Config,
    instance_types: &[String],
) -> Result<f64> {
    let mut total = 0.0;
    for instance_type in instance_types {
        let price = launch_price(compute, config, instance_type, config.market)
            .await
            .ok_or_else(|| {
                Error::validation(format!(
                    "no price is known for {instance_type}, so this request cannot be checked against your budget; ask an admin to add it to the price table"
                ))
            })?;
        total += price.minimum_charge();
    }
    Ok(total)
}

/// A workshop launch of `count` VMs must fit the fleet's monthly budget, if there is one.
/// Like a user's budget, each workshop VM counts for at least its first hour: the month's
/// workshop VMs count for the larger of their spend this month and their first hour (if
/// they started this month), VMs asked for but not yet started count for their first hour,
/// and so do the new ones. Launches run one at a time (the operation lock), so this
/// read-then-launch cannot race another launch.
pub async fn check_fleet_budget(
    store: &dyn Store,
    compute: &dyn ComputeProvider,
    config: &Config,
    launch: FleetLaunch<'_>,
    now: Millis,
) -> Result<()> {
    let Some(budget) = fleet_budget(store, compute, config, launch, now).await? else {
        return Ok(());
    };
    let first_hour = budget.first_hour_usd.ok_or_else(|| {
        Error::validation(format!(
            "no price is known for {}, so the launch cannot be checked against the fleet budget",
            launch.instance_type
        ))
    })?;
    let minimum = first_hour * f64::from(launch.count);
    if !budget.fits(minimum) {
        return Err(over_budget(
            "fleet's monthly budget",
            budget.budget_usd,
            budget.counted_usd,
            minimum,
            &format!("launch of {} VM(s)", launch.count),
        ));
    }
    Ok(())
}

/// The fleet budget as a launch sees it: what the month counts against it and the first
/// hour of one more VM. `None` without a fleet budget.
async fn fleet_budget(
    store: &dyn Store,
    compute: &dyn ComputeProvider,
    config: &Config,
    launch: FleetLaunch<'_>,
    now: Millis,
) -> Result<Option<FleetBudget>> {
    let Some(budget_usd) = config.costs.fleet_budget_usd else {
        return Ok(None);
    };
    let spend = Spend::read(store, month_of(now).0).await?;
    Ok(Some(
        fleet_budget_of(&spend, budget_usd, compute, config, launch, now).await,
    ))
}

async fn fleet_budget_of(
    spend: &Spend,
    budget_usd: f64,
    compute: &dyn ComputeProvider,
    config: &Config,
    launch: FleetLaunch<'_>,
    now: Millis,
) -> FleetBudget {
    let first_hour_usd = launch_price(compute, config, launch.instance_type, launch.market)
        .await
        .map(|p| p.minimum_charge());
    FleetBudget {
        budget_usd,
        counted_usd: fleet_month_counted(spend, first_hour_usd.unwrap_or(0.0), now),
        first_hour_usd,
        instance_type: launch.instance_type.to_string(),
    }
}

/// The fleet's monthly budget and what counts against it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetBudget {
    pub budget_usd: f64,
    /// Each workshop VM this month for at least its first hour, and the ones asked for.
    pub counted_usd: f64,
    /// The first hour of one more VM of `instance_type`; `None` without a price (then
    /// every launch is refused).
    pub first_hour_usd: Option<f64>,
    pub instance_type: String,
}

impl FleetBudget {
    /// Whether starting something that costs at least `minimum_usd` stays within the
    /// budget. Equal fits; sums of prices are compared to the micro-dollar, so an exact fit
    /// that float addition overshoots by a rounding error still fits.
    pub fn fits(&self, minimum_usd: f64) -> bool {
        self.counted_usd + minimum_usd <= self.budget_usd + MICRO_DOLLAR
    }

    /// How many more VMs a launch could start now (what [`Self::fits`] allows).
    pub fn room_for(&self) -> Option<u64> {
        let first_hour = self.first_hour_usd.filter(|p| *p > 0.0)?;
        let left = (self.budget_usd - self.counted_usd).max(0.0);
        let mut room = ((left + MICRO_DOLLAR) / first_hour).floor() as u64;
        // Float division and the check's addition may disagree at the edge: the check decides.
        while room > 0 && !self.fits(first_hour * room as f64) {
            room -= 1;
        }
        Some(room)
    }
}

const MICRO_DOLLAR: f64 = 1e-6;

/// Workshop VMs about to be launched.
#[derive(Debug, Clone, Copy)]
pub struct FleetLaunch<'a> {
    pub count: u32,
    pub instance_type: &'a str,
    pub market: Market,
}

impl<'a> FleetLaunch<'a> {
    /// `count` VMs of the configured type and market (an admin's launch).
    pub fn configured(config: &'a Config, count: u32) -> Self {
        FleetLaunch {
            count,
            instance_type: &config.instance_type,
            market: config.market,
        }
    }
}

/// What the fleet budget counts as spent this month: each workshop VM's spend this month,
/// at least its first hour if it started this month, and `pending_charge` for each VM
/// asked for and not yet started. One snapshot decides both started and pending: read
/// apart, a VM launched between the reads would be in neither.
fn fleet_month_counted(spend: &Spend, pending_charge: f64, now: Millis) -> f64 {
    let (month_start, _) = month_of(now);
    let started = total(
        spend
            .records
            .iter()
            .filter(|r| r.kind == SpendKind::Vm)
            .map(|r| {
                let spent = r.cost_between(month_start, now);
                match &r.price {
                    Some(p) if r.started_at >= month_start => spent.max(p.minimum_charge()),
                    _ => spent,
                }
            }),
    );
    let pending = spend
        .vms
        .iter()
        .filter(|vm| {
            vm.metering.is_none()
                && vm.instance_id.is_none()
                && vm.assignment.is_none()
                && vm.status == VmStatus::Initializing
        })
        .count();
    started + pending_charge * pending as f64
}

/// A running VM standing idle, with what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleVm {
    pub hostname: String,
    pub idle_minutes: i64,
    /// Whether nobody holds it (else its participant has not used it).
    pub unclaimed: bool,
    pub cost: CostView,
}

/// A user whose month is over budget while their machines run (running leases are not
/// ended by a budget; new starts are refused).
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    pub user_id: String,
    pub budget_usd: f64,
    pub month_usd: f64,
    pub running: usize,
}

/// The dashboard's cost figures.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetCosts {
    /// Every running machine's price added up (VMs, leases, instances).
    pub per_hour_now: f64,
    /// Machines running without a known price (not in `per_hour_now`).
    pub unpriced_running: usize,
    /// Spend since midnight UTC, every kind.
    pub today_usd: f64,
    /// The current workshop VMs' spend since their start.
    pub fleet_usd: f64,
    /// Workshop VMs' spend this calendar month.
    pub fleet_month_usd: f64,
    /// The fleet budget and what counts against it, if there is one.
    pub fleet_budget: Option<FleetBudget>,
    /// Per VM in the store (hostname → its view).
    pub per_vm: HashMap<String, CostView>,
    pub idle: Vec<IdleVm>,
    pub idle_per_hour: f64,
    pub idle_after_minutes: u64,
    pub over_budget: Vec<OverBudget>,
}

/// The figures for the admin dashboard.
pub async fn fleet_costs(
    store: &dyn Store,
    compute: &dyn ComputeProvider,
    config: &Config,
    now: Millis,
) -> Result<FleetCosts> {
    let (month_start, _) = month_of(now);
    let today = day_start(now); // within the month
    let spend = Spend::read(store, month_start).await?;
    let (vms, records) = (&spend.vms, &spend.records);
    let fleet_budget = match config.costs.fleet_budget_usd {
        Some(budget) => {
            let launch = FleetLaunch::configured(config, 1);
            Some(fleet_budget_of(&spend, budget, compute, config, launch, now).await)
        }
        None => None,
    };
    let running: Vec<&SpendRecord> = records.iter().filter(|r| r.is_running()).collect();
    let idle_after = i64::try_from(config.costs.idle_warning.as_millis()).unwrap_or(i64::MAX);
    let idle: Vec<IdleVm> = vms
        .iter()
        .filter_map(|vm| {
            let idle_for = vm.idle_for(now).filter(|d| *d >= idle_after)?;
            Some(IdleVm {
                hostname: vm.hostname.clone(),
                idle_minutes: idle_for / 60_000,
                unclaimed: vm.assignment.is_none(),
                cost: vm_cost(vm, now),
            })
        })
        .collect();
    let mut over_budget = Vec::new();
    let budgets = budgets_by_user(store).await?;
    let mut users: Vec<&String> = budgets.keys().collect();
    users.sort();
    for user in users {
        let mine: Vec<&SpendRecord> = records
            .iter()
            .filter(|r| r.owner.as_ref() == Some(user))
            .collect();
        let month_usd = total(mine.iter().map(|r| r.cost_between(month_start, now)));
        let running_count = mine.iter().filter(|r| r.is_running()).count();
        if month_usd > budgets[user] && running_count > 0 {
            over_budget.push(OverBudget {
                user_id: user.clone(),
                budget_usd: budgets[user],
                month_usd,
                running: running_count,
            });
        }
    }
    Ok(FleetCosts {
        per_hour_now: total(
            running
                .iter()
                .filter_map(|r| r.price.as_ref())
                .map(|p| p.usd_per_hour),
        ),
        unpriced_running: running.iter().filter(|r| r.price.is_none()).count(),
        today_usd: total(records.iter().map(|r| r.cost_between(today, now))),
        fleet_usd: total(
            vms.iter()
                .filter(|vm| vm.lease_request().is_none())
                .filter_map(|vm| vm.spend_record(None))
                .map(|r| r.cost_to(now)),
        ),
        fleet_month_usd: total(
            records
                .iter()
                .filter(|r| r.kind == SpendKind::Vm)
                .map(|r| r.cost_between(month_start, now)),
        ),
        fleet_budget,
        per_vm: vms
            .iter()
            .map(|vm| (vm.hostname.clone(), vm_cost(vm, now)))
            .collect(),
        idle_per_hour: total(idle.iter().filter_map(|i| i.cost.price_per_hour)),
        idle,
        idle_after_minutes: config.costs.idle_warning.as_secs() / 60,
        over_budget,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_budget_has_room_for_whole_first_hours() {
        let budget = |counted_usd: f64, first_hour_usd: Option<f64>| FleetBudget {
            budget_usd: 10.0,
            counted_usd,
            first_hour_usd,
            instance_type: "g4dn.xlarge".into(),
        };
        assert_eq!(
            budget(0.0, Some(2.5)).room_for(),
            Some(4),
            "an exact fit fits"
        );
        assert_eq!(budget(0.1, Some(2.5)).room_for(), Some(3));
        assert_eq!(budget(12.0, Some(2.5)).room_for(), Some(0), "over it: none");
        assert_eq!(budget(0.0, None).room_for(), None, "no price: unknown");
        // 0.526 × 7 is 3.6820000000000004 in floats: still an exact fit of $3.682.
        let edge = FleetBudget {
            budget_usd: 3.682,
            counted_usd: 0.0,
            first_hour_usd: Some(0.526),
            instance_type: "g4dn.xlarge".into(),
        };
        assert_eq!(edge.room_for(), Some(7));
        assert!(edge.fits(0.526 * 7.0));
        assert!(!edge.fits(0.526 * 8.0));
    }

    #[test]
    fn a_vm_in_both_reads_counts_once_as_ended() {
        let record = |id: &str, ended_at: Option<Millis>| SpendRecord {
            id: id.into(),
            kind: SpendKind::Vm,
            name: id.into(),
            owner: None,
            request_id: None,
            price: None,
            started_at: 0,
            ended_at,
        };
        let merged = with_ledger(
            vec![record("a", None), record("b", None)],
            vec![record("a", Some(5)), record("c", Some(7))],
        );
        let mut seen: Vec<(&str, Option<Millis>)> =
            merged.iter().map(|r| (r.id.as_str(), r.ended_at)).collect();
        seen.sort();
        assert_eq!(seen, [("a", Some(5)), ("b", None), ("c", Some(7))]);
    }
}
