//! Use cases: plain async functions over the ports in `AppState`. Handlers parse HTTP into
//! these calls and render what they return; the rules live here.

pub mod admin;
pub mod command_log;
pub mod instances;
pub mod liveness;
pub mod participant;
pub mod pools;
pub mod provisioning;
pub mod rate_limit;
pub mod reconcile;
pub mod requests;
pub mod vm_agent;
