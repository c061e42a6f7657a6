//! Local mode's job queue, kept in the SQLite store: what the server acknowledged, it
//! finishes. A launch's VM records and their jobs commit in one transaction; a job leaves
//! the table only when it is done (or abandoned after its retries); a process killed at any
//! point leaves its jobs to the next one, which runs them from the start (a launch job finds
//! and adopts a machine an earlier attempt started). Retries back off like SQS redelivery.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::domain::{Job, Vm};
use crate::error::Result;
use crate::ports::{JobQueue, Store};
use crate::usecases::provisioning::{run_job, JobOutcome};
use crate::AppState;

use super::sqlite::SqliteStore;

pub struct DurableQueue {
    store: SqliteStore,
    wake: Arc<Notify>,
}

/// Runs the queued jobs; `start` it once the `AppState` (which holds the queue) exists.
pub struct DurableJobWorker {
    store: SqliteStore,
    wake: Arc<Notify>,
}

impl DurableQueue {
    pub fn new(store: SqliteStore) -> (Self, DurableJobWorker) {
        let wake = Arc::new(Notify::new());
        (
            DurableQueue {
                store: store.clone(),
                wake: wake.clone(),
            },
            DurableJobWorker { store, wake },
        )
    }
}

#[async_trait]
impl JobQueue for DurableQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        self.store.enqueue_jobs(jobs).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// The records and their jobs in one SQLite transaction (`store` is this queue's store).
    async fn record_and_enqueue(&self, _store: &dyn Store, vms: &[Vm], jobs: &[Job]) -> Result<()> {
        self.store.insert_vms_and_jobs(vms, jobs).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// The worker backs off by itself (`not_before` of the job's row).
    async fn retry_later(&self, _receipt: &str, _delay: Duration) -> Result<()> {
        Ok(())
    }
}

/// How often the worker looks for jobs whose backoff ended, besides being woken.
const POLL_EVERY: Duration = Duration::from_millis(500);

impl DurableJobWorker {
    pub fn start(self, state: AppState) -> tokio::task::JoinHandle<()> {
        // Ids taken by this process: running, or done. A done job's id stays (ids are never
        // reused), so a listing read just before it finished cannot start it again; a job
        // that will be retried, or whose task panicked, gives its id back (`Taken`).
        let running: Arc<Mutex<HashSet<i64>>> = Arc::default();
        tokio::spawn(async move {
            loop {
                let now = state.clock.now_millis();
                match self.store.due_jobs(now).await {
                    Ok(jobs) => {
                        for queued in jobs {
                            if !running
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(queued.id)
                            {
                                continue; // already running
                            }
                            let (state, store, running) =
                                (state.clone(), self.store.clone(), running.clone());
                            tokio::spawn(async move {
                                let mut taken = Taken {
                                    id: queued.id,
                                    running,
                                    done: false,
                                };
                                taken.done = run_one(&state, &store, queued).await;
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = ?e, "reading the job queue failed"),
                }
                let _ = tokio::time::timeout(POLL_EVERY, self.wake.notified()).await;
            }
        })
    }
}

/// A job id this process took; dropped (also by a panic) it is given back unless done.
struct Taken {
    id: i64,
    running: Arc<Mutex<HashSet<i64>>>,
    done: bool,
}

impl Drop for Taken {
    fn drop(&mut self) {
        if !self.done {
            self.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.id);
        }
    }
}

/// Runs a job once; true when it left the queue (done or abandoned).
async fn run_one(state: &AppState, store: &SqliteStore, queued: super::sqlite::QueuedJob) -> bool {
    let attempt = queued.attempts + 1;
    // run_job records a failure itself on the last allowed attempt; the few extra rounds
    // only matter if even that record could not be written.
    let outcome = run_job(state.into(), &queued.job, attempt).await;
    let (result, left) = match outcome {
        JobOutcome::Done => (store.finish_job(queued.id).await, true),
        JobOutcome::Retry(why) if attempt >= state.config.launch_attempts + 3 => {
            tracing::error!(job = ?queued.job, %why, "job abandoned");
            (store.finish_job(queued.id).await, true)
        }
        JobOutcome::Retry(why) => {
            tracing::warn!(job = ?queued.job, attempt, %why, "job will be retried");
            let delay = 500 * 2i64.pow(attempt.min(6));
            let result = store
                .retry_job(queued.id, attempt, state.clock.now_millis() + delay)
                .await;
            (result, false)
        }
    };
    match result {
        Ok(()) => left,
        Err(e) => {
            tracing::error!(job = ?queued.job, error = ?e, "could not update the job queue");
            false
        }
    }
}
