//! `POST /destroy` and `POST /admin/destroy` (admin): stop every VM, wait until each is
//! gone, then forget its record. A VM that refuses to stop keeps its record. The dashboard
//! form must carry `confirm=yes` (its checkbox, next to the list of what goes); API clients
//! (`Accept: application/json`) ask explicitly by calling the endpoint. VMs in use are a
//! 409 listing them unless the request carries `confirm_in_use=yes`.

use http::StatusCode;
use serde_json::json;
use shared::usecases::admin;
use shared::{AppState, Error};

use super::launch::admin_page;
use crate::http::{form_body, json_response, respond, wants_json, Principal, Request, Response};

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let form = form_body(&req)?;
        let yes = |field: &str| form.get(field).map(String::as_str) == Some("yes");
        if !wants_json(&req) && !yes("confirm") {
            return admin_page(
                &state,
                StatusCode::BAD_REQUEST,
                None,
                Some(
                    "Nothing was destroyed: tick the confirmation box under the list of VMs first.",
                ),
            )
            .await;
        }
        let outcome = admin::destroy_all((&state).into(), yes("confirm_in_use")).await;
        if wants_json(&req) {
            let op = outcome?;
            return Ok(json_response(
                StatusCode::OK,
                &json!({"operation_id": op.id, "operation": op}),
            ));
        }
        match outcome {
            Ok(op) => {
                let message = format!("Destroyed {} VM(s).", op.hostnames.len() - op.errors.len());
                let error = (!op.errors.is_empty()).then(|| op.errors.join("; "));
                admin_page(&state, StatusCode::OK, Some(&message), error.as_deref()).await
            }
            Err(e @ Error::Conflict(_)) => {
                admin_page(&state, StatusCode::CONFLICT, None, Some(&e.to_string())).await
            }
            Err(e) => Err(e.into()),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn terminates_then_forgets() {
        let t = TestState::new();
        let resp = serve(t.state.clone(), event("launch/two-vms.json")).await;
        assert_eq!(resp.status(), 202);
        t.launched(2).await;
        let resp = serve(t.state.clone(), event("destroy/admin.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        assert_eq!(t.compute.terminated().len(), 2);
        assert!(t.state.store.list_vms().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn cross_site_requests_are_refused() {
        let t = TestState::new();
        t.running_vm("vm-1").await;
        // The same-origin check runs from the route table, before any handler.
        let route = crate::routes::of_function("destroy").unwrap();
        let resp =
            crate::router::serve_route(route, t.state.clone(), event("destroy/cross-site.json"))
                .await;
        assert_eq!(resp.status(), 403);
        assert_eq!(t.state.store.list_vms().await.unwrap().len(), 1);
    }
}
