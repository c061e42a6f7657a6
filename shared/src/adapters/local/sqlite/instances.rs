//! Cloud instances: idempotent create under the one GPU quota, status changes.

use super::*;
use crate::idempotency::{CreateOutcome, Scope};

pub(super) fn get_instance_tx(conn: &Connection, id: &str) -> Result<Option<CloudInstance>> {
    conn.query_row(
        "SELECT body FROM cloud_instances WHERE id = ?1",
        params![id],
        |r| r.get::<_, String>(0),
    )
    .optional()
    .map_err(sql_err("reading an instance"))?
    .map(|body| serde_json::from_str(&body).map_err(json_err))
    .transpose()
}

#[async_trait]
impl InstanceStore for SqliteStore {
    async fn create_instance(
        &self,
        record: &CloudInstance,
        quota: u32,
        idempotency: Option<&Idempotency>,
        budget: Option<&crate::domain::costs::BudgetCheck>,
    ) -> Result<CreateInstanceOutcome> {
        let record = record.clone();
        let idempotency = idempotency.cloned();
        let budget = budget.cloned();
        self.write(move |conn| {
            let quota_check = |conn: &Connection| -> Result<Option<CreateInstanceOutcome>> {
                let in_use = gpus_in_use_tx(conn, &record.owner)?;
                Ok((in_use.saturating_add(record.gpu_count) > quota)
                    .then_some(CreateInstanceOutcome::OverQuota { in_use, quota }))
            };
            if let Some(idem) = &idempotency {
                if let Some(prior) = prior_tx(conn, Scope::Instances, &record.owner, idem)? {
                    return CreateOutcome::of_prior(prior, |id| get_instance_tx(conn, id));
                }
            }
            if let Some(over) = quota_check(conn)? {
                return Ok(over);
            }
            if let Some(check) = &budget {
                if let Some(held) = super::spend::hold_budget_tx(conn, check)? {
                    return Ok(CreateInstanceOutcome::OverBudget { held });
                }
            }
            if let Some(idem) = &idempotency {
                record_key_tx(conn, Scope::Instances, &record.owner, idem, &record.id)?;
            }
            let body = serde_json::to_string(&record).map_err(json_err)?;
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO cloud_instances (id, owner, created_at, version, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        record.id,
                        record.owner,
                        record.created_at,
                        record.version,
                        body
                    ],
                )
                .map_err(sql_err("recording an instance"))?;
            if inserted == 0 {
                return Err(Error::Conflict(format!("instance {} exists", record.id)));
            }
            Ok(CreateInstanceOutcome::Created)
        })
        .await
    }

    async fn get_instance(&self, id: &str) -> Result<Option<CloudInstance>> {
        let id = id.to_string();
        self.read(move |conn| get_instance_tx(conn, &id)).await
    }

    async fn list_instances(&self, owner: Option<&str>) -> Result<Vec<CloudInstance>> {
        let owner = owner.map(str::to_string);
        self.read(move |conn| {
            let bodies: Vec<String> = match &owner {
                Some(owner) => conn
                    .prepare_cached(
                        "SELECT body FROM cloud_instances WHERE owner = ?1
                         ORDER BY created_at DESC, id DESC",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map(params![owner], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()
                    }),
                None => conn
                    .prepare_cached(
                        "SELECT body FROM cloud_instances ORDER BY created_at DESC, id DESC",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map([], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()
                    }),
            }
            .map_err(sql_err("listing instances"))?;
            bodies
                .iter()
                .map(|b| serde_json::from_str(b).map_err(json_err))
                .collect()
        })
        .await
    }

    async fn save_instance(&self, record: &CloudInstance) -> Result<CloudInstance> {
        let mut next = record.clone();
        next.version = record.version + 1;
        self.write(move |conn| {
            let body = serde_json::to_string(&next).map_err(json_err)?;
            let updated = conn
                .execute(
                    "UPDATE cloud_instances SET version = ?1, body = ?2
                     WHERE id = ?3 AND version = ?4",
                    params![next.version, body, next.id, next.version - 1],
                )
                .map_err(sql_err("saving an instance"))?;
            if updated == 1 {
                return Ok(next);
            }
            match get_instance_tx(conn, &next.id)? {
                None => Err(Error::NotFound(format!("instance {}", next.id))),
                Some(_) => Err(Error::Conflict(format!(
                    "instance {} was changed meanwhile",
                    next.id
                ))),
            }
        })
        .await
    }
}
