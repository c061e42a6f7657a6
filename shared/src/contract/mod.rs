//! The store contract: every behaviour the core relies on, written once and run against
//! each `Store` adapter (SQLite here; DynamoDB in the integration tests). One file per concern,
//! as in the stores; the helpers that build records live here.

use std::collections::HashSet;
use std::sync::Arc;

use crate::domain::{
    Assignment, Email, GpuHealth, Operation, OperationKind, Pin, SeatToken, TokenHash, Vm,
    VmChange, VmStatus,
};
use crate::error::Error;
use crate::ports::{
    ClaimOutcome, ClaimRequest, CreateRequestOutcome, MoveOutcome, MoveSeat, Store,
};

mod api_keys;
mod command_log;
mod host_pools;
mod instances;
mod logs;
mod operations;
mod rate_limits;
mod requests;
mod spend;
mod vms;
mod work_store;

use api_keys::*;
use command_log::*;
use host_pools::*;
pub use instances::cloud_instance;
use instances::*;
use logs::*;
use operations::*;
use rate_limits::*;
use requests::*;
use spend::*;
pub use vms::claim_race;
use vms::*;
pub use work_store::{run_work_store, UrlClient};

/// Runs every contract check against a fresh, empty store.
pub async fn run_all(store: Arc<dyn Store>) {
    insert_get_and_duplicates(&*store).await;
    updates_follow_the_state_machine(&*store).await;
    free_count_and_claim_use_the_assignable_rule(&*store).await;
    same_email_gets_the_same_vm(&*store).await;
    quiet_vms_are_never_claimed_nor_counted(&*store).await;
    seats_are_found_reissued_and_moved(&*store).await;
    quiet_race(store.clone()).await;
    delete_removes(&*store).await;
    operations_one_at_a_time(&*store).await;
    logs_append_read_and_trim(&*store).await;
    logs_from_many_writers_are_all_kept(store.clone()).await;
    claim_race(store.clone(), "race", 200, 50).await;
    same_email_race(store.clone()).await;
    requests_quota_listing_and_state_machine(&*store).await;
    request_idempotency(&*store).await;
    quota_race(store.clone()).await;
    leased_vms_are_never_claimed(&*store).await;
    api_keys(&*store).await;
    instances_records(&*store).await;
    instance_idempotency(&*store).await;
    instance_saves_race(store.clone()).await;
    one_quota_for_requests_and_instances(&*store).await;
    instance_quota_race(store.clone()).await;
    rate_counters(store.clone()).await;
    command_log_pages_and_clears(&*store).await;
    host_pools_move_conditionally(store.clone()).await;
    final_sync_requests_are_kept(&*store).await;
    spend_moves_to_the_ledger_once(&*store).await;
    budget_race(store.clone()).await;
    a_retry_replays_even_when_its_first_took_the_budget(store.clone()).await;
}

/// A quota no test reaches (the quota has checks of its own).
pub(super) const UNLIMITED: u32 = 1_000_000;

pub(super) fn vm(hostname: &str, created_at: i64) -> Vm {
    Vm::new(hostname.to_string(), TokenHash::of(hostname), created_at)
}

pub(super) fn claim(email: &str) -> ClaimRequest {
    ClaimRequest {
        email: Email::parse(email).expect("test email"),
        crd_command: "DISPLAY= start-host --code=\"4/x\"".into(),
        pin: Pin::generate(),
        now: 1_000,
        seat_hash: SeatToken::generate(1_000).hash(),
        live_since: 0,
    }
}

pub(super) async fn running(store: &dyn Store, hostname: &str, created_at: i64) {
    store
        .insert_vm(&vm(hostname, created_at))
        .await
        .expect("insert");
    store
        .update_vm(hostname, &VmChange::Status(VmStatus::Running), created_at)
        .await
        .expect("running");
}

pub(super) async fn clear(store: &dyn Store) {
    for vm in store.list_vms().await.expect("list") {
        store.delete_vm(&vm.hostname, 0).await.expect("delete");
    }
}
