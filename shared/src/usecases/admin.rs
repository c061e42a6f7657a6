//! What an admin does: launch VMs, destroy them all, watch their state.

use rand::Rng;

use crate::domain::{Operation, OperationKind, TokenHash, Vm, VmChange, VmStatus, VmToken};
use crate::error::{Error, Result};
use crate::ports::{LaunchSpec, LogPage};
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

fn new_hostname(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::rng().random::<u32>())
}

/// Records `count` VMs (initializing, each with a fresh token of which only the hash is
/// kept) and asks the compute provider to start each. One operation runs at a time.
/// A VM whose start fails ends `error` with the reason; nothing stays `initializing`
/// without a machine behind it.
pub async fn launch_vms(state: &AppState, count: u32) -> Result<Operation> {
    let max = state.config.max_launch;
    if count < 1 || count > max {
        return Err(Error::validation(format!(
            "the VM count must be between 1 and {max} (got {count})"
        )));
    }
    let api_url =
        state.config.api_url.clone().ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("GPUFLEET_API_URL is not configured"))
        })?;
    let mut op = Operation::start(OperationKind::Launch, state.clock.now_millis());
    state.store.begin_operation(&op, stale_ms(state)).await?;

    let mut specs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let token = VmToken::generate();
        let hostname = insert_new_vm(state, &token.hash()).await?;
        op.hostnames.push(hostname.clone());
        specs.push(LaunchSpec {
            hostname,
            token,
            allocator_url: api_url.clone(),
        });
    }
    state.store.save_operation(&op).await?;

    for spec in &specs {
        let now = state.clock.now_millis();
        match state.compute.launch(spec).await {
            Ok(instance_id) => {
                state
                    .store
                    .update_vm(&spec.hostname, &VmChange::InstanceId(instance_id), now)
                    .await?;
            }
            Err(e) => {
                tracing::error!(hostname = %spec.hostname, error = ?e, "launch failed");
                let reason = format!("launch failed: {e}");
                state
                    .store
                    .update_vm(&spec.hostname, &VmChange::Failed(reason.clone()), now)
                    .await?;
                op.errors.push(format!("{}: {reason}", spec.hostname));
            }
        }
    }
    op.finish(state.clock.now_millis());
    state.store.save_operation(&op).await?;
    Ok(op)
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

/// Stops every VM through the compute provider, waits until each is confirmed gone, and
/// only then deletes its record. A VM whose machine refuses to stop keeps its record,
/// marked `error` with the reason, so nothing is forgotten while it still runs (and bills).
pub async fn destroy_all(state: &AppState) -> Result<Operation> {
    let mut op = Operation::start(OperationKind::Destroy, state.clock.now_millis());
    state.store.begin_operation(&op, stale_ms(state)).await?;
    let vms = state.store.list_vms().await?;
    op.hostnames = vms.iter().map(|v| v.hostname.clone()).collect();
    state.store.save_operation(&op).await?;

    for vm in vms {
        if let Some(instance_id) = &vm.instance_id {
            if let Err(e) = state.compute.terminate(instance_id).await {
                tracing::error!(hostname = %vm.hostname, error = ?e, "terminate failed");
                let reason = format!("termination failed: {e}");
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
        }
        state.store.delete_vm(&vm.hostname).await?;
        state.store.delete_logs(&vm.hostname).await?;
        // A VM long-polling right now learns at once that it is gone.
        state.notifier.notify(&vm.hostname);
    }
    op.finish(state.clock.now_millis());
    state.store.save_operation(&op).await?;
    Ok(op)
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
