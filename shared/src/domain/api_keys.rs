//! API keys: `Authorization: Bearer gpf_<64 hex>`. A key names one user; only its SHA-256
//! is stored (256 random bits need no slow hash), and lookups go by that hash.

use serde::{Deserialize, Serialize};

use super::secrets::{TokenHash, VmToken};
use super::vm::Millis;

/// What every key starts with, so a leaked key is recognisable (secret scanners).
pub const KEY_PREFIX: &str = "gpf_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public id (first 12 hex of the hash), for listing and revoking.
    pub key_id: String,
    pub user_id: String,
    pub label: String,
    pub key_hash: String,
    /// This user's total GPUs across active requests.
    pub gpu_quota: u32,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    /// This user's monthly budget in USD (calendar month, UTC); `None`: none.
    #[serde(default)]
    pub budget_usd: Option<f64>,
}

impl ApiKey {
    /// A new key for `user_id`: the record to store and the plain key, shown once.
    pub fn generate(user_id: &str, label: &str, gpu_quota: u32, now: Millis) -> (ApiKey, String) {
        let plain = format!("{KEY_PREFIX}{}", VmToken::generate().as_str());
        let hash = hash_key(&plain);
        let key = ApiKey {
            key_id: hash.chars().take(12).collect(),
            user_id: user_id.to_string(),
            label: label.to_string(),
            key_hash: hash,
            gpu_quota,
            created_at: now,
            revoked_at: None,
            budget_usd: None,
        };
        (key, plain)
    }

    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// Who calls a user route: the holder of an active API key, with what the key grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub user_id: String,
    pub gpu_quota: u32,
    /// The key's monthly budget in USD, if it has one.
    pub budget_usd: Option<f64>,
    /// The API key used (its public id), for per-key rate limits.
    pub key_id: String,
}

impl Caller {
    pub fn of(key: &ApiKey) -> Self {
        Caller {
            user_id: key.user_id.clone(),
            gpu_quota: key.gpu_quota,
            budget_usd: key.budget_usd,
            key_id: key.key_id.clone(),
        }
    }
}

/// The stored form of a presented key.
pub fn hash_key(plain: &str) -> String {
    TokenHash::of(plain).as_str().to_string()
}

/// Whether a presented bearer value looks like one of our keys (cheap pre-check).
pub fn looks_like_key(presented: &str) -> bool {
    presented
        .strip_prefix(KEY_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_only_their_hash_is_kept() {
        let (a, plain_a) = ApiKey::generate("alice", "laptop", 8, 1);
        let (b, plain_b) = ApiKey::generate("alice", "laptop", 8, 1);
        assert_ne!(plain_a, plain_b);
        assert!(looks_like_key(&plain_a));
        assert_eq!(a.key_hash, hash_key(&plain_a));
        assert!(!serde_json::to_string(&a)
            .unwrap()
            .contains(plain_a.trim_start_matches(KEY_PREFIX)));
        assert_ne!(a.key_id, b.key_id);
        assert!(!looks_like_key("gpf_xyz"));
    }
}
