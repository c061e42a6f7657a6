//! `GET /api/v1/requests?limit=N` (API key: the caller's; admin: everyone's), newest first.

use shared::usecases::requests;
use shared::AppState;

use crate::http::{ok_json, query_param, respond, ApiError, Principal, Request, Response};
use crate::views::request_json;

/// Most requests one listing returns.
const MAX_LIMIT: usize = 1000;

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let caller = principal.caller()?.cloned();
        let limit = match query_param(&req, "limit") {
            None => 100,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "limit must be an integer from 1 to {MAX_LIMIT}"
                    )))
                }
            },
        };
        let list = requests::list((&state).into(), caller.as_ref(), limit).await?;
        ok_json(serde_json::Value::Array(
            list.iter().map(request_json).collect(),
        ))
    })
    .await
}
