//! Costs: the ledger of ended machines' spend and the users' monthly budget holds.

use super::*;
use crate::domain::costs::{BudgetCheck, SpendRecord};
use crate::ports::SpendLedger;

/// Writes an ended machine's spend; a record already there is kept (counted once).
pub(super) fn record_ended_tx(conn: &Connection, record: &SpendRecord) -> Result<()> {
    let body = serde_json::to_string(record).map_err(json_err)?;
    conn.prepare_cached(
        "INSERT INTO spend_ledger (id, ended_at, body) VALUES (?1, ?2, ?3)
         ON CONFLICT(id) DO NOTHING",
    )
    .and_then(|mut stmt| stmt.execute(params![record.id, record.ended_at.unwrap_or(0), body]))
    .map_err(sql_err("recording spend"))?;
    Ok(())
}

/// Adds the check's hold to its user's month if it fits; otherwise the holds so far (and
/// nothing changes). Call inside the create's write transaction.
pub(super) fn hold_budget_tx(conn: &Connection, check: &BudgetCheck) -> Result<Option<i64>> {
    let held: i64 = conn
        .prepare_cached("SELECT held FROM budget_holds WHERE user_id = ?1 AND month = ?2")
        .and_then(|mut stmt| {
            stmt.query_row(params![check.user_id, check.hold.month], |r| r.get(0))
                .optional()
        })
        .map_err(sql_err("reading a budget"))?
        .unwrap_or(0);
    if !check.fits(held) {
        return Ok(Some(held));
    }
    conn.prepare_cached(
        "INSERT INTO budget_holds (user_id, month, held) VALUES (?1, ?2, ?3)
         ON CONFLICT(user_id, month) DO UPDATE SET held = held + excluded.held",
    )
    .and_then(|mut stmt| stmt.execute(params![check.user_id, check.hold.month, check.hold.micros]))
    .map_err(sql_err("holding a budget"))?;
    Ok(None)
}

#[async_trait]
impl SpendLedger for SqliteStore {
    async fn ended_spend(&self, since: Millis) -> Result<Vec<SpendRecord>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM spend_ledger WHERE ended_at >= ?1 ORDER BY ended_at, id",
                )
                .map_err(sql_err("reading spend"))?;
            let bodies = stmt
                .query_map([since], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(sql_err("reading spend"))?;
            bodies
                .into_iter()
                .map(|b| serde_json::from_str(&b).map_err(json_err))
                .collect()
        })
        .await
    }

    async fn budget_held(&self, user_id: &str, month: &str) -> Result<i64> {
        let (user_id, month) = (user_id.to_string(), month.to_string());
        self.read(move |conn| {
            conn.prepare_cached("SELECT held FROM budget_holds WHERE user_id = ?1 AND month = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![user_id, month], |r| r.get::<_, i64>(0))
                        .optional()
                })
                .map_err(sql_err("reading a budget"))
                .map(|h| h.unwrap_or(0))
        })
        .await
    }
}
