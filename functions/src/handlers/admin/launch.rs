//! `POST /api/launch` (form `num_vms`) and `POST /admin/create` (form `instance_count`),
//! admin only: record N VMs and start them through the compute provider. 202 with the
//! operation for JSON clients, an HTML confirmation otherwise.

use http::StatusCode;
use serde_json::json;
use shared::usecases::admin;
use shared::{AppState, Error};

use crate::http::{
    form_body, json_response, respond, wants_json, ApiError, Principal, Request, Response,
};
use crate::pages::{render, AdminPage};
use crate::views::{FleetView, WorkView};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let form = form_body(&req)?;
        let raw = form
            .get("num_vms")
            .or_else(|| form.get("instance_count"))
            .ok_or_else(|| ApiError::bad_request("num_vms (or instance_count) is required"))?;
        let outcome = match admin::parse_vm_count(raw, state.config.max_launch) {
            Ok(count) => admin::launch_vms((&state).into(), count).await,
            Err(e) => Err(e),
        };
        if wants_json(&req) {
            let op = outcome?;
            return Ok(json_response(
                StatusCode::ACCEPTED,
                &json!({"operation_id": op.id, "operation": op}),
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
    let mut resp = render(
        status,
        &AdminPage {
            work,
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
        assert!(t.state.store.list_vms().await.unwrap().is_empty());
        assert!(t.compute.launched().is_empty());
    }
}
