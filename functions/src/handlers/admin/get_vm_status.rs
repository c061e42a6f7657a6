//! `GET /api/vm-status/{hostname}` (admin): `{hostname, status}`, 404 if unknown.

use serde::Serialize;
use shared::domain::VmStatus;
use shared::usecases::admin;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{ok_typed, path_param, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;

/// A VM's status.
#[derive(Serialize, ToSchema)]
pub struct HostnameStatus {
    hostname: String,
    status: VmStatus,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("One VM's status").answers::<HostnameStatus>(200, "The VM's status.")
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let hostname = path_param(&req, "hostname")?;
        let vm = admin::get_vm((&state).into(), &hostname).await?;
        ok_typed(&HostnameStatus {
            hostname: vm.hostname,
            status: vm.status,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn one_vm_or_404() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let resp = serve(t.state.clone(), event("get-vm-status/vm-1.json")).await;
        assert_eq!(
            body_json(&resp),
            serde_json::json!({"hostname": "vm-1", "status": "running"})
        );
        let resp = serve(t.state.clone(), event("get-vm-status/unknown.json")).await;
        assert_eq!(resp.status(), 404);
    }
}
