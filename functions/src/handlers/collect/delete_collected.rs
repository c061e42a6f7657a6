//! `POST /api/collected/delete` (admin): deletes everything collected (files, manifests,
//! downloads). The dashboard's form must carry `confirm=yes`; API clients
//! (`Accept: application/json`) ask by calling it, and their body is not read.

use http::StatusCode;
use serde::Serialize;
use shared::usecases::collect;
use shared::AppState;
use utoipa::ToSchema;

use crate::handlers::admin::launch::admin_page;
use crate::http::{
    form_body, respond, typed_json_response, wants_json, Principal, Request, Response,
};
use crate::openapi::ApiDoc;

/// The dashboard's confirmation (the handler reads the form's fields).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeleteCollectedForm {
    /// `yes`, from the form's tick box: anything else deletes nothing. Not needed (the body
    /// is not read) with `Accept: application/json`.
    confirm: Option<String>,
}

/// What went.
#[derive(Serialize, ToSchema)]
pub struct DeletedCollected {
    /// Objects deleted: files, manifests and assembled downloads.
    pub deleted_objects: u64,
}

pub fn api() -> ApiDoc {
    ApiDoc::new("Delete everything participants' agents collected")
        .form_body::<DeleteCollectedForm>()
        .answers::<DeletedCollected>(200, "With `Accept: application/json`: what went.")
        .html(200, "The dashboard, saying what was deleted.")
        .html(
            400,
            "The dashboard: the form did not carry `confirm=yes`; nothing was deleted.",
        )
}

pub async fn handle(state: AppState, _principal: Principal, req: Request) -> Response {
    respond(async {
        let json = wants_json(&req);
        if !json && form_body(&req)?.get("confirm").map(String::as_str) != Some("yes") {
            return admin_page(
                &state,
                StatusCode::BAD_REQUEST,
                None,
                Some("Nothing was deleted: tick the box next to the button first."),
            )
            .await;
        }
        let deleted = collect::delete_all((&state).into()).await?;
        if json {
            return Ok(typed_json_response(
                StatusCode::OK,
                &DeletedCollected {
                    deleted_objects: deleted,
                },
            ));
        }
        let message = format!("Deleted the participants' work ({deleted} object(s)).");
        admin_page(&state, StatusCode::OK, Some(&message), None).await
    })
    .await
}
