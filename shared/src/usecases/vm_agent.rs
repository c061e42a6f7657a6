//! What a VM's agent does: authenticate with its token, report its state, wait for its
//! assignment.

use std::time::Duration;

use crate::config::Config;
use crate::domain::logs::clean_lines;
use crate::domain::{Millis, StartupMetrics, TokenHash, Vm, VmChange, VmStatus};
use crate::error::{Error, Result};
use crate::ports::VmStore;
use crate::ports::{AssignmentNotifier, Clock, Store};
use crate::AppState;

/// What the VM agent's use cases use: the store (the VM, its logs), the wake-ups of its
/// long-poll, the time, the settings, and what a provisioning request needs, since a
/// machine's report may complete its request.
#[derive(Clone, Copy)]
pub struct Agents<'a> {
    pub store: &'a dyn Store,
    pub notifier: &'a dyn AssignmentNotifier,
    pub clock: &'a dyn Clock,
    pub config: &'a Config,
    pub leases: super::requests::Leases<'a>,
}

impl<'a> From<&'a AppState> for Agents<'a> {
    fn from(state: &'a AppState) -> Self {
        Agents {
            store: &*state.store,
            notifier: &*state.notifier,
            clock: &*state.clock,
            config: &state.config,
            leases: state.into(),
        }
    }
}

/// A VM that proved who it is with its own token. Only `authenticate` makes one, so a use
/// case that takes it cannot be reached without that proof.
#[derive(Debug, Clone)]
pub struct AuthenticatedVm(Vm);

impl AuthenticatedVm {
    pub fn hostname(&self) -> &str {
        &self.0.hostname
    }

    /// The VM as it was when it authenticated.
    pub fn vm(&self) -> &Vm {
        &self.0
    }
}

/// Loads the VM and checks the presented bearer token against its stored hash.
/// `Unauthorized` for an unknown hostname and for a missing or foreign token alike (and
/// after the same work), so nobody can probe which hostnames exist.
pub async fn authenticate(
    vms: &dyn VmStore,
    hostname: &str,
    token: Option<&str>,
) -> Result<AuthenticatedVm> {
    let vm = vms.get_vm(hostname).await?;
    let hash = vm
        .as_ref()
        .map_or_else(|| TokenHash::of(UNKNOWN_VM), |v| v.token_hash.clone());
    let matches = token.is_some_and(|t| hash.matches(t));
    match vm {
        Some(vm) if matches => Ok(AuthenticatedVm(vm)),
        _ => Err(Error::Unauthorized),
    }
}

/// Compared against for unknown hostnames; no VM token can equal it (tokens are hex).
const UNKNOWN_VM: &str = "no such VM";

/// A VM reports a change about itself (status, GPU health, in-use, metrics).
pub async fn report(state: Agents<'_>, vm: &AuthenticatedVm, change: VmChange) -> Result<Vm> {
    let hostname = vm.hostname();
    let vm = state
        .store
        .update_vm(hostname, &change, state.clock.now_millis())
        .await?;
    // A machine of a provisioning request coming up may complete its request.
    let came_up = change == VmChange::Status(VmStatus::Running);
    if let (Some(request_id), true) = (vm.lease_request(), came_up) {
        if let Err(e) = super::requests::on_machine_report(state.leases, request_id).await {
            tracing::warn!(%hostname, error = ?e, "could not settle the machine's request; the sweep will");
        }
    }
    Ok(vm)
}

/// The answer to a `/vm_startup` long-poll.
#[derive(Debug, Clone, PartialEq)]
pub enum StartupAnswer {
    Assigned {
        pin: String,
        command: String,
        /// When this command was set: the agent passes it back as `after` and is answered
        /// again only when the participant sends a new command.
        command_at: Millis,
    },
    /// The VM belongs to a provisioning request: nobody will be assigned to it.
    Leased {
        request_id: String,
    },
    /// The admin asks for a final sync of the participant's work (a destroy is coming); the
    /// agent passes `requested_at` back as `collected` so it is asked once.
    Collect {
        requested_at: Millis,
    },
    Waiting,
}

/// What the agent has already seen, so the long-poll answers only with something newer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// The `command_at` of the command the agent already ran.
    pub command_at: Option<Millis>,
    /// The final-sync request the agent already handled.
    pub collect_requested_at: Option<Millis>,
}

/// Returns the VM's assignment as soon as it exists (once seen: as soon as its command is
/// newer), a final-sync request newer than the one seen, or `Waiting` after `timeout`. The wait parks one task; it holds no
/// thread and no store connection.
pub async fn wait_for_assignment(
    state: Agents<'_>,
    vm: &AuthenticatedVm,
    seen: Seen,
    timeout: Duration,
) -> Result<StartupAnswer> {
    let after = seen.command_at;
    let hostname = vm.hostname();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Subscribe before reading, so an assignment landing in between still wakes us.
        let wakeup = state.notifier.subscribe(hostname);
        let vm = state
            .store
            .get_vm(hostname)
            .await?
            .ok_or(Error::Unauthorized)?;
        if let Some(requested_at) = vm
            .collect_requested_at
            .filter(|at| seen.collect_requested_at.is_none_or(|s| *at > s))
        {
            return Ok(StartupAnswer::Collect { requested_at });
        }
        if let Some(request_id) = vm.lease_request() {
            return Ok(StartupAnswer::Leased {
                request_id: request_id.to_string(),
            });
        }
        if let Some(a) = vm
            .assignment
            .filter(|a| a.is_participant() && after.is_none_or(|t| a.command_at > t))
        {
            return Ok(StartupAnswer::Assigned {
                pin: a.pin,
                command: a.crd_command,
                command_at: a.command_at,
            });
        }
        if tokio::time::timeout_at(deadline, wakeup).await.is_err() {
            return Ok(StartupAnswer::Waiting);
        }
    }
}

/// A VM reports startup timings (any subset of stages; see `StartupMetrics`).
pub async fn report_metrics(
    state: Agents<'_>,
    vm: &AuthenticatedVm,
    metrics: StartupMetrics,
) -> Result<Vm> {
    report(state, vm, VmChange::Metrics(metrics)).await
}

/// Appends log messages to a VM's log: cleaned (ANSI stripped, split into lines) and
/// capped. Callers authenticate first (VM token, admin, or the CloudWatch subscription).
/// Returns how many lines were kept.
pub async fn append_logs<S: AsRef<str>>(
    state: Agents<'_>,
    hostname: &str,
    messages: &[S],
) -> Result<usize> {
    if state.store.get_vm(hostname).await?.is_none() {
        return Err(Error::NotFound(format!("VM {hostname}")));
    }
    let lines = clean_lines(messages);
    state
        .store
        .append_logs(
            hostname,
            &lines,
            state.config.log_cap_bytes,
            state.clock.now_millis(),
        )
        .await?;
    Ok(lines.len())
}

/// Lines a VM's CloudWatch agent wrote, delivered by the log subscription: filed under the
/// VM only when the stream carries that VM's proof (`TokenHash::log_stream`), which another
/// VM (whose role may write any stream of the group) cannot compute. A stream naming no VM
/// is `NotFound`; one with a wrong proof is `Forbidden`.
pub async fn append_stream_logs<S: AsRef<str>>(
    state: Agents<'_>,
    stream: &str,
    messages: &[S],
) -> Result<usize> {
    let hostname = crate::domain::secrets::log_stream_hostname(stream)
        .ok_or_else(|| Error::NotFound(format!("log stream {stream}")))?;
    let vm = state
        .store
        .get_vm(hostname)
        .await?
        .ok_or_else(|| Error::NotFound(format!("VM {hostname}")))?;
    if vm.token_hash.owns_log_stream(stream).is_none() {
        return Err(Error::Forbidden(format!(
            "log stream {stream} does not carry {hostname}'s proof"
        )));
    }
    append_logs(state, hostname, messages).await
}

/// The same, for a VM pushing its own logs with its token.
pub async fn push_own_logs<S: AsRef<str>>(
    state: Agents<'_>,
    vm: &AuthenticatedVm,
    messages: &[S],
) -> Result<usize> {
    append_logs(state, vm.hostname(), messages).await
}
