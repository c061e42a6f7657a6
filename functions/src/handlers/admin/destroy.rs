//! `POST /destroy` and `POST /admin/destroy` (admin): stop every VM, wait until each is
//! gone, then forget its record. A VM that refuses to stop keeps its record. The dashboard
//! form must carry `confirm=yes` (its checkbox, next to the list of what goes); API clients
//! (`Accept: application/json`) ask explicitly by calling the endpoint. VMs in use are a
//! 409 listing them unless the request carries `confirm_in_use=yes`.

use http::StatusCode;
use shared::usecases::admin;
use shared::{AppState, Error};
use utoipa::ToSchema;

use super::launch::admin_page;
use super::views::OperationOutcome;
use crate::http::{
    form_body, respond, typed_json_response, wants_json, Principal, Request, Response,
};
use crate::openapi::ApiDoc;

/// The destroy form (the dashboard's).
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the form; the handler reads its fields by name.
pub struct DestroyForm {
    /// `yes` (the dashboard's checkbox): required from browsers, who otherwise get the
    /// dashboard back and nothing destroyed; JSON clients need not send it.
    confirm: Option<String>,
    /// `yes` to destroy VMs in use too; otherwise VMs in use make a 409 listing them.
    confirm_in_use: Option<String>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Destroy every VM (after a final sync of participants' work)")
        .form_body::<DestroyForm>()
        .answers::<OperationOutcome>(
            200,
            "Done (`Accept: application/json`): the operation; `errors` lists VMs that did not stop.",
        )
        .html(200, "Done: the dashboard with what was destroyed, for browsers.")
        .html(400, "Not confirmed: the dashboard, nothing destroyed, for browsers.")
        .html(409, "VMs in use, or another operation runs: the dashboard saying so, for browsers.")
        // JSON clients get these as errors (400: a form that cannot be parsed).
        .errors(&[400, 409, 503])
}

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
            return Ok(typed_json_response(
                StatusCode::OK,
                &OperationOutcome::new(op),
            ));
        }
        match outcome {
            Ok(op) => {
                let mut message =
                    format!("Destroyed {} VM(s).", op.hostnames.len() - op.errors.len());
                if !op.collected.is_empty() {
                    let missed: Vec<&str> = op
                        .collected
                        .iter()
                        .filter(|s| !s.answered)
                        .map(|s| s.hostname.as_str())
                        .collect();
                    message.push_str(&format!(
                        " Final sync: {} of {} VM(s) answered.",
                        op.collected.len() - missed.len(),
                        op.collected.len()
                    ));
                    if !missed.is_empty() {
                        message.push_str(&format!(
                            " Did not answer (what they synced earlier is kept): {}.",
                            missed.join(", ")
                        ));
                    }
                }
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

    /// vm-1's "agent" answers the final-sync request through the long-poll; vm-2's never
    /// does: the destroy waits its bounded time, ends both, and lists vm-2 as missing.
    #[tokio::test]
    async fn collects_first_and_lists_the_vms_that_did_not_answer() {
        use shared::usecases::{collect, vm_agent};
        let mut t = TestState::new();
        let mut config = (*t.state.config).clone();
        config.collect.final_wait = std::time::Duration::from_millis(1500);
        t.state.config = std::sync::Arc::new(config);
        t.running_vm("vm-1").await;
        t.running_vm("vm-2").await;
        let state = t.state.clone();
        let agent = tokio::spawn(async move {
            let vm = vm_agent::authenticate(&*state.store, "vm-1", Some("token-vm-1"))
                .await
                .unwrap();
            let seen = vm_agent::Seen::default();
            let answer = vm_agent::wait_for_assignment(
                (&state).into(),
                &vm,
                seen,
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap();
            let vm_agent::StartupAnswer::Collect { requested_at } = answer else {
                panic!("expected a collect request, got {answer:?}");
            };
            collect::finish_sync((&state).into(), &vm, vec![], vec![], Some(requested_at))
                .await
                .unwrap();
        });
        let resp = serve(t.state.clone(), event("destroy/admin.json")).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        agent.await.unwrap();
        let op = &body_json(&resp)["operation"];
        let collected = op["collected"].as_array().unwrap();
        let answered = |h: &str| {
            collected
                .iter()
                .find(|c| c["hostname"] == h)
                .unwrap_or_else(|| panic!("{h} missing from {collected:?}"))["answered"]
                .clone()
        };
        assert_eq!(answered("vm-1"), true);
        assert_eq!(answered("vm-2"), false);
        assert!(t.state.store.list_vms().await.unwrap().is_empty());
        // The miss is kept with what was collected, after the VM records are gone.
        let json = serve(t.state.clone(), event("scp-client/json.json")).await;
        assert_eq!(
            json.status(),
            404,
            "nothing was collected, so nothing to zip"
        );
        let kept = collect::collected((&t.state).into()).await.unwrap();
        let vm2 = kept.iter().find(|v| v.manifest.hostname == "vm-2").unwrap();
        assert!(vm2.manifest.missed_final_sync.is_some());
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
