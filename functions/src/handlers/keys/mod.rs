//! API keys (admin): create, list, revoke.

pub mod create_api_key;
pub mod list_api_keys;
pub mod revoke_api_key;
