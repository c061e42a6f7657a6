//! `GET /api/v1/requests/{request_id}` (API key: own requests only; admin: any).

use shared::usecases::requests;
use shared::AppState;

use crate::http::{ok_json, path_param, require_api_key_or_admin, respond, Request, Response};
use crate::views::request_json;

pub async fn handle(state: AppState, req: Request) -> Response {
    respond(async {
        let caller = require_api_key_or_admin(&state, &req).await?;
        let id = path_param(&req, "request_id")?;
        let request = requests::get(&state, caller.as_ref(), &id).await?;
        ok_json(request_json(&request))
    })
    .await
}
