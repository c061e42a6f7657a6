//! API keys.

use super::*;

pub(super) async fn api_keys(store: &dyn Store) {
    use crate::domain::ApiKey;
    store.ping().await.expect("store call");
    let (key, plain) = ApiKey::generate("key-user", "laptop", 6, 500);
    store.insert_api_key(&key).await.expect("store call");
    let found = store
        .api_key_by_hash(&crate::domain::api_keys::hash_key(&plain))
        .await
        .expect("store call")
        .expect("store call");
    assert_eq!(found, key);
    assert!(store
        .api_key_by_hash("0".repeat(64).as_str())
        .await
        .expect("store call")
        .is_none());
    assert!(store
        .list_api_keys()
        .await
        .expect("store call")
        .iter()
        .any(|k| k.key_id == key.key_id));
    let revoked = store
        .revoke_api_key(&key.key_id, 600)
        .await
        .expect("store call");
    assert_eq!(revoked.revoked_at, Some(600));
    assert!(!store
        .api_key_by_hash(&key.key_hash)
        .await
        .expect("store call")
        .expect("store call")
        .is_active());
    assert!(matches!(
        store.revoke_api_key("unknown", 1).await,
        Err(crate::Error::NotFound(_))
    ));
}
