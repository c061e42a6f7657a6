//! Moving a host between pools: planned and checked, then executed in the store and on the
//! machine's tag, and read back.

use super::*;

/// A requested move, validated against the fleet.
pub struct Plan {
    pub host: Host,
    pub source: Pool,
    pub target: Pool,
    pub commands: Vec<String>,
    pub checks: MigrationChecks,
    pub ok: bool,
}

/// What a migration is checked against (both pools exist, or planning failed with 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationChecks {
    pub host_in_source: bool,
    pub gpu_type_matches: bool,
    pub different_pools: bool,
    pub live_allocations: usize,
}

/// A requested move of a host between pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub host: String,
    pub source_pool: String,
    pub target_pool: String,
    /// Move even with live allocations (admins only).
    pub force: bool,
}

/// What a migration would do, and whether it may.
pub async fn plan(state: Capacity<'_>, migration: &Migration) -> Result<Plan> {
    let hostname = migration.host.as_str();
    let source = migration.source_pool.as_str();
    let target = migration.target_pool.as_str();
    let (host, pools) = host(state, hostname).await?;
    let find = |name: &str| pools.iter().find(|p| p.name == name).cloned();
    let source_pool = find(source).ok_or_else(|| Error::NotFound(format!("aggregate {source}")))?;
    let target_pool = find(target).ok_or_else(|| Error::NotFound(format!("aggregate {target}")))?;
    let host_in_source = host.pool == source_pool.name;
    let gpu_type_matches =
        source_pool.gpu_type == host.gpu_type && target_pool.gpu_type == host.gpu_type;
    let mut commands = Vec::new();
    match (&host.instance_id, state.compute.tags().is_some()) {
        (Some(id), true) => commands.push(format!(
            "aws ec2 create-tags --resources {id} --tags Key={TAG_POOL},Value={target}"
        )),
        _ => commands.push(format!(
            "record {hostname} in {target} (no cloud tag: local machine)"
        )),
    }
    let checks = MigrationChecks {
        host_in_source,
        gpu_type_matches,
        different_pools: source != target,
        live_allocations: host.allocations.len(),
    };
    Ok(Plan {
        ok: host_in_source && gpu_type_matches && source != target,
        host,
        source: source_pool,
        target: target_pool,
        commands,
        checks,
    })
}

/// A migration done and read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Migrated {
    pub host: String,
    pub source_pool: String,
    pub target_pool: String,
    pub commands_executed: Vec<String>,
    pub took: Duration,
    /// The pool as the store and the machine's tag say after the move.
    pub store_says: Option<String>,
    pub tag_says: Option<String>,
    pub forced: bool,
}

/// `POST /api/execute-migration`: moves the host (store, then tag) and verifies both.
/// Refused with live allocations unless `force` (admins only).
pub async fn execute(
    state: Capacity<'_>,
    migration: &Migration,
    is_admin: bool,
) -> Result<Migrated> {
    let force = migration.force;
    if force && !is_admin {
        return Err(Error::Forbidden(
            "only an admin may force a migration".into(),
        ));
    }
    let plan = plan(state, migration).await?;
    if !plan.ok {
        let c = plan.checks;
        let failed: Vec<&str> = [
            (!c.host_in_source).then_some("the host is not in the source aggregate"),
            (!c.gpu_type_matches).then_some("the aggregates are not of the host's GPU type"),
            (!c.different_pools).then_some("source and target are the same aggregate"),
        ]
        .into_iter()
        .flatten()
        .collect();
        return Err(Error::validation(format!(
            "migration refused: {}",
            failed.join("; ")
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
    Ok(Migrated {
        host: hostname,
        source_pool: plan.source.name,
        target_pool: plan.target.name,
        commands_executed: executed,
        took: started.elapsed(),
        store_says: recorded,
        tag_says: tag,
        forced: force,
    })
}

/// Where a host should go, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    pub hostname: String,
    pub current_pool: String,
    pub recommended_pool: String,
    pub reasoning: String,
}

/// `POST /api/get-target-aggregate`.
pub async fn target(state: Capacity<'_>, hostname: &str, gpu_type: &str) -> Result<Recommendation> {
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
    Ok(Recommendation {
        hostname: hostname.to_string(),
        current_pool: current.name,
        recommended_pool: recommended,
        reasoning,
    })
}
