//! `POST /api/seats/{hostname}/move` (admin), optional form or JSON field `to`: moves the
//! participant of `hostname` to VM `to`, or to any free, live VM. Their seat link, email
//! and command move with them; they get a new PIN; the old VM is left in `error`.

use shared::usecases::admin;
use shared::AppState;

use crate::http::{
    declares_json, form_body, json_body, ok_typed, path_param, respond, ApiError, Principal,
    Request, Response,
};
use crate::openapi::ApiDoc;

/// Where to move the participant.
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct MoveTo {
    /// The VM to move to; without it, any free, live VM.
    to: Option<String>,
}

/// Where the participant went.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Moved {
    /// The VM they left (marked `error`).
    pub from: String,
    /// The VM they hold now.
    pub hostname: String,
    pub email: Option<String>,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Move a VM's participant to another VM (new PIN, same seat link)")
        .form_or_json_body::<MoveTo>()
        .answers::<Moved>(200, "Where they went.")
        .errors(&[400, 409])
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let hostname = path_param(&req, "hostname")?;
        let to = if req.body().is_empty() {
            None
        } else if declares_json(&req) {
            json_body::<MoveTo>(&req)?.to
        } else {
            form_body(&req)?.get("to").cloned()
        };
        let to = to.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        if to.as_deref() == Some(hostname.as_str()) {
            return Err(ApiError::bad_request(
                "a participant cannot move to the VM they hold",
            ));
        }
        let vm = admin::move_participant((&state).into(), &hostname, to.as_deref()).await?;
        ok_typed(&Moved {
            from: hostname,
            email: vm.assignment.as_ref().map(|a| a.email.clone()),
            hostname: vm.hostname,
        })
    })
    .await
}
