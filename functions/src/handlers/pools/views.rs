//! The capacity API's JSON for the pools use case's typed answers.

use serde_json::{json, Value};
use shared::domain::pools::GpuUsage;
use shared::domain::rfc3339;
use shared::usecases::pools::{
    Aggregates, ContractPool, GpuTypePools, Host, KindSummary, Migrated, Plan, PoolHost,
    Recommendation, RunpodLaunched, RunpodPlan,
};

pub fn usage(u: GpuUsage) -> Value {
    json!({
        "gpu_used": u.used,
        "gpu_capacity": u.capacity,
        "gpu_usage_ratio": u.ratio(),
        "gpu_usage_percentage": u.percentage(),
    })
}

fn pool_host(p: &PoolHost) -> Value {
    let h = &p.host;
    json!({
        "hostname": h.hostname,
        "status": h.status,
        "instance_id": h.instance_id,
        "instance_type": h.instance_type,
        "vm_count": h.allocations.len(),
        "gpu_used": h.gpu_used(),
        "gpu_capacity": h.gpu_capacity,
        "has_vms": !h.allocations.is_empty(),
        "tenant": p.tenant,
        "owner_group": p.owner_group,
    })
}

fn kind(k: &KindSummary) -> Value {
    json!({
        "name": k.name,
        "hosts": k.hosts.iter().map(pool_host).collect::<Vec<_>>(),
        "gpu_summary": usage(k.usage),
        "variants": k.variants.iter().map(|v| json!({
            "name": v.name, "host_count": v.host_count, "gpu_summary": usage(v.usage),
        })).collect::<Vec<_>>(),
    })
}

pub fn gpu_types(types: &[GpuTypePools]) -> Value {
    types
        .iter()
        .map(|t| json!({"name": t.name, "display_name": t.name, "aggregates": t.pools_by_kind}))
        .collect()
}

pub fn aggregates(a: &Aggregates) -> Value {
    match a {
        Aggregates::Kind(k) => kind(k),
        Aggregates::All { kinds, overview } => {
            let mut out: serde_json::Map<String, Value> = kinds
                .iter()
                .map(|(name, k)| (name.to_string(), kind(k)))
                .collect();
            out.insert("gpu_overview".into(), usage(*overview));
            Value::Object(out)
        }
    }
}

pub fn contract_aggregates(pools: &[ContractPool]) -> Value {
    pools
        .iter()
        .map(|c| {
            json!({
                "aggregate": c.pool.name,
                "hosts": c.hosts.iter().map(pool_host).collect::<Vec<_>>(),
                "gpu_summary": usage(c.usage),
                "tenant_info": {"primary_tenant": c.pool.tenant, "owner_group": c.pool.owner_group},
            })
        })
        .collect()
}

pub fn host_vms(host: &Host) -> Value {
    json!({
        "hostname": host.hostname,
        "vms": host.allocations.iter().map(|a| json!({
            "id": a.id, "name": a.name, "status": a.status, "flavor": host.instance_type,
            "tenant": a.tenant, "created": rfc3339(a.created),
        })).collect::<Vec<_>>(),
        "total_vms": host.allocations.len(),
    })
}

pub fn migration_preview(plan: &Plan) -> Value {
    let c = plan.checks;
    json!({
        "commands": plan.commands,
        "validation": {
            "source_exists": true,
            "target_exists": true,
            "host_in_source": c.host_in_source,
            "gpu_type_matches": c.gpu_type_matches,
            "different_pools": c.different_pools,
            "has_live_allocations": c.live_allocations > 0,
            "live_allocations": c.live_allocations,
        },
        "allowed": plan.ok,
    })
}

pub fn migrated(m: &Migrated) -> Value {
    json!({
        "host": m.host,
        "source_aggregate": m.source_pool,
        "target_aggregate": m.target_pool,
        "commands_executed": m.commands_executed,
        "execution_time": format!("{:.1}s", m.took.as_secs_f64()),
        "verified": {"store": m.store_says, "tag": m.tag_says},
        "forced": m.forced,
    })
}

pub fn recommendation(r: &Recommendation) -> Value {
    json!({
        "hostname": r.hostname,
        "current_aggregate": r.current_pool,
        "recommended_aggregate": r.recommended_pool,
        "reasoning": r.reasoning,
    })
}

pub fn runpod_preview(plan: &RunpodPlan) -> Value {
    json!({
        "command": plan.command,
        "masked_command": plan.command,
        "estimated_resources": {
            "flavor": plan.host.instance_type,
            "gpu_count": plan.host.gpu_capacity,
            "gpu_type": plan.host.gpu_type,
            "aggregate": plan.pool,
        },
    })
}

pub fn runpod_launched(l: &RunpodLaunched) -> Value {
    json!({
        "vm_id": l.vm_id,
        "instance_id": l.instance_id,
        "hostname": l.plan.host.hostname,
        "image_id": l.plan.image_id,
        "image_name": l.plan.image_name,
        "status": "BUILDING",
        "flavor": l.plan.host.instance_type,
        "aggregate": l.plan.pool,
    })
}
