//! The DynamoDB store: one table, every port, one file per concern. Table design and access
//! patterns: docs/dynamodb.md. Reads are keyed gets and queries, except the admin listings
//! of kinds that have no index (`scan_prefix`).
//!
//! - VM items carry a `version`; every write is conditional on it (optimistic concurrency),
//!   so read-modify-write never loses an update.
//! - Free candidates (running, unassigned, GPU not unhealthy) also carry `free_pk`/`free_sk`,
//!   which puts them in the sparse `free` index sorted by when the VM last called; the claim
//!   queries the live end of it (`free_sk >= live_since`) and then takes one candidate with
//!   a transaction that is conditional on the candidate still being assignable and live and
//!   on the email having no VM yet (an `EMAIL#` item). Losing a race moves on to the next.
//! - The free count is a counter of candidates, changed in the same transaction as any write
//!   that makes a VM one or not, minus the candidates that went quiet (a count query over
//!   the old end of the index: few items, since the sweep marks quiet VMs).
//! - A participant's seat token is found through a `SEAT#<hash>` item naming the VM; it is
//!   written, moved and deleted in the same transactions as the assignment.
//! - Logs are chunk items of whole lines (≤ 64 KiB each) under the VM's log partition, with
//!   a meta item holding the byte total and next sequence number.
//!
//! Length: the client helpers every concern shares (get, put, transact, query, scan with
//! pagination and error codes), ~520 lines; the rest is tests.

use std::collections::HashMap;

use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConsumedCapacity, Delete, DeleteRequest,
    GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, Put,
    ReturnConsumedCapacity, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem,
    Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use rand::seq::SliceRandom;

use super::RequestStats;
use crate::domain::command_log::CommandEntry;
use crate::domain::instances::CloudInstance;
use crate::domain::logs::chunk_lines;
use crate::domain::{ApiKey, GpuRequest, RequestChange};
use crate::domain::{
    AssignableRule, Assignment, GpuHealth, Millis, Operation, OperationStatus, StartupMetrics,
    TokenHash, Vm, VmChange, VmStatus,
};
use crate::error::{Error, Result};
use crate::ports::{
    ApiKeyStore, ClaimOutcome, ClaimRequest, CommandLogStore, CreateInstanceOutcome,
    CreateRequestOutcome, HostPoolStore, Idempotency, InstanceStore, LogPage, LogStore,
    MoveOutcome, MoveSeat, OperationStore, RateLimitStore, RequestStore, StoreHealth, VmStore,
};

mod api_keys;
mod codec;
mod command_log;
mod host_pools;
mod idempotency;
mod instances;
mod logs;
mod operations;
mod rate_limits;
mod requests;
mod schema;
mod spend;
mod vms;

use codec::*;
use idempotency::*;
use operations::*;
use requests::*;

pub use schema::table;

/// How long operation records and log chunks of VMs nobody deleted are kept.
const EPHEMERAL_TTL_SECONDS: i64 = 30 * 24 * 3600;
/// Candidates fetched per query of the free index.
const CLAIM_PAGE: i32 = 50;
/// Candidates tried from one page before fetching a fresh one.
const TRIES_PER_PAGE: usize = 2;
/// Bounded retries of optimistic writes; contention beyond this is reported, not looped on.
const MAX_ATTEMPTS: usize = 50;

const COUNTER_PK: &str = "COUNTER";
const COUNTER_FREE_SK: &str = "FREE";
const LOCK_PK: &str = "LOCK";
const LOCK_SK: &str = "OPERATION";

fn capacity_of(c: Option<&ConsumedCapacity>) -> f64 {
    c.and_then(|c| c.capacity_units()).unwrap_or(0.0)
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    stats: Arc<RequestStats>,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([
        (table::PARTITION_KEY.to_string(), s(pk)),
        (table::SORT_KEY.to_string(), s(sk)),
    ])
}

fn vm_pk(hostname: &str) -> String {
    format!("VM#{hostname}")
}

fn email_pk(email: &str) -> String {
    format!("EMAIL#{email}")
}

fn seat_pk(seat_hash: &str) -> String {
    format!("SEAT#{seat_hash}")
}

/// The free index's sort key: when the VM last called (zero-padded, so it sorts as text),
/// then the hostname. `live_since` maps onto the same scale with [`free_sk_bound`].
fn free_sk(vm: &Vm) -> String {
    format!(
        "{}#{}",
        free_sk_bound(vm.last_seen_at.unwrap_or(0)),
        vm.hostname
    )
}

fn free_sk_bound(millis: Millis) -> String {
    format!("{:020}", millis.max(0))
}

fn logs_pk(hostname: &str) -> String {
    format!("LOGS#{hostname}")
}

fn chunk_sk(seq: i64) -> String {
    format!("CHUNK#{seq:020}")
}

/// Sorts VMs by creation time, then hostname (as SQLite orders them).
fn order_key(vm: &Vm) -> String {
    format!("{:020}#{}", vm.created_at.max(0), vm.hostname)
}

fn internal(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow!("DynamoDB {context}: {e}"))
}

/// The error code of a failed call (matched by code, never by message).
fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<String> {
    e.as_service_error()
        .and_then(|s| s.code())
        .map(str::to_string)
}

/// Why a transaction was cancelled: one code per item ("None" for items that were fine).
fn cancellation_codes(
    e: &SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        impl std::fmt::Debug,
    >,
) -> Option<Vec<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match e.as_service_error()? {
        E::TransactionCanceledException(t) => Some(
            t.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_string())
                .collect(),
        ),
        _ => None,
    }
}

fn retryable_code(code: &str) -> bool {
    matches!(
        code,
        "TransactionConflict"
            | "TransactionConflictException"
            | "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TransactionInProgressException"
    )
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn counter_update(table_name: &str, delta: i64) -> Result<TransactWriteItem> {
    Ok(TransactWriteItem::builder()
        .update(
            Update::builder()
                .table_name(table_name)
                .set_key(Some(key(COUNTER_PK, COUNTER_FREE_SK)))
                .update_expression("ADD #value :delta")
                .expression_attribute_names("#value", "value")
                .expression_attribute_values(":delta", n(delta))
                .build()
                .map_err(|e| internal("building a counter update", e))?,
        )
        .build())
}

impl DynamoStore {
    /// A store over `table`, with a client configured from the standard AWS environment
    /// (region, credentials, and `AWS_ENDPOINT_URL` for an emulator).
    pub async fn from_env(table: impl Into<String>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(Client::new(&config), table)
    }

    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            stats: Arc::new(RequestStats::default()),
        }
    }

    pub fn stats(&self) -> Arc<RequestStats> {
        self.stats.clone()
    }

    async fn get(&self, pk: &str, sk: &str, consistent: bool) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(consistent)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| internal("GetItem", DisplayErrorContext(e)))?;
        self.stats
            .record("GetItem", capacity_of(out.consumed_capacity()));
        Ok(out.item().cloned())
    }

    async fn get_vm_versioned(
        &self,
        hostname: &str,
        consistent: bool,
    ) -> Result<Option<(Vm, u64)>> {
        self.get(&vm_pk(hostname), "VM", consistent)
            .await?
            .map(|item| item_to_vm(&item))
            .transpose()
    }

    /// Runs a transaction. `Ok(None)` means it committed; `Ok(Some(codes))` that it was
    /// cancelled, with one reason code per item.
    /// Runs a query to its last page (following `LastEvaluatedKey`), counting each request.
    async fn query_all(
        &self,
        what: &str,
        query: impl Fn(Option<Item>) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = query(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| internal(what, DisplayErrorContext(e)))?;
            self.stats
                .record("Query", capacity_of(out.consumed_capacity()));
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
    }

    fn update_item(
        &self,
        item_key: Item,
        expression: &str,
        condition: Option<&str>,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(item_key))
            .update_expression(expression);
        if let Some(c) = condition {
            update = update.condition_expression(c);
        }
        for (k, v) in values {
            update = update.expression_attribute_values(k, v);
        }
        Ok(TransactWriteItem::builder()
            .update(
                update
                    .build()
                    .map_err(|e| internal("building an update", e))?,
            )
            .build())
    }

    async fn get_item(&self, item_key: Item, consistent: bool) -> Result<Option<Item>> {
        let pk = get_s(&item_key, table::PARTITION_KEY).unwrap_or_default();
        let sk = get_s(&item_key, table::SORT_KEY).unwrap_or_default();
        self.get(&pk, &sk, consistent).await
    }

    /// Every item whose partition key starts with `prefix`: a filtered scan of the whole
    /// table. Only for admin listings of kinds with no index (API keys, instances, requests
    /// and host pools of all users), read a handful of times a day.
    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix))
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| internal("Scan", DisplayErrorContext(e)))?;
            self.stats
                .record("Scan", capacity_of(out.consumed_capacity()));
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Option<Vec<String>>> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                let capacity = out
                    .consumed_capacity()
                    .iter()
                    .filter_map(|c| c.capacity_units())
                    .sum();
                self.stats.record("TransactWriteItems", capacity);
                Ok(None)
            }
            Err(e) => {
                self.stats.record("TransactWriteItems", 0.0);
                if let Some(codes) = cancellation_codes(&e) {
                    return Ok(Some(codes));
                }
                match code(&e) {
                    Some(c) if retryable_code(&c) => Ok(Some(vec![c])),
                    _ => Err(internal("TransactWriteItems", DisplayErrorContext(e))),
                }
            }
        }
    }

    fn put_item(
        &self,
        item: Item,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        for (k, v) in values {
            put = put.expression_attribute_values(k, v);
        }
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(|e| internal("building a put", e))?)
            .build())
    }

    fn delete_item(
        &self,
        item_key: Item,
        condition: Option<(&str, Vec<(&str, AttributeValue)>)>,
    ) -> Result<TransactWriteItem> {
        let mut delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(item_key));
        if let Some((expr, values)) = condition {
            delete = delete.condition_expression(expr);
            for (k, v) in values {
                delete = delete.expression_attribute_values(k, v);
            }
        }
        Ok(TransactWriteItem::builder()
            .delete(
                delete
                    .build()
                    .map_err(|e| internal("building a delete", e))?,
            )
            .build())
    }

    /// Writes `vm` over the stored version `expected` (or as new when `None`), adjusting the
    /// free counter when assignability changes. `Ok(false)`: lost a race, re-read and retry.
    async fn write_vm(&self, vm: &Vm, expected: Option<(u64, bool)>) -> Result<VmWrite> {
        let (version, was_assignable) = expected.map_or((1, false), |(v, a)| (v + 1, a));
        let item = vm_to_item(vm, version)?;
        let write = match expected {
            None => self.put_item(item, "attribute_not_exists(pk)", vec![])?,
            Some((v, _)) => self.put_item(item, "version = :v", vec![(":v", n(v))])?,
        };
        let mut items = vec![write];
        let delta = i64::from(vm.is_free_candidate()) - i64::from(was_assignable);
        if delta != 0 {
            items.push(counter_update(&self.table, delta)?);
        }
        if items.len() == 1 {
            let Some(put) = items.pop().and_then(|i| i.put) else {
                return Err(internal("writing a VM", "no put"));
            };
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(put.item))
                .condition_expression(put.condition_expression.unwrap_or_default())
                .set_expression_attribute_values(put.expression_attribute_values)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            return match result {
                Ok(out) => {
                    self.stats
                        .record("PutItem", capacity_of(out.consumed_capacity()));
                    Ok(VmWrite::Written)
                }
                Err(e) => {
                    self.stats.record("PutItem", 0.0);
                    match code(&e).as_deref() {
                        Some("ConditionalCheckFailedException") => Ok(VmWrite::ConditionFailed),
                        Some(c) if retryable_code(c) => Ok(VmWrite::Transient),
                        _ => Err(internal("PutItem", DisplayErrorContext(e))),
                    }
                }
            };
        }
        Ok(VmWrite::of_transaction(self.transact(items).await?))
    }
}

/// How one conditional VM write ended.
#[derive(Debug, PartialEq, Eq)]
enum VmWrite {
    Written,
    /// The VM's own condition failed: it exists already (insert), or changed (update).
    ConditionFailed,
    /// Throttled or a conflicting transaction: worth another try, says nothing about the VM.
    Transient,
}

impl VmWrite {
    /// From a transaction whose first item is the VM's put: `None` when it went through,
    /// else the cancellation (or retryable error) codes.
    fn of_transaction(cancelled: Option<Vec<String>>) -> VmWrite {
        match cancelled {
            None => VmWrite::Written,
            Some(codes) if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") => {
                VmWrite::ConditionFailed
            }
            Some(_) => VmWrite::Transient,
        }
    }
}

enum TryClaim {
    Won,
    /// The VM was taken first (or a transient conflict).
    Lost,
    /// This email already holds a VM.
    EmailHasAVm,
}

/// A read: DynamoDB's writes fail only with the service.
#[async_trait]
impl StoreHealth for DynamoStore {
    async fn ping(&self) -> Result<()> {
        self.get(COUNTER_PK, COUNTER_FREE_SK, false)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_vms_own_condition_means_it_exists_or_changed() {
        assert_eq!(VmWrite::of_transaction(None), VmWrite::Written);
        let codes = |c: &[&str]| Some(c.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            VmWrite::of_transaction(codes(&["ConditionalCheckFailed", "None"])),
            VmWrite::ConditionFailed
        );
        // Throttling, a conflicting transaction or the counter's item: try again, never
        // "already exists".
        for other in [
            &["ThrottlingError", "None"][..],
            &["TransactionConflict", "None"],
            &["None", "ConditionalCheckFailed"],
            &["ProvisionedThroughputExceededException"],
        ] {
            assert_eq!(
                VmWrite::of_transaction(codes(other)),
                VmWrite::Transient,
                "{other:?}"
            );
        }
    }
}
