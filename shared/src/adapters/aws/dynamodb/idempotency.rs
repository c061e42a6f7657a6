//! Idempotency keys: an `IDEM` item per (user, scope, key), read before the create and put
//! (conditional on not existing) in the create's transaction; what a key seen before means
//! is `crate::idempotency`'s to say.

use std::future::Future;

use super::*;
use crate::idempotency::{CreateOutcome, Prior, Scope};

/// The key item of a scope's key, and the attribute naming the record.
fn key_of(scope: Scope, user: &str, idem_key: &str) -> (Item, &'static str) {
    match scope {
        Scope::Requests => (key(format!("IDEM#{user}#{idem_key}"), "IDEM"), "request_id"),
        Scope::Instances => (
            key(format!("IDEM#{user}#instances#{idem_key}"), "IDEM"),
            "instance_id",
        ),
    }
}

/// The item recording that the key names `id`.
pub(super) fn idempotency_item(scope: Scope, user: &str, idem: &Idempotency, id: &str) -> Item {
    let (mut item, id_attribute) = key_of(scope, user, &idem.key);
    item.insert("fingerprint".into(), s(idem.fingerprint.clone()));
    item.insert(id_attribute.into(), s(id.to_string()));
    item
}

impl DynamoStore {
    /// The answer to a create whose key `user` used before in `scope` (`load` reads the
    /// record a repeat names), or `None` for a new key.
    pub(super) async fn replay<T, F, Fut>(
        &self,
        scope: Scope,
        user: &str,
        idem: &Idempotency,
        load: F,
    ) -> Result<Option<CreateOutcome<T>>>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let (key_item, id_attribute) = key_of(scope, user, &idem.key);
        let Some(item) = self.get_item(key_item, true).await? else {
            return Ok(None);
        };
        let fingerprint = get_s(&item, "fingerprint").unwrap_or_default();
        let prior = idem.judge(&fingerprint, get_s(&item, id_attribute).unwrap_or_default());
        let original = match &prior {
            Prior::Repeat { id } => load(id.clone()).await?,
            Prior::Mismatch => None,
        };
        CreateOutcome::of_prior(prior, |_| Ok(original)).map(Some)
    }
}
