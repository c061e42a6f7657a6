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
use crate::domain::logs::chunk_lines;
use crate::domain::{ApiKey, GpuRequest, Job as QueueJob, RequestChange};
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
mod command_log;
mod host_pools;
mod idempotency;
mod instances;
mod logs;
mod migrations;
mod operations;
mod queue;
mod rate_limits;
mod requests;
mod spend;
mod vms;
mod writer;

use idempotency::*;
use migrations::*;

pub use queue::QueuedJob;
use requests::*;
use vms::*;
use writer::*;

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

fn sql_err(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| match storage_fault(&e) {
        Some(cause) => unavailable(cause, &format!("{context}: {e}")),
        None => Error::Internal(anyhow::Error::new(e).context(context)),
    }
}

fn json_err(e: serde_json::Error) -> Error {
    Error::Internal(anyhow::Error::new(e).context("a stored record does not parse"))
}

#[async_trait]
impl StoreHealth for SqliteStore {
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
