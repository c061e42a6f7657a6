//! The offers and instances API (`/api/v1`, rate-limited): providers, offer search, instances and their power.

pub mod create_instance;
pub mod destroy_instance;
pub mod get_instance;
pub mod list_instances;
pub mod list_providers;
pub mod search_offers;
pub mod start_instance;
pub mod stop_instance;
