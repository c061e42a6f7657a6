//! The append-only command log.
//!
//! The command log: one partition `CMDLOG`, sort key = entry id (time-ordered), so a page is
//! one Query newest first with the cursor and the last clear as sort-key bounds. Cloud
//! commands are rare (launches, terminations), so one partition is far from its limits.
//! The last clear is `CMDLOG`/`CLEAR`, only ever moved forward.

use super::*;

pub(super) const CMDLOG_PK: &str = "CMDLOG";

#[async_trait]
impl CommandLogStore for DynamoStore {
    async fn append_command(&self, entry: &CommandEntry) -> Result<()> {
        let mut item = key(CMDLOG_PK, format!("E#{}", entry.id));
        item.insert(
            "body".into(),
            s(serde_json::to_string(entry).map_err(|e| internal("encoding a command", e))?),
        );
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| internal("PutItem command", DisplayErrorContext(e)))?;
        self.stats
            .record("PutItem", capacity_of(out.consumed_capacity()));
        Ok(())
    }

    async fn list_commands(
        &self,
        limit: usize,
        before: Option<&str>,
        since: Option<Millis>,
    ) -> Result<Vec<CommandEntry>> {
        let lower = format!("E#{:020}", since.unwrap_or(0).max(0));
        let upper = match before {
            Some(b) => format!("E#{b}"),
            None => "E#~".to_string(),
        };
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lower AND :upper")
                .expression_attribute_values(":pk", s(CMDLOG_PK))
                .expression_attribute_values(":lower", s(lower.clone()))
                .expression_attribute_values(":upper", s(upper.clone()))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| internal("Query commands", DisplayErrorContext(e)))?;
            self.stats
                .record("Query", capacity_of(page.consumed_capacity()));
            for item in page.items() {
                let body = get_s(item, "body").unwrap_or_default();
                let entry: CommandEntry =
                    serde_json::from_str(&body).map_err(|e| internal("decoding a command", e))?;
                // BETWEEN includes the cursor itself.
                if before != Some(entry.id.as_str()) {
                    out.push(entry);
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn record_clear(&self, at: Millis) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(CMDLOG_PK, "CLEAR")))
            .update_expression("SET cleared_at = :at")
            .condition_expression("attribute_not_exists(cleared_at) OR cleared_at < :at")
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A later clear is already recorded.
            Err(e) if code(&e).as_deref() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(internal("UpdateItem clear", DisplayErrorContext(e))),
        }
    }

    async fn last_clear(&self) -> Result<Option<Millis>> {
        Ok(self
            .get(CMDLOG_PK, "CLEAR", true)
            .await?
            .and_then(|item| get_n::<i64>(&item, "cleared_at")))
    }
}
