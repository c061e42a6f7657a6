//! `POST /api/v1/requests/{request_id}/release` (API key: own requests; admin: any): ends
//! the lease now. Answers once the machines are confirmed ended (503 while they are not).

use shared::usecases::requests;
use shared::AppState;

use crate::http::{ok_json, path_param, respond, Principal, Request, Response};
use crate::views::request_json;

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let caller = principal.caller()?.cloned();
        let id = path_param(&req, "request_id")?;
        let request = requests::release((&state).into(), caller.as_ref(), &id).await?;
        ok_json(request_json(&request))
    })
    .await
}
