//! The job queue on AWS: SQS, in batches of ten (the SendMessageBatch limit).

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;

use crate::domain::Job;
use crate::error::{Error, Result};
use crate::ports::JobQueue;

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        for batch in jobs.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(job.to_message())
                        .build()
                        .map_err(|e| Error::Internal(anyhow::anyhow!("building an SQS entry: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    Error::Internal(anyhow::anyhow!(
                        "SQS SendMessageBatch: {}",
                        DisplayErrorContext(e)
                    ))
                })?;
            if let Some(failed) = out.failed().first() {
                return Err(Error::Internal(anyhow::anyhow!(
                    "SQS refused {} of {} messages (first: {} {})",
                    out.failed().len(),
                    batch.len(),
                    failed.code(),
                    failed.message().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    async fn retry_later(&self, receipt: &str, delay: std::time::Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(i32::try_from(delay.as_secs()).unwrap_or(43_200).min(43_200))
            .send()
            .await
            .map_err(|e| {
                Error::Internal(anyhow::anyhow!(
                    "SQS ChangeMessageVisibility: {}",
                    DisplayErrorContext(e)
                ))
            })?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| {
                Error::Internal(anyhow::anyhow!(
                    "SQS GetQueueAttributes: {}",
                    DisplayErrorContext(e)
                ))
            })?;
        Ok(())
    }
}
