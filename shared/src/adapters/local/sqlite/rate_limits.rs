//! Rate-limit counters.

use super::*;

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn count_hit(
        &self,
        bucket: &str,
        window_start: Millis,
        expires_at: Millis,
    ) -> Result<u64> {
        let bucket = bucket.to_string();
        self.write(move |conn| {
            let hits: i64 = conn
                .query_row(
                    "INSERT INTO rate_limits (bucket, window_start, hits, expires_at)
                     VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (bucket, window_start) DO UPDATE SET hits = hits + 1
                     RETURNING hits",
                    params![bucket, window_start, expires_at],
                    |r| r.get(0),
                )
                .map_err(sql_err("counting a request"))?;
            // The first hit of a window clears windows that ended (as DynamoDB's TTL would).
            if hits == 1 {
                conn.execute(
                    "DELETE FROM rate_limits WHERE expires_at < ?1",
                    params![window_start],
                )
                .map_err(sql_err("clearing old rate windows"))?;
            }
            Ok(u64::try_from(hits).unwrap_or(0))
        })
        .await
    }

    async fn hits(&self, bucket: &str, window_start: Millis) -> Result<u64> {
        let bucket = bucket.to_string();
        self.read(move |conn| {
            let hits: Option<i64> = conn
                .query_row(
                    "SELECT hits FROM rate_limits WHERE bucket = ?1 AND window_start = ?2",
                    params![bucket, window_start],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err("reading a request count"))?;
            Ok(hits.and_then(|h| u64::try_from(h).ok()).unwrap_or(0))
        })
        .await
    }
}
