//! The provisioning function: an SQS batch of launch jobs in, per-message failures out, so
//! one bad message never makes SQS redeliver the whole batch. A message that cannot be
//! parsed (poison) is reported failed; after the queue's maxReceiveCount it goes to the DLQ.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use shared::domain::Job;
use shared::ports::retry_delay;
use shared::usecases::provisioning::{run_job, JobOutcome};
use shared::AppState;

/// Processes every record of the batch concurrently.
pub async fn handle_batch(state: &AppState, event: SqsEvent) -> SqsBatchResponse {
    let mut tasks = tokio::task::JoinSet::new();
    let mut message_of_task = std::collections::HashMap::new();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let state = state.clone();
        let task = tasks.spawn(async move { handle_message(&state, &record).await });
        message_of_task.insert(task.id(), message_id);
    }
    let mut response = SqsBatchResponse::default();
    while let Some(done) = tasks.join_next_with_id().await {
        let (task, finished) = match done {
            Ok((task, finished)) => (task, finished),
            // A job that panicked is reported failed, so SQS redelivers it (and after
            // maxReceiveCount parks it in the DLQ) instead of deleting it.
            Err(e) => {
                tracing::error!(error = %e, "a job task panicked");
                (e.id(), false)
            }
        };
        if !finished {
            if let Some(id) = message_of_task.remove(&task) {
                response.add_failure(id);
            }
        }
    }
    response
}

/// `true` when the message is finished with (done, or failed for good and recorded).
async fn handle_message(state: &AppState, record: &SqsMessage) -> bool {
    let id = record.message_id.as_deref().unwrap_or("?");
    let job = match record.body.as_deref().map(Job::from_message) {
        Some(Ok(job)) => job,
        Some(Err(why)) => {
            tracing::error!(message = id, %why, "poison message");
            return false;
        }
        None => {
            tracing::error!(message = id, "message without a body");
            return false;
        }
    };
    let attempt: u32 = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    match run_job(state.into(), &job, attempt).await {
        JobOutcome::Done => true,
        JobOutcome::Retry(why) => {
            let delay = retry_delay(attempt);
            tracing::warn!(message = id, ?job, attempt, %why, ?delay, "job will be redelivered");
            if let Some(receipt) = record.receipt_handle.as_deref() {
                if let Err(e) = state.queue.retry_later(receipt, delay).await {
                    tracing::warn!(message = id, error = ?e, "could not delay the redelivery");
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::TestState;

    /// The sample batch in `events/provision/` (what `cargo lambda invoke --data-file` sends):
    /// both launch jobs run, and only the message that is not a job is reported failed.
    #[tokio::test]
    async fn the_sample_batch_launches_its_vms_and_reports_only_the_poison_message() {
        let t = TestState::new();
        t.vm("vm-2").await;
        t.vm("vm-3").await;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../events/provision/launch-jobs.json"
        );
        let event: SqsEvent =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let response = handle_batch(&t.state, event).await;
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["33333333-3333-4333-8333-333333333333"]);
        let mut launched = t.compute.launched();
        launched.sort();
        assert_eq!(launched, ["vm-2", "vm-3"]);
        for host in ["vm-2", "vm-3"] {
            let vm = t.state.store.get_vm(host).await.unwrap().unwrap();
            assert_eq!(
                vm.instance_id.as_deref(),
                Some(format!("i-{host}").as_str())
            );
        }
    }

    /// A provisioning request's job, with only what the `provision` function is granted:
    /// it records the machines and queues their launches.
    #[tokio::test]
    async fn a_request_job_runs_with_the_provisioners_grants() {
        use shared::domain::{GpuRequest, NewRequest};
        let t = TestState::new();
        let input = NewRequest {
            user_id: "ann".into(),
            gpu_count: 2,
            duration_hours: 1,
        };
        let now = t.state.clock.now_millis();
        let r = GpuRequest::new("00000000-0000-4000-8000-00000000000a".into(), &input, now);
        t.state
            .store
            .create_request(&r, 8, None, None)
            .await
            .unwrap();
        let state = crate::handlers::test_support::as_granted_to(&t.state, "provision");
        shared::usecases::requests::provision((&state).into(), &r.request_id)
            .await
            .unwrap();
        let planned = t
            .state
            .store
            .get_request(&r.request_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(planned.hosts.len(), 2);
        t.launched(2).await;
    }

    /// The scheduled reconcile re-queues a request whose job was lost, with only what the
    /// `reconcile` function is granted.
    #[tokio::test]
    async fn the_sweep_runs_with_the_reconcilers_grants() {
        use shared::domain::{GpuRequest, NewRequest};
        let t = TestState::new();
        let input = NewRequest {
            user_id: "bo".into(),
            gpu_count: 1,
            duration_hours: 1,
        };
        // Recorded an hour ago and never queued.
        let old = t.state.clock.now_millis() - 3_600_000;
        let r = GpuRequest::new("00000000-0000-4000-8000-00000000000b".into(), &input, old);
        t.state
            .store
            .create_request(&r, 8, None, None)
            .await
            .unwrap();
        let state = crate::handlers::test_support::as_granted_to(&t.state, "reconcile");
        let report = shared::usecases::reconcile::reconcile(&state)
            .await
            .unwrap();
        assert_eq!(report.requests.requeued, [r.request_id]);
    }
}
