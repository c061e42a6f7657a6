//! GPU provisioning requests: "N GPUs for H hours", with a per-user quota, machines that
//! really start (through the same two-phase, idempotent launch path as VMs) and leases that
//! really end.
//!
//! Life of a request: `create` records it (quota checked atomically by the store) and
//! queues a `ProvisionRequest` job; `provision` plans the machines, records each as a VM
//! leased to the request and queues their launches; when every machine's agent reports
//! `running`, `settle` completes the request with its access details and starts the lease;
//! the sweep (scheduled reconcile on AWS, a timer locally) ends expired leases, fails
//! requests that cannot finish, and re-queues requests whose job was lost. A request only
//! leaves the active states (freeing its quota, exactly once, in the store) after its
//! machines are confirmed ended.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::domain::api_keys::Caller;
use crate::domain::requests::plan_machines;
use crate::domain::rfc3339;
use crate::domain::{
    Assignment, GpuRequest, Job, LeaseAccess, LeaseHost, LeaseLaunch, NewRequest, RequestChange,
    RequestStatus, Vm, VmStatus, VmToken,
};
use crate::error::{Error, Result};
use crate::ports::{Clock, ComputeProvider, JobQueue, Store};
use crate::ports::{CreateRequestOutcome, Idempotency};
use crate::AppState;

/// What the GPU requests' use cases use: the store (requests, their machines and logs),
/// the queue that provisions, the compute provider that ends machines, the time and the
/// settings.
#[derive(Clone, Copy)]
pub struct Leases<'a> {
    pub store: &'a dyn Store,
    pub queue: &'a dyn JobQueue,
    pub compute: &'a dyn ComputeProvider,
    pub clock: &'a dyn Clock,
    pub config: &'a Config,
}

impl<'a> From<&'a AppState> for Leases<'a> {
    fn from(state: &'a AppState) -> Self {
        Leases {
            store: &*state.store,
            queue: &*state.queue,
            compute: &*state.compute,
            clock: &*state.clock,
            config: &state.config,
        }
    }
}

/// What `create` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub request: GpuRequest,
    /// The `Idempotency-Key` was seen before: this is the original request.
    pub replayed: bool,
}

/// A re-queued `pending` request older than this is taken as one whose job was lost.
const REQUEUE_AFTER_MS: i64 = 5 * 60 * 1000;

/// Records a request and queues its provisioning, together or not at all.
pub async fn create(
    state: Leases<'_>,
    caller: &Caller,
    input: NewRequest,
    idempotency_key: Option<&str>,
) -> Result<Created> {
    if input.user_id != caller.user_id {
        return Err(Error::Forbidden(format!(
            "user_id {:?} is not the user of this API key",
            input.user_id
        )));
    }
    let idempotency = Idempotency::from_header(idempotency_key, || fingerprint(&input))?;
    let now = state.clock.now_millis();
    let mut request = GpuRequest::new(uuid::Uuid::new_v4().to_string(), &input, now);
    let budget = match super::costs::user_budget(state.store, caller).await? {
        None => None,
        Some(budget_usd) => {
            let shapes = plan_machines(input.gpu_count, &state.config.gpu_shapes)?;
            let types: Vec<String> = shapes.into_iter().map(|s| s.instance_type).collect();
            let minimum =
                super::costs::request_minimum(state.compute, state.config, &types).await?;
            let user = caller.user_id.as_str();
            Some(super::costs::budget_check(state.store, user, budget_usd, minimum, now).await?)
        }
    };
    request.budget_hold = budget.as_ref().map(|b| b.hold.clone());
    match state
        .store
        .create_request(
            &request,
            caller.gpu_quota,
            idempotency.as_ref(),
            budget.as_ref(),
        )
        .await?
    {
        CreateRequestOutcome::OverBudget { held } => {
            let check = budget
                .as_ref()
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("over budget without a budget")))?;
            return Err(check.refusal(held, "request"));
        }
        CreateRequestOutcome::Created => {}
        CreateRequestOutcome::Replayed(original) => {
            return Ok(Created {
                request: *original,
                replayed: true,
            })
        }
        CreateRequestOutcome::IdempotencyMismatch => {
            return Err(Error::Conflict(
                "this Idempotency-Key was used for a different request".into(),
            ))
        }
        CreateRequestOutcome::OverQuota { in_use, quota } => {
            return Err(Error::validation(
                crate::domain::requests::over_quota_message(input.gpu_count, in_use, quota),
            ))
        }
    }
    let job = Job::ProvisionRequest {
        request_id: request.request_id.clone(),
    };
    if let Err(e) = state.queue.enqueue(&[job]).await {
        // Not queued: end it now (which frees the quota) rather than leave it pending.
        let failed = RequestChange::Failed {
            error_msg: "could not be queued for provisioning; please retry".into(),
        };
        if let Err(undo) = state
            .store
            .update_request(&request.request_id, &failed, state.clock.now_millis())
            .await
        {
            tracing::error!(request = %request.request_id, error = ?undo, "could not fail an unqueued request; the sweep will re-queue it");
        }
        return Err(e);
    }
    Ok(Created {
        request,
        replayed: false,
    })
}

/// What identifies a request body for idempotency.
fn fingerprint(input: &NewRequest) -> String {
    let digest = Sha256::digest(
        format!(
            "{}\n{}\n{}",
            input.user_id, input.gpu_count, input.duration_hours
        )
        .as_bytes(),
    );
    hex::encode(digest)
}

/// `request_id` must be a UUID (400 otherwise).
pub fn parse_request_id(raw: &str) -> Result<String> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| Error::validation(format!("request_id {raw:?} is not a UUID")))
}

/// One of the caller's requests (`None` caller: an admin); someone else's is "not found".
pub async fn get(
    state: Leases<'_>,
    caller: Option<&Caller>,
    request_id: &str,
) -> Result<GpuRequest> {
    let id = parse_request_id(request_id)?;
    match state.store.get_request(&id).await? {
        Some(r) if caller.is_none_or(|c| c.user_id == r.user_id) => Ok(r),
        _ => Err(Error::NotFound(format!("request {id}"))),
    }
}

/// The caller's requests (everyone's for an admin), newest first.
pub async fn list(
    state: Leases<'_>,
    caller: Option<&Caller>,
    limit: usize,
) -> Result<Vec<GpuRequest>> {
    state
        .store
        .list_requests(caller.map(|c| c.user_id.as_str()), limit)
        .await
}

/// Ends a lease early: its machines are terminated (confirmed) before it says `released`.
pub async fn release(
    state: Leases<'_>,
    caller: Option<&Caller>,
    request_id: &str,
) -> Result<GpuRequest> {
    let request = get(state, caller, request_id).await?;
    if !request.status.is_active() {
        return Err(Error::Conflict(format!(
            "request {} is already {}",
            request.request_id,
            request.status.as_str()
        )));
    }
    if !end_machines(state, &request).await? {
        return Err(Error::Unavailable(
            "termination of the request's machines is not confirmed yet; try again shortly".into(),
        ));
    }
    state
        .store
        .update_request(
            &request.request_id,
            &RequestChange::Released,
            state.clock.now_millis(),
        )
        .await
}

/// The provisioning job: plans the machines, records them, queues their launches.
pub async fn provision(state: Leases<'_>, request_id: &str) -> Result<()> {
    let Some(request) = state.store.get_request(request_id).await? else {
        return Ok(()); // nothing to do for an unknown request
    };
    if request.status != RequestStatus::Pending {
        return Ok(()); // a redelivered job: already planned, or ended
    }
    let plan = match plan_machines(request.gpu_count, &state.config.gpu_shapes) {
        Ok(plan) => plan,
        Err(e) => {
            let failed = RequestChange::Failed {
                error_msg: format!("no machines can provide {} GPUs: {e}", request.gpu_count),
            };
            state
                .store
                .update_request(request_id, &failed, state.clock.now_millis())
                .await?;
            return Ok(());
        }
    };
    let now = state.clock.now_millis();
    let short = request.request_id.replace('-', "");
    let lease_end = now + i64::from(request.duration_hours) * 3_600_000;
    let mut jobs = Vec::new();
    let mut new_vms = Vec::new();
    let mut hosts = Vec::new();
    for (index, shape) in plan.iter().enumerate() {
        // 48 bits of the request id keep the hostname under 63 characters with any prefix.
        let hostname = format!(
            "{}-r{}-{index}",
            state.config.vm_prefix,
            short.get(..12).unwrap_or(&short)
        );
        hosts.push(hostname.clone());
        if let Some(existing) = state.store.get_vm(&hostname).await? {
            // Recorded by an earlier delivery of this job, together with its launch job.
            if existing.lease_request() != Some(request.request_id.as_str()) {
                return Err(Error::Internal(anyhow::anyhow!(
                    "hostname {hostname} is taken by another VM"
                )));
            }
            continue;
        }
        let token = VmToken::generate();
        let mut vm = Vm::new(hostname.clone(), token.hash(), now);
        vm.assignment = Some(Assignment::lease(&request.request_id, index, now));
        new_vms.push(vm);
        jobs.push(Job::LaunchVm {
            operation_id: request.request_id.clone(),
            hostname,
            token: token.as_str().to_string(),
            lease: Some(LeaseLaunch {
                request_id: request.request_id.clone(),
                instance_type: shape.instance_type.clone(),
                expires_at: rfc3339(lease_end),
            }),
        });
    }
    // The records and their launch jobs together (one transaction in local mode), so a
    // crash between them cannot leave machines nobody will launch.
    if !new_vms.is_empty() {
        state
            .queue
            .record_and_enqueue(state.store, &new_vms, &jobs)
            .await?;
    }
    state
        .store
        .update_request(
            request_id,
            &RequestChange::Provisioning { hosts },
            state.clock.now_millis(),
        )
        .await?;
    Ok(())
}

/// What the sweep did.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct SweepReport {
    pub completed: Vec<String>,
    pub expired: Vec<String>,
    pub failed: Vec<String>,
    pub requeued: Vec<String>,
    /// Requests whose machines could not all be confirmed ended yet (retried next sweep).
    pub ending: Vec<String>,
}

/// Moves every active request along: see the module documentation.
pub async fn sweep(state: Leases<'_>) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    for request in state.store.active_requests().await? {
        if let Err(e) = settle(state, &request, &mut report).await {
            tracing::warn!(request = %request.request_id, error = ?e, "could not settle a request");
        }
    }
    Ok(report)
}

/// Called when a leased machine reports `running`: completes its request as soon as all of
/// its machines are up (failures and expiry are the sweep's, which may end machines).
pub async fn on_machine_report(state: Leases<'_>, request_id: &str) -> Result<()> {
    let Some(request) = state.store.get_request(request_id).await? else {
        return Ok(());
    };
    if request.status != RequestStatus::Provisioning {
        return Ok(());
    }
    let machines = machines_of(state, &request).await?;
    let all_up = machines.len() == request.hosts.len()
        && machines
            .iter()
            .all(|vm| vm.status == VmStatus::Running && vm.instance_id.is_some());
    if all_up {
        complete(state, &request, &machines, &mut SweepReport::default()).await?;
    }
    Ok(())
}

async fn complete(
    state: Leases<'_>,
    request: &GpuRequest,
    machines: &[Vm],
    report: &mut SweepReport,
) -> Result<()> {
    let access = access_of(state, machines, request).await?;
    let now = state.clock.now_millis();
    match state
        .store
        .update_request(
            &request.request_id,
            &RequestChange::Completed { access },
            now,
        )
        .await
    {
        Ok(_) => report.completed.push(request.request_id.clone()),
        // Completed by a concurrent report or sweep: fine.
        Err(Error::Conflict(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

async fn settle(state: Leases<'_>, request: &GpuRequest, report: &mut SweepReport) -> Result<()> {
    let now = state.clock.now_millis();
    let id = request.request_id.clone();
    let timeout = i64::try_from(state.config.provision_timeout.as_millis()).unwrap_or(i64::MAX);
    match request.status {
        RequestStatus::Pending if now - request.updated_at >= REQUEUE_AFTER_MS => {
            state
                .queue
                .enqueue(&[Job::ProvisionRequest {
                    request_id: id.clone(),
                }])
                .await?;
            report.requeued.push(id);
        }
        RequestStatus::Provisioning => {
            let machines = machines_of(state, request).await?;
            let problem = if machines.len() < request.hosts.len() {
                Some("a machine of this request was destroyed".to_string())
            } else if let Some(vm) = machines.iter().find(|vm| vm.status == VmStatus::Error) {
                Some(format!(
                    "machine {} failed: {}",
                    vm.hostname,
                    vm.status_reason.as_deref().unwrap_or("unknown reason")
                ))
            } else if now - request.created_at >= timeout {
                Some(format!(
                    "not ready within {} s",
                    state.config.provision_timeout.as_secs()
                ))
            } else {
                None
            };
            if let Some(error_msg) = problem {
                finish(state, request, RequestChange::Failed { error_msg }, report).await?;
            } else if machines
                .iter()
                .all(|vm| vm.status == VmStatus::Running && vm.instance_id.is_some())
            {
                complete(state, request, &machines, report).await?;
            }
        }
        RequestStatus::Completed => {
            if request.expires_at.is_some_and(|t| t <= now) {
                finish(state, request, RequestChange::Expired, report).await?;
            } else if machines_of(state, request).await?.len() < request.hosts.len() {
                let error_msg = "a machine of this request was destroyed".to_string();
                finish(state, request, RequestChange::Failed { error_msg }, report).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Ends the machines, then (only once all are confirmed gone) the request.
async fn finish(
    state: Leases<'_>,
    request: &GpuRequest,
    change: RequestChange,
    report: &mut SweepReport,
) -> Result<()> {
    let id = request.request_id.clone();
    if !end_machines(state, request).await? {
        report.ending.push(id);
        return Ok(());
    }
    let target = change.target();
    match state
        .store
        .update_request(&id, &change, state.clock.now_millis())
        .await
    {
        Ok(_) => match target {
            RequestStatus::Expired => report.expired.push(id),
            _ => report.failed.push(id),
        },
        Err(Error::Conflict(_)) => {} // ended concurrently (a release): fine
        Err(e) => return Err(e),
    }
    Ok(())
}

async fn machines_of(state: Leases<'_>, request: &GpuRequest) -> Result<Vec<Vm>> {
    let mut machines = Vec::new();
    for host in &request.hosts {
        if let Some(vm) = state.store.get_vm(host).await? {
            machines.push(vm);
        }
    }
    Ok(machines)
}

/// Terminates every machine of the request and forgets those confirmed gone. `true` when
/// none is left.
async fn end_machines(state: Leases<'_>, request: &GpuRequest) -> Result<bool> {
    let machines = machines_of(state, request).await?;
    let ids: Vec<String> = machines
        .iter()
        .filter_map(|v| v.instance_id.clone())
        .collect();
    let confirmed = if ids.is_empty() {
        Vec::new()
    } else {
        state.compute.terminate(&ids).await?
    };
    let mut all_gone = true;
    for vm in &machines {
        let gone = vm
            .instance_id
            .as_ref()
            .is_none_or(|id| confirmed.contains(id));
        if gone {
            state
                .store
                .delete_vm(&vm.hostname, state.clock.now_millis())
                .await?;
            state.store.delete_logs(&vm.hostname).await?;
        } else {
            all_gone = false;
        }
    }
    Ok(all_gone)
}

async fn access_of(
    state: Leases<'_>,
    machines: &[Vm],
    request: &GpuRequest,
) -> Result<LeaseAccess> {
    let shapes = plan_machines(request.gpu_count, &state.config.gpu_shapes)?;
    let instances = state.compute.list_machines().await?;
    let address_of: HashMap<&str, Option<String>> = instances
        .iter()
        .map(|i| (i.id.as_str(), i.address.clone()))
        .collect();
    let hosts = machines
        .iter()
        .zip(shapes)
        .map(|(vm, shape)| {
            let instance_id = vm.instance_id.clone().unwrap_or_default();
            LeaseHost {
                hostname: vm.hostname.clone(),
                address: address_of.get(instance_id.as_str()).cloned().flatten(),
                instance_id,
                instance_type: shape.instance_type,
                gpus: shape.gpus,
            }
        })
        .collect();
    Ok(LeaseAccess {
        ssh_user: state.config.ssh_user.clone(),
        hosts,
    })
}
