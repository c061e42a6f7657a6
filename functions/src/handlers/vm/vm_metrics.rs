//! `POST /api/vm-metrics/{hostname}` + VM token: startup timings, any subset of
//! `<stage>_start`, `<stage>_end`, `<stage>_duration_seconds` for stages cloud_init,
//! container and agent. Stages may arrive separately; 400 for unknown fields or bad values.

use serde_json::json;
use shared::domain::StartupMetrics;
use shared::usecases::vm_agent;
use shared::AppState;

use crate::http::{json_body, ok_json, respond, Principal, Request, Response};

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let fields: serde_json::Map<String, serde_json::Value> = json_body(&req)?;
        let metrics = StartupMetrics::from_report(&fields)?;
        vm_agent::report_metrics((&state).into(), principal.vm()?, metrics).await?;
        ok_json(json!({"message": "VM metrics posted successfully."}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn sample_event_records_the_stage() {
        let t = TestState::new();
        t.vm("vm-1").await;
        let resp = serve(t.state.clone(), event("vm-metrics/cloud-init.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        let vm = t.state.store.get_vm("vm-1").await.unwrap().unwrap();
        assert_eq!(vm.metrics.total_seconds(), Some(60.0));
        let resp = serve(t.state.clone(), event("vm-metrics/bad-value.json")).await;
        assert_eq!(resp.status(), 400);
    }
}
