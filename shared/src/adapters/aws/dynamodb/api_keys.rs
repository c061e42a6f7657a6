//! API keys, found by the hash of their secret.

use super::*;

pub(super) fn api_key_pk(hash: &str) -> String {
    format!("APIKEY#{hash}")
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn insert_api_key(&self, api_key: &ApiKey) -> Result<()> {
        let mut item = key(api_key_pk(&api_key.key_hash), "APIKEY");
        let body = serde_json::to_string(api_key).map_err(|e| internal("encoding a key", e))?;
        item.insert("body".into(), s(body));
        // A pointer from the public id to the hash, for revoking.
        let mut pointer = key(format!("APIKEYID#{}", api_key.key_id), "APIKEYID");
        pointer.insert("key_hash".into(), s(api_key.key_hash.clone()));
        let items = vec![
            self.put_item(item, "attribute_not_exists(pk)", vec![])?,
            self.put_item(pointer, "attribute_not_exists(pk)", vec![])?,
        ];
        match self.transact(items).await? {
            None => Ok(()),
            Some(_) => Err(Error::Conflict(format!(
                "API key {} exists",
                api_key.key_id
            ))),
        }
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        self.get(&api_key_pk(key_hash), "APIKEY", false)
            .await?
            .and_then(|i| get_s(&i, "body"))
            .map(|b| serde_json::from_str(&b).map_err(|e| internal("decoding a key", e)))
            .transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        let mut keys: Vec<ApiKey> = self
            .scan_prefix("APIKEY#")
            .await?
            .iter()
            .filter_map(|i| get_s(i, "body"))
            .map(|b| serde_json::from_str(&b).map_err(|e| internal("decoding a key", e)))
            .collect::<Result<_>>()?;
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, key_id: &str, now: Millis) -> Result<ApiKey> {
        let hash = self
            .get(&format!("APIKEYID#{key_id}"), "APIKEYID", true)
            .await?
            .and_then(|i| get_s(&i, "key_hash"))
            .ok_or_else(|| Error::NotFound(format!("API key {key_id}")))?;
        let mut api_key = self
            .api_key_by_hash(&hash)
            .await?
            .ok_or_else(|| Error::NotFound(format!("API key {key_id}")))?;
        api_key.revoked_at.get_or_insert(now);
        let mut item = key(api_key_pk(&hash), "APIKEY");
        let body = serde_json::to_string(&api_key).map_err(|e| internal("encoding a key", e))?;
        item.insert("body".into(), s(body));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| internal("PutItem", DisplayErrorContext(e)))?;
        self.stats.record("PutItem", 0.0);
        Ok(api_key)
    }
}
