//! Local mode's job queue: jobs run in this process, through the same provisioning use case
//! the Lambda runs, with retries and backoff like SQS redelivery.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::domain::Job;
use crate::error::{Error, Result};
use crate::ports::JobQueue;
use crate::usecases::provisioning::{run_job, JobOutcome};
use crate::AppState;

pub struct InProcessQueue {
    jobs: mpsc::UnboundedSender<Job>,
}

/// The receiving end; `start` it once the `AppState` (which holds the queue) exists.
pub struct JobWorker {
    jobs: mpsc::UnboundedReceiver<Job>,
}

impl InProcessQueue {
    pub fn new() -> (Self, JobWorker) {
        let (tx, rx) = mpsc::unbounded_channel();
        (InProcessQueue { jobs: tx }, JobWorker { jobs: rx })
    }
}

#[async_trait]
impl JobQueue for InProcessQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        for job in jobs {
            self.jobs
                .send(job.clone())
                .map_err(|_| Error::Internal(anyhow::anyhow!("the job worker stopped")))?;
        }
        Ok(())
    }

    /// The worker below backs off by itself.
    async fn retry_later(&self, _receipt: &str, _delay: Duration) -> Result<()> {
        Ok(())
    }
}

impl JobWorker {
    /// Runs every job on its own task until the queue is dropped.
    pub fn start(mut self, state: AppState) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Some(job) = self.jobs.recv().await {
                let state = state.clone();
                tokio::spawn(async move {
                    // run_job records a failure itself on the last allowed attempt; the few
                    // extra rounds only matter if even that record could not be written.
                    for attempt in 1..=state.config.launch_attempts + 3 {
                        match run_job((&state).into(), &job, attempt).await {
                            JobOutcome::Done => return,
                            JobOutcome::Retry(why) => {
                                tracing::warn!(?job, attempt, %why, "job will be retried");
                                tokio::time::sleep(Duration::from_millis(
                                    500 * 2u64.pow(attempt.min(6)),
                                ))
                                .await;
                            }
                        }
                    }
                    tracing::error!(?job, "job abandoned");
                });
            }
        })
    }
}
