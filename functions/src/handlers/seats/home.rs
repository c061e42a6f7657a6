//! `GET /`: the claim form and the number of free VMs.

use http::StatusCode;
use shared::usecases::participant;
use shared::AppState;

use crate::http::{respond, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::pages::{render, HomePage};

pub fn api() -> ApiDoc {
    ApiDoc::new("The claim page: the form and how many VMs are free").html(200, "The claim form.")
}

pub async fn handle(state: AppState, _principal: Principal, _req: Request) -> Response {
    respond(async {
        let free_count = participant::free_vm_count((&state).into()).await?;
        render(
            StatusCode::OK,
            &HomePage {
                free_count,
                error: None,
                email: "",
                crd_command: "",
                join_code_required: state.config.join_code.is_some(),
                held_elsewhere: false,
            },
        )
    })
    .await
}
