//! Reconcile: make the cloud and the records agree. On demand (`POST /api/reconcile`) and
//! from the `reconcile` function, meant for a schedule (every 5 minutes). A tagged machine
//! without a record is an orphan and is terminated; a record whose machine is gone is
//! marked; a record still waiting for its machine adopts one that carries its hostname.
//! It also sweeps provisioning requests (`requests::sweep`): expired leases end here; and
//! reconciles the offers API's instances (`instances::reconcile`).

use std::collections::HashMap;

use serde::Serialize;

use crate::domain::VmChange;
use crate::error::Result;
use crate::AppState;

/// What a reconcile did.
#[derive(Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ReconcileReport {
    pub instances_seen: usize,
    pub records_seen: usize,
    pub orphans_terminated: Vec<String>,
    pub orphans_not_confirmed: Vec<String>,
    pub adopted: Vec<String>,
    pub vanished_marked: Vec<String>,
    /// Provisioning requests moved along (leases ended, requests failed or completed).
    pub requests: super::requests::SweepReport,
    /// Instances of the offers API (orphans ended, records brought up to date).
    pub instances: super::instances::InstancesReport,
    /// VMs that stopped calling or never finished booting.
    pub liveness: super::liveness::LivenessReport,
}

/// Takes the whole `AppState`: it visits every feature (the fleet's machines, requests'
/// leases, the instances of every cloud, the liveness of VMs).
pub async fn reconcile(state: &AppState) -> Result<ReconcileReport> {
    let grace = i64::try_from(state.config.reconcile_grace.as_millis()).unwrap_or(i64::MAX);
    reconcile_with_grace(state, grace).await
}

/// Reconcile with `grace` (ms): machines younger than this may belong to a launch whose
/// record is being written. Local mode passes 0 at start, when no launch can be in flight.
pub async fn reconcile_with_grace(state: &AppState, grace: i64) -> Result<ReconcileReport> {
    // First, and needing only the store: a cloud error below must not keep quiet VMs marked
    // free or stuck boots unmarked.
    let liveness = super::liveness::sweep(&*state.store, &*state.clock, &state.config).await?;
    let now = state.clock.now_millis();
    let instances = state.compute.list_machines().await?;
    let vms = state.store.list_vms().await?;
    let by_host: HashMap<&str, &crate::domain::Vm> =
        vms.iter().map(|v| (v.hostname.as_str(), v)).collect();
    let mut report = ReconcileReport {
        instances_seen: instances.len(),
        records_seen: vms.len(),
        ..ReconcileReport::default()
    };

    let mut orphans = Vec::new();
    for instance in instances.iter().filter(|i| !i.state.is_ending()) {
        let record = instance.hostname.as_deref().and_then(|h| by_host.get(h));
        match record {
            Some(vm) if vm.instance_id.as_deref() == Some(instance.id.as_str()) => {}
            // The provisioner started it but did not get to record it.
            Some(vm) if vm.instance_id.is_none() && now - instance.launched_at >= grace => {
                let change = super::costs::launched(
                    &*state.store,
                    &*state.compute,
                    &state.config,
                    vm,
                    instance.id.clone(),
                    None,
                    state.config.market,
                )
                .await?;
                state.store.update_vm(&vm.hostname, &change, now).await?;
                report.adopted.push(instance.id.clone());
            }
            Some(vm) if vm.instance_id.is_none() => {} // its launch is still being recorded
            // No record, or the record points at another machine: nobody will ever use it.
            _ if now - instance.launched_at >= grace || record.is_some() => {
                orphans.push(instance.id.clone());
            }
            _ => {} // very young and unrecorded: a launch in flight
        }
    }
    if !orphans.is_empty() {
        let confirmed = state.compute.terminate(&orphans).await?;
        for id in orphans {
            if confirmed.contains(&id) {
                report.orphans_terminated.push(id);
            } else {
                report.orphans_not_confirmed.push(id);
            }
        }
    }

    let alive: HashMap<&str, bool> = instances
        .iter()
        .map(|i| (i.id.as_str(), !i.state.is_ending()))
        .collect();
    for vm in &vms {
        let Some(id) = vm.instance_id.as_deref() else {
            continue;
        };
        if alive.get(id).copied().unwrap_or(false) {
            continue;
        }
        let reason = format!("instance {id} no longer exists");
        if vm.status_reason.as_deref() != Some(reason.as_str()) {
            state
                .store
                .update_vm(&vm.hostname, &VmChange::MachineGone(reason), now)
                .await?;
            report.vanished_marked.push(vm.hostname.clone());
        }
    }
    tracing::info!(?report, "reconciled");
    report.requests = super::requests::sweep(state.into()).await?;
    report.instances = super::instances::reconcile(state.into()).await?;
    report.liveness = liveness;
    Ok(report)
}
