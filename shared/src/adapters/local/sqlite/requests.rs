//! GPU requests: idempotent create under the one GPU quota, status changes, listings.

use super::*;
use crate::domain::costs::BudgetCheck;
use crate::idempotency::{CreateOutcome, Scope};

/// The SQL list of active request statuses (the quota counts these).
pub(super) const ACTIVE_STATUSES: &str = "('pending', 'provisioning', 'completed')";

pub(super) fn request_of(body: String) -> Result<GpuRequest> {
    serde_json::from_str(&body).map_err(json_err)
}

/// A user's GPUs: active requests plus instances not yet final (one quota for both).
/// Inside the writer's transaction this cannot interleave with another create.
pub(super) fn gpus_in_use_tx(conn: &Connection, user_id: &str) -> Result<u32> {
    conn.prepare_cached(&format!(
        "SELECT (SELECT COALESCE(SUM(gpu_count), 0) FROM gpu_requests
                 WHERE user_id = ?1 AND status IN {ACTIVE_STATUSES})
              + (SELECT COALESCE(SUM(json_extract(body, '$.gpu_count')), 0) FROM cloud_instances
                 WHERE owner = ?1 AND json_extract(body, '$.status') NOT IN {FINAL_INSTANCE_STATUSES})"
    ))
    .and_then(|mut stmt| stmt.query_row([user_id], |r| r.get::<_, i64>(0)))
    .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    .map_err(sql_err("summing a user's GPUs"))
}

/// Instance statuses that hold no GPUs (`InstanceStatus::is_final`), as SQL.
pub(super) const FINAL_INSTANCE_STATUSES: &str = "('destroyed', 'failed')";

pub(super) fn get_request_tx(conn: &Connection, request_id: &str) -> Result<Option<GpuRequest>> {
    conn.prepare_cached("SELECT body FROM gpu_requests WHERE request_id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([request_id], |r| r.get::<_, String>(0))
                .optional()
        })
        .map_err(sql_err("reading a request"))?
        .map(request_of)
        .transpose()
}

#[async_trait]
impl RequestStore for SqliteStore {
    async fn create_request(
        &self,
        request: &GpuRequest,
        quota: u32,
        idempotency: Option<&Idempotency>,
        budget: Option<&BudgetCheck>,
    ) -> Result<CreateRequestOutcome> {
        let request = request.clone();
        let idempotency = idempotency.cloned();
        let budget = budget.cloned();
        // One writer transaction: the key check, the quota sum and the insert cannot
        // interleave with another create.
        self.write(move |conn| {
            if let Some(idem) = &idempotency {
                if let Some(prior) = prior_tx(conn, Scope::Requests, &request.user_id, idem)? {
                    return CreateOutcome::of_prior(prior, |id| get_request_tx(conn, id));
                }
            }
            let in_use = gpus_in_use_tx(conn, &request.user_id)?;
            if in_use.saturating_add(request.gpu_count) > quota {
                return Ok(CreateRequestOutcome::OverQuota { in_use, quota });
            }
            if let Some(check) = &budget {
                if let Some(held) = super::spend::hold_budget_tx(conn, check)? {
                    return Ok(CreateRequestOutcome::OverBudget { held });
                }
            }
            let body = serde_json::to_string(&request).map_err(json_err)?;
            conn.execute(
                "INSERT INTO gpu_requests (request_id, user_id, status, gpu_count, created_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    request.request_id,
                    request.user_id,
                    request.status.as_str(),
                    request.gpu_count,
                    request.created_at,
                    body
                ],
            )
            .map_err(sql_err("recording a request"))?;
            if let Some(idem) = &idempotency {
                let user = &request.user_id;
                record_key_tx(conn, Scope::Requests, user, idem, &request.request_id)?;
            }
            Ok(CreateRequestOutcome::Created)
        })
        .await
    }

    async fn get_request(&self, request_id: &str) -> Result<Option<GpuRequest>> {
        let request_id = request_id.to_string();
        self.read(move |conn| get_request_tx(conn, &request_id))
            .await
    }

    async fn list_requests(&self, user: Option<&str>, limit: usize) -> Result<Vec<GpuRequest>> {
        let user = user.map(str::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let bodies: Vec<String> = match &user {
                Some(user) => conn
                    .prepare_cached(
                        "SELECT body FROM gpu_requests WHERE user_id = ?1
                         ORDER BY created_at DESC, request_id DESC LIMIT ?2",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map(params![user, limit], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()
                    }),
                None => conn
                    .prepare_cached(
                        "SELECT body FROM gpu_requests
                         ORDER BY created_at DESC, request_id DESC LIMIT ?1",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map(params![limit], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()
                    }),
            }
            .map_err(sql_err("listing requests"))?;
            bodies.into_iter().map(request_of).collect()
        })
        .await
    }

    async fn update_request(
        &self,
        request_id: &str,
        change: &RequestChange,
        now: Millis,
    ) -> Result<GpuRequest> {
        let request_id = request_id.to_string();
        let change = change.clone();
        self.write(move |conn| {
            let mut request = get_request_tx(conn, &request_id)?
                .ok_or_else(|| Error::NotFound(format!("request {request_id}")))?;
            change.apply(&mut request, now)?;
            let body = serde_json::to_string(&request).map_err(json_err)?;
            // The quota is the sum over active rows, so the status change frees it.
            conn.execute(
                "UPDATE gpu_requests SET status = ?2, body = ?3 WHERE request_id = ?1",
                params![request_id, request.status.as_str(), body],
            )
            .map_err(sql_err("updating a request"))?;
            Ok(request)
        })
        .await
    }

    async fn active_requests(&self) -> Result<Vec<GpuRequest>> {
        self.read(move |conn| {
            let bodies: Vec<String> = conn
                .prepare_cached(&format!(
                    "SELECT body FROM gpu_requests WHERE status IN {ACTIVE_STATUSES}
                     ORDER BY created_at"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(sql_err("listing active requests"))?;
            bodies.into_iter().map(request_of).collect()
        })
        .await
    }

    async fn gpus_in_use(&self, user_id: &str) -> Result<u32> {
        let user_id = user_id.to_string();
        self.read(move |conn| gpus_in_use_tx(conn, &user_id)).await
    }
}

/// Keeps `RequestStatus` and the SQL list of active statuses in step.
#[cfg(test)]
#[test]
fn active_statuses_match_the_domain() {
    use crate::domain::RequestStatus;
    for status in [
        RequestStatus::Pending,
        RequestStatus::Provisioning,
        RequestStatus::Completed,
        RequestStatus::Failed,
        RequestStatus::Expired,
        RequestStatus::Released,
    ] {
        assert_eq!(
            ACTIVE_STATUSES.contains(&format!("'{}'", status.as_str())),
            status.is_active()
        );
    }
}
