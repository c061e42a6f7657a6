//! Idempotency keys, looked up and recorded inside the create's transaction; what a key
//! seen before means is `crate::idempotency`'s to say.

use super::*;
use crate::idempotency::{Prior, Scope};

/// The table of a scope's keys and its column naming the record.
fn table_of(scope: Scope) -> (&'static str, &'static str) {
    match scope {
        Scope::Requests => ("idempotency_keys", "request_id"),
        Scope::Instances => ("instance_idempotency_keys", "instance_id"),
    }
}

/// What the key means for this create, if `user` used it before in `scope`.
pub(super) fn prior_tx(
    conn: &Connection,
    scope: Scope,
    user: &str,
    idem: &Idempotency,
) -> Result<Option<Prior>> {
    let (table, id_column) = table_of(scope);
    let seen: Option<(String, String)> = conn
        .prepare_cached(&format!(
            "SELECT fingerprint, {id_column} FROM {table} WHERE user_id = ?1 AND key = ?2"
        ))
        .and_then(|mut st| {
            st.query_row(params![user, idem.key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(sql_err("reading an idempotency key"))?;
    Ok(seen.map(|(fingerprint, id)| idem.judge(&fingerprint, id)))
}

/// Records the key as naming `id`, in the transaction that records `id`.
pub(super) fn record_key_tx(
    conn: &Connection,
    scope: Scope,
    user: &str,
    idem: &Idempotency,
    id: &str,
) -> Result<()> {
    let (table, id_column) = table_of(scope);
    conn.prepare_cached(&format!(
        "INSERT INTO {table} (user_id, key, fingerprint, {id_column}) VALUES (?1, ?2, ?3, ?4)"
    ))
    .and_then(|mut st| st.execute(params![user, idem.key, idem.fingerprint, id]))
    .map_err(sql_err("recording an idempotency key"))?;
    Ok(())
}
