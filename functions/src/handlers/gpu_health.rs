//! `POST /api/gpu_health` `{hostname, gpu_status}` (healthy / unhealthy / n/a) + VM token.

use serde::Deserialize;
use serde_json::json;
use shared::domain::{GpuHealth, VmChange};
use shared::usecases::vm_agent;
use shared::AppState;

use crate::http::{bearer_token, json_body, ok_json, required, respond, Request, Response};

#[derive(Deserialize)]
struct Body {
    hostname: Option<String>,
    gpu_status: Option<String>,
}

pub async fn handle(state: AppState, req: Request) -> Response {
    respond(async {
        let body: Body = json_body(&req)?;
        let hostname = required(&body.hostname, "hostname")?;
        let health = GpuHealth::parse(required(&body.gpu_status, "gpu_status")?)?;
        vm_agent::report(
            &state,
            hostname,
            bearer_token(&req),
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
        let resp = handle(t.state.clone(), event("gpu-health/unhealthy.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        let vm = t.state.store.get_vm("vm-1").await.unwrap().unwrap();
        assert_eq!(vm.gpu_health, GpuHealth::Unhealthy);
        assert_eq!(
            shared::usecases::participant::free_vm_count(&t.state)
                .await
                .unwrap(),
            0
        );
    }
}
