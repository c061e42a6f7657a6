//! `POST /api/vm-logs/{hostname}` `{messages: [...]}` + VM token: the agent pushes its own
//! log lines (local mode, and VMs without the CloudWatch agent).

use serde::Deserialize;
use serde_json::json;
use shared::usecases::vm_agent;
use shared::AppState;

use crate::http::{json_body, ok_json, respond, ApiError, Principal, Request, Response};

#[derive(Deserialize)]
struct Body {
    messages: Option<Vec<String>>,
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: Body = json_body(&req)?;
        let messages = body
            .messages
            .ok_or_else(|| ApiError::bad_request("messages (a list of strings) is required"))?;
        let kept = vm_agent::push_own_logs((&state).into(), principal.vm()?, &messages).await?;
        ok_json(json!({"message": "VM logs posted successfully.", "lines": kept}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn a_vm_pushes_its_own_lines() {
        let t = TestState::new();
        t.vm("vm-1").await;
        let resp = serve(t.state.clone(), event("push-vm-logs/lines.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        assert_eq!(body_json(&resp)["lines"], 2);
    }
}
