//! `POST /api/gpu_health` `{hostname, gpu_status}` (healthy / unhealthy / n/a) + VM token.

use serde::Deserialize;
use shared::domain::{GpuHealth, VmChange};
use shared::usecases::vm_agent;
use shared::AppState;
use utoipa::ToSchema;

use super::views::VmReportAccepted;
use crate::http::{
    json_body, ok_typed, required, respond, Principal, Request, RequiredText, Response,
};
use crate::openapi::ApiDoc;

/// The GPU's health as the VM's check found it.
#[derive(Deserialize, ToSchema)]
pub struct GpuHealthReport {
    /// The VM's hostname; its bearer token must be this VM's.
    #[schema(value_type = RequiredText)]
    #[allow(dead_code)] // checked by the router (`Access::Vm`)
    hostname: String,
    /// `healthy`, `unhealthy` (the VM is no longer handed out) or `n/a` (no GPU, not
    /// checked yet); surrounding whitespace is ignored.
    #[schema(
        value_type = String,
        pattern = "^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*(healthy|unhealthy|n/a)[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    gpu_status: Option<String>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("A VM reports its GPU's health")
        .json_body::<GpuHealthReport>()
        .answers::<VmReportAccepted>(200, "Recorded.")
        // The VM's record can be deleted (destroy) between authentication and the update.
        .errors(&[404])
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: GpuHealthReport = json_body(&req)?;
        let health = GpuHealth::parse(required(&body.gpu_status, "gpu_status")?)?;
        vm_agent::report(
            (&state).into(),
            principal.vm()?,
            VmChange::GpuHealth(health),
        )
        .await?;
        ok_typed(&VmReportAccepted::new(
            "GPU health status updated successfully.",
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn sample_event_marks_the_gpu_unhealthy() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        let resp = serve(t.state.clone(), event("gpu-health/unhealthy.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        let vm = t.state.store.get_vm("vm-1").await.unwrap().unwrap();
        assert_eq!(vm.gpu_health, GpuHealth::Unhealthy);
        assert_eq!(
            shared::usecases::participant::free_vm_count((&t.state).into())
                .await
                .unwrap(),
            0
        );
    }
}
