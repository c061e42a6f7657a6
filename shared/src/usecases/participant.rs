//! What a workshop participant does: see how many VMs are free, claim one.

use crate::domain::{CrdCommand, Email, Pin, Vm};
use crate::error::{Error, Result};
use crate::ports::{ClaimOutcome, ClaimRequest};
use crate::AppState;

/// Number of VMs a claim could get right now (`Vm::is_assignable`).
pub async fn free_vm_count(state: &AppState) -> Result<u64> {
    state.store.count_assignable().await
}

/// A claim's result: the VM, and whether this email already held it.
#[derive(Debug, Clone)]
pub struct ClaimedVm {
    pub vm: Vm,
    pub rejoined: bool,
}

/// Validates the inputs, then assigns a free VM to `email` in one atomic store step, with
/// a fresh PIN. The same email gets its existing VM back. A waiting VM is woken at once.
pub async fn claim_vm(state: &AppState, email: &str, crd_command: &str) -> Result<ClaimedVm> {
    let email = Email::parse(email)?;
    let crd = CrdCommand::parse(crd_command)?;
    let request = ClaimRequest {
        email,
        crd_command: crd.canonical(),
        pin: Pin::generate(),
        now: state.clock.now_millis(),
    };
    match state.store.claim_vm(&request).await? {
        ClaimOutcome::Assigned(vm) => {
            tracing::info!(hostname = %vm.hostname, "VM assigned");
            state.notifier.notify(&vm.hostname);
            Ok(ClaimedVm {
                vm,
                rejoined: false,
            })
        }
        ClaimOutcome::AlreadyAssigned(vm) => Ok(ClaimedVm { vm, rejoined: true }),
        ClaimOutcome::NoneFree => Err(Error::NoVmAvailable),
    }
}
