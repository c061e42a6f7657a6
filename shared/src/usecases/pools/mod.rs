//! Capacity pools over the fleet: hosts are the fleet's machines (a GPU type and capacity
//! from their instance type), allocations are what runs on them (a claimed seat, a
//! provisioning request's lease), pools come from `GPUFLEET_POOLS` plus each GPU type's
//! defaults. Moving a host between pools is previewed, then executed: the store (one
//! conditional write) and the machine's `gpufleet:pool` tag, verified by reading both back.
//!
//! Inputs and answers are typed; the handlers shape them as the capacity API's JSON. Here:
//! hosts, pools and what the capacity views read; `migration` moves a host between pools,
//! `runpod` launches a machine into a host's runpod pool.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::domain::pools::{gpu_of, recommend, GpuUsage, Pool, KINDS, TAG_POOL};
use crate::domain::Vm;
use crate::error::{Error, Result};
use crate::ports::Market;
use crate::ports::{Clock, ComputeProvider, Store};
use crate::AppState;

/// What the capacity use cases use: the store (machines, their leases, recorded pools),
/// the compute provider (machine tags, launches), the time and the settings.
#[derive(Clone, Copy)]
pub struct Capacity<'a> {
    pub store: &'a dyn Store,
    pub compute: &'a dyn ComputeProvider,
    pub clock: &'a dyn Clock,
    pub config: &'a Config,
}

impl<'a> From<&'a AppState> for Capacity<'a> {
    fn from(state: &'a AppState) -> Self {
        Capacity {
            store: &*state.store,
            compute: &*state.compute,
            clock: &*state.clock,
            config: &state.config,
        }
    }
}

/// What runs on a host.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub id: String,
    pub name: String,
    pub status: String,
    pub tenant: String,
    pub created: i64,
}

impl Allocation {
    /// The allocation as `viewer` may see it: admins (`None`) and the allocation's own
    /// tenant see everything; anyone else sees only that capacity is in use.
    fn seen_by(&self, viewer: Option<&str>) -> Allocation {
        match viewer {
            Some(user) if user != self.tenant => Allocation {
                id: String::new(),
                name: "in use by another tenant".into(),
                status: self.status.clone(),
                tenant: "other".into(),
                created: self.created,
            },
            _ => self.clone(),
        }
    }
}

impl Host {
    /// The host with its allocations as `viewer` (`None`: an admin; `Some(user)`: a key
    /// holder) may see them.
    fn seen_by(mut self, viewer: Option<&str>) -> Host {
        self.allocations = self.allocations.iter().map(|a| a.seen_by(viewer)).collect();
        self
    }
}

fn seen_by(hosts: Vec<Host>, viewer: Option<&str>) -> Vec<Host> {
    hosts.into_iter().map(|h| h.seen_by(viewer)).collect()
}

/// One fleet machine as a capacity host.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub hostname: String,
    pub status: String,
    pub instance_id: Option<String>,
    pub instance_type: String,
    pub gpu_type: String,
    pub gpu_capacity: u32,
    pub pool: String,
    /// Whether the pool comes from a recorded move (else it is the default).
    pub pool_recorded: bool,
    pub allocations: Vec<Allocation>,
}

impl Host {
    pub fn gpu_used(&self) -> u32 {
        if self.allocations.is_empty() {
            0
        } else {
            self.gpu_capacity
        }
    }

    pub fn usage(&self) -> GpuUsage {
        GpuUsage {
            used: self.gpu_used(),
            capacity: self.gpu_capacity,
        }
    }
}

/// Every host of the fleet, with its pool and allocations.
pub async fn hosts(state: Capacity<'_>) -> Result<Vec<Host>> {
    let vms = state.store.list_vms().await?;
    let recorded = state.store.host_pools().await?;
    let mut requests = HashMap::new();
    let mut out = Vec::new();
    for vm in vms {
        let Some((instance_type, allocation)) = machine_of(state, &vm, &mut requests).await? else {
            continue;
        };
        let Some((gpu, capacity)) = gpu_of(&instance_type) else {
            continue;
        };
        let default_kind = match state.config.market {
            Market::Spot => "spot",
            Market::OnDemand => "ondemand",
        };
        let (pool, pool_recorded) = match recorded.get(&vm.hostname) {
            Some(p) => (p.clone(), true),
            None => (format!("{gpu}-{default_kind}"), false),
        };
        out.push(Host {
            hostname: vm.hostname.clone(),
            status: vm.status.as_str().to_string(),
            instance_id: vm.instance_id.clone(),
            instance_type,
            gpu_type: gpu.to_string(),
            gpu_capacity: capacity,
            pool,
            pool_recorded,
            allocations: allocation.into_iter().collect(),
        });
    }
    Ok(out)
}

/// A VM's instance type and what runs on it.
async fn machine_of(
    state: Capacity<'_>,
    vm: &Vm,
    requests: &mut HashMap<String, Option<crate::domain::GpuRequest>>,
) -> Result<Option<(String, Option<Allocation>)>> {
    // A retired VM holds nobody: it is a host with nothing allocated.
    let Some(assignment) = vm.assignment.as_ref().filter(|a| !a.is_retired()) else {
        return Ok(Some((state.config.instance_type.clone(), None)));
    };
    if let Some(request_id) = assignment.lease_request() {
        if !requests.contains_key(request_id) {
            let r = state.store.get_request(request_id).await?;
            requests.insert(request_id.to_string(), r);
        }
        let Some(Some(request)) = requests.get(request_id) else {
            return Ok(None);
        };
        let index: usize = assignment
            .email
            .rsplit(':')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        let plan =
            crate::domain::requests::plan_machines(request.gpu_count, &state.config.gpu_shapes)?;
        let Some(shape) = plan.get(index) else {
            return Ok(None);
        };
        return Ok(Some((
            shape.instance_type.clone(),
            Some(Allocation {
                id: request.request_id.clone(),
                name: format!("GPU request {} (machine {})", request.request_id, index + 1),
                status: request.status.as_str().to_uppercase(),
                tenant: request.user_id.clone(),
                created: assignment.assigned_at,
            }),
        )));
    }
    Ok(Some((
        state.config.instance_type.clone(),
        Some(Allocation {
            id: vm.hostname.clone(),
            name: format!("workshop seat of {}", vm.hostname),
            status: if vm.in_use { "IN_USE" } else { "ASSIGNED" }.into(),
            tenant: "workshop".into(),
            created: assignment.assigned_at,
        }),
    )))
}

/// Configured pools plus each GPU type's defaults (for types the fleet holds or the
/// configuration names).
pub fn pools(state: Capacity<'_>, hosts: &[Host]) -> Vec<Pool> {
    let mut pools = state.config.pools.clone();
    let mut types: Vec<String> = hosts.iter().map(|h| h.gpu_type.clone()).collect();
    types.extend(pools.iter().map(|p| p.gpu_type.clone()));
    types.sort();
    types.dedup();
    for t in types {
        for p in Pool::defaults_for(&t) {
            if !pools.iter().any(|q| q.name == p.name) {
                pools.push(p);
            }
        }
    }
    pools
}

/// A host as a pool lists it: with its pool's tenant and owner group.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolHost {
    pub host: Host,
    /// The tenant of its first allocation, else its pool's.
    pub tenant: Option<String>,
    pub owner_group: Option<String>,
}

impl PoolHost {
    fn of(h: &Host, pool: Option<&Pool>) -> PoolHost {
        PoolHost {
            host: h.clone(),
            tenant: h
                .allocations
                .first()
                .map(|a| a.tenant.clone())
                .or_else(|| pool.and_then(|p| p.tenant.clone())),
            owner_group: pool.and_then(|p| p.owner_group.clone()),
        }
    }
}

/// One pool of a kind, as a variant of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub host_count: usize,
    pub usage: GpuUsage,
}

/// One pool kind of a GPU type: its pools' hosts and summary, each pool as a variant.
#[derive(Debug, Clone, PartialEq)]
pub struct KindSummary {
    /// The kind's first pool.
    pub name: Option<String>,
    pub hosts: Vec<PoolHost>,
    pub usage: GpuUsage,
    pub variants: Vec<Variant>,
}

fn kind_summary(kind_pools: &[&Pool], hosts: &[Host]) -> KindSummary {
    let mut all_hosts = Vec::new();
    let mut total = GpuUsage::default();
    let mut variants = Vec::new();
    for p in kind_pools {
        let mine: Vec<&Host> = hosts.iter().filter(|h| h.pool == p.name).collect();
        let usage = mine
            .iter()
            .fold(GpuUsage::default(), |u, h| u.plus(h.usage()));
        total = total.plus(usage);
        all_hosts.extend(mine.iter().map(|h| PoolHost::of(h, Some(p))));
        variants.push(Variant {
            name: p.name.clone(),
            host_count: mine.len(),
            usage,
        });
    }
    KindSummary {
        name: kind_pools.first().map(|p| p.name.clone()),
        hosts: all_hosts,
        usage: total,
        variants,
    }
}

/// A GPU type and its pools' names by kind (every kind listed, maybe empty).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuTypePools {
    pub name: String,
    pub pools_by_kind: BTreeMap<&'static str, Vec<String>>,
}

/// `GET /api/gpu-types`.
pub async fn gpu_types(state: Capacity<'_>) -> Result<Vec<GpuTypePools>> {
    let hosts = hosts(state).await?;
    let pools = pools(state, &hosts);
    let mut by_type: BTreeMap<String, BTreeMap<&'static str, Vec<String>>> = BTreeMap::new();
    for p in &pools {
        let kinds = by_type.entry(p.gpu_type.clone()).or_default();
        for k in KINDS {
            kinds.entry(k).or_default();
        }
        if let Some(names) = kinds.get_mut(p.kind.as_str()) {
            names.push(p.name.clone());
        }
    }
    Ok(by_type
        .into_iter()
        .map(|(name, pools_by_kind)| GpuTypePools {
            name,
            pools_by_kind,
        })
        .collect())
}

fn known_type(pools: &[Pool], gpu_type: &str) -> Result<()> {
    if pools.iter().any(|p| p.gpu_type == gpu_type) {
        Ok(())
    } else {
        Err(Error::NotFound(format!("GPU type {gpu_type}")))
    }
}

/// A GPU type's pools: one kind, or every kind with the overview.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregates {
    Kind(KindSummary),
    All {
        kinds: Vec<(&'static str, KindSummary)>,
        overview: GpuUsage,
    },
}

/// `GET /api/aggregates/{gpu_type}[/{kind}]`.
pub async fn aggregates(
    state: Capacity<'_>,
    gpu_type: &str,
    kind: Option<&str>,
    viewer: Option<&str>,
) -> Result<Aggregates> {
    let hosts = seen_by(hosts(state).await?, viewer);
    let pools = pools(state, &hosts);
    known_type(&pools, gpu_type)?;
    let of_kind = |k: &str| -> Vec<&Pool> {
        pools
            .iter()
            .filter(|p| p.gpu_type == gpu_type && p.kind == k)
            .collect()
    };
    if let Some(k) = kind {
        if !KINDS.contains(&k) {
            return Err(Error::NotFound(format!("aggregate type {k}")));
        }
        return Ok(Aggregates::Kind(kind_summary(&of_kind(k), &hosts)));
    }
    let mut kinds = Vec::new();
    let mut overview = GpuUsage::default();
    for k in KINDS {
        let pools_k = of_kind(k);
        for h in hosts
            .iter()
            .filter(|h| pools_k.iter().any(|p| p.name == h.pool))
        {
            overview = overview.plus(h.usage());
        }
        kinds.push((k, kind_summary(&pools_k, &hosts)));
    }
    Ok(Aggregates::All { kinds, overview })
}

/// A contract pool with its hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractPool {
    pub pool: Pool,
    pub hosts: Vec<PoolHost>,
    pub usage: GpuUsage,
}

/// `GET /api/contract-aggregates/{gpu_type}`.
pub async fn contract_aggregates(
    state: Capacity<'_>,
    gpu_type: &str,
    viewer: Option<&str>,
) -> Result<Vec<ContractPool>> {
    let hosts = seen_by(hosts(state).await?, viewer);
    let pools = pools(state, &hosts);
    known_type(&pools, gpu_type)?;
    Ok(pools
        .iter()
        .filter(|p| p.gpu_type == gpu_type && p.kind == "contracts")
        .map(|p| {
            let mine: Vec<&Host> = hosts.iter().filter(|h| h.pool == p.name).collect();
            let usage = mine
                .iter()
                .fold(GpuUsage::default(), |u, h| u.plus(h.usage()));
            ContractPool {
                pool: p.clone(),
                hosts: mine.iter().map(|h| PoolHost::of(h, Some(p))).collect(),
                usage,
            }
        })
        .collect())
}

async fn host(state: Capacity<'_>, hostname: &str) -> Result<(Host, Vec<Pool>)> {
    let hosts = hosts(state).await?;
    let pools = pools(state, &hosts);
    let host = hosts
        .into_iter()
        .find(|h| h.hostname == hostname)
        .ok_or_else(|| Error::NotFound(format!("host {hostname}")))?;
    Ok((host, pools))
}

/// `GET /api/host-vms/{hostname}`: the host with its allocations as `viewer` may see them.
pub async fn host_vms(state: Capacity<'_>, hostname: &str, viewer: Option<&str>) -> Result<Host> {
    Ok(host(state, hostname).await?.0.seen_by(viewer))
}

mod migration;
mod runpod;

pub use migration::*;
pub use runpod::*;
