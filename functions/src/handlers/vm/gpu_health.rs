//! `POST /api/gpu_health` `{hostname, gpu_status}` (healthy / unhealthy / n/a) + VM token.

use serde::Deserialize;
use serde_json::json;
use shared::domain::{GpuHealth, VmChange};
use shared::usecases::vm_agent;
use shared::AppState;

use crate::http::{json_body, ok_json, required, respond, Principal, Request, Response};

#[derive(Deserialize)]
struct Body {
    gpu_status: Option<String>,
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let body: Body = json_body(&req)?;
        let health = GpuHealth::parse(required(&body.gpu_status, "gpu_status")?)?;
        vm_agent::report(
            (&state).into(),
            principal.vm()?,
            VmChange::GpuHealth(health),
        )
        .await?;
        ok_json(json!({"message": "GPU health status updated successfully."}))
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
