//! `GET /api/vm-status` (admin): `{hostname: status, ...}` for every VM.

use std::collections::BTreeMap;

use serde::Serialize;
use shared::domain::VmStatus;
use shared::usecases::admin;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{no_store, ok_typed, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;

/// Every VM's status, by hostname.
#[derive(Serialize, ToSchema)]
pub struct VmStatuses(BTreeMap<String, VmStatus>);

pub fn api() -> ApiDoc {
    ApiDoc::new("Every VM's status, by hostname")
        .answers::<VmStatuses>(200, "`{hostname: status}` for every VM.")
}

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond(async {
        let statuses = admin::vm_statuses((&state).into()).await?;
        let mut resp = ok_typed(&VmStatuses(statuses.into_iter().collect()))?;
        no_store(&mut resp);
        Ok(resp)
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn maps_hostnames_to_statuses() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        t.vm("vm-2").await;
        let resp = serve(t.state.clone(), event("list-vm-status/admin.json")).await;
        assert_eq!(
            body_json(&resp),
            serde_json::json!({"vm-1": "running", "vm-2": "initializing"})
        );
    }

    #[tokio::test]
    async fn needs_admin_credentials() {
        let t = TestState::new();
        let resp = serve(t.state.clone(), event("list-vm-status/no-auth.json")).await;
        assert_eq!(resp.status(), 401);
        assert!(resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
    }
}
