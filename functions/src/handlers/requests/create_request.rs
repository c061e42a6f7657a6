//! `POST /api/v1/requests` (API key): ask for `gpu_count` GPUs for `duration_hours`.
//! 201 `{request_id, status}`; an `Idempotency-Key` header replays the first answer.

use http::StatusCode;
use serde_json::json;
use shared::usecases::requests;
use shared::AppState;

use crate::http::{json_body, json_response, respond, Principal, Request, Response};

pub async fn handle(state: AppState, principal: Principal, req: Request) -> Response {
    respond(async {
        let caller = principal.user()?.clone();
        let body: serde_json::Value = json_body(&req)?;
        let idempotency_key = match req.headers().get("idempotency-key") {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                crate::http::ApiError::bad_request("Idempotency-Key must be visible ASCII")
            })?),
        };
        let created = requests::create(&state, &caller, &body, idempotency_key).await?;
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
