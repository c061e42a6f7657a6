//! Use cases: plain async functions over typed values. Handlers parse HTTP into these calls
//! and render what they return; the rules live here. Each module names the ports it uses in
//! a small `Copy` struct built from `AppState` (`Seats`, `Agents`, `Fleet`, `Leases`,
//! `Instances`, `Capacity`, `Provisioner`, `Limiter`) or takes them as parameters; only the
//! reconcile, which visits every feature, takes the whole `AppState`.

pub mod admin;
pub mod collect;
pub mod command_log;
pub mod costs;
pub mod instances;
pub mod liveness;
pub mod participant;
pub mod pools;
pub mod provisioning;
pub mod rate_limit;
pub mod reconcile;
pub mod requests;
pub mod vm_agent;
