//! API keys.

use super::*;

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        let key = key.clone();
        self.write(move |conn| {
            let body = serde_json::to_string(&key).map_err(json_err)?;
            conn.execute(
                "INSERT INTO api_keys (key_id, key_hash, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![key.key_id, key.key_hash, key.created_at, body],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Error::Conflict(format!("API key {} exists", key.key_id))
                }
                e => sql_err("recording an API key")(e),
            })?;
            Ok(())
        })
        .await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let key_hash = key_hash.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT body FROM api_keys WHERE key_hash = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row([key_hash], |r| r.get::<_, String>(0))
                        .optional()
                })
                .map_err(sql_err("looking up an API key"))?
                .map(|b| serde_json::from_str(&b).map_err(json_err))
                .transpose()
        })
        .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(move |conn| {
            let bodies: Vec<String> = conn
                .prepare_cached("SELECT body FROM api_keys ORDER BY created_at, key_id")
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(sql_err("listing API keys"))?;
            bodies
                .into_iter()
                .map(|b| serde_json::from_str(&b).map_err(json_err))
                .collect()
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &str, now: Millis) -> Result<ApiKey> {
        let key_id = key_id.to_string();
        self.write(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM api_keys WHERE key_id = ?1",
                    [&key_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err("reading an API key"))?;
            let mut key: ApiKey = body
                .map(|b| serde_json::from_str(&b).map_err(json_err))
                .transpose()?
                .ok_or_else(|| Error::NotFound(format!("API key {key_id}")))?;
            key.revoked_at.get_or_insert(now);
            let body = serde_json::to_string(&key).map_err(json_err)?;
            conn.execute(
                "UPDATE api_keys SET body = ?2 WHERE key_id = ?1",
                params![key_id, body],
            )
            .map_err(sql_err("revoking an API key"))?;
            Ok(key)
        })
        .await
    }
}
