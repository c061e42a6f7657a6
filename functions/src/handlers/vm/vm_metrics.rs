//! `POST /api/vm-metrics/{hostname}` + VM token: startup timings, any subset of
//! `<stage>_start`, `<stage>_end`, `<stage>_duration_seconds` for stages cloud_init,
//! desktop, crd, cloudwatch, container and agent. Stages may arrive separately; 400 for
//! unknown fields or bad values.

use shared::domain::StartupMetrics;
use shared::usecases::vm_agent;
use shared::AppState;
use utoipa::ToSchema;

use super::views::VmReportAccepted;
use crate::http::{json_body, ok_typed, respond, Principal, Request, Response};
use crate::openapi::ApiDoc;

/// Startup timings: any of these fields, none other, each a number (never null); an empty
/// body is a 400. The handler reads the body as a map and `StartupMetrics::from_report`
/// checks it; this type describes it.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartupMetricsReport {
    /// When cloud-init as a whole started (Unix seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub cloud_init_start: Option<f64>,
    /// When cloud-init as a whole ended (Unix seconds; within a day after its start).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub cloud_init_end: Option<f64>,
    /// How long cloud-init as a whole took (seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 86400)]
    pub cloud_init_duration_seconds: Option<f64>,
    /// When the desktop user and session started (Unix seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub desktop_start: Option<f64>,
    /// When the desktop user and session ended (Unix seconds; within a day after its start).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub desktop_end: Option<f64>,
    /// How long the desktop user and session took (seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 86400)]
    pub desktop_duration_seconds: Option<f64>,
    /// When the Chrome Remote Desktop host started (Unix seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub crd_start: Option<f64>,
    /// When the Chrome Remote Desktop host ended (Unix seconds; within a day after its start).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub crd_end: Option<f64>,
    /// How long the Chrome Remote Desktop host took (seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 86400)]
    pub crd_duration_seconds: Option<f64>,
    /// When the CloudWatch agent started (Unix seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub cloudwatch_start: Option<f64>,
    /// When the CloudWatch agent ended (Unix seconds; within a day after its start).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub cloudwatch_end: Option<f64>,
    /// How long the CloudWatch agent took (seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 86400)]
    pub cloudwatch_duration_seconds: Option<f64>,
    /// When the container started (Unix seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub container_start: Option<f64>,
    /// When the container ended (Unix seconds; within a day after its start).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub container_end: Option<f64>,
    /// How long the container took (seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 86400)]
    pub container_duration_seconds: Option<f64>,
    /// When the agent started (Unix seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub agent_start: Option<f64>,
    /// When the agent ended (Unix seconds; within a day after its start).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 4102444800u64)]
    pub agent_end: Option<f64>,
    /// How long the agent took (seconds).
    #[schema(value_type = f64, required = false, minimum = 0, maximum = 86400)]
    pub agent_duration_seconds: Option<f64>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("A VM reports startup timings per stage")
        .json_body::<StartupMetricsReport>()
        .answers::<VmReportAccepted>(200, "Recorded.")
}

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let fields: serde_json::Map<String, serde_json::Value> = json_body(&req)?;
        let metrics = StartupMetrics::from_report(&fields)?;
        vm_agent::report_metrics((&state).into(), principal.vm()?, metrics).await?;
        ok_typed(&VmReportAccepted::new("VM metrics posted successfully."))
    })
    .await
}

#[cfg(test)]
mod tests {
    /// The document lists exactly the fields `StartupMetrics::from_report` accepts: each
    /// stage's start, end and duration.
    #[test]
    fn the_documented_fields_are_the_stages() {
        use shared::domain::metrics::STAGES;
        let schema =
            serde_json::to_value(<super::StartupMetricsReport as utoipa::PartialSchema>::schema())
                .unwrap();
        let documented: std::collections::BTreeSet<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let accepted: std::collections::BTreeSet<String> = STAGES
            .iter()
            .flat_map(|s| ["_start", "_end", "_duration_seconds"].map(|x| format!("{s}{x}")))
            .collect();
        assert_eq!(documented, accepted);
    }

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
