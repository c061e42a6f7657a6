//! The writer thread: group commit of queued writes, and how a failed commit is reported.

use super::*;

/// Most writes one commit groups; bounds how long the first of them waits.
pub(super) const MAX_GROUP: usize = 256;

/// A queued write: run inside the group's transaction, then told how the commit went.
pub(super) trait WriteJob: Send {
    fn run(&mut self, conn: &Connection);
    fn failed(&self) -> bool;
    fn finish(self: Box<Self>, commit: std::result::Result<(), CommitError>);
}

/// Why a group's transaction could not begin or commit, shared by every job of the group.
#[derive(Clone)]
pub(super) struct CommitError {
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
pub(super) fn storage_fault(e: &rusqlite::Error) -> Option<&'static str> {
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

pub(super) fn unavailable(cause: &'static str, detail: &dyn std::fmt::Display) -> Error {
    tracing::error!(cause, error = %detail, "the store cannot save changes");
    Error::Unavailable(format!("the store cannot save changes right now: {cause}"))
}

pub(super) struct Job<T, F> {
    pub(super) work: Option<F>,
    pub(super) result: Option<Result<T>>,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<T>>,
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
pub(super) fn writer_loop(conn: Connection, jobs: mpsc::Receiver<Box<dyn WriteJob>>) {
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
