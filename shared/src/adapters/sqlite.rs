//! The embedded store: SQLite in WAL mode in a data directory.
//!
//! Writes go to one writer thread that owns the write connection (SQLite has one writer
//! anyway). It takes every write that is queued, runs each inside its own SAVEPOINT of one
//! `BEGIN IMMEDIATE` transaction, commits once, and only then answers each caller: group
//! commit. A write that fails rolls back to its savepoint without touching the others.
//! Under a burst of claims this turns hundreds of commits into a few (9,000 → see
//! docs/benchmarks.md). Reads use a pool of their own connections on the blocking thread
//! pool, which WAL lets run beside the writer.
//!
//! Durability: `synchronous=NORMAL` in WAL mode means a committed transaction survives the
//! process being killed (SIGKILL) at any point; only an OS crash or power cut can lose the
//! last commits. Set `SqliteDurability::Full` to fsync every commit as well.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::Context as _;
use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::domain::command_log::CommandEntry;
use crate::domain::instances::CloudInstance;
use crate::domain::logs::{chunk_lines, line_bytes};
use crate::domain::{ApiKey, GpuRequest, Job as QueueJob, RequestChange};
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

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "gpufleet.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteDurability {
    /// Survives process crashes (the default).
    Normal,
    /// Also survives power loss, at the cost of an fsync per commit.
    Full,
}

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writes: mpsc::Sender<Box<dyn WriteJob>>,
    readers: Mutex<Vec<Connection>>,
    durability: SqliteDurability,
}

/// Most writes one commit groups; bounds how long the first of them waits.
const MAX_GROUP: usize = 256;

/// A queued write: run inside the group's transaction, then told how the commit went.
trait WriteJob: Send {
    fn run(&mut self, conn: &Connection);
    fn failed(&self) -> bool;
    fn finish(self: Box<Self>, commit: std::result::Result<(), CommitError>);
}

/// Why a group's transaction could not begin or commit, shared by every job of the group.
#[derive(Clone)]
struct CommitError {
    detail: String,
    /// Set for a storage fault (disk full, read-only, I/O): see `storage_fault`.
    fault: Option<&'static str>,
}

impl CommitError {
    fn of(e: &rusqlite::Error) -> Self {
        CommitError {
            detail: e.to_string(),
            fault: storage_fault(e),
        }
    }

    fn into_error(self) -> Error {
        match self.fault {
            Some(cause) => unavailable(cause, &self.detail),
            None => Error::Internal(anyhow::anyhow!("store commit failed: {}", self.detail)),
        }
    }
}

/// A failure of the storage under the database, which the operator can fix and a client
/// cannot: answered as 503 naming the cause (and logged), not as an opaque 500.
fn storage_fault(e: &rusqlite::Error) -> Option<&'static str> {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code()? {
        ErrorCode::ReadOnly => Some("the database or its directory is read-only"),
        ErrorCode::DiskFull => Some("the disk is full"),
        ErrorCode::SystemIoFailure => Some("the disk reported an I/O error"),
        ErrorCode::CannotOpen => Some("the database file cannot be opened"),
        ErrorCode::PermissionDenied => Some("permission to the database file was denied"),
        _ => None,
    }
}

fn unavailable(cause: &'static str, detail: &dyn std::fmt::Display) -> Error {
    tracing::error!(cause, error = %detail, "the store cannot save changes");
    Error::Unavailable(format!("the store cannot save changes right now: {cause}"))
}

struct Job<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T> + Send> WriteJob for Job<T, F> {
    fn run(&mut self, conn: &Connection) {
        if let Some(work) = self.work.take() {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn)));
            self.result = Some(outcome.unwrap_or_else(|_| {
                Err(Error::Internal(anyhow::anyhow!("a store write panicked")))
            }));
        }
    }

    fn failed(&self) -> bool {
        !matches!(self.result, Some(Ok(_)))
    }

    fn finish(self: Box<Self>, commit: std::result::Result<(), CommitError>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Err(e), Some(Err(own))) if e.fault.is_none() => {
                tracing::error!(error = %e.detail, "commit failed");
                Err(own)
            }
            (Err(e), _) => Err(e.into_error()),
            (Ok(()), None) => Err(Error::Internal(anyhow::anyhow!("store write did not run"))),
        };
        let _ = self.reply.send(result);
    }
}

/// The writer thread: group, run, commit, answer. Ends when the store is dropped.
fn writer_loop(conn: Connection, jobs: mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = CommitError::of(&e);
            for job in group {
                job.finish(Err(e.clone()));
            }
            continue;
        }
        for job in group.iter_mut() {
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                tracing::error!(error = %e, "savepoint failed");
                continue;
            }
            job.run(&conn);
            if job.failed() {
                let _ = conn.execute_batch("ROLLBACK TO job");
            }
            let _ = conn.execute_batch("RELEASE job");
        }
        let commit = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            CommitError::of(&e)
        });
        for job in group {
            job.finish(commit.clone());
        }
    }
}

const VM_COLUMNS: &str =
    "hostname, status, status_reason, gpu_health, in_use, email, crd_command, \
     pin, assigned_at, instance_id, token_hash, metrics, created_at, updated_at, last_seen_at, \
     seat_hash, command_at";

/// The SQL form of `AssignableRule`, built from its constants so the rule has one source.
/// `row` qualifies the columns (`NEW.`, `OLD.` inside triggers; empty in queries).
fn assignable_predicate_of(row: &str) -> String {
    format!(
        "({row}status = '{}' AND {row}email IS NULL AND {row}gpu_health != '{}')",
        AssignableRule::STATUS.as_str(),
        AssignableRule::EXCLUDED_HEALTH.as_str()
    )
}

fn assignable_predicate() -> String {
    assignable_predicate_of("")
}

/// Schema version 2: the free count as a counter kept by triggers, so reading it is one
/// point lookup whatever the fleet size (counting the partial index costs a row lookup per
/// free VM: 32 req/s with 20,000 free). Every column in the predicate is NOT NULL except
/// `email`, tested with IS NULL, so the predicate is always 0 or 1.
fn free_counter_migration() -> String {
    let new = assignable_predicate_of("NEW.");
    let old = assignable_predicate_of("OLD.");
    format!(
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
         INSERT INTO counters (name, value)
             SELECT 'assignable', COUNT(*) FROM vms WHERE {pred};
         CREATE TRIGGER vms_free_insert AFTER INSERT ON vms WHEN {new} BEGIN
             UPDATE counters SET value = value + 1 WHERE name = 'assignable';
         END;
         CREATE TRIGGER vms_free_delete AFTER DELETE ON vms WHEN {old} BEGIN
             UPDATE counters SET value = value - 1 WHERE name = 'assignable';
         END;
         CREATE TRIGGER vms_free_update AFTER UPDATE ON vms WHEN {new} != {old} BEGIN
             UPDATE counters SET value = value + (CASE WHEN {new} THEN 1 ELSE -1 END)
             WHERE name = 'assignable';
         END;",
        pred = assignable_predicate()
    )
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_with(data_dir, SqliteDurability::Normal)
    }

    pub fn open_with(data_dir: &Path, durability: SqliteDurability) -> Result<Self> {
        let path = data_dir.join(DB_FILE);
        restrict_to_owner(data_dir, &path)?;
        let writer = open_connection(&path, durability, false)?;
        migrate(&writer)?;
        let (writes, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer, jobs))
            .context("starting the SQLite writer thread")?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writes,
                readers: Mutex::new(Vec::new()),
                durability,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues `f` for the writer thread; it runs inside a transaction (its own savepoint)
    /// and the answer comes after the commit.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            work: Some(f),
            result: None,
            reply,
        };
        self.inner
            .writes
            .send(Box::new(job))
            .map_err(|_| Error::Internal(anyhow::anyhow!("the SQLite writer thread stopped")))?;
        answer
            .await
            .map_err(|_| Error::Internal(anyhow::anyhow!("the SQLite writer thread stopped")))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.path, inner.durability, true)?,
            };
            let result = f(&conn);
            let mut readers = inner.readers.lock().unwrap_or_else(|e| e.into_inner());
            if readers.len() < 32 {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("store task failed: {e}")))?
    }
}

/// The data directory holds PINs, CRD codes and job tokens: a directory this creates is the
/// owner's alone (0700), and so are the database and its WAL and shared-memory files (0600:
/// SQLite creates `-wal` and `-shm` with the database file's mode, so creating that file
/// first with 0600 covers them; modes of files from older versions are tightened here too).
/// An existing directory is not changed (it may be a home or a shared folder): a warning says
/// when others can enter it.
fn restrict_to_owner(data_dir: &Path, db: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    if data_dir.exists() {
        let mode = std::fs::metadata(data_dir)
            .with_context(|| format!("reading {}", data_dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %data_dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "the data directory is open to other users; its database files are 0600, \
                 but consider `chmod 700` on it"
            );
        }
    } else {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)
        .with_context(|| format!("creating {}", db.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", file.display()))?;
        }
    }
    Ok(())
}

fn open_connection(
    path: &Path,
    durability: SqliteDurability,
    read_only: bool,
) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .context("setting busy timeout")?;
    if !read_only {
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .context("enabling WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Internal(anyhow::anyhow!(
                "SQLite refused WAL mode (got {mode})"
            )));
        }
    }
    let sync = match durability {
        SqliteDurability::Normal => "NORMAL",
        SqliteDurability::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"
    ))
    .context("setting pragmas")?;
    Ok(conn)
}

/// Schema versions, applied in order; `PRAGMA user_version` records how far we got.
fn migrate(conn: &Connection) -> Result<()> {
    let migrations: Vec<String> = vec![
        format!(
            "CREATE TABLE vms (
            hostname      TEXT PRIMARY KEY,
            status        TEXT NOT NULL,
            status_reason TEXT,
            gpu_health    TEXT NOT NULL,
            in_use        INTEGER NOT NULL DEFAULT 0,
            email         TEXT UNIQUE,
            crd_command   TEXT,
            pin           TEXT,
            assigned_at   INTEGER,
            instance_id   TEXT,
            token_hash    TEXT NOT NULL,
            metrics       TEXT NOT NULL DEFAULT '{{}}',
            created_at    INTEGER NOT NULL,
            updated_at    INTEGER NOT NULL,
            last_seen_at  INTEGER
         );
         CREATE INDEX vms_assignable ON vms(created_at, hostname) WHERE {};
         CREATE TABLE operations (
            id          TEXT PRIMARY KEY,
            status      TEXT NOT NULL,
            created_at  INTEGER NOT NULL,
            body        TEXT NOT NULL
         );
         CREATE INDEX operations_running ON operations(created_at) WHERE status = 'running';",
            assignable_predicate()
        ),
        free_counter_migration(),
        // Version 3: logs as chunks of whole lines, with a per-VM byte total.
        "CREATE TABLE log_chunks (
            hostname   TEXT NOT NULL,
            seq        INTEGER NOT NULL,
            body       TEXT NOT NULL,
            bytes      INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (hostname, seq)
         ) WITHOUT ROWID;
         CREATE TABLE log_totals (
            hostname TEXT PRIMARY KEY,
            bytes    INTEGER NOT NULL,
            next_seq INTEGER NOT NULL
         ) WITHOUT ROWID;"
            .to_string(),
        // Version 4: GPU provisioning requests (the record as JSON, plus the columns the
        // quota sum, listings and the sweep query), idempotency keys, API keys.
        "CREATE TABLE gpu_requests (
            request_id TEXT PRIMARY KEY,
            user_id    TEXT NOT NULL,
            status     TEXT NOT NULL,
            gpu_count  INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            body       TEXT NOT NULL
         );
         CREATE INDEX gpu_requests_by_user ON gpu_requests(user_id, created_at);
         CREATE INDEX gpu_requests_by_time ON gpu_requests(created_at);
         CREATE INDEX gpu_requests_active ON gpu_requests(user_id)
             WHERE status IN ('pending', 'provisioning', 'completed');
         CREATE TABLE idempotency_keys (
            user_id     TEXT NOT NULL,
            key         TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            request_id  TEXT NOT NULL,
            PRIMARY KEY (user_id, key)
         ) WITHOUT ROWID;
         CREATE TABLE api_keys (
            key_id     TEXT PRIMARY KEY,
            key_hash   TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL,
            body       TEXT NOT NULL
         );"
        .to_string(),
        // Version 5: instances of the offers API (record as JSON), their idempotency keys,
        // and rate-limit counters (one row per bucket and window).
        "CREATE TABLE cloud_instances (
            id         TEXT PRIMARY KEY,
            owner      TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            version    INTEGER NOT NULL,
            body       TEXT NOT NULL
         );
         CREATE INDEX cloud_instances_by_owner ON cloud_instances(owner, created_at);
         CREATE TABLE instance_idempotency_keys (
            user_id     TEXT NOT NULL,
            key         TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            instance_id TEXT NOT NULL,
            PRIMARY KEY (user_id, key)
         ) WITHOUT ROWID;
         CREATE TABLE rate_limits (
            bucket       TEXT NOT NULL,
            window_start INTEGER NOT NULL,
            hits         INTEGER NOT NULL,
            expires_at   INTEGER NOT NULL,
            PRIMARY KEY (bucket, window_start)
         ) WITHOUT ROWID;
         CREATE INDEX rate_limits_expiry ON rate_limits(expires_at);"
            .to_string(),
        // Version 6: the command log (append-only) and its clears.
        "CREATE TABLE command_log (
            id   TEXT PRIMARY KEY,
            at   INTEGER NOT NULL,
            body TEXT NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE command_log_clears (at INTEGER NOT NULL);"
            .to_string(),
        // Version 7: the capacity pool of each host (absent: its GPU type's default pool).
        "CREATE TABLE host_pools (
            hostname   TEXT PRIMARY KEY,
            pool       TEXT NOT NULL,
            updated_at INTEGER NOT NULL
         ) WITHOUT ROWID;"
            .to_string(),
        // Version 8: seats (the hash of each participant's seat token, the time of their
        // latest CRD command), liveness in the claim's index, and the durable job queue.
        format!(
            "ALTER TABLE vms ADD COLUMN seat_hash TEXT;
             ALTER TABLE vms ADD COLUMN command_at INTEGER;
             UPDATE vms SET command_at = assigned_at WHERE email IS NOT NULL;
             CREATE UNIQUE INDEX vms_by_seat ON vms(seat_hash) WHERE seat_hash IS NOT NULL;
             DROP INDEX vms_assignable;
             CREATE INDEX vms_assignable ON vms(created_at, hostname, last_seen_at) WHERE {pred};
             CREATE INDEX vms_free_by_last_seen ON vms(last_seen_at) WHERE {pred};
             CREATE TABLE jobs (
                id         INTEGER PRIMARY KEY AUTOINCREMENT,
                body       TEXT NOT NULL,
                attempts   INTEGER NOT NULL DEFAULT 0,
                not_before INTEGER NOT NULL DEFAULT 0
             );",
            pred = assignable_predicate()
        ),
    ];
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .context("reading schema version")? as usize;
    for (i, sql) in migrations.iter().enumerate().skip(version) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .with_context(|| format!("applying schema migration {}", i + 1))?;
    }
    Ok(())
}

fn sql_err(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| match storage_fault(&e) {
        Some(cause) => unavailable(cause, &format!("{context}: {e}")),
        None => Error::Internal(anyhow::Error::new(e).context(context)),
    }
}

fn row_to_vm(row: &Row<'_>) -> rusqlite::Result<Vm> {
    let text = |i: usize| -> rusqlite::Result<String> { row.get(i) };
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("bad {what} in store").into(),
        )
    };
    let status = VmStatus::parse(&text(1)?).map_err(|_| bad(1, "status"))?;
    let gpu_health = GpuHealth::parse(&text(3)?).map_err(|_| bad(3, "gpu_health"))?;
    let email: Option<String> = row.get(5)?;
    let assignment = match email {
        Some(email) => Some(Assignment {
            email,
            crd_command: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
            pin: row.get::<_, Option<String>>(7)?.unwrap_or_default(),
            assigned_at: row.get::<_, Option<i64>>(8)?.unwrap_or_default(),
            seat_hash: row.get(15)?,
            command_at: row.get::<_, Option<i64>>(16)?.unwrap_or_default(),
        }),
        None => None,
    };
    let metrics: StartupMetrics =
        serde_json::from_str(&text(11)?).map_err(|_| bad(11, "metrics"))?;
    Ok(Vm {
        hostname: text(0)?,
        status,
        status_reason: row.get(2)?,
        gpu_health,
        in_use: row.get::<_, i64>(4)? != 0,
        assignment,
        instance_id: row.get(9)?,
        token_hash: TokenHash::from_stored(text(10)?),
        metrics,
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
        last_seen_at: row.get(14)?,
    })
}

fn get_vm_in(conn: &Connection, hostname: &str) -> Result<Option<Vm>> {
    conn.prepare_cached(&format!("SELECT {VM_COLUMNS} FROM vms WHERE hostname = ?1"))
        .and_then(|mut stmt| stmt.query_row([hostname], row_to_vm).optional())
        .map_err(sql_err("reading a VM"))
}

fn insert_vm_in(conn: &Connection, vm: &Vm) -> Result<()> {
    let metrics = metrics_json(&vm.metrics)?;
    let a = vm.assignment.as_ref();
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO vms ({VM_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)
             ON CONFLICT(hostname) DO NOTHING"
        ))
        .and_then(|mut stmt| {
            stmt.execute(params![
                vm.hostname,
                vm.status.as_str(),
                vm.status_reason,
                vm.gpu_health.as_str(),
                vm.in_use as i64,
                a.map(|a| &a.email),
                a.map(|a| &a.crd_command),
                a.map(|a| &a.pin),
                a.map(|a| a.assigned_at),
                vm.instance_id,
                vm.token_hash.as_str(),
                metrics,
                vm.created_at,
                vm.updated_at,
                vm.last_seen_at,
                a.and_then(|a| a.seat_hash.as_ref()),
                a.map(|a| a.command_at),
            ])
        })
        .map_err(sql_err("inserting a VM"))?;
    if inserted == 0 {
        return Err(Error::Conflict(format!(
            "VM {} already exists",
            vm.hostname
        )));
    }
    Ok(())
}

fn insert_jobs_in(conn: &Connection, jobs: &[QueueJob], not_before: Millis) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO jobs (body, not_before) VALUES (?1, ?2)")
        .map_err(sql_err("queueing a job"))?;
    for job in jobs {
        stmt.execute(params![job.to_message(), not_before])
            .map_err(sql_err("queueing a job"))?;
    }
    Ok(())
}

/// A job of the durable queue (see [`SqliteStore::due_jobs`]).
#[derive(Debug, Clone)]
pub struct QueuedJob {
    pub id: i64,
    pub job: QueueJob,
    /// Deliveries so far (this one not counted).
    pub attempts: u32,
}

/// Local mode's durable job queue: jobs are rows of the store itself, so the VMs of a launch
/// and their launch jobs commit in one transaction, and jobs a crashed process left are
/// picked up by the next one. (See `adapters::durable_queue` for the worker.)
impl SqliteStore {
    /// Records `vms` and queues `jobs` in one transaction: both or neither.
    pub async fn insert_vms_and_jobs(&self, vms: &[Vm], jobs: &[QueueJob]) -> Result<()> {
        let (vms, jobs) = (vms.to_vec(), jobs.to_vec());
        self.write(move |conn| {
            for vm in &vms {
                insert_vm_in(conn, vm)?;
            }
            insert_jobs_in(conn, &jobs, 0)
        })
        .await
    }

    pub async fn enqueue_jobs(&self, jobs: &[QueueJob]) -> Result<()> {
        let jobs = jobs.to_vec();
        self.write(move |conn| insert_jobs_in(conn, &jobs, 0)).await
    }

    /// Jobs due at `now`, oldest first. A row that is not a job message (a poison message)
    /// is dropped with an error in the log.
    pub async fn due_jobs(&self, now: Millis) -> Result<Vec<QueuedJob>> {
        let rows: Vec<(i64, String, i64)> = self
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, body, attempts FROM jobs WHERE not_before <= ?1 ORDER BY id LIMIT 1000",
                )
                .and_then(|mut stmt| {
                    stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sql_err("reading due jobs"))
            })
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for (id, body, attempts) in rows {
            match QueueJob::from_message(&body) {
                Ok(job) => jobs.push(QueuedJob {
                    id,
                    job,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                }),
                Err(e) => {
                    tracing::error!(id, error = %e, "dropping a job that cannot be read");
                    self.finish_job(id).await?;
                }
            }
        }
        Ok(jobs)
    }

    /// Removes a job that is done (or abandoned).
    pub async fn finish_job(&self, id: i64) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM jobs WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([id]))
                .map_err(sql_err("finishing a job"))?;
            Ok(())
        })
        .await
    }

    /// Records a delivery and when the job may run again.
    pub async fn retry_job(&self, id: i64, attempts: u32, not_before: Millis) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached("UPDATE jobs SET attempts = ?2, not_before = ?3 WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(params![id, attempts, not_before]))
                .map_err(sql_err("delaying a job"))?;
            Ok(())
        })
        .await
    }

    /// Operations still marked running (after a crash: the ones it interrupted).
    pub async fn running_operations(&self) -> Result<Vec<Operation>> {
        let bodies: Vec<String> = self
            .read(|conn| {
                conn.prepare_cached("SELECT body FROM operations WHERE status = 'running'")
                    .and_then(|mut stmt| {
                        stmt.query_map([], |r| r.get(0))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(sql_err("reading running operations"))
            })
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| Error::Internal(e.into())))
            .collect()
    }
}

fn metrics_json(m: &StartupMetrics) -> Result<String> {
    serde_json::to_string(m).map_err(|e| Error::Internal(e.into()))
}

#[async_trait]
impl VmStore for SqliteStore {
    async fn insert_vm(&self, vm: &Vm) -> Result<()> {
        let vm = vm.clone();
        self.write(move |conn| insert_vm_in(conn, &vm)).await
    }

    async fn get_vm(&self, hostname: &str) -> Result<Option<Vm>> {
        let hostname = hostname.to_string();
        self.read(move |conn| get_vm_in(conn, &hostname)).await
    }

    async fn list_vms(&self) -> Result<Vec<Vm>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {VM_COLUMNS} FROM vms ORDER BY created_at, hostname"
                ))
                .map_err(sql_err("listing VMs"))?;
            let vms = stmt
                .query_map([], row_to_vm)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(sql_err("listing VMs"))?;
            Ok(vms)
        })
        .await
    }

    async fn update_vm(&self, hostname: &str, change: &VmChange, now: Millis) -> Result<Vm> {
        let hostname = hostname.to_string();
        let change = change.clone();
        self.write(move |conn| {
            let mut vm = get_vm_in(conn, &hostname)?
                .ok_or_else(|| Error::NotFound(format!("VM {hostname}")))?;
            change.apply(&mut vm, now)?;
            let metrics = metrics_json(&vm.metrics)?;
            conn.prepare_cached(
                "UPDATE vms SET status = ?2, status_reason = ?3, gpu_health = ?4, in_use = ?5,
                        instance_id = ?6, metrics = ?7, updated_at = ?8, last_seen_at = ?9,
                        crd_command = ?10, command_at = ?11
                 WHERE hostname = ?1",
            )
            .and_then(|mut stmt| {
                let a = vm.assignment.as_ref();
                stmt.execute(params![
                    vm.hostname,
                    vm.status.as_str(),
                    vm.status_reason,
                    vm.gpu_health.as_str(),
                    vm.in_use as i64,
                    vm.instance_id,
                    metrics,
                    vm.updated_at,
                    vm.last_seen_at,
                    a.map(|a| &a.crd_command),
                    a.map(|a| a.command_at),
                ])
            })
            .map_err(sql_err("updating a VM"))?;
            Ok(vm)
        })
        .await
    }

    async fn claim_vm(&self, request: &ClaimRequest) -> Result<ClaimOutcome> {
        let request = request.clone();
        self.write(move |conn| {
            // Runs in the writer's BEGIN IMMEDIATE transaction: the check and the assignment
            // below are one atomic step, even if another process opened the same database.
            let existing = conn
                .prepare_cached(&format!("SELECT {VM_COLUMNS} FROM vms WHERE email = ?1"))
                .and_then(|mut stmt| {
                    stmt.query_row([request.email.as_str()], row_to_vm)
                        .optional()
                })
                .map_err(sql_err("looking up an email's VM"))?;
            if let Some(vm) = existing {
                return Ok(ClaimOutcome::AlreadyAssigned(vm));
            }
            let claimed = assign_free_vm(
                conn,
                None,
                &Assignment {
                    email: request.email.as_str().to_string(),
                    crd_command: request.crd_command.clone(),
                    pin: request.pin.as_str().to_string(),
                    assigned_at: request.now,
                    seat_hash: Some(request.seat_hash.clone()),
                    command_at: request.now,
                },
                request.live_since,
            )?;
            Ok(match claimed {
                Some(vm) => ClaimOutcome::Assigned(vm),
                None => ClaimOutcome::NoneFree,
            })
        })
        .await
    }

    async fn count_assignable(&self, live_since: Millis) -> Result<u64> {
        self.read(move |conn| {
            // The counter holds every free candidate; those not heard from since
            // `live_since` are few (the sweep marks them), so subtracting them is cheap.
            let candidates: i64 = conn
                .prepare_cached("SELECT value FROM counters WHERE name = 'assignable'")
                .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
                .map_err(sql_err("counting free VMs"))?;
            // Two range scans of the partial index (an OR of the two would scan all of it).
            let quiet: i64 = conn
                .prepare_cached(&format!(
                    "SELECT (SELECT COUNT(*) FROM vms INDEXED BY vms_free_by_last_seen
                             WHERE {pred} AND last_seen_at < ?1)
                          + (SELECT COUNT(*) FROM vms INDEXED BY vms_free_by_last_seen
                             WHERE {pred} AND last_seen_at IS NULL)",
                    pred = assignable_predicate()
                ))
                .and_then(|mut stmt| stmt.query_row([live_since], |r| r.get(0)))
                .map_err(sql_err("counting quiet VMs"))?;
            Ok((candidates - quiet).max(0) as u64)
        })
        .await
    }

    async fn vm_by_seat(&self, seat_hash: &str) -> Result<Option<Vm>> {
        let seat_hash = seat_hash.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {VM_COLUMNS} FROM vms WHERE seat_hash = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row([seat_hash], row_to_vm).optional())
            .map_err(sql_err("looking up a seat"))
        })
        .await
    }

    async fn reissue_seat(&self, hostname: &str, seat_hash: &str, now: Millis) -> Result<Vm> {
        let hostname = hostname.to_string();
        let seat_hash = seat_hash.to_string();
        self.write(move |conn| {
            let vm = get_vm_in(conn, &hostname)?;
            if !vm
                .as_ref()
                .and_then(|v| v.assignment.as_ref())
                .is_some_and(Assignment::is_participant)
            {
                return Err(Error::NotFound(format!("a participant on VM {hostname}")));
            }
            conn.prepare_cached(&format!(
                "UPDATE vms SET seat_hash = ?2, updated_at = ?3 WHERE hostname = ?1
                 RETURNING {VM_COLUMNS}"
            ))
            .and_then(|mut stmt| stmt.query_row(params![hostname, seat_hash, now], row_to_vm))
            .map_err(sql_err("re-issuing a seat"))
        })
        .await
    }

    async fn move_seat(&self, request: &MoveSeat) -> Result<MoveOutcome> {
        let request = request.clone();
        self.write(move |conn| {
            let from = get_vm_in(conn, &request.from)?;
            let held = request.held(from.as_ref()).cloned();
            let Some(held) = held else {
                return Err(Error::NotFound(format!(
                    "a participant on VM {}",
                    request.from
                )));
            };
            // Retire the old VM first, which frees the email and seat (UNIQUE); rolled back
            // with the savepoint if no VM is free.
            let retired = Assignment::retired(&request.from, request.now);
            conn.prepare_cached(
                "UPDATE vms SET email = ?5, crd_command = '', pin = '', assigned_at = ?4,
                        seat_hash = NULL, command_at = ?4, status = ?2, status_reason = ?3,
                        updated_at = ?4
                 WHERE hostname = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    request.from,
                    VmStatus::Error.as_str(),
                    request.reason,
                    request.now,
                    retired.email,
                ])
            })
            .map_err(sql_err("retiring a VM"))?;
            let moved = assign_free_vm(
                conn,
                request.to.as_deref(),
                &Assignment {
                    pin: request.pin.as_str().to_string(),
                    assigned_at: request.now,
                    command_at: request.now,
                    ..held
                },
                request.live_since,
            )?;
            match moved {
                Some(vm) => Ok(MoveOutcome::Moved(Box::new(vm))),
                // Undo the release: an error makes the writer roll this job back.
                None => Err(Error::Conflict(NO_VM_TO_MOVE_TO.into())),
            }
        })
        .await
        .or_else(|e| match e {
            Error::Conflict(m) if m == NO_VM_TO_MOVE_TO => Ok(MoveOutcome::NoneFree),
            e => Err(e),
        })
    }

    async fn delete_vm(&self, hostname: &str) -> Result<()> {
        let hostname = hostname.to_string();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM vms WHERE hostname = ?1")
                .and_then(|mut stmt| stmt.execute([hostname]))
                .map_err(sql_err("deleting a VM"))?;
            Ok(())
        })
        .await
    }
}

const NO_VM_TO_MOVE_TO: &str = "no assignable VM to move to";

/// Gives `assignment` to one assignable VM (the named one, or the oldest), returning it;
/// `None` if there is none. Call inside a write transaction.
fn assign_free_vm(
    conn: &Connection,
    only: Option<&str>,
    a: &Assignment,
    live_since: Millis,
) -> Result<Option<Vm>> {
    // INDEXED BY: left alone, SQLite's planner prefers the `email` UNIQUE index for
    // `email IS NULL`, which matches every free VM, and sorts them all on each claim
    // (measured: 600 claims/s with 20,000 VMs, against 13,000 with the hint).
    conn.prepare_cached(&format!(
        "UPDATE vms SET email = ?1, crd_command = ?2, pin = ?3, assigned_at = ?4, updated_at = ?4,
                seat_hash = ?5, command_at = ?6
         WHERE hostname = (SELECT hostname FROM vms INDEXED BY vms_assignable
                           WHERE {} AND last_seen_at >= ?7 AND (?8 IS NULL OR hostname = ?8)
                           ORDER BY created_at, hostname LIMIT 1)
         RETURNING {VM_COLUMNS}",
        assignable_predicate()
    ))
    .and_then(|mut stmt| {
        stmt.query_row(
            params![
                a.email,
                a.crd_command,
                a.pin,
                a.assigned_at,
                a.seat_hash,
                a.command_at,
                live_since,
                only
            ],
            row_to_vm,
        )
        .optional()
    })
    .map_err(sql_err("assigning a VM"))
}

fn op_status_str(status: OperationStatus) -> &'static str {
    match status {
        OperationStatus::Running => "running",
        OperationStatus::Succeeded => "succeeded",
        OperationStatus::Failed => "failed",
    }
}

#[async_trait]
impl OperationStore for SqliteStore {
    async fn begin_operation(&self, op: &Operation, stale_after_ms: i64) -> Result<()> {
        let op = op.clone();
        self.write(move |conn| {
            let body = serde_json::to_string(&op).map_err(|e| Error::Internal(e.into()))?;
            let running: Option<String> = conn
                .query_row(
                    "SELECT id FROM operations WHERE status = 'running' AND created_at > ?1 LIMIT 1",
                    [op.created_at - stale_after_ms],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err("checking running operations"))?;
            if let Some(id) = running {
                return Err(Error::Conflict(format!(
                    "another launch or destroy (operation {id}) is still running; try again when it finishes"
                )));
            }
            conn.execute(
                "INSERT INTO operations (id, status, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![op.id, op_status_str(op.status), op.created_at, body],
            )
            .map_err(sql_err("recording an operation"))?;
            Ok(())
        })
        .await
    }

    async fn save_operation(&self, op: &Operation) -> Result<()> {
        let op = op.clone();
        self.write(move |conn| {
            let body = serde_json::to_string(&op).map_err(|e| Error::Internal(e.into()))?;
            conn.execute(
                "UPDATE operations SET status = ?2, body = ?3 WHERE id = ?1",
                params![op.id, op_status_str(op.status), body],
            )
            .map_err(sql_err("saving an operation"))?;
            Ok(())
        })
        .await
    }

    async fn get_operation(&self, id: &str) -> Result<Option<Operation>> {
        let id = id.to_string();
        self.read(move |conn| {
            let body: Option<String> = conn
                .query_row("SELECT body FROM operations WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql_err("reading an operation"))?;
            body.map(|b| serde_json::from_str(&b).map_err(|e| Error::Internal(e.into())))
                .transpose()
        })
        .await
    }
}

/// A chunk's body: its lines, each ending in a newline.
fn chunk_body(lines: &[String]) -> String {
    let mut body = String::with_capacity(lines.iter().map(|l| line_bytes(l)).sum());
    for line in lines {
        body.push_str(line);
        body.push('\n');
    }
    body
}

#[async_trait]
impl LogStore for SqliteStore {
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
        let hostname = hostname.to_string();
        let chunks = chunk_lines(lines);
        let cap = i64::try_from(cap_bytes).unwrap_or(i64::MAX);
        self.write(move |conn| {
            let (mut total, mut seq): (i64, i64) = conn
                .prepare_cached("SELECT bytes, next_seq FROM log_totals WHERE hostname = ?1")
                .and_then(|mut st| st.query_row([&hostname], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(sql_err("reading log totals"))?
                .unwrap_or((0, 1));
            for chunk in &chunks {
                let body = chunk_body(chunk);
                conn.prepare_cached(
                    "INSERT INTO log_chunks (hostname, seq, body, bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut st| st.execute(params![hostname, seq, body, body.len() as i64, now]))
                .map_err(sql_err("appending a log chunk"))?;
                total += body.len() as i64;
                seq += 1;
            }
            // Trim from the oldest chunk: drop it whole while that still leaves at least
            // the cap, else drop just enough of its first lines.
            while total > cap {
                let (oldest_seq, body): (i64, String) = conn
                    .prepare_cached(
                        "SELECT seq, body FROM log_chunks WHERE hostname = ?1 ORDER BY seq LIMIT 1",
                    )
                    .and_then(|mut st| st.query_row([&hostname], |r| Ok((r.get(0)?, r.get(1)?))))
                    .map_err(sql_err("reading the oldest log chunk"))?;
                let size = body.len() as i64;
                if total - size >= cap {
                    conn.execute(
                        "DELETE FROM log_chunks WHERE hostname = ?1 AND seq = ?2",
                        params![hostname, oldest_seq],
                    )
                    .map_err(sql_err("trimming logs"))?;
                    total -= size;
                    continue;
                }
                let mut kept = body.as_str();
                while total > cap {
                    let Some((dropped, rest)) = kept.split_once('\n') else {
                        break;
                    };
                    total -= (dropped.len() + 1) as i64;
                    kept = rest;
                }
                conn.execute(
                    "UPDATE log_chunks SET body = ?3, bytes = ?4 WHERE hostname = ?1 AND seq = ?2",
                    params![hostname, oldest_seq, kept, kept.len() as i64],
                )
                .map_err(sql_err("trimming logs"))?;
            }
            conn.prepare_cached(
                "INSERT INTO log_totals (hostname, bytes, next_seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT(hostname) DO UPDATE SET bytes = excluded.bytes, next_seq = excluded.next_seq",
            )
            .and_then(|mut st| st.execute(params![hostname, total, seq]))
            .map_err(sql_err("updating log totals"))?;
            Ok(())
        })
        .await
    }

    async fn read_logs(&self, hostname: &str, after: u64) -> Result<Option<LogPage>> {
        let hostname = hostname.to_string();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let next_seq: Option<i64> = conn
                .prepare_cached("SELECT next_seq FROM log_totals WHERE hostname = ?1")
                .and_then(|mut st| st.query_row([&hostname], |r| r.get(0)).optional())
                .map_err(sql_err("reading log totals"))?;
            let Some(next_seq) = next_seq else {
                return Ok(None);
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM log_chunks WHERE hostname = ?1 AND seq > ?2 ORDER BY seq",
                )
                .map_err(sql_err("reading logs"))?;
            let bodies = stmt
                .query_map(params![hostname, after], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(sql_err("reading logs"))?;
            let lines = bodies
                .iter()
                .filter(|b| !b.is_empty())
                .flat_map(|b| b.strip_suffix('\n').unwrap_or(b).split('\n'))
                .map(str::to_string)
                .collect();
            Ok(Some(LogPage {
                lines,
                cursor: (next_seq - 1).max(0) as u64,
            }))
        })
        .await
    }

    async fn delete_logs(&self, hostname: &str) -> Result<()> {
        let hostname = hostname.to_string();
        self.write(move |conn| {
            conn.execute("DELETE FROM log_chunks WHERE hostname = ?1", [&hostname])
                .and_then(|_| {
                    conn.execute("DELETE FROM log_totals WHERE hostname = ?1", [&hostname])
                })
                .map_err(sql_err("deleting logs"))?;
            Ok(())
        })
        .await
    }
}

/// The SQL list of active request statuses (the quota counts these).
const ACTIVE_STATUSES: &str = "('pending', 'provisioning', 'completed')";

fn json_err(e: serde_json::Error) -> Error {
    Error::Internal(anyhow::Error::new(e).context("a stored record does not parse"))
}

fn request_of(body: String) -> Result<GpuRequest> {
    serde_json::from_str(&body).map_err(json_err)
}

/// A user's GPUs: active requests plus instances not yet final (one quota for both).
/// Inside the writer's transaction this cannot interleave with another create.
fn gpus_in_use_tx(conn: &Connection, user_id: &str) -> Result<u32> {
    conn.prepare_cached(&format!(
        "SELECT (SELECT COALESCE(SUM(gpu_count), 0) FROM gpu_requests
                 WHERE user_id = ?1 AND status IN {ACTIVE_STATUSES})
              + (SELECT COALESCE(SUM(json_extract(body, '$.gpu_count')), 0) FROM cloud_instances
                 WHERE owner = ?1 AND json_extract(body, '$.status') NOT IN {FINAL_INSTANCE_STATUSES})"
    ))
    .and_then(|mut stmt| stmt.query_row([user_id], |r| r.get::<_, i64>(0)))
    .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    .map_err(sql_err("summing a user's GPUs"))
}

/// Instance statuses that hold no GPUs (`InstanceStatus::is_final`), as SQL.
const FINAL_INSTANCE_STATUSES: &str = "('destroyed', 'failed')";

fn get_request_tx(conn: &Connection, request_id: &str) -> Result<Option<GpuRequest>> {
    conn.prepare_cached("SELECT body FROM gpu_requests WHERE request_id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([request_id], |r| r.get::<_, String>(0))
                .optional()
        })
        .map_err(sql_err("reading a request"))?
        .map(request_of)
        .transpose()
}

#[async_trait]
impl RequestStore for SqliteStore {
    async fn create_request(
        &self,
        request: &GpuRequest,
        quota: u32,
        idempotency: Option<&Idempotency>,
    ) -> Result<CreateRequestOutcome> {
        let request = request.clone();
        let idempotency = idempotency.cloned();
        // One writer transaction: the key check, the quota sum and the insert cannot
        // interleave with another create.
        self.write(move |conn| {
            if let Some(idem) = &idempotency {
                let seen: Option<(String, String)> = conn
                    .query_row(
                        "SELECT fingerprint, request_id FROM idempotency_keys
                         WHERE user_id = ?1 AND key = ?2",
                        params![request.user_id, idem.key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(sql_err("reading an idempotency key"))?;
                if let Some((fingerprint, request_id)) = seen {
                    if fingerprint != idem.fingerprint {
                        return Ok(CreateRequestOutcome::IdempotencyMismatch);
                    }
                    let original = get_request_tx(conn, &request_id)?.ok_or_else(|| {
                        Error::Internal(anyhow::anyhow!("idempotency key without its request"))
                    })?;
                    return Ok(CreateRequestOutcome::Replayed(Box::new(original)));
                }
            }
            let in_use = gpus_in_use_tx(conn, &request.user_id)?;
            if in_use.saturating_add(request.gpu_count) > quota {
                return Ok(CreateRequestOutcome::OverQuota { in_use, quota });
            }
            let body = serde_json::to_string(&request).map_err(json_err)?;
            conn.execute(
                "INSERT INTO gpu_requests (request_id, user_id, status, gpu_count, created_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    request.request_id,
                    request.user_id,
                    request.status.as_str(),
                    request.gpu_count,
                    request.created_at,
                    body
                ],
            )
            .map_err(sql_err("recording a request"))?;
            if let Some(idem) = &idempotency {
                conn.execute(
                    "INSERT INTO idempotency_keys (user_id, key, fingerprint, request_id)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        request.user_id,
                        idem.key,
                        idem.fingerprint,
                        request.request_id
                    ],
                )
                .map_err(sql_err("recording an idempotency key"))?;
            }
            Ok(CreateRequestOutcome::Created)
        })
        .await
    }

    async fn get_request(&self, request_id: &str) -> Result<Option<GpuRequest>> {
        let request_id = request_id.to_string();
        self.read(move |conn| get_request_tx(conn, &request_id))
            .await
    }

    async fn list_requests(&self, user: Option<&str>, limit: usize) -> Result<Vec<GpuRequest>> {
        let user = user.map(str::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let bodies: Vec<String> = match &user {
                Some(user) => conn
                    .prepare_cached(
                        "SELECT body FROM gpu_requests WHERE user_id = ?1
                         ORDER BY created_at DESC, request_id DESC LIMIT ?2",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map(params![user, limit], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()
                    }),
                None => conn
                    .prepare_cached(
                        "SELECT body FROM gpu_requests
                         ORDER BY created_at DESC, request_id DESC LIMIT ?1",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map(params![limit], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()
                    }),
            }
            .map_err(sql_err("listing requests"))?;
            bodies.into_iter().map(request_of).collect()
        })
        .await
    }

    async fn update_request(
        &self,
        request_id: &str,
        change: &RequestChange,
        now: Millis,
    ) -> Result<GpuRequest> {
        let request_id = request_id.to_string();
        let change = change.clone();
        self.write(move |conn| {
            let mut request = get_request_tx(conn, &request_id)?
                .ok_or_else(|| Error::NotFound(format!("request {request_id}")))?;
            change.apply(&mut request, now)?;
            let body = serde_json::to_string(&request).map_err(json_err)?;
            // The quota is the sum over active rows, so the status change frees it.
            conn.execute(
                "UPDATE gpu_requests SET status = ?2, body = ?3 WHERE request_id = ?1",
                params![request_id, request.status.as_str(), body],
            )
            .map_err(sql_err("updating a request"))?;
            Ok(request)
        })
        .await
    }

    async fn active_requests(&self) -> Result<Vec<GpuRequest>> {
        self.read(move |conn| {
            let bodies: Vec<String> = conn
                .prepare_cached(&format!(
                    "SELECT body FROM gpu_requests WHERE status IN {ACTIVE_STATUSES}
                     ORDER BY created_at"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(sql_err("listing active requests"))?;
            bodies.into_iter().map(request_of).collect()
        })
        .await
    }

    async fn gpus_in_use(&self, user_id: &str) -> Result<u32> {
        let user_id = user_id.to_string();
        self.read(move |conn| gpus_in_use_tx(conn, &user_id)).await
    }
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        let key = key.clone();
        self.write(move |conn| {
            let body = serde_json::to_string(&key).map_err(json_err)?;
            conn.execute(
                "INSERT INTO api_keys (key_id, key_hash, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![key.key_id, key.key_hash, key.created_at, body],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Error::Conflict(format!("API key {} exists", key.key_id))
                }
                e => sql_err("recording an API key")(e),
            })?;
            Ok(())
        })
        .await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let key_hash = key_hash.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT body FROM api_keys WHERE key_hash = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row([key_hash], |r| r.get::<_, String>(0))
                        .optional()
                })
                .map_err(sql_err("looking up an API key"))?
                .map(|b| serde_json::from_str(&b).map_err(json_err))
                .transpose()
        })
        .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(move |conn| {
            let bodies: Vec<String> = conn
                .prepare_cached("SELECT body FROM api_keys ORDER BY created_at, key_id")
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(sql_err("listing API keys"))?;
            bodies
                .into_iter()
                .map(|b| serde_json::from_str(&b).map_err(json_err))
                .collect()
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &str, now: Millis) -> Result<ApiKey> {
        let key_id = key_id.to_string();
        self.write(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM api_keys WHERE key_id = ?1",
                    [&key_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err("reading an API key"))?;
            let mut key: ApiKey = body
                .map(|b| serde_json::from_str(&b).map_err(json_err))
                .transpose()?
                .ok_or_else(|| Error::NotFound(format!("API key {key_id}")))?;
            key.revoked_at.get_or_insert(now);
            let body = serde_json::to_string(&key).map_err(json_err)?;
            conn.execute(
                "UPDATE api_keys SET body = ?2 WHERE key_id = ?1",
                params![key_id, body],
            )
            .map_err(sql_err("revoking an API key"))?;
            Ok(key)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        // A write through the writer thread (a full commit): a read-only directory or a
        // full disk fails here, not first on a participant's claim.
        self.write(|conn| {
            conn.execute(
                "UPDATE counters SET value = value WHERE name = 'assignable'",
                [],
            )
            .map(|_| ())
            .map_err(sql_err("writing the free counter"))
        })
        .await
    }
}

/// Keeps `RequestStatus` and the SQL list of active statuses in step.
#[cfg(test)]
#[test]
fn active_statuses_match_the_domain() {
    use crate::domain::RequestStatus;
    for status in [
        RequestStatus::Pending,
        RequestStatus::Provisioning,
        RequestStatus::Completed,
        RequestStatus::Failed,
        RequestStatus::Expired,
        RequestStatus::Released,
    ] {
        assert_eq!(
            ACTIVE_STATUSES.contains(&format!("'{}'", status.as_str())),
            status.is_active()
        );
    }
}

fn get_instance_tx(conn: &Connection, id: &str) -> Result<Option<CloudInstance>> {
    conn.query_row(
        "SELECT body FROM cloud_instances WHERE id = ?1",
        params![id],
        |r| r.get::<_, String>(0),
    )
    .optional()
    .map_err(sql_err("reading an instance"))?
    .map(|body| serde_json::from_str(&body).map_err(json_err))
    .transpose()
}

#[async_trait]
impl InstanceStore for SqliteStore {
    async fn create_instance(
        &self,
        record: &CloudInstance,
        quota: u32,
        idempotency: Option<&Idempotency>,
    ) -> Result<CreateInstanceOutcome> {
        let record = record.clone();
        let idempotency = idempotency.cloned();
        self.write(move |conn| {
            let quota_check = |conn: &Connection| -> Result<Option<CreateInstanceOutcome>> {
                let in_use = gpus_in_use_tx(conn, &record.owner)?;
                Ok((in_use.saturating_add(record.gpu_count) > quota)
                    .then_some(CreateInstanceOutcome::OverQuota { in_use, quota }))
            };
            if let Some(idem) = &idempotency {
                let seen: Option<(String, String)> = conn
                    .query_row(
                        "SELECT fingerprint, instance_id FROM instance_idempotency_keys
                         WHERE user_id = ?1 AND key = ?2",
                        params![record.owner, idem.key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(sql_err("reading an idempotency key"))?;
                if let Some((fingerprint, id)) = seen {
                    if fingerprint != idem.fingerprint {
                        return Ok(CreateInstanceOutcome::IdempotencyMismatch);
                    }
                    let original = get_instance_tx(conn, &id)?.ok_or_else(|| {
                        Error::Internal(anyhow::anyhow!("idempotency key without its instance"))
                    })?;
                    return Ok(CreateInstanceOutcome::Replayed(Box::new(original)));
                }
            }
            if let Some(over) = quota_check(conn)? {
                return Ok(over);
            }
            if let Some(idem) = &idempotency {
                conn.execute(
                    "INSERT INTO instance_idempotency_keys (user_id, key, fingerprint, instance_id)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![record.owner, idem.key, idem.fingerprint, record.id],
                )
                .map_err(sql_err("recording an idempotency key"))?;
            }
            let body = serde_json::to_string(&record).map_err(json_err)?;
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO cloud_instances (id, owner, created_at, version, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        record.id,
                        record.owner,
                        record.created_at,
                        record.version,
                        body
                    ],
                )
                .map_err(sql_err("recording an instance"))?;
            if inserted == 0 {
                return Err(Error::Conflict(format!("instance {} exists", record.id)));
            }
            Ok(CreateInstanceOutcome::Created)
        })
        .await
    }

    async fn get_instance(&self, id: &str) -> Result<Option<CloudInstance>> {
        let id = id.to_string();
        self.read(move |conn| get_instance_tx(conn, &id)).await
    }

    async fn list_instances(&self, owner: Option<&str>) -> Result<Vec<CloudInstance>> {
        let owner = owner.map(str::to_string);
        self.read(move |conn| {
            let bodies: Vec<String> = match &owner {
                Some(owner) => conn
                    .prepare_cached(
                        "SELECT body FROM cloud_instances WHERE owner = ?1
                         ORDER BY created_at DESC, id DESC",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map(params![owner], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()
                    }),
                None => conn
                    .prepare_cached(
                        "SELECT body FROM cloud_instances ORDER BY created_at DESC, id DESC",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map([], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()
                    }),
            }
            .map_err(sql_err("listing instances"))?;
            bodies
                .iter()
                .map(|b| serde_json::from_str(b).map_err(json_err))
                .collect()
        })
        .await
    }

    async fn save_instance(&self, record: &CloudInstance) -> Result<CloudInstance> {
        let mut next = record.clone();
        next.version = record.version + 1;
        self.write(move |conn| {
            let body = serde_json::to_string(&next).map_err(json_err)?;
            let updated = conn
                .execute(
                    "UPDATE cloud_instances SET version = ?1, body = ?2
                     WHERE id = ?3 AND version = ?4",
                    params![next.version, body, next.id, next.version - 1],
                )
                .map_err(sql_err("saving an instance"))?;
            if updated == 1 {
                return Ok(next);
            }
            match get_instance_tx(conn, &next.id)? {
                None => Err(Error::NotFound(format!("instance {}", next.id))),
                Some(_) => Err(Error::Conflict(format!(
                    "instance {} was changed meanwhile",
                    next.id
                ))),
            }
        })
        .await
    }
}

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn count_hit(
        &self,
        bucket: &str,
        window_start: Millis,
        expires_at: Millis,
    ) -> Result<u64> {
        let bucket = bucket.to_string();
        self.write(move |conn| {
            let hits: i64 = conn
                .query_row(
                    "INSERT INTO rate_limits (bucket, window_start, hits, expires_at)
                     VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (bucket, window_start) DO UPDATE SET hits = hits + 1
                     RETURNING hits",
                    params![bucket, window_start, expires_at],
                    |r| r.get(0),
                )
                .map_err(sql_err("counting a request"))?;
            // The first hit of a window clears windows that ended (as DynamoDB's TTL would).
            if hits == 1 {
                conn.execute(
                    "DELETE FROM rate_limits WHERE expires_at < ?1",
                    params![window_start],
                )
                .map_err(sql_err("clearing old rate windows"))?;
            }
            Ok(u64::try_from(hits).unwrap_or(0))
        })
        .await
    }

    async fn hits(&self, bucket: &str, window_start: Millis) -> Result<u64> {
        let bucket = bucket.to_string();
        self.read(move |conn| {
            let hits: Option<i64> = conn
                .query_row(
                    "SELECT hits FROM rate_limits WHERE bucket = ?1 AND window_start = ?2",
                    params![bucket, window_start],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err("reading a request count"))?;
            Ok(hits.and_then(|h| u64::try_from(h).ok()).unwrap_or(0))
        })
        .await
    }
}

#[async_trait]
impl CommandLogStore for SqliteStore {
    async fn append_command(&self, entry: &CommandEntry) -> Result<()> {
        let entry = entry.clone();
        self.write(move |conn| {
            let body = serde_json::to_string(&entry).map_err(json_err)?;
            conn.execute(
                "INSERT INTO command_log (id, at, body) VALUES (?1, ?2, ?3)",
                params![entry.id, entry.at, body],
            )
            .map_err(sql_err("logging a command"))?;
            Ok(())
        })
        .await
    }

    async fn list_commands(
        &self,
        limit: usize,
        before: Option<&str>,
        since: Option<Millis>,
    ) -> Result<Vec<CommandEntry>> {
        let before = before.unwrap_or("~").to_string();
        let since = since.unwrap_or(i64::MIN);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let bodies: Vec<String> = conn
                .prepare_cached(
                    "SELECT body FROM command_log WHERE id < ?1 AND at >= ?2
                     ORDER BY id DESC LIMIT ?3",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![before, since, limit], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(sql_err("listing commands"))?;
            bodies
                .iter()
                .map(|b| serde_json::from_str(b).map_err(json_err))
                .collect()
        })
        .await
    }

    async fn record_clear(&self, at: Millis) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO command_log_clears (at) VALUES (?1)",
                params![at],
            )
            .map_err(sql_err("recording a clear"))?;
            Ok(())
        })
        .await
    }

    async fn last_clear(&self) -> Result<Option<Millis>> {
        self.read(|conn| {
            conn.query_row("SELECT MAX(at) FROM command_log_clears", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map_err(sql_err("reading the last clear"))
        })
        .await
    }
}

#[async_trait]
impl HostPoolStore for SqliteStore {
    async fn host_pools(&self) -> Result<std::collections::HashMap<String, String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT hostname, pool FROM host_pools")
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(sql_err("listing host pools"))
        })
        .await
    }

    async fn move_host(
        &self,
        hostname: &str,
        from: Option<&str>,
        to: &str,
        now: Millis,
    ) -> Result<()> {
        let (hostname, from, to) = (
            hostname.to_string(),
            from.map(str::to_string),
            to.to_string(),
        );
        self.write(move |conn| {
            let current: Option<String> = conn
                .query_row(
                    "SELECT pool FROM host_pools WHERE hostname = ?1",
                    params![hostname],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err("reading a host's pool"))?;
            if current != from {
                return Err(Error::Conflict(format!(
                    "host {hostname} is in {} now, not {}",
                    current.as_deref().unwrap_or("its default pool"),
                    from.as_deref().unwrap_or("its default pool")
                )));
            }
            conn.execute(
                "INSERT INTO host_pools (hostname, pool, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (hostname) DO UPDATE SET pool = ?2, updated_at = ?3",
                params![hostname, to, now],
            )
            .map_err(sql_err("moving a host"))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        crate::contract::run_all(std::sync::Arc::new(store)).await;
    }

    #[tokio::test]
    async fn reopening_keeps_records_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            let vm = Vm::new("vm-keep".into(), TokenHash::of("t"), 5);
            store.insert_vm(&vm).await.unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let vm = store.get_vm("vm-keep").await.unwrap().unwrap();
        assert_eq!(vm.created_at, 5);
        assert!(TokenHash::of("t") == vm.token_hash);
    }
}
