//! Capacity pools: GPU types, aggregates, hosts, migrations between pools, launches into a pool.

pub mod contract_aggregates;
pub mod execute_migration;
pub mod execute_runpod_launch;
pub mod get_aggregates;
pub mod get_target_aggregate;
pub mod gpu_types;
pub mod host_vms;
pub mod preview_migration;
pub mod preview_runpod_launch;
