//! Long-running operations (launch, destroy): items with a TTL.

use super::*;

pub(super) fn op_status(status: OperationStatus) -> &'static str {
    match status {
        OperationStatus::Running => "running",
        OperationStatus::Succeeded => "succeeded",
        OperationStatus::Failed => "failed",
    }
}

pub(super) fn ttl_from(millis: Millis) -> AttributeValue {
    n(millis / 1000 + EPHEMERAL_TTL_SECONDS)
}

#[async_trait]
impl OperationStore for DynamoStore {
    async fn begin_operation(&self, op: &Operation, stale_after_ms: i64) -> Result<()> {
        let mut lock = key(LOCK_PK, LOCK_SK);
        lock.insert("op_id".into(), s(&op.id));
        lock.insert("created_at".into(), n(op.created_at));
        let lock_put = self.put_item(
            lock,
            "attribute_not_exists(pk) OR created_at < :stale",
            vec![(":stale", n(op.created_at - stale_after_ms))],
        )?;
        let record = self.put_item(self.operation_item(op)?, "attribute_not_exists(pk)", vec![])?;
        match self.transact(vec![lock_put, record]).await? {
            None => Ok(()),
            Some(_) => {
                let holder = self
                    .get(LOCK_PK, LOCK_SK, true)
                    .await?
                    .and_then(|i| get_s(&i, "op_id"))
                    .unwrap_or_else(|| "unknown".into());
                Err(Error::Conflict(format!(
                    "another launch or destroy (operation {holder}) is still running; try again when it finishes"
                )))
            }
        }
    }

    async fn save_operation(&self, op: &Operation) -> Result<()> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.operation_item(op)?))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| internal("PutItem operation", DisplayErrorContext(e)))?;
        self.stats
            .record("PutItem", capacity_of(out.consumed_capacity()));
        if op.status != OperationStatus::Running {
            // Release the lock if it is still ours (a stale lock may have been taken over).
            let released = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(LOCK_PK, LOCK_SK)))
                .condition_expression("op_id = :id")
                .expression_attribute_values(":id", s(&op.id))
                .send()
                .await;
            self.stats.record("DeleteItem", 0.0);
            if let Err(e) = released {
                if code(&e).as_deref() != Some("ConditionalCheckFailedException") {
                    return Err(internal(
                        "releasing the operation lock",
                        DisplayErrorContext(e),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn get_operation(&self, id: &str) -> Result<Option<Operation>> {
        let Some(item) = self.get(&format!("OP#{id}"), "OP", true).await? else {
            return Ok(None);
        };
        let body =
            get_s(&item, "body").ok_or_else(|| internal("reading an operation", "no body"))?;
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| internal("decoding an operation", e))
    }
}

impl DynamoStore {
    pub(super) fn operation_item(&self, op: &Operation) -> Result<Item> {
        let mut item = key(format!("OP#{}", op.id), "OP");
        item.insert(
            "body".into(),
            s(serde_json::to_string(op).map_err(|e| internal("encoding an operation", e))?),
        );
        item.insert("status".into(), s(op_status(op.status)));
        item.insert("created_at".into(), n(op.created_at));
        item.insert(table::TTL_ATTRIBUTE.into(), ttl_from(op.created_at));
        Ok(item)
    }
}
