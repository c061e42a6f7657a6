//! `GET /api/vm-status/{hostname}` (admin): `{hostname, status}`, 404 if unknown.

use serde_json::json;
use shared::usecases::admin;
use shared::AppState;

use crate::http::{ok_json, path_param, respond, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let hostname = path_param(&req, "hostname")?;
        let vm = admin::get_vm((&state).into(), &hostname).await?;
        ok_json(json!({"hostname": vm.hostname, "status": vm.status.as_str()}))
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
