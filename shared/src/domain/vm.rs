//! The VM record and its state machine.

use serde::{Deserialize, Serialize};

use super::costs::{Metering, Price, SpendKind, SpendRecord};
use super::metrics::StartupMetrics;
use super::secrets::TokenHash;
use crate::error::{Error, Result};

/// Milliseconds since the Unix epoch, UTC. Stores keep times in this form.
pub type Millis = i64;

/// What the VM says it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VmStatus {
    Initializing,
    Running,
    Error,
    Rebooting,
    Unknown,
}

impl VmStatus {
    pub const ALL: [VmStatus; 5] = [
        VmStatus::Initializing,
        VmStatus::Running,
        VmStatus::Error,
        VmStatus::Rebooting,
        VmStatus::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VmStatus::Initializing => "initializing",
            VmStatus::Running => "running",
            VmStatus::Error => "error",
            VmStatus::Rebooting => "rebooting",
            VmStatus::Unknown => "unknown",
        }
    }

    /// Strict parse: anything but the five names is an error, never silently ignored.
    pub fn parse(raw: &str) -> Result<Self> {
        VmStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                Error::validation(format!(
                    "status must be one of initializing, running, error, rebooting, unknown (got {raw:?})"
                ))
            })
    }

    /// The state machine. Reporting the current status again is always allowed (a
    /// heartbeat). A VM in `error` must go back through `initializing` or `rebooting`
    /// before it may report `running` again, so a stale report cannot slip a broken VM
    /// back into the pool of assignable machines. `unknown` (e.g. lost contact) may
    /// become anything.
    pub fn can_become(self, next: VmStatus) -> bool {
        use VmStatus::*;
        self == next
            || match self {
                Initializing => true,
                Running => true,
                Rebooting => true,
                Error => matches!(next, Initializing | Rebooting | Unknown),
                Unknown => true,
            }
    }
}

/// GPU health as the VM reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GpuHealth {
    #[serde(rename = "healthy")]
    Healthy,
    #[serde(rename = "unhealthy")]
    Unhealthy,
    /// No GPU, or not checked yet.
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl GpuHealth {
    pub const ALL: [GpuHealth; 3] = [
        GpuHealth::Healthy,
        GpuHealth::Unhealthy,
        GpuHealth::NotApplicable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GpuHealth::Healthy => "healthy",
            GpuHealth::Unhealthy => "unhealthy",
            GpuHealth::NotApplicable => "n/a",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        GpuHealth::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                Error::validation(format!(
                    "gpu_status must be one of healthy, unhealthy, n/a (got {raw:?})"
                ))
            })
    }
}

/// Who holds a VM, and what their VM must run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub email: String,
    /// The canonical CRD command (see `CrdCommand::canonical`).
    pub crd_command: String,
    pub pin: String,
    pub assigned_at: Millis,
    /// SHA-256 of the participant's seat token (their cookie and private seat link): the one
    /// credential that shows this seat. `None` for leases.
    pub seat_hash: Option<String>,
    /// When the current CRD command was set (the claim, or a command the participant sent
    /// again): the agent runs each command once, and a changed time means a new one.
    pub command_at: Millis,
}

/// Marks the pseudo-assignee of a VM leased to a provisioning request.
const LEASE_MARK: &str = "lease:";
/// Marks the pseudo-assignee of a VM a participant was moved off: it broke, or it holds
/// their remote-desktop registration, so it must never be handed to anyone again (even if
/// its agent comes back); only destroy removes it.
const RETIRED_MARK: &str = "retired:";

impl Assignment {
    /// Holds machine `index` of provisioning request `request_id`. A leased VM is "assigned"
    /// to `lease:<request>:<index>`, which has no '@' and so is never a participant's email:
    /// the one assignment rule keeps it out of every claim and free count, in every store,
    /// with no second rule to keep in step.
    pub fn lease(request_id: &str, index: usize, now: Millis) -> Self {
        Assignment {
            email: format!("{LEASE_MARK}{request_id}:{index}"),
            crd_command: String::new(),
            pin: String::new(),
            assigned_at: now,
            seat_hash: None,
            command_at: now,
        }
    }

    /// The assignment of a VM its participant was moved off (see `RETIRED_MARK`). Like a
    /// lease it has no '@', so the one assignment rule keeps the VM out of every claim.
    pub fn retired(hostname: &str, now: Millis) -> Self {
        Assignment {
            email: format!("{RETIRED_MARK}{hostname}"),
            crd_command: String::new(),
            pin: String::new(),
            assigned_at: now,
            seat_hash: None,
            command_at: now,
        }
    }

    pub fn is_retired(&self) -> bool {
        self.email.starts_with(RETIRED_MARK)
    }

    /// Whether a workshop participant holds the VM (not a lease, not retired).
    pub fn is_participant(&self) -> bool {
        !self.email.starts_with(LEASE_MARK) && !self.is_retired()
    }

    /// The provisioning request this VM is leased to, if it is.
    pub fn lease_request(&self) -> Option<&str> {
        let rest = self.email.strip_prefix(LEASE_MARK)?;
        rest.rsplit_once(':').map(|(request, _)| request)
    }
}

/// One VM, as every store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Vm {
    pub hostname: String,
    pub status: VmStatus,
    /// Why the VM is in `error`, when we know (e.g. the cloud refused to launch it).
    pub status_reason: Option<String>,
    pub gpu_health: GpuHealth,
    pub in_use: bool,
    pub assignment: Option<Assignment>,
    /// The compute provider's id for the machine (EC2 instance id, local pid tag).
    pub instance_id: Option<String>,
    pub token_hash: TokenHash,
    pub metrics: StartupMetrics,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Last time the VM itself called us.
    pub last_seen_at: Option<Millis>,
    /// When the admin last asked this VM for a final sync of the participant's work (before
    /// a destroy); its long-poll answers `collect` until the agent says it handled it.
    pub collect_requested_at: Option<Millis>,
    /// The latest final-sync request the VM's agent answered (its sync is done).
    pub collect_answered_at: Option<Millis>,
    /// Its price and start, once its machine started (see `domain::costs`).
    pub metering: Option<Metering>,
}

impl Vm {
    /// A final sync was asked for and is not answered yet.
    pub fn final_sync_pending(&self) -> bool {
        self.collect_requested_at
            .is_some_and(|r| self.collect_answered_at.is_none_or(|a| a < r))
    }
}

impl Vm {
    /// A freshly launched VM: booting, unassigned, GPU not yet checked.
    pub fn new(hostname: String, token_hash: TokenHash, now: Millis) -> Self {
        Vm {
            hostname,
            status: VmStatus::Initializing,
            status_reason: None,
            gpu_health: GpuHealth::NotApplicable,
            in_use: false,
            assignment: None,
            instance_id: None,
            token_hash,
            metrics: StartupMetrics::default(),
            created_at: now,
            updated_at: now,
            last_seen_at: None,
            collect_requested_at: None,
            collect_answered_at: None,
            metering: None,
        }
    }

    /// Its spend so far, once its machine started: running until the record ends (the
    /// store then moves the record's spend to the ledger with its end).
    pub fn spend_record(&self, ended_at: Option<Millis>) -> Option<SpendRecord> {
        let m = self.metering.as_ref()?;
        Some(SpendRecord {
            id: format!("vm:{}:{}", self.hostname, self.created_at),
            kind: if m.owner.is_some() || self.lease_request().is_some() {
                SpendKind::Lease
            } else {
                SpendKind::Vm
            },
            name: self.hostname.clone(),
            owner: m.owner.clone(),
            request_id: m.request_id.clone(),
            price: m.price.clone(),
            started_at: m.started_at,
            // A machine known to be gone spent nothing after that.
            ended_at: m.gone_at.or(ended_at),
        })
    }

    /// How long it has stood running and idle at `now`: no participant, or one who has not
    /// used it, since the latest of its start, its claim and its last reported use. `None`
    /// while it is in use, not running, or leased (a lease's owner decides).
    pub fn idle_for(&self, now: Millis) -> Option<Millis> {
        let m = self.metering.as_ref()?;
        if self.status != VmStatus::Running || self.in_use {
            return None;
        }
        let assignment = self.assignment.as_ref();
        if assignment.is_some_and(|a| !a.is_participant()) {
            return None;
        }
        let since = [
            Some(m.started_at),
            assignment.map(|a| a.assigned_at),
            m.last_busy_at,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(m.started_at);
        Some((now - since).max(0))
    }

    /// The provisioning request this VM is leased to, if it is.
    pub fn lease_request(&self) -> Option<&str> {
        self.assignment.as_ref().and_then(Assignment::lease_request)
    }

    /// The part of the assignment rule a record holds by itself: running, unassigned and not
    /// known to be unhealthy. Stores index such VMs (free index, free counter) and apply the
    /// liveness half of the rule when they claim or count.
    pub fn is_free_candidate(&self) -> bool {
        AssignableRule::holds(self.status, self.assignment.is_some(), self.gpu_health)
    }

    /// Heard from at or after `live_since` (see [`Liveness`]).
    pub fn is_live(&self, live_since: Millis) -> bool {
        self.last_seen_at.is_some_and(|t| t >= live_since)
    }

    /// THE assignment rule: a free candidate that was heard from at or after `live_since`.
    /// The claim, the free count and every view use it; a VM whose agent went quiet is
    /// never handed out, whether or not a sweep has marked it yet.
    pub fn is_assignable(&self, live_since: Millis) -> bool {
        self.is_free_candidate() && self.is_live(live_since)
    }

    /// Whether the VM is broken as far as its participant is concerned: gone quiet, in
    /// `error` or `unknown`, or with an unhealthy GPU. Such a participant may move.
    pub fn is_dead(&self, live_since: Millis) -> bool {
        !self.is_live(live_since)
            || matches!(self.status, VmStatus::Error | VmStatus::Unknown)
            || self.gpu_health == GpuHealth::Unhealthy
    }
}

/// How recently a VM must have called for it to count as alive
/// (`GPUFLEET_HEARTBEAT_TIMEOUT_SECONDS`). Agents heartbeat at a third of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub timeout_ms: i64,
}

impl Liveness {
    pub fn from_secs(secs: u64) -> Self {
        Liveness {
            timeout_ms: i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }

    /// The oldest `last_seen_at` that still counts as alive at `now`.
    pub fn live_since(&self, now: Millis) -> Millis {
        now.saturating_sub(self.timeout_ms)
    }

    /// How often an agent should call: three heartbeats fit in every window, so one lost
    /// call never takes a healthy VM out of the pool.
    pub fn heartbeat_interval_secs(&self) -> u64 {
        u64::try_from(self.timeout_ms / 3000).unwrap_or(1).max(1)
    }
}

/// The assignment rule in a form stores can translate into their own query language
/// (an SQL predicate, a DynamoDB condition), so the rule has one definition.
pub struct AssignableRule;

impl AssignableRule {
    /// The only status an assignable VM can have.
    pub const STATUS: VmStatus = VmStatus::Running;
    /// The GPU health that excludes a VM.
    pub const EXCLUDED_HEALTH: GpuHealth = GpuHealth::Unhealthy;

    pub fn holds(status: VmStatus, assigned: bool, gpu_health: GpuHealth) -> bool {
        status == Self::STATUS && !assigned && gpu_health != Self::EXCLUDED_HEALTH
    }
}

/// A change a VM (or the system) makes to its own record.
#[derive(Debug, Clone, PartialEq)]
pub enum VmChange {
    Status(VmStatus),
    GpuHealth(GpuHealth),
    InUse(bool),
    /// The compute provider started the machine, at this price (`None`: unknown); for a
    /// lease, `owner` is the API user it serves. A repeat (an adopted machine) keeps the
    /// first start and price, so nothing is counted twice.
    Launched {
        instance_id: String,
        price: Option<Price>,
        owner: Option<String>,
    },
    /// The system gave up on the VM (launch failed, it did not boot).
    Failed(String),
    /// Its machine no longer exists at the provider (`error`, with the reason): its spend
    /// stops here, though its record stays until a destroy.
    MachineGone(String),
    /// Merge startup-metric stages into the record.
    Metrics(StartupMetrics),
    /// The sweep stopped hearing from the VM (`unknown`, with the reason). Refused if the VM
    /// was heard from at or after `live_since` in the meantime. A VM that calls again may
    /// come back through the state machine (`unknown` may become anything).
    Lost {
        reason: String,
        live_since: Millis,
    },
    /// The participant sent a new CRD command (codes expire within minutes): the agent
    /// receives it like the first one. Only for a participant's VM.
    NewCommand(String),
    /// The VM reports that it is in `error`, and why (e.g. its remote-desktop host would not
    /// start); built by [`VmChange::reported_error`], which cleans the reason.
    ReportedError(String),
    /// The admin asks for a final sync of the participant's work (destroy does, first).
    CollectRequested(Millis),
    /// The agent finished the sync that answers the final-sync request made at this time.
    CollectAnswered(Millis),
}

/// Longest reason a VM may report, in characters.
pub const MAX_REPORTED_REASON: usize = 300;

impl VmChange {
    /// Whether this change comes from the VM itself (and so counts as "seen").
    pub fn is_report_from_vm(&self) -> bool {
        matches!(
            self,
            VmChange::Status(_)
                | VmChange::GpuHealth(_)
                | VmChange::InUse(_)
                | VmChange::Metrics(_)
                | VmChange::ReportedError(_)
                | VmChange::CollectAnswered(_)
        )
    }

    /// A VM's own `error` report with its reason: control characters become spaces, and
    /// the reason is cut to [`MAX_REPORTED_REASON`] characters (never inside one).
    pub fn reported_error(reason: &str) -> Result<Self> {
        let cleaned: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_REPORTED_REASON)
            .collect();
        let cleaned = cleaned.trim();
        if cleaned.is_empty() {
            return Err(Error::validation("reason must not be empty"));
        }
        Ok(VmChange::ReportedError(cleaned.to_string()))
    }

    /// Applies the change to a record, enforcing the state machine. Stores call this so
    /// the rules live here and nowhere else.
    pub fn apply(&self, vm: &mut Vm, now: Millis) -> Result<()> {
        match self {
            VmChange::Status(next) => {
                if !vm.status.can_become(*next) {
                    return Err(Error::Conflict(format!(
                        "VM {} cannot go from {} to {}",
                        vm.hostname,
                        vm.status.as_str(),
                        next.as_str()
                    )));
                }
                if vm.status != *next {
                    vm.status_reason = None;
                }
                vm.status = *next;
            }
            VmChange::GpuHealth(h) => vm.gpu_health = *h,
            VmChange::InUse(b) => {
                vm.in_use = *b;
                if let (true, Some(m)) = (*b, vm.metering.as_mut()) {
                    m.last_busy_at = Some(now);
                }
            }
            VmChange::Launched {
                instance_id,
                price,
                owner,
            } => {
                vm.instance_id = Some(instance_id.clone());
                if vm.metering.is_none() {
                    vm.metering = Some(Metering {
                        price: price.clone(),
                        started_at: now,
                        owner: owner.clone(),
                        request_id: vm.lease_request().map(str::to_string),
                        last_busy_at: None,
                        gone_at: None,
                    });
                }
            }
            VmChange::Failed(reason) | VmChange::ReportedError(reason) => {
                vm.status = VmStatus::Error;
                vm.status_reason = Some(reason.clone());
            }
            VmChange::MachineGone(reason) => {
                vm.status = VmStatus::Error;
                vm.status_reason = Some(reason.clone());
                if let Some(m) = vm.metering.as_mut() {
                    m.gone_at.get_or_insert(now);
                }
            }
            VmChange::Metrics(m) => vm.metrics.merge(m)?,
            VmChange::Lost { reason, live_since } => {
                if vm.is_live(*live_since) {
                    return Err(Error::Conflict(format!(
                        "VM {} was heard from again",
                        vm.hostname
                    )));
                }
                vm.status = VmStatus::Unknown;
                vm.status_reason = Some(reason.clone());
            }
            VmChange::NewCommand(command) => {
                let assignment = vm
                    .assignment
                    .as_mut()
                    .filter(|a| a.is_participant())
                    .ok_or_else(|| {
                        Error::Conflict(format!("VM {} has no participant", vm.hostname))
                    })?;
                assignment.crd_command = command.clone();
                // Strictly later, so the agent sees a change even within one millisecond.
                assignment.command_at = now.max(assignment.command_at + 1);
            }
            VmChange::CollectRequested(at) => {
                // Never earlier than a request the agent may already be answering.
                vm.collect_requested_at = Some(vm.collect_requested_at.map_or(*at, |t| t.max(*at)));
            }
            VmChange::CollectAnswered(at) => {
                vm.collect_answered_at = Some(vm.collect_answered_at.map_or(*at, |t| t.max(*at)));
            }
        }
        vm.updated_at = now;
        if self.is_report_from_vm() {
            vm.last_seen_at = Some(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> Vm {
        Vm::new("vm-1".into(), TokenHash::of("t"), 0)
    }

    #[test]
    fn assignable_rule_over_every_combination() {
        for status in VmStatus::ALL {
            for health in GpuHealth::ALL {
                for assigned in [false, true] {
                    let expected =
                        status == VmStatus::Running && !assigned && health != GpuHealth::Unhealthy;
                    let mut v = vm();
                    v.status = status;
                    v.gpu_health = health;
                    if assigned {
                        v.assignment = Some(Assignment {
                            email: "a@b.co".into(),
                            crd_command: "c".into(),
                            pin: "123456".into(),
                            assigned_at: 1,
                            seat_hash: None,
                            command_at: 1,
                        });
                    }
                    assert_eq!(
                        v.is_free_candidate(),
                        expected,
                        "{status:?} {health:?} {assigned}"
                    );
                    for (last_seen, live) in [(None, false), (Some(99), false), (Some(100), true)] {
                        v.last_seen_at = last_seen;
                        assert_eq!(v.is_assignable(100), expected && live, "{last_seen:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn strict_parsing() {
        assert_eq!(VmStatus::parse("running").unwrap(), VmStatus::Running);
        assert!(VmStatus::parse("Running").is_err());
        assert!(VmStatus::parse("available").is_err());
        assert_eq!(GpuHealth::parse("n/a").unwrap(), GpuHealth::NotApplicable);
        assert!(GpuHealth::parse("ok").is_err());
    }

    #[test]
    fn error_must_reinitialise_before_running() {
        let mut v = vm();
        VmChange::Failed("boom".into()).apply(&mut v, 1).unwrap();
        assert_eq!(v.status_reason.as_deref(), Some("boom"));
        assert!(VmChange::Status(VmStatus::Running)
            .apply(&mut v, 2)
            .is_err());
        assert_eq!(
            v.status,
            VmStatus::Error,
            "a refused change changes nothing"
        );
        VmChange::Status(VmStatus::Initializing)
            .apply(&mut v, 3)
            .unwrap();
        VmChange::Status(VmStatus::Running)
            .apply(&mut v, 4)
            .unwrap();
        assert_eq!(v.status, VmStatus::Running);
        assert_eq!(v.status_reason, None);
        assert_eq!(v.last_seen_at, Some(4));
    }
}
