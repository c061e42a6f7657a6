//! What an admin does: launch VMs, destroy them all, watch their state.

use rand::Rng;

use crate::domain::{Job, Operation, OperationKind, TokenHash, Vm, VmChange, VmStatus, VmToken};
use crate::error::{Error, Result};
use crate::ports::LogPage;
use crate::AppState;

/// Checks a requested VM count: a positive integer no larger than the configured maximum.
pub fn parse_vm_count(raw: &str, max: u32) -> Result<u32> {
    let n: i64 = raw.trim().parse().map_err(|_| {
        Error::validation(format!("the VM count must be a whole number (got {raw:?})"))
    })?;
    if n < 1 || n > i64::from(max) {
        return Err(Error::validation(format!(
            "the VM count must be between 1 and {max} (got {n})"
        )));
    }
    Ok(n as u32)
}

pub(crate) fn new_hostname(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::rng().random::<u32>())
}

/// Records `count` VMs (initializing, each with a fresh token of which only the hash is
/// kept) and queues one launch job per VM; the provisioner starts the machines. One
/// operation runs at a time. Returns at once: progress shows in the operation's VMs.
pub async fn launch_vms(state: &AppState, count: u32) -> Result<Operation> {
    let max = state.config.max_launch;
    if count < 1 || count > max {
        return Err(Error::validation(format!(
            "the VM count must be between 1 and {max} (got {count})"
        )));
    }
    let mut op = Operation::start(OperationKind::Launch, state.clock.now_millis());
    state.store.begin_operation(&op, stale_ms(state)).await?;
    let result = record_and_enqueue(state, &mut op, count).await;
    if let Err(e) = &result {
        op.errors.push(format!("launch stopped: {e}"));
    }
    // The operation ends when its jobs are queued; each VM's own status tells the rest.
    op.finish(state.clock.now_millis());
    state.store.save_operation(&op).await?;
    result.map(|()| op)
}

async fn record_and_enqueue(state: &AppState, op: &mut Operation, count: u32) -> Result<()> {
    let mut jobs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let token = VmToken::generate();
        let hostname = insert_new_vm(state, &token.hash()).await?;
        op.hostnames.push(hostname.clone());
        jobs.push(Job::LaunchVm {
            operation_id: op.id.clone(),
            hostname,
            token: token.as_str().to_string(),
            lease: None,
        });
    }
    state.store.save_operation(op).await?;
    if let Err(e) = state.queue.enqueue(&jobs).await {
        // Nothing will start these machines: say so on each record instead of leaving them
        // initializing forever.
        for job in &jobs {
            let Job::LaunchVm { hostname, .. } = job else {
                continue;
            };
            state
                .store
                .update_vm(
                    hostname,
                    &VmChange::Failed(format!("could not queue the launch: {e}")),
                    state.clock.now_millis(),
                )
                .await?;
        }
        return Err(e);
    }
    Ok(())
}

/// Inserts a new VM record under a fresh random hostname (retrying on the rare collision).
async fn insert_new_vm(state: &AppState, token_hash: &TokenHash) -> Result<String> {
    for _ in 0..5 {
        let hostname = new_hostname(&state.config.vm_prefix);
        let vm = Vm::new(
            hostname.clone(),
            token_hash.clone(),
            state.clock.now_millis(),
        );
        match state.store.insert_vm(&vm).await {
            Ok(()) => return Ok(hostname),
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Internal(anyhow::anyhow!(
        "could not find a free hostname after 5 tries"
    )))
}

/// Stops every machine of this deployment (found by its tag, so machines whose record was
/// lost go too), waits until the provider confirms each is ending, and only then deletes
/// the records. A VM whose machine is not confirmed keeps its record, marked `error`, so
/// nothing that still runs (and bills) is forgotten. VMs in use are only destroyed when
/// `confirm_in_use` is set; otherwise nothing happens and the answer lists them.
pub async fn destroy_all(state: &AppState, confirm_in_use: bool) -> Result<Operation> {
    let vms = state.store.list_vms().await?;
    let in_use: Vec<&str> = vms
        .iter()
        .filter(|v| v.in_use)
        .map(|v| v.hostname.as_str())
        .collect();
    if !in_use.is_empty() && !confirm_in_use {
        return Err(Error::Conflict(format!(
            "{} VM(s) are in use: {}. Confirm to destroy them anyway.",
            in_use.len(),
            in_use.join(", ")
        )));
    }
    let mut op = Operation::start(OperationKind::Destroy, state.clock.now_millis());
    state.store.begin_operation(&op, stale_ms(state)).await?;
    op.hostnames = vms.iter().map(|v| v.hostname.clone()).collect();
    state.store.save_operation(&op).await?;

    let result = terminate_and_forget(state, &mut op, &vms).await;
    if let Err(e) = &result {
        op.errors.push(format!("destroy stopped: {e}"));
    }
    op.finish(state.clock.now_millis());
    state.store.save_operation(&op).await?;
    result.map(|()| op)
}

async fn terminate_and_forget(
    state: &AppState,
    op: &mut Operation,
    vms: &[crate::domain::Vm],
) -> Result<()> {
    let mut ids: Vec<String> = state
        .compute
        .list_instances()
        .await?
        .into_iter()
        .filter(|i| !i.state.is_ending())
        .map(|i| i.id)
        .collect();
    for id in vms.iter().filter_map(|v| v.instance_id.clone()) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let confirmed = if ids.is_empty() {
        Vec::new()
    } else {
        state.compute.terminate(&ids).await?
    };
    for id in ids.iter().filter(|id| !confirmed.contains(id)) {
        if !vms
            .iter()
            .any(|v| v.instance_id.as_deref() == Some(id.as_str()))
        {
            op.errors.push(format!(
                "unrecorded instance {id}: termination not confirmed"
            ));
        }
    }
    for vm in vms {
        let gone = match &vm.instance_id {
            None => true,
            Some(id) => confirmed.contains(id),
        };
        if !gone {
            let reason = "termination not confirmed; the machine may still run".to_string();
            state
                .store
                .update_vm(
                    &vm.hostname,
                    &VmChange::Failed(reason.clone()),
                    state.clock.now_millis(),
                )
                .await?;
            op.errors.push(format!("{}: {reason}", vm.hostname));
            continue;
        }
        state.store.delete_vm(&vm.hostname).await?;
        state.store.delete_logs(&vm.hostname).await?;
        // A VM long-polling right now learns at once that it is gone.
        state.notifier.notify(&vm.hostname);
    }
    Ok(())
}

fn stale_ms(state: &AppState) -> i64 {
    i64::try_from(state.config.operation_stale_after.as_millis()).unwrap_or(i64::MAX)
}

pub async fn get_operation(state: &AppState, id: &str) -> Result<Operation> {
    state
        .store
        .get_operation(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("operation {id}")))
}

/// Every VM's status, for the dashboard.
pub async fn vm_statuses(state: &AppState) -> Result<Vec<(String, VmStatus)>> {
    Ok(state
        .store
        .list_vms()
        .await?
        .into_iter()
        .map(|v| (v.hostname, v.status))
        .collect())
}

pub async fn get_vm(state: &AppState, hostname: &str) -> Result<Vm> {
    state
        .store
        .get_vm(hostname)
        .await?
        .ok_or_else(|| Error::NotFound(format!("VM {hostname}")))
}

/// A VM's log after `after` (0: all kept). `Unavailable`-style answer: `Ok(None)` while
/// the VM has produced no log yet; `NotFound` for an unknown VM.
pub async fn vm_logs(state: &AppState, hostname: &str, after: u64) -> Result<Option<LogPage>> {
    get_vm(state, hostname).await?;
    state.store.read_logs(hostname, after).await
}

pub async fn list_vms(state: &AppState) -> Result<Vec<Vm>> {
    state.store.list_vms().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_count_parsing() {
        assert_eq!(parse_vm_count("3", 10).unwrap(), 3);
        assert_eq!(parse_vm_count(" 10 ", 10).unwrap(), 10);
        for bad in ["0", "-1", "11", "1.5", "abc", "", "99999999999999999999"] {
            assert!(parse_vm_count(bad, 10).is_err(), "{bad:?}");
        }
    }
}
