//! `POST /api/collected/delete` (admin): deletes everything collected (files, manifests,
//! downloads). The dashboard's form must carry `confirm=yes`; API clients
//! (`Accept: application/json`) ask by calling it.

use http::StatusCode;
use serde_json::json;
use shared::usecases::collect;
use shared::AppState;

use crate::handlers::admin::launch::admin_page;
use crate::http::{form_body, json_response, respond, wants_json, Principal, Request, Response};

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
            return Ok(json_response(
                StatusCode::OK,
                &json!({"deleted_objects": deleted}),
            ));
        }
        let message = format!("Deleted the participants' work ({deleted} object(s)).");
        admin_page(&state, StatusCode::OK, Some(&message), None).await
    })
    .await
}
