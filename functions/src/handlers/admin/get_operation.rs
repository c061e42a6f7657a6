//! `GET /api/operations/{id}` (admin): a launch or destroy and the state of each of its VMs.

use serde::Serialize;
use shared::domain::Operation;
use shared::usecases::admin;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{ok_typed, path_param, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;

/// An operation and where each of its VMs is now.
#[derive(Serialize, ToSchema)]
pub struct OperationProgress {
    operation: Operation,
    vms: Vec<OperationVm>,
}

/// One VM of an operation.
#[derive(Serialize, ToSchema)]
pub struct OperationVm {
    hostname: String,
    /// The VM's status, or `gone` once its record is deleted.
    status: String,
    /// Why it is in its status (null if nothing to say); absent when gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    reason: Option<Option<String>>,
    /// The cloud machine's id (null before launch); absent when gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    instance_id: Option<Option<String>>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("A launch or destroy and the state of each of its VMs")
        .answers::<OperationProgress>(200, "The operation and its VMs.")
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let id = path_param(&req, "id")?;
        let op = admin::get_operation((&state).into(), &id).await?;
        let mut vms = Vec::with_capacity(op.hostnames.len());
        for hostname in &op.hostnames {
            let vm = state.store.get_vm(hostname).await?;
            vms.push(match vm {
                Some(vm) => OperationVm {
                    hostname: vm.hostname,
                    status: vm.status.as_str().to_string(),
                    reason: Some(vm.status_reason),
                    instance_id: Some(vm.instance_id),
                },
                None => OperationVm {
                    hostname: hostname.clone(),
                    status: "gone".to_string(),
                    reason: None,
                    instance_id: None,
                },
            });
        }
        ok_typed(&OperationProgress { operation: op, vms })
    })
    .await
}
