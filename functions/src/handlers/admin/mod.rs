//! The organiser's fleet: launch, destroy, operations, reconcile, the dashboard and its views, VM status and logs, health.

pub mod admin_dashboard;
pub mod admin_instances;
pub mod admin_logs;
pub mod admin_metrics;
pub mod destroy;
pub mod get_operation;
pub mod get_vm_logs;
pub mod get_vm_status;
pub mod health;
pub mod launch;
pub mod list_vm_status;
pub mod reconcile;
mod views;
