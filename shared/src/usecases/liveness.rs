//! The liveness sweep: VMs that stopped calling leave the pool and say why. Claims already
//! skip quiet VMs by themselves (the assignment rule has the liveness condition); the sweep
//! makes the records tell the truth (`unknown` with the reason, out of the free index) and
//! fails VMs that never finished booting. Local mode runs it on a timer; on AWS the
//! scheduled reconcile runs it.

use serde::Serialize;

use crate::config::Config;
use crate::domain::{VmChange, VmStatus};
use crate::error::{Error, Result};
use crate::ports::{Clock, VmStore};

#[derive(Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LivenessReport {
    /// Running (or rebooting) VMs not heard from within the heartbeat timeout: now `unknown`.
    pub lost: Vec<String>,
    /// VMs still `initializing` past the boot timeout: now `error`.
    pub boot_timed_out: Vec<String>,
}

impl LivenessReport {
    pub fn is_empty(&self) -> bool {
        self.lost.is_empty() && self.boot_timed_out.is_empty()
    }
}

pub async fn sweep(
    vms: &dyn VmStore,
    clock: &dyn Clock,
    config: &Config,
) -> Result<LivenessReport> {
    let now = clock.now_millis();
    let liveness = config.liveness();
    let live_since = liveness.live_since(now);
    let boot_ms = i64::try_from(config.boot_timeout.as_millis()).unwrap_or(i64::MAX);
    let mut report = LivenessReport::default();
    for vm in vms.list_vms().await? {
        let change = match vm.status {
            VmStatus::Running | VmStatus::Rebooting if !vm.is_live(live_since) => VmChange::Lost {
                reason: format!(
                    "no heartbeat for more than {} s",
                    config.heartbeat_timeout.as_secs()
                ),
                live_since,
            },
            // From the later of its launch and its last call: an agent that restarts reports
            // `initializing` again and gets a whole boot window to come back up.
            VmStatus::Initializing
                if now.saturating_sub(vm.created_at.max(vm.last_seen_at.unwrap_or(0)))
                    > boot_ms =>
            {
                VmChange::Failed(format!(
                    "did not finish booting within {} s",
                    config.boot_timeout.as_secs()
                ))
            }
            _ => continue,
        };
        match vms.update_vm(&vm.hostname, &change, now).await {
            Ok(_) => {
                if matches!(change, VmChange::Failed(_)) {
                    report.boot_timed_out.push(vm.hostname);
                } else {
                    report.lost.push(vm.hostname);
                }
            }
            // Heard from again, or gone, since the listing: nothing to mark.
            Err(Error::Conflict(_) | Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if !report.is_empty() {
        tracing::warn!(?report, "liveness sweep marked VMs");
    }
    Ok(report)
}
