//! Fixed-window rate-limit counters with a TTL.

use super::*;

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
