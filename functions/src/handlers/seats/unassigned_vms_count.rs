//! `GET /api/unassigned_vms_count` → `{"count": n}`.

use shared::usecases::participant;
use shared::AppState;

use crate::http::{ok_typed, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;

/// How many VMs can be claimed now.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct FreeCount {
    pub count: u64,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("How many VMs are free to claim").answers::<FreeCount>(200, "The count.")
}

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond(async {
        let count = participant::free_vm_count((&state).into()).await?;
        ok_typed(&FreeCount { count })
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn counts_only_assignable_vms() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        t.vm("vm-2").await; // still initializing
        let resp = serve(t.state.clone(), event("unassigned-vms-count/get.json")).await;
        assert_eq!(body_json(&resp), serde_json::json!({"count": 1}));
    }
}
