//! `GET /api/vm-status/{hostname}` (admin): `{hostname, status}`, 404 if unknown.

use serde_json::json;
use shared::usecases::admin;
use shared::AppState;

use crate::http::{ok_json, path_param, require_admin, respond, Request, Response};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond(async {
        require_admin(&state, &req)?;
        let hostname = path_param(&req, "hostname")?;
        let vm = admin::get_vm(&state, &hostname).await?;
        ok_json(json!({"hostname": vm.hostname, "status": vm.status.as_str()}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn one_vm_or_404() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let resp = handle(t.state.clone(), event("get-vm-status/vm-1.json")).await;
        assert_eq!(
            body_json(&resp),
            serde_json::json!({"hostname": "vm-1", "status": "running"})
        );
        let resp = handle(t.state.clone(), event("get-vm-status/unknown.json")).await;
        assert_eq!(resp.status(), 404);
    }
}
