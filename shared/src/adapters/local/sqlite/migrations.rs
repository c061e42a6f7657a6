//! Schema versions and the SQL form of the assignable rule the free counter's triggers use.

use super::*;

/// The SQL form of `AssignableRule`, built from its constants so the rule has one source.
/// `row` qualifies the columns (`NEW.`, `OLD.` inside triggers; empty in queries).
pub(super) fn assignable_predicate_of(row: &str) -> String {
    format!(
        "({row}status = '{}' AND {row}email IS NULL AND {row}gpu_health != '{}')",
        AssignableRule::STATUS.as_str(),
        AssignableRule::EXCLUDED_HEALTH.as_str()
    )
}

pub(super) fn assignable_predicate() -> String {
    assignable_predicate_of("")
}

/// Schema version 2: the free count as a counter kept by triggers, so reading it is one
/// point lookup whatever the fleet size (counting the partial index costs a row lookup per
/// free VM: 32 req/s with 20,000 free). Every column in the predicate is NOT NULL except
/// `email`, tested with IS NULL, so the predicate is always 0 or 1.
pub(super) fn free_counter_migration() -> String {
    let new = assignable_predicate_of("NEW.");
    let old = assignable_predicate_of("OLD.");
    format!(
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
         INSERT INTO counters (name, value)
             SELECT 'assignable', COUNT(*) FROM vms WHERE {pred};
         CREATE TRIGGER vms_free_insert AFTER INSERT ON vms WHEN {new} BEGIN
             UPDATE counters SET value = value + 1 WHERE name = 'assignable';
         END;
         CREATE TRIGGER vms_free_delete AFTER DELETE ON vms WHEN {old} BEGIN
             UPDATE counters SET value = value - 1 WHERE name = 'assignable';
         END;
         CREATE TRIGGER vms_free_update AFTER UPDATE ON vms WHEN {new} != {old} BEGIN
             UPDATE counters SET value = value + (CASE WHEN {new} THEN 1 ELSE -1 END)
             WHERE name = 'assignable';
         END;",
        pred = assignable_predicate()
    )
}

/// Schema versions, applied in order; `PRAGMA user_version` records how far we got.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let migrations: Vec<String> = vec![
        format!(
            "CREATE TABLE vms (
            hostname      TEXT PRIMARY KEY,
            status        TEXT NOT NULL,
            status_reason TEXT,
            gpu_health    TEXT NOT NULL,
            in_use        INTEGER NOT NULL DEFAULT 0,
            email         TEXT UNIQUE,
            crd_command   TEXT,
            pin           TEXT,
            assigned_at   INTEGER,
            instance_id   TEXT,
            token_hash    TEXT NOT NULL,
            metrics       TEXT NOT NULL DEFAULT '{{}}',
            created_at    INTEGER NOT NULL,
            updated_at    INTEGER NOT NULL,
            last_seen_at  INTEGER
         );
         CREATE INDEX vms_assignable ON vms(created_at, hostname) WHERE {};
         CREATE TABLE operations (
            id          TEXT PRIMARY KEY,
            status      TEXT NOT NULL,
            created_at  INTEGER NOT NULL,
            body        TEXT NOT NULL
         );
         CREATE INDEX operations_running ON operations(created_at) WHERE status = 'running';",
            assignable_predicate()
        ),
        free_counter_migration(),
        // Version 3: logs as chunks of whole lines, with a per-VM byte total.
        "CREATE TABLE log_chunks (
            hostname   TEXT NOT NULL,
            seq        INTEGER NOT NULL,
            body       TEXT NOT NULL,
            bytes      INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (hostname, seq)
         ) WITHOUT ROWID;
         CREATE TABLE log_totals (
            hostname TEXT PRIMARY KEY,
            bytes    INTEGER NOT NULL,
            next_seq INTEGER NOT NULL
         ) WITHOUT ROWID;"
            .to_string(),
        // Version 4: GPU provisioning requests (the record as JSON, plus the columns the
        // quota sum, listings and the sweep query), idempotency keys, API keys.
        "CREATE TABLE gpu_requests (
            request_id TEXT PRIMARY KEY,
            user_id    TEXT NOT NULL,
            status     TEXT NOT NULL,
            gpu_count  INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            body       TEXT NOT NULL
         );
         CREATE INDEX gpu_requests_by_user ON gpu_requests(user_id, created_at);
         CREATE INDEX gpu_requests_by_time ON gpu_requests(created_at);
         CREATE INDEX gpu_requests_active ON gpu_requests(user_id)
             WHERE status IN ('pending', 'provisioning', 'completed');
         CREATE TABLE idempotency_keys (
            user_id     TEXT NOT NULL,
            key         TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            request_id  TEXT NOT NULL,
            PRIMARY KEY (user_id, key)
         ) WITHOUT ROWID;
         CREATE TABLE api_keys (
            key_id     TEXT PRIMARY KEY,
            key_hash   TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL,
            body       TEXT NOT NULL
         );"
        .to_string(),
        // Version 5: instances of the offers API (record as JSON), their idempotency keys,
        // and rate-limit counters (one row per bucket and window).
        "CREATE TABLE cloud_instances (
            id         TEXT PRIMARY KEY,
            owner      TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            version    INTEGER NOT NULL,
            body       TEXT NOT NULL
         );
         CREATE INDEX cloud_instances_by_owner ON cloud_instances(owner, created_at);
         CREATE TABLE instance_idempotency_keys (
            user_id     TEXT NOT NULL,
            key         TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            instance_id TEXT NOT NULL,
            PRIMARY KEY (user_id, key)
         ) WITHOUT ROWID;
         CREATE TABLE rate_limits (
            bucket       TEXT NOT NULL,
            window_start INTEGER NOT NULL,
            hits         INTEGER NOT NULL,
            expires_at   INTEGER NOT NULL,
            PRIMARY KEY (bucket, window_start)
         ) WITHOUT ROWID;
         CREATE INDEX rate_limits_expiry ON rate_limits(expires_at);"
            .to_string(),
        // Version 6: the command log (append-only) and its clears.
        "CREATE TABLE command_log (
            id   TEXT PRIMARY KEY,
            at   INTEGER NOT NULL,
            body TEXT NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE command_log_clears (at INTEGER NOT NULL);"
            .to_string(),
        // Version 7: the capacity pool of each host (absent: its GPU type's default pool).
        "CREATE TABLE host_pools (
            hostname   TEXT PRIMARY KEY,
            pool       TEXT NOT NULL,
            updated_at INTEGER NOT NULL
         ) WITHOUT ROWID;"
            .to_string(),
        // Version 8: seats (the hash of each participant's seat token, the time of their
        // latest CRD command), liveness in the claim's index, and the durable job queue.
        format!(
            "ALTER TABLE vms ADD COLUMN seat_hash TEXT;
             ALTER TABLE vms ADD COLUMN command_at INTEGER;
             UPDATE vms SET command_at = assigned_at WHERE email IS NOT NULL;
             CREATE UNIQUE INDEX vms_by_seat ON vms(seat_hash) WHERE seat_hash IS NOT NULL;
             DROP INDEX vms_assignable;
             CREATE INDEX vms_assignable ON vms(created_at, hostname, last_seen_at) WHERE {pred};
             CREATE INDEX vms_free_by_last_seen ON vms(last_seen_at) WHERE {pred};
             CREATE TABLE jobs (
                id         INTEGER PRIMARY KEY AUTOINCREMENT,
                body       TEXT NOT NULL,
                attempts   INTEGER NOT NULL DEFAULT 0,
                not_before INTEGER NOT NULL DEFAULT 0
             );",
            pred = assignable_predicate()
        ),
        // Version 9: the admin's latest request for a final sync of the participant's work.
        "ALTER TABLE vms ADD COLUMN collect_requested_at INTEGER;".to_string(),
        // Version 10: the latest final-sync request the VM's agent answered.
        "ALTER TABLE vms ADD COLUMN collect_answered_at INTEGER;".to_string(),
        // Version 11: costs. Each VM's price and start; the ledger of ended machines' spend
        // (kept when their records go); each user's budget holds per month.
        "ALTER TABLE vms ADD COLUMN metering TEXT;
         CREATE TABLE spend_ledger (
            id       TEXT PRIMARY KEY,
            ended_at INTEGER NOT NULL,
            body     TEXT NOT NULL
         ) WITHOUT ROWID;
         CREATE INDEX spend_by_end ON spend_ledger(ended_at);
         CREATE TABLE budget_holds (
            user_id TEXT NOT NULL,
            month   TEXT NOT NULL,
            held    INTEGER NOT NULL,
            PRIMARY KEY (user_id, month)
         ) WITHOUT ROWID;"
            .to_string(),
    ];
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .context("reading schema version")? as usize;
    for (i, sql) in migrations.iter().enumerate().skip(version) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .with_context(|| format!("applying schema migration {}", i + 1))?;
    }
    Ok(())
}
