//! The route table: every HTTP path, its method, the Lambda function (binary) that serves
//! it on AWS and the handler. The local server dispatches through this table, and the
//! template check (tests) compares it with `template.yaml`, so the two cannot drift.

use std::future::Future;
use std::pin::Pin;

use http::Method;
use shared::AppState;

use crate::handlers;
use crate::http::VmHostname::{InBody, InPath};
pub use crate::http::{Access, Envelope, VmHostname};
use crate::http::{Principal, Request, Response};

pub type HandlerFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
/// A handler gets the principal the router authenticated for the route's `access`.
pub type Handler = fn(AppState, Principal, Request) -> HandlerFuture;

pub struct Route {
    pub method: Method,
    /// API Gateway syntax: `{name}` is one path segment.
    pub path: &'static str,
    /// The Lambda function serving this route (its `GPUFLEET_FUNCTION`, see `catalog`).
    pub function: &'static str,
    pub access: Access,
    /// The shape of its answers, errors before the handler included.
    pub envelope: Envelope,
    pub handler: Handler,
    /// What the handler takes and answers, for the OpenAPI document.
    pub api: fn() -> crate::openapi::ApiDoc,
}

impl Route {
    /// The names of the path's `{name}` parameters, in order.
    pub fn path_params(&self) -> Vec<&'static str> {
        self.path
            .split('/')
            .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
            .collect()
    }
}

macro_rules! route {
    ($method:ident $path:literal => $function:literal, $($module:ident)::+, $access:ident $(($at:expr))?, $envelope:ident) => {
        Route {
            method: Method::$method,
            path: $path,
            function: $function,
            access: Access::$access $(($at))?,
            envelope: Envelope::$envelope,
            handler: |state, principal, req| {
                Box::pin(handlers::$($module)::+::handle(state, principal, req))
            },
            api: handlers::$($module)::+::api,
        }
    };
}

pub static ROUTES: &[Route] = &[
    route!(GET "/" => "home", seats::home, Public, Plain),
    route!(POST "/api/request_vm" => "request-vm", seats::request_vm, Public, Plain),
    route!(POST "/request_vm" => "request-vm", seats::request_vm, Public, Plain),
    route!(GET "/seat" => "seat-page", seats::seat_page, Seat, Plain),
    route!(GET "/seat/{token}" => "seat-page", seats::seat_page, Seat, Plain),
    route!(POST "/seat/command" => "seat-command", seats::seat_command, Seat, Plain),
    route!(POST "/seat/{token}/command" => "seat-command", seats::seat_command, Seat, Plain),
    route!(POST "/seat/move" => "seat-move", seats::seat_move, Seat, Plain),
    route!(POST "/seat/{token}/move" => "seat-move", seats::seat_move, Seat, Plain),
    route!(POST "/api/seats/{hostname}/reissue" => "reissue-seat", seats::reissue_seat, Admin, Plain),
    route!(POST "/api/seats/{hostname}/move" => "move-seat", seats::move_seat, Admin, Plain),
    route!(POST "/vm_startup" => "vm-startup", vm::vm_startup, Vm(InBody("hostname")), Plain),
    route!(GET "/api/unassigned_vms_count" => "unassigned-vms-count", seats::unassigned_vms_count, Public, Plain),
    route!(POST "/api/update_inuse_status" => "update-inuse-status", vm::update_inuse_status, Vm(InBody("hostname")), Plain),
    route!(POST "/api/gpu_health" => "gpu-health", vm::gpu_health, Vm(InBody("hostname")), Plain),
    route!(POST "/api/vm-status" => "report-vm-status", vm::report_vm_status, Vm(InBody("hostname")), Plain),
    route!(GET "/api/vm-status" => "list-vm-status", admin::list_vm_status, Admin, Plain),
    route!(GET "/api/vm-status/{hostname}" => "get-vm-status", admin::get_vm_status, Admin, Plain),
    route!(POST "/api/launch" => "launch", admin::launch, Admin, Plain),
    route!(POST "/admin/create" => "launch", admin::launch, Admin, Plain),
    route!(POST "/destroy" => "destroy", admin::destroy, Admin, Plain),
    route!(POST "/admin/destroy" => "destroy", admin::destroy, Admin, Plain),
    route!(GET "/api/operations/{id}" => "get-operation", admin::get_operation, Admin, Plain),
    route!(POST "/api/reconcile" => "reconcile-now", admin::reconcile, Admin, Plain),
    route!(GET "/admin" => "admin-dashboard", admin::admin_dashboard, Admin, Plain),
    route!(GET "/admin/instances" => "admin-instances", admin::admin_instances, Admin, Plain),
    route!(GET "/admin/logs/{hostname}" => "admin-logs", admin::admin_logs, Admin, Plain),
    route!(GET "/admin/metrics" => "admin-metrics", admin::admin_metrics, Admin, Plain),
    route!(POST "/api/vm-metrics/{hostname}" => "vm-metrics", vm::vm_metrics, Vm(InPath), Plain),
    route!(POST "/api/vm-logs" => "ingest-vm-logs", vm::ingest_vm_logs, VmOrAdmin(InBody("log_stream")), Plain),
    route!(POST "/api/vm-logs/{hostname}" => "push-vm-logs", vm::push_vm_logs, Vm(InPath), Plain),
    route!(GET "/api/vm-logs/{hostname}" => "get-vm-logs", admin::get_vm_logs, Admin, Plain),
    route!(GET "/health" => "health", admin::health, Public, Plain),
    route!(GET "/openapi.json" => "openapi", docs::openapi_json, Public, Plain),
    route!(GET "/docs" => "api-docs", docs::docs_page, Public, Plain),
    route!(POST "/api/collect/plan" => "collect-plan", collect::collect_plan, Vm(InBody("hostname")), Plain),
    route!(POST "/api/collect/done" => "collect-done", collect::collect_done, Vm(InBody("hostname")), Plain),
    route!(GET "/api/scp-client" => "scp-client", collect::scp_client, Admin, Plain),
    route!(POST "/api/collected/delete" => "delete-collected", collect::delete_collected, Admin, Plain),
    route!(POST "/api/v1/requests" => "create-request", requests::create_request, ApiKey, Plain),
    route!(GET "/api/v1/requests" => "list-requests", requests::list_requests, ApiKeyOrAdmin, Plain),
    route!(GET "/api/v1/requests/{request_id}" => "get-request", requests::get_request, ApiKeyOrAdmin, Plain),
    route!(POST "/api/v1/requests/{request_id}/release" => "release-request", requests::release_request, ApiKeyOrAdmin, Plain),
    route!(POST "/api/v1/api-keys" => "create-api-key", keys::create_api_key, Admin, Plain),
    route!(GET "/api/v1/api-keys" => "list-api-keys", keys::list_api_keys, Admin, Plain),
    route!(DELETE "/api/v1/api-keys/{key_id}" => "revoke-api-key", keys::revoke_api_key, Admin, Plain),
    route!(GET "/api/v1/providers" => "list-providers", instances::list_providers, ApiKeyOrAdmin, Success),
    route!(GET "/api/v1/offers/search" => "search-offers", instances::search_offers, ApiKeyOrAdmin, Success),
    route!(GET "/api/v1/instances" => "list-instances", instances::list_instances, ApiKeyOrAdmin, Success),
    route!(POST "/api/v1/instances" => "create-instance", instances::create_instance, ApiKey, Success),
    route!(GET "/api/v1/instances/{id}" => "get-instance", instances::get_instance, ApiKeyOrAdmin, Success),
    route!(DELETE "/api/v1/instances/{id}" => "destroy-instance", instances::destroy_instance, ApiKeyOrAdmin, Success),
    route!(POST "/api/v1/instances/{id}/start" => "start-instance", instances::start_instance, ApiKeyOrAdmin, Success),
    route!(POST "/api/v1/instances/{id}/stop" => "stop-instance", instances::stop_instance, ApiKeyOrAdmin, Success),
    route!(GET "/api/command-log" => "command-log", command_log::read_log, Admin, Status),
    route!(POST "/api/clear-log" => "clear-log", command_log::clear_log, Admin, Status),
    route!(GET "/api/gpu-types" => "gpu-types", pools::gpu_types, ApiKeyOrAdmin, Status),
    route!(GET "/api/aggregates/{gpu_type}" => "get-aggregates", pools::get_aggregates, ApiKeyOrAdmin, Status),
    route!(GET "/api/aggregates/{gpu_type}/{aggregate_type}" => "get-aggregates", pools::get_aggregates, ApiKeyOrAdmin, Status),
    route!(GET "/api/contract-aggregates/{gpu_type}" => "contract-aggregates", pools::contract_aggregates, ApiKeyOrAdmin, Status),
    route!(GET "/api/host-vms/{hostname}" => "host-vms", pools::host_vms, ApiKeyOrAdmin, Status),
    route!(POST "/api/preview-migration" => "preview-migration", pools::preview_migration, Admin, Status),
    route!(POST "/api/execute-migration" => "execute-migration", pools::execute_migration, Admin, Status),
    route!(POST "/api/get-target-aggregate" => "get-target-aggregate", pools::get_target_aggregate, ApiKeyOrAdmin, Status),
    route!(POST "/api/preview-runpod-launch" => "preview-runpod-launch", pools::preview_runpod_launch, Admin, Status),
    route!(POST "/api/execute-runpod-launch" => "execute-runpod-launch", pools::execute_runpod_launch, Admin, Status),
    route!(POST "/api/openstack/network/show" => "network-show", network::network_show, ApiKeyOrAdmin, Status),
    route!(POST "/api/openstack/port/create" => "port-create", network::port_create, Admin, Status),
    route!(POST "/api/openstack/server/add-network" => "server-add-network", network::server_add_network, Admin, Status),
    route!(POST "/api/openstack/server/get-uuid" => "server-get-uuid", network::server_get_uuid, ApiKeyOrAdmin, Status),
    route!(POST "/api/openstack/server/status" => "server-status", network::server_status, ApiKeyOrAdmin, Status),
    route!(POST "/api/hyperstack/firewall/get-attachments" => "firewall-get-attachments", network::firewall_get_attachments, ApiKeyOrAdmin, Status),
    route!(POST "/api/hyperstack/firewall/update-attachments" => "firewall-update-attachments", network::firewall_update_attachments, Admin, Status),
    route!(GET "/api/hyperstack/images" => "list-images", network::list_images, ApiKeyOrAdmin, Status),
];

/// A route of function `name`: all routes of one function share one handler and one access
/// rule (checked by a test below), so any of them serves the function.
pub fn of_function(name: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.function == name)
}

/// What matching a request path against the table found.
pub enum Match<'a> {
    Found(&'a Route, Vec<(String, String)>),
    /// The path exists, but not for this method; these are its methods (for `Allow`).
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// Finds the route for `method` and `path`, with its `{name}` parameters (percent-decoded).
pub fn find(method: &Method, path: &str) -> Match<'static> {
    // A path written out wins over a template that also matches it (`/seat/move` is not
    // the seat `move`), as OpenAPI reads paths: only the most literal matches count. (API
    // Gateway matches method and path together, so there `GET /seat/move` reaches the seat
    // page, which answers 404 for a token that is no seat.)
    let matching: Vec<(&'static Route, Vec<(String, String)>)> = ROUTES
        .iter()
        .filter_map(|route| match_path(route.path, path).map(|params| (route, params)))
        .collect();
    let Some(fewest) = matching.iter().map(|(_, params)| params.len()).min() else {
        return Match::NotFound;
    };
    let mut allowed = Vec::new();
    for (route, params) in matching {
        if params.len() != fewest {
            continue;
        }
        if route.method == *method {
            return Match::Found(route, params);
        }
        if !allowed.contains(&route.method) {
            allowed.push(route.method.clone());
        }
    }
    Match::MethodNotAllowed(allowed)
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
            Match::MethodNotAllowed(allowed) if allowed == [Method::POST, Method::GET]
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
        // A literal path wins over a template matching it too, as OpenAPI reads paths.
        assert!(matches!(
            find(&Method::GET, "/seat/move"),
            Match::MethodNotAllowed(allowed) if allowed == [Method::POST]
        ));
        assert!(
            matches!(find(&Method::GET, "/seat/abc"), Match::Found(r, p) if r.function == "seat-page" && p.len() == 1)
        );
    }

    #[test]
    fn routes_of_one_function_share_their_access_and_envelope() {
        // A Lambda function serves all its routes with the first one's rules.
        for route in ROUTES {
            let first = ROUTES
                .iter()
                .find(|r| r.function == route.function)
                .expect("itself");
            assert_eq!(first.access, route.access, "{}", route.path);
            assert_eq!(first.envelope, route.envelope, "{}", route.path);
        }
    }
}
