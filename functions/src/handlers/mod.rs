//! One module per endpoint (= one Lambda function). Each exposes
//! `pub async fn handle(state: AppState, req: Request) -> Response`.

pub mod admin_dashboard;
pub mod admin_instances;
pub mod admin_logs;
pub mod admin_metrics;
pub mod clear_log;
pub mod command_log;
pub mod contract_aggregates;
pub mod create_api_key;
pub mod create_instance;
pub mod create_request;
pub mod destroy;
pub mod destroy_instance;
pub mod execute_migration;
pub mod execute_runpod_launch;
pub mod firewall_get_attachments;
pub mod firewall_update_attachments;
pub mod get_aggregates;
pub mod get_instance;
pub mod get_operation;
pub mod get_request;
pub mod get_target_aggregate;
pub mod get_vm_logs;
pub mod get_vm_status;
pub mod gpu_health;
pub mod gpu_types;
pub mod health;
pub mod home;
pub mod host_vms;
pub mod ingest_vm_logs;
pub mod launch;
pub mod list_api_keys;
pub mod list_images;
pub mod list_instances;
pub mod list_providers;
pub mod list_requests;
pub mod list_vm_status;
pub mod move_seat;
pub mod network_show;
pub mod port_create;
pub mod preview_migration;
pub mod preview_runpod_launch;
pub mod push_vm_logs;
pub mod reconcile;
pub mod reissue_seat;
pub mod release_request;
pub mod report_vm_status;
pub mod request_vm;
pub mod revoke_api_key;
pub mod search_offers;
pub mod seat_command;
pub mod seat_move;
pub mod seat_page;
pub mod server_add_network;
pub mod server_get_uuid;
pub mod server_status;
pub mod start_instance;
pub mod stop_instance;
pub mod unassigned_vms_count;
pub mod update_inuse_status;
pub mod vm_metrics;
pub mod vm_startup;

#[cfg(test)]
mod samples;
#[cfg(test)]
pub(crate) mod test_support;
