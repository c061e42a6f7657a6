//! Cloud instances of the offers API: records written before any provider call, with idempotency keys.
//!
//! Items: `INST#<id>`/`INST` (the record as JSON, `version`, and for the `requests` index
//! `req_pk = IUSER#<owner>`, `req_sk = <created>#<id>`); `IDEM#<user>#instances#<key>`/`IDEM`
//! per idempotency key, written in one transaction with the record. Saves are conditional
//! on the version read.

use super::*;
use crate::idempotency::Scope;
use crate::ports::SpendLedger;

pub(super) fn instance_item(r: &CloudInstance) -> Result<Item> {
    let mut item = key(format!("INST#{}", r.id), "INST");
    let body = serde_json::to_string(r).map_err(|e| internal("encoding an instance", e))?;
    item.insert("body".into(), s(body));
    item.insert("version".into(), n(r.version));
    item.insert(table::REQUESTS_PK.into(), s(format!("IUSER#{}", r.owner)));
    item.insert(
        table::REQUESTS_SK.into(),
        s(format!("{:020}#{}", r.created_at.max(0), r.id)),
    );
    Ok(item)
}

pub(super) fn item_to_instance(item: &Item) -> Result<CloudInstance> {
    let body = get_s(item, "body").ok_or_else(|| internal("reading an instance", "no body"))?;
    serde_json::from_str(&body).map_err(|e| internal("decoding an instance", e))
}

#[async_trait]
impl InstanceStore for DynamoStore {
    async fn create_instance(
        &self,
        record: &CloudInstance,
        quota: u32,
        idempotency: Option<&Idempotency>,
        budget: Option<&crate::domain::costs::BudgetCheck>,
    ) -> Result<CreateInstanceOutcome> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(idem) = idempotency {
                let load = |id: String| async move { self.get_instance(&id).await };
                let owner = &record.owner;
                if let Some(outcome) = self.replay(Scope::Instances, owner, idem, load).await? {
                    return Ok(outcome);
                }
            }
            if record.gpu_count > quota {
                let in_use = self.gpus_in_use(&record.owner).await?;
                return Ok(CreateInstanceOutcome::OverQuota { in_use, quota });
            }
            // The record says how many GPUs it holds of the quota counter (shared with
            // requests), so the save that ends it frees them exactly once.
            let mut item = instance_item(record)?;
            item.insert("holds_gpus".into(), n(record.gpu_count));
            let mut items = vec![
                self.put_item(item, "attribute_not_exists(pk)", vec![])?,
                self.update_item(
                    quota_key(&record.owner),
                    "SET in_use = if_not_exists(in_use, :zero) + :n",
                    Some("attribute_not_exists(in_use) OR in_use <= :most_before"),
                    vec![
                        (":zero", n(0)),
                        (":n", n(record.gpu_count)),
                        (":most_before", n(quota - record.gpu_count)),
                    ],
                )?,
            ];
            if let Some(idem) = idempotency {
                let item = idempotency_item(Scope::Instances, &record.owner, idem, &record.id);
                items.push(self.put_item(item, "attribute_not_exists(pk)", vec![])?);
            }
            let budget_at = items.len();
            if let Some(check) = budget {
                if check.most_before < 0 {
                    let held = self.budget_held(&record.owner, &check.hold.month).await?;
                    return Ok(CreateInstanceOutcome::OverBudget { held });
                }
                items.push(self.budget_hold_item(check)?);
            }
            match self.transact(items).await? {
                None => return Ok(CreateInstanceOutcome::Created),
                Some(codes) => {
                    let failed = |i: usize| {
                        codes.get(i).map(String::as_str) == Some("ConditionalCheckFailed")
                    };
                    // As SQLite decides: a concurrent create with the same key first (look
                    // again: the replay answers), then the quota, then the budget.
                    if idempotency.is_some() && failed(2) {
                        continue;
                    }
                    if failed(0) {
                        return Err(Error::Conflict(format!("instance {} exists", record.id)));
                    }
                    if failed(1) {
                        let in_use = self.gpus_in_use(&record.owner).await?;
                        return Ok(CreateInstanceOutcome::OverQuota { in_use, quota });
                    }
                    if let Some(check) = budget.filter(|_| failed(budget_at)) {
                        let held = self.budget_held(&record.owner, &check.hold.month).await?;
                        return Ok(CreateInstanceOutcome::OverBudget { held });
                    }
                    // A transaction conflict: look again.
                }
            }
        }
        Err(internal("recording an instance", "too much contention"))
    }

    async fn get_instance(&self, id: &str) -> Result<Option<CloudInstance>> {
        self.get(&format!("INST#{id}"), "INST", true)
            .await?
            .map(|i| item_to_instance(&i))
            .transpose()
    }

    async fn list_instances(&self, owner: Option<&str>) -> Result<Vec<CloudInstance>> {
        let Some(owner) = owner else {
            // Everyone's (admins, reconcile): a filtered scan, sorted here.
            let mut all: Vec<CloudInstance> = self
                .scan_prefix("INST#")
                .await?
                .iter()
                .map(item_to_instance)
                .collect::<Result<_>>()?;
            all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            return Ok(all);
        };
        let items = self
            .query_all("Query instances", |start| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(table::REQUESTS_INDEX)
                    .key_condition_expression("#p = :owner")
                    .expression_attribute_names("#p", table::REQUESTS_PK)
                    .expression_attribute_values(":owner", s(format!("IUSER#{owner}")))
                    .set_exclusive_start_key(start)
            })
            .await?;
        let mut out: Vec<CloudInstance> =
            items.iter().map(item_to_instance).collect::<Result<_>>()?;
        out.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(out)
    }

    async fn save_instance(&self, record: &CloudInstance) -> Result<CloudInstance> {
        let mut next = record.clone();
        next.version = record.version + 1;
        let frees = next.status.is_final();
        let body = serde_json::to_string(&next).map_err(|e| internal("encoding an instance", e))?;
        // An update, not a put: `holds_gpus` stays as the create (or the freeing save) left it.
        let update = |condition: &str, holds: Option<u32>| -> Result<Update> {
            let mut u = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(format!("INST#{}", next.id), "INST")))
                .update_expression(if frees {
                    "SET body = :body, version = :next, holds_gpus = :zero"
                } else {
                    "SET body = :body, version = :next"
                })
                .condition_expression(condition)
                .expression_attribute_values(":body", s(body.clone()))
                .expression_attribute_values(":next", n(next.version))
                .expression_attribute_values(":v", n(record.version));
            if frees {
                u = u.expression_attribute_values(":zero", n(0));
            }
            if let Some(g) = holds {
                u = u.expression_attribute_values(":g", n(g));
            }
            u.build()
                .map_err(|e| internal("building an instance update", e))
        };
        if frees && next.gpu_count > 0 {
            // Ending it frees its GPUs in the same transaction, if it still holds them.
            for _ in 0..MAX_ATTEMPTS {
                let items = vec![
                    TransactWriteItem::builder()
                        .update(update(
                            "attribute_exists(pk) AND version = :v AND holds_gpus = :g",
                            Some(next.gpu_count),
                        )?)
                        .build(),
                    self.update_item(
                        quota_key(&next.owner),
                        "SET in_use = in_use - :n",
                        None,
                        vec![(":n", n(next.gpu_count))],
                    )?,
                ];
                match self.transact(items).await? {
                    None => return Ok(next),
                    // Not holding (freed before, or a record older than the quota), or
                    // changed: the plain save below tells which.
                    Some(codes)
                        if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") =>
                    {
                        break
                    }
                    Some(_) => continue,
                }
            }
        }
        let u = update("attribute_exists(pk) AND version = :v", None)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(u.key))
            .update_expression(u.update_expression)
            .set_condition_expression(u.condition_expression)
            .set_expression_attribute_values(u.expression_attribute_values)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.stats
                    .record("UpdateItem", capacity_of(out.consumed_capacity()));
                Ok(next)
            }
            Err(e) if code(&e).as_deref() == Some("ConditionalCheckFailedException") => {
                match self.get_instance(&record.id).await? {
                    None => Err(Error::NotFound(format!("instance {}", record.id))),
                    Some(_) => Err(Error::Conflict(format!(
                        "instance {} was changed meanwhile",
                        record.id
                    ))),
                }
            }
            Err(e) => Err(internal("UpdateItem instance", DisplayErrorContext(e))),
        }
    }
}
