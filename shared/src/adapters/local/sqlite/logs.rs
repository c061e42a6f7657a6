//! VM logs: chunks of whole lines per VM, trimmed to the cap.

use super::*;
use crate::domain::logs::{body_lines, chunk_body, trim_oldest, Trim};

#[async_trait]
impl LogStore for SqliteStore {
    async fn append_logs(
        &self,
        hostname: &str,
        lines: &[String],
        cap_bytes: usize,
        now: Millis,
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let hostname = hostname.to_string();
        let chunks = chunk_lines(lines);
        let cap = i64::try_from(cap_bytes).unwrap_or(i64::MAX);
        self.write(move |conn| {
            let (mut total, mut seq): (i64, i64) = conn
                .prepare_cached("SELECT bytes, next_seq FROM log_totals WHERE hostname = ?1")
                .and_then(|mut st| st.query_row([&hostname], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(sql_err("reading log totals"))?
                .unwrap_or((0, 1));
            for chunk in &chunks {
                let body = chunk_body(chunk);
                conn.prepare_cached(
                    "INSERT INTO log_chunks (hostname, seq, body, bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut st| st.execute(params![hostname, seq, body, body.len() as i64, now]))
                .map_err(sql_err("appending a log chunk"))?;
                total += body.len() as i64;
                seq += 1;
            }
            while total > cap {
                let (oldest_seq, body): (i64, String) = conn
                    .prepare_cached(
                        "SELECT seq, body FROM log_chunks WHERE hostname = ?1 ORDER BY seq LIMIT 1",
                    )
                    .and_then(|mut st| st.query_row([&hostname], |r| Ok((r.get(0)?, r.get(1)?))))
                    .map_err(sql_err("reading the oldest log chunk"))?;
                let Some(step) = trim_oldest(total, cap, &body) else {
                    break;
                };
                match &step {
                    Trim::Drop { .. } => conn.execute(
                        "DELETE FROM log_chunks WHERE hostname = ?1 AND seq = ?2",
                        params![hostname, oldest_seq],
                    ),
                    Trim::KeepTail { tail, .. } => conn.execute(
                        "UPDATE log_chunks SET body = ?3, bytes = ?4 WHERE hostname = ?1 AND seq = ?2",
                        params![hostname, oldest_seq, tail, tail.len() as i64],
                    ),
                }
                .map_err(sql_err("trimming logs"))?;
                total -= step.removed();
            }
            conn.prepare_cached(
                "INSERT INTO log_totals (hostname, bytes, next_seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT(hostname) DO UPDATE SET bytes = excluded.bytes, next_seq = excluded.next_seq",
            )
            .and_then(|mut st| st.execute(params![hostname, total, seq]))
            .map_err(sql_err("updating log totals"))?;
            Ok(())
        })
        .await
    }

    async fn read_logs(&self, hostname: &str, after: u64) -> Result<Option<LogPage>> {
        let hostname = hostname.to_string();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let next_seq: Option<i64> = conn
                .prepare_cached("SELECT next_seq FROM log_totals WHERE hostname = ?1")
                .and_then(|mut st| st.query_row([&hostname], |r| r.get(0)).optional())
                .map_err(sql_err("reading log totals"))?;
            let Some(next_seq) = next_seq else {
                return Ok(None);
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM log_chunks WHERE hostname = ?1 AND seq > ?2 ORDER BY seq",
                )
                .map_err(sql_err("reading logs"))?;
            let bodies = stmt
                .query_map(params![hostname, after], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(sql_err("reading logs"))?;
            let lines = body_lines(&bodies);
            Ok(Some(LogPage {
                lines,
                cursor: (next_seq - 1).max(0) as u64,
            }))
        })
        .await
    }

    async fn delete_logs(&self, hostname: &str) -> Result<()> {
        let hostname = hostname.to_string();
        self.write(move |conn| {
            conn.execute("DELETE FROM log_chunks WHERE hostname = ?1", [&hostname])
                .and_then(|_| {
                    conn.execute("DELETE FROM log_totals WHERE hostname = ?1", [&hostname])
                })
                .map_err(sql_err("deleting logs"))?;
            Ok(())
        })
        .await
    }
}
