//! What admin pages and their JSON show about the fleet: one shape, used by the server-
//! rendered tables, `GET /admin/instances` (JSON) and the dashboard's live refresh. Never
//! carries tokens, PINs or CRD commands.

use std::collections::BTreeMap;

use serde::Serialize;
use shared::domain::metrics::STAGES;
use shared::domain::{Vm, VmStatus};

use crate::http::rfc3339;

/// One boot stage's timing, as far as the VM reported it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StageView {
    /// Unix seconds.
    pub start: Option<f64>,
    /// Unix seconds.
    pub end: Option<f64>,
    pub duration_seconds: Option<f64>,
}

/// A VM as admins see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VmView {
    pub hostname: String,
    /// `initializing`, `running`, `error`, `rebooting` or `unknown`.
    pub status: &'static str,
    pub status_reason: Option<String>,
    /// `healthy`, `unhealthy` or `n/a`.
    pub gpu_health: &'static str,
    pub in_use: bool,
    /// The participant holding it.
    pub assigned_email: Option<String>,
    /// The cloud machine's id, once launched.
    pub instance_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub age_seconds: i64,
    /// RFC 3339: when it last called.
    pub last_seen_at: Option<String>,
    pub last_seen_seconds_ago: Option<i64>,
    /// Heard from within the heartbeat timeout.
    pub alive: bool,
    /// A workshop participant holds it (an admin may re-issue their seat link or move them).
    pub has_participant: bool,
    pub startup_total_seconds: Option<f64>,
    /// The stages reported so far, by name (`cloud_init`, `desktop`, `crd`, `cloudwatch`,
    /// `container`, `agent`).
    pub startup_stages: BTreeMap<&'static str, StageView>,
    /// While a destroy's final sync runs: `syncing` (asked, not answered yet) or `synced`.
    pub final_sync: Option<&'static str>,
    /// USD per hour while it runs; null when no price is known.
    pub price_per_hour: Option<f64>,
    /// USD spent from its start to its end, or to now while it runs (an estimate).
    pub cost_so_far: f64,
    /// Always `USD`.
    pub currency: &'static str,
    /// Where the price came from; null when unknown.
    pub price_source: Option<String>,
    /// Its machine was found gone: it spends nothing more (`cost_so_far` is final).
    pub spend_ended: bool,
}

impl VmView {
    pub fn new(vm: &Vm, now_ms: i64, live_since: i64) -> Self {
        let cost = shared::usecases::costs::vm_cost(vm, now_ms);
        let startup_stages = STAGES
            .iter()
            .filter_map(|stage| {
                let t = vm.metrics.stage(stage);
                (t.start.is_some() || t.end.is_some() || t.duration.is_some()).then_some((
                    *stage,
                    StageView {
                        start: t.start,
                        end: t.end,
                        duration_seconds: t.duration,
                    },
                ))
            })
            .collect();
        VmView {
            hostname: vm.hostname.clone(),
            status: vm.status.as_str(),
            status_reason: vm.status_reason.clone(),
            gpu_health: vm.gpu_health.as_str(),
            in_use: vm.in_use,
            assigned_email: vm
                .assignment
                .as_ref()
                .filter(|a| !a.is_retired())
                .map(|a| a.email.clone()),
            instance_id: vm.instance_id.clone(),
            created_at: rfc3339(vm.created_at),
            age_seconds: (now_ms - vm.created_at).max(0) / 1000,
            last_seen_at: vm.last_seen_at.map(rfc3339),
            last_seen_seconds_ago: vm.last_seen_at.map(|t| (now_ms - t).max(0) / 1000),
            alive: vm.is_live(live_since),
            has_participant: vm.assignment.as_ref().is_some_and(|a| a.is_participant()),
            startup_total_seconds: vm.metrics.total_seconds(),
            startup_stages,
            final_sync: match vm.collect_requested_at {
                None => None,
                Some(_) if vm.final_sync_pending() => Some("syncing"),
                Some(_) => Some("synced"),
            },
            price_per_hour: cost.price_per_hour,
            cost_so_far: cost.cost_so_far,
            currency: cost.currency,
            price_source: cost.price_source,
            spend_ended: vm.metering.as_ref().is_some_and(|m| m.gone_at.is_some()),
        }
    }

    /// "$0.53/h" for tables; "unknown" without a price; "ended" once its machine is gone.
    pub fn price(&self) -> String {
        if self.spend_ended {
            return "ended".into();
        }
        usd_per_hour(self.price_per_hour)
    }

    pub fn spent(&self) -> String {
        usd(self.cost_so_far)
    }

    /// "2m 05s" style, for tables.
    pub fn age(&self) -> String {
        human_duration(self.age_seconds)
    }

    pub fn last_seen(&self) -> String {
        self.last_seen_seconds_ago
            .map(|s| format!("{} ago", human_duration(s)))
            .unwrap_or_else(|| "never".into())
    }
}

pub fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Counts by status, plus free / assigned / in use / total.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct FleetCounts {
    pub total: usize,
    /// Live, unassigned VMs a participant can claim.
    pub free: usize,
    pub assigned: usize,
    pub in_use: usize,
    /// Every status, with 0 where none.
    pub by_status: BTreeMap<&'static str, usize>,
}

impl FleetCounts {
    pub fn of(vms: &[Vm], live_since: i64) -> Self {
        let mut counts = FleetCounts {
            total: vms.len(),
            ..FleetCounts::default()
        };
        for status in VmStatus::ALL {
            counts.by_status.insert(status.as_str(), 0);
        }
        for vm in vms {
            *counts.by_status.entry(vm.status.as_str()).or_default() += 1;
            counts.free += usize::from(vm.is_assignable(live_since));
            counts.assigned += usize::from(vm.assignment.as_ref().is_some_and(|a| !a.is_retired()));
            counts.in_use += usize::from(vm.in_use);
        }
        counts
    }
}

/// The fleet: every VM and the counts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FleetView {
    pub vms: Vec<VmView>,
    pub counts: FleetCounts,
}

impl FleetView {
    pub fn new(vms: &[Vm], now_ms: i64, live_since: i64) -> Self {
        FleetView {
            vms: vms
                .iter()
                .map(|v| VmView::new(v, now_ms, live_since))
                .collect(),
            counts: FleetCounts::of(vms, live_since),
        }
    }
}

/// Geometry of the startup-time chart: one row per VM with a bar segment per stage,
/// positioned on a shared time axis from the VM's first stage start.
pub struct MetricsChart {
    pub rows: Vec<ChartRow>,
    pub ticks: Vec<ChartTick>,
    pub width: u32,
    pub height: u32,
    pub plot_x: u32,
    pub plot_width: u32,
    pub median: Option<f64>,
    pub p90: Option<f64>,
    pub reported: usize,
    pub total_vms: usize,
}

pub struct ChartRow {
    pub hostname: String,
    pub y: u32,
    pub bars: Vec<ChartBar>,
    pub total_label: String,
    pub label_x: f64,
}

pub struct ChartBar {
    pub stage: &'static str,
    pub x: f64,
    pub width: f64,
    pub title: String,
}

pub struct ChartTick {
    pub x: f64,
    pub label: String,
}

const ROW_HEIGHT: u32 = 26;
const PLOT_X: u32 = 210;
const PLOT_WIDTH: u32 = 600;

impl MetricsChart {
    pub fn new(vms: &[Vm]) -> Self {
        struct Placed<'a> {
            hostname: &'a str,
            segments: Vec<(&'static str, f64, f64)>, // stage, offset, duration
            total: f64,
        }
        let mut placed = Vec::new();
        for vm in vms {
            let Some(total) = vm.metrics.total_seconds() else {
                continue;
            };
            let stages: Vec<_> = STAGES.iter().map(|s| (*s, vm.metrics.stage(s))).collect();
            let origin = stages
                .iter()
                .filter_map(|(_, t)| t.start)
                .fold(f64::INFINITY, f64::min);
            let mut cursor = 0.0;
            let mut segments = Vec::new();
            for (stage, t) in stages {
                let Some(duration) = t.duration else { continue };
                // Placed in time when we know the start; otherwise stacked after the last.
                let offset = match t.start {
                    Some(start) if origin.is_finite() => start - origin,
                    _ => cursor,
                };
                cursor = offset + duration;
                segments.push((stage, offset, duration));
            }
            placed.push(Placed {
                hostname: &vm.hostname,
                segments,
                total,
            });
        }
        let mut totals: Vec<f64> = placed.iter().map(|p| p.total).collect();
        totals.sort_by(f64::total_cmp);
        let quantile = |q: f64| -> Option<f64> {
            (!totals.is_empty()).then(|| totals[((totals.len() - 1) as f64 * q).round() as usize])
        };
        let longest = placed
            .iter()
            .flat_map(|p| p.segments.iter().map(|(_, o, d)| o + d).chain([p.total]))
            .fold(1.0_f64, f64::max);
        // One VM far slower than the rest must not flatten everyone else's bars: with a few
        // VMs reported, the axis ends at twice the p90 and longer rows are cut, labelled.
        let max = match quantile(0.9) {
            Some(p90) if placed.len() >= 5 => longest.min((2.0 * p90).max(1.0)),
            _ => longest,
        };
        let scale = f64::from(PLOT_WIDTH) / max;
        let clip = |x: f64| x.clamp(0.0, max);
        let rows = placed
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let end = p
                    .segments
                    .iter()
                    .map(|(_, o, d)| o + d)
                    .fold(0.0_f64, f64::max);
                ChartRow {
                    hostname: p.hostname.to_string(),
                    y: 30 + i as u32 * ROW_HEIGHT,
                    bars: p
                        .segments
                        .iter()
                        .map(|(stage, offset, duration)| ChartBar {
                            stage,
                            x: f64::from(PLOT_X) + clip(*offset) * scale,
                            width: ((clip(offset + duration) - clip(*offset)) * scale).max(1.0),
                            title: format!("{stage}: {duration:.1} s"),
                        })
                        .collect(),
                    total_label: if end.max(p.total) > max {
                        format!("{:.1} s (off the scale)", p.total)
                    } else {
                        format!("{:.1} s", p.total)
                    },
                    label_x: f64::from(PLOT_X) + clip(end) * scale + 6.0,
                }
            })
            .collect::<Vec<_>>();
        let step = nice_step(max / 5.0);
        let ticks = (0..)
            .map(|i| f64::from(i) * step)
            .take_while(|t| *t <= max)
            .map(|t| ChartTick {
                x: f64::from(PLOT_X) + t * scale,
                label: format!("{t:.0} s"),
            })
            .collect();
        MetricsChart {
            height: 50 + rows.len() as u32 * ROW_HEIGHT,
            rows,
            ticks,
            width: PLOT_X + PLOT_WIDTH + 80,
            plot_x: PLOT_X,
            plot_width: PLOT_WIDTH,
            median: quantile(0.5),
            p90: quantile(0.9),
            reported: placed.len(),
            total_vms: vms.len(),
        }
    }
}

fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
        .max(1.0)
}

/// A GPU request as the API shows it (times RFC 3339 UTC).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    /// A UUID.
    pub request_id: String,
    pub status: shared::domain::RequestStatus,
    pub user_id: String,
    pub gpu_count: u32,
    pub duration_hours: u32,
    /// Reserved; not issued by this deployment (always null).
    pub kubeconfig: Option<String>,
    pub created_at: String,
    /// When it completed or failed.
    pub completed_at: Option<String>,
    /// When the lease ends (completion plus `duration_hours`).
    pub expires_at: Option<String>,
    /// Why it failed.
    pub error_msg: Option<String>,
    /// How to reach the machines, once completed.
    pub access: Option<shared::domain::LeaseAccess>,
    /// USD per hour of its machines while they run; null when unknown, and in listings.
    pub price_per_hour: Option<f64>,
    /// USD its machines spent so far (an estimate); null in listings.
    pub cost_so_far: Option<f64>,
    /// Always `USD`.
    pub currency: &'static str,
    /// Where its machines' prices came from; null when unknown, and in listings.
    pub price_source: Option<String>,
}

impl RequestView {
    pub fn new(r: &shared::domain::GpuRequest) -> Self {
        RequestView {
            request_id: r.request_id.clone(),
            status: r.status,
            user_id: r.user_id.clone(),
            gpu_count: r.gpu_count,
            duration_hours: r.duration_hours,
            kubeconfig: r.kubeconfig.clone(),
            created_at: rfc3339(r.created_at),
            completed_at: r.completed_at.map(rfc3339),
            expires_at: r.expires_at.map(rfc3339),
            error_msg: r.error_msg.clone(),
            access: r.access.clone(),
            price_per_hour: None,
            cost_so_far: None,
            currency: shared::domain::costs::CURRENCY,
            price_source: None,
        }
    }

    /// With its machines' price and spend.
    pub fn with_cost(self, cost: shared::domain::costs::CostView) -> Self {
        RequestView {
            price_per_hour: cost.price_per_hour,
            cost_so_far: Some(cost.cost_so_far),
            price_source: cost.price_source,
            ..self
        }
    }
}

/// An API key as admins see it (never the key itself, nor its hash).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub key_id: String,
    pub user_id: String,
    pub label: String,
    /// GPUs this user may hold at once across active requests.
    pub gpu_quota: u32,
    /// RFC 3339.
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub active: bool,
    /// The user's monthly budget in USD; null: none.
    pub budget_usd: Option<f64>,
    /// What the user's machines spent this calendar month (UTC), USD.
    pub spend_this_month_usd: f64,
    /// What the user's machines spent in all, USD.
    pub spend_all_time_usd: f64,
}

impl ApiKeyView {
    pub fn new(k: &shared::domain::ApiKey, spend: shared::domain::costs::SpendTotals) -> Self {
        ApiKeyView {
            budget_usd: k.budget_usd,
            spend_this_month_usd: spend.month_usd,
            spend_all_time_usd: spend.all_time_usd,
            key_id: k.key_id.clone(),
            user_id: k.user_id.clone(),
            label: k.label.clone(),
            gpu_quota: k.gpu_quota,
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
            active: k.is_active(),
        }
    }
}

/// An instance, in the offers API's published shape (`provider_data` carries how to reach
/// it and what it runs).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceView {
    /// `<provider prefix>_<16 hex>`, e.g. `vast_3f2a…`.
    pub id: String,
    pub provider: String,
    /// The provider's id (EC2 instance id, Vast contract id), once the machine exists.
    pub provider_id: Option<String>,
    /// Its owner.
    pub user_id: String,
    /// Its label.
    pub name: String,
    pub status: shared::domain::instances::InstanceStatus,
    /// Why it failed or ended, when known.
    pub status_reason: Option<String>,
    pub gpu_model: String,
    pub gpu_count: u32,
    pub cpu_count: u32,
    pub ram_gb: f64,
    pub storage_gb: f64,
    /// USD per hour (the offer's price).
    pub price_per_hour: f64,
    /// USD spent from its start to its end, or to now while it runs (an estimate).
    pub cost_so_far: f64,
    /// Always `USD`.
    pub currency: &'static str,
    /// Where the price came from.
    pub price_source: Option<String>,
    pub region: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    pub provider_data: InstanceProviderData,
}

/// How to reach an instance and what it runs, then what its offer said beyond the common
/// fields (market, instance type, machine id...).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceProviderData {
    /// The offer's provider id.
    pub offer_id: String,
    pub ssh_host: Option<String>,
    pub ssh_port: Option<u16>,
    pub public_ipaddr: Option<String>,
    pub image: Option<String>,
    pub onstart_script: Option<String>,
    /// The offer's own fields; never one of the names above.
    #[serde(flatten)]
    pub offer: BTreeMap<String, serde_json::Value>,
}

impl InstanceView {
    pub fn new(r: &shared::domain::instances::CloudInstance, now: i64) -> Self {
        let cost = shared::usecases::costs::instance_cost(r, now);
        // The fields of `provider_data` the offer's own fields cannot replace.
        const OWN: [&str; 6] = [
            "offer_id",
            "ssh_host",
            "ssh_port",
            "public_ipaddr",
            "image",
            "onstart_script",
        ];
        let offer: BTreeMap<String, serde_json::Value> = r
            .offer_data
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| !OWN.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        InstanceView {
            id: r.id.clone(),
            provider: r.provider.clone(),
            provider_id: r.provider_id.clone(),
            user_id: r.owner.clone(),
            name: r.name.clone(),
            status: r.status,
            status_reason: r.status_reason.clone(),
            gpu_model: r.gpu_model.clone(),
            gpu_count: r.gpu_count,
            cpu_count: r.cpu_count,
            ram_gb: r.ram_gb,
            storage_gb: r.storage_gb,
            price_per_hour: r.price_per_hour,
            cost_so_far: cost.cost_so_far,
            currency: cost.currency,
            price_source: cost.price_source.or_else(|| r.price_source.clone()),
            region: r.region.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            provider_data: InstanceProviderData {
                offer_id: r.offer_id.clone(),
                ssh_host: r.ssh_host.clone(),
                ssh_port: r.ssh_port,
                public_ipaddr: r.public_ip.clone(),
                image: r.image.clone(),
                onstart_script: r.onstart_script.clone(),
                offer,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::{StartupMetrics, TokenHash};

    fn vm_with(name: &str, report: serde_json::Value) -> Vm {
        let mut vm = Vm::new(name.into(), TokenHash::of("t"), 0);
        vm.metrics
            .merge(&StartupMetrics::from_report(report.as_object().unwrap()).unwrap())
            .unwrap();
        vm
    }

    #[test]
    fn chart_quantiles_and_geometry() {
        let vms: Vec<Vm> = (1..=10)
            .map(|i| {
                vm_with(
                    &format!("vm-{i}"),
                    serde_json::json!({"cloud_init_start": 1000, "cloud_init_end": 1000 + 10 * i}),
                )
            })
            .chain([Vm::new("no-metrics".into(), TokenHash::of("t"), 0)])
            .collect();
        let chart = MetricsChart::new(&vms);
        assert_eq!(chart.reported, 10);
        assert_eq!(chart.total_vms, 11);
        assert_eq!(chart.median, Some(60.0)); // of 10..100, index round(4.5) = 5
        assert_eq!(chart.p90, Some(90.0));
        let widest = &chart.rows[9].bars[0];
        assert!((widest.x - f64::from(PLOT_X)).abs() < 1e-9);
        assert!((widest.width - f64::from(PLOT_WIDTH)).abs() < 1e-6);
    }

    #[test]
    fn one_slow_vm_does_not_flatten_the_chart() {
        let vms: Vec<Vm> = (1..=9)
            .map(|i| {
                vm_with(
                    &format!("vm-{i}"),
                    serde_json::json!({"cloud_init_start": 1000, "cloud_init_end": 1000 + 10 * i}),
                )
            })
            .chain([vm_with(
                "slow",
                serde_json::json!({"cloud_init_start": 1000, "cloud_init_end": 1000 + 86_400}),
            )])
            .collect();
        let chart = MetricsChart::new(&vms);
        // The 90 s VM still spans most of the plot, and the slow one is cut at its edge.
        let ninety = &chart.rows[8].bars[0];
        assert!(
            ninety.width > f64::from(PLOT_WIDTH) / 4.0,
            "{}",
            ninety.width
        );
        let slow = &chart.rows[9];
        assert!(slow.bars[0].width <= f64::from(PLOT_WIDTH) + 1e-6);
        assert!(
            slow.total_label.contains("off the scale"),
            "{}",
            slow.total_label
        );
    }
}

/// Participants' work on the dashboard: what each VM's agent collected.
#[derive(Debug, Clone, Serialize, Default)]
pub struct WorkView {
    /// The collect patterns, comma-separated (empty: collection is off).
    pub patterns: String,
    pub vms: Vec<CollectedRow>,
    pub files: usize,
    pub bytes: u64,
    /// Why the figures are missing, when the store could not be read.
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectedRow {
    pub hostname: String,
    pub email: Option<String>,
    pub files: usize,
    pub bytes: u64,
    pub last_sync: String,
    pub missed_final_sync: bool,
    pub refused: usize,
}

impl WorkView {
    pub fn new(
        patterns: String,
        collected: &[shared::usecases::collect::CollectedVm],
        now: shared::domain::Millis,
    ) -> Self {
        let vms: Vec<CollectedRow> = collected
            .iter()
            .map(|v| CollectedRow {
                hostname: v.manifest.hostname.clone(),
                email: v.manifest.email.clone(),
                files: v.stored.len(),
                bytes: v.bytes(),
                last_sync: v
                    .manifest
                    .last_sync_at
                    .map(|t| format!("{} ago", human_duration((now - t).max(0) / 1000)))
                    .unwrap_or_else(|| "never".into()),
                missed_final_sync: v.manifest.missed_final_sync.is_some(),
                refused: v.manifest.refused.len(),
            })
            .collect();
        WorkView {
            patterns,
            files: vms.iter().map(|v| v.files).sum(),
            bytes: vms.iter().map(|v| v.bytes).sum(),
            vms,
            unavailable: None,
        }
    }

    pub fn size(bytes: &u64) -> String {
        human_bytes(*bytes)
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The dashboard's cost card.
#[derive(Debug, Clone)]
pub struct CostsView {
    pub per_hour_now: String,
    pub unpriced_running: usize,
    pub today: String,
    pub fleet: String,
    pub fleet_month: String,
    /// The fleet budget, if there is one.
    pub fleet_budget: Option<FleetBudgetView>,
    pub idle: Vec<IdleView>,
    pub idle_per_hour: String,
    pub idle_after_minutes: u64,
    pub over_budget: Vec<OverBudgetView>,
    /// The figures could not be read (the fleet still shows).
    pub unavailable: bool,
}

#[derive(Debug, Clone)]
pub struct FleetBudgetView {
    pub budget: String,
    /// What counts against it: each workshop VM this month for at least its first hour.
    pub counted: String,
    /// How many more VMs a launch could start; `None` without a price for the VM type.
    pub room_for: Option<u64>,
    /// The VM type, when it has no known price (every launch is refused then).
    pub unpriced_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IdleView {
    pub hostname: String,
    pub minutes: i64,
    pub unclaimed: bool,
    pub price: String,
    pub spent: String,
}

#[derive(Debug, Clone)]
pub struct OverBudgetView {
    pub user_id: String,
    pub budget: String,
    pub month: String,
    pub running: usize,
}

fn usd(v: f64) -> String {
    format!("${v:.2}")
}

/// "$0.53/h"; "unknown" without a price.
fn usd_per_hour(price: Option<f64>) -> String {
    price.map_or_else(|| "unknown".into(), |p| format!("{}/h", usd(p)))
}

impl CostsView {
    pub fn new(c: &shared::usecases::costs::FleetCosts) -> Self {
        CostsView {
            per_hour_now: usd(c.per_hour_now),
            unpriced_running: c.unpriced_running,
            today: usd(c.today_usd),
            fleet: usd(c.fleet_usd),
            fleet_month: usd(c.fleet_month_usd),
            fleet_budget: c.fleet_budget.as_ref().map(|b| FleetBudgetView {
                budget: usd(b.budget_usd),
                counted: usd(b.counted_usd),
                room_for: b.room_for(),
                unpriced_type: b.first_hour_usd.is_none().then(|| b.instance_type.clone()),
            }),
            idle: c
                .idle
                .iter()
                .map(|i| IdleView {
                    hostname: i.hostname.clone(),
                    minutes: i.idle_minutes,
                    unclaimed: i.unclaimed,
                    price: usd_per_hour(i.cost.price_per_hour),
                    spent: usd(i.cost.cost_so_far),
                })
                .collect(),
            idle_per_hour: usd(c.idle_per_hour),
            idle_after_minutes: c.idle_after_minutes,
            over_budget: c
                .over_budget
                .iter()
                .map(|o| OverBudgetView {
                    user_id: o.user_id.clone(),
                    budget: usd(o.budget_usd),
                    month: usd(o.month_usd),
                    running: o.running,
                })
                .collect(),
            unavailable: false,
        }
    }

    pub fn unavailable() -> Self {
        CostsView {
            per_hour_now: "?".into(),
            unpriced_running: 0,
            today: "?".into(),
            fleet: "?".into(),
            fleet_month: "?".into(),
            fleet_budget: None,
            idle: Vec::new(),
            idle_per_hour: "?".into(),
            idle_after_minutes: 0,
            over_budget: Vec::new(),
            unavailable: true,
        }
    }
}
