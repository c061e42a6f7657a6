//! `GET /api/operations/{id}` (admin): a launch or destroy and the state of each of its VMs.

use serde_json::json;
use shared::usecases::admin;
use shared::AppState;

use crate::http::{ok_json, path_param, respond, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let id = path_param(&req, "id")?;
        let op = admin::get_operation((&state).into(), &id).await?;
        let mut vms = Vec::with_capacity(op.hostnames.len());
        for hostname in &op.hostnames {
            let vm = state.store.get_vm(hostname).await?;
            vms.push(match vm {
                Some(vm) => json!({
                    "hostname": vm.hostname,
                    "status": vm.status.as_str(),
                    "reason": vm.status_reason,
                    "instance_id": vm.instance_id,
                }),
                None => json!({"hostname": hostname, "status": "gone"}),
            });
        }
        ok_json(json!({"operation": op, "vms": vms}))
    })
    .await
}
