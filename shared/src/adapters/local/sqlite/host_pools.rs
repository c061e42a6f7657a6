//! Capacity-pool membership of hosts.

use super::*;

#[async_trait]
impl HostPoolStore for SqliteStore {
    async fn host_pools(&self) -> Result<std::collections::HashMap<String, String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT hostname, pool FROM host_pools")
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(sql_err("listing host pools"))
        })
        .await
    }

    async fn move_host(
        &self,
        hostname: &str,
        from: Option<&str>,
        to: &str,
        now: Millis,
    ) -> Result<()> {
        let (hostname, from, to) = (
            hostname.to_string(),
            from.map(str::to_string),
            to.to_string(),
        );
        self.write(move |conn| {
            let current: Option<String> = conn
                .query_row(
                    "SELECT pool FROM host_pools WHERE hostname = ?1",
                    params![hostname],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err("reading a host's pool"))?;
            if current != from {
                return Err(Error::Conflict(format!(
                    "host {hostname} is in {} now, not {}",
                    current.as_deref().unwrap_or("its default pool"),
                    from.as_deref().unwrap_or("its default pool")
                )));
            }
            conn.execute(
                "INSERT INTO host_pools (hostname, pool, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (hostname) DO UPDATE SET pool = ?2, updated_at = ?3",
                params![hostname, to, now],
            )
            .map_err(sql_err("moving a host"))?;
            Ok(())
        })
        .await
    }
}
