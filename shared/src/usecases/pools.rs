//! Capacity pools over the fleet: hosts are the fleet's machines (a GPU type and capacity
//! from their instance type), allocations are what runs on them (a claimed seat, a
//! provisioning request's lease), pools come from `GPUFLEET_POOLS` plus each GPU type's
//! defaults. Moving a host between pools is previewed, then executed: the store (one
//! conditional write) and the machine's `gpufleet:pool` tag, verified by reading both back.
//!
//! Length: the capacity API's answers are still assembled here as JSON values (hosts, pools,
//! plans), which is most of it; typing them would move that shaping to the handlers.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::{json, Value};

use crate::domain::pools::{gpu_of, recommend, GpuUsage, Pool, KINDS, TAG_POOL};
use crate::domain::{rfc3339, Vm};
use crate::error::{Error, Result};
use crate::ports::Market;
use crate::AppState;

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
pub async fn hosts(state: &AppState) -> Result<Vec<Host>> {
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
    state: &AppState,
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
pub fn pools(state: &AppState, hosts: &[Host]) -> Vec<Pool> {
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

fn host_json(h: &Host, pool: Option<&Pool>) -> Value {
    json!({
        "hostname": h.hostname,
        "status": h.status,
        "instance_id": h.instance_id,
        "instance_type": h.instance_type,
        "vm_count": h.allocations.len(),
        "gpu_used": h.gpu_used(),
        "gpu_capacity": h.gpu_capacity,
        "has_vms": !h.allocations.is_empty(),
        "tenant": h.allocations.first().map(|a| a.tenant.clone()).or_else(|| pool.and_then(|p| p.tenant.clone())),
        "owner_group": pool.and_then(|p| p.owner_group.clone()),
    })
}

/// One pool kind of a GPU type: its pools' hosts and summary, each pool as a variant.
fn kind_json(kind_pools: &[&Pool], hosts: &[Host]) -> Value {
    let mut all_hosts = Vec::new();
    let mut total = GpuUsage::default();
    let mut variants = Vec::new();
    for p in kind_pools {
        let mine: Vec<&Host> = hosts.iter().filter(|h| h.pool == p.name).collect();
        let usage = mine
            .iter()
            .fold(GpuUsage::default(), |u, h| u.plus(h.usage()));
        total = total.plus(usage);
        all_hosts.extend(mine.iter().map(|h| host_json(h, Some(p))));
        variants.push(
            json!({"name": p.name, "host_count": mine.len(), "gpu_summary": usage.to_json()}),
        );
    }
    json!({
        "name": kind_pools.first().map(|p| p.name.clone()),
        "hosts": all_hosts,
        "gpu_summary": total.to_json(),
        "variants": variants,
    })
}

/// `GET /api/gpu-types`.
pub async fn gpu_types(state: &AppState) -> Result<Value> {
    let hosts = hosts(state).await?;
    let pools = pools(state, &hosts);
    let mut by_type: BTreeMap<String, BTreeMap<&str, Vec<String>>> = BTreeMap::new();
    for p in &pools {
        let kinds = by_type.entry(p.gpu_type.clone()).or_default();
        for k in KINDS {
            kinds.entry(k).or_default();
        }
        if let Some(names) = kinds.get_mut(p.kind.as_str()) {
            names.push(p.name.clone());
        }
    }
    Ok(json!(by_type
        .into_iter()
        .map(|(t, kinds)| json!({"name": t, "display_name": t, "aggregates": kinds}))
        .collect::<Vec<_>>()))
}

fn known_type(pools: &[Pool], gpu_type: &str) -> Result<()> {
    if pools.iter().any(|p| p.gpu_type == gpu_type) {
        Ok(())
    } else {
        Err(Error::NotFound(format!("GPU type {gpu_type}")))
    }
}

/// `GET /api/aggregates/{gpu_type}[/{kind}]`.
pub async fn aggregates(
    state: &AppState,
    gpu_type: &str,
    kind: Option<&str>,
    viewer: Option<&str>,
) -> Result<Value> {
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
        return Ok(kind_json(&of_kind(k), &hosts));
    }
    let mut out = serde_json::Map::new();
    let mut overview = GpuUsage::default();
    for k in KINDS {
        let pools_k = of_kind(k);
        for h in hosts
            .iter()
            .filter(|h| pools_k.iter().any(|p| p.name == h.pool))
        {
            overview = overview.plus(h.usage());
        }
        out.insert(k.to_string(), kind_json(&pools_k, &hosts));
    }
    out.insert(
        "gpu_overview".into(),
        json!({
            "gpu_used": overview.used,
            "gpu_capacity": overview.capacity,
            "gpu_usage_ratio": format!("{}/{}", overview.used, overview.capacity),
            "gpu_usage_percentage": overview.percentage(),
        }),
    );
    Ok(Value::Object(out))
}

/// `GET /api/contract-aggregates/{gpu_type}`.
pub async fn contract_aggregates(
    state: &AppState,
    gpu_type: &str,
    viewer: Option<&str>,
) -> Result<Value> {
    let hosts = seen_by(hosts(state).await?, viewer);
    let pools = pools(state, &hosts);
    known_type(&pools, gpu_type)?;
    Ok(json!(pools
        .iter()
        .filter(|p| p.gpu_type == gpu_type && p.kind == "contracts")
        .map(|p| {
            let mine: Vec<&Host> = hosts.iter().filter(|h| h.pool == p.name).collect();
            let usage = mine
                .iter()
                .fold(GpuUsage::default(), |u, h| u.plus(h.usage()));
            json!({
                "aggregate": p.name,
                "hosts": mine.iter().map(|h| host_json(h, Some(p))).collect::<Vec<_>>(),
                "gpu_summary": usage.to_json(),
                "tenant_info": {"primary_tenant": p.tenant, "owner_group": p.owner_group},
            })
        })
        .collect::<Vec<_>>()))
}

async fn host(state: &AppState, hostname: &str) -> Result<(Host, Vec<Pool>)> {
    let hosts = hosts(state).await?;
    let pools = pools(state, &hosts);
    let host = hosts
        .into_iter()
        .find(|h| h.hostname == hostname)
        .ok_or_else(|| Error::NotFound(format!("host {hostname}")))?;
    Ok((host, pools))
}

/// `GET /api/host-vms/{hostname}`.
pub async fn host_vms(state: &AppState, hostname: &str, viewer: Option<&str>) -> Result<Value> {
    let host = host(state, hostname).await?.0.seen_by(viewer);
    Ok(json!({
        "hostname": host.hostname,
        "vms": host.allocations.iter().map(|a| json!({
            "id": a.id, "name": a.name, "status": a.status, "flavor": host.instance_type,
            "tenant": a.tenant, "created": rfc3339(a.created),
        })).collect::<Vec<_>>(),
        "total_vms": host.allocations.len(),
    }))
}

/// A requested move, validated against the fleet.
pub struct Plan {
    pub host: Host,
    pub source: Pool,
    pub target: Pool,
    pub commands: Vec<String>,
    pub validation: Value,
    pub ok: bool,
}

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str> {
    body.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::validation(format!("{name} is required")))
}

/// What a migration would do, and whether it may.
pub async fn plan(state: &AppState, body: &Value) -> Result<Plan> {
    let hostname = field(body, "host")?;
    let source = field(body, "source_aggregate")?;
    let target = field(body, "target_aggregate")?;
    let (host, pools) = host(state, hostname).await?;
    let find = |name: &str| pools.iter().find(|p| p.name == name).cloned();
    let source_pool = find(source).ok_or_else(|| Error::NotFound(format!("aggregate {source}")))?;
    let target_pool = find(target).ok_or_else(|| Error::NotFound(format!("aggregate {target}")))?;
    let host_in_source = host.pool == source_pool.name;
    let gpu_type_matches =
        source_pool.gpu_type == host.gpu_type && target_pool.gpu_type == host.gpu_type;
    let has_live = !host.allocations.is_empty();
    let mut commands = Vec::new();
    match (&host.instance_id, state.compute.tags().is_some()) {
        (Some(id), true) => commands.push(format!(
            "aws ec2 create-tags --resources {id} --tags Key={TAG_POOL},Value={target}"
        )),
        _ => commands.push(format!(
            "record {hostname} in {target} (no cloud tag: local machine)"
        )),
    }
    let validation = json!({
        "source_exists": true,
        "target_exists": true,
        "host_in_source": host_in_source,
        "gpu_type_matches": gpu_type_matches,
        "different_pools": source != target,
        "has_live_allocations": has_live,
        "live_allocations": host.allocations.len(),
    });
    Ok(Plan {
        ok: host_in_source && gpu_type_matches && source != target,
        host,
        source: source_pool,
        target: target_pool,
        commands,
        validation,
    })
}

/// `POST /api/execute-migration`: moves the host (store, then tag) and verifies both.
/// Refused with live allocations unless `force` (admins only).
pub async fn execute(state: &AppState, body: &Value, is_admin: bool) -> Result<Value> {
    let force = body.get("force").and_then(Value::as_bool).unwrap_or(false);
    if force && !is_admin {
        return Err(Error::Forbidden(
            "only an admin may force a migration".into(),
        ));
    }
    let plan = plan(state, body).await?;
    if !plan.ok {
        return Err(Error::validation(format!(
            "migration refused: {}",
            plan.validation
        )));
    }
    if !plan.host.allocations.is_empty() && !force {
        return Err(Error::Conflict(format!(
            "host {} has {} live allocation(s); end them first or, as an admin, send force: true",
            plan.host.hostname,
            plan.host.allocations.len()
        )));
    }
    let started = Instant::now();
    let hostname = plan.host.hostname.clone();
    let from = plan.host.pool_recorded.then(|| plan.source.name.clone());
    let now = state.clock.now_millis();
    state
        .store
        .move_host(&hostname, from.as_deref(), &plan.target.name, now)
        .await?;
    let mut executed = Vec::new();
    if let (Some(id), Some(tags)) = (&plan.host.instance_id, state.compute.tags()) {
        if let Err(e) = tags.set_tag(id, TAG_POOL, &plan.target.name).await {
            tracing::error!(host = %hostname, error = ?e, "pool tag not set after the store moved");
            // Said to the caller (an internal error would show only an id): the state left.
            return Err(Error::Unavailable(format!(
                "partial migration: {hostname} is recorded in {} but its EC2 tag still names {}; move it back to {} to repair",
                plan.target.name, plan.source.name, plan.source.name
            )));
        }
    }
    executed.extend(plan.commands.iter().cloned());
    // Verify: read both back.
    let recorded = state.store.host_pools().await?.get(&hostname).cloned();
    let tag = match (&plan.host.instance_id, state.compute.tags()) {
        (Some(id), Some(tags)) => tags.get_tag(id, TAG_POOL).await?,
        _ => recorded.clone(),
    };
    let verified = recorded.as_deref() == Some(plan.target.name.as_str())
        && tag.as_deref() == Some(plan.target.name.as_str());
    if !verified {
        return Err(Error::Unavailable(format!(
            "migration of {hostname} not verified: the store says {}, the EC2 tag says {}",
            recorded.as_deref().unwrap_or("nothing"),
            tag.as_deref().unwrap_or("nothing")
        )));
    }
    Ok(json!({
        "host": hostname,
        "source_aggregate": plan.source.name,
        "target_aggregate": plan.target.name,
        "commands_executed": executed,
        "execution_time": format!("{:.1}s", started.elapsed().as_secs_f64()),
        "verified": {"store": recorded, "tag": tag},
        "forced": force,
    }))
}

/// `POST /api/get-target-aggregate`.
pub async fn target(state: &AppState, body: &Value) -> Result<Value> {
    let hostname = field(body, "hostname")?;
    let gpu_type = field(body, "gpu_type")?;
    let (host, pools) = host(state, hostname).await?;
    if host.gpu_type != gpu_type {
        return Err(Error::validation(format!(
            "host {hostname} has {} GPUs, not {gpu_type}",
            host.gpu_type
        )));
    }
    let current = pools
        .iter()
        .find(|p| p.name == host.pool)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("aggregate {}", host.pool)))?;
    let (recommended, reasoning) = recommend(&current, !host.allocations.is_empty(), &pools);
    Ok(json!({
        "hostname": hostname,
        "current_aggregate": current.name,
        "recommended_aggregate": recommended,
        "reasoning": reasoning,
    }))
}

/// A launch onto a host's runpod pool: an added machine of the host's instance type with the
/// given image.
pub struct RunpodPlan {
    pub host: Host,
    pub pool: String,
    pub image_id: String,
    pub image_name: String,
    /// The equivalent command; the machine's agent token (minted at launch) appears as
    /// `****` in both forms, so a preview never carries a secret.
    pub command: String,
}

pub async fn runpod_plan(state: &AppState, body: &Value) -> Result<RunpodPlan> {
    let hostname = field(body, "hostname")?;
    let image_id = field(body, "image_id")?;
    let image_name = field(body, "image_name")?;
    let id_ok = image_id.len() <= 32
        && image_id
            .strip_prefix("ami-")
            .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if !id_ok {
        return Err(Error::validation(
            "image_id must be an AMI id such as ami-0123abcd",
        ));
    }
    if image_name.chars().count() > 128 || image_name.chars().any(char::is_control) {
        return Err(Error::validation(
            "image_name must be at most 128 characters",
        ));
    }
    let (host, pools) = host(state, hostname).await?;
    let pool = pools
        .iter()
        .find(|p| p.gpu_type == host.gpu_type && p.kind == "runpod")
        .map(|p| p.name.clone())
        .unwrap_or_else(|| format!("{}-runpod", host.gpu_type));
    let command = format!(
        "aws ec2 run-instances --image-id {image_id} --instance-type {} --count 1 --metadata-options HttpTokens=required --tag-specifications 'ResourceType=instance,Tags=[{{Key=gpufleet:deployment,Value={}}},{{Key={TAG_POOL},Value={pool}}}]' --user-data <gpufleet bootstrap: GPUFLEET_AGENT_TOKEN=****>",
        host.instance_type, state.config.deployment
    );
    Ok(RunpodPlan {
        host,
        pool,
        image_id: image_id.to_string(),
        image_name: image_name.to_string(),
        command,
    })
}

/// `POST /api/execute-runpod-launch`: records a new fleet VM in the host's runpod pool (the
/// record first, as every launch), launches it with the image, tags its pool.
pub async fn runpod_launch(state: &AppState, body: &Value) -> Result<Value> {
    use crate::domain::{TokenHash, VmChange, VmToken};
    use crate::ports::{LaunchError, LaunchSpec};
    let plan = runpod_plan(state, body).await?;
    let api_url = state
        .config
        .api_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("GPUFLEET_API_URL is not configured"))?;
    let now = state.clock.now_millis();
    let hostname = super::admin::new_hostname(&state.config.vm_prefix);
    let token = VmToken::generate();
    state
        .store
        .insert_vm(&Vm::new(
            hostname.clone(),
            TokenHash::of(token.as_str()),
            now,
        ))
        .await?;
    state
        .store
        .move_host(&hostname, None, &plan.pool, now)
        .await?;
    let spec = LaunchSpec {
        hostname: hostname.clone(),
        token,
        allocator_url: api_url,
        operation_id: format!("runpod-{}", plan.host.hostname),
        client_token: super::provisioning::client_token(
            &format!("runpod-{}", plan.host.hostname),
            &hostname,
            Market::OnDemand,
        ),
        market: Market::OnDemand,
        instance_type: Some(plan.host.instance_type.clone()),
        lease: None,
        image: Some(plan.image_id.clone()),
        pool: Some(plan.pool.clone()),
    };
    let instance_id = match state.compute.launch(&spec).await {
        Ok(id) => id,
        Err(LaunchError::Other(e)) => return Err(e),
        Err(e) => {
            let reason = format!("launch refused: {e}");
            state
                .store
                .update_vm(
                    &hostname,
                    &VmChange::Failed(reason.clone()),
                    state.clock.now_millis(),
                )
                .await?;
            return Err(match e {
                LaunchError::Rejected(_) => Error::validation(reason),
                _ => Error::Unavailable(reason),
            });
        }
    };
    state
        .store
        .update_vm(
            &hostname,
            &VmChange::InstanceId(instance_id.clone()),
            state.clock.now_millis(),
        )
        .await?;
    if let Some(tags) = state.compute.tags() {
        tags.set_tag(&instance_id, TAG_POOL, &plan.pool).await?;
    }
    Ok(json!({
        "vm_id": hostname,
        "instance_id": instance_id,
        "hostname": plan.host.hostname,
        "image_id": plan.image_id,
        "image_name": plan.image_name,
        "status": "BUILDING",
        "flavor": plan.host.instance_type,
        "aggregate": plan.pool,
    }))
}
