//! Capacity pools: which pool each host is in, moved conditionally.
//!
//! Host pools: `HOSTPOOL#<hostname>`/`POOL` with `pool`; moves are conditional on the pool
//! read (or on the item's absence).

use super::*;

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
