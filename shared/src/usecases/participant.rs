//! What a workshop participant does: see how many VMs are free, claim one, come back to it
//! with their seat credential, send a fresh CRD command, move off a VM that died.
//!
//! The seat credential is a random token handed out once, at the claim, as an HttpOnly
//! cookie and as a private link; only its hash is stored. Knowing someone's email is not
//! enough to see their VM: a repeat claim without the credential learns only that the
//! email already has a VM.

use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::domain::{CrdCommand, Email, Millis, Pin, SeatToken, Vm};
use crate::error::{Error, Result};
use crate::ports::{
    AssignmentNotifier, ClaimOutcome, ClaimRequest, Clock, MoveOutcome, MoveSeat, RateLimitStore,
    VmStore,
};
use crate::AppState;

/// What a participant's use cases use: the VMs, the claim counters, the time, the
/// wake-ups of waiting VMs and the settings.
#[derive(Clone, Copy)]
pub struct Seats<'a> {
    pub store: &'a dyn VmStore,
    pub counters: &'a dyn RateLimitStore,
    pub clock: &'a dyn Clock,
    pub notifier: &'a dyn AssignmentNotifier,
    pub config: &'a Config,
}

impl<'a> From<&'a AppState> for Seats<'a> {
    fn from(state: &'a AppState) -> Self {
        Seats {
            store: &*state.store,
            counters: &*state.store,
            clock: &*state.clock,
            notifier: &*state.notifier,
            config: &state.config,
        }
    }
}

/// The oldest `last_seen_at` that counts as alive now.
pub fn live_since(state: Seats<'_>) -> Millis {
    state.config.liveness().live_since(state.clock.now_millis())
}

/// Number of VMs a claim could get right now (`Vm::is_assignable`).
pub async fn free_vm_count(state: Seats<'_>) -> Result<u64> {
    state.store.count_assignable(live_since(state)).await
}

/// What the claim form sent, and who sent it.
#[derive(Debug, Clone, Copy)]
pub struct ClaimInput<'a> {
    pub email: &'a str,
    pub crd_command: &'a str,
    /// The join code typed into the form (checked when `GPUFLEET_JOIN_CODE` is set).
    pub join_code: Option<&'a str>,
    /// The seat cookie the browser sent, if any.
    pub seat_token: Option<&'a str>,
    /// The client's address (API Gateway's `sourceIp`, or the TCP peer locally).
    pub client_ip: &'a str,
}

/// How a claim ended.
#[derive(Debug, Clone)]
pub enum Claimed {
    /// A VM was assigned just now; `seat` goes to the participant (cookie and link) once.
    Assigned { vm: Vm, seat: SeatToken },
    /// This email already holds a VM and the caller's seat cookie proves it is theirs.
    Returning { vm: Vm },
    /// This email already holds a VM and the caller did not prove it is theirs: they learn
    /// nothing about it (no hostname, PIN or state).
    HeldElsewhere,
}

/// Checks the join code and the per-IP limit, validates the inputs, then assigns a free,
/// live VM to the email in one atomic store step with a fresh PIN and seat token. Nothing
/// changes on any refusal. A waiting VM is woken at once.
pub async fn claim_vm(state: Seats<'_>, input: ClaimInput<'_>) -> Result<Claimed> {
    check_join_code(state, input.join_code)?;
    let email = Email::parse(input.email)?;
    let crd = CrdCommand::parse(input.crd_command)?;
    check_claim_limit(state, input.client_ip).await?;
    let now = state.clock.now_millis();
    let seat = SeatToken::generate(now);
    let request = ClaimRequest {
        email,
        crd_command: crd.canonical(),
        pin: Pin::generate(),
        now,
        seat_hash: seat.hash(),
        live_since: state.config.liveness().live_since(now),
    };
    match state.store.claim_vm(&request).await? {
        ClaimOutcome::Assigned(vm) => {
            tracing::info!(hostname = %vm.hostname, "VM assigned");
            state.notifier.notify(&vm.hostname);
            Ok(Claimed::Assigned { vm, seat })
        }
        ClaimOutcome::AlreadyAssigned(vm) => {
            let proven = input
                .seat_token
                .and_then(SeatToken::parse)
                .zip(vm.assignment.as_ref().and_then(|a| a.seat_hash.as_ref()))
                .is_some_and(|(presented, stored)| {
                    presented.hash().as_bytes().ct_eq(stored.as_bytes()).into()
                });
            Ok(if proven {
                Claimed::Returning { vm }
            } else {
                Claimed::HeldElsewhere
            })
        }
        ClaimOutcome::NoneFree => Err(Error::NoVmAvailable),
    }
}

fn check_join_code(state: Seats<'_>, presented: Option<&str>) -> Result<()> {
    let Some(expected) = &state.config.join_code else {
        return Ok(());
    };
    let presented = presented.map(str::trim).unwrap_or_default();
    if presented.is_empty() {
        return Err(Error::validation(
            "enter the join code your organiser gave you",
        ));
    }
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(Error::validation(
            "that join code is not right; ask your organiser for it",
        ))
    }
}

/// The optional per-client-IP limit (`GPUFLEET_CLAIMS_PER_IP_PER_HOUR`), in fixed
/// one-hour windows counted in the store, so every Lambda instance shares it.
async fn check_claim_limit(state: Seats<'_>, client_ip: &str) -> Result<()> {
    let limit = state.config.claims_per_ip_per_hour;
    if limit == 0 {
        return Ok(());
    }
    let hits = hits_this_hour(state, &format!("claim-ip:{client_ip}")).await?;
    if hits > u64::from(limit) {
        return Err(Error::validation(format!(
            "too many claims from your network this hour (at most {limit}); ask your organiser"
        )));
    }
    Ok(())
}

/// Counts one hit on `bucket` in the current one-hour window (in the store, so every
/// process shares it) and returns the hits so far in it.
async fn hits_this_hour(state: Seats<'_>, bucket: &str) -> Result<u64> {
    const HOUR: Millis = 3_600_000;
    let now = state.clock.now_millis();
    let window = now - now.rem_euclid(HOUR);
    state
        .counters
        .count_hit(bucket, window, window + 2 * HOUR)
        .await
}

/// The VM whose participant holds `token`. A malformed or unknown token is `NotFound`,
/// the same either way.
pub async fn seat(state: Seats<'_>, token: &str) -> Result<Vm> {
    let not_found = || Error::NotFound("seat".into());
    let token = SeatToken::parse(token).ok_or_else(not_found)?;
    state
        .store
        .vm_by_seat(&token.hash())
        .await?
        .ok_or_else(not_found)
}

/// The participant sends a new CRD command (the first code expired, or they want to
/// register again): validated like the first, delivered to their VM's agent at once.
pub async fn resend_command(state: Seats<'_>, token: &str, crd_command: &str) -> Result<Vm> {
    let crd = CrdCommand::parse(crd_command)?;
    let vm = seat(state, token).await?;
    let vm = state
        .store
        .update_vm(
            &vm.hostname,
            &crate::domain::VmChange::NewCommand(crd.canonical()),
            state.clock.now_millis(),
        )
        .await?;
    state.notifier.notify(&vm.hostname);
    Ok(vm)
}

/// A participant whose VM died moves to a free, live VM: new hostname, new PIN, the same
/// email, seat and CRD command; the dead VM stays out of the pool, marked `error`. A
/// participant whose VM works cannot move themselves (an organiser can).
pub async fn move_to_working_vm(state: Seats<'_>, token: &str) -> Result<Vm> {
    let vm = seat(state, token).await?;
    let since = live_since(state);
    if !vm.is_dead(since) {
        return Err(Error::Conflict(
            "your VM is working; if you still need another one, ask your organiser".into(),
        ));
    }
    let seat_hash = SeatToken::parse(token).map(|t| t.hash());
    // A participant controls their VM (they can stop its agent): without a cap, one seat
    // could retire the whole pool one "dead" VM at a time.
    let bucket = format!("seat-move:{}", seat_hash.as_deref().unwrap_or_default());
    let moves = hits_this_hour(state, &bucket).await?;
    if moves > SELF_MOVES_PER_HOUR {
        return Err(Error::Conflict(format!(
            "you moved {SELF_MOVES_PER_HOUR} times this hour already; ask your organiser"
        )));
    }
    let why = death_reason(&vm, since);
    move_participant(state, &vm.hostname, seat_hash, None, &why).await
}

/// How often a participant may move themselves off a dead VM in one hour.
pub const SELF_MOVES_PER_HOUR: u64 = 2;

/// Why a VM counts as dead, for the record it leaves behind.
pub fn death_reason(vm: &Vm, live_since: Millis) -> String {
    if !vm.is_live(live_since) {
        "stopped responding".to_string()
    } else if let Some(reason) = &vm.status_reason {
        reason.clone()
    } else {
        format!("{} (GPU {})", vm.status.as_str(), vm.gpu_health.as_str())
    }
}

/// Moves the participant of `from` (with `seat_hash`, when they move themselves) to `to`
/// or any assignable VM. Shared by the participant's and the organiser's move.
pub(crate) async fn move_participant(
    state: Seats<'_>,
    from: &str,
    seat_hash: Option<String>,
    to: Option<&str>,
    why: &str,
) -> Result<Vm> {
    let now = state.clock.now_millis();
    let request = MoveSeat {
        from: from.to_string(),
        seat_hash,
        to: to.map(str::to_string),
        pin: Pin::generate(),
        reason: format!("participant moved to another VM: {why}"),
        live_since: state.config.liveness().live_since(now),
        now,
    };
    match state.store.move_seat(&request).await? {
        MoveOutcome::Moved(vm) => {
            tracing::info!(from = %from, to = %vm.hostname, "participant moved");
            state.notifier.notify(&vm.hostname);
            state.notifier.notify(from);
            Ok(*vm)
        }
        MoveOutcome::NoneFree => Err(match to {
            Some(to) => Error::Conflict(format!("VM {to} is not free and alive")),
            None => Error::NoVmAvailable,
        }),
    }
}
