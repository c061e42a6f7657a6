//! The route table: every HTTP path, its method, the Lambda function (binary) that serves
//! it on AWS and the handler. The local server dispatches through this table, and the
//! template check (tests) compares it with `template.yaml`, so the two cannot drift.

use std::future::Future;
use std::pin::Pin;

use http::Method;
use shared::AppState;

use crate::handlers;
use crate::http::{Request, Response};

pub type HandlerFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
pub type Handler = fn(AppState, Request) -> HandlerFuture;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (participants, the claim page).
    Public,
    /// A participant, with their seat token (the seat cookie, or the seat link's path).
    Seat,
    /// A VM, with its own bearer token.
    Vm,
    /// A VM with its own token, or an admin (Basic) forwarding for it.
    VmOrAdmin,
    /// An admin, with HTTP Basic credentials.
    Admin,
    /// A user's API key (`Authorization: Bearer gpf_…`).
    ApiKey,
    /// A user's API key, or an admin (Basic) acting on everyone's.
    ApiKeyOrAdmin,
}

pub struct Route {
    pub method: Method,
    /// API Gateway syntax: `{name}` is one path segment.
    pub path: &'static str,
    /// The Lambda function serving this route (its `GPUFLEET_FUNCTION`, see `catalog`).
    pub function: &'static str,
    pub access: Access,
    pub handler: Handler,
}

macro_rules! route {
    ($method:ident $path:literal => $function:literal, $module:ident, $access:ident) => {
        Route {
            method: Method::$method,
            path: $path,
            function: $function,
            access: Access::$access,
            handler: |state, req| Box::pin(handlers::$module::handle(state, req)),
        }
    };
}

pub static ROUTES: &[Route] = &[
    route!(GET "/" => "home", home, Public),
    route!(POST "/api/request_vm" => "request-vm", request_vm, Public),
    route!(POST "/request_vm" => "request-vm", request_vm, Public),
    route!(GET "/seat" => "seat-page", seat_page, Seat),
    route!(GET "/seat/{token}" => "seat-page", seat_page, Seat),
    route!(POST "/seat/command" => "seat-command", seat_command, Seat),
    route!(POST "/seat/{token}/command" => "seat-command", seat_command, Seat),
    route!(POST "/seat/move" => "seat-move", seat_move, Seat),
    route!(POST "/seat/{token}/move" => "seat-move", seat_move, Seat),
    route!(POST "/api/seats/{hostname}/reissue" => "reissue-seat", reissue_seat, Admin),
    route!(POST "/api/seats/{hostname}/move" => "move-seat", move_seat, Admin),
    route!(POST "/vm_startup" => "vm-startup", vm_startup, Vm),
    route!(GET "/api/unassigned_vms_count" => "unassigned-vms-count", unassigned_vms_count, Public),
    route!(POST "/api/update_inuse_status" => "update-inuse-status", update_inuse_status, Vm),
    route!(POST "/api/gpu_health" => "gpu-health", gpu_health, Vm),
    route!(POST "/api/vm-status" => "report-vm-status", report_vm_status, Vm),
    route!(GET "/api/vm-status" => "list-vm-status", list_vm_status, Admin),
    route!(GET "/api/vm-status/{hostname}" => "get-vm-status", get_vm_status, Admin),
    route!(POST "/api/launch" => "launch", launch, Admin),
    route!(POST "/admin/create" => "launch", launch, Admin),
    route!(POST "/destroy" => "destroy", destroy, Admin),
    route!(POST "/admin/destroy" => "destroy", destroy, Admin),
    route!(GET "/api/operations/{id}" => "get-operation", get_operation, Admin),
    route!(POST "/api/reconcile" => "reconcile-now", reconcile, Admin),
    route!(GET "/admin" => "admin-dashboard", admin_dashboard, Admin),
    route!(GET "/admin/instances" => "admin-instances", admin_instances, Admin),
    route!(GET "/admin/logs/{hostname}" => "admin-logs", admin_logs, Admin),
    route!(GET "/admin/metrics" => "admin-metrics", admin_metrics, Admin),
    route!(POST "/api/vm-metrics/{hostname}" => "vm-metrics", vm_metrics, Vm),
    route!(POST "/api/vm-logs" => "ingest-vm-logs", ingest_vm_logs, VmOrAdmin),
    route!(POST "/api/vm-logs/{hostname}" => "push-vm-logs", push_vm_logs, Vm),
    route!(GET "/api/vm-logs/{hostname}" => "get-vm-logs", get_vm_logs, Admin),
    route!(GET "/health" => "health", health, Public),
    route!(POST "/api/v1/requests" => "create-request", create_request, ApiKey),
    route!(GET "/api/v1/requests" => "list-requests", list_requests, ApiKeyOrAdmin),
    route!(GET "/api/v1/requests/{request_id}" => "get-request", get_request, ApiKeyOrAdmin),
    route!(POST "/api/v1/requests/{request_id}/release" => "release-request", release_request, ApiKeyOrAdmin),
    route!(POST "/api/v1/api-keys" => "create-api-key", create_api_key, Admin),
    route!(GET "/api/v1/api-keys" => "list-api-keys", list_api_keys, Admin),
    route!(DELETE "/api/v1/api-keys/{key_id}" => "revoke-api-key", revoke_api_key, Admin),
    route!(GET "/api/v1/providers" => "list-providers", list_providers, ApiKeyOrAdmin),
    route!(GET "/api/v1/offers/search" => "search-offers", search_offers, ApiKeyOrAdmin),
    route!(GET "/api/v1/instances" => "list-instances", list_instances, ApiKeyOrAdmin),
    route!(POST "/api/v1/instances" => "create-instance", create_instance, ApiKey),
    route!(GET "/api/v1/instances/{id}" => "get-instance", get_instance, ApiKeyOrAdmin),
    route!(DELETE "/api/v1/instances/{id}" => "destroy-instance", destroy_instance, ApiKeyOrAdmin),
    route!(POST "/api/v1/instances/{id}/start" => "start-instance", start_instance, ApiKeyOrAdmin),
    route!(POST "/api/v1/instances/{id}/stop" => "stop-instance", stop_instance, ApiKeyOrAdmin),
    route!(GET "/api/command-log" => "command-log", command_log, Admin),
    route!(POST "/api/clear-log" => "clear-log", clear_log, Admin),
    route!(GET "/api/gpu-types" => "gpu-types", gpu_types, ApiKeyOrAdmin),
    route!(GET "/api/aggregates/{gpu_type}" => "get-aggregates", get_aggregates, ApiKeyOrAdmin),
    route!(GET "/api/aggregates/{gpu_type}/{aggregate_type}" => "get-aggregates", get_aggregates, ApiKeyOrAdmin),
    route!(GET "/api/contract-aggregates/{gpu_type}" => "contract-aggregates", contract_aggregates, ApiKeyOrAdmin),
    route!(GET "/api/host-vms/{hostname}" => "host-vms", host_vms, ApiKeyOrAdmin),
    route!(POST "/api/preview-migration" => "preview-migration", preview_migration, Admin),
    route!(POST "/api/execute-migration" => "execute-migration", execute_migration, Admin),
    route!(POST "/api/get-target-aggregate" => "get-target-aggregate", get_target_aggregate, ApiKeyOrAdmin),
    route!(POST "/api/preview-runpod-launch" => "preview-runpod-launch", preview_runpod_launch, Admin),
    route!(POST "/api/execute-runpod-launch" => "execute-runpod-launch", execute_runpod_launch, Admin),
    route!(POST "/api/openstack/network/show" => "network-show", network_show, ApiKeyOrAdmin),
    route!(POST "/api/openstack/port/create" => "port-create", port_create, Admin),
    route!(POST "/api/openstack/server/add-network" => "server-add-network", server_add_network, Admin),
    route!(POST "/api/openstack/server/get-uuid" => "server-get-uuid", server_get_uuid, ApiKeyOrAdmin),
    route!(POST "/api/openstack/server/status" => "server-status", server_status, ApiKeyOrAdmin),
    route!(POST "/api/hyperstack/firewall/get-attachments" => "firewall-get-attachments", firewall_get_attachments, ApiKeyOrAdmin),
    route!(POST "/api/hyperstack/firewall/update-attachments" => "firewall-update-attachments", firewall_update_attachments, Admin),
    route!(GET "/api/hyperstack/images" => "list-images", list_images, ApiKeyOrAdmin),
];

/// A route of function `name`: all routes of one function share one handler and one access
/// rule (checked by a test below), so any of them serves the function.
pub fn of_function(name: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.function == name)
}

/// What matching a request path against the table found.
pub enum Match<'a> {
    Found(&'a Route, Vec<(String, String)>),
    /// The path exists, but not for this method.
    MethodNotAllowed,
    NotFound,
}

/// Finds the route for `method` and `path`, with its `{name}` parameters (percent-decoded).
pub fn find(method: &Method, path: &str) -> Match<'static> {
    let mut path_matched = false;
    for route in ROUTES {
        if let Some(params) = match_path(route.path, path) {
            if route.method == *method {
                return Match::Found(route, params);
            }
            path_matched = true;
        }
    }
    if path_matched {
        Match::MethodNotAllowed
    } else {
        Match::NotFound
    }
}

fn match_path(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) => {
                if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    if s.is_empty() {
                        return None;
                    }
                    params.push((name.to_string(), percent_decode(s)?));
                } else if p != s {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(
            matches!(find(&Method::GET, "/api/vm-status"), Match::Found(r, p) if r.function == "list-vm-status" && p.is_empty())
        );
        match find(&Method::GET, "/api/vm-status/vm%2D1") {
            Match::Found(r, p) => {
                assert_eq!(r.function, "get-vm-status");
                assert_eq!(p, vec![("hostname".to_string(), "vm-1".to_string())]);
            }
            _ => panic!("no match"),
        }
        assert!(matches!(
            find(&Method::DELETE, "/api/vm-status"),
            Match::MethodNotAllowed
        ));
        assert!(matches!(
            find(&Method::GET, "/api/vm-status/a/b"),
            Match::NotFound
        ));
        assert!(matches!(
            find(&Method::GET, "/api/vm-status/"),
            Match::NotFound
        ));
        assert!(matches!(find(&Method::GET, "/nope"), Match::NotFound));
    }

    #[test]
    fn routes_of_one_function_share_their_access() {
        // A Lambda function checks origins for all its routes with the first one's rule.
        for route in ROUTES {
            let first = ROUTES
                .iter()
                .find(|r| r.function == route.function)
                .expect("itself");
            assert_eq!(first.access, route.access, "{}", route.path);
        }
    }
}
