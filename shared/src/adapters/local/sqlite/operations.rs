//! Launch and destroy operations.

use super::*;

pub(super) fn op_status_str(status: OperationStatus) -> &'static str {
    match status {
        OperationStatus::Running => "running",
        OperationStatus::Succeeded => "succeeded",
        OperationStatus::Failed => "failed",
    }
}

#[async_trait]
impl OperationStore for SqliteStore {
    async fn begin_operation(&self, op: &Operation, stale_after_ms: i64) -> Result<()> {
        let op = op.clone();
        self.write(move |conn| {
            let body = serde_json::to_string(&op).map_err(|e| Error::Internal(e.into()))?;
            let running: Option<String> = conn
                .query_row(
                    "SELECT id FROM operations WHERE status = 'running' AND created_at > ?1 LIMIT 1",
                    [op.created_at - stale_after_ms],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err("checking running operations"))?;
            if let Some(id) = running {
                return Err(Error::Conflict(format!(
                    "another launch or destroy (operation {id}) is still running; try again when it finishes"
                )));
            }
            conn.execute(
                "INSERT INTO operations (id, status, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![op.id, op_status_str(op.status), op.created_at, body],
            )
            .map_err(sql_err("recording an operation"))?;
            Ok(())
        })
        .await
    }

    async fn save_operation(&self, op: &Operation) -> Result<()> {
        let op = op.clone();
        self.write(move |conn| {
            let body = serde_json::to_string(&op).map_err(|e| Error::Internal(e.into()))?;
            conn.execute(
                "UPDATE operations SET status = ?2, body = ?3 WHERE id = ?1",
                params![op.id, op_status_str(op.status), body],
            )
            .map_err(sql_err("saving an operation"))?;
            Ok(())
        })
        .await
    }

    async fn get_operation(&self, id: &str) -> Result<Option<Operation>> {
        let id = id.to_string();
        self.read(move |conn| {
            let body: Option<String> = conn
                .query_row("SELECT body FROM operations WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql_err("reading an operation"))?;
            body.map(|b| serde_json::from_str(&b).map_err(|e| Error::Internal(e.into())))
                .transpose()
        })
        .await
    }
}
