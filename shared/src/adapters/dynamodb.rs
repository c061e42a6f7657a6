//! The DynamoDB store: one table, every port, no scans. Table design and access patterns:
//! docs/dynamodb.md.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

use crate::domain::command_log::CommandEntry;
use crate::domain::instances::CloudInstance;
use crate::domain::logs::{chunk_lines, line_bytes};
use crate::domain::{ApiKey, GpuRequest, RequestChange};
use crate::domain::{
    AssignableRule, Assignment, GpuHealth, Millis, Operation, OperationStatus, StartupMetrics,
    TokenHash, Vm, VmChange, VmStatus,
};
use crate::error::{Error, Result};
use crate::ports::{
    ApiKeyStore, ClaimOutcome, ClaimRequest, CommandLogStore, CreateInstanceOutcome,
    CreateRequestOutcome, HostPoolStore, Idempotency, InstanceStore, LogPage, LogStore,
    MoveOutcome, MoveSeat, OperationStore, RateLimitStore, RequestStore, VmStore,
};

/// The table's definition: the one source the bootstrap command, the tests and the SAM
/// template check read.
pub mod table {
    pub const PARTITION_KEY: &str = "pk";
    pub const SORT_KEY: &str = "sk";
    /// Sparse index of assignable VMs, oldest first.
    pub const FREE_INDEX: &str = "free";
    pub const FREE_PK: &str = "free_pk";
    pub const FREE_SK: &str = "free_sk";
    /// Index of every VM, oldest first (admin listing without a scan).
    pub const VMS_INDEX: &str = "vms";
    pub const VMS_PK: &str = "vms_pk";
    pub const VMS_SK: &str = "vms_sk";
    /// Provisioning requests per user, newest first.
    pub const REQUESTS_INDEX: &str = "requests";
    pub const REQUESTS_PK: &str = "req_pk";
    pub const REQUESTS_SK: &str = "req_sk";
    /// Epoch seconds after which DynamoDB may delete an ephemeral item.
    pub const TTL_ATTRIBUTE: &str = "expires_at";
}

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

/// Requests and consumed capacity, per operation kind (for the cost measurements).
#[derive(Default, Debug)]
pub struct RequestStats {
    counts: std::sync::Mutex<HashMap<&'static str, (u64, f64)>>,
    total: AtomicU64,
}

impl RequestStats {
    pub(crate) fn record(&self, op: &'static str, capacity: f64) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = counts.entry(op).or_default();
        entry.0 += 1;
        entry.1 += capacity;
    }

    /// Total requests so far.
    pub fn requests(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// (requests, consumed capacity units) per DynamoDB operation.
    pub fn snapshot(&self) -> HashMap<&'static str, (u64, f64)> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn capacity(&self) -> f64 {
        self.snapshot().values().map(|(_, c)| c).sum()
    }
}

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

fn vm_to_item(vm: &Vm, version: u64) -> Result<Item> {
    let mut item = key(vm_pk(&vm.hostname), "VM");
    let order = order_key(vm);
    item.insert("hostname".into(), s(&vm.hostname));
    item.insert("status".into(), s(vm.status.as_str()));
    item.insert("gpu_health".into(), s(vm.gpu_health.as_str()));
    item.insert("in_use".into(), AttributeValue::Bool(vm.in_use));
    item.insert("token_hash".into(), s(vm.token_hash.as_str()));
    item.insert(
        "metrics".into(),
        s(serde_json::to_string(&vm.metrics).map_err(|e| internal("encoding metrics", e))?),
    );
    item.insert("created_at".into(), n(vm.created_at));
    item.insert("updated_at".into(), n(vm.updated_at));
    item.insert("version".into(), n(version));
    item.insert(table::VMS_PK.into(), s("VM"));
    item.insert(table::VMS_SK.into(), s(&order));
    if let Some(reason) = &vm.status_reason {
        item.insert("status_reason".into(), s(reason));
    }
    if let Some(id) = &vm.instance_id {
        item.insert("instance_id".into(), s(id));
    }
    if let Some(t) = vm.last_seen_at {
        item.insert("last_seen_at".into(), n(t));
    }
    if let Some(a) = &vm.assignment {
        item.insert("email".into(), s(&a.email));
        item.insert("crd_command".into(), s(&a.crd_command));
        item.insert("pin".into(), s(&a.pin));
        item.insert("assigned_at".into(), n(a.assigned_at));
        item.insert("command_at".into(), n(a.command_at));
        if let Some(h) = &a.seat_hash {
            item.insert("seat_hash".into(), s(h));
        }
    }
    if vm.is_free_candidate() {
        item.insert(table::FREE_PK.into(), s("FREE"));
        item.insert(table::FREE_SK.into(), s(free_sk(vm)));
    }
    Ok(item)
}

fn item_to_vm(item: &Item) -> Result<(Vm, u64)> {
    let bad = |what: &str| internal("decoding a VM", format!("bad or missing {what}"));
    let text = |name: &str| get_s(item, name).ok_or_else(|| bad(name));
    let assignment = get_s(item, "email").map(|email| Assignment {
        email,
        crd_command: get_s(item, "crd_command").unwrap_or_default(),
        pin: get_s(item, "pin").unwrap_or_default(),
        assigned_at: get_n(item, "assigned_at").unwrap_or_default(),
        seat_hash: get_s(item, "seat_hash"),
        command_at: get_n(item, "command_at").unwrap_or_default(),
    });
    let metrics: StartupMetrics =
        serde_json::from_str(&text("metrics")?).map_err(|_| bad("metrics"))?;
    let vm = Vm {
        hostname: text("hostname")?,
        status: VmStatus::parse(&text("status")?).map_err(|_| bad("status"))?,
        status_reason: get_s(item, "status_reason"),
        gpu_health: GpuHealth::parse(&text("gpu_health")?).map_err(|_| bad("gpu_health"))?,
        in_use: matches!(item.get("in_use"), Some(AttributeValue::Bool(true))),
        assignment,
        instance_id: get_s(item, "instance_id"),
        token_hash: TokenHash::from_stored(text("token_hash")?),
        metrics,
        created_at: get_n(item, "created_at").ok_or_else(|| bad("created_at"))?,
        updated_at: get_n(item, "updated_at").ok_or_else(|| bad("updated_at"))?,
        last_seen_at: get_n(item, "last_seen_at"),
    };
    Ok((vm, get_n(item, "version").ok_or_else(|| bad("version"))?))
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

    /// Creates the table (with its indexes and TTL) if it does not exist, and waits until it
    /// is active. For tests and local use; in the cloud the SAM template owns the table.
    pub async fn create_table_if_missing(&self) -> Result<()> {
        use table::*;
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| internal("building the table definition", e))
        };
        let key_el = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| internal("building the table definition", e))
        };
        let gsi = |index: &str, pk: &str, sk: &str| -> Result<GlobalSecondaryIndex> {
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .key_schema(key_el(pk, KeyType::Hash)?)
                .key_schema(key_el(sk, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| internal("building the table definition", e))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PARTITION_KEY)?)
            .attribute_definitions(attr(SORT_KEY)?)
            .attribute_definitions(attr(FREE_PK)?)
            .attribute_definitions(attr(FREE_SK)?)
            .attribute_definitions(attr(VMS_PK)?)
            .attribute_definitions(attr(VMS_SK)?)
            .attribute_definitions(attr(REQUESTS_PK)?)
            .attribute_definitions(attr(REQUESTS_SK)?)
            .key_schema(key_el(PARTITION_KEY, KeyType::Hash)?)
            .key_schema(key_el(SORT_KEY, KeyType::Range)?)
            .global_secondary_indexes(gsi(FREE_INDEX, FREE_PK, FREE_SK)?)
            .global_secondary_indexes(gsi(VMS_INDEX, VMS_PK, VMS_SK)?)
            .global_secondary_indexes(gsi(REQUESTS_INDEX, REQUESTS_PK, REQUESTS_SK)?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if code(&e).as_deref() == Some("ResourceInUseException") => return Ok(()),
            Err(e) => return Err(internal("creating the table", DisplayErrorContext(e))),
        }
        for _ in 0..120 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| internal("describing the table", DisplayErrorContext(e)))?;
            let active = described
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE");
            if active {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(|e| internal("building the TTL setting", e))?,
            )
            .send()
            .await
            .map_err(|e| internal("enabling TTL", DisplayErrorContext(e)))?;
        Ok(())
    }

    /// Checks the table answers (for `/health`).
    pub async fn ping(&self) -> Result<()> {
        self.get(COUNTER_PK, COUNTER_FREE_SK, false)
            .await
            .map(|_| ())
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

impl DynamoStore {
    /// The VM an email holds, if any.
    async fn vm_of_email(&self, email: &str) -> Result<Option<Vm>> {
        let Some(item) = self.get(&email_pk(email), "EMAIL", true).await? else {
            return Ok(None);
        };
        let hostname = get_s(&item, "hostname")
            .ok_or_else(|| internal("reading an email item", "no hostname"))?;
        self.get_vm(&hostname).await
    }

    /// One transaction: the email gets its item (only if it has none) and the seat its item,
    /// the VM its assignment (only if still assignable and live), the free counter one less.
    async fn try_claim(&self, vm: &Vm, a: &Assignment, live_since: Millis) -> Result<TryClaim> {
        let mut email_item = key(email_pk(&a.email), "EMAIL");
        email_item.insert("hostname".into(), s(&vm.hostname));
        let mut items = vec![self.put_item(email_item, "attribute_not_exists(pk)", vec![])?];
        items.extend(self.assign_items(vm, a, live_since)?);
        Ok(match self.transact(items).await? {
            None => TryClaim::Won,
            Some(codes) if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") => {
                TryClaim::EmailHasAVm
            }
            Some(_) => TryClaim::Lost,
        })
    }

    /// The writes that give `a` to the free VM `vm`: its assignment (conditional on it
    /// still being assignable and live), the seat item, the free counter one less.
    fn assign_items(
        &self,
        vm: &Vm,
        a: &Assignment,
        live_since: Millis,
    ) -> Result<Vec<TransactWriteItem>> {
        let mut update = String::from(
            "SET email = :email, crd_command = :crd, pin = :pin, assigned_at = :now, \
             command_at = :now, updated_at = :now, version = version + :one",
        );
        if a.seat_hash.is_some() {
            update.push_str(", seat_hash = :seat");
        }
        update.push_str(" REMOVE free_pk, free_sk");
        let mut claim = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(vm_pk(&vm.hostname), "VM")))
            .update_expression(update)
            .condition_expression(format!(
                "{} AND last_seen_at >= :live_since",
                assignable_condition()
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":email", s(&a.email))
            .expression_attribute_values(":crd", s(&a.crd_command))
            .expression_attribute_values(":pin", s(&a.pin))
            .expression_attribute_values(":now", n(a.assigned_at))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":live_since", n(live_since))
            .expression_attribute_values(":assignable_status", s(AssignableRule::STATUS.as_str()))
            .expression_attribute_values(
                ":excluded_health",
                s(AssignableRule::EXCLUDED_HEALTH.as_str()),
            );
        let mut items = Vec::with_capacity(3);
        if let Some(h) = &a.seat_hash {
            claim = claim.expression_attribute_values(":seat", s(h));
            let mut seat_item = key(seat_pk(h), "SEAT");
            seat_item.insert("hostname".into(), s(&vm.hostname));
            items.push(self.put_unconditional(seat_item)?);
        }
        let claim = claim.build().map_err(|e| internal("building a claim", e))?;
        items.insert(0, TransactWriteItem::builder().update(claim).build());
        items.push(counter_update(&self.table, -1)?);
        Ok(items)
    }

    fn put_unconditional(&self, item: Item) -> Result<TransactWriteItem> {
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| internal("building a put", e))?,
            )
            .build())
    }

    /// A page of assignable, live VMs (most recently heard from first), shuffled so that
    /// concurrent claimers spread over it instead of all fighting for the same VM.
    async fn free_candidates(&self, live_since: Millis) -> Result<Vec<Vm>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(table::FREE_INDEX)
            .key_condition_expression("#p = :free AND #s >= :since")
            .expression_attribute_names("#p", table::FREE_PK)
            .expression_attribute_names("#s", table::FREE_SK)
            .expression_attribute_values(":free", s("FREE"))
            .expression_attribute_values(":since", s(free_sk_bound(live_since)))
            .scan_index_forward(false)
            .limit(CLAIM_PAGE)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| internal("Query free", DisplayErrorContext(e)))?;
        self.stats
            .record("Query", capacity_of(out.consumed_capacity()));
        let mut candidates = out
            .items()
            .iter()
            .map(|i| item_to_vm(i).map(|(vm, _)| vm))
            .collect::<Result<Vec<_>>>()?;
        candidates.shuffle(&mut rand::rng());
        Ok(candidates)
    }
}

/// The DynamoDB condition for "this VM is assignable", from the same rule as everything.
fn assignable_condition() -> &'static str {
    "#status = :assignable_status AND attribute_not_exists(email) AND gpu_health <> :excluded_health"
}

#[async_trait]
impl VmStore for DynamoStore {
    async fn insert_vm(&self, vm: &Vm) -> Result<()> {
        for attempt in 0..5u32 {
            match self.write_vm(vm, None).await? {
                VmWrite::Written => return Ok(()),
                VmWrite::ConditionFailed => {
                    return Err(Error::Conflict(format!(
                        "VM {} already exists",
                        vm.hostname
                    )))
                }
                // Throttled: not "already exists"; back off and try again.
                VmWrite::Transient => {
                    tokio::time::sleep(std::time::Duration::from_millis(20u64 << attempt)).await;
                }
            }
        }
        Err(Error::Unavailable(format!(
            "the store is busy; VM {} was not recorded, try again",
            vm.hostname
        )))
    }

    async fn get_vm(&self, hostname: &str) -> Result<Option<Vm>> {
        Ok(self
            .get_vm_versioned(hostname, true)
            .await?
            .map(|(vm, _)| vm))
    }

    async fn list_vms(&self) -> Result<Vec<Vm>> {
        let items = self
            .query_all("Query vms", |start| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(table::VMS_INDEX)
                    .key_condition_expression("#p = :vm")
                    .expression_attribute_names("#p", table::VMS_PK)
                    .expression_attribute_values(":vm", s("VM"))
                    .set_exclusive_start_key(start)
            })
            .await?;
        items
            .iter()
            .map(|i| item_to_vm(i).map(|(vm, _)| vm))
            .collect()
    }

    async fn update_vm(&self, hostname: &str, change: &VmChange, now: Millis) -> Result<Vm> {
        for _ in 0..MAX_ATTEMPTS {
            let (mut vm, version) = self
                .get_vm_versioned(hostname, true)
                .await?
                .ok_or_else(|| Error::NotFound(format!("VM {hostname}")))?;
            let was_assignable = vm.is_free_candidate();
            change.apply(&mut vm, now)?;
            if self.write_vm(&vm, Some((version, was_assignable))).await? == VmWrite::Written {
                return Ok(vm);
            }
        }
        Err(internal("updating a VM", "too much contention"))
    }

    async fn claim_vm(&self, request: &ClaimRequest) -> Result<ClaimOutcome> {
        let email = request.email.as_str();
        let assignment = Assignment {
            email: email.to_string(),
            crd_command: request.crd_command.clone(),
            pin: request.pin.as_str().to_string(),
            assigned_at: request.now,
            seat_hash: Some(request.seat_hash.clone()),
            command_at: request.now,
        };
        for _ in 0..MAX_ATTEMPTS {
            let candidates = self.free_candidates(request.live_since).await?;
            if candidates.is_empty() {
                // Nothing free; a returning participant still gets their VM.
                return Ok(match self.vm_of_email(email).await? {
                    Some(vm) => ClaimOutcome::AlreadyAssigned(vm),
                    None => ClaimOutcome::NoneFree,
                });
            }
            // A few tries per page, then a fresh page (the one we hold is going stale while
            // others claim).
            for vm in candidates.into_iter().take(TRIES_PER_PAGE) {
                match self.try_claim(&vm, &assignment, request.live_since).await? {
                    TryClaim::Won => {
                        let mut vm = vm;
                        vm.assignment = Some(assignment);
                        vm.updated_at = request.now;
                        return Ok(ClaimOutcome::Assigned(vm));
                    }
                    TryClaim::EmailHasAVm => {
                        // The same person claimed before (or in a parallel request).
                        if let Some(vm) = self.vm_of_email(email).await? {
                            return Ok(ClaimOutcome::AlreadyAssigned(vm));
                        }
                    }
                    TryClaim::Lost => {}
                }
            }
        }
        Err(internal("claiming a VM", "too much contention"))
    }

    async fn count_assignable(&self, live_since: Millis) -> Result<u64> {
        let item = self.get(COUNTER_PK, COUNTER_FREE_SK, true).await?;
        let candidates = item.and_then(|i| get_n::<i64>(&i, "value")).unwrap_or(0);
        // Candidates that went quiet: the old end of the free index.
        let mut quiet = 0i64;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(table::FREE_INDEX)
                .key_condition_expression("#p = :free AND #s < :since")
                .expression_attribute_names("#p", table::FREE_PK)
                .expression_attribute_names("#s", table::FREE_SK)
                .expression_attribute_values(":free", s("FREE"))
                .expression_attribute_values(":since", s(free_sk_bound(live_since)))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| internal("Query quiet", DisplayErrorContext(e)))?;
            self.stats
                .record("Query", capacity_of(out.consumed_capacity()));
            quiet += i64::from(out.count());
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        Ok((candidates - quiet).max(0) as u64)
    }

    async fn vm_by_seat(&self, seat_hash: &str) -> Result<Option<Vm>> {
        let Some(item) = self.get(&seat_pk(seat_hash), "SEAT", true).await? else {
            return Ok(None);
        };
        let hostname = get_s(&item, "hostname")
            .ok_or_else(|| internal("reading a seat item", "no hostname"))?;
        Ok(self.get_vm(&hostname).await?.filter(|vm| {
            vm.assignment
                .as_ref()
                .is_some_and(|a| a.seat_hash.as_deref() == Some(seat_hash))
        }))
    }

    async fn reissue_seat(&self, hostname: &str, seat_hash: &str, now: Millis) -> Result<Vm> {
        for _ in 0..MAX_ATTEMPTS {
            let (mut vm, version) = self
                .get_vm_versioned(hostname, true)
                .await?
                .filter(|(v, _)| {
                    v.assignment
                        .as_ref()
                        .is_some_and(Assignment::is_participant)
                })
                .ok_or_else(|| Error::NotFound(format!("a participant on VM {hostname}")))?;
            let mut items = Vec::with_capacity(3);
            if let Some(a) = vm.assignment.as_mut() {
                if let Some(old) = a.seat_hash.replace(seat_hash.to_string()) {
                    items.push(self.delete_item(key(seat_pk(&old), "SEAT"), None)?);
                }
            }
            vm.updated_at = now;
            let mut seat_item = key(seat_pk(seat_hash), "SEAT");
            seat_item.insert("hostname".into(), s(hostname));
            items.push(self.put_unconditional(seat_item)?);
            items.push(self.put_item(
                vm_to_item(&vm, version + 1)?,
                "version = :v",
                vec![(":v", n(version))],
            )?);
            if self.transact(items).await?.is_none() {
                return Ok(vm);
            }
        }
        Err(internal("re-issuing a seat", "too much contention"))
    }

    async fn move_seat(&self, request: &MoveSeat) -> Result<MoveOutcome> {
        let not_held = || Error::NotFound(format!("a participant on VM {}", request.from));
        for _ in 0..MAX_ATTEMPTS {
            let (from, version) = self
                .get_vm_versioned(&request.from, true)
                .await?
                .ok_or_else(not_held)?;
            let held = request.held(Some(&from)).cloned().ok_or_else(not_held)?;
            let candidates = match &request.to {
                Some(to) => self
                    .get_vm(to)
                    .await?
                    .filter(|v| v.is_assignable(request.live_since))
                    .into_iter()
                    .collect(),
                None => self.free_candidates(request.live_since).await?,
            };
            if candidates.is_empty() {
                return Ok(MoveOutcome::NoneFree);
            }
            let mut released = from.clone();
            released.assignment = Some(Assignment::retired(&from.hostname, request.now));
            released.status = VmStatus::Error;
            released.status_reason = Some(request.reason.clone());
            released.updated_at = request.now;
            let moved = Assignment {
                pin: request.pin.as_str().to_string(),
                assigned_at: request.now,
                command_at: request.now,
                ..held.clone()
            };
            for vm in candidates.into_iter().take(TRIES_PER_PAGE) {
                let mut email_item = key(email_pk(&held.email), "EMAIL");
                email_item.insert("hostname".into(), s(&vm.hostname));
                let mut items = vec![
                    self.put_item(
                        vm_to_item(&released, version + 1)?,
                        "version = :v",
                        vec![(":v", n(version))],
                    )?,
                    self.put_unconditional(email_item)?,
                ];
                items.extend(self.assign_items(&vm, &moved, request.live_since)?);
                match self.transact(items).await? {
                    None => {
                        let mut vm = vm;
                        vm.assignment = Some(moved);
                        vm.updated_at = request.now;
                        return Ok(MoveOutcome::Moved(Box::new(vm)));
                    }
                    // The participant's VM changed under us: read it again.
                    Some(codes) if codes.first().map(String::as_str) != Some("None") => break,
                    Some(_) => {}
                }
            }
        }
        Err(internal("moving a seat", "too much contention"))
    }

    async fn delete_vm(&self, hostname: &str) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((vm, version)) = self.get_vm_versioned(hostname, true).await? else {
                return Ok(());
            };
            let mut items = vec![self.delete_item(
                key(vm_pk(hostname), "VM"),
                Some(("version = :v", vec![(":v", n(version))])),
            )?];
            if let Some(a) = &vm.assignment {
                items.push(self.delete_item(key(email_pk(&a.email), "EMAIL"), None)?);
            }
            if let Some(h) = vm.assignment.as_ref().and_then(|a| a.seat_hash.as_ref()) {
                items.push(self.delete_item(key(seat_pk(h), "SEAT"), None)?);
            }
            if vm.is_free_candidate() {
                items.push(counter_update(&self.table, -1)?);
            }
            if self.transact(items).await?.is_none() {
                return Ok(());
            }
        }
        Err(internal("deleting a VM", "too much contention"))
    }
}

fn op_status(status: OperationStatus) -> &'static str {
    match status {
        OperationStatus::Running => "running",
        OperationStatus::Succeeded => "succeeded",
        OperationStatus::Failed => "failed",
    }
}

fn ttl_from(millis: Millis) -> AttributeValue {
    n(millis / 1000 + EPHEMERAL_TTL_SECONDS)
}

#[async_trait]
impl OperationStore for DynamoStore {
    async fn begin_operation(&self, op: &Operation, stale_after_ms: i64) -> Result<()> {
        let mut lock = key(LOCK_PK, LOCK_SK);
        lock.insert("op_id".into(), s(&op.id));
        lock.insert("created_at".into(), n(op.created_at));
        let lock_put = self.put_item(
            lock,
            "attribute_not_exists(pk) OR created_at < :stale",
            vec![(":stale", n(op.created_at - stale_after_ms))],
        )?;
        let record = self.put_item(self.operation_item(op)?, "attribute_not_exists(pk)", vec![])?;
        match self.transact(vec![lock_put, record]).await? {
            None => Ok(()),
            Some(_) => {
                let holder = self
                    .get(LOCK_PK, LOCK_SK, true)
                    .await?
                    .and_then(|i| get_s(&i, "op_id"))
                    .unwrap_or_else(|| "unknown".into());
                Err(Error::Conflict(format!(
                    "another launch or destroy (operation {holder}) is still running; try again when it finishes"
                )))
            }
        }
    }

    async fn save_operation(&self, op: &Operation) -> Result<()> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.operation_item(op)?))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| internal("PutItem operation", DisplayErrorContext(e)))?;
        self.stats
            .record("PutItem", capacity_of(out.consumed_capacity()));
        if op.status != OperationStatus::Running {
            // Release the lock if it is still ours (a stale lock may have been taken over).
            let released = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(LOCK_PK, LOCK_SK)))
                .condition_expression("op_id = :id")
                .expression_attribute_values(":id", s(&op.id))
                .send()
                .await;
            self.stats.record("DeleteItem", 0.0);
            if let Err(e) = released {
                if code(&e).as_deref() != Some("ConditionalCheckFailedException") {
                    return Err(internal(
                        "releasing the operation lock",
                        DisplayErrorContext(e),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn get_operation(&self, id: &str) -> Result<Option<Operation>> {
        let Some(item) = self.get(&format!("OP#{id}"), "OP", true).await? else {
            return Ok(None);
        };
        let body =
            get_s(&item, "body").ok_or_else(|| internal("reading an operation", "no body"))?;
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| internal("decoding an operation", e))
    }
}

impl DynamoStore {
    fn operation_item(&self, op: &Operation) -> Result<Item> {
        let mut item = key(format!("OP#{}", op.id), "OP");
        item.insert(
            "body".into(),
            s(serde_json::to_string(op).map_err(|e| internal("encoding an operation", e))?),
        );
        item.insert("status".into(), s(op_status(op.status)));
        item.insert("created_at".into(), n(op.created_at));
        item.insert(table::TTL_ATTRIBUTE.into(), ttl_from(op.created_at));
        Ok(item)
    }

    /// Oldest chunk of a VM's log: (seq, body).
    async fn oldest_chunk(&self, hostname: &str) -> Result<Option<(i64, String)>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
            .expression_attribute_values(":pk", s(logs_pk(hostname)))
            .expression_attribute_values(":chunk", s("CHUNK#"))
            .consistent_read(true)
            .limit(1)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| internal("Query log chunks", DisplayErrorContext(e)))?;
        self.stats
            .record("Query", capacity_of(out.consumed_capacity()));
        Ok(out
            .items()
            .first()
            .and_then(|i| Some((get_n(i, "seq")?, get_s(i, "body")?))))
    }

    /// Every chunk after `after`, in order.
    async fn chunks_after(&self, hostname: &str, after: i64) -> Result<Vec<Item>> {
        self.query_all("Query log chunks", |start| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(logs_pk(hostname)))
                .expression_attribute_values(":from", s(chunk_sk(after + 1)))
                .expression_attribute_values(":to", s(chunk_sk(i64::MAX)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
        })
        .await
    }

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

    /// Changes the byte total; `first_seq` moves the oldest live chunk on (a chunk trimmed
    /// away whole).
    fn meta_update(
        &self,
        hostname: &str,
        delta_bytes: i64,
        first_seq: Option<i64>,
    ) -> Result<TransactWriteItem> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(logs_pk(hostname), "META")))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":d", n(delta_bytes));
        update = match first_seq {
            Some(seq) => update
                .update_expression("ADD bytes :d SET first_seq = :f")
                .expression_attribute_values(":f", n(seq)),
            None => update.update_expression("ADD bytes :d"),
        };
        Ok(TransactWriteItem::builder()
            .update(
                update
                    .build()
                    .map_err(|e| internal("building a log total update", e))?,
            )
            .build())
    }

    /// Chunks expire by TTL (30 days after they were written) without passing through the
    /// trim, and their bytes would go on counting in the total: fresh lines would then be
    /// trimmed too early. When the oldest chunk is not the one the total starts at, the
    /// total is recounted from the chunks that exist (rare: once per expiry). Conditional
    /// on the total being as read, so a concurrent append or trim just makes it look again.
    async fn recount_logs(&self, hostname: &str, bytes: i64, next_seq: i64) -> Result<()> {
        let chunks = self.chunks_after(hostname, 0).await?;
        let total: i64 = chunks.iter().filter_map(|c| get_n::<i64>(c, "bytes")).sum();
        let first = chunks
            .iter()
            .filter_map(|c| get_n::<i64>(c, "seq"))
            .min()
            .unwrap_or(next_seq);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(logs_pk(hostname), "META")))
            .update_expression("SET bytes = :total, first_seq = :first")
            .condition_expression("bytes = :bytes AND next_seq = :next")
            .expression_attribute_values(":total", n(total))
            .expression_attribute_values(":first", n(first))
            .expression_attribute_values(":bytes", n(bytes))
            .expression_attribute_values(":next", n(next_seq))
            .send()
            .await;
        self.stats.record("UpdateItem", 0.0);
        match result {
            Ok(_) => {
                tracing::info!(
                    hostname,
                    counted = bytes,
                    found = total,
                    "log total recounted after expired chunks"
                );
                Ok(())
            }
            Err(e) if code(&e).as_deref() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(internal("recounting logs", DisplayErrorContext(e))),
        }
    }
}

#[async_trait]
impl LogStore for DynamoStore {
    async fn append_logs(
        &self,
        hostname: &str,
        lines: &[String],
        cap_bytes: usize,
        now: Millis,
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let chunks = chunk_lines(lines);
        let cap = i64::try_from(cap_bytes).unwrap_or(i64::MAX);
        // 1. Append: the meta item moves (conditionally) from next_seq to next_seq + k in the
        //    same transaction that writes the k chunks, so concurrent appends never collide.
        let mut attempts = 0;
        loop {
            attempts += 1;
            if attempts > MAX_ATTEMPTS {
                return Err(internal("appending logs", "too much contention"));
            }
            let meta = self.get(&logs_pk(hostname), "META", true).await?;
            let (bytes, next_seq): (i64, i64) = meta
                .as_ref()
                .map(|m| {
                    (
                        get_n(m, "bytes").unwrap_or(0),
                        get_n(m, "next_seq").unwrap_or(1),
                    )
                })
                .unwrap_or((0, 1));
            // Where the live chunks start: kept as is (unknown on records from before it
            // was tracked: the trim recounts those).
            let first_seq: Option<i64> = match &meta {
                None => Some(next_seq),
                Some(m) => get_n(m, "first_seq"),
            };
            let mut items = Vec::new();
            let mut added = 0i64;
            for (i, chunk) in chunks.iter().enumerate() {
                let body: String = chunk.iter().map(|l| format!("{l}\n")).collect();
                added += chunk.iter().map(|l| line_bytes(l) as i64).sum::<i64>();
                let seq = next_seq + i as i64;
                let mut item = key(logs_pk(hostname), chunk_sk(seq));
                item.insert("seq".into(), n(seq));
                item.insert("bytes".into(), n(body.len()));
                item.insert("body".into(), s(body));
                item.insert(table::TTL_ATTRIBUTE.into(), ttl_from(now));
                items.push(self.put_item(item, "attribute_not_exists(pk)", vec![])?);
            }
            let mut meta_item = key(logs_pk(hostname), "META");
            meta_item.insert("bytes".into(), n(bytes + added));
            meta_item.insert("next_seq".into(), n(next_seq + chunks.len() as i64));
            if let Some(first) = first_seq {
                meta_item.insert("first_seq".into(), n(first));
            }
            meta_item.insert(table::TTL_ATTRIBUTE.into(), ttl_from(now));
            let meta_put = match meta {
                None => self.put_item(meta_item, "attribute_not_exists(pk)", vec![])?,
                Some(_) => self.put_item(
                    meta_item,
                    "next_seq = :seq AND bytes = :bytes",
                    vec![(":seq", n(next_seq)), (":bytes", n(bytes))],
                )?,
            };
            items.insert(0, meta_put);
            if self.transact(items).await?.is_none() {
                break;
            }
        }
        // 2. Trim the oldest lines until at most `cap` bytes remain. Each step is one
        //    transaction conditional on the chunk being as read, so concurrent trimmers never
        //    remove the same bytes twice.
        for _ in 0..10_000 {
            let Some(meta) = self.get(&logs_pk(hostname), "META", true).await? else {
                return Ok(());
            };
            let total: i64 = get_n(&meta, "bytes").unwrap_or(0);
            if total <= cap {
                return Ok(());
            }
            let next_seq: i64 = get_n(&meta, "next_seq").unwrap_or(1);
            let first_seq: Option<i64> = get_n(&meta, "first_seq");
            let oldest = self.oldest_chunk(hostname).await?;
            let Some((seq, body)) = oldest.filter(|(seq, _)| first_seq == Some(*seq)) else {
                // Chunks the total counts have expired (or the start is unknown).
                self.recount_logs(hostname, total, next_seq).await?;
                continue;
            };
            let size = body.len() as i64;
            let chunk_key = key(logs_pk(hostname), chunk_sk(seq));
            let (chunk_write, removed, first_seq) = if total - size >= cap {
                (
                    self.delete_item(chunk_key, Some(("bytes = :b", vec![(":b", n(size))])))?,
                    size,
                    Some(seq + 1),
                )
            } else {
                let mut kept = body.as_str();
                let mut remaining = total;
                while remaining > cap {
                    let Some((dropped, rest)) = kept.split_once('\n') else {
                        break;
                    };
                    remaining -= (dropped.len() + 1) as i64;
                    kept = rest;
                }
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(chunk_key))
                    .update_expression("SET body = :body, bytes = :new")
                    .condition_expression("bytes = :b")
                    .expression_attribute_values(":body", s(kept))
                    .expression_attribute_values(":new", n(kept.len()))
                    .expression_attribute_values(":b", n(size))
                    .build()
                    .map_err(|e| internal("building a log trim", e))?;
                (
                    TransactWriteItem::builder().update(update).build(),
                    size - kept.len() as i64,
                    None,
                )
            };
            // A cancelled step means another writer trimmed first: look again.
            self.transact(vec![
                chunk_write,
                self.meta_update(hostname, -removed, first_seq)?,
            ])
            .await?;
        }
        Err(internal("trimming logs", "did not converge"))
    }

    async fn read_logs(&self, hostname: &str, after: u64) -> Result<Option<LogPage>> {
        let Some(meta) = self.get(&logs_pk(hostname), "META", true).await? else {
            return Ok(None);
        };
        let next_seq: i64 = get_n(&meta, "next_seq").unwrap_or(1);
        let after = i64::try_from(after).unwrap_or(i64::MAX - 1);
        let lines = self
            .chunks_after(hostname, after)
            .await?
            .iter()
            .filter_map(|i| get_s(i, "body"))
            .filter(|b| !b.is_empty())
            .flat_map(|b| {
                b.strip_suffix('\n')
                    .unwrap_or(&b)
                    .split('\n')
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(Some(LogPage {
            lines,
            cursor: (next_seq - 1).max(0) as u64,
        }))
    }

    async fn delete_logs(&self, hostname: &str) -> Result<()> {
        let mut keys: Vec<Item> = self
            .chunks_after(hostname, 0)
            .await?
            .iter()
            .filter_map(|i| Some(key(get_s(i, "pk")?, get_s(i, "sk")?)))
            .collect();
        keys.push(key(logs_pk(hostname), "META"));
        // BatchWriteItem takes at most 25 requests; unprocessed ones are sent again.
        for batch in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = batch
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| internal("building a delete", e))
                })
                .collect::<Result<_>>()?;
            for _ in 0..MAX_ATTEMPTS {
                if requests.is_empty() {
                    break;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| internal("BatchWriteItem", DisplayErrorContext(e)))?;
                self.stats.record("BatchWriteItem", 0.0);
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table).cloned())
                    .unwrap_or_default();
                if !requests.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        Ok(())
    }
}

// GPU provisioning requests.
//
// Items: `REQ#<id>`/`REQ` (the request as JSON, plus `status`, `user_id` and, for the
// `requests` index, `req_pk = USER#<user>`, `req_sk = <created>#<id>`); `ACTIVE`/`<id>`
// while a request is active (the sweep queries this partition); `USER#<user>`/`GPUS` with
// `in_use`, the user's active GPUs; `IDEM#<user>#<key>`/`IDEM` per idempotency key. The
// create is one transaction: the quota update (conditional on staying within the quota),
// the request, its ACTIVE pointer and its idempotency key. Ending a request is one
// transaction too: the request (conditional on its old status), the pointer deleted, and
// `in_use` decremented, so a quota is freed exactly once.

fn request_pk(id: &str) -> String {
    format!("REQ#{id}")
}

fn quota_key(user: &str) -> Item {
    key(format!("USER#{user}"), "GPUS")
}

fn idempotency_key(user: &str, idem_key: &str) -> Item {
    key(format!("IDEM#{user}#{idem_key}"), "IDEM")
}

fn request_item(r: &GpuRequest) -> Result<Item> {
    let mut item = key(request_pk(&r.request_id), "REQ");
    let body = serde_json::to_string(r).map_err(|e| internal("encoding a request", e))?;
    item.insert("body".into(), s(body));
    item.insert("status".into(), s(r.status.as_str()));
    item.insert("user_id".into(), s(r.user_id.clone()));
    item.insert(table::REQUESTS_PK.into(), s(format!("USER#{}", r.user_id)));
    item.insert(
        table::REQUESTS_SK.into(),
        s(format!("{:020}#{}", r.created_at.max(0), r.request_id)),
    );
    Ok(item)
}

fn item_to_request(item: &Item) -> Result<GpuRequest> {
    let body = get_s(item, "body").ok_or_else(|| internal("reading a request", "no body"))?;
    serde_json::from_str(&body).map_err(|e| internal("decoding a request", e))
}

fn api_key_pk(hash: &str) -> String {
    format!("APIKEY#{hash}")
}

impl DynamoStore {
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

    /// What an existing idempotency key means for a create with `fingerprint`.
    async fn replay(&self, user: &str, idem: &Idempotency) -> Result<Option<CreateRequestOutcome>> {
        let Some(item) = self
            .get_item(idempotency_key(user, &idem.key), true)
            .await?
        else {
            return Ok(None);
        };
        if get_s(&item, "fingerprint").as_deref() != Some(idem.fingerprint.as_str()) {
            return Ok(Some(CreateRequestOutcome::IdempotencyMismatch));
        }
        let id = get_s(&item, "request_id").unwrap_or_default();
        let original = self
            .get(&request_pk(&id), "REQ", true)
            .await?
            .ok_or_else(|| {
                internal("replaying a request", "idempotency key without its request")
            })?;
        Ok(Some(CreateRequestOutcome::Replayed(Box::new(
            item_to_request(&original)?,
        ))))
    }

    async fn get_item(&self, item_key: Item, consistent: bool) -> Result<Option<Item>> {
        let pk = get_s(&item_key, table::PARTITION_KEY).unwrap_or_default();
        let sk = get_s(&item_key, table::SORT_KEY).unwrap_or_default();
        self.get(&pk, &sk, consistent).await
    }

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
}

#[async_trait]
impl RequestStore for DynamoStore {
    async fn create_request(
        &self,
        request: &GpuRequest,
        quota: u32,
        idempotency: Option<&Idempotency>,
    ) -> Result<CreateRequestOutcome> {
        let user = request.user_id.as_str();
        for _ in 0..MAX_ATTEMPTS {
            if let Some(idem) = idempotency {
                if let Some(outcome) = self.replay(user, idem).await? {
                    return Ok(outcome);
                }
            }
            if request.gpu_count > quota {
                let in_use = self.gpus_in_use(user).await?;
                return Ok(CreateRequestOutcome::OverQuota { in_use, quota });
            }
            let mut items = vec![
                self.update_item(
                    quota_key(user),
                    "SET in_use = if_not_exists(in_use, :zero) + :n",
                    Some("attribute_not_exists(in_use) OR in_use <= :most_before"),
                    vec![
                        (":zero", n(0)),
                        (":n", n(request.gpu_count)),
                        (":most_before", n(quota - request.gpu_count)),
                    ],
                )?,
                self.put_item(request_item(request)?, "attribute_not_exists(pk)", vec![])?,
                self.put_item(
                    key("ACTIVE", request.request_id.clone()),
                    "attribute_not_exists(pk)",
                    vec![],
                )?,
            ];
            if let Some(idem) = idempotency {
                let mut item = idempotency_key(user, &idem.key);
                item.insert("fingerprint".into(), s(idem.fingerprint.clone()));
                item.insert("request_id".into(), s(request.request_id.clone()));
                items.push(self.put_item(item, "attribute_not_exists(pk)", vec![])?);
            }
            match self.transact(items).await? {
                None => return Ok(CreateRequestOutcome::Created),
                Some(codes) => {
                    // A concurrent create with the same key: answer as its repeat.
                    if codes.get(3).map(String::as_str) == Some("ConditionalCheckFailed") {
                        continue;
                    }
                    if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                        let in_use = self.gpus_in_use(user).await?;
                        return Ok(CreateRequestOutcome::OverQuota { in_use, quota });
                    }
                    if codes.get(1).map(String::as_str) == Some("ConditionalCheckFailed") {
                        return Err(Error::Conflict(format!(
                            "request {} exists",
                            request.request_id
                        )));
                    }
                    // Transaction conflicts: try again.
                }
            }
        }
        Err(internal("recording a request", "too much contention"))
    }

    async fn get_request(&self, request_id: &str) -> Result<Option<GpuRequest>> {
        self.get(&request_pk(request_id), "REQ", true)
            .await?
            .map(|i| item_to_request(&i))
            .transpose()
    }

    async fn list_requests(&self, user: Option<&str>, limit: usize) -> Result<Vec<GpuRequest>> {
        let Some(user) = user else {
            // Everyone's (admins): not a hot path, so a filtered scan, sorted here.
            let mut all: Vec<GpuRequest> = self
                .scan_prefix("REQ#")
                .await?
                .iter()
                .map(item_to_request)
                .collect::<Result<_>>()?;
            all.sort_by(|a, b| (b.created_at, &b.request_id).cmp(&(a.created_at, &a.request_id)));
            all.truncate(limit);
            return Ok(all);
        };
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(table::REQUESTS_INDEX)
                .key_condition_expression("#p = :user")
                .expression_attribute_names("#p", table::REQUESTS_PK)
                .expression_attribute_values(":user", s(format!("USER#{user}")))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| internal("Query requests", DisplayErrorContext(e)))?;
            self.stats
                .record("Query", capacity_of(page.consumed_capacity()));
            for item in page.items() {
                out.push(item_to_request(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn update_request(
        &self,
        request_id: &str,
        change: &RequestChange,
        now: Millis,
    ) -> Result<GpuRequest> {
        for _ in 0..MAX_ATTEMPTS {
            let mut request = self
                .get_request(request_id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("request {request_id}")))?;
            let before = request.status;
            change.apply(&mut request, now)?;
            let mut items = vec![self.put_item(
                request_item(&request)?,
                "#status = :before",
                vec![(":before", s(before.as_str()))],
            )?];
            // `put_item` takes no attribute names; `status` is a reserved word.
            if let Some(put) = items[0].put.as_mut() {
                put.expression_attribute_names = Some(HashMap::from([(
                    "#status".to_string(),
                    "status".to_string(),
                )]));
            }
            if before.is_active() && !request.status.is_active() {
                items.push(self.delete_item(key("ACTIVE", request_id), None)?);
                items.push(self.update_item(
                    quota_key(&request.user_id),
                    "SET in_use = in_use - :n",
                    None,
                    vec![(":n", n(request.gpu_count))],
                )?);
            }
            if self.transact(items).await?.is_none() {
                return Ok(request);
            }
            // Changed meanwhile: read again and re-apply.
        }
        Err(internal("updating a request", "too much contention"))
    }

    async fn active_requests(&self) -> Result<Vec<GpuRequest>> {
        let pointers = self
            .query_all("Query active requests", |start| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :active")
                    .expression_attribute_values(":active", s("ACTIVE"))
                    .set_exclusive_start_key(start)
            })
            .await?;
        let mut out = Vec::new();
        for pointer in pointers {
            let id = get_s(&pointer, table::SORT_KEY).unwrap_or_default();
            if let Some(r) = self.get_request(&id).await? {
                if r.status.is_active() {
                    out.push(r);
                }
            }
        }
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    async fn gpus_in_use(&self, user_id: &str) -> Result<u32> {
        Ok(self
            .get_item(quota_key(user_id), true)
            .await?
            .and_then(|i| get_n::<i64>(&i, "in_use"))
            .map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX)))
    }
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn insert_api_key(&self, api_key: &ApiKey) -> Result<()> {
        let mut item = key(api_key_pk(&api_key.key_hash), "APIKEY");
        let body = serde_json::to_string(api_key).map_err(|e| internal("encoding a key", e))?;
        item.insert("body".into(), s(body));
        // A pointer from the public id to the hash, for revoking.
        let mut pointer = key(format!("APIKEYID#{}", api_key.key_id), "APIKEYID");
        pointer.insert("key_hash".into(), s(api_key.key_hash.clone()));
        let items = vec![
            self.put_item(item, "attribute_not_exists(pk)", vec![])?,
            self.put_item(pointer, "attribute_not_exists(pk)", vec![])?,
        ];
        match self.transact(items).await? {
            None => Ok(()),
            Some(_) => Err(Error::Conflict(format!(
                "API key {} exists",
                api_key.key_id
            ))),
        }
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        self.get(&api_key_pk(key_hash), "APIKEY", false)
            .await?
            .and_then(|i| get_s(&i, "body"))
            .map(|b| serde_json::from_str(&b).map_err(|e| internal("decoding a key", e)))
            .transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        let mut keys: Vec<ApiKey> = self
            .scan_prefix("APIKEY#")
            .await?
            .iter()
            .filter_map(|i| get_s(i, "body"))
            .map(|b| serde_json::from_str(&b).map_err(|e| internal("decoding a key", e)))
            .collect::<Result<_>>()?;
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, key_id: &str, now: Millis) -> Result<ApiKey> {
        let hash = self
            .get(&format!("APIKEYID#{key_id}"), "APIKEYID", true)
            .await?
            .and_then(|i| get_s(&i, "key_hash"))
            .ok_or_else(|| Error::NotFound(format!("API key {key_id}")))?;
        let mut api_key = self
            .api_key_by_hash(&hash)
            .await?
            .ok_or_else(|| Error::NotFound(format!("API key {key_id}")))?;
        api_key.revoked_at.get_or_insert(now);
        let mut item = key(api_key_pk(&hash), "APIKEY");
        let body = serde_json::to_string(&api_key).map_err(|e| internal("encoding a key", e))?;
        item.insert("body".into(), s(body));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| internal("PutItem", DisplayErrorContext(e)))?;
        self.stats.record("PutItem", 0.0);
        Ok(api_key)
    }

    async fn ping(&self) -> Result<()> {
        DynamoStore::ping(self).await
    }
}

// Instances of the offers API.
//
// Items: `INST#<id>`/`INST` (the record as JSON, `version`, and for the `requests` index
// `req_pk = IUSER#<owner>`, `req_sk = <created>#<id>`); `IDEM#<user>#instances#<key>`/`IDEM`
// per idempotency key, written in one transaction with the record. Saves are conditional
// on the version read.

fn instance_item(r: &CloudInstance) -> Result<Item> {
    let mut item = key(format!("INST#{}", r.id), "INST");
    let body = serde_json::to_string(r).map_err(|e| internal("encoding an instance", e))?;
    item.insert("body".into(), s(body));
    item.insert("version".into(), n(r.version));
    item.insert(table::REQUESTS_PK.into(), s(format!("IUSER#{}", r.owner)));
    item.insert(
        table::REQUESTS_SK.into(),
        s(format!("{:020}#{}", r.created_at.max(0), r.id)),
    );
    Ok(item)
}

fn item_to_instance(item: &Item) -> Result<CloudInstance> {
    let body = get_s(item, "body").ok_or_else(|| internal("reading an instance", "no body"))?;
    serde_json::from_str(&body).map_err(|e| internal("decoding an instance", e))
}

fn instance_idempotency_key(user: &str, idem_key: &str) -> Item {
    key(format!("IDEM#{user}#instances#{idem_key}"), "IDEM")
}

#[async_trait]
impl InstanceStore for DynamoStore {
    async fn create_instance(
        &self,
        record: &CloudInstance,
        quota: u32,
        idempotency: Option<&Idempotency>,
    ) -> Result<CreateInstanceOutcome> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(idem) = idempotency {
                if let Some(item) = self
                    .get_item(instance_idempotency_key(&record.owner, &idem.key), true)
                    .await?
                {
                    if get_s(&item, "fingerprint").as_deref() != Some(idem.fingerprint.as_str()) {
                        return Ok(CreateInstanceOutcome::IdempotencyMismatch);
                    }
                    let id = get_s(&item, "instance_id").unwrap_or_default();
                    let original = self.get_instance(&id).await?.ok_or_else(|| {
                        internal(
                            "replaying an instance",
                            "idempotency key without its instance",
                        )
                    })?;
                    return Ok(CreateInstanceOutcome::Replayed(Box::new(original)));
                }
            }
            if record.gpu_count > quota {
                let in_use = self.gpus_in_use(&record.owner).await?;
                return Ok(CreateInstanceOutcome::OverQuota { in_use, quota });
            }
            // The record says how many GPUs it holds of the quota counter (shared with
            // requests), so the save that ends it frees them exactly once.
            let mut item = instance_item(record)?;
            item.insert("holds_gpus".into(), n(record.gpu_count));
            let mut items = vec![
                self.put_item(item, "attribute_not_exists(pk)", vec![])?,
                self.update_item(
                    quota_key(&record.owner),
                    "SET in_use = if_not_exists(in_use, :zero) + :n",
                    Some("attribute_not_exists(in_use) OR in_use <= :most_before"),
                    vec![
                        (":zero", n(0)),
                        (":n", n(record.gpu_count)),
                        (":most_before", n(quota - record.gpu_count)),
                    ],
                )?,
            ];
            if let Some(idem) = idempotency {
                let mut item = instance_idempotency_key(&record.owner, &idem.key);
                item.insert("fingerprint".into(), s(idem.fingerprint.clone()));
                item.insert("instance_id".into(), s(record.id.clone()));
                items.push(self.put_item(item, "attribute_not_exists(pk)", vec![])?);
            }
            match self.transact(items).await? {
                None => return Ok(CreateInstanceOutcome::Created),
                Some(codes) => {
                    if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                        return Err(Error::Conflict(format!("instance {} exists", record.id)));
                    }
                    if codes.get(1).map(String::as_str) == Some("ConditionalCheckFailed") {
                        let in_use = self.gpus_in_use(&record.owner).await?;
                        return Ok(CreateInstanceOutcome::OverQuota { in_use, quota });
                    }
                    // A concurrent create with the same key, or a transaction conflict:
                    // look again.
                }
            }
        }
        Err(internal("recording an instance", "too much contention"))
    }

    async fn get_instance(&self, id: &str) -> Result<Option<CloudInstance>> {
        self.get(&format!("INST#{id}"), "INST", true)
            .await?
            .map(|i| item_to_instance(&i))
            .transpose()
    }

    async fn list_instances(&self, owner: Option<&str>) -> Result<Vec<CloudInstance>> {
        let Some(owner) = owner else {
            // Everyone's (admins, reconcile): a filtered scan, sorted here.
            let mut all: Vec<CloudInstance> = self
                .scan_prefix("INST#")
                .await?
                .iter()
                .map(item_to_instance)
                .collect::<Result<_>>()?;
            all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            return Ok(all);
        };
        let items = self
            .query_all("Query instances", |start| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(table::REQUESTS_INDEX)
                    .key_condition_expression("#p = :owner")
                    .expression_attribute_names("#p", table::REQUESTS_PK)
                    .expression_attribute_values(":owner", s(format!("IUSER#{owner}")))
                    .set_exclusive_start_key(start)
            })
            .await?;
        let mut out: Vec<CloudInstance> =
            items.iter().map(item_to_instance).collect::<Result<_>>()?;
        out.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(out)
    }

    async fn save_instance(&self, record: &CloudInstance) -> Result<CloudInstance> {
        let mut next = record.clone();
        next.version = record.version + 1;
        let frees = next.status.is_final();
        let body = serde_json::to_string(&next).map_err(|e| internal("encoding an instance", e))?;
        // An update, not a put: `holds_gpus` stays as the create (or the freeing save) left it.
        let update = |condition: &str, holds: Option<u32>| -> Result<Update> {
            let mut u = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(format!("INST#{}", next.id), "INST")))
                .update_expression(if frees {
                    "SET body = :body, version = :next, holds_gpus = :zero"
                } else {
                    "SET body = :body, version = :next"
                })
                .condition_expression(condition)
                .expression_attribute_values(":body", s(body.clone()))
                .expression_attribute_values(":next", n(next.version))
                .expression_attribute_values(":v", n(record.version));
            if frees {
                u = u.expression_attribute_values(":zero", n(0));
            }
            if let Some(g) = holds {
                u = u.expression_attribute_values(":g", n(g));
            }
            u.build()
                .map_err(|e| internal("building an instance update", e))
        };
        if frees && next.gpu_count > 0 {
            // Ending it frees its GPUs in the same transaction, if it still holds them.
            for _ in 0..MAX_ATTEMPTS {
                let items = vec![
                    TransactWriteItem::builder()
                        .update(update(
                            "attribute_exists(pk) AND version = :v AND holds_gpus = :g",
                            Some(next.gpu_count),
                        )?)
                        .build(),
                    self.update_item(
                        quota_key(&next.owner),
                        "SET in_use = in_use - :n",
                        None,
                        vec![(":n", n(next.gpu_count))],
                    )?,
                ];
                match self.transact(items).await? {
                    None => return Ok(next),
                    // Not holding (freed before, or a record older than the quota), or
                    // changed: the plain save below tells which.
                    Some(codes)
                        if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") =>
                    {
                        break
                    }
                    Some(_) => continue,
                }
            }
        }
        let u = update("attribute_exists(pk) AND version = :v", None)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(u.key))
            .update_expression(u.update_expression)
            .set_condition_expression(u.condition_expression)
            .set_expression_attribute_values(u.expression_attribute_values)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.stats
                    .record("UpdateItem", capacity_of(out.consumed_capacity()));
                Ok(next)
            }
            Err(e) if code(&e).as_deref() == Some("ConditionalCheckFailedException") => {
                match self.get_instance(&record.id).await? {
                    None => Err(Error::NotFound(format!("instance {}", record.id))),
                    Some(_) => Err(Error::Conflict(format!(
                        "instance {} was changed meanwhile",
                        record.id
                    ))),
                }
            }
            Err(e) => Err(internal("UpdateItem instance", DisplayErrorContext(e))),
        }
    }
}

#[async_trait]
impl RateLimitStore for DynamoStore {
    async fn count_hit(
        &self,
        bucket: &str,
        window_start: Millis,
        expires_at: Millis,
    ) -> Result<u64> {
        // One atomic ADD per request; TTL (seconds) removes old windows.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("RATE#{bucket}#{window_start}"), "RATE")))
            .update_expression("ADD hits :one SET #ttl = :ttl")
            .expression_attribute_names("#ttl", table::TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n(expires_at / 1000))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| internal("UpdateItem rate", DisplayErrorContext(e)))?;
        self.stats
            .record("UpdateItem", capacity_of(out.consumed_capacity()));
        out.attributes()
            .and_then(|a| get_n::<u64>(a, "hits"))
            .ok_or_else(|| internal("UpdateItem rate", "no count returned"))
    }

    async fn hits(&self, bucket: &str, window_start: Millis) -> Result<u64> {
        // Strongly consistent: a count just added elsewhere must be seen.
        Ok(self
            .get(&format!("RATE#{bucket}#{window_start}"), "RATE", true)
            .await?
            .and_then(|item| get_n::<u64>(&item, "hits"))
            .unwrap_or(0))
    }
}

// The command log: one partition `CMDLOG`, sort key = entry id (time-ordered), so a page is
// one Query newest first with the cursor and the last clear as sort-key bounds. Cloud
// commands are rare (launches, terminations), so one partition is far from its limits.
// The last clear is `CMDLOG`/`CLEAR`, only ever moved forward.

const CMDLOG_PK: &str = "CMDLOG";

#[async_trait]
impl CommandLogStore for DynamoStore {
    async fn append_command(&self, entry: &CommandEntry) -> Result<()> {
        let mut item = key(CMDLOG_PK, format!("E#{}", entry.id));
        item.insert(
            "body".into(),
            s(serde_json::to_string(entry).map_err(|e| internal("encoding a command", e))?),
        );
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| internal("PutItem command", DisplayErrorContext(e)))?;
        self.stats
            .record("PutItem", capacity_of(out.consumed_capacity()));
        Ok(())
    }

    async fn list_commands(
        &self,
        limit: usize,
        before: Option<&str>,
        since: Option<Millis>,
    ) -> Result<Vec<CommandEntry>> {
        let lower = format!("E#{:020}", since.unwrap_or(0).max(0));
        let upper = match before {
            Some(b) => format!("E#{b}"),
            None => "E#~".to_string(),
        };
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lower AND :upper")
                .expression_attribute_values(":pk", s(CMDLOG_PK))
                .expression_attribute_values(":lower", s(lower.clone()))
                .expression_attribute_values(":upper", s(upper.clone()))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| internal("Query commands", DisplayErrorContext(e)))?;
            self.stats
                .record("Query", capacity_of(page.consumed_capacity()));
            for item in page.items() {
                let body = get_s(item, "body").unwrap_or_default();
                let entry: CommandEntry =
                    serde_json::from_str(&body).map_err(|e| internal("decoding a command", e))?;
                // BETWEEN includes the cursor itself.
                if before != Some(entry.id.as_str()) {
                    out.push(entry);
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn record_clear(&self, at: Millis) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(CMDLOG_PK, "CLEAR")))
            .update_expression("SET cleared_at = :at")
            .condition_expression("attribute_not_exists(cleared_at) OR cleared_at < :at")
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A later clear is already recorded.
            Err(e) if code(&e).as_deref() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(internal("UpdateItem clear", DisplayErrorContext(e))),
        }
    }

    async fn last_clear(&self) -> Result<Option<Millis>> {
        Ok(self
            .get(CMDLOG_PK, "CLEAR", true)
            .await?
            .and_then(|item| get_n::<i64>(&item, "cleared_at")))
    }
}

// Host pools: `HOSTPOOL#<hostname>`/`POOL` with `pool`; moves are conditional on the pool
// read (or on the item's absence).

#[async_trait]
impl HostPoolStore for DynamoStore {
    async fn host_pools(&self) -> Result<HashMap<String, String>> {
        Ok(self
            .scan_prefix("HOSTPOOL#")
            .await?
            .iter()
            .filter_map(|item| {
                let host = get_s(item, table::PARTITION_KEY)?
                    .strip_prefix("HOSTPOOL#")?
                    .to_string();
                Some((host, get_s(item, "pool")?))
            })
            .collect())
    }

    async fn move_host(
        &self,
        hostname: &str,
        from: Option<&str>,
        to: &str,
        now: Millis,
    ) -> Result<()> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("HOSTPOOL#{hostname}"), "POOL")))
            // `pool` is a DynamoDB reserved word.
            .update_expression("SET #pool = :to, updated_at = :now")
            .expression_attribute_names("#pool", "pool")
            .expression_attribute_values(":to", s(to))
            .expression_attribute_values(":now", n(now));
        request = match from {
            Some(from) => request
                .condition_expression("#pool = :from")
                .expression_attribute_values(":from", s(from)),
            None => request.condition_expression("attribute_not_exists(pk)"),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e).as_deref() == Some("ConditionalCheckFailedException") => {
                Err(Error::Conflict(format!(
                    "host {hostname} was moved by someone else meanwhile"
                )))
            }
            Err(e) => Err(internal("UpdateItem host pool", DisplayErrorContext(e))),
        }
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
