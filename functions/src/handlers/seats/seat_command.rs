//! `POST /seat/command` (seat cookie) and `POST /seat/{token}/command` (seat link), form
//! `crd_command`: the participant sends a new Chrome Remote Desktop command to their own VM
//! (codes expire within minutes). Validated like the first; the agent receives it at once.

use http::StatusCode;
use shared::usecases::participant;
use shared::{AppState, Error};

use crate::http::{form_body, respond, seat_credential, ApiError, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::pages::{render_no_seat, render_seat};

/// The new command.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CommandForm {
    /// A fresh Chrome Remote Desktop command.
    crd_command: String,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Send a new Chrome Remote Desktop command to the seat's VM")
        .form_body::<CommandForm>()
        .html(200, "The seat page, saying the command was sent.")
        .html(400, "The seat page, saying what is wrong with the command.")
        .html(404, "No seat for this link or cookie.")
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let Some((token, base)) = seat_credential(&req) else {
            return render_no_seat();
        };
        let form = form_body(&req)?;
        let command = form.get("crd_command").map(String::as_str).unwrap_or("");
        let since = participant::live_since((&state).into());
        match participant::resend_command((&state).into(), &token, command).await {
            Ok(vm) => {
                let message = format!(
                    "Sent to {}. It appears under \"Remote devices\" within a minute or two.",
                    vm.hostname
                );
                render_seat(StatusCode::OK, &vm, since, base, Some(&message), None)
            }
            Err(Error::NotFound(_)) => render_no_seat(),
            Err(e @ Error::Validation(_)) => {
                let vm = match participant::seat((&state).into(), &token).await {
                    Ok(vm) => vm,
                    Err(_) => return render_no_seat(),
                };
                let error = e.to_string();
                render_seat(
                    StatusCode::BAD_REQUEST,
                    &vm,
                    since,
                    base,
                    None,
                    Some(&error),
                )
            }
            Err(e) => Err(ApiError::Core(e)),
        }
    })
    .await
}
