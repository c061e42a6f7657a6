//! `POST /api/launch` (form `num_vms`) and `POST /admin/create` (form `instance_count`),
//! admin only: record N VMs and start them through the compute provider. 202 with the
//! operation for JSON clients, an HTML confirmation otherwise.

use http::StatusCode;
use shared::usecases::admin;
use shared::{AppState, Error};
use utoipa::ToSchema;

use super::views::OperationOutcome;
use crate::http::{
    form_body, respond, typed_json_response, wants_json, ApiError, Principal, Request, Response,
};
use crate::openapi::ApiDoc;
use crate::pages::{render, AdminPage};
use crate::views::{FleetView, WorkView};

/// The launch form (the dashboard's): one of the two fields is required.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the form; the handler reads its fields by name.
pub struct LaunchForm {
    /// How many VMs to launch: a whole number from 1 to GPUFLEET_MAX_LAUNCH (default 100).
    #[schema(minimum = 1)]
    num_vms: Option<u32>,
    /// The same, as the `/admin/create` form names it (when both are sent they must agree).
    #[schema(minimum = 1)]
    instance_count: Option<u32>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Launch VMs")
        .form_body::<LaunchForm>()
        .answers::<OperationOutcome>(
            202,
            "Launching (`Accept: application/json`): the operation; the VMs show as running once booted.",
        )
        .html(202, "Launching: the dashboard with a confirmation, for browsers.")
        .html(400, "The count is invalid: the dashboard saying so, for browsers.")
        .html(409, "Another operation runs: the dashboard saying so, for browsers.")
        // JSON clients get these as errors; a missing count is one for browsers too.
        .errors(&[400, 409, 503])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let form = form_body(&req)?;
        // Either name is accepted; both sent must say the same, and each is checked.
        let counts: Vec<&String> = ["num_vms", "instance_count"]
            .iter()
            .filter_map(|name| form.get(*name))
            .collect();
        if counts.is_empty() {
            return Err(ApiError::bad_request(
                "num_vms (or instance_count) is required",
            ));
        }
        let parsed: Result<Vec<u32>, Error> = counts
            .iter()
            .map(|raw| admin::parse_vm_count(raw, state.config.max_launch))
            .collect();
        let outcome = match parsed {
            Ok(parsed) => match parsed.as_slice() {
                [count, rest @ ..] if rest.iter().all(|c| c == count) => {
                    admin::launch_vms((&state).into(), *count).await
                }
                _ => Err(Error::validation(
                    "num_vms and instance_count disagree: send one of them",
                )),
            },
            Err(e) => Err(e),
        };
        if wants_json(&req) {
            let op = outcome?;
            return Ok(typed_json_response(
                StatusCode::ACCEPTED,
                &OperationOutcome::new(op),
            ));
        }
        let (status, message, error) = match outcome {
            Ok(op) => (
                StatusCode::ACCEPTED,
                Some(format!(
                    "Launching {} VM(s): {} (operation {}). They appear as running once booted.",
                    op.hostnames.len(),
                    op.hostnames.join(", "),
                    op.id
                )),
                (!op.errors.is_empty()).then(|| op.errors.join("; ")),
            ),
            Err(e @ Error::Validation(_)) => (StatusCode::BAD_REQUEST, None, Some(e.to_string())),
            Err(e @ Error::Conflict(_)) => (StatusCode::CONFLICT, None, Some(e.to_string())),
            Err(e) => return Err(e.into()),
        };
        admin_page(&state, status, message.as_deref(), error.as_deref()).await
    })
    .await
}

/// The admin page with a message, as launch and destroy answer browsers.
pub(crate) async fn admin_page(
    state: &AppState,
    status: StatusCode,
    message: Option<&str>,
    error: Option<&str>,
) -> Result<Response, ApiError> {
    let vms = admin::list_vms(state.into()).await?;
    let now = state.clock.now_millis();
    let patterns = state
        .config
        .collect
        .patterns
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    // The fleet must show even when the work store cannot be read.
    let work = match shared::usecases::collect::collected(state.into()).await {
        Ok(collected) => WorkView::new(patterns, &collected, now),
        Err(e) => {
            tracing::error!(error = ?e, "reading the collected work");
            WorkView {
                patterns,
                unavailable: Some("the collected work could not be read; see the logs".into()),
                ..WorkView::default()
            }
        }
    };
    // Likewise the costs.
    let costs = match shared::usecases::costs::fleet_costs(
        &*state.store,
        &*state.compute,
        &state.config,
        now,
    )
    .await
    {
        Ok(c) => crate::views::CostsView::new(&c),
        Err(e) => {
            tracing::error!(error = ?e, "reading the costs");
            crate::views::CostsView::unavailable()
        }
    };
    let mut resp = render(
        status,
        &AdminPage {
            work,
            costs,
            fleet: FleetView::new(
                &vms,
                state.clock.now_millis(),
                shared::usecases::participant::live_since(state.into()),
            ),
            max_launch: state.config.max_launch,
            message,
            error,
        },
    )?;
    crate::http::no_store(&mut resp);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn launches_through_the_compute_provider() {
        let t = TestState::new();
        let resp = serve(t.state.clone(), event("launch/two-vms.json")).await;
        assert_eq!(resp.status(), 202, "{}", body_text(&resp));
        let body = body_json(&resp);
        assert_eq!(body["operation"]["hostnames"].as_array().unwrap().len(), 2);
        t.launched(2).await;
        assert_eq!(t.compute.launched().len(), 2);
        let vms = t.state.store.list_vms().await.unwrap();
        assert_eq!(vms.len(), 2);
        for _ in 0..100 {
            if t.state
                .store
                .list_vms()
                .await
                .unwrap()
                .iter()
                .all(|v| v.instance_id.is_some())
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("instance ids were not recorded");
    }

    #[tokio::test]
    async fn bad_counts_are_400_and_change_nothing() {
        let t = TestState::new();
        let resp = serve(t.state.clone(), event("launch/zero-vms.json")).await;
        assert_eq!(resp.status(), 400);
        // Both names sent: each is checked, and they must agree.
        for form in ["num_vms=2&instance_count=3", "num_vms=2&instance_count=x"] {
            let mut req = event("launch/two-vms.json");
            *req.body_mut() = lambda_http::Body::Text(form.into());
            let resp = serve(t.state.clone(), req).await;
            assert_eq!(resp.status(), 400, "{form}: {}", body_text(&resp));
        }
        assert!(t.state.store.list_vms().await.unwrap().is_empty());
        assert!(t.compute.launched().is_empty());
    }
}
