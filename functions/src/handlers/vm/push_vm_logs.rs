//! `POST /api/vm-logs/{hostname}` `{messages: [...]}` + VM token: the agent pushes its own
//! log lines (local mode, and VMs without the CloudWatch agent).

use serde::{Deserialize, Serialize};
use shared::usecases::vm_agent;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{json_body, ok_typed, respond, ApiError, Principal, Request, Response};
use crate::openapi::ApiDoc;

/// The VM's own log lines.
#[derive(Deserialize, ToSchema)]
pub struct VmLogLines {
    /// Log messages: ANSI codes and control characters are removed, each is split into
    /// lines (over-long lines cut), and the VM's log is capped (GPUFLEET_LOG_CAP_BYTES).
    #[schema(value_type = Vec<String>)]
    messages: Option<Vec<String>>,
}

/// The lines were stored.
#[derive(Serialize, ToSchema)]
pub struct PushedLogLines {
    pub message: String,
    /// How many lines the messages made.
    pub lines: usize,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("A VM appends its own log lines")
        .json_body::<VmLogLines>()
        .answers::<PushedLogLines>(200, "Stored.")
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: VmLogLines = json_body(&req)?;
        let messages = body
            .messages
            .ok_or_else(|| ApiError::bad_request("messages (a list of strings) is required"))?;
        let kept = vm_agent::push_own_logs((&state).into(), principal.vm()?, &messages).await?;
        ok_typed(&PushedLogLines {
            message: "VM logs posted successfully.".into(),
            lines: kept,
        })
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
