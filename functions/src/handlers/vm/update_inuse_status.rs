//! `POST /api/update_inuse_status` `{hostname, status: bool}` + VM bearer token.

use serde::Deserialize;
use serde_json::json;
use shared::domain::VmChange;
use shared::usecases::vm_agent;
use shared::AppState;

use crate::http::{json_body, ok_json, respond, ApiError, Principal, Request, Response};

#[derive(Deserialize)]
struct Body {
    status: Option<bool>,
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: Body = json_body(&req)?;
        let in_use = body
            .status
            .ok_or_else(|| ApiError::bad_request("status (true or false) is required"))?;
        vm_agent::report((&state).into(), principal.vm()?, VmChange::InUse(in_use)).await?;
        ok_json(json!({"message": "In-use status updated successfully."}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn sample_event_updates_the_flag() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let resp = serve(t.state.clone(), event("update-inuse-status/in-use.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        assert_eq!(
            body_json(&resp)["message"],
            "In-use status updated successfully."
        );
        assert!(t.state.store.get_vm("vm-1").await.unwrap().unwrap().in_use);
    }

    #[tokio::test]
    async fn wrong_type_is_a_400_and_changes_nothing() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let resp = serve(
            t.state.clone(),
            event("update-inuse-status/wrong-type.json"),
        )
        .await;
        assert_eq!(resp.status(), 400);
        assert!(!t.state.store.get_vm("vm-1").await.unwrap().unwrap().in_use);
    }
}
