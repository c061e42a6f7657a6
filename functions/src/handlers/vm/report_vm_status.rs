//! `POST /api/vm-status` `{hostname, status, reason?}` + VM token (`reason` with `error`). Unknown statuses are a 400; a
//! transition the state machine refuses (e.g. error → running) is a 409.

use serde::{Deserialize, Serialize};
use shared::domain::{VmChange, VmStatus};
use shared::usecases::vm_agent;
use shared::AppState;
use utoipa::ToSchema;

use crate::http::{
    json_body, ok_typed, required, respond, ApiError, Principal, Request, RequiredText, Response,
};
use crate::openapi::ApiDoc;

/// The VM's own status.
#[derive(Deserialize, ToSchema)]
pub struct VmStatusReport {
    /// The VM's hostname; its bearer token must be this VM's.
    #[schema(value_type = RequiredText)]
    #[allow(dead_code)] // checked by the router (`Access::Vm`)
    hostname: String,
    /// `initializing`, `running`, `error`, `rebooting` or `unknown`; surrounding
    /// whitespace is ignored. `error` cannot become `running` directly (409).
    #[schema(
        value_type = String,
        pattern = "^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*(initializing|running|error|rebooting|unknown)[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    status: Option<String>,
    /// Why, with `status: "error"` only (shown on the dashboard and the participant's seat
    /// page): control characters become spaces, only the first 300 characters are kept, and
    /// those must not all be blank.
    #[schema(
        pattern = "^[\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]{0,299}[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    reason: Option<String>,
}

/// The report was recorded.
#[derive(Serialize, ToSchema)]
pub struct VmStatusAccepted {
    pub message: String,
    /// How often the agent should report (its heartbeat), so it always fits the server's
    /// liveness window.
    pub heartbeat_interval_seconds: u64,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("A VM reports its status (its heartbeat)")
        .json_body::<VmStatusReport>()
        .answers::<VmStatusAccepted>(200, "Recorded; with the heartbeat interval.")
        // 404: the VM's record was deleted (destroy) between authentication and the update.
        .errors(&[404, 409])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: VmStatusReport = json_body(&req)?;
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
        ok_typed(&VmStatusAccepted {
            message: "VM status updated successfully.".into(),
            heartbeat_interval_seconds: state.config.liveness().heartbeat_interval_secs(),
        })
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
