//! `POST /api/v1/requests` (API key): ask for `gpu_count` GPUs for `duration_hours`.
//! 201 `{request_id, status}`; an `Idempotency-Key` header replays the first answer.

use http::StatusCode;
use serde_json::json;
use shared::domain::requests::NewRequest;
use shared::usecases::requests;
use shared::AppState;

use crate::http::{
    idempotency_key, json_body, json_response, respond, Principal, Request, Response,
};

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let caller = principal.user()?.clone();
        let body: serde_json::Value = json_body(&req)?;
        let input = NewRequest::parse(&body, state.config.max_lease_hours)?;
        let created =
            requests::create((&state).into(), &caller, input, idempotency_key(&req)?).await?;
        let mut resp = json_response(
            StatusCode::CREATED,
            &json!({
                "request_id": created.request.request_id,
                "status": created.request.status.as_str(),
            }),
        );
        if created.replayed {
            resp.headers_mut().insert(
                "idempotent-replayed",
                http::HeaderValue::from_static("true"),
            );
        }
        Ok(resp)
    })
    .await
}
