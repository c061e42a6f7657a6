//! `POST /api/request_vm` and `POST /request_vm`: a participant claims a VM.
//!
//! Success is the page with hostname, PIN and the private seat link, and the seat cookie.
//! A repeat claim for an email that holds a VM shows that VM only to the browser holding
//! its seat cookie; anyone else learns only that the email already has one. A user-facing
//! failure (no VM free, wrong join code, invalid email or CRD command, over the per-IP
//! limit) is the home page again, status 200, with the message and what they typed, as the
//! original allocator did; nothing changes in that case.

use http::StatusCode;
use shared::usecases::participant::{self, ClaimInput, Claimed};
use shared::{AppState, Error};

use crate::http::{
    client_ip, cookie, form_body, no_store, respond, set_seat_cookie, site_url, ApiError,
    Principal, Request, Response, SEAT_COOKIE,
};
use crate::openapi::ApiDoc;
use crate::pages::{render, HomePage, SuccessPage};

/// The claim form's fields. A missing or invalid one is not an HTTP error: the form comes
/// back (200) saying what to fix.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ClaimForm {
    /// The participant's email (at most 254 characters).
    email: Option<String>,
    /// The Chrome Remote Desktop command for this VM, as Google shows it.
    crd_command: Option<String>,
    /// The workshop's join code, when GPUFLEET_JOIN_CODE is set.
    join_code: Option<String>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Claim a VM: the page with hostname, PIN and the private seat link")
        .form_body::<ClaimForm>()
        .html(
            200,
            "The seat (and the seat cookie), or the form again with what to fix: nothing changed then.",
        )
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let form = form_body(&req)?;
        let field = |name: &str| form.get(name).map(String::as_str);
        let email = field("email").unwrap_or("");
        let crd_command = field("crd_command").unwrap_or("");
        let ip = client_ip(&req);
        let input = ClaimInput {
            email,
            crd_command,
            join_code: field("join_code"),
            seat_token: cookie(&req, SEAT_COOKIE),
            client_ip: &ip,
        };
        let form_again = |error: Option<&str>, held_elsewhere: bool, free_count| {
            render(
                StatusCode::OK,
                &HomePage {
                    free_count,
                    error,
                    email,
                    crd_command,
                    join_code_required: state.config.join_code.is_some(),
                    held_elsewhere,
                },
            )
        };
        let (vm, seat) = match participant::claim_vm((&state).into(), input).await {
            Ok(Claimed::Assigned { vm, seat }) => (vm, Some(seat)),
            Ok(Claimed::Returning { vm }) => (vm, None),
            Ok(Claimed::HeldElsewhere) => {
                let free = participant::free_vm_count((&state).into()).await?;
                let mut resp = form_again(None, true, free)?;
                no_store(&mut resp);
                return Ok(resp);
            }
            Err(e @ (Error::Validation(_) | Error::NoVmAvailable)) => {
                let free = participant::free_vm_count((&state).into()).await?;
                return form_again(Some(&e.to_string()), false, free);
            }
            Err(e) => return Err(ApiError::Core(e)),
        };
        let assignment = vm
            .assignment
            .as_ref()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("claimed VM has no assignment")))?;
        let seat_path = seat
            .as_ref()
            .map_or_else(|| "/seat".to_string(), |s| format!("/seat/{}", s.as_str()));
        let mut resp = render(
            StatusCode::OK,
            &SuccessPage {
                hostname: &vm.hostname,
                pin: &assignment.pin,
                email: &assignment.email,
                rejoined: seat.is_none(),
                seat_url: seat
                    .as_ref()
                    .map(|_| format!("{}{seat_path}", site_url(&req))),
                seat_path,
            },
        )?;
        if let Some(seat) = &seat {
            set_seat_cookie(&req, &mut resp, seat.as_str());
        }
        no_store(&mut resp);
        Ok(resp)
    })
    .await
}

#[cfg(test)]
mod tests {
    use crate::handlers::test_support::*;

    #[tokio::test]
    async fn claims_from_the_sample_event() {
        let t = TestState::new();
        t.running_vm("vm-free").await;
        let resp = serve(t.state.clone(), event("request-vm/claim.json")).await;
        assert_eq!(resp.status(), 200);
        let body = body_text(&resp);
        assert!(body.contains("vm-free"), "{body}");
        let vm = t.state.store.get_vm("vm-free").await.unwrap().unwrap();
        let assignment = vm.assignment.unwrap();
        assert!(body.contains(&assignment.pin));
        assert_eq!(resp.headers()["cache-control"], "no-store");
        // The seat cookie and link carry the token whose hash the store keeps.
        let set_cookie = resp.headers()["set-cookie"].to_str().unwrap();
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
        let token = set_cookie
            .strip_prefix("gpufleet_seat=")
            .and_then(|r| r.split(';').next())
            .unwrap();
        assert!(body.contains(&format!("/seat/{token}")));
        assert_eq!(
            assignment.seat_hash,
            Some(shared::domain::SeatToken::parse(token).unwrap().hash())
        );
    }

    #[tokio::test]
    async fn a_repeat_claim_without_the_cookie_reveals_nothing() {
        let t = TestState::new();
        t.running_vm("vm-free").await;
        let first = serve(t.state.clone(), event("request-vm/claim.json")).await;
        let pin = t
            .state
            .store
            .get_vm("vm-free")
            .await
            .unwrap()
            .unwrap()
            .assignment
            .unwrap()
            .pin;
        let again = serve(t.state.clone(), event("request-vm/claim.json")).await;
        assert_eq!(again.status(), 200);
        let body = body_text(&again);
        assert!(body.contains("already has a VM"), "{body}");
        assert!(!body.contains("vm-free") && !body.contains(&pin), "{body}");
        assert!(again.headers().get("set-cookie").is_none());
        // With the cookie it gets the seat back.
        let cookie = first.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let mut req = event("request-vm/claim.json");
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        let body = body_text(&serve(t.state.clone(), req).await);
        assert!(body.contains("vm-free") && body.contains(&pin), "{body}");
    }

    #[tokio::test]
    async fn no_free_vm_shows_the_form_again() {
        let t = TestState::new();
        let resp = serve(t.state.clone(), event("request-vm/claim.json")).await;
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
        let resp = serve(t.state.clone(), event("request-vm/injection.json")).await;
        assert_eq!(resp.status(), 200);
        assert!(body_text(&resp).contains("Invalid CRD command"));
        assert_eq!(
            shared::usecases::participant::free_vm_count((&t.state).into())
                .await
                .unwrap(),
            1
        );
    }
}
