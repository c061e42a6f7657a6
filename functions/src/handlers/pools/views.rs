//! The capacity API's JSON for the pools use case's typed answers (the `data` of the
//! capacity envelope).

use std::collections::BTreeMap;

use serde::Serialize;
use shared::domain::pools::GpuUsage;
use shared::domain::rfc3339;
use shared::usecases::pools::{
    Aggregates, ContractPool, GpuTypePools, Host, KindSummary, Migrated, Plan, PoolHost,
    Recommendation, RunpodLaunched, RunpodPlan,
};
use utoipa::ToSchema;

/// GPUs in use against capacity.
#[derive(Serialize, ToSchema)]
pub struct GpuUsageSummary {
    pub gpu_used: u32,
    pub gpu_capacity: u32,
    /// `used/capacity`, e.g. `6/8`.
    pub gpu_usage_ratio: String,
    /// Percentage with two decimals (0 for no capacity).
    pub gpu_usage_percentage: f64,
}

impl GpuUsageSummary {
    pub fn new(u: GpuUsage) -> Self {
        GpuUsageSummary {
            gpu_used: u.used,
            gpu_capacity: u.capacity,
            gpu_usage_ratio: u.ratio(),
            gpu_usage_percentage: u.percentage(),
        }
    }
}

/// A host as a pool lists it.
#[derive(Serialize, ToSchema)]
pub struct PoolHostView {
    pub hostname: String,
    pub status: String,
    pub instance_id: Option<String>,
    /// The EC2 instance type (its GPU model and count give the capacity).
    pub instance_type: String,
    pub vm_count: usize,
    pub gpu_used: u32,
    pub gpu_capacity: u32,
    pub has_vms: bool,
    /// The tenant of its first allocation (`other` for another key holder's), else its
    /// pool's.
    pub tenant: Option<String>,
    pub owner_group: Option<String>,
}

impl PoolHostView {
    fn new(p: &PoolHost) -> Self {
        let h = &p.host;
        PoolHostView {
            hostname: h.hostname.clone(),
            status: h.status.clone(),
            instance_id: h.instance_id.clone(),
            instance_type: h.instance_type.clone(),
            vm_count: h.allocations.len(),
            gpu_used: h.gpu_used(),
            gpu_capacity: h.gpu_capacity,
            has_vms: !h.allocations.is_empty(),
            tenant: p.tenant.clone(),
            owner_group: p.owner_group.clone(),
        }
    }
}

/// One pool of a kind.
#[derive(Serialize, ToSchema)]
pub struct PoolVariantView {
    pub name: String,
    pub host_count: usize,
    pub gpu_summary: GpuUsageSummary,
}

/// One pool kind of a GPU type: its pools' hosts and summary, each pool as a variant.
#[derive(Serialize, ToSchema)]
pub struct PoolKindView {
    /// The kind's first pool (null when the GPU type has no pool of this kind).
    pub name: Option<String>,
    pub hosts: Vec<PoolHostView>,
    pub gpu_summary: GpuUsageSummary,
    pub variants: Vec<PoolVariantView>,
}

impl PoolKindView {
    fn new(k: &KindSummary) -> Self {
        PoolKindView {
            name: k.name.clone(),
            hosts: k.hosts.iter().map(PoolHostView::new).collect(),
            gpu_summary: GpuUsageSummary::new(k.usage),
            variants: k
                .variants
                .iter()
                .map(|v| PoolVariantView {
                    name: v.name.clone(),
                    host_count: v.host_count,
                    gpu_summary: GpuUsageSummary::new(v.usage),
                })
                .collect(),
        }
    }
}

/// Every pool kind of a GPU type by name (`ondemand`, `spot`, `contracts`, `runpod`), with
/// the overview of them all.
#[derive(Serialize, ToSchema)]
pub struct AllPoolKindsView {
    /// Each kind's pools, under the kind's name.
    #[serde(flatten)]
    pub kinds: BTreeMap<String, PoolKindView>,
    pub gpu_overview: GpuUsageSummary,
}

/// One kind (`/api/aggregates/{gpu_type}/{aggregate_type}`) or every kind with the overview
/// (`/api/aggregates/{gpu_type}`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum AggregatesView {
    Kind(PoolKindView),
    All(AllPoolKindsView),
}

impl AggregatesView {
    pub fn new(a: &Aggregates) -> Self {
        match a {
            Aggregates::Kind(k) => AggregatesView::Kind(PoolKindView::new(k)),
            Aggregates::All { kinds, overview } => AggregatesView::All(AllPoolKindsView {
                kinds: kinds
                    .iter()
                    .map(|(name, k)| (name.to_string(), PoolKindView::new(k)))
                    .collect(),
                gpu_overview: GpuUsageSummary::new(*overview),
            }),
        }
    }
}

/// A GPU type and its pools' names by kind (every kind listed, maybe empty).
#[derive(Serialize, ToSchema)]
pub struct GpuTypeView {
    pub name: String,
    pub display_name: String,
    /// Pool names by kind (`ondemand`, `spot`, `contracts`, `runpod`).
    pub aggregates: BTreeMap<String, Vec<String>>,
}

pub fn gpu_types(types: &[GpuTypePools]) -> Vec<GpuTypeView> {
    types
        .iter()
        .map(|t| GpuTypeView {
            name: t.name.clone(),
            display_name: t.name.clone(),
            aggregates: t
                .pools_by_kind
                .iter()
                .map(|(kind, names)| (kind.to_string(), names.clone()))
                .collect(),
        })
        .collect()
}

/// Whom a contract pool is reserved for.
#[derive(Serialize, ToSchema)]
pub struct ContractTenantInfo {
    pub primary_tenant: Option<String>,
    pub owner_group: Option<String>,
}

/// A contract pool with its hosts.
#[derive(Serialize, ToSchema)]
pub struct ContractPoolView {
    /// The pool's name.
    pub aggregate: String,
    pub hosts: Vec<PoolHostView>,
    pub gpu_summary: GpuUsageSummary,
    pub tenant_info: ContractTenantInfo,
}

pub fn contract_aggregates(pools: &[ContractPool]) -> Vec<ContractPoolView> {
    pools
        .iter()
        .map(|c| ContractPoolView {
            aggregate: c.pool.name.clone(),
            hosts: c.hosts.iter().map(PoolHostView::new).collect(),
            gpu_summary: GpuUsageSummary::new(c.usage),
            tenant_info: ContractTenantInfo {
                primary_tenant: c.pool.tenant.clone(),
                owner_group: c.pool.owner_group.clone(),
            },
        })
        .collect()
}

/// What runs on a host: a claimed seat or a GPU request's lease.
#[derive(Serialize, ToSchema)]
pub struct HostAllocationView {
    /// Empty for another key holder's allocation.
    pub id: String,
    pub name: String,
    pub status: String,
    /// The host's instance type.
    pub flavor: String,
    /// `workshop`, the key holder's user id, or `other` for another key holder's.
    pub tenant: String,
    /// RFC 3339.
    pub created: String,
}

/// A host with what runs on it.
#[derive(Serialize, ToSchema)]
pub struct HostVmsView {
    pub hostname: String,
    pub vms: Vec<HostAllocationView>,
    pub total_vms: usize,
}

impl HostVmsView {
    pub fn new(host: &Host) -> Self {
        HostVmsView {
            hostname: host.hostname.clone(),
            vms: host
                .allocations
                .iter()
                .map(|a| HostAllocationView {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    status: a.status.clone(),
                    flavor: host.instance_type.clone(),
                    tenant: a.tenant.clone(),
                    created: rfc3339(a.created),
                })
                .collect(),
            total_vms: host.allocations.len(),
        }
    }
}

/// What a migration is checked against.
#[derive(Serialize, ToSchema)]
pub struct MigrationValidation {
    /// Always true (an unknown pool is a 404).
    pub source_exists: bool,
    /// Always true (an unknown pool is a 404).
    pub target_exists: bool,
    pub host_in_source: bool,
    pub gpu_type_matches: bool,
    pub different_pools: bool,
    pub has_live_allocations: bool,
    pub live_allocations: usize,
}

/// What a migration would run, and whether it may.
#[derive(Serialize, ToSchema)]
pub struct MigrationPreview {
    /// The commands execute would run (CLI equivalents).
    pub commands: Vec<String>,
    pub validation: MigrationValidation,
    /// Whether execute would move the host (live allocations aside: those need `force`).
    pub allowed: bool,
}

impl MigrationPreview {
    pub fn new(plan: &Plan) -> Self {
        let c = plan.checks;
        MigrationPreview {
            commands: plan.commands.clone(),
            validation: MigrationValidation {
                source_exists: true,
                target_exists: true,
                host_in_source: c.host_in_source,
                gpu_type_matches: c.gpu_type_matches,
                different_pools: c.different_pools,
                has_live_allocations: c.live_allocations > 0,
                live_allocations: c.live_allocations,
            },
            allowed: plan.ok,
        }
    }
}

/// The pool as read back after the move.
#[derive(Serialize, ToSchema)]
pub struct MigrationVerified {
    /// As the store records it.
    pub store: Option<String>,
    /// As the machine's `gpufleet:pool` tag says (the store's for a local machine).
    pub tag: Option<String>,
}

/// A migration done and verified.
#[derive(Serialize, ToSchema)]
pub struct MigratedView {
    pub host: String,
    pub source_aggregate: String,
    pub target_aggregate: String,
    pub commands_executed: Vec<String>,
    /// Seconds with one decimal, e.g. `0.3s`.
    pub execution_time: String,
    pub verified: MigrationVerified,
    pub forced: bool,
}

impl MigratedView {
    pub fn new(m: &Migrated) -> Self {
        MigratedView {
            host: m.host.clone(),
            source_aggregate: m.source_pool.clone(),
            target_aggregate: m.target_pool.clone(),
            commands_executed: m.commands_executed.clone(),
            execution_time: format!("{:.1}s", m.took.as_secs_f64()),
            verified: MigrationVerified {
                store: m.store_says.clone(),
                tag: m.tag_says.clone(),
            },
            forced: m.forced,
        }
    }
}

/// The pool a host should be in, and why.
#[derive(Serialize, ToSchema)]
pub struct TargetAggregateView {
    pub hostname: String,
    pub current_aggregate: String,
    pub recommended_aggregate: String,
    pub reasoning: String,
}

impl TargetAggregateView {
    pub fn new(r: &Recommendation) -> Self {
        TargetAggregateView {
            hostname: r.hostname.clone(),
            current_aggregate: r.current_pool.clone(),
            recommended_aggregate: r.recommended_pool.clone(),
            reasoning: r.reasoning.clone(),
        }
    }
}

/// What a runpod launch takes.
#[derive(Serialize, ToSchema)]
pub struct RunpodEstimatedResources {
    /// The host's instance type.
    pub flavor: String,
    pub gpu_count: u32,
    pub gpu_type: String,
    /// The runpod pool the machine joins.
    pub aggregate: String,
}

/// The launch execute would run.
#[derive(Serialize, ToSchema)]
pub struct RunpodPreview {
    /// The equivalent command; the agent token appears as `****`.
    pub command: String,
    /// The same command (it never carries a secret).
    pub masked_command: String,
    pub estimated_resources: RunpodEstimatedResources,
}

impl RunpodPreview {
    pub fn new(plan: &RunpodPlan) -> Self {
        RunpodPreview {
            command: plan.command.clone(),
            masked_command: plan.command.clone(),
            estimated_resources: RunpodEstimatedResources {
                flavor: plan.host.instance_type.clone(),
                gpu_count: plan.host.gpu_capacity,
                gpu_type: plan.host.gpu_type.clone(),
                aggregate: plan.pool.clone(),
            },
        }
    }
}

/// A runpod launch under way.
#[derive(Serialize, ToSchema)]
pub struct RunpodLaunchedView {
    /// The new fleet VM's hostname.
    pub vm_id: String,
    pub instance_id: String,
    /// The host whose instance type was launched.
    pub hostname: String,
    pub image_id: String,
    pub image_name: String,
    /// Always `BUILDING`.
    pub status: String,
    pub flavor: String,
    pub aggregate: String,
}

impl RunpodLaunchedView {
    pub fn new(l: &RunpodLaunched) -> Self {
        RunpodLaunchedView {
            vm_id: l.vm_id.clone(),
            instance_id: l.instance_id.clone(),
            hostname: l.plan.host.hostname.clone(),
            image_id: l.plan.image_id.clone(),
            image_name: l.plan.image_name.clone(),
            status: "BUILDING".into(),
            flavor: l.plan.host.instance_type.clone(),
            aggregate: l.plan.pool.clone(),
        }
    }
}
