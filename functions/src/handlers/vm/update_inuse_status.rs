//! `POST /api/update_inuse_status` `{hostname, status: bool}` + VM bearer token.

use serde::Deserialize;
use shared::domain::VmChange;
use shared::usecases::vm_agent;
use shared::AppState;
use utoipa::ToSchema;

use super::views::VmReportAccepted;
use crate::http::{
    json_body, ok_typed, respond, ApiError, Principal, Request, RequiredText, Response,
};
use crate::openapi::ApiDoc;

/// Whether a participant is using the VM.
#[derive(Deserialize, ToSchema)]
pub struct InUseReport {
    /// The VM's hostname; its bearer token must be this VM's.
    #[schema(value_type = RequiredText)]
    #[allow(dead_code)] // checked by the router (`Access::Vm`)
    hostname: String,
    /// Whether the VM is in use now.
    #[schema(value_type = bool)]
    status: Option<bool>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("A VM reports whether it is in use")
        .json_body::<InUseReport>()
        .answers::<VmReportAccepted>(200, "Recorded.")
        // The VM's record can be deleted (destroy) between authentication and the update.
        .errors(&[404])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: InUseReport = json_body(&req)?;
        let in_use = body
            .status
            .ok_or_else(|| ApiError::bad_request("status (true or false) is required"))?;
        vm_agent::report((&state).into(), principal.vm()?, VmChange::InUse(in_use)).await?;
        ok_typed(&VmReportAccepted::new(
            "In-use status updated successfully.",
        ))
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
