//! Costs: the ledger of ended machines' spend and the users' monthly budget holds.
//!
//! Items: `SPEND#<month it ended>`/`<ended_at>#<id>` per ended machine (the record as JSON;
//! written in the transaction that deletes its VM, conditional on not existing, so counted
//! once); `BUDGET#<user>`/`<month>` with `held`, the micro-dollars that user's starts hold
//! in the month, updated in the create's transaction on the condition that it stays within
//! the budget.

use super::*;
use crate::domain::costs::{month_of, BudgetCheck, SpendRecord};
use crate::ports::SpendLedger;

/// Reading more months than this one partition at a time gives way to one scan.
const MAX_MONTH_QUERIES: usize = 24;

pub(super) fn ledger_item(record: &SpendRecord) -> Result<Item> {
    let ended = record.ended_at.unwrap_or(0);
    let (_, month) = month_of(ended);
    let mut item = key(
        format!("SPEND#{month}"),
        format!("{:020}#{}", ended.max(0), record.id),
    );
    let body = serde_json::to_string(record).map_err(|e| internal("encoding spend", e))?;
    item.insert("body".into(), s(body));
    item.insert("ended_at".into(), n(ended));
    Ok(item)
}

fn item_to_record(item: &Item) -> Result<SpendRecord> {
    let body = get_s(item, "body").ok_or_else(|| internal("reading spend", "no body"))?;
    serde_json::from_str(&body).map_err(|e| internal("decoding spend", e))
}

fn budget_key(user: &str, month: &str) -> Item {
    key(format!("BUDGET#{user}"), month.to_string())
}

impl DynamoStore {
    /// The transaction item that adds `check`'s hold if the month stays within the budget.
    pub(super) fn budget_hold_item(&self, check: &BudgetCheck) -> Result<TransactWriteItem> {
        self.update_item(
            budget_key(&check.user_id, &check.hold.month),
            "SET held = if_not_exists(held, :zero) + :hold",
            Some("attribute_not_exists(held) OR held <= :most_before"),
            vec![
                (":zero", n(0)),
                (":hold", n(check.hold.micros)),
                (":most_before", n(check.most_before)),
            ],
        )
    }
}

#[async_trait]
impl SpendLedger for DynamoStore {
    async fn ended_spend(&self, since: Millis) -> Result<Vec<SpendRecord>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut months = Vec::new();
        let mut start = month_of(since).0;
        while since > 0 && start <= now.max(since) && months.len() <= MAX_MONTH_QUERIES {
            months.push(month_of(start).1);
            start = month_of(start + 32 * 86_400_000).0;
        }
        let items = if since <= 0 || months.len() > MAX_MONTH_QUERIES {
            self.scan_prefix("SPEND#").await?
        } else {
            let mut items = Vec::new();
            for month in months {
                items.extend(
                    self.query_all("Query spend", |start| {
                        self.client
                            .query()
                            .table_name(&self.table)
                            .key_condition_expression("pk = :pk AND sk >= :from")
                            .expression_attribute_values(":pk", s(format!("SPEND#{month}")))
                            .expression_attribute_values(":from", s(format!("{since:020}")))
                            .set_exclusive_start_key(start)
                    })
                    .await?,
                );
            }
            items
        };
        let mut records: Vec<SpendRecord> = items
            .iter()
            .map(item_to_record)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|r| r.runs_since(since))
            .collect();
        records.sort_by(|a, b| (a.ended_at, &a.id).cmp(&(b.ended_at, &b.id)));
        Ok(records)
    }

    async fn budget_held(&self, user_id: &str, month: &str) -> Result<i64> {
        Ok(self
            .get_item(budget_key(user_id, month), true)
            .await?
            .and_then(|i| get_n(&i, "held"))
            .unwrap_or(0))
    }
}
