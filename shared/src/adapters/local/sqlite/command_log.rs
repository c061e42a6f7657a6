//! The admin command log.

use super::*;

#[async_trait]
impl CommandLogStore for SqliteStore {
    async fn append_command(&self, entry: &CommandEntry) -> Result<()> {
        let entry = entry.clone();
        self.write(move |conn| {
            let body = serde_json::to_string(&entry).map_err(json_err)?;
            conn.execute(
                "INSERT INTO command_log (id, at, body) VALUES (?1, ?2, ?3)",
                params![entry.id, entry.at, body],
            )
            .map_err(sql_err("logging a command"))?;
            Ok(())
        })
        .await
    }

    async fn list_commands(
        &self,
        limit: usize,
        before: Option<&str>,
        since: Option<Millis>,
    ) -> Result<Vec<CommandEntry>> {
        let before = before.unwrap_or("~").to_string();
        let since = since.unwrap_or(i64::MIN);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let bodies: Vec<String> = conn
                .prepare_cached(
                    "SELECT body FROM command_log WHERE id < ?1 AND at >= ?2
                     ORDER BY id DESC LIMIT ?3",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![before, since, limit], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(sql_err("listing commands"))?;
            bodies
                .iter()
                .map(|b| serde_json::from_str(b).map_err(json_err))
                .collect()
        })
        .await
    }

    async fn record_clear(&self, at: Millis) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO command_log_clears (at) VALUES (?1)",
                params![at],
            )
            .map_err(sql_err("recording a clear"))?;
            Ok(())
        })
        .await
    }

    async fn last_clear(&self) -> Result<Option<Millis>> {
        self.read(|conn| {
            conn.query_row("SELECT MAX(at) FROM command_log_clears", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map_err(sql_err("reading the last clear"))
        })
        .await
    }
}
