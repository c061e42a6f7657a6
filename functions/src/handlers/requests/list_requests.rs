//! `GET /api/v1/requests?limit=N` (API key: the caller's; admin: everyone's), newest first.

use serde_json::json;
use shared::usecases::requests;
use shared::AppState;

use crate::http::{ok_typed, query_param, respond, ApiError, Principal, Request, Response};
use crate::openapi::ApiDoc;
use crate::views::RequestView;

/// Most requests one listing returns.
const MAX_LIMIT: usize = 1000;

pub fn api() -> ApiDoc {
    ApiDoc::new("The caller's GPU requests (an admin's: everyone's), newest first")
        .query(
            "limit",
            "At most this many requests (default 100).",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        )
        .answers_list::<RequestView>(200, "The requests, newest first.")
        .errors(&[400])
}

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
        ok_typed(&list.iter().map(RequestView::new).collect::<Vec<_>>())
    })
    .await
}
