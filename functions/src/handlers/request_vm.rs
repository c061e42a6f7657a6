//! `POST /api/request_vm` and `POST /request_vm`: a participant claims a VM.
//!
//! Success is the page with hostname and PIN. A user-facing failure (no VM free, missing or
//! invalid email or CRD command) is the home page again, status 200, with the message and
//! what they typed, as the original allocator did; nothing changes in that case.

use http::StatusCode;
use shared::usecases::participant;
use shared::{AppState, Error};

use crate::http::{form_body, no_store, respond, ApiError, Request, Response};
use crate::pages::{render, HomePage, SuccessPage};

pub async fn handle(state: AppState, req: Request) -> Response {
    respond(async {
        let form = form_body(&req)?;
        let email = form.get("email").map(String::as_str).unwrap_or("");
        let crd_command = form.get("crd_command").map(String::as_str).unwrap_or("");
        match participant::claim_vm(&state, email, crd_command).await {
            Ok(participant::ClaimedVm { vm, rejoined }) => {
                let assignment = vm.assignment.as_ref().ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!("claimed VM has no assignment"))
                })?;
                let mut resp = render(
                    StatusCode::OK,
                    &SuccessPage {
                        hostname: &vm.hostname,
                        pin: &assignment.pin,
                        email: &assignment.email,
                        rejoined,
                    },
                )?;
                no_store(&mut resp);
                Ok(resp)
            }
            Err(e @ (Error::Validation(_) | Error::NoVmAvailable)) => {
                let free_count = participant::free_vm_count(&state).await?;
                let message = e.to_string();
                render(
                    StatusCode::OK,
                    &HomePage {
                        free_count,
                        error: Some(&message),
                        email,
                        crd_command,
                    },
                )
            }
            Err(e) => Err(ApiError::Core(e)),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn claims_from_the_sample_event() {
        let t = TestState::new();
        t.running_vm("vm-free").await;
        let resp = handle(t.state.clone(), event("request-vm/claim.json")).await;
        assert_eq!(resp.status(), 200);
        let body = body_text(&resp);
        assert!(body.contains("vm-free"), "{body}");
        let vm = t.state.store.get_vm("vm-free").await.unwrap().unwrap();
        let pin = vm.assignment.unwrap().pin;
        assert!(body.contains(&pin));
        assert_eq!(resp.headers()["cache-control"], "no-store");
    }

    #[tokio::test]
    async fn no_free_vm_shows_the_form_again() {
        let t = TestState::new();
        let resp = handle(t.state.clone(), event("request-vm/claim.json")).await;
        assert_eq!(resp.status(), 200);
        let body = body_text(&resp);
        assert!(body.contains("no VM is available"), "{body}");
        assert!(
            body.contains("participant@example.org"),
            "keeps what they typed"
        );
    }

    #[tokio::test]
    async fn invalid_crd_command_changes_nothing() {
        let t = TestState::new();
        t.running_vm("vm-free").await;
        let resp = handle(t.state.clone(), event("request-vm/injection.json")).await;
        assert_eq!(resp.status(), 200);
        assert!(body_text(&resp).contains("Invalid CRD command"));
        assert_eq!(t.state.store.count_assignable().await.unwrap(), 1);
    }
}
