//! `POST /api/v1/requests/{request_id}/release` (API key: own requests; admin: any): ends
//! the lease now. Answers once the machines are confirmed ended (503 while they are not).

use shared::usecases::requests;
use shared::AppState;

use crate::http::{ok_json, path_param, require_api_key_or_admin, respond, Request, Response};
use crate::views::request_json;

pub async fn handle(state: AppState, req: Request) -> Response {
    respond(async {
        let caller = require_api_key_or_admin(&state, &req).await?;
        let id = path_param(&req, "request_id")?;
        let request = shared::domain::command_log::as_caller(
            crate::http::caller_label(&state, caller.as_ref()),
            requests::release(&state, caller.as_ref(), &id),
        )
        .await?;
        ok_json(request_json(&request))
    })
    .await
}
