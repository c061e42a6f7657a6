//! Provisioning requests: request items, the per-user quota item and idempotency keys, all written in one transaction.
//!
//! Items: `REQ#<id>`/`REQ` (the request as JSON, plus `status`, `user_id` and, for the
//! `requests` index, `req_pk = USER#<user>`, `req_sk = <created>#<id>`); `ACTIVE`/`<id>`
//! while a request is active (the sweep queries this partition); `USER#<user>`/`GPUS` with
//! `in_use`, the user's active GPUs; `IDEM#<user>#<key>`/`IDEM` per idempotency key. The
//! create is one transaction: the quota update (conditional on staying within the quota),
//! the request, its ACTIVE pointer and its idempotency key. Ending a request is one
//! transaction too: the request (conditional on its old status), the pointer deleted, and
//! `in_use` decremented, so a quota is freed exactly once.

use super::*;
use crate::idempotency::Scope;
use crate::ports::SpendLedger;

pub(super) fn request_pk(id: &str) -> String {
    format!("REQ#{id}")
}

pub(super) fn quota_key(user: &str) -> Item {
    key(format!("USER#{user}"), "GPUS")
}

pub(super) fn request_item(r: &GpuRequest) -> Result<Item> {
    let mut item = key(request_pk(&r.request_id), "REQ");
    let body = serde_json::to_string(r).map_err(|e| internal("encoding a request", e))?;
    item.insert("body".into(), s(body));
    item.insert("status".into(), s(r.status.as_str()));
    item.insert("user_id".into(), s(r.user_id.clone()));
    item.insert(table::REQUESTS_PK.into(), s(format!("USER#{}", r.user_id)));
    item.insert(
        table::REQUESTS_SK.into(),
        s(format!("{:020}#{}", r.created_at.max(0), r.request_id)),
    );
    Ok(item)
}

pub(super) fn item_to_request(item: &Item) -> Result<GpuRequest> {
    let body = get_s(item, "body").ok_or_else(|| internal("reading a request", "no body"))?;
    serde_json::from_str(&body).map_err(|e| internal("decoding a request", e))
}

#[async_trait]
impl RequestStore for DynamoStore {
    async fn create_request(
        &self,
        request: &GpuRequest,
        quota: u32,
        idempotency: Option<&Idempotency>,
        budget: Option<&crate::domain::costs::BudgetCheck>,
    ) -> Result<CreateRequestOutcome> {
        let user = request.user_id.as_str();
        for _ in 0..MAX_ATTEMPTS {
            if let Some(idem) = idempotency {
                let load = |id: String| async move { self.get_request(&id).await };
                if let Some(outcome) = self.replay(Scope::Requests, user, idem, load).await? {
                    return Ok(outcome);
                }
            }
            if request.gpu_count > quota {
                let in_use = self.gpus_in_use(user).await?;
                return Ok(CreateRequestOutcome::OverQuota { in_use, quota });
            }
            let mut items = vec![
                self.update_item(
                    quota_key(user),
                    "SET in_use = if_not_exists(in_use, :zero) + :n",
                    Some("attribute_not_exists(in_use) OR in_use <= :most_before"),
                    vec![
                        (":zero", n(0)),
                        (":n", n(request.gpu_count)),
                        (":most_before", n(quota - request.gpu_count)),
                    ],
                )?,
                self.put_item(request_item(request)?, "attribute_not_exists(pk)", vec![])?,
                self.put_item(
                    key("ACTIVE", request.request_id.clone()),
                    "attribute_not_exists(pk)",
                    vec![],
                )?,
            ];
            if let Some(idem) = idempotency {
                let item = idempotency_item(Scope::Requests, user, idem, &request.request_id);
                items.push(self.put_item(item, "attribute_not_exists(pk)", vec![])?);
            }
            let budget_at = items.len();
            if let Some(check) = budget {
                if check.most_before < 0 {
                    let held = self.budget_held(user, &check.hold.month).await?;
                    return Ok(CreateRequestOutcome::OverBudget { held });
                }
                items.push(self.budget_hold_item(check)?);
            }
            match self.transact(items).await? {
                None => return Ok(CreateRequestOutcome::Created),
                Some(codes) => {
                    let failed = |i: usize| {
                        codes.get(i).map(String::as_str) == Some("ConditionalCheckFailed")
                    };
                    // As SQLite decides: a concurrent create with the same key first (answer
                    // as its repeat), then the quota, then the budget.
                    if idempotency.is_some() && failed(3) {
                        continue;
                    }
                    if failed(0) {
                        let in_use = self.gpus_in_use(user).await?;
                        return Ok(CreateRequestOutcome::OverQuota { in_use, quota });
                    }
                    if let Some(check) = budget.filter(|_| failed(budget_at)) {
                        let held = self.budget_held(user, &check.hold.month).await?;
                        return Ok(CreateRequestOutcome::OverBudget { held });
                    }
                    if failed(1) {
                        return Err(Error::Conflict(format!(
                            "request {} exists",
                            request.request_id
                        )));
                    }
                    // Transaction conflicts: try again.
                }
            }
        }
        Err(internal("recording a request", "too much contention"))
    }

    async fn get_request(&self, request_id: &str) -> Result<Option<GpuRequest>> {
        self.get(&request_pk(request_id), "REQ", true)
            .await?
            .map(|i| item_to_request(&i))
            .transpose()
    }

    async fn list_requests(&self, user: Option<&str>, limit: usize) -> Result<Vec<GpuRequest>> {
        let Some(user) = user else {
            // Everyone's (admins): not a hot path, so a filtered scan, sorted here.
            let mut all: Vec<GpuRequest> = self
                .scan_prefix("REQ#")
                .await?
                .iter()
                .map(item_to_request)
                .collect::<Result<_>>()?;
            all.sort_by(|a, b| (b.created_at, &b.request_id).cmp(&(a.created_at, &a.request_id)));
            all.truncate(limit);
            return Ok(all);
        };
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(table::REQUESTS_INDEX)
                .key_condition_expression("#p = :user")
                .expression_attribute_names("#p", table::REQUESTS_PK)
                .expression_attribute_values(":user", s(format!("USER#{user}")))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| internal("Query requests", DisplayErrorContext(e)))?;
            self.stats
                .record("Query", capacity_of(page.consumed_capacity()));
            for item in page.items() {
                out.push(item_to_request(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn update_request(
        &self,
        request_id: &str,
        change: &RequestChange,
        now: Millis,
    ) -> Result<GpuRequest> {
        for _ in 0..MAX_ATTEMPTS {
            let mut request = self
                .get_request(request_id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("request {request_id}")))?;
            let before = request.status;
            change.apply(&mut request, now)?;
            let mut items = vec![self.put_item(
                request_item(&request)?,
                "#status = :before",
                vec![(":before", s(before.as_str()))],
            )?];
            // `put_item` takes no attribute names; `status` is a reserved word.
            if let Some(put) = items[0].put.as_mut() {
                put.expression_attribute_names = Some(HashMap::from([(
                    "#status".to_string(),
                    "status".to_string(),
                )]));
            }
            if before.is_active() && !request.status.is_active() {
                items.push(self.delete_item(key("ACTIVE", request_id), None)?);
                items.push(self.update_item(
                    quota_key(&request.user_id),
                    "SET in_use = in_use - :n",
                    None,
                    vec![(":n", n(request.gpu_count))],
                )?);
            }
            if self.transact(items).await?.is_none() {
                return Ok(request);
            }
            // Changed meanwhile: read again and re-apply.
        }
        Err(internal("updating a request", "too much contention"))
    }

    async fn active_requests(&self) -> Result<Vec<GpuRequest>> {
        let pointers = self
            .query_all("Query active requests", |start| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :active")
                    .expression_attribute_values(":active", s("ACTIVE"))
                    .set_exclusive_start_key(start)
            })
            .await?;
        let mut out = Vec::new();
        for pointer in pointers {
            let id = get_s(&pointer, table::SORT_KEY).unwrap_or_default();
            if let Some(r) = self.get_request(&id).await? {
                if r.status.is_active() {
                    out.push(r);
                }
            }
        }
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    async fn gpus_in_use(&self, user_id: &str) -> Result<u32> {
        Ok(self
            .get_item(quota_key(user_id), true)
            .await?
            .and_then(|i| get_n::<i64>(&i, "in_use"))
            .map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX)))
    }
}
