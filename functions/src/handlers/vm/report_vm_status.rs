//! `POST /api/vm-status` `{hostname, status, reason?}` + VM token (`reason` with `error`). Unknown statuses are a 400; a
//! transition the state machine refuses (e.g. error → running) is a 409.

use serde::Deserialize;
use serde_json::json;
use shared::domain::{VmChange, VmStatus};
use shared::usecases::vm_agent;
use shared::AppState;

use crate::http::{json_body, ok_json, required, respond, ApiError, Principal, Request, Response};

#[derive(Deserialize)]
struct Body {
    status: Option<String>,
    /// Why, with `status: "error"` (shown on the dashboard and the participant's seat page).
    reason: Option<String>,
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: Body = json_body(&req)?;
        let status = VmStatus::parse(required(&body.status, "status")?)?;
        let change = match (status, body.reason.as_deref()) {
            (VmStatus::Error, Some(reason)) => VmChange::reported_error(reason)?,
            (_, Some(_)) => {
                return Err(ApiError::bad_request(
                    "reason is only taken with status \"error\"",
                ))
            }
            (status, None) => VmChange::Status(status),
        };
        vm_agent::report((&state).into(), principal.vm()?, change).await?;
        // The agent heartbeats at this interval, so it always fits the server's window.
        ok_json(json!({
            "message": "VM status updated successfully.",
            "heartbeat_interval_seconds": state.config.liveness().heartbeat_interval_secs(),
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn sample_event_sets_running() {
        let t = TestState::new();
        t.vm("vm-1").await;
        let resp = serve(t.state.clone(), event("report-vm-status/running.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        assert_eq!(
            body_json(&resp)["message"],
            "VM status updated successfully."
        );
        assert_eq!(
            shared::usecases::participant::free_vm_count((&t.state).into())
                .await
                .unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn unknown_status_is_refused() {
        let t = TestState::new();
        t.vm("vm-1").await;
        let resp = serve(t.state.clone(), event("report-vm-status/bogus.json")).await;
        assert_eq!(resp.status(), 400);
        assert!(body_text(&resp).contains("status must be one of"));
    }
}
