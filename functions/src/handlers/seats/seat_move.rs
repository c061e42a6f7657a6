//! `POST /seat/move` (seat cookie) and `POST /seat/{token}/move` (seat link): a participant
//! whose VM died moves to a free, live VM (new hostname and PIN, the same seat and command).
//! The dead VM stays marked; a working VM is not left this way (409: ask the organiser).

use http::StatusCode;
use shared::usecases::participant;
use shared::{AppState, Error};

use crate::http::{respond, seat_credential, ApiError, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::pages::{render_no_seat, render_seat};

pub fn api() -> ApiDoc {
    ApiDoc::new("Move a seat whose VM died to a free, live VM")
        .html(200, "The seat page on the new VM (new hostname and PIN).")
        .html(404, "No seat for this link or cookie.")
        .html(409, "The seat's VM works: ask the organiser.")
        .html(503, "No free, live VM to move to.")
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let Some((token, base)) = seat_credential(&req) else {
            return render_no_seat();
        };
        let since = participant::live_since((&state).into());
        let refused = |status: StatusCode, error: String| {
            let (state, token, base) = (state.clone(), token.clone(), base.clone());
            async move {
                match participant::seat((&state).into(), &token).await {
                    Ok(vm) => render_seat(status, &vm, since, base, None, Some(&error)),
                    Err(_) => render_no_seat(),
                }
            }
        };
        match participant::move_to_working_vm((&state).into(), &token).await {
            Ok(vm) => {
                let message = format!(
                    "You moved to {}, with a new PIN. Chrome Remote Desktop codes work once: make a new command and send it below to register this VM.",
                    vm.hostname
                );
                render_seat(StatusCode::OK, &vm, since, base, Some(&message), None)
            }
            Err(Error::NotFound(_)) => render_no_seat(),
            Err(e @ Error::Conflict(_)) => refused(StatusCode::CONFLICT, e.to_string()).await,
            Err(e @ Error::NoVmAvailable) => {
                refused(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).await
            }
            Err(e) => Err(ApiError::Core(e)),
        }
    })
    .await
}
