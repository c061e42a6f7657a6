//! What an admin does: launch VMs, destroy them all, watch their state.

use rand::Rng;

use crate::domain::{Job, Operation, OperationKind, SeatToken, Vm, VmChange, VmStatus, VmToken};
use crate::error::{Error, Result};
use crate::ports::LogPage;
use crate::AppState;

/// What the organiser's use cases use: the store, the launch queue, the compute provider
/// (to see and end machines), the wake-ups of waiting VMs, the time and the settings.
#[derive(Clone, Copy)]
pub struct Fleet<'a> {
    pub store: &'a dyn crate::ports::Store,
    pub queue: &'a dyn crate::ports::JobQueue,
    pub compute: &'a dyn crate::ports::ComputeProvider,
    pub notifier: &'a dyn crate::ports::AssignmentNotifier,
    pub clock: &'a dyn crate::ports::Clock,
    pub config: &'a crate::config::Config,
    /// A destroy collects the participants' work first.
    pub collection: super::collect::Collection<'a>,
}

impl<'a> From<&'a AppState> for Fleet<'a> {
    fn from(state: &'a AppState) -> Self {
        Fleet {
            store: &*state.store,
            queue: &*state.queue,
            compute: &*state.compute,
            notifier: &*state.notifier,
            clock: &*state.clock,
            config: &state.config,
            collection: state.into(),
        }
    }
}

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
pub async fn launch_vms(state: Fleet<'_>, count: u32) -> Result<Operation> {
    let max = state.config.max_launch;
    if count < 1 || count > max {
        return Err(Error::validation(format!(
            "the VM count must be between 1 and {max} (got {count})"
        )));
    }
    let mut op = Operation::start(OperationKind::Launch, state.clock.now_millis());
    state.store.begin_operation(&op, stale_ms(state)).await?;
    // Under the operation lock: no other launch can spend the same budget meanwhile.
    let result = match super::costs::check_fleet_budget(
        state.store,
        state.compute,
        state.config,
        super::costs::FleetLaunch::configured(state.config, count),
        state.clock.now_millis(),
    )
    .await
    {
        Ok(()) => record_and_enqueue(state, &mut op, count).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        op.errors.push(format!("launch stopped: {e}"));
    }
    // The operation ends when its jobs are queued; each VM's own status tells the rest.
    op.finish(state.clock.now_millis());
    state.store.save_operation(&op).await?;
    result.map(|()| op)
}

async fn record_and_enqueue(state: Fleet<'_>, op: &mut Operation, count: u32) -> Result<()> {
    // The records and their launch jobs go together (one transaction where the queue lives
    // in the store), so an acknowledged launch is never left without its jobs. A hostname
    // collision (32 random bits) fails the batch; it is retried with new names.
    for _ in 0..5 {
        let now = state.clock.now_millis();
        let mut vms = Vec::with_capacity(count as usize);
        let mut jobs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let token = VmToken::generate();
            let hostname = new_hostname(&state.config.vm_prefix);
            vms.push(Vm::new(hostname.clone(), token.hash(), now));
            jobs.push(Job::LaunchVm {
                operation_id: op.id.clone(),
                hostname,
                token: token.as_str().to_string(),
                lease: None,
            });
        }
        match state
            .queue
            .record_and_enqueue(state.store, &vms, &jobs)
            .await
        {
            Ok(()) => {
                op.hostnames = vms.into_iter().map(|v| v.hostname).collect();
                return state.store.save_operation(op).await;
            }
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Internal(anyhow::anyhow!(
        "could not find free hostnames after 5 tries"
    )))
}

/// After a crash (local mode, at start): operations the dead process was running end
/// here. A destroy is finished (its VMs that still exist are ended and forgotten, as the
/// admin asked); a launch is closed (its VMs and jobs were recorded together, and the
/// queue runs the jobs). Nothing keeps the one-at-a-time lock past the process that took it.
pub async fn finish_interrupted(state: Fleet<'_>, interrupted: Vec<Operation>) -> Result<()> {
    for mut op in interrupted {
        op.errors
            .push("interrupted: the server stopped before this operation finished".into());
        if op.kind == OperationKind::Destroy {
            let vms: Vec<Vm> = state
                .store
                .list_vms()
                .await?
                .into_iter()
                .filter(|v| op.hostnames.contains(&v.hostname))
                .collect();
            tracing::warn!(op = %op.id, vms = vms.len(), "finishing an interrupted destroy");
            if let Err(e) = terminate_and_forget(state, &mut op, &vms).await {
                op.errors.push(format!("destroy stopped again: {e}"));
            } else {
                op.errors.push("resumed and finished at restart".into());
            }
        }
        op.finish(state.clock.now_millis());
        state.store.save_operation(&op).await?;
    }
    Ok(())
}

/// Asks every VM for a final sync of the participant's work and waits for it (bounded; see
/// `collect::final_sync`, whose per-VM outcome the operation keeps), then stops every
/// machine of this deployment (found by its tag, so machines whose record was lost go too), waits until the provider confirms each is ending, and only then deletes
/// the records. A VM whose machine is not confirmed keeps its record, marked `error`, so
/// nothing that still runs (and bills) is forgotten. VMs in use are only destroyed when
/// `confirm_in_use` is set; otherwise nothing happens and the answer lists them.
pub async fn destroy_all(state: Fleet<'_>, confirm_in_use: bool) -> Result<Operation> {
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

    let result = match super::collect::final_sync(state.collection, &vms).await {
        Ok(collected) => {
            op.collected = collected;
            state.store.save_operation(&op).await?;
            terminate_and_forget(state, &mut op, &vms).await
        }
        // Ending the VMs now could lose what participants saved since their last sync.
        Err(e) => {
            tracing::error!(error = ?e, "final sync before a destroy");
            Err(Error::Unavailable(
                "nothing was destroyed: the final sync of participants' work could not run (see the logs); \
                 set GPUFLEET_COLLECT_PATTERNS empty to destroy without collecting"
                    .into(),
            ))
        }
    };
    if let Err(e) = &result {
        op.errors.push(format!("destroy stopped: {e}"));
    }
    op.finish(state.clock.now_millis());
    state.store.save_operation(&op).await?;
    result.map(|()| op)
}

async fn terminate_and_forget(
    state: Fleet<'_>,
    op: &mut Operation,
    vms: &[crate::domain::Vm],
) -> Result<()> {
    let mut ids: Vec<String> = state
        .compute
        .list_machines()
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
        state
            .store
            .delete_vm(&vm.hostname, state.clock.now_millis())
            .await?;
        state.store.delete_logs(&vm.hostname).await?;
        // A VM long-polling right now learns at once that it is gone.
        state.notifier.notify(&vm.hostname);
    }
    Ok(())
}

fn stale_ms(state: Fleet<'_>) -> i64 {
    i64::try_from(state.config.operation_stale_after.as_millis()).unwrap_or(i64::MAX)
}

pub async fn get_operation(state: Fleet<'_>, id: &str) -> Result<Operation> {
    state
        .store
        .get_operation(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("operation {id}")))
}

/// Every VM's status, for the dashboard.
pub async fn vm_statuses(state: Fleet<'_>) -> Result<Vec<(String, VmStatus)>> {
    Ok(state
        .store
        .list_vms()
        .await?
        .into_iter()
        .map(|v| (v.hostname, v.status))
        .collect())
}

pub async fn get_vm(state: Fleet<'_>, hostname: &str) -> Result<Vm> {
    state
        .store
        .get_vm(hostname)
        .await?
        .ok_or_else(|| Error::NotFound(format!("VM {hostname}")))
}

/// A VM's log after `after` (0: all kept). `Unavailable`-style answer: `Ok(None)` while
/// the VM has produced no log yet; `NotFound` for an unknown VM.
pub async fn vm_logs(state: Fleet<'_>, hostname: &str, after: u64) -> Result<Option<LogPage>> {
    get_vm(state, hostname).await?;
    state.store.read_logs(hostname, after).await
}

pub async fn list_vms(state: Fleet<'_>) -> Result<Vec<Vm>> {
    state.store.list_vms().await
}

/// Gives the participant of `hostname` a new seat link (they lost theirs); the old link and
/// cookie stop working. The token is shown to the admin once, to pass on.
pub async fn reissue_seat(state: Fleet<'_>, hostname: &str) -> Result<(Vm, SeatToken)> {
    let seat = SeatToken::generate(state.clock.now_millis());
    let vm = state
        .store
        .reissue_seat(hostname, &seat.hash(), state.clock.now_millis())
        .await?;
    Ok((vm, seat))
}

/// Moves the participant of `hostname` to `to` (or any free, live VM), whatever the state
/// of their VM; it is left in `error` so nobody else gets a machine that held their session.
pub async fn move_participant(state: Fleet<'_>, hostname: &str, to: Option<&str>) -> Result<Vm> {
    super::participant::move_participant(
        super::participant::Seats {
            store: state.store,
            counters: state.store,
            clock: state.clock,
            notifier: state.notifier,
            config: state.config,
        },
        hostname,
        None,
        to,
        "moved by an organiser",
    )
    .await
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
