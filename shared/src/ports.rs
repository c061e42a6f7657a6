//! Ports: what the use cases need from the outside world. Each has an embedded/local
//! adapter (SQLite, agent processes, in-process notifier) and an AWS one.
//!
//! The store port is shaped for DynamoDB as much as for SQLite: every hot-path method is a
//! single-key lookup, a conditional write or an index query/counter, and `claim_vm` is one
//! atomic step (a transaction in SQLite; a conditional write per candidate in DynamoDB).
//!
//! Length: every port in one file, so the core's whole boundary reads in one place; about half
//! of it is doc comments.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::domain::network::{Image, Network, Port, PortAttachment};

use crate::domain::costs::{BudgetCheck, SpendRecord};
use crate::domain::instances::{CloudInstance, NewInstance, ProviderInstance};
use crate::domain::offers::{Offer, OfferQuery};
use crate::domain::{
    ApiKey, Email, GpuRequest, Millis, Operation, Pin as VmPin, RequestChange, Vm, VmChange,
};
use crate::error::Result;

/// What a claim asks the store to do atomically.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub email: Email,
    pub crd_command: String,
    pub pin: VmPin,
    pub now: Millis,
    /// Hash of the new seat token the claimant gets if a VM is assigned now.
    pub seat_hash: String,
    /// Only VMs heard from at or after this time may be assigned (`Liveness`).
    pub live_since: Millis,
}

/// Moving a participant off their VM onto a free, live one, in one atomic step.
#[derive(Debug, Clone)]
pub struct MoveSeat {
    /// The VM the participant holds now; it is left in `error` with `reason` and retired
    /// (`Assignment::retired`), so nobody else is ever handed a machine that broke or held
    /// someone's session, even if its agent comes back.
    pub from: String,
    /// The participant's own move: their seat hash must still be the VM's (`None`: admin).
    pub seat_hash: Option<String>,
    /// A particular free VM to move to (admin); `None` takes any assignable one.
    pub to: Option<String>,
    /// The PIN for the new VM (a new machine, a new PIN).
    pub pin: VmPin,
    pub reason: String,
    pub live_since: Millis,
    pub now: Millis,
}

impl MoveSeat {
    /// The assignment of `from` this move takes: a participant's, and (for their own move)
    /// the one their seat token names. Both stores decide with this.
    pub fn held<'a>(&self, from: Option<&'a Vm>) -> Option<&'a crate::domain::Assignment> {
        from.and_then(|v| v.assignment.as_ref()).filter(|a| {
            a.is_participant()
                && self
                    .seat_hash
                    .as_ref()
                    .is_none_or(|h| a.seat_hash.as_ref() == Some(h))
        })
    }
}

/// How a move ended.
#[derive(Debug, Clone, PartialEq)]
pub enum MoveOutcome {
    /// The participant now holds this VM (same email, seat and CRD command; new PIN).
    Moved(Box<Vm>),
    /// No assignable VM (or the chosen one is not assignable); nothing changed.
    NoneFree,
}

/// How a claim ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// A free VM was assigned to this email just now.
    Assigned(Vm),
    /// This email already holds a VM; it gets the same one back.
    AlreadyAssigned(Vm),
    /// No assignable VM was left.
    NoneFree,
}

/// VM records.
#[async_trait]
pub trait VmStore: Send + Sync {
    /// Creates a record; `Conflict` if the hostname exists.
    async fn insert_vm(&self, vm: &Vm) -> Result<()>;
    async fn get_vm(&self, hostname: &str) -> Result<Option<Vm>>;
    /// Every VM, oldest first. Admin views only: not a hot path.
    async fn list_vms(&self) -> Result<Vec<Vm>>;
    /// Applies one change atomically (read-check-write, see `VmChange::apply`) and returns
    /// the new record; `NotFound` for an unknown hostname, `Conflict` for a refused
    /// state transition (nothing changes then).
    async fn update_vm(&self, hostname: &str, change: &VmChange, now: Millis) -> Result<Vm>;
    /// Atomically: if `email` already holds a VM return it; otherwise assign one assignable
    /// VM (see `Vm::is_assignable`) to it. Two concurrent claims never get the same VM,
    /// and one email never gets two.
    async fn claim_vm(&self, request: &ClaimRequest) -> Result<ClaimOutcome>;
    /// How many VMs satisfy `Vm::is_assignable(live_since)`.
    async fn count_assignable(&self, live_since: Millis) -> Result<u64>;
    /// The VM whose participant holds the seat token with this hash.
    async fn vm_by_seat(&self, seat_hash: &str) -> Result<Option<Vm>>;
    /// Gives the participant of `hostname` a new seat token (the old one stops working) and
    /// returns the VM; `NotFound` if no participant holds it.
    async fn reissue_seat(&self, hostname: &str, seat_hash: &str, now: Millis) -> Result<Vm>;
    /// See [`MoveSeat`]. `NotFound` if `from` is unknown or holds no participant (or not
    /// the one with `seat_hash`); nothing changes then or on `NoneFree`.
    async fn move_seat(&self, request: &MoveSeat) -> Result<MoveOutcome>;
    /// Removes a record (after its machine is confirmed gone, at `now`). A VM whose machine
    /// started has its spend moved to the ledger (`Vm::spend_record`, ended at `now`) in the
    /// same atomic step, so it is neither lost nor counted twice. Unknown hostnames are fine.
    async fn delete_vm(&self, hostname: &str, now: Millis) -> Result<()>;
}

/// Admin operation records, with "one at a time" enforced by the store.
#[async_trait]
pub trait OperationStore: Send + Sync {
    /// Records a new running operation; `Conflict` while another is running (an operation
    /// running for longer than `stale_after_ms` no longer blocks: its process died).
    async fn begin_operation(&self, op: &Operation, stale_after_ms: i64) -> Result<()>;
    async fn save_operation(&self, op: &Operation) -> Result<()>;
    async fn get_operation(&self, id: &str) -> Result<Option<Operation>>;
}

/// A page of a VM's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    pub lines: Vec<String>,
    /// Pass back as `after` to get only what came later.
    pub cursor: u64,
}

/// VM logs, kept as chunks (each well under DynamoDB's 400 KB item limit) with a per-VM
/// byte cap: the oldest lines go first, whole.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Appends lines (already cleaned; see `domain::logs`) in one atomic step, then trims
    /// the oldest lines until at most `cap_bytes` remain.
    async fn append_logs(
        &self,
        hostname: &str,
        lines: &[String],
        cap_bytes: usize,
        now: Millis,
    ) -> Result<()>;
    /// The lines appended after cursor `after` (0: everything kept), or `None` if this VM
    /// never logged.
    async fn read_logs(&self, hostname: &str, after: u64) -> Result<Option<LogPage>>;
    async fn delete_logs(&self, hostname: &str) -> Result<()>;
}

pub use crate::idempotency::{CreateOutcome, Idempotency, MAX_IDEMPOTENCY_KEY};

/// How recording a provisioning request ended.
pub type CreateRequestOutcome = CreateOutcome<GpuRequest>;

/// GPU provisioning requests, with the per-user quota enforced by the store.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Atomically: replays an idempotent repeat; refuses a request that would take the
    /// user's active GPUs (pending + provisioning + completed) over `quota`; otherwise
    /// records it. Concurrent creates never exceed the quota between them.
    /// With a `budget`, also holds its amount in the user's month, atomically with the
    /// record, or refuses (`OverBudget`) if the month's holds would pass it: concurrent
    /// creates never hold more than the budget between them.
    async fn create_request(
        &self,
        request: &GpuRequest,
        quota: u32,
        idempotency: Option<&Idempotency>,
        budget: Option<&BudgetCheck>,
    ) -> Result<CreateRequestOutcome>;
    async fn get_request(&self, request_id: &str) -> Result<Option<GpuRequest>>;
    /// Newest first, at most `limit`; `user` `None` lists everyone's (admins).
    async fn list_requests(&self, user: Option<&str>, limit: usize) -> Result<Vec<GpuRequest>>;
    /// Applies one change atomically (see `RequestChange::apply`); a request that stops
    /// being active frees its quota in the same step, so exactly once. `Conflict` when the
    /// state machine refuses (nothing changes), `NotFound` for an unknown id.
    async fn update_request(
        &self,
        request_id: &str,
        change: &RequestChange,
        now: Millis,
    ) -> Result<GpuRequest>;
    /// Every active request (pending, provisioning, completed), for the lease sweep.
    async fn active_requests(&self) -> Result<Vec<GpuRequest>>;
    /// GPUs held by `user_id`: active requests plus instances not destroyed or failed.
    async fn gpus_in_use(&self, user_id: &str) -> Result<u32>;
}

/// API keys, looked up by the hash of the presented key.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()>;
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>>;
    /// Every key (revoked ones too), oldest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    /// Marks a key revoked and returns it; `NotFound` for an unknown id.
    async fn revoke_api_key(&self, key_id: &str, now: Millis) -> Result<ApiKey>;
}

/// How recording an instance ended.
pub type CreateInstanceOutcome = CreateOutcome<CloudInstance>;

/// Records of instances created through `/api/v1/instances`.
#[async_trait]
pub trait InstanceStore: Send + Sync {
    /// Atomically: replays the record an idempotency key already names; refuses an
    /// instance that would take its owner's GPUs (active requests plus instances not yet
    /// destroyed or failed: one quota for both APIs) over `quota`; otherwise records it.
    /// With a `budget`, holds it as `create_request` does.
    async fn create_instance(
        &self,
        record: &CloudInstance,
        quota: u32,
        idempotency: Option<&Idempotency>,
        budget: Option<&BudgetCheck>,
    ) -> Result<CreateInstanceOutcome>;
    async fn get_instance(&self, id: &str) -> Result<Option<CloudInstance>>;
    /// Newest first; `owner` `None` lists everyone's (admins, reconcile).
    async fn list_instances(&self, owner: Option<&str>) -> Result<Vec<CloudInstance>>;
    /// Writes `record` if the stored version is still `record.version` and returns it with
    /// the next version; `Conflict` if someone saved in between, `NotFound` if it is gone.
    /// An instance that becomes final (destroyed, failed) frees its GPUs of the owner's
    /// quota in the same step, exactly once.
    async fn save_instance(&self, record: &CloudInstance) -> Result<CloudInstance>;
}

/// Fixed-window request counters shared by every process (Lambda functions, local server).
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Adds one hit to `bucket`'s window starting at `window_start` and returns the hits in
    /// that window including this one. Atomic: concurrent hits are all counted. The counter
    /// may be forgotten after `expires_at`.
    async fn count_hit(
        &self,
        bucket: &str,
        window_start: Millis,
        expires_at: Millis,
    ) -> Result<u64>;
    /// The hits counted in `bucket`'s window starting at `window_start` (0 if none); a
    /// read, no write.
    async fn hits(&self, bucket: &str, window_start: Millis) -> Result<u64>;
}

/// The append-only log of cloud commands.
#[async_trait]
pub trait CommandLogStore: Send + Sync {
    async fn append_command(&self, entry: &crate::domain::command_log::CommandEntry) -> Result<()>;
    /// Newest first, at most `limit`, older than the entry id `before` (a page cursor), and
    /// only entries at or after `since` (the last clear) when given.
    async fn list_commands(
        &self,
        limit: usize,
        before: Option<&str>,
        since: Option<Millis>,
    ) -> Result<Vec<crate::domain::command_log::CommandEntry>>;
    /// Records that the log was cleared at `at`: entries before it leave the default view.
    async fn record_clear(&self, at: Millis) -> Result<()>;
    /// When the log was last cleared.
    async fn last_clear(&self) -> Result<Option<Millis>>;
}

/// Which capacity pool each host is in (hosts without a record are in their GPU type's
/// default pool).
#[async_trait]
pub trait HostPoolStore: Send + Sync {
    /// hostname → pool, for every host with a recorded pool.
    async fn host_pools(&self) -> Result<std::collections::HashMap<String, String>>;
    /// Moves `hostname` from pool `from` (`None`: no recorded pool yet) to `to` in one
    /// conditional write; `Conflict` if its recorded pool is not `from` (someone moved it).
    async fn move_host(
        &self,
        hostname: &str,
        from: Option<&str>,
        to: &str,
        now: Millis,
    ) -> Result<()>;
}

/// What ended machines spent, kept after their records are gone, and the users' monthly
/// budget holds (see `domain::costs`).
#[async_trait]
pub trait SpendLedger: Send + Sync {
    /// Spend records of machines that ended at or after `since` (0: all of them).
    async fn ended_spend(&self, since: Millis) -> Result<Vec<SpendRecord>>;
    /// What `user_id`'s starts hold of their budget in `month` (`2026-12`), micro-dollars.
    async fn budget_held(&self, user_id: &str, month: &str) -> Result<i64>;
}

/// Whether the store works at all (for `/health`).
#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// A cheap call proving the store works: where the store can lose the ability to write
    /// on its own (a local disk: SQLite), a real write; DynamoDB, whose writes fail only
    /// with the service, a read.
    async fn ping(&self) -> Result<()>;
}

/// Everything the core keeps.
pub trait Store:
    VmStore
    + OperationStore
    + LogStore
    + RequestStore
    + ApiKeyStore
    + InstanceStore
    + RateLimitStore
    + CommandLogStore
    + HostPoolStore
    + SpendLedger
    + StoreHealth
{
}
impl<
        T: VmStore
            + OperationStore
            + LogStore
            + RequestStore
            + ApiKeyStore
            + InstanceStore
            + RateLimitStore
            + CommandLogStore
            + HostPoolStore
            + SpendLedger
            + StoreHealth,
    > Store for T
{
}

/// Where to run a VM: on-demand, or spot (cheaper, can be refused for capacity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Market {
    OnDemand,
    Spot,
}

impl Market {
    pub fn as_str(self) -> &'static str {
        match self {
            Market::OnDemand => "on-demand",
            Market::Spot => "spot",
        }
    }
}

/// What the compute provider needs to start one VM.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub hostname: String,
    /// The VM's bearer token, plain; the provider passes it to the machine and forgets it.
    pub token: crate::domain::VmToken,
    /// The URL the VM's agent calls back.
    pub allocator_url: String,
    /// The launch operation, recorded on the machine (tags) for reconciliation.
    pub operation_id: String,
    /// Idempotency key: a retried launch with the same key starts no second machine.
    pub client_token: String,
    pub market: Market,
    /// Overrides the configured instance type (machines of provisioning requests).
    pub instance_type: Option<String>,
    /// The provisioning request this machine belongs to, tagged on it with its lease end.
    pub lease: Option<LeaseTags>,
    /// Overrides the configured image (launches onto a host's runpod pool).
    pub image: Option<String>,
    /// The capacity pool the machine starts in, tagged at launch (`gpufleet:pool`).
    pub pool: Option<String>,
}

/// Tags on a machine of a provisioning request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTags {
    pub request_id: String,
    /// RFC 3339: the latest the lease can end (requested duration after the request).
    pub expires_at: String,
}

/// Why a launch failed, as far as retrying is concerned.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No capacity for this type/market right now (spot may fall back to on-demand).
    #[error("insufficient capacity: {0}")]
    Capacity(String),
    /// Rate limited; retry later.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The request can never succeed as configured (bad AMI, instance type, subnet...).
    #[error("{0}")]
    Rejected(String),
    #[error(transparent)]
    Other(#[from] crate::error::Error),
}

/// A machine as the provider sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    /// The `gpufleet:hostname` tag (or the local equivalent).
    pub hostname: Option<String>,
    pub state: InstanceState,
    pub launched_at: Millis,
    /// Where to reach it: the public IP, else the private one (local mode: 127.0.0.1).
    pub address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl InstanceState {
    /// On its way out or gone: no longer running up a bill.
    pub fn is_ending(self) -> bool {
        matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }
}

/// Starts and stops machines; knows which ones belong to this deployment.
#[async_trait]
pub trait ComputeProvider: Send + Sync {
    /// Starts one machine; returns the provider's instance id.
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, LaunchError>;
    /// This deployment's machine for `hostname` that is not ending, if any (lets a redelivered
    /// launch adopt a machine an earlier attempt started).
    async fn find_by_hostname(&self, hostname: &str) -> Result<Option<Instance>>;
    /// Every machine of this deployment that is not terminated (paginated by the provider).
    async fn list_machines(&self) -> Result<Vec<Instance>>;
    /// Asks for each machine to end and returns the ids confirmed ending or gone. Machines
    /// of other deployments are never touched.
    async fn terminate(&self, instance_ids: &[String]) -> Result<Vec<String>>;
    /// The provider's machine tags, where machines carry them (EC2: a host's pool is
    /// mirrored on its machine); `None` for machines without tags (local processes).
    fn tags(&self) -> Option<&dyn MachineTags>;
    /// The current spot price of `instance_type`, USD/hour, lowest over all zones of
    /// the region; `None` where the provider has no spot market (local).
    async fn spot_price(&self, _instance_type: &str) -> Result<Option<f64>> {
        Ok(None)
    }
}

/// Tags on this deployment's machines.
#[async_trait]
pub trait MachineTags: Send + Sync {
    /// Sets tag `key` on this deployment's machine `instance_id` (`NotFound` if it is not ours).
    async fn set_tag(&self, instance_id: &str, key: &str, value: &str) -> Result<()>;
    /// Reads tag `key` of this deployment's machine (`None`: no such tag).
    async fn get_tag(&self, instance_id: &str, key: &str) -> Result<Option<String>>;
}

/// What a provider needs to create one instance from an offer.
#[derive(Debug, Clone)]
pub struct CreateInstanceSpec {
    /// Our record's id: the machine carries it (tag, label) and it is the idempotency
    /// token, so a retried create never starts a second machine.
    pub record_id: String,
    pub owner: String,
    /// The offer's provider id.
    pub offer_id: String,
    pub request: NewInstance,
    /// What the offer said (EC2: instance type and market).
    pub offer: Offer,
}

/// A GPU cloud: offers, and the lifecycle of instances created from them. Every call
/// only ever touches machines this deployment created.
#[async_trait]
pub trait GpuCloud: Send + Sync {
    /// `aws_ec2`, `vast_ai`, `local`.
    fn name(&self) -> &'static str;
    /// Whether `image` is required on create (Vast runs containers only).
    fn requires_image(&self) -> bool {
        false
    }
    /// Offers matching `query` (providers may pre-filter; the caller applies the query).
    async fn search_offers(&self, query: &OfferQuery) -> Result<Vec<Offer>>;
    /// One offer by its provider id.
    async fn offer(&self, provider_id: &str) -> Result<Option<Offer>>;
    /// Creates the machine, or finds the one an earlier attempt with the same record id
    /// created.
    async fn create(&self, spec: &CreateInstanceSpec) -> Result<ProviderInstance, LaunchError>;
    /// `None` when the provider no longer knows it (gone).
    async fn show(&self, provider_id: &str) -> Result<Option<ProviderInstance>>;
    async fn start(&self, provider_id: &str) -> Result<()>;
    async fn stop(&self, provider_id: &str) -> Result<()>;
    /// Ends the machine; true once the provider confirms it is ending or gone.
    async fn destroy(&self, provider_id: &str) -> Result<bool>;
    /// Every live machine this deployment created through the instances API.
    async fn list_owned(&self) -> Result<Vec<ProviderInstance>>;
}

/// Work for the provisioner.
#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, jobs: &[crate::domain::Job]) -> Result<()>;
    /// Records new VMs in `store` and queues their launch jobs. Here: the records, then the
    /// jobs (SQS cannot join a DynamoDB transaction; a crash between the two leaves records
    /// without a job, which the liveness sweep fails at the boot timeout). A queue kept in
    /// the store itself (local mode) overrides this to commit both in one transaction.
    /// On an error no record is left behind.
    async fn record_and_enqueue(
        &self,
        store: &dyn Store,
        vms: &[Vm],
        jobs: &[crate::domain::Job],
    ) -> Result<()> {
        for (i, vm) in vms.iter().enumerate() {
            if let Err(e) = store.insert_vm(vm).await {
                for done in &vms[..i] {
                    store.delete_vm(&done.hostname, done.created_at).await?;
                }
                return Err(e);
            }
        }
        if let Err(e) = self.enqueue(jobs).await {
            // Nothing would start these machines: take the records back.
            for vm in vms {
                store.delete_vm(&vm.hostname, vm.created_at).await?;
            }
            return Err(e);
        }
        Ok(())
    }
    /// Delays the next delivery of a message that will be retried (exponential backoff
    /// instead of the queue's fixed visibility timeout). `receipt` identifies the delivery.
    async fn retry_later(&self, receipt: &str, delay: std::time::Duration) -> Result<()>;
    /// A cheap call proving the queue answers (for `/health`).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// Backoff before delivery `attempt + 1`: 30 s doubling, at most 15 minutes.
pub fn retry_delay(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_secs((30u64 << attempt.saturating_sub(1).min(5)).min(900))
}

/// A future that resolves when something may have changed for a VM.
pub type Wakeup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Wakes long-polling VMs when they are assigned. In one process (local mode) this is an
/// in-memory signal; across Lambda invocations it degrades to a short poll interval.
pub trait AssignmentNotifier: Send + Sync {
    /// Registers interest *before* the caller reads the store, so a notification that
    /// lands between the read and the wait is not lost.
    fn subscribe(&self, hostname: &str) -> Wakeup;
    fn notify(&self, hostname: &str);
}

/// Time, injectable so tests can control it.
pub trait Clock: Send + Sync {
    fn now_millis(&self) -> Millis;
}

/// Network and firewall operations on this deployment's machines (the AWS analogues of the
/// OpenStack/Hyperstack calls of the capacity tooling): VPCs and subnets, network interfaces,
/// security-group attachments, images. Only this deployment's instances are ever changed.
#[async_trait]
pub trait NetworkProvider: Send + Sync {
    /// A VPC by id or Name tag, with its subnets.
    async fn show_network(&self, name_or_id: &str) -> Result<Network>;
    /// Creates a network interface in `subnet_id`, tagged with the deployment and `name`.
    async fn create_port(&self, subnet_id: &str, name: &str) -> Result<Port>;
    /// Attaches interface `port_id` to this deployment's instance `instance_id`.
    async fn attach_port(&self, instance_id: &str, port_id: &str) -> Result<PortAttachment>;
    /// This deployment's instance whose Name tag is `name`.
    async fn instance_by_name(&self, name: &str) -> Result<Option<String>>;
    /// The state of this deployment's instance.
    async fn instance_state(&self, instance_id: &str) -> Result<Option<String>>;
    /// This deployment's instances the security group is attached to.
    async fn firewall_attachments(&self, group_id: &str) -> Result<Vec<String>>;
    /// Makes the group attached to exactly `instance_ids` among this deployment's instances
    /// (other groups of each instance are kept); returns the attachments afterwards.
    async fn set_firewall_attachments(
        &self,
        group_id: &str,
        instance_ids: &[String],
    ) -> Result<Vec<String>>;
    /// Images this deployment may launch: owned by this account or tagged `gpufleet:image`
    /// (none for another `region` than the deployment's).
    async fn images(&self, region: Option<&str>) -> Result<Vec<Image>>;
}

/// Where a VM sends one file: a short-lived URL it PUTs exactly `size` bytes to, with these
/// headers. On AWS a presigned S3 PUT (the VM holds no S3 credentials); in local mode a
/// one-time URL of the local server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadUrl {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub expires_at: crate::domain::Millis,
}

/// One object as the work store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub size: u64,
}

/// The object store of participants' work (S3 on AWS, files under the data directory in
/// local mode). Keys are built by `domain::collect` only; adapters never interpret them.
#[async_trait]
pub trait WorkStore: Send + Sync {
    /// A URL that accepts one PUT of exactly `size` bytes to `key` until `ttl` has passed.
    async fn upload_url(&self, key: &str, size: u64, ttl: std::time::Duration)
        -> Result<UploadUrl>;
    /// Writes a small object (a manifest) from the API itself.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()>;
    /// The object's bytes, `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>>;
    /// Deletes every object under `prefix`; returns how many went.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64>;
    /// Starts writing a large object in order (a multipart upload on S3).
    async fn start_export(&self, key: &str) -> Result<Box<dyn ExportUpload>>;
}

/// A large object being written front to back; nothing is visible until `finish`.
#[async_trait]
pub trait ExportUpload: Send {
    async fn write(&mut self, bytes: Vec<u8>) -> Result<()>;
    /// Completes the object and returns a URL anyone holding it may GET it from until
    /// `ttl` has passed.
    async fn finish(self: Box<Self>, ttl: std::time::Duration) -> Result<String>;
    /// Gives up; whatever was written is discarded.
    async fn abort(self: Box<Self>);
}
